//! [`StoreObjectStore`]: a [`Store`] behind object_store's traits.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetResultPayload, ListResult, MultipartId, MultipartUpload,
    ObjectStore, PutMultipartOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::{mpsc, oneshot};

use super::{STORE, from_attributes, path_of, to_attributes, to_os_error};
use crate::object::{
    ByteRange, CopyMode, GetOptions, ListRequest, ObjectMeta, PartInfo, PartNumber, Payload,
    PutMode, PutOptions, UploadId,
};
use crate::store::Store;
use crate::transfer::Upload;

type OsResult<T> = object_store::Result<T>;

/// A [`Store`] as an object_store [`ObjectStore`] (and [`MultipartStore`] and
/// [`PaginatedListStore`]); see [the module](crate::bridge) for how the two models meet.
/// [`Store::into_object_store`] gives it as an `Arc<dyn ObjectStore>`.
#[derive(Debug, Clone)]
pub struct StoreObjectStore {
    store: Store,
}

impl StoreObjectStore {
    /// The bridge over `store`.
    pub fn new(store: Store) -> StoreObjectStore {
        StoreObjectStore { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Write options from object_store's attributes; attributes cloudstore has no place
    /// for are refused, never dropped.
    fn put_options(&self, attributes: &Attributes) -> OsResult<PutOptions> {
        match from_attributes(attributes) {
            (_, _, Some(other)) => Err(not_implemented(format!("the attribute {other:?}"))),
            (content_type, metadata, None) => Ok(PutOptions {
                content_type,
                metadata,
                ..Default::default()
            }),
        }
    }

    /// object_store's write condition as cloudstore's, where the backend holds it
    /// atomically.
    fn put_mode(&self, mode: object_store::PutMode) -> OsResult<PutMode> {
        let modes = self.store.capabilities().put_modes;
        match mode {
            object_store::PutMode::Overwrite => Ok(PutMode::Overwrite),
            object_store::PutMode::Create if modes.create => Ok(PutMode::Create),
            object_store::PutMode::Update(v) if modes.if_match => match v.e_tag {
                Some(etag) => Ok(PutMode::IfMatch(etag)),
                None => Err(not_implemented("a write conditional on a version id")),
            },
            other => Err(not_implemented(format!(
                "the write condition {other:?} on {}",
                self.store.backend_name()
            ))),
        }
    }

    fn list_from(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, OsResult<object_store::ObjectMeta>> {
        let prefix = dir_prefix(prefix);
        self.store
            .list_after(prefix.as_deref(), offset.map(|o| o.as_ref()))
            .map_err(to_os_error)
            .try_filter_map(|m| futures::future::ready(Ok(os_meta(&m))))
            .boxed()
    }
}

impl std::fmt::Display for StoreObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cloudstore({}", self.store.backend_name())?;
        if !self.store.prefix().is_empty() {
            write!(f, ", prefix {}", self.store.prefix())?;
        }
        write!(f, ")")
    }
}

fn not_implemented(operation: impl Into<String>) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.into(),
        implementer: STORE.to_string(),
    }
}

fn generic(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into().into(),
    }
}

/// The store's prefix for an object_store prefix: by path segment, so `a` lists `a/...`.
fn dir_prefix(prefix: Option<&Path>) -> Option<String> {
    prefix
        .filter(|p| !p.as_ref().is_empty())
        .map(|p| format!("{}/", p.as_ref()))
}

/// A listed object as object_store's, or `None` (with a warning) for a key no `Path` can
/// name.
fn os_meta(meta: &ObjectMeta) -> Option<object_store::ObjectMeta> {
    let Some(location) = path_of(meta.key.as_str()) else {
        tracing::warn!(
            key = %meta.key,
            "skipped in an object_store listing: object_store's Path cannot name this key"
        );
        return None;
    };
    Some(meta_at(location, meta))
}

fn meta_at(location: Path, meta: &ObjectMeta) -> object_store::ObjectMeta {
    object_store::ObjectMeta {
        location,
        last_modified: meta.last_modified.into(),
        size: meta.size,
        e_tag: meta.etag.clone(),
        // cloudstore reads and writes the current version only: a version id handed out
        // here could not be read back (`GetOptions::version` is refused).
        version: None,
    }
}

fn attributes_of(meta: &ObjectMeta) -> Attributes {
    to_attributes(meta.content_type.as_ref(), &meta.metadata)
}

fn payload(data: PutPayload) -> Payload {
    Payload::from(data.into_iter().collect::<Vec<Bytes>>())
}

fn byte_range(range: object_store::GetRange) -> ByteRange {
    match range {
        object_store::GetRange::Bounded(r) => ByteRange::Bounded(r),
        object_store::GetRange::Offset(o) => ByteRange::From(o),
        object_store::GetRange::Suffix(n) => ByteRange::Suffix(n),
    }
}

fn put_result(meta: ObjectMeta) -> PutResult {
    PutResult {
        e_tag: meta.etag,
        version: None,
        extensions: Default::default(),
    }
}

#[async_trait]
impl ObjectStore for StoreObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        data: PutPayload,
        opts: object_store::PutOptions,
    ) -> OsResult<PutResult> {
        let mut put = self.put_options(&opts.attributes)?;
        put.mode = self.put_mode(opts.mode)?;
        let meta = self
            .store
            .put_opts(location.as_ref(), payload(data), &put)
            .await
            .map_err(to_os_error)?;
        Ok(put_result(meta))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let put = self.put_options(&opts.attributes)?;
        let upload = self
            .store
            .writer(location.as_ref(), &put)
            .map_err(to_os_error)?;
        Ok(Box::new(EngineUpload::start(upload)?))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> OsResult<object_store::GetResult> {
        if options.version.is_some() {
            return Err(not_implemented("a read of a version id"));
        }
        let key = location.as_ref();
        if options.head {
            let meta = self.store.head(key).await.map_err(to_os_error)?;
            let os = meta_at(location.clone(), &meta);
            options.check_preconditions(&os)?;
            return Ok(object_store::GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                range: 0..meta.size,
                attributes: attributes_of(&meta),
                meta: os,
                extensions: Default::default(),
            });
        }
        let opts = GetOptions {
            range: options.range.map(byte_range),
            if_match: options.if_match,
            if_none_match: options.if_none_match,
            if_modified_since: options.if_modified_since.map(SystemTime::from),
            if_unmodified_since: options.if_unmodified_since.map(SystemTime::from),
        };
        let res = self.store.get_opts(key, &opts).await.map_err(to_os_error)?;
        let meta = meta_at(location.clone(), &res.meta);
        let attributes = attributes_of(&res.meta);
        let range = res.range.clone();
        // Fused: object_store's own helpers poll a body again after its end.
        let body = res
            .into_checked_stream()
            .map_err(to_os_error)
            .fuse()
            .boxed();
        Ok(object_store::GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        let store = self.store.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    // Deleting what is not there succeeds, as object_store allows.
                    store.delete(location.as_ref()).await.map_err(to_os_error)?;
                    Ok(location)
                }
            })
            .buffered(16)
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, OsResult<object_store::ObjectMeta>> {
        self.list_from(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<object_store::ObjectMeta>> {
        self.list_from(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let prefix = dir_prefix(prefix);
        let listing = self
            .store
            .list_with_delimiter(prefix.as_deref())
            .await
            .map_err(to_os_error)?;
        let common_prefixes = listing
            .common_prefixes
            .iter()
            .filter_map(|cp| {
                let dir = cp.strip_suffix('/').unwrap_or(cp);
                let path = path_of(dir);
                if path.is_none() {
                    tracing::warn!(
                        prefix = %cp,
                        "skipped in an object_store listing: object_store's Path cannot name this prefix"
                    );
                }
                path
            })
            .collect();
        Ok(ListResult {
            objects: listing.objects.iter().filter_map(os_meta).collect(),
            common_prefixes,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        let mode = match options.mode {
            object_store::CopyMode::Overwrite => CopyMode::Overwrite,
            object_store::CopyMode::Create if self.store.capabilities().copy_if_absent => {
                CopyMode::Create
            }
            object_store::CopyMode::Create => {
                // A missing source is the first thing wrong with the request.
                self.store.head(from.as_ref()).await.map_err(to_os_error)?;
                return Err(not_implemented(format!(
                    "a copy if the destination is absent on {}",
                    self.store.backend_name()
                )));
            }
        };
        self.store
            .copy_mode(from.as_ref(), to.as_ref(), mode)
            .await
            .map_err(to_os_error)?;
        Ok(())
    }
}

/// A part id as object_store carries it: the number, size and ETag cloudstore needs to
/// complete the upload.
fn part_id(info: &PartInfo) -> PartId {
    PartId {
        content_id: format!("{}:{}:{}", info.number.get(), info.size, info.etag),
    }
}

fn part_info(id: &PartId) -> OsResult<PartInfo> {
    let bad = || generic(format!("not a part id of this store: {:?}", id.content_id));
    let mut fields = id.content_id.splitn(3, ':');
    let (Some(number), Some(size), Some(etag)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    Ok(PartInfo {
        number: number
            .parse()
            .ok()
            .and_then(|n| PartNumber::new(n).ok())
            .ok_or_else(bad)?,
        size: size.parse().map_err(|_| bad())?,
        etag: etag.to_string(),
    })
}

#[async_trait]
impl MultipartStore for StoreObjectStore {
    async fn create_multipart(&self, path: &Path) -> OsResult<MultipartId> {
        self.create_multipart_opts(path, PutMultipartOptions::default())
            .await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<MultipartId> {
        let put = self.put_options(&opts.attributes)?;
        let id = self
            .store
            .create_multipart(path.as_ref(), &put)
            .await
            .map_err(to_os_error)?;
        Ok(id.0)
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> OsResult<PartId> {
        let number = u32::try_from(part_idx + 1)
            .map_err(|_| generic(format!("part index {part_idx} is out of range")))?;
        let info = self
            .store
            .put_part(path.as_ref(), &UploadId(id.clone()), number, payload(data))
            .await
            .map_err(to_os_error)?;
        Ok(part_id(&info))
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> OsResult<PutResult> {
        let upload = UploadId(id.clone());
        if parts.is_empty() {
            // object_store completes an upload without parts as an empty object; the
            // clouds refuse an empty part list, so the upload is dropped and the empty
            // object written (without the upload's attributes, which are not known here).
            self.store
                .abort_multipart(path.as_ref(), &upload)
                .await
                .map_err(to_os_error)?;
            let meta = self
                .store
                .put(path.as_ref(), Payload::new())
                .await
                .map_err(to_os_error)?;
            return Ok(put_result(meta));
        }
        let parts = parts.iter().map(part_info).collect::<OsResult<Vec<_>>>()?;
        let meta = self
            .store
            .complete_multipart(path.as_ref(), &upload, &parts, &PutMode::Overwrite)
            .await
            .map_err(to_os_error)?;
        Ok(put_result(meta))
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> OsResult<()> {
        self.store
            .abort_multipart(path.as_ref(), &UploadId(id.clone()))
            .await
            .map_err(to_os_error)
    }
}

#[async_trait]
impl PaginatedListStore for StoreObjectStore {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> OsResult<PaginatedListResult> {
        let delimiter = match opts.delimiter.as_deref() {
            None => false,
            Some("/") => true,
            Some(other) => {
                return Err(not_implemented(format!(
                    "a listing with the delimiter {other:?} (only \"/\")"
                )));
            }
        };
        let req = ListRequest {
            prefix: prefix.unwrap_or_default().to_string(),
            delimiter,
            token: opts.page_token,
            max_keys: opts.max_keys,
            start_after: opts.offset,
        };
        let page = self.store.list_page(&req).await.map_err(to_os_error)?;
        let common_prefixes = page
            .common_prefixes
            .iter()
            .filter_map(|cp| path_of(cp.strip_suffix('/').unwrap_or(cp)))
            .collect();
        Ok(PaginatedListResult {
            result: ListResult {
                objects: page.objects.iter().filter_map(os_meta).collect(),
                common_prefixes,
                extensions: Default::default(),
            },
            page_token: page.next_token,
        })
    }
}

/// What a [`MultipartUpload`] asks of the task that feeds the transfer engine.
enum Step {
    Part(PutPayload, oneshot::Sender<OsResult<()>>),
    Complete(oneshot::Sender<OsResult<PutResult>>),
    Abort(oneshot::Sender<OsResult<()>>),
}

/// object_store's multipart upload over the transfer engine: parts are queued in the
/// order `put_part` is called (their futures may be awaited in any order) and written by
/// one task into a [`Store::writer`], which cuts, sends and retries its own parts within
/// the store's memory budget. A part's future ends once the engine has taken its bytes.
#[derive(Debug)]
struct EngineUpload {
    steps: mpsc::UnboundedSender<Step>,
}

impl EngineUpload {
    fn start(upload: Upload) -> OsResult<EngineUpload> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| generic("a multipart upload needs a tokio runtime"))?;
        let (steps, queue) = mpsc::unbounded_channel();
        runtime.spawn(feed(upload, queue));
        Ok(EngineUpload { steps })
    }

    fn ended() -> object_store::Error {
        generic("the upload has already ended")
    }
}

/// Writes the queued parts into the engine in order; ends with the upload's completion
/// or abort. Dropped without either, the upload is aborted (by the engine, in the
/// background).
async fn feed(mut upload: Upload, mut queue: mpsc::UnboundedReceiver<Step>) {
    let mut failed: Option<String> = None;
    while let Some(step) = queue.recv().await {
        match step {
            Step::Part(data, done) => {
                let result = match &failed {
                    Some(why) => Err(generic(format!("an earlier part failed: {why}"))),
                    None => {
                        let mut result = Ok(());
                        for chunk in data {
                            if let Err(e) = upload.write_bytes(chunk).await {
                                failed = Some(e.to_string());
                                result = Err(to_os_error(e));
                                break;
                            }
                        }
                        result
                    }
                };
                let _ = done.send(result);
            }
            Step::Complete(done) => {
                let result = match failed {
                    Some(why) => {
                        let _ = upload.abort().await;
                        Err(generic(format!("a part failed: {why}")))
                    }
                    None => upload.finish().await.map(put_result).map_err(to_os_error),
                };
                let _ = done.send(result);
                return;
            }
            Step::Abort(done) => {
                let _ = done.send(upload.abort().await.map_err(to_os_error));
                return;
            }
        }
    }
}

#[async_trait]
impl MultipartUpload for EngineUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (done, taken) = oneshot::channel();
        let queued = self.steps.send(Step::Part(data, done));
        Box::pin(async move {
            queued.map_err(|_| EngineUpload::ended())?;
            taken.await.map_err(|_| EngineUpload::ended())?
        })
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        let (done, result) = oneshot::channel();
        self.steps
            .send(Step::Complete(done))
            .map_err(|_| EngineUpload::ended())?;
        result.await.map_err(|_| EngineUpload::ended())?
    }

    async fn abort(&mut self) -> OsResult<()> {
        let (done, result) = oneshot::channel();
        self.steps
            .send(Step::Abort(done))
            .map_err(|_| EngineUpload::ended())?;
        result.await.map_err(|_| EngineUpload::ended())?
    }
}
