//! [`ObjectStoreBackend`]: any object_store [`ObjectStore`] as a cloudstore [`Backend`].

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutPayload};

use super::path_of;
use crate::backend::{Backend, Capabilities, ConditionalModes, GIB, MIB, checks, listing};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata,
    MultipartUploadInfo, ObjectMeta, PartInfo, PartNumber, Payload, PutMode, PutOptions, UploadId,
};
use crate::store::Store;

/// The name this backend gives itself in errors, logs and metrics.
const NAME: &str = "object_store";

/// Where multipart uploads keep their parts and manifests inside the wrapped store; hidden
/// from listings, refused as a key.
const STAGING: &str = ".cloudstore-uploads";

/// Bytes per part when a completed upload is written into the wrapped store.
const WRITE_CHUNK: usize = 8 * MIB as usize;

/// Parts written at once when an upload completes.
const WRITE_CONCURRENCY: usize = 4;

/// Any object_store [`ObjectStore`] (its `InMemory`, `LocalFileSystem`, HTTP/WebDAV
/// store, a vendor's implementation) as a cloudstore [`Backend`], so that it gets the
/// `Store` API, the transfer engine, middleware and the conformance suite.
///
/// - Capabilities: [`ObjectStoreBackend::probe`] finds what the store holds (write
///   conditions, content type, user metadata, copy-if-absent, an object beside keys below
///   it) by trying each on scratch objects; [`ObjectStoreBackend::new`] assumes none of
///   them. [`ObjectStoreBackend::with_capabilities`] sets them outright.
/// - Keys are object_store [`Path`]s: keys a `Path` cannot name (empty or `.`/`..`
///   segments, a leading or trailing `/`, control characters) are refused (`InvalidInput`).
/// - Multipart uploads: object_store's uploads live in one process and take parts in
///   order, while cloudstore's take numbered parts in any order and can be completed by
///   another process. So parts are staged as objects under `.cloudstore-uploads/<id>/`
///   (with a manifest holding the key and attributes), and completing one writes the
///   listed parts in order into the store (one multipart upload of 8 MiB parts, or one
///   PUT when small) and removes the staging. Every byte is therefore written twice;
///   conditions on completion are not available (object_store has none for multipart).
/// - Listings: object_store promises no order, so a page reads the whole listing under
///   the prefix's directory and sorts it; this suits thousands of keys, not millions.
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    caps: Capabilities,
}

/// The capabilities assumed before probing: nothing optional.
fn base_capabilities() -> Capabilities {
    Capabilities {
        min_part_size: 1,
        max_part_size: 5 * GIB,
        max_parts: 10_000,
        max_object_size: None,
        put_modes: ConditionalModes::NONE,
        multipart_modes: ConditionalModes::NONE,
        copy_if_absent: false,
        copy_if_match: false,
        multipart_listing: true,
        complete_metadata: true,
        abort_discards_parts: true,
        presign: false,
        max_presign_expiry: std::time::Duration::ZERO,
        user_metadata: false,
        content_type: false,
        max_list_page: 1000,
        object_and_children: false,
        max_key_segment_len: Some(255),
        backslash_in_keys: true,
        raw_keys: false,
        dot_segments_in_keys: false,
        list_start_after: true,
        native_checksum: false,
        sends_crc64nvme: false,
        parallel_parts: true,
        // The wrapped store's creation may be a request or not.
        create_multipart_round_trip: false,
    }
}

impl ObjectStoreBackend {
    /// A backend over `inner` assuming no optional feature (see [`Self::probe`]).
    pub fn new(inner: Arc<dyn ObjectStore>) -> ObjectStoreBackend {
        ObjectStoreBackend {
            inner,
            caps: base_capabilities(),
        }
    }

    /// A backend over `inner` with the capabilities found by trying them: it writes,
    /// reads and deletes a few small objects under `.cloudstore-uploads/probe-<uuid>/`.
    pub async fn probe(inner: Arc<dyn ObjectStore>) -> Result<ObjectStoreBackend> {
        let mut backend = ObjectStoreBackend::new(inner);
        let base = format!("{STAGING}/probe-{}", uuid::Uuid::new_v4().simple());
        let result = backend.find_capabilities(&base).await;
        backend.remove_all(&base).await;
        backend.caps = result?;
        Ok(backend)
    }

    /// The same backend with these capabilities (for what probing cannot see, such as a
    /// key length limit).
    pub fn with_capabilities(mut self, caps: Capabilities) -> ObjectStoreBackend {
        self.caps = caps;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    async fn find_capabilities(&self, base: &str) -> Result<Capabilities> {
        let mut caps = self.caps.clone();
        let os = &self.inner;
        let at = |name: &str| Path::from(format!("{base}/{name}"));
        let err = |e| from_os(Op::Configure, "", e);
        let first = os.put(&at("x"), "x".into()).await.map_err(err)?;

        let again = os
            .put_opts(&at("x"), "y".into(), object_store::PutMode::Create.into())
            .await;
        caps.put_modes.create = accepted(again, ErrorKind::AlreadyExists)?;
        let stale = object_store::UpdateVersion {
            e_tag: Some(format!("{}-stale", first.e_tag.unwrap_or_default())),
            version: None,
        };
        let update = os
            .put_opts(
                &at("x"),
                "z".into(),
                object_store::PutMode::Update(stale).into(),
            )
            .await;
        caps.put_modes.if_match = accepted(update, ErrorKind::PreconditionFailed)?;

        caps.content_type = self
            .keeps(&at("ct"), Attribute::ContentType, "text/x-probe")
            .await?;
        caps.user_metadata = self
            .keeps(&at("md"), Attribute::Metadata("probe".into()), "1")
            .await?;

        let copy = os.copy_if_not_exists(&at("x"), &at("x")).await;
        caps.copy_if_absent = accepted(copy, ErrorKind::AlreadyExists)?;

        os.put(&at("leaf"), "x".into()).await.map_err(err)?;
        caps.object_and_children = os.put(&at("leaf/child"), "x".into()).await.is_ok();

        // The longest segment the store takes (a file system's names are limited, less
        // whatever a store adds to name its temporary files); 1,024 bytes or more is no
        // practical limit.
        let takes = |len: usize| {
            let path = at(&"s".repeat(len));
            async move { os.put(&path, "x".into()).await.is_ok() }
        };
        caps.max_key_segment_len = if takes(1024).await {
            None
        } else {
            let (mut ok, mut too_long) = (0usize, 1024usize);
            while too_long - ok > 1 {
                let mid = (ok + too_long) / 2;
                if takes(mid).await {
                    ok = mid;
                } else {
                    too_long = mid;
                }
            }
            Some(ok)
        };
        Ok(caps)
    }

    /// Whether an attribute written with an object comes back with it.
    async fn keeps(&self, path: &Path, attribute: Attribute, value: &'static str) -> Result<bool> {
        let attributes = Attributes::from_iter([(attribute.clone(), value)]);
        let put = self
            .inner
            .put_opts(path, "x".into(), attributes.into())
            .await;
        match put {
            Ok(_) => {}
            Err(e) if unsupported(&e) => return Ok(false),
            Err(e) => return Err(from_os(Op::Configure, "", e)),
        }
        let got = self
            .inner
            .get_opts(path, object_store::GetOptions::new().with_head(true))
            .await
            .map_err(|e| from_os(Op::Configure, "", e))?;
        Ok(got.attributes.get(&attribute).map(|v| v.as_ref()) == Some(value))
    }

    /// After a failed write, on a store that cannot hold an object beside keys below it:
    /// `Unsupported` if that is why (an object at a parent of `key`, or keys below it).
    async fn check_no_conflict(&self, key: &Key) -> Result<()> {
        let k = key.as_str();
        let mut conflict = false;
        for parent in k.match_indices('/').map(|(i, _)| &k[..i]) {
            if let Some(p) = path_of(parent)
                && self.inner.head(&p).await.is_ok()
            {
                conflict = true;
                break;
            }
        }
        if !conflict {
            let below = self.inner.list(Some(&Path::from(k))).next().await;
            conflict = matches!(below, Some(Ok(_)));
        }
        if conflict {
            return Err(Error::unsupported(
                Op::Put,
                NAME,
                "this store cannot hold an object beside keys below it \
                 (Capabilities::object_and_children is false)",
            )
            .with_key(k));
        }
        Ok(())
    }

    /// Deletes everything under `dir` (best effort: staging and probes).
    async fn remove_all(&self, dir: &str) {
        let listed = self
            .inner
            .list(Some(&Path::from(dir)))
            .map_ok(|m| m.location);
        let _ = self
            .inner
            .delete_stream(listed.boxed())
            .try_collect::<Vec<_>>()
            .await;
    }

    fn path(&self, op: Op, key: &Key) -> Result<Path> {
        checks::check_key(NAME, op, key, &self.caps)?;
        let k = key.as_str();
        if k == STAGING || k.starts_with(&format!("{STAGING}/")) {
            return Err(Error::invalid_input(
                op,
                NAME,
                format!("keys under {STAGING}/ hold this backend's multipart uploads"),
            )
            .with_key(k));
        }
        path_of(k).ok_or_else(|| {
            Error::invalid_input(
                op,
                NAME,
                "object_store's Path cannot name this key (empty or dot segments, a leading \
                 or trailing '/', or control characters)",
            )
            .with_key(k)
        })
    }

    fn attributes(&self, op: Op, key: &Key, opts: &PutOptions) -> Result<Attributes> {
        checks::check_attributes(NAME, op, key, &self.caps, opts)?;
        Ok(super::to_attributes(
            opts.content_type.as_ref(),
            &opts.metadata,
        ))
    }

    /// The object's metadata and attributes (a GET without a body).
    async fn stat(&self, op: Op, key: &Key, path: &Path) -> Result<ObjectMeta> {
        let res = self
            .inner
            .get_opts(path, object_store::GetOptions::new().with_head(true))
            .await
            .map_err(|e| from_os(op, key.as_str(), e))?;
        Ok(meta_of(key.clone(), &res.meta, &res.attributes))
    }

    fn staged(upload: &UploadId, name: &str) -> Path {
        Path::from(format!("{STAGING}/{}/{name}", upload.0))
    }

    async fn manifest(&self, op: Op, key: &Key, upload: &UploadId) -> Result<Manifest> {
        let unknown = || {
            Error::new(
                ErrorKind::NotFound,
                op,
                NAME,
                format!("no upload {} in progress", upload.0),
            )
            .with_key(key.as_str())
        };
        if upload.0.is_empty() || !upload.0.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let got = self
            .inner
            .get(&Self::staged(upload, "manifest"))
            .await
            .map_err(|e| from_os(op, key.as_str(), e));
        let bytes = match got {
            Ok(r) => r.bytes().await.map_err(|e| from_os(op, key.as_str(), e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(ErrorKind::Other, op, NAME, format!("upload manifest: {e}")))?;
        if manifest.key != key.as_str() {
            return Err(unknown());
        }
        Ok(manifest)
    }
}

/// An upload's record in the staging area.
#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    key: String,
    content_type: Option<String>,
    metadata: Metadata,
    initiated: SystemTime,
}

/// Whether a probe's answer shows the feature: the expected refusal means yes, "not
/// implemented" (or a store that ignored the condition) means no.
fn accepted<T>(answer: object_store::Result<T>, refusal: ErrorKind) -> Result<bool> {
    match answer {
        Ok(_) => Ok(false),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => {
            let e = from_os(Op::Configure, "", e);
            if e.kind() == refusal {
                Ok(true)
            } else {
                Err(e)
            }
        }
    }
}

fn unsupported(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
    )
}

/// object_store's error as cloudstore's, by variant.
fn from_os(op: Op, key: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let kind = match &e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        E::Precondition { .. } => ErrorKind::PreconditionFailed,
        E::NotModified { .. } => ErrorKind::NotModified,
        E::NotImplemented { .. } | E::NotSupported { .. } => ErrorKind::Unsupported,
        E::PermissionDenied { .. } => ErrorKind::PermissionDenied,
        E::Unauthenticated { .. } => ErrorKind::Unauthenticated,
        E::InvalidPath { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    let err = Error::new(kind, op, NAME, e.to_string());
    if key.is_empty() {
        err
    } else {
        err.with_key(key)
    }
}

/// An object's metadata; of its attributes, the content type and user metadata (a
/// `Store` has no place for the others a wrapped store may return).
fn meta_of(key: Key, meta: &object_store::ObjectMeta, attributes: &Attributes) -> ObjectMeta {
    let (content_type, metadata, _) = super::from_attributes(attributes);
    ObjectMeta {
        key,
        size: meta.size,
        etag: meta.e_tag.clone(),
        last_modified: SystemTime::from(meta.last_modified),
        version: meta.version.clone(),
        content_type,
        metadata,
        crc32c: None,
        source_etag: None,
    }
}

fn os_payload(data: Payload) -> PutPayload {
    data.into_chunks().into_iter().collect()
}

fn os_mode(mode: &PutMode) -> object_store::PutMode {
    match mode {
        PutMode::Overwrite => object_store::PutMode::Overwrite,
        PutMode::Create => object_store::PutMode::Create,
        PutMode::IfMatch(etag) => object_store::PutMode::Update(object_store::UpdateVersion {
            e_tag: Some(etag.clone()),
            version: None,
        }),
    }
}

#[async_trait]
impl Backend for ObjectStoreBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let path = self.path(Op::Put, key)?;
        checks::check_mode(NAME, Op::Put, key, &self.caps.put_modes, &opts.mode)?;
        let attributes = self.attributes(Op::Put, key, opts)?;
        let options = object_store::PutOptions {
            mode: os_mode(&opts.mode),
            attributes,
            ..Default::default()
        };
        if let Err(e) = self.inner.put_opts(&path, os_payload(data), options).await {
            let e = from_os(Op::Put, key.as_str(), e);
            if e.kind() == ErrorKind::Other && !self.caps.object_and_children {
                self.check_no_conflict(key).await?;
            }
            return Err(e);
        }
        self.stat(Op::Put, key, &path).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let path = self.path(Op::Get, key)?;
        if let Some(r) = &opts.range {
            r.validate()
                .map_err(|m| Error::invalid_input(Op::Get, NAME, m).with_key(key.as_str()))?;
        }
        let options = object_store::GetOptions {
            range: opts.range.clone().map(|r| match r {
                ByteRange::Bounded(r) => object_store::GetRange::Bounded(r),
                ByteRange::From(o) => object_store::GetRange::Offset(o),
                ByteRange::Suffix(n) => object_store::GetRange::Suffix(n),
            }),
            if_match: opts.if_match.clone(),
            if_none_match: opts.if_none_match.clone(),
            if_modified_since: opts.if_modified_since.map(Into::into),
            if_unmodified_since: opts.if_unmodified_since.map(Into::into),
            ..Default::default()
        };
        let res = match self.inner.get_opts(&path, options).await {
            Ok(res) => res,
            Err(e) => {
                let e = from_os(Op::Get, key.as_str(), e);
                // object_store reports a range the object cannot satisfy as a generic
                // error: cloudstore's answer is InvalidInput.
                if let (ErrorKind::Other, Some(range)) = (e.kind(), &opts.range) {
                    let meta = self.stat(Op::Get, key, &path).await?;
                    checks::resolve_range(NAME, key, &GetOptions::range(range.clone()), meta.size)?;
                }
                return Err(e);
            }
        };
        let meta = meta_of(key.clone(), &res.meta, &res.attributes);
        // A range the object cannot satisfy is refused alike everywhere (object_store
        // serves a suffix of an empty object as empty).
        checks::resolve_range(NAME, key, opts, meta.size)
            .map(|_| ())
            .or_else(|e| if opts.range.is_none() { Ok(()) } else { Err(e) })?;
        let range = res.range.clone();
        let k = key.as_str().to_string();
        let body = res
            .into_stream()
            .map_err(move |e| from_os(Op::Get, &k, e).with_retryable(true))
            .boxed();
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let path = self.path(Op::Head, key)?;
        self.stat(Op::Head, key, &path).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let path = self.path(Op::Delete, key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(from_os(Op::Delete, key.as_str(), e)),
        }
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        // object_store lists by directory: the prefix's directory, filtered to the prefix.
        let dir = req.prefix.rfind('/').map(|i| &req.prefix[..i]);
        let dir = match dir {
            Some(d) if !d.is_empty() => match path_of(d) {
                Some(p) => Some(p),
                // No Path names that directory, so no key below it can be listed.
                None => return Ok(ListPage::default()),
            },
            _ => None,
        };
        let after = req.resume_after();
        let mut objects: Vec<ObjectMeta> = self
            .inner
            .list(dir.as_ref())
            .map_err(|e| from_os(Op::List, "", e))
            .try_filter_map(|m| {
                let key = m.location.as_ref();
                let keep = key.starts_with(&req.prefix)
                    && !key.starts_with(STAGING)
                    && after.is_none_or(|a| key > a);
                let meta = keep
                    .then(|| Key::new(key).ok())
                    .flatten()
                    .map(|k| meta_of(k, &m, &Attributes::new()));
                futures::future::ready(Ok(meta))
            })
            .try_collect()
            .await?;
        objects.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        let req = ListRequest {
            token: after.map(str::to_string),
            ..req.clone()
        };
        Ok(listing::page(objects, &req, self.caps.max_list_page))
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        checks::check_copy_mode(NAME, to, &self.caps, &mode)?;
        let (src, dst) = (self.path(Op::Copy, from)?, self.path(Op::Copy, to)?);
        let copied = match mode {
            CopyMode::Create => self.inner.copy_if_not_exists(&src, &dst).await,
            _ => self.inner.copy(&src, &dst).await,
        };
        copied.map_err(|e| {
            let at = if matches!(e, object_store::Error::NotFound { .. }) {
                from
            } else {
                to
            };
            from_os(Op::Copy, at.as_str(), e)
        })?;
        self.stat(Op::Copy, to, &dst).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        self.path(Op::CreateMultipart, key)?;
        checks::check_attributes(NAME, Op::CreateMultipart, key, &self.caps, opts)?;
        let upload = UploadId(uuid::Uuid::new_v4().simple().to_string());
        let manifest = Manifest {
            key: key.as_str().to_string(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            initiated: SystemTime::now(),
        };
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::new(ErrorKind::Other, Op::CreateMultipart, NAME, e.to_string()))?;
        self.inner
            .put(&Self::staged(&upload, "manifest"), Bytes::from(json).into())
            .await
            .map_err(|e| from_os(Op::CreateMultipart, key.as_str(), e))?;
        Ok(upload)
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        checks::check_part(NAME, key, &self.caps, part, data.len())?;
        self.manifest(Op::PutPart, key, upload).await?;
        let size = data.len();
        let put = self
            .inner
            .put(
                &Self::staged(upload, &format!("{:05}", part.get())),
                os_payload(data),
            )
            .await
            .map_err(|e| from_os(Op::PutPart, key.as_str(), e))?;
        Ok(PartInfo {
            number: part,
            etag: put.e_tag.unwrap_or_default(),
            size,
        })
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        let path = self.path(op, key)?;
        checks::check_mode(NAME, op, key, &self.caps.multipart_modes, mode)?;
        checks::check_completion_metadata(NAME, key, &self.caps, metadata)?;
        let manifest = self.manifest(op, key, upload).await?;
        checks::check_part_list(NAME, key, &self.caps, parts)?;
        let mut opts = PutOptions {
            content_type: manifest.content_type,
            metadata: manifest.metadata,
            ..Default::default()
        };
        opts.metadata.extend(metadata.clone());
        let attributes = self.attributes(op, key, &opts)?;

        // The listed parts, in order, each exactly the version uploaded.
        let inner = self.inner.clone();
        let mut bytes = futures::stream::iter(parts.to_vec())
            .then(move |p| {
                let inner = inner.clone();
                let staged = Self::staged(upload, &format!("{:05}", p.number.get()));
                async move {
                    let opts = object_store::GetOptions::new()
                        .with_if_match((!p.etag.is_empty()).then_some(p.etag.clone()));
                    let res = inner.get_opts(&staged, opts).await.map_err(|e| match e {
                        object_store::Error::NotFound { .. }
                        | object_store::Error::Precondition { .. } => Error::invalid_input(
                            op,
                            NAME,
                            format!("part {} was not uploaded as listed", p.number),
                        ),
                        e => from_os(op, "", e),
                    })?;
                    Ok::<_, Error>(res.into_stream().map_err(move |e| from_os(op, "", e)))
                }
            })
            .try_flatten()
            .boxed();
        let total: u64 = parts.iter().map(|p| p.size).sum();
        if total <= WRITE_CHUNK as u64 {
            let mut chunks = Vec::new();
            while let Some(c) = bytes.try_next().await? {
                chunks.push(c);
            }
            let options = object_store::PutOptions {
                attributes,
                ..Default::default()
            };
            self.inner
                .put_opts(&path, chunks.into_iter().collect(), options)
                .await
                .map_err(|e| from_os(op, key.as_str(), e))?;
        } else {
            self.write_multipart(key, &path, attributes, bytes).await?;
        }
        self.remove_all(&format!("{STAGING}/{}", upload.0)).await;
        self.stat(op, key, &path).await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        match self.manifest(Op::AbortMultipart, key, upload).await {
            Ok(_) => {
                self.remove_all(&format!("{STAGING}/{}", upload.0)).await;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let listed: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&Path::from(STAGING)))
            .try_collect()
            .await
            .map_err(|e| from_os(Op::ListMultipart, "", e))?;
        let mut out = Vec::new();
        for m in listed {
            let mut parts = m.location.as_ref().rsplitn(3, '/');
            let (Some("manifest"), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(res) = self.inner.get(&m.location).await else {
                continue;
            };
            let Ok(bytes) = res.bytes().await else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            if !manifest.key.starts_with(prefix) {
                continue;
            }
            if let Ok(key) = Key::new(&manifest.key) {
                out.push(MultipartUploadInfo {
                    key,
                    upload_id: UploadId(id.to_string()),
                    initiated: Some(manifest.initiated),
                });
            }
        }
        out.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        Ok(out)
    }
}

impl ObjectStoreBackend {
    /// Writes `bytes` as one object_store multipart upload of [`WRITE_CHUNK`] parts,
    /// [`WRITE_CONCURRENCY`] at once; aborts it on failure.
    async fn write_multipart(
        &self,
        key: &Key,
        path: &Path,
        attributes: Attributes,
        mut bytes: futures::stream::BoxStream<'_, Result<Bytes>>,
    ) -> Result<()> {
        let op = Op::CompleteMultipart;
        let mut upload = self
            .inner
            .put_multipart_opts(path, attributes.into())
            .await
            .map_err(|e| from_os(op, key.as_str(), e))?;
        let written: Result<()> = async {
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut chunk = Vec::with_capacity(WRITE_CHUNK);
            loop {
                let next = bytes.try_next().await?;
                if let Some(b) = &next {
                    chunk.extend_from_slice(b);
                }
                let full = chunk.len() >= WRITE_CHUNK;
                if full || (next.is_none() && !chunk.is_empty()) {
                    let take = chunk.len().min(WRITE_CHUNK);
                    let rest = chunk.split_off(take);
                    let part = std::mem::replace(&mut chunk, rest);
                    in_flight.push(upload.put_part(Bytes::from(part).into()));
                    while in_flight.len() >= WRITE_CONCURRENCY {
                        if let Some(r) = in_flight.next().await {
                            r.map_err(|e| from_os(op, key.as_str(), e))?;
                        }
                    }
                }
                if next.is_none() && chunk.is_empty() {
                    break;
                }
            }
            while let Some(r) = in_flight.next().await {
                r.map_err(|e| from_os(op, key.as_str(), e))?;
            }
            upload
                .complete()
                .await
                .map_err(|e| from_os(op, key.as_str(), e))?;
            Ok(())
        }
        .await;
        if written.is_err() {
            let _ = upload.abort().await;
        }
        written
    }
}

impl Store {
    /// A store over any object_store [`ObjectStore`], with the capabilities
    /// [`ObjectStoreBackend::probe`] finds.
    pub async fn from_object_store(inner: Arc<dyn ObjectStore>) -> Result<Store> {
        Ok(Store::new(ObjectStoreBackend::probe(inner).await?))
    }
}
