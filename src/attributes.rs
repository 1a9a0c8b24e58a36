//! The attribute contract: one set of rules for user metadata, content types and ETags,
//! checked by [`Store`](crate::Store) before any backend is called, the same on every
//! backend, so that code tested on memory behaves the same in the cloud.
//!
//! | attribute | rule |
//! |---|---|
//! | metadata name | 1 or more of `a-z`, `0-9`, `-`, `_`, `.` (S3 lowercases names, so upper case could not round-trip); not starting with [`RESERVED_PREFIX`] |
//! | metadata value | any UTF-8 (the backends encode what their wire cannot carry, see below) |
//! | metadata size | at most [`MAX_USER_METADATA_BYTES`] (1792): names plus values as S3 counts them on its wire (values encoded as below); the rest of S3's 2 KiB is kept for the library's records |
//! | content type | 1 to [`MAX_CONTENT_TYPE_LEN`] bytes of printable ASCII (a valid header value), no leading or trailing space |
//! | ETag given to a condition | 1 to [`MAX_ETAG_LEN`] bytes of printable ASCII, no leading or trailing space, not `*` ([`PutMode::Create`] says "only if absent") |
//!
//! Anything else is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before a
//! request is sent. Objects written by other clients with attributes outside these rules
//! are still read, listed and copied (a [`migrate`](crate::migrate) copy carries them
//! as they are where the destination can hold them, and fails with a typed error where it
//! cannot).
//!
//! # Values on the wire
//!
//! S3 and Azure carry metadata in HTTP headers, which hold printable ASCII only. A value
//! that is not plain printable ASCII (or that is empty, which some services drop, or
//! starts or ends with a space, which HTTP would strip, or starts with `=?`, which would
//! read as encoded) travels as RFC 2047 encoded
//! words, `=?UTF-8?B?<base64>?=`, as the AWS SDKs and S3 itself do; Azure uses the same
//! encoding. Reads decode it (B and Q encodings, UTF-8, ISO-8859-1 and US-ASCII
//! charsets), so values round-trip byte for byte. GCS, memory and fs store values as they
//! are.
//!
//! # The library's records
//!
//! What the library records for itself lives in user metadata on the wire, under names
//! starting with [`RESERVED_PREFIX`]: `cloudstore-crc32c` (the CRC32C of the object's
//! bytes, hex), `cloudstore-source-etag` (the ETag of the source a
//! [`migrate`](crate::migrate) copy came from) and `cloudstore-write-id` (the id the retry
//! layer recognises its own conditional write by after a lost answer). On Azure the names
//! are escaped like every name that is not an identifier (`csx_` + hex). `Store` never
//! returns them in [`ObjectMeta::metadata`](crate::ObjectMeta::metadata): the CRC32C and
//! the source ETag are the typed fields [`ObjectMeta::crc32c`](crate::ObjectMeta::crc32c)
//! and [`ObjectMeta::source_etag`](crate::ObjectMeta::source_etag).

use std::borrow::Cow;

use base64::Engine;

use crate::error::{Error, Op, Result};
use crate::object::{GetOptions, Metadata, ObjectMeta, PutMode, PutOptions};

/// S3's limit on user metadata: 2 KiB.
pub const MAX_METADATA_BYTES: usize = 2048;
/// The part of [`MAX_METADATA_BYTES`] kept for the library's own records.
pub const RESERVED_METADATA_BYTES: usize = 256;
/// The most user metadata an object may carry, counted as S3 counts it.
pub const MAX_USER_METADATA_BYTES: usize = MAX_METADATA_BYTES - RESERVED_METADATA_BYTES;
/// The longest content type accepted.
pub const MAX_CONTENT_TYPE_LEN: usize = 1024;
/// The longest ETag accepted in a condition.
pub const MAX_ETAG_LEN: usize = 1024;
/// Metadata names starting with this (in any case) belong to the library.
pub const RESERVED_PREFIX: &str = "cloudstore-";

/// The record of an object's CRC32C (8 hex digits).
pub const CRC32C_RECORD: &str = "cloudstore-crc32c";
/// The record of the ETag of the source a copy came from.
pub const SOURCE_ETAG_RECORD: &str = "cloudstore-source-etag";
/// The record of the id of a conditional write, for the retry layer.
pub const WRITE_ID_RECORD: &str = "cloudstore-write-id";

/// Whether `name` is in the library's reserved namespace.
pub fn is_reserved(name: &str) -> bool {
    name.get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

/// Why `name` is not a valid user metadata name, or `Ok`.
pub fn check_metadata_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("an empty metadata name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Err(format!(
            "metadata name {name:?} contains {c:?}; names are lower-case ASCII letters, \
             digits, '-', '_' and '.'"
        ));
    }
    if is_reserved(name) {
        return Err(format!(
            "metadata name {name:?} is in the library's reserved namespace '{RESERVED_PREFIX}'"
        ));
    }
    Ok(())
}

/// The bytes `metadata` takes on S3's wire: names plus values as sent.
pub fn metadata_wire_size(metadata: &Metadata) -> usize {
    metadata
        .iter()
        .map(|(k, v)| k.len() + encode_header_value(v).len())
        .sum()
}

/// Why `metadata` breaks the contract, or `Ok`.
pub fn check_metadata(metadata: &Metadata) -> std::result::Result<(), String> {
    for name in metadata.keys() {
        check_metadata_name(name)?;
    }
    let size = metadata_wire_size(metadata);
    if size > MAX_USER_METADATA_BYTES {
        return Err(format!(
            "user metadata takes {size} bytes, the limit is {MAX_USER_METADATA_BYTES}"
        ));
    }
    Ok(())
}

/// Whether `s` is a header value that survives HTTP as it is: printable ASCII and inner
/// spaces or tabs.
fn plain_header_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        && !s.starts_with([' ', '\t'])
        && !s.ends_with([' ', '\t'])
}

/// Why `ct` is not a valid content type, or `Ok`.
pub fn check_content_type(ct: &str) -> std::result::Result<(), String> {
    if ct.is_empty() {
        return Err("an empty content type".into());
    }
    if ct.len() > MAX_CONTENT_TYPE_LEN {
        return Err(format!(
            "the content type is {} bytes long, the limit is {MAX_CONTENT_TYPE_LEN}",
            ct.len()
        ));
    }
    if !plain_header_value(ct) {
        return Err(format!(
            "content type {ct:?} is not a valid header value (printable ASCII, no leading or \
             trailing space)"
        ));
    }
    Ok(())
}

/// Why `etag` cannot be a condition's ETag, or `Ok`.
pub fn check_etag(etag: &str) -> std::result::Result<(), String> {
    if etag.is_empty() {
        return Err("an empty ETag".into());
    }
    if etag == "*" {
        return Err("'*' is not an ETag (PutMode::Create writes only if absent)".into());
    }
    if etag.len() > MAX_ETAG_LEN {
        return Err(format!(
            "the ETag is {} bytes long, the limit is {MAX_ETAG_LEN}",
            etag.len()
        ));
    }
    if !plain_header_value(etag) {
        return Err(format!(
            "ETag {etag:?} is not a valid header value (printable ASCII, no leading or \
             trailing space)"
        ));
    }
    Ok(())
}

/// Checks a write's options against the contract: metadata, content type and the
/// condition's ETag.
pub fn check_put_options(op: Op, backend: &str, key: &str, opts: &PutOptions) -> Result<()> {
    let check = || -> std::result::Result<(), String> {
        check_metadata(&opts.metadata)?;
        if let Some(ct) = &opts.content_type {
            check_content_type(ct)?;
        }
        check_mode(&opts.mode)
    };
    check().map_err(|m| Error::invalid_input(op, backend, m).with_key(key))
}

/// Checks the ETag of a write condition.
pub fn check_mode(mode: &PutMode) -> std::result::Result<(), String> {
    match mode {
        PutMode::IfMatch(etag) => check_etag(etag),
        _ => Ok(()),
    }
}

/// Checks the ETags of a read's conditions.
pub fn check_get_options(backend: &str, key: &str, opts: &GetOptions) -> Result<()> {
    for etag in [&opts.if_match, &opts.if_none_match].into_iter().flatten() {
        check_etag(etag).map_err(|m| Error::invalid_input(Op::Get, backend, m).with_key(key))?;
    }
    Ok(())
}

/// Moves the library's records out of `meta.metadata` into their typed fields; other
/// reserved names (another version's records) are dropped from what users see.
pub(crate) fn split_records(meta: &mut ObjectMeta) {
    if !meta.metadata.keys().any(|k| is_reserved(k)) {
        return;
    }
    let all = std::mem::take(&mut meta.metadata);
    for (name, value) in all {
        if !is_reserved(&name) {
            meta.metadata.insert(name, value);
        } else if name.eq_ignore_ascii_case(CRC32C_RECORD) {
            meta.crc32c = u32::from_str_radix(value.trim(), 16).ok().or(meta.crc32c);
        } else if name.eq_ignore_ascii_case(SOURCE_ETAG_RECORD) {
            meta.source_etag = Some(value);
        }
    }
}

/// Keeps only the library's records in `metadata`: what a listing carries (user metadata
/// is [`Store::head`](crate::Store::head)'s to return), so that a sync can decide from the
/// listing whether a copy is in place.
pub(crate) fn keep_records(metadata: &mut Metadata) {
    metadata.retain(|name, _| is_reserved(name));
}

/// The longest RFC 2047 encoded word.
const MAX_WORD: usize = 75;
const WORD_START: &str = "=?UTF-8?B?";

/// `value` as an HTTP header value: as it is when it survives HTTP unchanged, otherwise as
/// RFC 2047 encoded words (`=?UTF-8?B?...?=`, at most 75 characters each, separated by
/// spaces). [`decode_header_value`] is its inverse.
///
/// ```
/// use cloudstore::attributes::{decode_header_value, encode_header_value};
/// assert_eq!(encode_header_value("plain value"), "plain value");
/// let wire = encode_header_value("Zürich");
/// assert_eq!(wire, "=?UTF-8?B?WsO8cmljaA==?=");
/// assert_eq!(decode_header_value(wire.as_bytes()), "Zürich");
/// ```
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    // An empty header is dropped by some services: the empty value travels encoded too.
    if !value.is_empty() && plain_header_value(value) && !value.starts_with("=?") {
        return Cow::Borrowed(value);
    }
    // Each word carries whole characters: at most 45 bytes (60 base64 characters).
    let per_word = (MAX_WORD - WORD_START.len() - 2) / 4 * 3;
    let mut words = Vec::new();
    let mut rest = value;
    loop {
        let mut cut = rest.len().min(per_word);
        // (The empty value gives one empty word.)
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (word, tail) = rest.split_at(cut);
        words.push(format!(
            "{WORD_START}{}?=",
            base64::prelude::BASE64_STANDARD.encode(word)
        ));
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    Cow::Owned(words.join(" "))
}

/// A header value as text: RFC 2047 encoded words decoded (B and Q, UTF-8, ISO-8859-1 and
/// US-ASCII), otherwise the bytes as UTF-8, or as ISO-8859-1 where they are not UTF-8.
/// Never fails: a value that does not decode is returned as it came.
pub fn decode_header_value(raw: &[u8]) -> String {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t.to_string(),
        Err(_) => raw.iter().map(|&b| b as char).collect(),
    };
    decode_words(&text).unwrap_or(text)
}

/// The concatenated words if `text` is only encoded words separated by white space.
fn decode_words(text: &str) -> Option<String> {
    let trimmed = text.trim_matches([' ', '\t']);
    if !trimmed.starts_with("=?") || !trimmed.ends_with("?=") {
        return None;
    }
    let mut out = Vec::new();
    for word in trimmed.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let (charset, encoding, data) = (parts.next()?, parts.next()?, parts.next()?);
        // RFC 2231 allows a language after '*': "UTF-8*en".
        let charset = charset.split('*').next()?.to_ascii_uppercase();
        let bytes = match encoding {
            "B" | "b" => base64::prelude::BASE64_STANDARD.decode(data).ok()?,
            "Q" | "q" => decode_q(data)?,
            _ => return None,
        };
        match charset.as_str() {
            "UTF-8" | "UTF8" | "US-ASCII" => out.extend_from_slice(&bytes),
            "ISO-8859-1" | "LATIN1" => {
                let s: String = bytes.iter().map(|&b| b as char).collect();
                out.extend_from_slice(s.as_bytes());
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

fn decode_q(data: &str) -> Option<Vec<u8>> {
    let b = data.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_header_encoding() {
        for v in [
            "",
            "plain",
            "with inner space",
            " leading",
            "trailing ",
            "Zürich",
            "日本語のテキスト".repeat(20).as_str(),
            "line\r\nbreak",
            "nul\0byte",
            "=?UTF-8?B?aGk=?=",
            "=?not a word",
            "tab\tinside",
            "🦀",
        ] {
            let wire = encode_header_value(v);
            assert!(
                wire.split(' ').all(|w| w.len() <= MAX_WORD) || plain_header_value(v),
                "{wire}"
            );
            assert!(
                wire.is_empty()
                    || wire
                        .bytes()
                        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()),
                "{wire:?}"
            );
            assert_eq!(decode_header_value(wire.as_bytes()), v, "{wire}");
        }
    }

    #[test]
    fn values_other_clients_send_are_decoded() {
        assert_eq!(
            decode_header_value(b"=?utf-8?q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_header_value(b"=?ISO-8859-1?Q?caf=E9?="), "café");
        assert_eq!(
            decode_header_value(b"=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?="),
            "éé"
        );
        // Raw bytes: UTF-8 where they are, ISO-8859-1 otherwise.
        assert_eq!(decode_header_value("ünï".as_bytes()), "ünï");
        assert_eq!(decode_header_value(b"caf\xe9"), "café");
        // Not decodable: returned as it came.
        assert_eq!(decode_header_value(b"=?UTF-8?X?abc?="), "=?UTF-8?X?abc?=");
        assert_eq!(decode_header_value(b"=?UTF-8?B?###?="), "=?UTF-8?B?###?=");
    }

    #[test]
    fn the_contract_refuses_what_breaks_it() {
        for bad in ["", "Upper", "with space", "ünï", "cloudstore-crc32c", "x\n"] {
            assert!(check_metadata_name(bad).is_err(), "{bad:?}");
        }
        for good in ["owner", "run-id", "source.system", "a_b", "9lives"] {
            check_metadata_name(good).unwrap();
        }
        for bad in ["", "*", " \"x\"", "\"x\" ", "\"x\r\n\"", "\"ü\""] {
            assert!(check_etag(bad).is_err(), "{bad:?}");
        }
        check_etag("\"abc-12\"").unwrap();
        check_etag("W/\"abc\"").unwrap();
        for bad in ["", "text/plain\r\nx: y", " text/plain", "tëxt/plain"] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
        check_content_type("text/plain; charset=utf-8").unwrap();
    }

    #[test]
    fn the_size_limit_counts_encoded_values() {
        let mut md = Metadata::new();
        md.insert("k".into(), "v".repeat(MAX_USER_METADATA_BYTES - 1));
        check_metadata(&md).unwrap();
        md.insert("k".into(), "v".repeat(MAX_USER_METADATA_BYTES));
        assert!(check_metadata(&md).is_err());
        // 700 two-byte characters are 1400 bytes of UTF-8 but over 2200 on the wire.
        md.insert("k".into(), "é".repeat(700));
        assert!(check_metadata(&md).unwrap_err().contains("limit"));
    }
}
