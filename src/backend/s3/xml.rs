//! The XML documents of the S3 requests this backend sends.

use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Op, Result};

use super::NAME;

/// Parses an answer, or names the document that could not be read.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    op: Op,
    key: &str,
    body: &[u8],
    what: &str,
) -> Result<T> {
    quick_xml::de::from_reader(body).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            op,
            NAME,
            format!("an unreadable {what} answer: {e}"),
        )
        .with_key(key)
        .with_retryable(true)
    })
}

/// A key from a listing requested with `encoding-type=url`: S3 encodes it as a form value
/// (`+` for a space), so it is decoded as one. Keys of listings that did not encode (the
/// service ignored the parameter) are returned as they came.
pub(super) fn listed_key(raw: &str, url_encoded: bool) -> Option<String> {
    if !url_encoded {
        return Some(raw.to_string());
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// An ISO 8601 time from a listing.
pub(super) fn iso_time(t: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListBucketResult {
    #[serde(default)]
    pub(super) contents: Vec<Contents>,
    #[serde(default)]
    pub(super) common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    pub(super) next_continuation_token: Option<String>,
    pub(super) encoding_type: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Contents {
    pub(super) key: String,
    pub(super) size: u64,
    #[serde(rename = "ETag")]
    pub(super) e_tag: Option<String>,
    pub(super) last_modified: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CommonPrefix {
    pub(super) prefix: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InitiateMultipartUploadResult {
    pub(super) upload_id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CopyPartResult {
    #[serde(rename = "ETag")]
    pub(super) e_tag: String,
    #[serde(rename = "ChecksumCRC64NVME")]
    pub(super) checksum_crc64nvme: Option<String>,
}

/// A part's tag when the upload carries checksums: its ETag and CRC64-NVME, in the form
/// `object_store` gave part tags before (so that checkpoints written then still resume).
#[derive(serde::Deserialize)]
#[serde(rename = "PartMetadata")]
pub(super) struct PartMetadata {
    pub(super) e_tag: String,
    pub(super) checksum_crc64nvme: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListUploadsResult {
    #[serde(default)]
    pub(super) upload: Vec<Upload>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    pub(super) next_key_marker: Option<String>,
    pub(super) next_upload_id_marker: Option<String>,
    pub(super) encoding_type: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Upload {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) initiated: Option<String>,
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A part's tag as completion needs it: the ETag, and the checksum where there is one.
pub(super) fn part_tag(etag: &str, crc64nvme: Option<&str>) -> String {
    match crc64nvme {
        Some(c) => format!(
            "<PartMetadata><e_tag>{}</e_tag><checksum_crc64nvme>{}</checksum_crc64nvme></PartMetadata>",
            escape(etag),
            escape(c)
        ),
        None => etag.to_string(),
    }
}

/// The CompleteMultipartUpload document for `parts` (number, tag).
pub(super) fn complete_document<'a>(parts: impl Iterator<Item = (u32, &'a str)>) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (number, tag) in parts {
        let (etag, crc) = match quick_xml::de::from_str::<PartMetadata>(tag) {
            Ok(m) => (m.e_tag, m.checksum_crc64nvme),
            Err(_) => (tag.to_string(), None),
        };
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag>",
            escape(&etag)
        ));
        if let Some(c) = crc {
            xml.push_str(&format!(
                "<ChecksumCRC64NVME>{}</ChecksumCRC64NVME>",
                escape(&c)
            ));
        }
        xml.push_str("</Part>");
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_decode_as_form_values() {
        assert_eq!(listed_key("a+b%2Bc%20d", true).unwrap(), "a b+c d");
        assert_eq!(listed_key("a//b", true).unwrap(), "a//b");
        assert_eq!(listed_key("a+b%2", false).unwrap(), "a+b%2");
        assert!(listed_key("%ff", true).is_none());
    }

    #[test]
    fn part_tags_round_trip_through_the_completion_document() {
        let tag = part_tag("\"e<1>\"", Some("AAAA"));
        let doc = complete_document([(1, tag.as_str()), (2, "\"plain\"")].into_iter());
        assert!(doc.contains("<ETag>&quot;e&lt;1&gt;&quot;</ETag>"), "{doc}");
        assert!(doc.contains("<ChecksumCRC64NVME>AAAA</ChecksumCRC64NVME>"));
        assert!(doc.contains("<PartNumber>2</PartNumber><ETag>&quot;plain&quot;</ETag>"));
    }
}
