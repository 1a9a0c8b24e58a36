//! The part of the S3 and Azure backends that is the same for both: calling `object_store`
//! and mapping its types and errors onto ours. Wire protocols, signing and credentials stay
//! in `object_store`; this file only translates.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt};

use super::http_status::{kind_for_status, missing_container, provider_code, scrub};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, ObjectMeta,
    PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest, PutMode, PutOptions, UploadId,
};

/// Options read by this crate rather than passed to `object_store`'s builders.
pub(crate) const RETRY_OPTIONS: &[&str] = &["max_retries"];

/// `object_store`'s retry settings: off. Retries are cloudstore's `RetryBackend`'s (the
/// `max_retries` option, read by `Store::from_url`), with its budget and its handling of
/// conditional writes whose answer was lost, so a failing service sees one retry layer,
/// not two multiplied.
pub(crate) fn retry_config(
    name: &str,
    options: &crate::config::StoreOptions,
) -> Result<Option<object_store::RetryConfig>> {
    if let Some(v) = options.get("max_retries") {
        v.parse::<u32>().map_err(|_| {
            Error::invalid_input(
                Op::Configure,
                name,
                format!("option 'max_retries' has an invalid value '{v}'"),
            )
        })?;
    }
    Ok(Some(object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }))
}

/// Refuses a plain `http://` endpoint unless it was allowed explicitly: requests (and
/// their credentials) must not leave unencrypted by accident.
pub(crate) fn check_plain_http(name: &str, endpoint: Option<&str>, allowed: bool) -> Result<()> {
    let plain = endpoint.is_some_and(|e| {
        e.trim_start()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    });
    if plain && !allowed {
        return Err(Error::invalid_input(
            Op::Configure,
            name,
            "the endpoint uses plain HTTP; set allow_http=true to allow it (local emulators, \
             trusted networks)",
        ));
    }
    Ok(())
}

/// Whether an `object_store` `allow_http` setting says yes.
pub(crate) fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The client for the few requests built by hand: the configured `timeout` (default 60 s)
/// bounds each, so none can hang.
pub(crate) fn http_client(timeout: Option<String>) -> reqwest::Client {
    let timeout = timeout
        .as_deref()
        .and_then(crate::config::parse_duration)
        .unwrap_or(Duration::from_secs(60));
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_default()
}

/// What both cloud adapters hold.
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) name: &'static str,
    /// Whether metadata names must be escaped to be valid identifiers (Azure).
    pub(crate) escape_metadata_names: bool,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Arc<dyn MultipartStore>,
    pub(crate) signer: Arc<dyn Signer>,
    /// Listing with a plain string prefix, page tokens and a page size.
    pub(crate) lister: Arc<dyn PaginatedListStore>,
}

/// `key` as an `object_store` path, exactly: a key the path would change (it drops leading
/// and trailing `/`) or cannot hold (empty, `.` or `..` segments) is `Unsupported`, never
/// sent under another name.
pub(crate) fn path(op: Op, name: &str, key: &str) -> Result<Path> {
    let refuse = |why: String| {
        Error::unsupported(
            op,
            name,
            format!("this key cannot travel through object_store's paths: {why}"),
        )
        .with_key(key)
    };
    let p = Path::parse(key).map_err(|e| refuse(e.to_string()))?;
    if p.as_ref() != key {
        return Err(refuse("it would be sent as another name".into()));
    }
    Ok(p)
}

/// Finds the HTTP status and body of the request that failed. `object_store` keeps them
/// in a crate-private error type, so they are read from its message, which has the stable
/// form "Server returned non-2xx status code: 404 Not Found: <body>".
fn http_failure(e: &(dyn StdError + 'static)) -> Option<(u16, String)> {
    const STATUS: &str = "Server returned non-2xx status code: ";
    const ERROR_BODY: &str = "Server returned error response: ";
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        // A 200 whose body is an error, after object_store's own retries.
        if let Some(body) = text.strip_prefix(ERROR_BODY) {
            return Some((200, body.to_string()));
        }
        if let Some(rest) = text.strip_prefix(STATUS) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(status) = digits.parse() {
                let body = rest
                    .split_once(": ")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
                return Some((status, body));
            }
        }
        cur = err.source();
    }
    None
}

/// Whether the failure was a timeout of the connection or request.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            return h.kind() == object_store::client::HttpErrorKind::Timeout;
        }
        cur = err.source();
    }
    false
}

/// Maps an `object_store` error onto ours, naming the operation and key.
pub(crate) fn map_error(name: &str, op: Op, key: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let failure = http_failure(&e);
    let auth_failure = failure.as_ref().is_some_and(|(status, body)| {
        kind_for_status(*status, body).0 == ErrorKind::Unauthenticated
    });
    let (kind, retryable) = match (&e, &failure) {
        // object_store's own grouping knows the request's mode (a 412 on a create is
        // AlreadyExists), so it wins where it has one; a status refines the rest. A 409 is
        // decided by the provider's code: not every conflict is "already exists".
        (E::AlreadyExists { .. }, Some((409, body))) => kind_for_status(409, body),
        (E::NotFound { .. }, _) => (ErrorKind::NotFound, false),
        (E::AlreadyExists { .. }, _) => (ErrorKind::AlreadyExists, false),
        (E::Precondition { .. }, _) => (ErrorKind::PreconditionFailed, false),
        (E::NotModified { .. }, _) => (ErrorKind::NotModified, false),
        (E::PermissionDenied { .. }, _) if auth_failure => (ErrorKind::Unauthenticated, false),
        (E::PermissionDenied { .. }, _) => (ErrorKind::PermissionDenied, false),
        (E::Unauthenticated { .. }, _) => (ErrorKind::Unauthenticated, false),
        (E::NotSupported { .. } | E::NotImplemented { .. }, _) => (ErrorKind::Unsupported, false),
        (E::InvalidPath { .. }, _) => (ErrorKind::InvalidInput, false),
        (E::UnknownConfigurationKey { .. }, _) => (ErrorKind::InvalidInput, false),
        (_, Some((status, body))) => kind_for_status(*status, body),
        // Building a client sends nothing: what fails there is the configuration.
        _ if op == Op::Configure => (ErrorKind::InvalidInput, false),
        _ if timed_out(&e) => (ErrorKind::Timeout, true),
        // No HTTP status: the connection failed or the body was cut.
        _ => (ErrorKind::Other, true),
    };
    // Only the status and the provider's code: object_store's own messages carry request
    // URIs, which for SAS-authenticated stores would carry the signature.
    // Service bodies can echo what was signed (AWS SignatureDoesNotMatch carries the
    // canonical request, session token included; Azure echoes the MAC), so neither the
    // message nor the kept source repeats a body: status and code only.
    let (message, source) = match &failure {
        Some((status, body)) => {
            let m = format!("HTTP {status}{}", provider_code(body));
            (m.clone(), m)
        }
        None => {
            let chain = error_chain(&e);
            let cut = chain.split("Server returned").next().unwrap_or_default();
            (scrub(&e.to_string()), scrub(cut))
        }
    };
    Error::new(kind, op, name, message)
        .with_key(key)
        .with_retryable(retryable)
        .with_source(Scrubbed(source))
}

/// An error's message and its sources', joined.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// The underlying error, as text with secrets scrubbed (see [`scrub`]).
#[derive(Debug)]
struct Scrubbed(String);

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Scrubbed {}

fn to_system_time(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    t.into()
}

fn to_chrono(t: SystemTime) -> chrono::DateTime<chrono::Utc> {
    t.into()
}

/// The escape for metadata names a provider would refuse (see [`escape_name`]).
const ESCAPE: &str = "csx_";

/// Azure metadata names must be C# identifiers; S3 and GCS take any token. Names that are
/// identifiers (and do not start with the escape) pass unchanged; others travel as
/// `csx_` + hex of their bytes and come back as they were, so metadata moves between
/// clouds intact.
pub(crate) fn escape_name(name: &str) -> String {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier && !name.to_ascii_lowercase().starts_with(ESCAPE) {
        return name.to_string();
    }
    let mut out = String::from(ESCAPE);
    for b in name.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The inverse of [`escape_name`].
pub(crate) fn unescape_name(name: &str) -> String {
    let Some(hex) = name
        .get(..ESCAPE.len())
        .filter(|p| p.eq_ignore_ascii_case(ESCAPE))
        .map(|_| &name[ESCAPE.len()..])
    else {
        return name.to_string();
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .filter(|_| hex.len() % 2 == 0)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| name.to_string())
}

impl Core {
    /// The attributes as they travel: metadata values that are not plain header values
    /// encoded (see [`crate::attributes`]), names escaped where the service needs
    /// identifiers. Attributes no header can carry (a copy's, from a store with other
    /// rules) are `InvalidInput`, never a request that cannot be built.
    pub(crate) fn attributes_of(&self, op: Op, key: &Key, opts: &PutOptions) -> Result<Attributes> {
        let refuse =
            |what: String| Err(Error::invalid_input(op, self.name, what).with_key(key.as_str()));
        let mut a = Attributes::new();
        if let Some(ct) = &opts.content_type {
            if http::HeaderValue::from_str(ct).is_err() || ct.trim() != ct {
                return refuse(format!(
                    "content type {ct:?} cannot travel in a header (printable ASCII only)"
                ));
            }
            a.insert(Attribute::ContentType, ct.clone().into());
        }
        for (k, v) in &opts.metadata {
            let name = if self.escape_metadata_names {
                escape_name(k)
            } else {
                k.clone()
            };
            if http::HeaderName::from_bytes(format!("x-meta-{name}").as_bytes()).is_err() {
                return refuse(format!(
                    "metadata name {k:?} cannot travel in a header name here"
                ));
            }
            let value = crate::attributes::encode_header_value(v).into_owned();
            a.insert(Attribute::Metadata(name.into()), value.into());
        }
        Ok(a)
    }

    fn split_attributes(&self, attrs: &Attributes) -> (Option<String>, Metadata) {
        let mut ct = None;
        let mut md = Metadata::new();
        for (k, v) in attrs {
            match k {
                Attribute::ContentType => ct = Some(v.as_ref().to_string()),
                Attribute::Metadata(name) => {
                    let name = if self.escape_metadata_names {
                        unescape_name(name)
                    } else {
                        name.to_string()
                    };
                    md.insert(
                        name,
                        crate::attributes::decode_header_value(v.as_ref().as_bytes()),
                    );
                }
                _ => {}
            }
        }
        (ct, md)
    }
}

/// ETags in one form everywhere: quoted, as HTTP sends them (Azure listings leave the
/// quotes off while its HEAD answers keep them).
pub(crate) fn quoted_etag(etag: Option<String>) -> Option<String> {
    etag.map(|e| {
        if e.starts_with('"') || e.starts_with("W/") {
            e
        } else {
            format!("\"{e}\"")
        }
    })
}

/// Our metadata from theirs; the key must be one of ours.
pub(crate) fn meta_of(name: &str, op: Op, m: object_store::ObjectMeta) -> Result<ObjectMeta> {
    let key = Key::new(m.location.as_ref()).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            op,
            name,
            format!(
                "the service returned a key that is not valid here: {}",
                e.message()
            ),
        )
        .with_key(m.location.as_ref())
    })?;
    Ok(ObjectMeta {
        key,
        size: m.size,
        etag: quoted_etag(m.e_tag),
        last_modified: to_system_time(m.last_modified),
        version: m.version,
        content_type: None,
        metadata: Metadata::new(),
        crc32c: None,
        source_etag: None,
    })
}

fn get_range(r: &ByteRange) -> object_store::GetRange {
    match r {
        ByteRange::Bounded(r) => object_store::GetRange::Bounded(r.clone()),
        ByteRange::From(o) => object_store::GetRange::Offset(*o),
        ByteRange::Suffix(n) => object_store::GetRange::Suffix(*n),
    }
}

impl Core {
    pub(crate) fn err(&self, op: Op, key: &str) -> impl Fn(object_store::Error) -> Error + '_ {
        let key = key.to_string();
        move |e| map_error(self.name, op, &key, e)
    }

    pub(crate) async fn put(
        &self,
        key: &Key,
        data: Payload,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let op = Op::Put;
        let p = path(op, self.name, key.as_str())?;
        // A condition no header can carry (or an empty one, which a service would ignore)
        // must not become an unconditional write.
        crate::attributes::check_mode(&opts.mode)
            .map_err(|m| Error::invalid_input(op, self.name, m).with_key(key.as_str()))?;
        let mode = match &opts.mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
            PutMode::IfMatch(etag) => object_store::PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
        };
        let put = object_store::PutOptions {
            mode,
            attributes: self.attributes_of(op, key, opts)?,
            ..Default::default()
        };
        let size = data.len();
        let payload: object_store::PutPayload = data.into_chunks().into_iter().collect();
        let res = self.store.put_opts(&p, payload, put).await;
        let res = match (res, &opts.mode) {
            // If-Match against a missing object: the condition failed, whatever the service
            // calls it (S3 answers 404).
            (Err(e @ object_store::Error::NotFound { .. }), PutMode::IfMatch(_))
                if !http_failure(&e).is_some_and(|(_, body)| missing_container(&body)) =>
            {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    op,
                    self.name,
                    "no object exists, the write required an ETag",
                )
                .with_key(key.as_str()));
            }
            (r, _) => r.map_err(self.err(op, key.as_str()))?,
        };
        // A PUT answers only the ETag (and version): the time is the client's, close to the
        // service's; `head` gives the stored one.
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag: quoted_etag(res.e_tag),
            last_modified: SystemTime::now(),
            version: res.version,
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            crc32c: None,
            source_etag: None,
        })
    }

    pub(crate) async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let op = Op::Get;
        let p = path(op, self.name, key.as_str())?;
        crate::attributes::check_get_options(self.name, key.as_str(), opts)?;
        let o = object_store::GetOptions {
            if_match: opts.if_match.clone(),
            if_none_match: opts.if_none_match.clone(),
            if_modified_since: opts.if_modified_since.map(to_chrono),
            if_unmodified_since: opts.if_unmodified_since.map(to_chrono),
            range: opts.range.as_ref().map(get_range),
            ..Default::default()
        };
        let res = match self.store.get_opts(&p, o).await {
            Ok(r) => r,
            Err(e) => {
                let mapped = map_error(self.name, op, key.as_str(), e);
                // object_store checks the served range itself and reports a range the
                // object cannot satisfy as a generic error; it is the caller's input.
                if opts.range.is_some()
                    && mapped.kind() == ErrorKind::Other
                    && mapped.message().to_ascii_lowercase().contains("range")
                {
                    return Err(Error::invalid_input(
                        op,
                        self.name,
                        format!("range not satisfiable ({})", mapped.message()),
                    )
                    .with_key(key.as_str()));
                }
                return Err(mapped);
            }
        };
        let (ct, md) = self.split_attributes(&res.attributes);
        let range = res.range.clone();
        let mut meta = meta_of(self.name, op, res.meta.clone())?;
        meta.content_type = ct;
        meta.metadata = md;
        let (name, k) = (self.name, key.as_str().to_string());
        let body = res
            .into_stream()
            .map_err(move |e| map_error(name, Op::Get, &k, e))
            .boxed();
        Ok(GetResult { meta, range, body })
    }

    pub(crate) async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let op = Op::Head;
        let p = path(op, self.name, key.as_str())?;
        let o = object_store::GetOptions {
            head: true,
            ..Default::default()
        };
        let res = match self.store.get_opts(&p, o).await {
            Ok(r) => r,
            Err(e) => {
                let mapped = map_error(self.name, op, key.as_str(), e);
                // A HEAD answer has no body, so a 403 cannot say whether the credentials
                // are wrong or only not allowed: a one-byte GET tells.
                if mapped.kind() == ErrorKind::PermissionDenied {
                    let probe = object_store::GetOptions {
                        range: Some(object_store::GetRange::Bounded(0..1)),
                        ..Default::default()
                    };
                    if let Err(e2) = self.store.get_opts(&p, probe).await {
                        let m2 = map_error(self.name, op, key.as_str(), e2);
                        if m2.kind() == ErrorKind::Unauthenticated {
                            return Err(m2);
                        }
                    }
                }
                return Err(mapped);
            }
        };
        let (ct, md) = self.split_attributes(&res.attributes);
        let mut meta = meta_of(self.name, op, res.meta)?;
        meta.content_type = ct;
        meta.metadata = md;
        Ok(meta)
    }

    pub(crate) async fn delete(&self, key: &Key) -> Result<()> {
        let p = path(Op::Delete, self.name, key.as_str())?;
        match self.store.delete(&p).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(self.name, Op::Delete, key.as_str(), e)),
        }
    }

    pub(crate) async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let op = Op::Copy;
        let (f, t) = (
            path(op, self.name, from.as_str())?,
            path(op, self.name, to.as_str())?,
        );
        let opts = object_store::CopyOptions {
            mode: match mode {
                CopyMode::Overwrite => object_store::CopyMode::Overwrite,
                CopyMode::Create => object_store::CopyMode::Create,
                CopyMode::IfMatch(_) => {
                    return Err(
                        Error::unsupported(op, self.name, "copy-if-match").with_key(to.as_str())
                    );
                }
            },
            ..Default::default()
        };
        match self.store.copy_opts(&f, &t, opts).await {
            Ok(()) => {}
            // A missing source is named by the source key; anything else by the destination
            // (object_store's Azure AlreadyExists names the source).
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(map_error(self.name, op, from.as_str(), e));
            }
            Err(e) => return Err(map_error(self.name, op, to.as_str(), e)),
        }
        self.head(to).await
    }

    /// One page of `limit` entries starting at the service's `page_token`, in key order;
    /// objects stored under names that are not valid keys are skipped.
    pub(crate) async fn list(
        &self,
        req: &ListRequest,
        limit: usize,
        page_token: Option<String>,
    ) -> Result<ListPage> {
        let op = Op::List;
        let opts = PaginatedListOptions {
            delimiter: req.delimiter.then(|| "/".into()),
            max_keys: Some(limit),
            page_token,
            ..Default::default()
        };
        let prefix = (!req.prefix.is_empty()).then_some(req.prefix.as_str());
        let res = self
            .lister
            .list_paginated(prefix, opts)
            .await
            .map_err(|e| map_error(self.name, op, &req.prefix, e))?;
        let mut objects: Vec<ObjectMeta> = res
            .result
            .objects
            .into_iter()
            .filter_map(|m| listed(self.name, meta_of(self.name, op, m)))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut common_prefixes: Vec<String> = res
            .result
            .common_prefixes
            .into_iter()
            .map(|p| format!("{}/", p.as_ref()))
            .collect();
        common_prefixes.sort();
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token: res.page_token.filter(|t| !t.is_empty()),
        })
    }

    pub(crate) async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let op = Op::PutPart;
        let p = path(op, self.name, key.as_str())?;
        self.check_upload_id(op, key, upload)?;
        let size = data.len();
        let payload: object_store::PutPayload = data.into_chunks().into_iter().collect();
        // object_store numbers parts from 0; the services from 1.
        let idx = part.get() as usize - 1;
        let PartId { content_id } = self
            .multipart
            .put_part(&p, &upload.0, idx, payload)
            .await
            .map_err(self.err(op, key.as_str()))?;
        Ok(PartInfo {
            number: part,
            etag: content_id,
            size,
        })
    }

    /// Completion through `object_store`, for part lists numbered 1..=n without gaps (it
    /// numbers parts by their position in the list).
    pub(crate) async fn complete_contiguous(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        let p = path(op, self.name, key.as_str())?;
        let ids = parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        self.multipart
            .complete_multipart(&p, &upload.0, ids)
            .await
            .map_err(self.err(op, key.as_str()))?;
        self.head(key).await
    }

    /// An id with a `/`, a `?` or nothing in it was never issued by a service: no such
    /// upload, without asking (some services answer 400 instead of 404).
    pub(crate) fn check_upload_id(&self, op: Op, key: &Key, upload: &UploadId) -> Result<()> {
        if upload.0.is_empty() || upload.0.contains(['/', '?', '#', '&']) {
            return Err(Error::new(
                ErrorKind::NotFound,
                op,
                self.name,
                format!("no multipart upload {:?} for this key", upload.0),
            )
            .with_key(key.as_str()));
        }
        Ok(())
    }

    pub(crate) async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        let op = Op::Presign;
        let p = path(op, self.name, key.as_str())?;
        let m = match method {
            PresignMethod::Get => http::Method::GET,
            PresignMethod::Put => http::Method::PUT,
        };
        let url = self
            .signer
            .signed_url(m, &p, expires_in)
            .await
            .map_err(self.err(op, key.as_str()))?;
        Ok(PresignedRequest {
            method,
            url,
            headers: Vec::new(),
        })
    }
}

/// An object of a listing, or `None` (with a warning) when another tool stored it under a
/// name that is not a valid key here: one odd name must not fail the whole listing.
fn listed(name: &str, meta: Result<ObjectMeta>) -> Option<ObjectMeta> {
    meta.inspect_err(|e| {
        tracing::warn!(backend = name, error = %e, "skipping an object whose name is not a valid key");
    })
    .ok()
}

/// Sends a signed request built by hand (for the few operations `object_store` does not
/// expose) and returns the headers and body, mapping a failure status like every other
/// request.
pub(crate) async fn send_signed(
    name: &str,
    op: Op,
    key: &str,
    req: reqwest::RequestBuilder,
) -> Result<(http::HeaderMap, Bytes)> {
    let resp = req.send().await.map_err(|e| {
        let timeout = e.is_timeout();
        Error::new(
            if timeout {
                ErrorKind::Timeout
            } else {
                ErrorKind::Other
            },
            op,
            name,
            format!("request failed: {}", e.without_url()),
        )
        .with_key(key)
        .with_retryable(true)
    })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| {
        Error::new(
            ErrorKind::Other,
            op,
            name,
            format!("reading the response failed: {}", e.without_url()),
        )
        .with_key(key)
        .with_retryable(true)
    })?;
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&body);
        let (kind, retryable) = kind_for_status(status, &text);
        return Err(Error::new(
            kind,
            op,
            name,
            format!("HTTP {status}{}", provider_code(&text)),
        )
        .with_key(key)
        .with_retryable(retryable));
    }
    Ok((headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(&'static str);
    impl std::fmt::Display for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Fake {}

    fn generic(text: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Fake(text)),
        }
    }

    #[test]
    fn service_bodies_never_reach_messages_or_sources() {
        // A real AWS SignatureDoesNotMatch body echoes the canonical request.
        let e = generic(
            "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code>\
             <AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId><CanonicalRequest>x-amz-security-token:SESSIONSECRET\
             </CanonicalRequest></Error>",
        );
        let mapped = map_error("s3", Op::Get, "k", e);
        assert_eq!(mapped.kind(), ErrorKind::Unauthenticated);
        let shown = format!("{mapped} {mapped:?} {}", error_chain(&mapped));
        assert!(
            !shown.contains("SESSIONSECRET") && !shown.contains("AKIAEXAMPLE"),
            "{shown}"
        );
        assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
    }

    #[test]
    fn error_bodies_in_200_answers_and_conflicts_are_classified() {
        let slow = generic("Server returned error response: <Error><Code>SlowDown</Code></Error>");
        let m = map_error("s3", Op::Put, "k", slow);
        assert_eq!(m.kind(), ErrorKind::RateLimited);
        assert!(m.is_retryable());
        let lease = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: Box::new(Fake(
                "Server returned non-2xx status code: 409 Conflict: <Error><Code>LeaseIdMissing</Code></Error>",
            )),
        };
        assert_eq!(
            map_error("azure", Op::Put, "k", lease).kind(),
            ErrorKind::Other
        );
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: Box::new(Fake(
                "Server returned non-2xx status code: 409 Conflict: <Error><Code>BlobAlreadyExists</Code></Error>",
            )),
        };
        assert_eq!(
            map_error("azure", Op::Put, "k", exists).kind(),
            ErrorKind::AlreadyExists
        );
        let expired = generic(
            "Server returned non-2xx status code: 400 Bad Request: <Error><Code>ExpiredToken</Code></Error>",
        );
        assert_eq!(
            map_error("s3", Op::Get, "k", expired).kind(),
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn metadata_names_escape_and_come_back() {
        for name in [
            "owner",
            "run-id",
            "source.system",
            "csx_tricky",
            "Mixed_Case1",
            "ünï",
            "9lives",
        ] {
            let escaped = escape_name(name);
            assert!(
                escaped
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{escaped}"
            );
            assert_eq!(unescape_name(&escaped), name);
        }
        assert_eq!(escape_name("owner"), "owner");
    }
}
