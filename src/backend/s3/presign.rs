//! Presigned URLs for any key: SigV4 query signing.
//!
//! `object_store`'s `Signer` presigns only what its `Path` can name, and its query signer
//! is crate-private, so the few lines of the canonical request are written here, with
//! `ring` (already the TLS stack's) for SHA-256 and HMAC. Only `host` is signed and the
//! payload is `UNSIGNED-PAYLOAD`, as for every presigned S3 URL.

use std::time::{Duration, SystemTime};

use object_store::aws::AwsCredential;
use percent_encoding::utf8_percent_encode;
use ring::{digest, hmac};

use crate::backend::wire::STRICT;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// Adds the SigV4 query parameters that allow `method` on `url` until `expires_in`
/// passes, signed at `now`.
pub(super) fn sign(
    url: &mut url::Url,
    method: &str,
    credential: &AwsCredential,
    region: &str,
    expires_in: Duration,
    now: SystemTime,
) {
    let now: chrono::DateTime<chrono::Utc> = now.into();
    let date = now.format("%Y%m%d").to_string();
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/{region}/s3/aws4_request");
    let mut params = vec![
        ("X-Amz-Algorithm", ALGORITHM.to_string()),
        ("X-Amz-Credential", format!("{}/{scope}", credential.key_id)),
        ("X-Amz-Date", stamp.clone()),
        ("X-Amz-Expires", expires_in.as_secs().to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ];
    if let Some(token) = &credential.token {
        params.push(("X-Amz-Security-Token", token.clone()));
    }
    params.sort();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, STRICT)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let canonical = format!(
        "{method}\n{}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        url.path()
    );
    let hashed = hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
    let to_sign = format!("{ALGORITHM}\n{stamp}\n{scope}\n{hashed}");
    let k_date = mac(format!("AWS4{}", credential.secret_key).as_bytes(), &date);
    let k_region = mac(k_date.as_ref(), region);
    let k_service = mac(k_region.as_ref(), "s3");
    let k_signing = mac(k_service.as_ref(), "aws4_request");
    let signature = hex(mac(k_signing.as_ref(), &to_sign).as_ref());
    url.set_query(Some(&format!("{query}&X-Amz-Signature={signature}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's "Authenticating Requests: Using Query Parameters" page.
    #[test]
    fn signs_as_the_aws_documentation_example() {
        let credential = AwsCredential {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        };
        let mut url = url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z").unwrap();
        sign(
            &mut url,
            "GET",
            &credential,
            "us-east-1",
            Duration::from_secs(86400),
            at.into(),
        );
        assert!(
            url.as_str().ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
    }
}
