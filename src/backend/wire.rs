//! What the S3 and Azure backends share on the wire: requests built for any key, answers
//! turned into typed errors, object metadata from headers, bodies held to their length.
//! Signing is each backend's (with `object_store`'s authorizers).

use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::http_status::{kind_for_status, missing_container, provider_code};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{Metadata, ObjectMeta, Payload, PutMode, PutOptions};

/// What a key's path keeps: unreserved characters and `/`.
pub(crate) const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// What a query value keeps: unreserved characters only (SigV4's canonical form).
pub(crate) const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Error bodies longer than this are cut before classification.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `key` percent-encoded for a URL path, `/` kept.
pub(crate) fn encode_path(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

/// A query string in a canonical encoding (unreserved characters kept), in the order
/// given; a flag without a value is written alone.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
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
pub(crate) struct Request<'a> {
    pub(crate) backend: &'static str,
    pub(crate) op: Op,
    /// The key (or prefix) errors name.
    pub(crate) key: &'a str,
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Payload>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        backend: &'static str,
        op: Op,
        key: &'a str,
        method: Method,
        url: url::Url,
    ) -> Self {
        Request {
            backend,
            op,
            key,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// Adds a header; a name or value no header can carry is `InvalidInput`.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::invalid_input(
                self.op,
                self.backend,
                format!("{name:?} cannot be a header name"),
            )
            .with_key(self.key)
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid_input(
                self.op,
                self.backend,
                format!("the value of {name} cannot travel in a header"),
            )
            .with_key(self.key)
        })?;
        self.headers.append(n, v);
        Ok(self)
    }

    pub(crate) fn body(mut self, body: Payload) -> Self {
        self.body = Some(body);
        self
    }

    /// The range and condition headers of a read (its ETags checked first).
    pub(crate) fn read_conditions(mut self, opts: &crate::object::GetOptions) -> Result<Self> {
        crate::attributes::check_get_options(self.backend, self.key, opts)?;
        if let Some(r) = &opts.range {
            self = self.header("range", &r.to_string())?;
        }
        if let Some(e) = &opts.if_match {
            self = self.header("if-match", e)?;
        }
        if let Some(e) = &opts.if_none_match {
            self = self.header("if-none-match", e)?;
        }
        if let Some(t) = opts.if_modified_since {
            self = self.header("if-modified-since", &http_date(t))?;
        }
        if let Some(t) = opts.if_unmodified_since {
            self = self.header("if-unmodified-since", &http_date(t))?;
        }
        Ok(self)
    }

    /// The condition headers of a write.
    pub(crate) fn condition(self, mode: &PutMode) -> Result<Self> {
        crate::attributes::check_mode(mode)
            .map_err(|m| Error::invalid_input(self.op, self.backend, m).with_key(self.key))?;
        match mode {
            PutMode::Overwrite => Ok(self),
            PutMode::Create => self.header("if-none-match", "*"),
            PutMode::IfMatch(etag) => self.header("if-match", etag),
        }
    }

    /// Content type (under `content_type`) and user metadata (under `meta_prefix` +
    /// `name(n)`), values encoded as [`crate::attributes`] says.
    pub(crate) fn attributes(
        mut self,
        opts: &PutOptions,
        content_type: &str,
        meta_prefix: &str,
        name: impl Fn(&str) -> String,
    ) -> Result<Self> {
        if let Some(ct) = &opts.content_type {
            if ct.trim() != ct {
                return Err(Error::invalid_input(
                    self.op,
                    self.backend,
                    "the content type cannot travel in a header",
                )
                .with_key(self.key));
            }
            self = self.header(content_type, ct)?;
        }
        for (n, value) in &opts.metadata {
            let encoded = crate::attributes::encode_header_value(value);
            self = self.header(&format!("{meta_prefix}{}", name(n)), &encoded)?;
        }
        Ok(self)
    }

    /// Sends the request with `headers` (the signed ones) and the body; an answer outside
    /// 2xx is a typed error.
    pub(crate) async fn send(
        self,
        http: &reqwest::Client,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let Request {
            backend,
            op,
            key,
            method,
            url,
            body,
            ..
        } = self;
        let mut builder = http.request(method, url).headers(headers);
        if let Some(body) = body {
            let mut chunks = body.into_chunks();
            builder = if chunks.len() <= 1 {
                builder.body(chunks.pop().unwrap_or_default())
            } else {
                builder.body(reqwest::Body::wrap_stream(futures::stream::iter(
                    chunks.into_iter().map(Ok::<_, std::io::Error>),
                )))
            };
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| transport(backend, op, key, &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) || status == 304 {
            return Ok(resp);
        }
        Err(status_error(backend, op, key, status, resp).await)
    }
}

/// `headers` with the body's length, which must be sent even for a streamed body.
pub(crate) fn with_length(mut headers: HeaderMap, body: Option<&Payload>) -> HeaderMap {
    if let Some(b) = body {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    headers
}

/// A failure before any answer: the connection, the time limit.
pub(crate) fn transport(backend: &str, op: Op, key: &str, e: &reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Other
    };
    // (The URL is left out; what is left is scrubbed of any query.)
    let mut text = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        text = format!("{text}: {src}");
    }
    Error::new(
        kind,
        op,
        backend,
        format!("request failed: {}", super::http_status::scrub(&text)),
    )
    .with_key(key)
    .with_retryable(true)
}

/// The typed error of an answer outside 2xx: the status and the provider's code, never the
/// body (services echo what was signed).
async fn status_error(
    backend: &str,
    op: Op,
    key: &str,
    status: u16,
    resp: reqwest::Response,
) -> Error {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
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
        backend,
        format!("HTTP {status}{}", provider_code(&text)),
    )
    .with_key(key)
    .with_retryable(retryable)
}

/// Reads a whole (small) answer body.
pub(crate) async fn body_of(
    backend: &str,
    op: Op,
    key: &str,
    resp: reqwest::Response,
) -> Result<Bytes> {
    resp.bytes()
        .await
        .map_err(|e| transport(backend, op, key, &e))
}

/// The errors of a failed conditional write, the same on every backend: `Create` over an
/// object is `AlreadyExists`; `IfMatch` over no object is `PreconditionFailed`.
pub(crate) fn condition_error(backend: &str, e: Error, mode: &PutMode) -> Error {
    match mode {
        PutMode::Create
            if matches!(
                e.kind(),
                ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists
            ) =>
        {
            Error::already_exists(e.op(), backend, e.key().unwrap_or_default())
        }
        PutMode::IfMatch(_)
            if e.kind() == ErrorKind::NotFound && !missing_container(e.message()) =>
        {
            Error::new(
                ErrorKind::PreconditionFailed,
                e.op(),
                backend,
                "no object exists, the write required an ETag",
            )
            .with_key(e.key().unwrap_or_default())
        }
        _ => e,
    }
}

pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// ETags in one form everywhere: quoted, as HTTP sends them.
pub(crate) fn quoted(etag: Option<&str>) -> Option<String> {
    etag.map(|e| {
        if e.starts_with('"') || e.starts_with("W/") {
            e.to_string()
        } else {
            format!("\"{e}\"")
        }
    })
}

/// An HTTP date (`Last-Modified`, listings of Azure).
pub(crate) fn http_time(t: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc2822(t)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// `t` as an HTTP date.
fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The object's metadata from the headers of a GET or HEAD answer: user metadata under
/// `meta_prefix` (names through `name`, values decoded), the version under
/// `version_header`.
fn meta_from_headers(
    key: &Key,
    headers: &HeaderMap,
    size: u64,
    meta_prefix: &str,
    name: impl Fn(&str) -> String,
    version_header: &str,
) -> ObjectMeta {
    let mut metadata = Metadata::new();
    for (n, value) in headers {
        if let Some(n) = n.as_str().strip_prefix(meta_prefix) {
            metadata.insert(
                name(n),
                crate::attributes::decode_header_value(value.as_bytes()),
            );
        }
    }
    ObjectMeta {
        key: key.clone(),
        size,
        etag: quoted(header(headers, "etag")),
        last_modified: header(headers, "last-modified")
            .and_then(http_time)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        version: header(headers, version_header).map(str::to_string),
        content_type: header(headers, "content-type").map(str::to_string),
        metadata,
        crc32c: None,
        source_etag: None,
    }
}

/// An answer that makes no sense: a retryable error.
pub(crate) fn garbage(backend: &str, op: Op, key: &str, what: &str) -> Error {
    Error::new(ErrorKind::Other, op, backend, what.to_string())
        .with_key(key)
        .with_retryable(true)
}

/// The byte range a GET answer holds, from its `content-range` (or the whole object), and
/// the object's size.
fn served_range(
    backend: &str,
    op: Op,
    key: &str,
    headers: &HeaderMap,
    partial: bool,
    want: Option<&crate::object::ByteRange>,
) -> Result<(std::ops::Range<u64>, u64)> {
    let length = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if !partial {
        let size = length
            .ok_or_else(|| garbage(backend, op, key, "an answer without a content length"))?;
        return Ok((0..size, size));
    }
    let cr = header(headers, "content-range")
        .ok_or_else(|| garbage(backend, op, key, "a partial answer without a content range"))?;
    // Some services answer an unsatisfiable range with a 206 that names no bytes
    // (`bytes */0`, `bytes 10-9/10`): the object's size is all the answer says.
    if let (Some(want), Some(total)) = (
        want,
        cr.rsplit_once('/').and_then(|(_, t)| t.parse::<u64>().ok()),
    ) && let Err(m) = want.resolve(total)
    {
        return Err(Error::invalid_input(op, backend, m).with_key(key));
    }
    let parse = || -> Option<(u64, u64, u64)> {
        let rest = cr.strip_prefix("bytes ")?;
        let (range, total) = rest.split_once('/')?;
        let (a, b) = range.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
    };
    let (start, last, total) =
        parse().ok_or_else(|| garbage(backend, op, key, "an unreadable content range"))?;
    if last < start || last >= total || length.is_some_and(|l| l != last - start + 1) {
        return Err(garbage(backend, op, key, "an inconsistent content range"));
    }
    Ok((start..last + 1, total))
}

/// Checks a GET answer against what was asked: the range (an unsatisfiable one is
/// `InvalidInput` however the service answered it) and the `If-Match` version.
fn check_served(
    backend: &str,
    op: Op,
    key: &str,
    opts: &crate::object::GetOptions,
    headers: &HeaderMap,
    range: &std::ops::Range<u64>,
    size: u64,
) -> Result<()> {
    if let Some(want) = &opts.range {
        match want.resolve(size) {
            Err(m) => return Err(Error::invalid_input(op, backend, m).with_key(key)),
            Ok(r) if r != *range => {
                return Err(garbage(
                    backend,
                    op,
                    key,
                    "the service answered another range than the one asked for",
                ));
            }
            Ok(_) => {}
        }
    }
    if let Some(want) = &opts.if_match
        && quoted(Some(want)) != quoted(header(headers, "etag"))
    {
        // The service ignored the condition: the object is another version.
        return Err(Error::new(
            ErrorKind::PreconditionFailed,
            op,
            backend,
            "the answer is of another version than the one required",
        )
        .with_key(key));
    }
    Ok(())
}

/// A body that must hold exactly `len` bytes: fewer or more is an error, never short or
/// long data.
fn exact_body(
    backend: &'static str,
    op: Op,
    key: &str,
    resp: reqwest::Response,
    len: u64,
) -> crate::object::ByteStream {
    let key = key.to_string();
    let inner = resp.bytes_stream().boxed();
    futures::stream::unfold(Some((inner, 0u64)), move |state| {
        let key = key.clone();
        async move {
            let (mut inner, seen) = state?;
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > len {
                        let e = garbage(backend, op, &key, "the body is longer than its length");
                        return Some((Err(e), None));
                    }
                    Some((Ok(chunk), Some((inner, seen))))
                }
                Some(Err(e)) => Some((Err(transport(backend, op, &key, &e)), None)),
                None if seen == len => None,
                None => {
                    let e = Error::new(
                        ErrorKind::Other,
                        op,
                        backend,
                        format!("the body ended after {seen} of {len} bytes"),
                    )
                    .with_key(key.as_str())
                    .with_retryable(true);
                    Some((Err(e), None))
                }
            }
        }
    })
    .boxed()
}

/// An error inside a 200 answer (S3 on completions and copies): a failure, retryable
/// unless its code says otherwise.
pub(crate) fn error_in_200(
    backend: &str,
    op: Op,
    key: &Key,
    body: &[u8],
    what: &str,
) -> Result<()> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("<Error>") {
        return Ok(());
    }
    let (kind, retryable) = kind_for_status(200, &text);
    Err(
        Error::new(kind, op, backend, format!("{what}{}", provider_code(&text)))
            .with_key(key.as_str())
            .with_retryable(retryable || kind == ErrorKind::Other),
    )
}

/// How one service names things on the wire: the headers of attributes and versions, and
/// the escape of metadata names.
pub(crate) struct Dialect {
    pub(crate) backend: &'static str,
    /// The header that sets an object's content type on a write.
    pub(crate) content_type: &'static str,
    /// The prefix of user metadata headers (`x-amz-meta-`).
    pub(crate) meta_prefix: &'static str,
    pub(crate) version_header: &'static str,
    /// A metadata name as it travels, and back.
    pub(crate) name_out: fn(&str) -> String,
    pub(crate) name_in: fn(&str) -> String,
}

impl Dialect {
    /// Content type and user metadata of `opts` on `req`.
    pub(crate) fn attributes<'a>(
        &self,
        req: Request<'a>,
        opts: &PutOptions,
    ) -> Result<Request<'a>> {
        req.attributes(opts, self.content_type, self.meta_prefix, self.name_out)
    }

    /// The object's metadata from the headers of a GET or HEAD answer.
    pub(crate) fn meta(&self, key: &Key, headers: &HeaderMap, size: u64) -> ObjectMeta {
        meta_from_headers(
            key,
            headers,
            size,
            self.meta_prefix,
            self.name_in,
            self.version_header,
        )
    }

    /// The object a write's answer describes: `opts`' attributes, the answer's ETag and
    /// version, its time (or now, where the answer carries none).
    pub(crate) fn written(
        &self,
        key: &Key,
        size: u64,
        opts: &PutOptions,
        headers: &HeaderMap,
    ) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size,
            etag: quoted(header(headers, "etag")),
            last_modified: header(headers, "last-modified")
                .and_then(http_time)
                .unwrap_or_else(SystemTime::now),
            version: header(headers, self.version_header).map(str::to_string),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            crc32c: None,
            source_etag: None,
        }
    }

    /// The object a HEAD answer describes.
    pub(crate) fn head_answer(
        &self,
        op: Op,
        key: &Key,
        resp: &reqwest::Response,
    ) -> Result<ObjectMeta> {
        let headers = resp.headers();
        let size = header(headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| garbage(self.backend, op, key.as_str(), "an answer without a length"))?;
        Ok(self.meta(key, headers, size))
    }

    /// A GET's answer as a [`GetResult`]: 416 and 304 as their errors, the served range
    /// and version checked against `opts`, the body held to its length.
    pub(crate) fn read_answer(
        &self,
        op: Op,
        key: &Key,
        opts: &crate::object::GetOptions,
        sent: Result<reqwest::Response>,
    ) -> Result<crate::object::GetResult> {
        let backend = self.backend;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.message().starts_with("HTTP 416") => {
                return Err(Error::invalid_input(
                    op,
                    backend,
                    format!("range not satisfiable ({})", e.message()),
                )
                .with_key(key.as_str()));
            }
            Err(e) => return Err(e),
        };
        if resp.status().as_u16() == 304 {
            return Err(Error::new(
                ErrorKind::NotModified,
                op,
                backend,
                "the object has not changed",
            )
            .with_key(key.as_str()));
        }
        let partial = resp.status().as_u16() == 206;
        let headers = resp.headers().clone();
        let (range, size) = served_range(
            backend,
            op,
            key.as_str(),
            &headers,
            partial,
            opts.range.as_ref(),
        )?;
        check_served(backend, op, key.as_str(), opts, &headers, &range, size)?;
        let meta = self.meta(key, &headers, size);
        let body = exact_body(backend, op, key.as_str(), resp, range.end - range.start);
        Ok(crate::object::GetResult { meta, range, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_strictly_encoded() {
        assert_eq!(
            query(&[("list-type", "2"), ("prefix", "a b+c/ü")]),
            "list-type=2&prefix=a%20b%2Bc%2F%C3%BC"
        );
        assert_eq!(query(&[("uploads", ""), ("prefix", "")]), "uploads&prefix=");
    }
}
