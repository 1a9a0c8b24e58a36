//! [`Key`]: an object key as the clouds have it, and [`KeyPolicy`]: the optional portable
//! rule for new data.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Op, Result};

/// The longest key accepted, in bytes of UTF-8 (the S3 and GCS limit).
pub const MAX_KEY_LEN: usize = 1024;

/// An object key: what the cloud says it is.
///
/// S3, Azure Blob Storage and GCS accept any non-empty UTF-8 name up to 1024 bytes, and a
/// migration must carry whatever is there, so a `Key` is exactly that: **not empty and at
/// most [`MAX_KEY_LEN`] (1024) bytes of UTF-8**, nothing more. Double, leading and trailing
/// slashes, `.` and `..` segments, URL-like names, spaces and `%` sequences are all keys,
/// and every backend writes, reads, lists, copies and deletes them byte for byte, or
/// refuses one its service cannot hold with a typed error (Azure resolves `.` and `..`
/// segments, so it refuses them; GCS refuses the names `.` and `..`). The fs backend stores
/// the keys that are not plain paths under a reversible encoding (see
/// [`FsBackend`](crate::FsBackend)). Keys are compared and listed in byte order of their
/// UTF-8 form.
///
/// For new data, [`KeyPolicy::Portable`] (a [`Store`](crate::Store) setting) keeps keys
/// to plain relative paths that are files everywhere; see [`Key::check_portable`].
///
/// ```
/// use cloudstore::{ErrorKind, Key};
/// let key = Key::new("reports/2026/q3 summary+final.pdf")?;
/// assert_eq!(key.as_str(), "reports/2026/q3 summary+final.pdf");
/// assert_eq!(key.file_name(), "q3 summary+final.pdf");
///
/// // Keys other clients legally write are keys.
/// assert!(Key::new("a//b.txt").is_ok() && Key::new("dir/").is_ok());
/// // ... but not portable ones.
/// let err = Key::new("reports/../secrets")?.check_portable().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("'..' segment"));
///
/// assert_eq!(Key::new("").unwrap_err().kind(), ErrorKind::InvalidInput);
/// # Ok::<(), cloudstore::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Checks `key` against the rule above: not empty, at most 1024 bytes.
    pub fn new(key: impl Into<String>) -> Result<Key> {
        let key = key.into();
        if let Err(problem) = check_length(&key) {
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

    /// Whether the key is a plain relative path (see [`Key::check_portable`]).
    pub fn is_portable(&self) -> bool {
        check_portable(&self.0).is_ok()
    }

    /// Checks the portable rule, which [`KeyPolicy::Portable`] enforces for new data: no
    /// NUL or control character (Unicode category Cc), no leading or trailing `/`, no
    /// empty (`a//b`), `.` or `..` segment. Such keys are plain relative paths, files on
    /// every backend.
    pub fn check_portable(&self) -> Result<()> {
        check_portable(&self.0).map_err(|problem| {
            Error::invalid_input(
                Op::ParseKey,
                "cloudstore",
                format!("not a portable key: {problem}"),
            )
            .with_key(self.0.as_str())
        })
    }
}

/// Which keys a [`Store`](crate::Store) accepts for the operations it is given.
///
/// Listings always return every key there is, whatever the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyPolicy {
    /// Any key the cloud accepts (the default): see [`Key`].
    #[default]
    Cloud,
    /// Only plain relative paths: see [`Key::check_portable`]. For applications that want
    /// keys that are files on every backend, including a local directory.
    Portable,
}

impl std::str::FromStr for KeyPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cloud" => Ok(KeyPolicy::Cloud),
            "portable" => Ok(KeyPolicy::Portable),
            other => Err(format!("'{other}' is not a key policy (cloud or portable)")),
        }
    }
}

/// Why a string is not a key at all, or `Ok`.
fn check_length(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "{} bytes long, the limit is {MAX_KEY_LEN}",
            key.len()
        ));
    }
    Ok(())
}

/// Why a key is not portable, or `Ok`.
fn check_portable(key: &str) -> std::result::Result<(), String> {
    check_length(key)?;
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
/// A prefix is a plain string prefix of keys (see [`crate::Store::list`]): any string of at
/// most [`MAX_KEY_LEN`] bytes, empty included, since any key may start with it.
pub fn validate_prefix(prefix: &str) -> Result<&str> {
    if prefix.len() > MAX_KEY_LEN {
        return Err(Error::invalid_input(
            Op::List,
            "cloudstore",
            format!(
                "invalid prefix: {} bytes long, the limit is {MAX_KEY_LEN}",
                prefix.len()
            ),
        )
        .with_key(prefix));
    }
    Ok(prefix)
}

/// Validates a listing prefix under [`KeyPolicy::Portable`]: every complete segment before
/// the last `/` follows the portable rule, its last segment may be partial.
pub fn validate_portable_prefix(prefix: &str) -> Result<&str> {
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
            Key::new(k).unwrap().check_portable().unwrap();
        }
    }

    #[test]
    fn cloud_keys_are_any_non_empty_utf8_up_to_1024_bytes() {
        for k in [
            "a//b.txt",
            "dir/",
            "/lead",
            "./x",
            "x/../y",
            "..",
            "https://example.org/p?q=1",
            "trail ",
            "%41%2F",
            "nul\0",
            "line\nbreak",
        ] {
            assert_eq!(Key::new(k).unwrap().as_str(), k);
        }
        assert!(Key::new("").unwrap_err().to_string().contains("empty key"));
    }

    #[test]
    fn the_portable_rule_refuses_each_case_with_its_reason() {
        let cases = [
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
            let key = Key::new(k).unwrap();
            assert!(!key.is_portable());
            let e = key.check_portable().unwrap_err();
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
            validate_portable_prefix(p).unwrap();
        }
        for p in ["/a", "a//b", "../a", "a/../b/", "x\0"] {
            validate_portable_prefix(p).unwrap_err();
            validate_prefix(p).unwrap();
        }
        validate_prefix(&"x".repeat(1025)).unwrap_err();
    }
}
