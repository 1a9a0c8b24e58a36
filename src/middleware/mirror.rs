//! Dual writes for a staged migration: a primary and a secondary store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest,
    PutMode, PutOptions, UploadId,
};
use crate::store::Store;

/// What a [`MirrorBackend`] does when a write reached the primary but not the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecondaryFailure {
    /// Return the secondary's error (the primary keeps the write; the key is recorded for
    /// repair too): callers learn at once that the mirror is behind.
    FailWrite,
    /// Report success and record the key for [`MirrorBackend::repair`].
    #[default]
    Record,
}

/// What [`MirrorBackend::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Keys copied from the primary to the secondary.
    pub copied: u64,
    /// Keys deleted from the secondary (gone from the primary).
    pub deleted: u64,
    /// Keys still out of line, with why (kept for the next repair).
    pub failed: Vec<(String, String)>,
}

/// Writes go to the primary and then to the secondary; reads come from the primary and
/// fall back to the secondary on `NotFound`; listings are the primary's.
///
/// The primary is the authority: conditional writes (`Create`, `IfMatch`) are decided by
/// it, and the secondary then gets the same bytes unconditionally, so a condition means on
/// the mirror exactly what it means on the primary. Multipart uploads run on the primary;
/// the completed object is then copied to the secondary. When the secondary fails, the key
/// is recorded ([`MirrorBackend::pending`]) and, by [`SecondaryFailure`], the write fails
/// or succeeds; [`MirrorBackend::repair`] brings the recorded keys in line, and
/// [`migrate::sync`](crate::migrate::sync) from the primary is the full repair.
#[derive(Debug, Clone)]
pub struct MirrorBackend {
    primary: Arc<dyn Backend>,
    secondary: Arc<dyn Backend>,
    policy: SecondaryFailure,
    /// Keys the secondary is behind on, with a generation bumped by every miss, so that a
    /// repair racing a newer miss does not clear it.
    pending: Arc<Mutex<BTreeMap<Key, u64>>>,
}

impl MirrorBackend {
    /// Mirrors writes to `primary` onto `secondary`.
    pub fn new(
        primary: Arc<dyn Backend>,
        secondary: Arc<dyn Backend>,
        policy: SecondaryFailure,
    ) -> MirrorBackend {
        MirrorBackend {
            primary,
            secondary,
            policy,
            pending: Arc::default(),
        }
    }

    /// Keys whose last write did not reach the secondary.
    pub fn pending(&self) -> Vec<Key> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_pending(&self, key: &Key) -> bool {
        self.lock().contains_key(key)
    }

    /// After the primary succeeded: the secondary's outcome, by the policy.
    fn settle<T>(&self, key: &Key, done: T, secondary: Result<()>) -> Result<T> {
        match secondary {
            Ok(()) => {
                self.lock().remove(key);
                Ok(done)
            }
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "the mirror's secondary missed a write");
                *self.lock().entry(key.clone()).or_insert(0) += 1;
                match self.policy {
                    SecondaryFailure::Record => Ok(done),
                    SecondaryFailure::FailWrite => Err(Error::new(
                        e.kind(),
                        e.op(),
                        e.backend(),
                        format!(
                            "written to the primary but not to the secondary (recorded for \
                             repair): {}",
                            e.message()
                        ),
                    )
                    .with_key(key.as_str())
                    .with_source(e)),
                }
            }
        }
    }

    /// Copies `key` from the primary to the secondary (or deletes it there when the
    /// primary has none).
    async fn align(&self, key: &Key) -> Result<bool> {
        let primary = Store::from_arc(self.primary.clone());
        let secondary = Store::from_arc(self.secondary.clone());
        match primary.backend().head(key).await {
            Ok(_) => {
                crate::migrate::copy(
                    &primary,
                    key.as_str(),
                    &secondary,
                    key.as_str(),
                    &Default::default(),
                )
                .await?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.secondary.delete(key).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Brings every recorded key in line: copied from the primary, or deleted from the
    /// secondary if the primary no longer has it. Keys that fail stay recorded.
    pub async fn repair(&self) -> RepairReport {
        let mut report = RepairReport::default();
        let snapshot: Vec<(Key, u64)> = self.lock().iter().map(|(k, g)| (k.clone(), *g)).collect();
        for (key, generation) in snapshot {
            match self.align(&key).await {
                Ok(true) => report.copied += 1,
                Ok(false) => report.deleted += 1,
                Err(e) => {
                    report
                        .failed
                        .push((key.as_str().to_string(), e.to_string()));
                    continue;
                }
            }
            // Cleared only if no newer write missed the secondary meanwhile.
            let mut pending = self.lock();
            if pending.get(&key) == Some(&generation) {
                pending.remove(&key);
            }
        }
        report
    }
}

#[async_trait]
impl Backend for MirrorBackend {
    fn name(&self) -> &str {
        self.primary.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.primary.capabilities()
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let meta = self.primary.put(key, data.clone(), opts).await?;
        let plain = PutOptions {
            mode: PutMode::Overwrite,
            ..opts.clone()
        };
        let second = self.secondary.put(key, data, &plain).await.map(|_| ());
        self.settle(key, meta, second)
    }

    /// The secondary answers only for keys the primary never had: a key the secondary is
    /// behind on (a delete that missed it) stays gone.
    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        match self.primary.get(key, opts).await {
            Err(e) if e.kind() == ErrorKind::NotFound && !self.is_pending(key) => {
                self.secondary.get(key, opts).await
            }
            other => other,
        }
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        match self.primary.head(key).await {
            Err(e) if e.kind() == ErrorKind::NotFound && !self.is_pending(key) => {
                self.secondary.head(key).await
            }
            other => other,
        }
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.primary.delete(key).await?;
        let second = self.secondary.delete(key).await;
        self.settle(key, (), second)
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.primary.list(req).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let meta = self.primary.copy(from, to, mode).await?;
        let second = self.align(to).await.map(|_| ());
        self.settle(to, meta, second)
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        self.primary.create_multipart(key, opts).await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        self.primary.put_part(key, upload, part, data).await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        let meta = self
            .primary
            .complete_multipart_with_metadata(key, upload, parts, mode, extra_metadata)
            .await?;
        let second = self.align(key).await.map(|_| ());
        self.settle(key, meta, second)
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.primary.abort_multipart(key, upload).await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        match self.primary.head(key).await {
            Ok(_) => self.primary.native_checksum(key).await,
            Err(e) if e.kind() == ErrorKind::NotFound => self.secondary.native_checksum(key).await,
            Err(e) => Err(e),
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.primary.list_multipart_uploads(prefix).await
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        if method == PresignMethod::Put {
            // A presigned write would reach the primary alone.
            return Err(Error::unsupported(
                Op::Presign,
                self.name(),
                "a presigned PUT would bypass the mirror's secondary",
            ));
        }
        self.primary.presign(method, key, expires_in).await
    }

    fn retries_requests(&self) -> bool {
        self.primary.retries_requests() && self.secondary.retries_requests()
    }
}
