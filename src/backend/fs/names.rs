//! Key segments as file names, reversibly, for every key.
//!
//! A segment that is a plain file name is stored as it is, so the directory stays readable
//! with ordinary tools. The others are escaped: `%` followed by the segment with `%`, NUL
//! and control characters percent-encoded. That covers the empty segment of `a//b`, `dir/`
//! and `/lead` (`%`), the `.` and `..` segments (`%.`, `%..`), segments that start with
//! `%` (`%41` is stored as `%%2541`), segments holding NUL, and a first segment
//! `.cloudstore` (`%.cloudstore`), the name of the backend's state directory. A file name
//! starting with `%` that is not the escape of some segment was not written by this
//! backend and is not an object, except [`SELF`]: an object `a` whose key is also the
//! start of other keys (`a/b`) lives in the directory `a` as `a/%self`.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use super::{MAX_SEGMENT_LEN, STATE_DIR};

const ESCAPE: char = '%';
/// The file holding object `a` while keys under `a/` make `a` a directory. No segment is
/// stored under this name (it escapes nothing), so it names no other key.
pub(super) const SELF: &str = "%self";
/// What an escaped segment encodes: `%`, NUL and the other control characters.
const ENCODED: &AsciiSet = &CONTROLS.add(b'%');

/// Whether `segment` is stored under its own name.
fn plain(segment: &str, first: bool) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && !segment.starts_with(ESCAPE)
        && !segment.contains('\0')
        && (!first || segment != STATE_DIR)
}

/// The file name of `segment` (`first`: the key's first segment).
pub(super) fn encode(segment: &str, first: bool) -> Cow<'_, str> {
    if plain(segment, first) {
        return Cow::Borrowed(segment);
    }
    Cow::Owned(format!("{ESCAPE}{}", utf8_percent_encode(segment, ENCODED)))
}

/// The segment a file name stores, or `None` if no segment is stored under that name.
pub(super) fn decode(name: &str, first: bool) -> Option<Cow<'_, str>> {
    if first && name == STATE_DIR {
        return None;
    }
    let Some(rest) = name.strip_prefix(ESCAPE) else {
        return Some(Cow::Borrowed(name));
    };
    let segment = percent_decode_str(rest).decode_utf8().ok()?.into_owned();
    // Only the canonical escape: another tool's `%abc` would otherwise be read as `abc`.
    (encode(&segment, first) == name).then_some(Cow::Owned(segment))
}

/// The file names of a key's (or a prefix's) segments, or why it cannot be stored.
pub(super) fn encode_all(key: &str) -> Result<Vec<Cow<'_, str>>, String> {
    key.split('/')
        .enumerate()
        .map(|(i, segment)| {
            let name = encode(segment, i == 0);
            if name.len() > MAX_SEGMENT_LEN {
                return Err(format!(
                    "a segment stored as {} bytes: the fs backend stores segments of at most \
                     {MAX_SEGMENT_LEN} bytes",
                    name.len()
                ));
            }
            Ok(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_round_trips_and_plain_ones_stay_plain() {
        for (segment, first, stored) in [
            ("a", false, "a"),
            ("with space", false, "with space"),
            ("pct%20inside", false, "pct%20inside"),
            (".hidden", false, ".hidden"),
            ("", false, "%"),
            (".", false, "%."),
            ("..", false, "%.."),
            ("%41", false, "%%2541"),
            ("%", true, "%%25"),
            ("nul\0", false, "%nul%00"),
            (".cloudstore", true, "%.cloudstore"),
            (".cloudstore", false, ".cloudstore"),
            ("https:", true, "https:"),
        ] {
            assert_eq!(encode(segment, first), stored, "{segment:?}");
            assert_eq!(
                decode(stored, first).as_deref(),
                Some(segment),
                "{stored:?}"
            );
        }
    }

    #[test]
    fn names_that_are_no_escape_are_not_objects() {
        assert_eq!(decode("%abc", false), None);
        assert_eq!(decode("%%41", false), None);
        assert_eq!(decode("%ff", false), None);
        assert_eq!(decode(STATE_DIR, true), None);
        assert_eq!(decode(SELF, false), None);
        assert_eq!(decode(SELF, true), None);
    }

    #[test]
    fn whole_keys_map_segment_by_segment() {
        assert_eq!(encode_all("a//b").unwrap(), ["a", "%", "b"]);
        assert_eq!(encode_all("dir/").unwrap(), ["dir", "%"]);
        assert_eq!(encode_all("/lead").unwrap(), ["%", "lead"]);
        assert_eq!(encode_all("x/../y").unwrap(), ["x", "%..", "y"]);
        assert!(encode_all(&format!("%{}", "a".repeat(249))).is_err());
    }
}
