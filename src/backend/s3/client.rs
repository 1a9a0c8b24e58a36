//! The S3 requests, built here for any key and signed by `object_store`'s
//! [`AwsAuthorizer`] with the credentials of `object_store`'s providers.
//!
//! `object_store`'s `Path` cannot carry every key S3 holds (`a//b`, `dir/`, `/lead`,
//! `./x`), so URLs are made here: every byte of the key but unreserved characters and `/`
//! percent-encoded, and, for a key with a `.` or `..` segment, `/` too (`x%2F..%2Fy`),
//! since HTTP clients resolve dot segments in paths; S3 decodes the path into the key.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};

use super::NAME;
use crate::backend::wire::{self, Request};
use crate::error::{Error, Op, Result};

/// How requests reach one bucket and are signed.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) bucket: String,
    /// `https://s3.<region>.amazonaws.com/<bucket>`, or the endpoint (plus the bucket unless
    /// virtual-hosted), without a trailing `/`.
    pub(super) bucket_endpoint: String,
    pub(super) region: String,
    pub(super) credentials: AwsCredentialProvider,
    pub(super) skip_signature: bool,
    pub(super) sign_payload: bool,
    pub(super) request_payer: bool,
    /// Headers of server-side encryption sent with every write.
    pub(super) encryption: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("bucket", &self.bucket)
            .field(
                "bucket_endpoint",
                &crate::config::redact_url(&self.bucket_endpoint),
            )
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The path of `key` below the bucket, or why no HTTP path can name it.
pub(super) fn key_path(key: &str) -> std::result::Result<String, String> {
    if key == "." || key == ".." {
        return Err(format!(
            "no HTTP path can name the key {key:?} (clients resolve it as a path segment)"
        ));
    }
    let encoded = wire::encode_path(key);
    Ok(if key.split('/').any(|s| s == "." || s == "..") {
        encoded.replace('/', "%2F")
    } else {
        encoded
    })
}

impl Client {
    /// The URL of `key`.
    pub(super) fn object_url(&self, op: Op, key: &str, query: Option<&str>) -> Result<url::Url> {
        let path = key_path(key).map_err(|m| Error::invalid_input(op, NAME, m).with_key(key))?;
        self.url(op, key, &format!("{}/{path}", self.bucket_endpoint), query)
    }

    /// The URL of the bucket itself (listings).
    pub(super) fn bucket_url(&self, op: Op, prefix: &str, query: &str) -> Result<url::Url> {
        self.url(
            op,
            prefix,
            &format!("{}/", self.bucket_endpoint),
            Some(query),
        )
    }

    fn url(&self, op: Op, key: &str, base: &str, query: Option<&str>) -> Result<url::Url> {
        let mut url = url::Url::parse(base).map_err(|e| {
            Error::invalid_input(op, NAME, format!("not a valid URL: {e}")).with_key(key)
        })?;
        if let Some(q) = query {
            url.set_query(Some(q));
        }
        Ok(url)
    }

    pub(super) async fn credential(&self, op: Op, key: &str) -> Result<Option<Arc<AwsCredential>>> {
        if self.skip_signature {
            return Ok(None);
        }
        self.credentials
            .get_credential()
            .await
            .map(Some)
            .map_err(|e| super::super::object_store_core::map_error(NAME, op, key, e))
    }

    /// Signs and sends `req`; a status outside 2xx (but 304) is a typed error.
    pub(super) async fn send(&self, mut req: Request<'_>) -> Result<reqwest::Response> {
        if matches!(req.method, Method::PUT | Method::POST) {
            for (n, v) in &self.encryption {
                req.headers.insert(n.clone(), v.clone());
            }
        }
        let mut headers = wire::with_length(std::mem::take(&mut req.headers), req.body.as_ref());
        if let Some(credential) = self.credential(req.op, req.key).await? {
            let (op, key) = (req.op, req.key);
            let mut signed = http::Request::builder()
                .method(req.method.clone())
                .uri(req.url.as_str())
                .body(object_store::client::HttpRequestBody::empty())
                .map_err(|e| {
                    Error::invalid_input(op, NAME, format!("not a valid request: {e}"))
                        .with_key(key)
                })?;
            *signed.headers_mut() = headers;
            let digest = self
                .sign_payload
                .then(|| sha256(req.body.as_ref().map_or(&[][..], |b| b.chunks())));
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .with_sign_payload(self.sign_payload)
                .with_request_payer(self.request_payer)
                .try_authorize(&mut signed, digest.as_ref().map(|d| d.as_ref()))
                .map_err(|e| super::super::object_store_core::map_error(NAME, op, key, e))?;
            headers = std::mem::take(signed.headers_mut());
        }
        req.send(&self.http, headers).await
    }
}

/// SHA-256 of the chunks (for a signed payload).
fn sha256(chunks: &[Bytes]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in chunks {
        ctx.update(c);
    }
    ctx.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths_that_no_client_resolves() {
        assert_eq!(key_path("a//b.txt").unwrap(), "a//b.txt");
        assert_eq!(key_path("dir/").unwrap(), "dir/");
        assert_eq!(key_path("/lead").unwrap(), "/lead");
        assert_eq!(key_path("x/../y").unwrap(), "x%2F..%2Fy");
        assert_eq!(key_path("./x").unwrap(), ".%2Fx");
        assert_eq!(
            key_path("https://example.org/p?q=1").unwrap(),
            "https%3A//example.org/p%3Fq%3D1"
        );
        assert_eq!(key_path("a b+c%").unwrap(), "a%20b%2Bc%25");
        assert!(key_path("..").is_err() && key_path(".").is_err());
        // What the URL parser does to these paths: nothing.
        for key in [
            "a//b", "dir/", "/lead", "x/../y", "./x", "a/./b", "..x/.y", "%2e%2E",
        ] {
            let path = key_path(key).unwrap();
            let url = url::Url::parse(&format!("http://h/bucket/{path}")).unwrap();
            assert_eq!(url.path(), format!("/bucket/{path}"), "{key}");
            let decoded = percent_encoding::percent_decode_str(&url.path()["/bucket/".len()..])
                .decode_utf8()
                .unwrap();
            assert_eq!(decoded, key);
        }
    }
}
