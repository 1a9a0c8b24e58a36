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
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::NAME;
use crate::backend::http_status::{kind_for_status, provider_code};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::object::Payload;

/// What a key's path keeps: unreserved characters and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// What a query value keeps: unreserved characters only (SigV4's canonical form).
pub(super) const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Error bodies longer than this are cut before classification.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
    let dots = key.split('/').any(|s| s == "." || s == "..");
    if key == "." || key == ".." {
        return Err(format!(
            "no HTTP path can name the key {key:?} (clients resolve it as a path segment)"
        ));
    }
    let encoded = utf8_percent_encode(key, PATH).to_string();
    Ok(if dots {
        encoded.replace('/', "%2F")
    } else {
        encoded
    })
}

/// A query string in SigV4's canonical encoding, in the order given.
pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() && matches!(*k, "uploads" | "delete") {
                (*k).to_string()
            } else {
                format!("{k}={}", utf8_percent_encode(v, STRICT))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A request about to be signed and sent.
pub(super) struct Request<'a> {
    pub(super) op: Op,
    /// The key (or prefix) errors name.
    pub(super) key: &'a str,
    pub(super) method: Method,
    pub(super) url: url::Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Payload>,
}

impl<'a> Request<'a> {
    pub(super) fn new(op: Op, key: &'a str, method: Method, url: url::Url) -> Self {
        Request {
            op,
            key,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// Adds a header; a value no header can carry is `InvalidInput`.
    pub(super) fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::invalid_input(self.op, NAME, format!("{name:?} cannot be a header name"))
                .with_key(self.key)
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid_input(
                self.op,
                NAME,
                format!("the value of {name} cannot travel in a header"),
            )
            .with_key(self.key)
        })?;
        self.headers.append(n, v);
        Ok(self)
    }

    pub(super) fn body(mut self, body: Payload) -> Self {
        self.body = Some(body);
        self
    }
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

    /// Signs and sends `req`; a status outside 2xx is a typed error.
    pub(super) async fn send(&self, req: Request<'_>) -> Result<reqwest::Response> {
        let Request {
            op,
            key,
            method,
            url,
            mut headers,
            body,
        } = req;
        let chunks = body.map(Payload::into_chunks);
        if let Some(c) = &chunks {
            let len: usize = c.iter().map(Bytes::len).sum();
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        for (n, v) in &self.encryption {
            if matches!(method, Method::PUT | Method::POST) {
                headers.insert(n.clone(), v.clone());
            }
        }
        if let Some(credential) = self.credential(op, key).await? {
            let mut signed = http::Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .body(object_store::client::HttpRequestBody::empty())
                .map_err(|e| {
                    Error::invalid_input(op, NAME, format!("not a valid request: {e}"))
                        .with_key(key)
                })?;
            *signed.headers_mut() = headers;
            let digest = match (&chunks, self.sign_payload) {
                (_, false) => None,
                (Some(c), true) => Some(sha256(c)),
                (None, true) => Some(sha256(&[])),
            };
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .with_sign_payload(self.sign_payload)
                .with_request_payer(self.request_payer)
                .try_authorize(&mut signed, digest.as_ref().map(|d| d.as_ref()))
                .map_err(|e| super::super::object_store_core::map_error(NAME, op, key, e))?;
            headers = std::mem::take(signed.headers_mut());
        }
        let mut builder = self.http.request(method, url).headers(headers);
        builder = match chunks {
            None => builder,
            Some(mut c) if c.len() <= 1 => builder.body(c.pop().unwrap_or_default()),
            Some(c) => builder.body(reqwest::Body::wrap_stream(futures::stream::iter(
                c.into_iter().map(Ok::<_, std::io::Error>),
            ))),
        };
        let resp = builder.send().await.map_err(|e| transport(op, key, &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        Err(status_error(op, key, status, resp).await)
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

/// A failure before any answer: the connection, the time limit.
pub(super) fn transport(op: Op, key: &str, e: &reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Other
    };
    let mut text = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        text = format!("{text}: {src}");
    }
    Error::new(
        kind,
        op,
        NAME,
        format!(
            "request failed: {}",
            crate::backend::http_status::scrub(&text)
        ),
    )
    .with_key(key)
    .with_retryable(true)
}

/// The typed error of an answer outside 2xx: the status and the provider's code, never the
/// body (services echo what was signed).
async fn status_error(op: Op, key: &str, status: u16, resp: reqwest::Response) -> Error {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let (kind, retryable) = kind_for_status(status, &text);
    Error::new(
        kind,
        op,
        NAME,
        format!("HTTP {status}{}", provider_code(&text)),
    )
    .with_key(key)
    .with_retryable(retryable)
}

/// Reads a whole (small) answer body.
pub(super) async fn body_of(op: Op, key: &str, resp: reqwest::Response) -> Result<Bytes> {
    resp.bytes().await.map_err(|e| transport(op, key, &e))
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

    #[test]
    fn query_values_are_strictly_encoded() {
        assert_eq!(
            query(&[("list-type", "2"), ("prefix", "a b+c/ü")]),
            "list-type=2&prefix=a%20b%2Bc%2F%C3%BC"
        );
        assert_eq!(query(&[("uploads", ""), ("prefix", "")]), "uploads&prefix=");
    }
}
