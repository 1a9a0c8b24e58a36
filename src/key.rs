//! [`Key`]: a validated object key, and the rules every backend relies on.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Op, Result};

/// The longest key accepted, in bytes of UTF-8 (the S3 and GCS limit).
pub const MAX_KEY_LEN: usize = 1024;

/// A validated object key.
///
/// The rules, enforced when a `Key` is made (so every backend can rely on them):
///
/// - not empty, and at most [`MAX_KEY_LEN`] (1024) bytes of UTF-8;
/// - no NUL and no control character (Unicode category Cc, e.g. `\n`, `\t`, `\x7f`);
/// - segments are separated by `/`: no leading `/`, no trailing `/`, no empty segment
///   (`a//b`), and no `.` or `..` segment.
///
/// Anything else is allowed, including spaces, `+`, `%`, `\`, unicode and emoji. Keys are
/// compared and listed in byte order of their UTF-8 form.
///
/// ```
/// use cloudstore::{ErrorKind, Key};
/// let key = Key::new("reports/2026/q3 summary+final.pdf")?;
/// assert_eq!(key.as_str(), "reports/2026/q3 summary+final.pdf");
/// assert_eq!(key.file_name(), "q3 summary+final.pdf");
///
/// let err = Key::new("reports/../secrets").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("'..' segment"));
/// # Ok::<(), cloudstore::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Validates `key` against the rules above.
    pub fn new(key: impl Into<String>) -> Result<Key> {
        let key = key.into();
        if let Err(problem) = check_key(&key) {
            return Err(Error::invalid_input(
                Op::ParseKey,
                "cloudstore",
                format!("invalid key: {problem}"),
            )
            .with_key(key));
        }
        Ok(Key(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as a string, consuming it.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The segments between `/`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// `prefix/self`, validated (the result may exceed [`MAX_KEY_LEN`]).
    pub fn join_under(&self, prefix: &str) -> Result<Key> {
        if prefix.is_empty() {
            return Ok(self.clone());
        }
        Key::new(format!("{}/{}", prefix.trim_end_matches('/'), self.0))
    }
}

/// Why a string is not a valid key, or `Ok`.
fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "{} bytes long, the limit is {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if key.starts_with('/') {
        return Err("leading '/'".into());
    }
    if key.ends_with('/') {
        return Err("trailing '/' (empty last segment)".into());
    }
    check_chars(key)?;
    for seg in key.split('/') {
        check_segment(seg)?;
    }
    Ok(())
}

fn check_chars(s: &str) -> std::result::Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        if c == '\0' {
            return Err("contains NUL".into());
        }
        return Err(format!("contains control character {:?}", c));
    }
    Ok(())
}

fn check_segment(seg: &str) -> std::result::Result<(), String> {
    match seg {
        "" => Err("empty segment ('//')".into()),
        "." => Err("'.' segment".into()),
        ".." => Err("'..' segment".into()),
        _ => Ok(()),
    }
}

/// Validates a listing prefix and returns it unchanged.
///
/// A prefix is a plain string prefix of keys (see [`crate::Store::list`]): it may be empty,
/// may end with `/`, and its last segment may be partial (`logs/2026-0` matches
/// `logs/2026-01/...`). Every complete segment before the last `/` follows the key rules,
/// and no character may be a control character.
pub fn validate_prefix(prefix: &str) -> Result<&str> {
    let check = || -> std::result::Result<(), String> {
        if prefix.is_empty() {
            return Ok(());
        }
        if prefix.len() > MAX_KEY_LEN {
            return Err(format!(
                "{} bytes long, the limit is {MAX_KEY_LEN}",
                prefix.len()
            ));
        }
        if prefix.starts_with('/') {
            return Err("leading '/'".into());
        }
        check_chars(prefix)?;
        if let Some((dirs, _partial)) = prefix.rsplit_once('/') {
            for seg in dirs.split('/') {
                check_segment(seg)?;
            }
        }
        Ok(())
    };
    check().map_err(|problem| {
        Error::invalid_input(Op::List, "cloudstore", format!("invalid prefix: {problem}"))
            .with_key(prefix)
    })?;
    Ok(prefix)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

// Keys order and hash exactly as their strings do, so maps keyed by `Key` can be searched
// with a `&str` (e.g. a listing prefix that is not itself a valid key).
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Key> {
        Key::new(s)
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(s: &str) -> Result<Key> {
        Key::new(s)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(s: String) -> Result<Key> {
        Key::new(s)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        Key::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_weird_keys() {
        for k in [
            "a",
            "a/b/c",
            "with space",
            "plus+percent%20",
            "ünïcødé/日本",
            "emoji/🦀.bin",
            ".hidden/..dots../x.",
            "back\\slash",
        ] {
            Key::new(k).unwrap();
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        let cases = [
            ("", "empty key"),
            ("/abs", "leading '/'"),
            ("dir/", "trailing '/'"),
            ("a//b", "empty segment"),
            ("a/./b", "'.' segment"),
            ("..", "'..' segment"),
            ("a/../b", "'..' segment"),
            ("nul\0", "NUL"),
            ("line\nbreak", "control character"),
            ("del\x7f", "control character"),
        ];
        for (k, why) in cases {
            let e = Key::new(k).unwrap_err();
            assert!(e.to_string().contains(why), "{k:?}: {e}");
        }
    }

    #[test]
    fn length_limit_is_bytes_not_chars() {
        let ok = "é".repeat(512); // 1024 bytes
        Key::new(ok).unwrap();
        let too_long = format!("{}x", "é".repeat(512));
        assert!(
            Key::new(too_long)
                .unwrap_err()
                .to_string()
                .contains("1025 bytes")
        );
    }

    #[test]
    fn prefixes_may_be_partial() {
        for p in ["", "a", "a/", "a/b", "a/.", "a/..x", "logs/2026-0"] {
            validate_prefix(p).unwrap();
        }
        for p in ["/a", "a//b", "../a", "a/../b/", "x\0"] {
            validate_prefix(p).unwrap_err();
        }
    }
}
