//! `Store` behaviour that is not per-backend: lazy paging, error reporting, refusal of what a
//! backend cannot store, and a user-written backend plugged in through the SPI.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;

use cloudstore::{
    Backend, Capabilities, CopyMode, ErrorKind, GetOptions, GetResult, Key, ListPage, ListRequest,
    MemoryBackend, ObjectMeta, Op, PartInfo, PartNumber, Payload, PutMode, PutOptions, Store,
    UploadId,
};

/// A user-written backend: delegates to memory and counts listing calls.
#[derive(Debug)]
struct Counting {
    inner: MemoryBackend,
    list_calls: Arc<AtomicUsize>,
}

#[async_trait]
impl Backend for Counting {
    fn name(&self) -> &str {
        "counting"
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
        self.inner.get(key, opts).await
    }
    async fn head(&self, key: &Key) -> cloudstore::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &Key) -> cloudstore::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, req: &ListRequest) -> cloudstore::Result<ListPage> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
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
        self.inner.put_part(key, upload, part, data).await
    }
    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &cloudstore::Metadata,
    ) -> cloudstore::Result<ObjectMeta> {
        self.inner
            .complete_multipart_with_metadata(key, upload, parts, mode, metadata)
            .await
    }
    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> cloudstore::Result<()> {
        self.inner.abort_multipart(key, upload).await
    }
}

#[tokio::test]
async fn listing_fetches_pages_only_as_they_are_consumed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let store = Store::new(Counting {
        inner: MemoryBackend::new(),
        list_calls: calls.clone(),
    });
    for i in 0..2500 {
        store.put(&format!("k/{i:05}"), "").await.unwrap();
    }
    let stream = store.list(Some("k/"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no request before the stream is polled"
    );
    let first: Vec<_> = stream.take(10).collect().await;
    assert_eq!(first.len(), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "ten keys need one page");
    let all = store.list_all(Some("k/")).await.unwrap();
    assert_eq!(all.len(), 2500);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1 + 3,
        "2,500 keys in pages of 1,000"
    );
}

#[tokio::test]
async fn a_backend_without_the_spi_defaults_answers_unsupported() {
    let store = Store::new(Counting {
        inner: MemoryBackend::new(),
        list_calls: Arc::default(),
    });
    let e = store.list_multipart_uploads(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(e.op(), Op::ListMultipart);
    let e = store
        .presign(
            cloudstore::PresignMethod::Get,
            "k",
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(e.backend(), "counting");
}

#[tokio::test]
async fn errors_name_operation_key_and_backend() {
    let store = Store::memory().with_prefix("tenant").unwrap();
    let e = store.get("reports/missing.csv").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.op(), Op::Get);
    assert_eq!(e.backend(), "memory");
    assert_eq!(e.key(), Some("tenant/reports/missing.csv"));
    assert_eq!(
        e.to_string(),
        r#"get "tenant/reports/missing.csv" on memory: not found: no such object"#
    );
    assert!(!e.is_retryable());

    let portable = store.with_key_policy(cloudstore::KeyPolicy::Portable);
    let e = portable.put("bad//key", "x").await.unwrap_err();
    assert_eq!((e.kind(), e.op()), (ErrorKind::InvalidInput, Op::Put));
    assert!(e.to_string().contains("empty segment"), "{e}");
}

#[tokio::test]
async fn the_store_prefix_counts_toward_the_key_limit() {
    let store = Store::memory().with_prefix(&"p".repeat(1000)).unwrap();
    let e = store.put(&"k".repeat(30), "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("store prefix"), "{e}");
    // Any key can be a prefix, but not past the portable policy.
    let odd = Store::memory().with_prefix("a//b").unwrap();
    assert_eq!(odd.prefix(), "a//b");
    odd.put("k", "x").await.unwrap();
    assert_eq!(odd.list_all(None).await.unwrap()[0].key.as_str(), "k");
    assert_eq!(
        Store::memory()
            .with_key_policy(cloudstore::KeyPolicy::Portable)
            .with_prefix("a//b")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn clones_share_the_backend() {
    let a = Store::memory();
    let b = a.clone();
    a.put("k", "v").await.unwrap();
    assert_eq!(b.get_bytes("k").await.unwrap(), "v");
}

#[tokio::test]
async fn a_truncated_body_is_an_error_not_short_data() {
    use bytes::Bytes;
    let store = Store::memory();
    store.put("k", "0123456789").await.unwrap();
    let mut res = store.get("k").await.unwrap();
    // Simulate a connection cut after 4 bytes.
    res.body = futures::stream::once(async { Ok(Bytes::from_static(b"0123")) }).boxed();
    let e = res.bytes().await.unwrap_err();
    assert!(e.is_retryable());
    assert!(e.message().contains("4 of 10"), "{e}");
}
