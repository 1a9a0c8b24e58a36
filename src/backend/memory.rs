//! An in-process backend: objects live in a sorted map behind a lock.
//!
//! Useful for tests and caches. It enforces the same limits and conditions as the clouds
//! ([`Capabilities::s3_like`] by default, adjustable with [`MemoryBackend::with_capabilities`])
//! so that code tested here behaves the same elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;

use super::checks::{
    check_attributes, check_get_conditions, check_key, check_mode, check_object_size, check_part,
    check_part_list, check_write_condition, resolve_range,
};
use super::{Backend, Capabilities, listing};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::Metadata;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, MultipartUploadInfo, ObjectMeta,
    PartInfo, PartNumber, Payload, PutMode, PutOptions, UploadId,
};

const NAME: &str = "memory";

/// An in-memory backend. Cloning shares the same objects.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("objects", &self.objects_read().len())
            .field("uploads", &self.uploads().len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    caps: Capabilities,
    objects: RwLock<BTreeMap<Key, Stored>>,
    uploads: Mutex<HashMap<UploadId, Upload>>,
}

#[derive(Clone)]
struct Stored {
    /// The bytes as they were written, chunk by chunk: a multipart upload's parts are
    /// kept, not copied into one buffer.
    data: Payload,
    meta: ObjectMeta,
}

struct Upload {
    key: Key,
    opts: PutOptions,
    initiated: SystemTime,
    parts: BTreeMap<PartNumber, (String, Payload)>,
}

static ETAG_COUNTER: AtomicU64 = AtomicU64::new(1);

fn next_etag() -> String {
    format!("\"mem-{:x}\"", ETAG_COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty store with S3's limits.
    pub fn new() -> Self {
        Self::with_capabilities(Capabilities {
            presign: false,
            ..Capabilities::s3_like()
        })
    }

    /// An empty store with other limits (e.g. a tiny `min_part_size` for tests of part
    /// sizing). Features it cannot provide (presign) stay off whatever is asked.
    pub fn with_capabilities(caps: Capabilities) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                caps: Capabilities {
                    presign: false,
                    ..caps
                },
                objects: RwLock::new(BTreeMap::new()),
                uploads: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn objects_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Stored>> {
        self.inner.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn objects_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Key, Stored>> {
        self.inner
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Upload>> {
        self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `data` under `key` if `mode` allows, atomically with the check.
    fn commit(&self, op: Op, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let meta = ObjectMeta {
            key: key.clone(),
            size: data.len(),
            etag: Some(next_etag()),
            last_modified: SystemTime::now(),
            version: None,
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            crc32c: None,
            source_etag: None,
        };
        let mut objects = self.objects_write();
        check_write_condition(NAME, op, key, objects.get(key).map(|s| &s.meta), &opts.mode)?;
        objects.insert(
            key.clone(),
            Stored {
                data,
                meta: meta.clone(),
            },
        );
        Ok(meta)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let caps = &self.inner.caps;
        check_mode(NAME, Op::Put, key, &caps.put_modes, &opts.mode)?;
        check_attributes(NAME, Op::Put, key, caps, opts)?;
        check_object_size(NAME, Op::Put, key, caps, data.len())?;
        check_key(NAME, Op::Put, key, caps)?;
        self.commit(Op::Put, key, data, opts)
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let stored = self
            .objects_read()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found(Op::Get, NAME, key.as_str()))?;
        check_get_conditions(NAME, key, opts, &stored.meta)?;
        let range = resolve_range(NAME, key, opts, stored.meta.size)?;
        let body = stored.data.slice(range.clone());
        Ok(GetResult {
            meta: stored.meta,
            range,
            body: futures::stream::iter(body.into_iter().map(Ok)).boxed(),
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.objects_read()
            .get(key)
            .map(|s| s.meta.clone())
            .ok_or_else(|| Error::not_found(Op::Head, NAME, key.as_str()))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.objects_write().remove(key);
        Ok(())
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let objects = self.objects_read();
        let req = &ListRequest {
            token: req.resume_after().map(str::to_string),
            ..req.clone()
        };
        let start = match &req.token {
            Some(t) if t.as_str() > req.prefix.as_str() => t.clone(),
            _ => req.prefix.clone(),
        };
        // Keys sort as strings, so the range starting at the prefix (or the token) holds
        // every candidate; `page` stops once the page is full.
        let iter = objects
            .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.as_str().starts_with(&req.prefix))
            .map(|(_, s)| {
                let mut m = s.meta.clone();
                crate::attributes::keep_records(&mut m.metadata);
                m.content_type = None;
                m
            });
        Ok(listing::page(iter, req, self.inner.caps.max_list_page))
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        super::checks::check_copy_mode(NAME, to, &self.inner.caps, &mode)?;
        let src = self
            .objects_read()
            .get(from)
            .cloned()
            .ok_or_else(|| Error::not_found(Op::Copy, NAME, from.as_str()))?;
        let opts = PutOptions {
            mode: mode.as_put_mode(),
            content_type: src.meta.content_type,
            metadata: src.meta.metadata,
        };
        self.commit(Op::Copy, to, src.data, &opts)
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        check_attributes(NAME, Op::CreateMultipart, key, &self.inner.caps, opts)?;
        check_key(NAME, Op::CreateMultipart, key, &self.inner.caps)?;
        let id = UploadId(uuid::Uuid::new_v4().simple().to_string());
        self.uploads().insert(
            id.clone(),
            Upload {
                key: key.clone(),
                opts: opts.clone(),
                initiated: SystemTime::now(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        check_part(NAME, key, &self.inner.caps, part, data.len())?;
        let mut uploads = self.uploads();
        let up = find_upload(&mut uploads, Op::PutPart, key, upload)?;
        let etag = next_etag();
        let size = data.len();
        up.parts.insert(part, (etag.clone(), data));
        Ok(PartInfo {
            number: part,
            etag,
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
        let caps = &self.inner.caps;
        check_mode(
            NAME,
            Op::CompleteMultipart,
            key,
            &caps.multipart_modes,
            mode,
        )?;
        check_part_list(NAME, key, caps, parts)?;
        check_object_size(
            NAME,
            Op::CompleteMultipart,
            key,
            caps,
            parts.iter().map(|p| p.size).sum(),
        )?;
        let (payload, opts) = {
            let mut uploads = self.uploads();
            let up = find_upload(&mut uploads, Op::CompleteMultipart, key, upload)?;
            let mut payload = Payload::new();
            for p in parts {
                match up.parts.get(&p.number) {
                    Some((etag, data)) if *etag == p.etag && data.len() == p.size => {
                        for c in data.chunks() {
                            payload.push(c.clone());
                        }
                    }
                    Some(_) => {
                        return Err(Error::invalid_input(
                            Op::CompleteMultipart,
                            NAME,
                            format!(
                                "part {} does not match the uploaded part (etag or size differ)",
                                p.number
                            ),
                        )
                        .with_key(key.as_str()));
                    }
                    None => {
                        return Err(Error::invalid_input(
                            Op::CompleteMultipart,
                            NAME,
                            format!("part {} was never uploaded", p.number),
                        )
                        .with_key(key.as_str()));
                    }
                }
            }
            let mut opts = PutOptions {
                mode: mode.clone(),
                ..up.opts.clone()
            };
            opts.metadata.extend(extra_metadata.clone());
            (payload, opts)
        };
        let meta = self.commit(Op::CompleteMultipart, key, payload, &opts)?;
        self.uploads().remove(upload);
        Ok(meta)
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let mut uploads = self.uploads();
        if uploads.get(upload).is_some_and(|u| &u.key == key) {
            uploads.remove(upload);
        }
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        if !self.inner.caps.multipart_listing {
            return Err(Error::unsupported(
                Op::ListMultipart,
                NAME,
                "multipart listing is turned off in this backend's capabilities",
            ));
        }
        let mut out: Vec<_> = self
            .uploads()
            .iter()
            .filter(|(_, u)| u.key.as_str().starts_with(prefix))
            .map(|(id, u)| MultipartUploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

fn find_upload<'a>(
    uploads: &'a mut HashMap<UploadId, Upload>,
    op: Op,
    key: &Key,
    id: &UploadId,
) -> Result<&'a mut Upload> {
    match uploads.get_mut(id) {
        Some(u) if &u.key == key => Ok(u),
        _ => Err(Error::new(
            ErrorKind::NotFound,
            op,
            NAME,
            format!("no multipart upload {id} for this key"),
        )
        .with_key(key.as_str())),
    }
}
