//! [`Observed`]: a span and metrics for every request a backend sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tracing::Instrument;

use crate::backend::{Backend, Capabilities};
use crate::error::{Op, Result};
use crate::key::Key;
use crate::object::{
    ByteStream, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata,
    MultipartUploadInfo, NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod,
    PresignedRequest, PutMode, PutOptions, UploadId,
};
use crate::observe::{self, BackendLabel, Direction};

/// A backend whose every request is a `cloudstore.request` span and is counted in the
/// [metrics](crate::observe): requests by operation, outcome and error type, latency,
/// bytes moved, throttling answers.
///
/// [`Store::from_url`](crate::Store::from_url) puts one directly over each backend it
/// builds, under the retries, so that each attempt counts as one request. For a store
/// built in code, wrap the backend the same way:
///
/// ```
/// use std::sync::Arc;
/// use cloudstore::middleware::{Observed, RetryBackend, RetryPolicy};
/// use cloudstore::{MemoryBackend, Store};
///
/// let observed = Observed::new(Arc::new(MemoryBackend::new()));
/// let store = Store::new(RetryBackend::new(Arc::new(observed), RetryPolicy::default()));
/// # let _ = store;
/// ```
#[derive(Debug, Clone)]
pub struct Observed {
    inner: Arc<dyn Backend>,
    label: BackendLabel,
}

impl Observed {
    /// Observes `inner`; its [`Backend::name`] is the `backend` label.
    pub fn new(inner: Arc<dyn Backend>) -> Observed {
        let label = BackendLabel::new(inner.name());
        Observed { inner, label }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Sends one request in its span and counts it; `sent` payload bytes count as
    /// transmitted when it succeeds.
    async fn request<T>(
        &self,
        op: Op,
        sent: u64,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = observe::request_span(&self.label, op);
        let start = Instant::now();
        let result = call.instrument(span.clone()).await;
        observe::record_outcome(&span, &result);
        let kind = result.as_ref().err().map(|e| e.kind());
        observe::request_done(&self.label, op, kind, start.elapsed());
        if result.is_ok() {
            observe::io(&self.label, Direction::Transmit, sent);
        }
        result
    }
}

/// A body that counts the bytes it delivers, recorded when it ends or is dropped.
struct Counted {
    body: ByteStream,
    label: BackendLabel,
    bytes: u64,
}

impl Stream for Counted {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.body.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            let n = chunk.len() as u64;
            self.bytes += n;
        }
        next
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        observe::io(&self.label, Direction::Receive, self.bytes);
    }
}

#[async_trait]
impl Backend for Observed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn retries_requests(&self) -> bool {
        self.inner.retries_requests()
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let sent = data.len();
        self.request(Op::Put, sent, self.inner.put(key, data, opts))
            .await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let mut res = self.request(Op::Get, 0, self.inner.get(key, opts)).await?;
        res.body = Counted {
            body: res.body,
            label: self.label.clone(),
            bytes: 0,
        }
        .boxed();
        Ok(res)
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.request(Op::Head, 0, self.inner.head(key)).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.request(Op::Delete, 0, self.inner.delete(key)).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.request(Op::List, 0, self.inner.list(req)).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        self.request(Op::Copy, 0, self.inner.copy(from, to, mode))
            .await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        self.request(
            Op::CreateMultipart,
            0,
            self.inner.create_multipart(key, opts),
        )
        .await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let sent = data.len();
        self.request(
            Op::PutPart,
            sent,
            self.inner.put_part(key, upload, part, data),
        )
        .await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        self.request(
            Op::CompleteMultipart,
            0,
            self.inner
                .complete_multipart_with_metadata(key, upload, parts, mode, metadata),
        )
        .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.request(
            Op::AbortMultipart,
            0,
            self.inner.abort_multipart(key, upload),
        )
        .await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        if !self.inner.capabilities().native_checksum {
            return self.inner.native_checksum(key).await;
        }
        self.request(Op::Head, 0, self.inner.native_checksum(key))
            .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.request(
            Op::ListMultipart,
            0,
            self.inner.list_multipart_uploads(prefix),
        )
        .await
    }

    /// Signing is local: no request, nothing counted.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        self.inner.presign(method, key, expires_in).await
    }
}
