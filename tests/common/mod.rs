//! Shared by the transfer tests: a backend wrapper that injects faults and observes what
//! the transfer engine sends, over any backend (memory or an emulator's).
#![allow(dead_code)]

pub mod proxy;
pub mod schedules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use cloudstore::{
    Backend, Capabilities, CopyMode, Error, ErrorKind, GetOptions, GetResult, Key, ListPage,
    ListRequest, Metadata, MultipartUploadInfo, ObjectMeta, Op, PartInfo, PartNumber, Payload,
    PutMode, PutOptions, Store, TransferConfig, UploadId,
};

/// A backend with hooks: failing parts, counting concurrent part uploads, replacing the object
/// before the n-th ranged read.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Part number -> (failures left, retryable).
    pub fail_parts: Mutex<HashMap<u32, (u32, bool)>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub part_calls: AtomicUsize,
    pub gets: AtomicUsize,
    pub replace_on_get: Mutex<Option<usize>>,
    /// Cut the body of the n-th read short (a dropped connection).
    pub truncate_get: Mutex<Option<usize>>,
    /// When set, part uploads wait for a permit (to hold them in flight).
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Report a wrong native checksum (as if the stored bytes had changed).
    pub corrupt_native: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
pub struct Hooked {
    pub inner: Arc<dyn Backend>,
    pub hooks: Arc<Hooks>,
}

#[async_trait]
impl Backend for Hooked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn put(
        &self,
        key: &Key,
        data: Payload,
        opts: &PutOptions,
    ) -> cloudstore::Result<ObjectMeta> {
        self.inner.put(key, data, opts).await
    }
    async fn get(&self, key: &Key, opts: &GetOptions) -> cloudstore::Result<GetResult> {
        let n = self.hooks.gets.fetch_add(1, Ordering::SeqCst) + 1;
        let replace = *self.hooks.replace_on_get.lock().unwrap();
        if replace == Some(n) {
            self.inner
                .put(key, Payload::from("a new version"), &PutOptions::default())
                .await?;
        }
        let mut res = self.inner.get(key, opts).await?;
        if *self.hooks.truncate_get.lock().unwrap() == Some(n) {
            let all = std::mem::replace(&mut res.body, Box::pin(futures::stream::empty()));
            let half = (res.range.end - res.range.start) as usize / 2;
            let bytes: Vec<Bytes> = futures::StreamExt::collect::<Vec<_>>(all)
                .await
                .into_iter()
                .map(|b| b.unwrap())
                .collect();
            let joined: Vec<u8> = bytes.concat();
            res.body = Box::pin(futures::stream::iter([Ok(Bytes::from(
                joined[..half].to_vec(),
            ))]));
        }
        Ok(res)
    }
    async fn head(&self, key: &Key) -> cloudstore::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &Key) -> cloudstore::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, req: &ListRequest) -> cloudstore::Result<ListPage> {
        self.inner.list(req).await
    }
    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> cloudstore::Result<ObjectMeta> {
        self.inner.copy(from, to, mode).await
    }
    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> cloudstore::Result<UploadId> {
        self.inner.create_multipart(key, opts).await
    }
    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> cloudstore::Result<PartInfo> {
        self.hooks.part_calls.fetch_add(1, Ordering::SeqCst);
        let now = self.hooks.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = self.hooks.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let _ = g.acquire().await;
        }
        self.hooks.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Let other parts start, so that concurrency is observable.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let failure = {
            let mut f = self.hooks.fail_parts.lock().unwrap();
            match f.get_mut(&part.get()) {
                Some((left, retryable)) if *left > 0 => {
                    *left -= 1;
                    Some(*retryable)
                }
                _ => None,
            }
        };
        let r = match failure {
            Some(retryable) => {
                Err(
                    Error::new(ErrorKind::Other, Op::PutPart, "hooked", "injected failure")
                        .with_retryable(retryable),
                )
            }
            None => self.inner.put_part(key, upload, part, data).await,
        };
        self.hooks.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &Metadata,
    ) -> cloudstore::Result<ObjectMeta> {
        self.inner
            .complete_multipart_with_metadata(key, upload, parts, mode, metadata)
            .await
    }
    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> cloudstore::Result<()> {
        self.inner.abort_multipart(key, upload).await
    }
    async fn native_checksum(
        &self,
        key: &Key,
    ) -> cloudstore::Result<Option<cloudstore::NativeChecksum>> {
        let v = self.inner.native_checksum(key).await?;
        Ok(match v {
            Some(cloudstore::NativeChecksum::Crc64Nvme(c))
                if self.hooks.corrupt_native.load(Ordering::SeqCst) =>
            {
                Some(cloudstore::NativeChecksum::Crc64Nvme(c ^ 1))
            }
            other => other,
        })
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> cloudstore::Result<Vec<MultipartUploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
    }
}

/// `store`'s backend behind hooks, with a transfer policy.
pub fn hook(store: &Store, cfg: TransferConfig) -> (Store, Arc<Hooks>) {
    let hooks = Arc::new(Hooks::default());
    let backend = Hooked {
        inner: store.backend().clone(),
        hooks: hooks.clone(),
    };
    let hooked = Store::new(backend).with_transfer_config(cfg);
    let scoped = if store.prefix().is_empty() {
        hooked
    } else {
        hooked.with_prefix(store.prefix()).unwrap()
    };
    (scoped, hooks)
}

/// An emulator setting `scripts/test.sh` exports.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh"))
}

/// `prefix` made unique to this moment and process, to scope a test's keys.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}-{}", std::process::id())
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// CRC32C as the engine stores it.
pub fn crc_hex(bytes: &[u8]) -> String {
    let mut c = cloudstore::transfer::Crc32c::new();
    c.update(bytes);
    c.to_hex()
}

/// Whether no multipart upload is in progress (on backends that can list them).
pub async fn no_uploads_left(store: &Store) -> bool {
    match store.list_multipart_uploads(None).await {
        Ok(u) => u.is_empty(),
        Err(e) if e.kind() == ErrorKind::Unsupported => true,
        Err(e) => panic!("listing uploads failed: {e}"),
    }
}

/// Waits (bounded) until no upload is left, for aborts that run in the background.
pub async fn eventually_no_uploads_left(store: &Store) -> bool {
    for _ in 0..400 {
        if no_uploads_left(store).await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    false
}
