//! Google Cloud Storage (and fake-gcs-server), over the JSON API with `gcloud-storage`.
//!
//! `object_store`'s GCS store writes through the XML API, which the GCS emulator lacks, so
//! this backend uses the JSON and upload APIs instead.
//!
//! Configuration: `STORAGE_EMULATOR_HOST` (endpoint, anonymous access) and
//! `GOOGLE_APPLICATION_CREDENTIALS` from the environment; options `endpoint`,
//! `anonymous` (`true`/`false`) and `service_account_path` take precedence. Without an
//! emulator endpoint or `anonymous`, credentials are found as Google's client libraries do
//! (credentials file, then the metadata server), on first use.
//!
//! # How the SPI maps onto GCS
//!
//! - ETags are object *generations* (`"1700000000000000"`): conditions become
//!   `ifGenerationMatch` (`Create` is generation 0).
//! - A read fetches the object's metadata, evaluates the conditions and the range, then
//!   downloads exactly that generation, so a read never mixes two versions (and conditional
//!   reads work on the emulator, which ignores conditions on downloads).
//! - Multipart uploads are *compose* uploads: each part is a temporary object under
//!   `.cloudstore/uploads/<id>/` at the bucket root, uploaded independently (in parallel, in
//!   any order); completion composes them, 32 at a time, into the object with the condition,
//!   content type and metadata, then deletes them; abort deletes them. A manifest object
//!   beside the parts names the key, so any process can complete, abort or list uploads.
//!   Keys whose first segment is `.cloudstore` are reserved and never listed.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::SourceObjects;
use gcloud_storage::http::objects::compose::{ComposeObjectRequest, ComposingTargets};
use gcloud_storage::http::objects::copy::CopyObjectRequest;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::patch::PatchObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use tokio::sync::OnceCell;

use super::checks::{
    check_get_conditions, check_key, check_mode, check_object_size, check_part, check_part_list,
    resolve_range,
};
use super::{Backend, Capabilities, TIB};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest, PutMode,
    PutOptions, UploadId,
};

const NAME: &str = "gcs";
/// The reserved first key segment holding multipart staging.
const RESERVED: &str = ".cloudstore";
const UPLOADS: &str = ".cloudstore/uploads/";
/// GCS composes at most 32 sources per request.
const COMPOSE_FANIN: usize = 32;

/// A bucket on Google Cloud Storage.
#[derive(Clone)]
pub struct GcsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: String,
    endpoint: Option<String>,
    anonymous: bool,
    credentials_file: Option<String>,
    client: OnceCell<Client>,
    caps: Capabilities,
}

impl fmt::Debug for GcsBackend {
    // Never the credentials: only where the data lives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsBackend")
            .field("bucket", &self.inner.bucket)
            .field("endpoint", &self.inner.endpoint)
            .field("anonymous", &self.inner.anonymous)
            .finish_non_exhaustive()
    }
}

/// GCS limits as this backend uses them: any part size (compose has no minimum), objects up
/// to 5 TiB, at most 10,000 parts per upload.
pub fn gcs_capabilities(signing: bool) -> Capabilities {
    Capabilities {
        min_part_size: 1,
        max_part_size: 5 * TIB,
        max_parts: 10_000,
        max_object_size: Some(5 * TIB),
        presign: signing,
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        // The upload's manifest is written when it is created.
        create_multipart_round_trip: true,
        ..Capabilities::s3_like()
    }
}

fn config_error(message: String) -> Error {
    Error::invalid_input(Op::Configure, NAME, message)
}

/// What an upload's manifest records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    key: Key,
    content_type: Option<String>,
    metadata: Metadata,
    initiated_unix_ms: u64,
}

fn map_error(op: Op, key: &str, e: gcloud_storage::http::Error) -> Error {
    use gcloud_storage::http::Error as E;
    let (kind, retryable, message) = match &e {
        E::Response(r) => {
            let (kind, retryable) = super::http_status::kind_for_status(r.code, &r.message);
            let reason = r
                .errors
                .first()
                .map(|i| i.reason.as_str())
                .unwrap_or_default();
            (
                kind,
                retryable,
                format!("HTTP {} ({reason}): {}", r.code, r.message),
            )
        }
        E::HttpClient(h) | E::RawResponse(h, _) => {
            let kind = if h.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Other
            };
            let status = h.status().map(|s| s.as_u16());
            match status {
                Some(s) => {
                    let (kind, retryable) = super::http_status::kind_for_status(s, "");
                    (kind, retryable, format!("HTTP {s}"))
                }
                None => (kind, true, format!("request failed: {h}")),
            }
        }
        E::TokenSource(_) => (
            ErrorKind::Unauthenticated,
            false,
            "no usable credentials".into(),
        ),
        E::InvalidRangeHeader(h) => (
            ErrorKind::Other,
            true,
            format!("unexpected range header {h}"),
        ),
        E::HttpMiddleware(_) => (ErrorKind::Other, true, "request failed".into()),
    };
    Error::new(kind, op, NAME, super::http_status::scrub(&message))
        .with_key(key)
        .with_retryable(retryable)
}

/// The generation an ETag of this backend names; `None` if it is not one of ours.
fn generation_of(etag: &str) -> Option<i64> {
    etag.trim_matches('"').parse().ok()
}

fn etag_of(generation: i64) -> String {
    format!("\"{generation}\"")
}

fn meta_of(op: Op, o: Object) -> Result<ObjectMeta> {
    let key = Key::new(o.name.as_str()).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            op,
            NAME,
            format!("the service returned an invalid key: {}", e.message()),
        )
        .with_key(o.name.as_str())
    })?;
    let when = o.updated.or(o.time_created).map(SystemTime::from);
    Ok(ObjectMeta {
        key,
        size: o.size.max(0) as u64,
        etag: Some(etag_of(o.generation)),
        last_modified: when.unwrap_or(SystemTime::UNIX_EPOCH),
        version: Some(o.generation.to_string()),
        content_type: o.content_type,
        metadata: o
            .metadata
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
        crc32c: None,
        source_etag: None,
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl GcsBackend {
    /// A backend for `bucket`, configured from the environment and then `options`.
    pub fn new(bucket: &str, options: &StoreOptions) -> Result<GcsBackend> {
        const KNOWN: &[&str] = &[
            "endpoint",
            "anonymous",
            "service_account_path",
            "max_retries",
            "allow_http",
        ];
        if let Some(n) = options.names().find(|n| !KNOWN.contains(n)) {
            return Err(config_error(format!(
                "unknown option '{n}' for gs:// (known: {})",
                KNOWN.join(", ")
            )));
        }
        let emulator = std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|v| !v.is_empty());
        let endpoint = options
            .get("endpoint")
            .map(str::to_string)
            .or(emulator.clone());
        let anonymous = match options.get("anonymous") {
            Some(v) => matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
            None => emulator.is_some(),
        };
        let credentials_file = options
            .get("service_account_path")
            .map(str::to_string)
            .or_else(|| std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok());
        if let Some(ep) = &endpoint {
            let url = url::Url::parse(ep)
                .map_err(|e| config_error(format!("option 'endpoint' is not a URL: {e}")))?;
            // STORAGE_EMULATOR_HOST names the emulator: plain HTTP is its explicit choice.
            let from_emulator_env = options.get("endpoint").is_none();
            let allowed = options
                .get("allow_http")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
            if url.scheme() == "http" && !allowed && !from_emulator_env {
                return Err(config_error(
                    "the endpoint uses plain HTTP; set allow_http=true to allow it (local \
                     emulators, trusted networks)"
                        .to_string(),
                ));
            }
        }
        // A URL can be signed with a service account's private key.
        let signing = !anonymous && credentials_file.is_some();
        Ok(GcsBackend {
            inner: Arc::new(Inner {
                bucket: bucket.to_string(),
                endpoint,
                anonymous,
                credentials_file,
                client: OnceCell::new(),
                caps: gcs_capabilities(signing),
            }),
        })
    }

    /// Declares different capabilities. Declared-absent features answer `Unsupported`.
    pub fn with_capabilities(self, caps: Capabilities) -> Self {
        let i = &self.inner;
        GcsBackend {
            inner: Arc::new(Inner {
                bucket: i.bucket.clone(),
                endpoint: i.endpoint.clone(),
                anonymous: i.anonymous,
                credentials_file: i.credentials_file.clone(),
                client: OnceCell::new(),
                caps,
            }),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The client, created (and authenticated) on first use.
    async fn client(&self, op: Op) -> Result<&Client> {
        let i = &self.inner;
        i.client
            .get_or_try_init(|| async {
                let mut cfg = ClientConfig::default();
                if let Some(ep) = &i.endpoint {
                    cfg.storage_endpoint = ep.trim_end_matches('/').to_string();
                }
                let cfg = if i.anonymous {
                    cfg.anonymous()
                } else {
                    let auth = match &i.credentials_file {
                        Some(path) => {
                            let file = gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile::new_from_file(path.clone())
                                .await
                                .map_err(|e| Error::new(ErrorKind::Unauthenticated, op, NAME, format!("cannot read the credentials file: {e}")))?;
                            cfg.with_credentials(file).await
                        }
                        None => cfg.with_auth().await,
                    };
                    auth.map_err(|e| Error::new(ErrorKind::Unauthenticated, op, NAME, format!("no usable credentials: {e}")))?
                };
                Ok(Client::new(cfg))
            })
            .await
    }

    fn reserved(&self, op: Op, key: &Key) -> Result<()> {
        if key.segments().next() == Some(RESERVED) {
            return Err(Error::invalid_input(
                op,
                NAME,
                format!("keys under '{RESERVED}/' are reserved by the gcs backend"),
            )
            .with_key(key.as_str()));
        }
        Ok(())
    }

    fn object_req(&self, key: &str) -> GetObjectRequest {
        GetObjectRequest {
            bucket: self.inner.bucket.clone(),
            object: key.to_string(),
            ..Default::default()
        }
    }

    async fn upload(
        &self,
        op: Op,
        name: &str,
        data: Payload,
        object: Object,
        generation_match: Option<i64>,
    ) -> Result<Object> {
        let client = self.client(op).await?;
        let req = UploadObjectRequest {
            bucket: self.inner.bucket.clone(),
            if_generation_match: generation_match,
            ..Default::default()
        };
        // The multipart upload type carries metadata and is the one whose preconditions
        // the emulator enforces.
        let body: Vec<Bytes> = data.into_chunks();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(
            body.into_iter().map(Ok::<_, std::io::Error>),
        ));
        let wanted_type = object.content_type.clone();
        let upload = UploadType::Multipart(Box::new(Object {
            name: name.to_string(),
            ..object
        }));
        let o = client
            .upload_object(&req, body, &upload)
            .await
            .map_err(|e| map_error(op, name, e))?;
        match wanted_type {
            // Some servers (the emulator) take the type from the media part, which the
            // client leaves untyped: set it on exactly the generation just written.
            Some(ct) if o.content_type.as_deref() != Some(ct.as_str()) => {
                let patch = PatchObjectRequest {
                    bucket: self.inner.bucket.clone(),
                    object: name.to_string(),
                    if_generation_match: Some(o.generation),
                    metadata: Some(Object {
                        content_type: Some(ct),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                match client.patch_object(&patch).await {
                    Ok(o) => Ok(o),
                    // The emulator answers a patch with a body the client cannot decode;
                    // the patch applied, so read the object instead.
                    Err(gcloud_storage::http::Error::HttpClient(e)) if e.is_decode() => {
                        self.stat(op, name).await
                    }
                    Err(e) => Err(map_error(op, name, e)),
                }
            }
            _ => Ok(o),
        }
    }

    async fn stat(&self, op: Op, key: &str) -> Result<Object> {
        let client = self.client(op).await?;
        client
            .get_object(&self.object_req(key))
            .await
            .map_err(|e| map_error(op, key, e))
    }

    async fn remove(&self, op: Op, name: &str) -> Result<()> {
        let client = self.client(op).await?;
        let req = DeleteObjectRequest {
            bucket: self.inner.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        match client.delete_object(&req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mapped = map_error(op, name, e);
                if mapped.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(mapped)
                }
            }
        }
    }

    /// Every object name under `prefix` (all pages).
    async fn names_under(&self, op: Op, prefix: &str) -> Result<Vec<String>> {
        let client = self.client(op).await?;
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let req = ListObjectsRequest {
                bucket: self.inner.bucket.clone(),
                prefix: Some(prefix.to_string()),
                page_token: token,
                ..Default::default()
            };
            let res = client
                .list_objects(&req)
                .await
                .map_err(|e| map_error(op, prefix, e))?;
            names.extend(res.items.unwrap_or_default().into_iter().map(|o| o.name));
            match res.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(names),
            }
        }
    }

    fn upload_dir(op: Op, key: &Key, id: &UploadId) -> Result<String> {
        let valid =
            id.0.len() == 32 && id.0.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(no_upload(op, key, id));
        }
        Ok(format!("{UPLOADS}{}/", id.0))
    }

    async fn manifest(&self, op: Op, key: &Key, id: &UploadId) -> Result<(String, Manifest)> {
        let dir = Self::upload_dir(op, key, id)?;
        let name = format!("{dir}upload.json");
        let client = self.client(op).await?;
        let raw = match client
            .download_object(&self.object_req(&name), &Range::default())
            .await
        {
            Ok(raw) => raw,
            Err(e) => {
                let mapped = map_error(op, key.as_str(), e);
                return Err(if mapped.kind() == ErrorKind::NotFound {
                    no_upload(op, key, id)
                } else {
                    mapped
                });
            }
        };
        let m: Manifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::new(ErrorKind::Other, op, NAME, "corrupt upload manifest")
                .with_key(key.as_str())
                .with_source(e)
        })?;
        if &m.key != key {
            return Err(no_upload(op, key, id));
        }
        Ok((dir, m))
    }

    async fn compose(
        &self,
        op: Op,
        destination: &str,
        sources: Vec<SourceObjects>,
        object: Option<Object>,
        generation_match: Option<i64>,
    ) -> Result<Object> {
        let client = self.client(op).await?;
        let req = ComposeObjectRequest {
            bucket: self.inner.bucket.clone(),
            destination_object: destination.to_string(),
            composing_targets: ComposingTargets {
                destination: object,
                source_objects: sources,
            },
            if_generation_match: generation_match,
            ..Default::default()
        };
        client
            .compose_object(&req)
            .await
            .map_err(|e| map_error(op, destination, e))
    }
}

/// The smallest string after every string that starts with `prefix` (which ends in `/`).
fn after_prefix(prefix: &str) -> String {
    match prefix.strip_suffix('/') {
        Some(p) => format!("{p}0"),
        None => prefix.to_string(),
    }
}

fn no_upload(op: Op, key: &Key, id: &UploadId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        op,
        NAME,
        format!("no multipart upload {:?} for this key", id.0),
    )
    .with_key(key.as_str())
}

/// The `ifGenerationMatch` a write mode asks for; an ETag that is no generation can match
/// nothing, so it fails the condition.
fn generation_match(op: Op, key: &Key, mode: &PutMode) -> Result<Option<i64>> {
    match mode {
        PutMode::Overwrite => Ok(None),
        PutMode::Create => Ok(Some(0)),
        PutMode::IfMatch(etag) => generation_of(etag).map(Some).ok_or_else(|| {
            Error::new(
                ErrorKind::PreconditionFailed,
                op,
                NAME,
                format!("{etag} is not a tag of any object here"),
            )
            .with_key(key.as_str())
        }),
    }
}

/// Maps a failed precondition to what the mode means by it.
fn condition_error(op: Op, key: &Key, mode: &PutMode, e: Error) -> Error {
    match (mode, e.kind()) {
        (PutMode::Create, ErrorKind::PreconditionFailed) => {
            Error::already_exists(op, NAME, key.as_str())
        }
        _ => e,
    }
}

fn attributes(opts_ct: Option<String>, md: Metadata) -> Object {
    Object {
        content_type: opts_ct,
        metadata: (!md.is_empty()).then(|| md.into_iter().collect()),
        ..Default::default()
    }
}

#[async_trait]
impl Backend for GcsBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let op = Op::Put;
        let caps = &self.inner.caps;
        check_mode(NAME, op, key, &caps.put_modes, &opts.mode)?;
        check_key(NAME, op, key, caps)?;
        check_object_size(NAME, op, key, caps, data.len())?;
        self.reserved(op, key)?;
        let gm = generation_match(op, key, &opts.mode)?;
        let object = attributes(opts.content_type.clone(), opts.metadata.clone());
        let o = self
            .upload(op, key.as_str(), data, object, gm)
            .await
            .map_err(|e| condition_error(op, key, &opts.mode, e))?;
        meta_of(op, o)
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let op = Op::Get;
        for attempt in 0..3 {
            let meta = meta_of(op, self.stat(op, key.as_str()).await?)?;
            check_get_conditions(NAME, key, opts, &meta)?;
            let range = resolve_range(NAME, key, opts, meta.size)?;
            if range.is_empty() {
                return Ok(GetResult {
                    meta,
                    range,
                    body: futures::stream::empty().boxed(),
                });
            }
            let generation = meta.version.as_deref().and_then(|g| g.parse().ok());
            let req = GetObjectRequest {
                generation,
                ..self.object_req(key.as_str())
            };
            let r = if range.start == 0 && range.end == meta.size {
                Range::default()
            } else {
                Range(Some(range.start), Some(range.end - 1))
            };
            let client = self.client(op).await?;
            match client.download_streamed_object(&req, &r).await {
                Ok(stream) => {
                    let k = key.as_str().to_string();
                    let body = stream.map_err(move |e| map_error(Op::Get, &k, e)).boxed();
                    return Ok(GetResult { meta, range, body });
                }
                Err(e) => {
                    let mapped = map_error(op, key.as_str(), e);
                    // The generation was replaced between the two requests: read again.
                    if mapped.kind() != ErrorKind::NotFound || attempt == 2 {
                        return Err(mapped);
                    }
                }
            }
        }
        Err(Error::not_found(op, NAME, key.as_str()))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        meta_of(Op::Head, self.stat(Op::Head, key.as_str()).await?)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.reserved(Op::Delete, key)?;
        self.remove(Op::Delete, key.as_str()).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let op = Op::List;
        // Nothing under the reserved segment is listed.
        if req
            .prefix
            .strip_prefix(RESERVED)
            .is_some_and(|r| r.starts_with('/'))
        {
            return Ok(ListPage::default());
        }
        let limit = super::listing::limit(req, self.inner.caps.max_list_page);
        // Tokens are ours: `p:<token>` is the service's page token; `k:<key>` continues
        // after a key and `c:<prefix>` after a common prefix, for pages cut short here
        // because a server returned more entries than asked for.
        // `startOffset` is inclusive: the key itself is skipped when it comes back.
        let after = req.start_after.clone().filter(|_| !req.delimiter);
        let (page_token, start_offset, skip_key) = match req.token.as_deref() {
            None => (None, after.clone(), after),
            Some(t) => match t.split_at_checked(2) {
                Some(("p:", v)) => (Some(v.to_string()), after.clone(), after),
                Some(("k:", v)) => (None, Some(v.to_string()), Some(v.to_string())),
                Some(("c:", v)) => (None, Some(after_prefix(v)), None),
                _ => {
                    return Err(Error::invalid_input(
                        op,
                        NAME,
                        "not a listing token of this backend",
                    )
                    .with_key(req.prefix.as_str()));
                }
            },
        };
        let client = self.client(op).await?;
        let lreq = ListObjectsRequest {
            bucket: self.inner.bucket.clone(),
            prefix: (!req.prefix.is_empty()).then(|| req.prefix.clone()),
            delimiter: req.delimiter.then(|| "/".to_string()),
            page_token,
            start_offset,
            max_results: Some(limit as i32),
            ..Default::default()
        };
        let res = client
            .list_objects(&lreq)
            .await
            .map_err(|e| map_error(op, &req.prefix, e))?;
        enum Entry {
            Object(Box<ObjectMeta>),
            Prefix(String),
        }
        let mut entries: Vec<(String, Entry)> = Vec::new();
        for o in res.items.unwrap_or_default() {
            if o.name.starts_with(UPLOADS) || Some(&o.name) == skip_key.as_ref() {
                continue;
            }
            let Ok(mut m) = meta_of(op, o).inspect_err(|e| {
                tracing::warn!(backend = NAME, error = %e, "skipping an object whose name is not a valid key");
            }) else {
                continue;
            };
            m.content_type = None;
            crate::attributes::keep_records(&mut m.metadata);
            entries.push((m.key.as_str().to_string(), Entry::Object(Box::new(m))));
        }
        for p in res.prefixes.unwrap_or_default() {
            if p != format!("{RESERVED}/") {
                entries.push((p.clone(), Entry::Prefix(p)));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut next_token = res
            .next_page_token
            .filter(|t| !t.is_empty())
            .map(|t| format!("p:{t}"));
        if entries.len() > limit {
            entries.truncate(limit);
            next_token = entries.last().map(|(name, e)| match e {
                Entry::Object(_) => format!("k:{name}"),
                Entry::Prefix(_) => format!("c:{name}"),
            });
        }
        let mut page = ListPage {
            next_token,
            ..Default::default()
        };
        for (_, e) in entries {
            match e {
                Entry::Object(m) => page.objects.push(*m),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let op = Op::Copy;
        check_key(NAME, op, to, &self.inner.caps)?;
        self.reserved(op, to)?;
        super::checks::check_copy_mode(NAME, to, &self.inner.caps, &mode)?;
        let gm = generation_match(op, to, &mode.as_put_mode())?;
        let client = self.client(op).await?;
        let req = CopyObjectRequest {
            source_bucket: self.inner.bucket.clone(),
            source_object: from.as_str().to_string(),
            destination_bucket: self.inner.bucket.clone(),
            destination_object: to.as_str().to_string(),
            if_generation_match: gm,
            ..Default::default()
        };
        match client.copy_object(&req).await {
            Ok(o) => meta_of(op, o),
            Err(e) => {
                let mapped = map_error(op, to.as_str(), e);
                Err(match mapped.kind() {
                    ErrorKind::NotFound => Error::not_found(op, NAME, from.as_str()),
                    _ => condition_error(op, to, &mode.as_put_mode(), mapped),
                })
            }
        }
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let op = Op::CreateMultipart;
        check_key(NAME, op, key, &self.inner.caps)?;
        self.reserved(op, key)?;
        let id = UploadId(uuid::Uuid::new_v4().simple().to_string());
        let manifest = Manifest {
            key: key.clone(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            initiated_unix_ms: unix_ms(SystemTime::now()),
        };
        let raw = serde_json::to_vec(&manifest).map_err(|e| {
            Error::new(ErrorKind::Other, op, NAME, "cannot encode the manifest").with_source(e)
        })?;
        let name = format!("{}upload.json", Self::upload_dir(op, key, &id)?);
        let object = Object {
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        self.upload(op, &name, Payload::from(raw), object, None)
            .await?;
        Ok(id)
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let op = Op::PutPart;
        check_part(NAME, key, &self.inner.caps, part, data.len())?;
        let (dir, _) = self.manifest(op, key, upload).await?;
        let size = data.len();
        let name = format!("{dir}part-{:05}", part.get());
        let o = self
            .upload(op, &name, data, Object::default(), None)
            .await?;
        Ok(PartInfo {
            number: part,
            etag: etag_of(o.generation),
            size,
        })
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        super::checks::check_completion_metadata(NAME, key, &self.inner.caps, extra_metadata)?;
        let op = Op::CompleteMultipart;
        let caps = &self.inner.caps;
        check_mode(NAME, op, key, &caps.multipart_modes, mode)?;
        check_part_list(NAME, key, caps, parts)?;
        check_object_size(NAME, op, key, caps, parts.iter().map(|p| p.size).sum())?;
        let gm = generation_match(op, key, mode)?;
        let (dir, manifest) = self.manifest(op, key, upload).await?;
        let mut sources = Vec::with_capacity(parts.len());
        for p in parts {
            let generation = generation_of(&p.etag).ok_or_else(|| {
                Error::invalid_input(
                    op,
                    NAME,
                    format!("part {} has a tag this backend never gave", p.number),
                )
                .with_key(key.as_str())
            })?;
            let name = format!("{dir}part-{:05}", p.number.get());
            // The emulator does not check source generations, so check they exist as
            // listed: a part never uploaded must fail the completion.
            match self.stat(op, &name).await {
                Ok(o) if o.generation == generation && o.size.max(0) as u64 == p.size => {}
                Ok(_) => {
                    return Err(Error::invalid_input(
                        op,
                        NAME,
                        format!("part {} does not match the uploaded part", p.number),
                    )
                    .with_key(key.as_str()));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::invalid_input(
                        op,
                        NAME,
                        format!("part {} was never uploaded", p.number),
                    )
                    .with_key(key.as_str()));
                }
                Err(e) => return Err(e),
            }
            sources.push(SourceObjects {
                name,
                generation: Some(generation),
                object_preconditions: None,
            });
        }
        // Compose in rounds of at most 32 sources until one round makes the object.
        let mut round = 0;
        while sources.len() > COMPOSE_FANIN {
            let mut next = Vec::new();
            for (i, group) in sources.chunks(COMPOSE_FANIN).enumerate() {
                let name = format!("{dir}compose-{round}-{i:05}");
                let o = self.compose(op, &name, group.to_vec(), None, None).await?;
                next.push(SourceObjects {
                    name,
                    generation: Some(o.generation),
                    object_preconditions: None,
                });
            }
            sources = next;
            round += 1;
        }
        let mut metadata = manifest.metadata;
        metadata.extend(extra_metadata.clone());
        let object = attributes(manifest.content_type, metadata);
        let result = self
            .compose(op, key.as_str(), sources, Some(object), gm)
            .await
            .map_err(|e| condition_error(op, key, mode, e));
        let o = result?;
        // The parts, intermediate objects and manifest go; a failure here leaves debris
        // under .cloudstore/uploads/, never a wrong object.
        for name in self.names_under(op, &dir).await.unwrap_or_default() {
            let _ = self.remove(op, &name).await;
        }
        meta_of(op, o)
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let op = Op::AbortMultipart;
        let dir = match self.manifest(op, key, upload).await {
            Ok((dir, _)) => dir,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // Parts first, the manifest last: an interrupted abort can be repeated.
        let mut names = self.names_under(op, &dir).await?;
        names.sort_by_key(|n| n.ends_with("upload.json"));
        for name in names {
            self.remove(op, &name).await?;
        }
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let op = Op::ListMultipart;
        let client = self.client(op).await?;
        let mut out = Vec::new();
        for name in self.names_under(op, UPLOADS).await? {
            let Some(id) = name
                .strip_prefix(UPLOADS)
                .and_then(|r| r.strip_suffix("/upload.json"))
            else {
                continue;
            };
            let Ok(raw) = client
                .download_object(&self.object_req(&name), &Range::default())
                .await
            else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Manifest>(&raw) else {
                continue;
            };
            if m.key.as_str().starts_with(prefix) {
                out.push(MultipartUploadInfo {
                    key: m.key,
                    upload_id: UploadId(id.to_string()),
                    initiated: Some(
                        SystemTime::UNIX_EPOCH + Duration::from_millis(m.initiated_unix_ms),
                    ),
                });
            }
        }
        out.sort();
        Ok(out)
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        let op = Op::Presign;
        if !self.inner.caps.presign {
            return Err(
                Error::unsupported(op, NAME, "presigning needs a service account key")
                    .with_key(key.as_str()),
            );
        }
        let client = self.client(op).await?;
        let opts = gcloud_storage::sign::SignedURLOptions {
            method: match method {
                PresignMethod::Get => gcloud_storage::sign::SignedURLMethod::GET,
                PresignMethod::Put => gcloud_storage::sign::SignedURLMethod::PUT,
            },
            expires: expires_in,
            ..Default::default()
        };
        let url = client
            .signed_url(&self.inner.bucket, key.as_str(), None, None, opts)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Other, op, NAME, format!("cannot sign: {e}"))
                    .with_key(key.as_str())
            })?;
        let url = url::Url::parse(&url).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                op,
                NAME,
                format!("signed URL is invalid: {e}"),
            )
        })?;
        Ok(PresignedRequest {
            method,
            url,
            headers: Vec::new(),
        })
    }
}
