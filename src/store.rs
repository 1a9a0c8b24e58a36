//! [`Store`]: the cheap-to-clone handle most users touch.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use crate::backend::{Backend, Capabilities, FsBackend, MemoryBackend};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::{Key, KeyPolicy, validate_portable_prefix, validate_prefix};
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Listing,
    MultipartUploadInfo, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod,
    PresignedRequest, PutMode, PutOptions, UploadId,
};
use crate::observe::{self, KeyDisplay};

/// A handle on a storage location: a backend plus an optional key prefix.
///
/// Cloning is cheap (two reference counts) and clones share the backend. Keys given to a
/// store are validated ([`Key`]) and placed under its prefix; keys it returns are relative
/// to the prefix again.
///
/// # Listing semantics
///
/// A listing prefix is a **plain string prefix**, as on S3: `list(Some("logs/2026"))`
/// returns `logs/2026/a` and also `logs/2026-old/b`. To list one "directory", end the
/// prefix with `/`. Every backend, including `fs`, lists this way, in byte order of keys.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cloudstore::Store;
/// let store = Store::memory();
/// store.put("logs/2026/a.txt", "hello").await?;
/// store.put("logs/2026-old/b.txt", "old").await?;
///
/// let all: Vec<_> = store.list_all(Some("logs/2026")).await?;
/// assert_eq!(all.len(), 2);
/// let dir = store.list_with_delimiter(Some("logs/")).await?;
/// assert_eq!(dir.common_prefixes, ["logs/2026-old/", "logs/2026/"]);
/// assert_eq!(store.get_bytes("logs/2026/a.txt").await?, "hello");
/// # Ok::<(), cloudstore::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Empty, or the prefix with a trailing `/`.
    prefix: Arc<str>,
    /// Transfer policy and the memory budget shared with clones.
    transfer: Arc<crate::transfer::Shared>,
    /// Which keys operations accept.
    key_policy: KeyPolicy,
    /// How operation spans show keys.
    span_keys: KeyDisplay,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix())
            .finish()
    }
}

/// A lazily paged listing: each page is fetched when the previous one is consumed.
pub type ListStream = BoxStream<'static, Result<ObjectMeta>>;

impl Store {
    /// A store over `backend`.
    pub fn new(backend: impl Backend) -> Store {
        Store::from_arc(Arc::new(backend))
    }

    /// A store over a shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Store {
        Store {
            backend,
            prefix: Arc::from(""),
            transfer: crate::transfer::Shared::new(crate::transfer::TransferConfig::default()),
            key_policy: KeyPolicy::Cloud,
            span_keys: KeyDisplay::Plain,
        }
    }

    /// A new, empty in-memory store.
    pub fn memory() -> Store {
        Store::new(MemoryBackend::new())
    }

    /// A store over the local directory `root` (created if missing).
    pub fn local(root: impl AsRef<Path>) -> Result<Store> {
        Ok(Store::new(FsBackend::new(root)?))
    }

    /// A store from a URL and options; see [`crate::config`] for the schemes.
    ///
    /// ```
    /// use cloudstore::{ErrorKind, Store, StoreOptions};
    /// let store = Store::from_url("memory:///tenant-a", &StoreOptions::new())?;
    /// assert_eq!(store.prefix(), "tenant-a");
    ///
    /// let err = Store::from_url("ftp://host/x", &StoreOptions::new()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), cloudstore::Error>(())
    /// ```
    pub fn from_url(url: &str, options: &StoreOptions) -> Result<Store> {
        crate::config::open(url, options)
    }

    /// A store for the keys under `prefix` of this one (prefixes nest).
    pub fn with_prefix(&self, prefix: &str) -> Result<Store> {
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(self.clone());
        }
        let joined = format!("{}{}", self.prefix, trimmed);
        Key::new(joined.as_str())
            .and_then(|k| match self.key_policy {
                KeyPolicy::Cloud => Ok(k),
                KeyPolicy::Portable => k.check_portable().map(|()| k),
            })
            .map_err(|e| {
                Error::invalid_input(
                    Op::Configure,
                    self.backend.name(),
                    format!("invalid store prefix: {}", e.message()),
                )
                .with_key(prefix)
            })?;
        Ok(Store {
            prefix: Arc::from(format!("{joined}/")),
            ..self.clone()
        })
    }

    /// The same store with another transfer policy (part size, concurrency, memory budgets,
    /// retries, checksums). The returned store and its clones share a new memory budget.
    pub fn with_transfer_config(&self, config: crate::transfer::TransferConfig) -> Store {
        Store {
            transfer: crate::transfer::Shared::new(config),
            ..self.clone()
        }
    }

    /// The same store accepting the keys of `policy` ([`KeyPolicy::Cloud`], any key the
    /// cloud accepts, by default). Under [`KeyPolicy::Portable`] a key that is not a plain
    /// relative path is `InvalidInput` before any request; listings still return every key
    /// there is. The URL option `key_policy=portable` sets it for stores from URLs.
    pub fn with_key_policy(&self, policy: KeyPolicy) -> Store {
        Store {
            key_policy: policy,
            ..self.clone()
        }
    }

    /// The key policy.
    pub fn key_policy(&self) -> KeyPolicy {
        self.key_policy
    }

    /// The same store showing keys in its operation spans as `display` says: the key
    /// itself (the default) or a stable hash of it ([`crate::observe`]). The URL option
    /// `span_keys=hash` sets it for stores from URLs.
    pub fn with_span_keys(&self, display: KeyDisplay) -> Store {
        Store {
            span_keys: display,
            ..self.clone()
        }
    }

    /// How operation spans show keys.
    pub fn span_keys(&self) -> KeyDisplay {
        self.span_keys
    }

    /// The span of an operation of this store on `key` (relative to the prefix).
    pub(crate) fn op_span(&self, operation: &'static str, key: &str) -> tracing::Span {
        observe::operation_span(
            operation,
            self.backend.name(),
            self.prefix(),
            key,
            self.span_keys,
        )
    }

    /// The same store with `caps` declared for its backend (through
    /// [`Declared`](crate::middleware::Declared)): features declared absent answer
    /// `Unsupported` and declared limits are enforced before any request, for a service
    /// that lacks what its protocol promises (an S3-compatible store without conditional
    /// copies, say). Declare only less than the backend has: more is not created.
    pub fn with_capabilities(&self, caps: Capabilities) -> Store {
        Store {
            backend: Arc::new(crate::middleware::Declared::new(self.backend.clone(), caps)),
            ..self.clone()
        }
    }

    /// The transfer policy.
    pub fn transfer_config(&self) -> &crate::transfer::TransferConfig {
        &self.transfer.config
    }

    pub(crate) fn transfer(&self) -> &crate::transfer::Shared {
        &self.transfer
    }

    /// The prefix under which this store's keys live, without the trailing `/`.
    pub fn prefix(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        self.backend.capabilities()
    }

    /// The backend's name (`memory`, `fs`, ...).
    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }

    /// Validates `key` and places it under the prefix.
    pub fn full_key(&self, op: Op, key: &str) -> Result<Key> {
        let name = self.backend.name();
        let relabel = |e: Error| {
            Error::invalid_input(op, name, e.message().to_string()).with_key(e.key().unwrap_or(key))
        };
        let k = Key::new(key).map_err(relabel)?;
        if self.key_policy == KeyPolicy::Portable {
            k.check_portable().map_err(relabel)?;
        }
        if self.prefix.is_empty() {
            return Ok(k);
        }
        Key::new(format!("{}{}", self.prefix, key)).map_err(|e| {
            Error::invalid_input(
                op,
                name,
                format!(
                    "{} (with the store prefix '{}')",
                    e.message(),
                    self.prefix()
                ),
            )
            .with_key(key)
        })
    }

    /// The key relative to the prefix.
    pub(crate) fn relative(&self, key: Key) -> Key {
        if self.prefix.is_empty() {
            return key;
        }
        match key.as_str().strip_prefix(&*self.prefix) {
            Some(rest) => Key::new(rest).unwrap_or(key),
            None => key,
        }
    }

    /// A backend's answer as users get it: the key relative to the prefix, and the
    /// library's records moved out of the user metadata into their typed fields.
    pub(crate) fn relative_meta(&self, mut meta: ObjectMeta) -> ObjectMeta {
        meta.key = self.relative(meta.key);
        crate::attributes::split_records(&mut meta);
        meta
    }

    fn full_prefix(&self, prefix: Option<&str>) -> Result<String> {
        let p = prefix.unwrap_or("");
        match self.key_policy {
            KeyPolicy::Cloud => validate_prefix(p),
            KeyPolicy::Portable => validate_portable_prefix(p),
        }
        .map_err(|e| e.with_op(Op::List))?;
        Ok(format!("{}{}", self.prefix, p))
    }

    /// Checks a user's write options: the [attribute contract](crate::attributes), then
    /// what the backend can store.
    pub(crate) fn check_put(&self, op: Op, key: &Key, opts: &PutOptions) -> Result<()> {
        crate::attributes::check_put_options(op, self.backend.name(), key.as_str(), opts)?;
        self.check_capabilities(op, key, opts)
    }

    /// Refuses attributes the backend cannot store (for writes whose attributes come from
    /// another store, which need not follow the contract).
    pub(crate) fn check_capabilities(&self, op: Op, key: &Key, opts: &PutOptions) -> Result<()> {
        crate::backend::checks::check_attributes(
            self.backend.name(),
            op,
            key,
            self.capabilities(),
            opts,
        )
    }

    /// Refuses a condition whose ETag breaks the contract.
    fn check_mode(&self, op: Op, key: &str, mode: &PutMode) -> Result<()> {
        crate::attributes::check_mode(mode)
            .map_err(|m| Error::invalid_input(op, self.backend.name(), m).with_key(key))
    }

    /// Writes `data` at `key`, replacing any object there.
    pub async fn put(&self, key: &str, data: impl Into<Payload>) -> Result<ObjectMeta> {
        self.put_opts(key, data, &PutOptions::default()).await
    }

    /// Writes `data` at `key` with a condition, content type and metadata.
    pub async fn put_opts(
        &self,
        key: &str,
        data: impl Into<Payload>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let data = data.into();
        let span = self.op_span("put", key);
        span.record("size", data.len());
        observe::traced(span, async {
            let k = self.full_key(Op::Put, key)?;
            self.check_put(Op::Put, &k, opts)?;
            let meta = self.backend.put(&k, data, opts).await?;
            Ok(self.relative_meta(meta))
        })
        .await
    }

    /// Reads the whole object as a stream.
    pub async fn get(&self, key: &str) -> Result<GetResult> {
        self.get_opts(key, &GetOptions::default()).await
    }

    /// Reads with a range and conditions.
    pub async fn get_opts(&self, key: &str, opts: &GetOptions) -> Result<GetResult> {
        let span = self.op_span("get", key);
        observe::traced(span.clone(), async {
            if let Some(r) = &opts.range
                && let Err(m) = r.validate()
            {
                return Err(Error::invalid_input(Op::Get, self.backend.name(), m).with_key(key));
            }
            let k = self.full_key(Op::Get, key)?;
            crate::attributes::check_get_options(self.backend.name(), key, opts)?;
            let mut res = self.backend.get(&k, opts).await?;
            res.meta = self.relative_meta(res.meta);
            span.record("size", res.range.end - res.range.start);
            Ok(res)
        })
        .await
    }

    /// Reads the whole object into memory.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        self.get(key).await?.bytes().await
    }

    /// Reads a range of the object into memory.
    pub async fn get_range(&self, key: &str, range: impl Into<ByteRange>) -> Result<Bytes> {
        self.get_opts(key, &GetOptions::range(range))
            .await?
            .bytes()
            .await
    }

    /// Reads an object's metadata, including content type and user metadata.
    pub async fn head(&self, key: &str) -> Result<ObjectMeta> {
        observe::traced(self.op_span("head", key), async {
            let k = self.full_key(Op::Head, key)?;
            Ok(self.relative_meta(self.backend.head(&k).await?))
        })
        .await
    }

    /// Deletes an object. Deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        observe::traced(self.op_span("delete", key), async {
            let k = self.full_key(Op::Delete, key)?;
            match self.backend.delete(&k).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
        .await
    }

    /// One page of a listing; `req.prefix` is relative to the store's prefix, and so are
    /// the keys and common prefixes returned.
    pub async fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        let span = self.op_span("list", &req.prefix);
        observe::traced(span.clone(), self.page_in(req, 1, &span)).await
    }

    /// One page of a listing in its span (`number` counts the pages of the listing),
    /// below the listing's operation span.
    async fn page_in(
        &self,
        req: &ListRequest,
        number: u64,
        listing: &tracing::Span,
    ) -> Result<ListPage> {
        let span = observe::page_span(listing, number);
        let page = observe::traced(span.clone(), self.page_of(req)).await?;
        span.record("objects", page.objects.len() + page.common_prefixes.len());
        Ok(page)
    }

    async fn page_of(&self, req: &ListRequest) -> Result<ListPage> {
        let full = ListRequest {
            prefix: self.full_prefix(Some(&req.prefix))?,
            token: req.token.clone(),
            start_after: req
                .start_after
                .as_ref()
                .filter(|_| self.capabilities().list_start_after)
                .map(|s| format!("{}{s}", self.prefix)),
            ..req.clone()
        };
        let mut page = self.backend.list(&full).await?;
        // A backend that cannot start after a key lists from the prefix.
        let after = req.start_after.as_deref().filter(|_| !req.delimiter);
        page.objects = page
            .objects
            .into_iter()
            .map(|m| self.relative_meta(m))
            .filter(|m| after.is_none_or(|a| m.key.as_str() > a))
            .collect();
        let strip = self.prefix.len();
        for cp in &mut page.common_prefixes {
            *cp = cp[strip.min(cp.len())..].to_string();
        }
        Ok(page)
    }

    /// Every object whose key starts with `prefix`, in key order, fetched page by page as
    /// the stream is consumed. Listings carry key, size, ETag and modification time; use
    /// [`Store::head`] for content type and user metadata.
    pub fn list(&self, prefix: Option<&str>) -> ListStream {
        self.list_after(prefix, None)
    }

    /// Like [`Store::list`], but only the keys that sort after `start_after` (byte order):
    /// where a listing continues, or where one range of a sharded job starts. S3, GCS,
    /// memory and fs start the listing there; Azure lists the prefix from its start.
    pub fn list_after(&self, prefix: Option<&str>, start_after: Option<&str>) -> ListStream {
        let store = self.clone();
        let req = ListRequest {
            prefix: prefix.unwrap_or("").to_string(),
            start_after: start_after.map(str::to_string),
            ..Default::default()
        };
        let span = self.op_span("list", &req.prefix);
        stream::try_unfold((Some(req), 1), move |(state, number)| {
            let (store, span) = (store.clone(), span.clone());
            async move {
                let Some(req) = state else {
                    return Ok(None);
                };
                let page = observe::in_span(&span, store.page_in(&req, number, &span)).await?;
                let next = page.next_token.map(|t| ListRequest {
                    token: Some(t),
                    ..req
                });
                if next.is_none() {
                    span.record("outcome", "ok");
                }
                let objects = stream::iter(page.objects.into_iter().map(Ok));
                Ok(Some((objects, (next, number + 1))))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Collects [`Store::list`] into a vector.
    pub async fn list_all(&self, prefix: Option<&str>) -> Result<Vec<ObjectMeta>> {
        self.list(prefix).try_collect().await
    }

    /// Objects directly under `prefix` and the common prefixes ("directories") below it,
    /// grouping at `/`. All pages are read.
    pub async fn list_with_delimiter(&self, prefix: Option<&str>) -> Result<Listing> {
        let mut req = ListRequest {
            prefix: prefix.unwrap_or("").to_string(),
            delimiter: true,
            ..Default::default()
        };
        let span = self.op_span("list", &req.prefix);
        observe::traced(span.clone(), async {
            let mut out = Listing::default();
            for number in 1.. {
                let page = self.page_in(&req, number, &span).await?;
                out.objects.extend(page.objects);
                out.common_prefixes.extend(page.common_prefixes);
                match page.next_token {
                    Some(t) => req.token = Some(t),
                    None => break,
                }
            }
            Ok(out)
        })
        .await
    }

    /// Copies `from` to `to` within this store, replacing `to`.
    pub async fn copy(&self, from: &str, to: &str) -> Result<ObjectMeta> {
        self.copy_mode(from, to, CopyMode::Overwrite).await
    }

    /// Copies `from` to `to` only if `to` does not exist
    /// ([`ErrorKind::AlreadyExists`] otherwise).
    pub async fn copy_if_absent(&self, from: &str, to: &str) -> Result<ObjectMeta> {
        self.copy_mode(from, to, CopyMode::Create).await
    }

    /// Copies `from` to `to` only if `to`'s current ETag is `etag`
    /// ([`ErrorKind::PreconditionFailed`] otherwise, also when `to` does not exist).
    pub async fn copy_if_match(&self, from: &str, to: &str, etag: &str) -> Result<ObjectMeta> {
        self.copy_mode(from, to, CopyMode::IfMatch(etag.to_string()))
            .await
    }

    /// Copies `from` to `to` under any [`CopyMode`].
    pub async fn copy_mode(&self, from: &str, to: &str, mode: CopyMode) -> Result<ObjectMeta> {
        observe::traced(self.op_span("copy", to), async {
            let f = self.full_key(Op::Copy, from)?;
            let t = self.full_key(Op::Copy, to)?;
            self.check_mode(Op::Copy, to, &mode.as_put_mode())?;
            crate::backend::checks::check_copy_mode(
                self.backend.name(),
                &t,
                self.capabilities(),
                &mode,
            )?;
            Ok(self.relative_meta(self.backend.copy(&f, &t, mode).await?))
        })
        .await
    }

    /// Starts a multipart upload of `key`. Content type and metadata come from `opts`; the
    /// condition is given again to [`Store::complete_multipart`], which enforces it.
    pub async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<UploadId> {
        observe::traced(self.op_span("create_multipart", key), async {
            let k = self.full_key(Op::CreateMultipart, key)?;
            self.check_put(Op::CreateMultipart, &k, opts)?;
            self.backend.create_multipart(&k, opts).await
        })
        .await
    }

    /// Uploads part number `part` (from 1) of an upload.
    pub async fn put_part(
        &self,
        key: &str,
        upload: &UploadId,
        part: u32,
        data: impl Into<Payload>,
    ) -> Result<PartInfo> {
        let data = data.into();
        let span = self.op_span("put_part", key);
        span.record("size", data.len());
        observe::traced(span, async {
            let k = self.full_key(Op::PutPart, key)?;
            let n = PartNumber::new(part).map_err(|e| {
                Error::invalid_input(Op::PutPart, self.backend.name(), e.message().to_string())
                    .with_key(key)
            })?;
            self.backend.put_part(&k, upload, n, data).await
        })
        .await
    }

    /// Completes an upload from its parts, listed in ascending order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        observe::traced(self.op_span("complete_multipart", key), async {
            let k = self.full_key(Op::CompleteMultipart, key)?;
            self.check_mode(Op::CompleteMultipart, key, mode)?;
            let meta = self
                .backend
                .complete_multipart(&k, upload, parts, mode)
                .await?;
            Ok(self.relative_meta(meta))
        })
        .await
    }

    /// Aborts an upload and discards its parts; aborting an unknown upload succeeds.
    pub async fn abort_multipart(&self, key: &str, upload: &UploadId) -> Result<()> {
        observe::traced(self.op_span("abort_multipart", key), async {
            let k = self.full_key(Op::AbortMultipart, key)?;
            self.backend.abort_multipart(&k, upload).await
        })
        .await
    }

    /// In-progress uploads whose key starts with `prefix`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<MultipartUploadInfo>> {
        let p = self
            .full_prefix(prefix)
            .map_err(|e| e.with_op(Op::ListMultipart))?;
        let uploads = self.backend.list_multipart_uploads(&p).await?;
        Ok(uploads
            .into_iter()
            .map(|mut u| {
                u.key = self.relative(u.key);
                u
            })
            .collect())
    }

    /// A URL allowing `method` on `key` without credentials for `expires_in`, capped at the
    /// provider's maximum ([`Capabilities::max_presign_expiry`] gives `InvalidInput` beyond).
    pub async fn presign(
        &self,
        method: PresignMethod,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        // The span shows the key, never the URL (a credential itself).
        observe::traced(self.op_span("presign", key), async {
            let k = self.full_key(Op::Presign, key)?;
            if expires_in.is_zero() {
                return Err(Error::invalid_input(
                    Op::Presign,
                    self.backend.name(),
                    "an expiry of zero: the URL would never be valid",
                )
                .with_key(key));
            }
            let max = self.capabilities().max_presign_expiry;
            if self.capabilities().presign && expires_in > max {
                return Err(Error::invalid_input(
                    Op::Presign,
                    self.backend.name(),
                    format!("expiry of {expires_in:?} exceeds the provider's maximum of {max:?}"),
                )
                .with_key(key));
            }
            self.backend.presign(method, &k, expires_in).await
        })
        .await
    }
}
