//! Shared by the transfer tests: a backend wrapper that injects faults and observes what
//! the transfer engine sends, over any backend (memory or an emulator's).
#![allow(dead_code)]

pub mod emulators;
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
    /// Cut the body of the n-th read short (a dropped connection), after half its bytes.
    pub truncate_get: Mutex<Option<usize>>,
    /// The byte range each read answered, in order.
    pub served: Mutex<Vec<std::ops::Range<u64>>>,
    /// When set, part uploads wait for a permit (to hold them in flight).
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Report a wrong native checksum (as if the stored bytes had changed).
    pub corrupt_native: std::sync::atomic::AtomicBool,
    /// Every read, multipart creation and part waits this long first (a round trip).
    pub latency: Mutex<Option<std::time::Duration>>,
    /// The size of every part uploaded, in the order they arrived.
    pub part_sizes: Mutex<Vec<u64>>,
    /// Read bodies arrive in chunks of the given size, each this long after the last (a
    /// slow connection, whatever the round trip).
    pub slow_body: Mutex<Option<(std::time::Duration, usize)>>,
    /// Cut the bodies of these reads short too (after half their bytes).
    pub truncate_reads: Mutex<Option<std::ops::RangeInclusive<usize>>>,
    /// Answer the n-th read for only the first half of the range asked (a server that
    /// serves less than asked, its answer consistent with itself).
    pub short_answer: Mutex<Option<usize>>,
    /// Reads asked for and not yet done with (their bodies still held), and the most at once.
    pub reads_open: AtomicUsize,
    pub max_reads_open: AtomicUsize,
}

/// A read counted in [`Hooks::reads_open`] until dropped.
struct ReadOpen(Arc<Hooks>);

impl ReadOpen {
    fn new(hooks: &Arc<Hooks>) -> ReadOpen {
        let now = hooks.reads_open.fetch_add(1, Ordering::SeqCst) + 1;
        hooks.max_reads_open.fetch_max(now, Ordering::SeqCst);
        ReadOpen(hooks.clone())
    }
}

impl Drop for ReadOpen {
    fn drop(&mut self) {
        self.0.reads_open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hooks {
    async fn wait_round_trip(&self) {
        let latency = *self.latency.lock().unwrap();
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
    }
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
        let open = ReadOpen::new(&self.hooks);
        self.hooks.wait_round_trip().await;
        let n = self.hooks.gets.fetch_add(1, Ordering::SeqCst) + 1;
        let replace = *self.hooks.replace_on_get.lock().unwrap();
        if replace == Some(n) {
            self.inner
                .put(key, Payload::from("a new version"), &PutOptions::default())
                .await?;
        }
        let mut res = self.inner.get(key, opts).await?;
        if *self.hooks.short_answer.lock().unwrap() == Some(n) {
            let half = (res.range.end - res.range.start) / 2;
            let short = res.range.start..res.range.start + half;
            res = self
                .inner
                .get(
                    key,
                    &GetOptions {
                        range: Some(cloudstore::ByteRange::Bounded(short)),
                        ..Default::default()
                    },
                )
                .await?;
        }
        self.hooks.served.lock().unwrap().push(res.range.clone());
        let cut_too = self
            .hooks
            .truncate_reads
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|r| r.contains(&n));
        if cut_too || *self.hooks.truncate_get.lock().unwrap() == Some(n) {
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
        let slow = *self.hooks.slow_body.lock().unwrap();
        if let Some((pause, piece)) = slow {
            use futures::StreamExt;
            let body = std::mem::replace(&mut res.body, Box::pin(futures::stream::empty()));
            res.body = body
                .flat_map(move |chunk| {
                    let pieces: Vec<cloudstore::Result<Bytes>> = match chunk {
                        Ok(c) => (0..c.len())
                            .step_by(piece)
                            .map(move |i| Ok(c.slice(i..(i + piece).min(c.len()))))
                            .collect(),
                        Err(e) => vec![Err(e)],
                    };
                    futures::stream::iter(pieces)
                })
                .then(move |piece| async move {
                    tokio::time::sleep(pause).await;
                    piece
                })
                .boxed();
        }
        // The read stays open while its body is held.
        let body = std::mem::replace(&mut res.body, Box::pin(futures::stream::empty()));
        res.body = Box::pin(futures::StreamExt::map(body, move |chunk| {
            let _ = &open;
            chunk
        }));
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
        self.hooks.wait_round_trip().await;
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
        self.hooks.part_sizes.lock().unwrap().push(data.len());
        let now = self.hooks.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = self.hooks.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let _ = g.acquire().await;
        }
        self.hooks.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.hooks.wait_round_trip().await;
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

/// The CRC32C recorded with `key` (as [`crc_hex`] writes it), read with a HEAD.
pub async fn recorded_crc(store: &cloudstore::Store, key: &str) -> Option<String> {
    let head = store.head(key).await.unwrap();
    head.crc32c.map(|c| format!("{c:08x}"))
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

/// One plain-HTTP request over a fresh connection, as a client other than cloudstore would
/// send it (for writing objects to an emulator by its own wire format). Returns the status
/// and the body.
pub fn raw_http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("a plain http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut conn = std::net::TcpStream::connect(host).expect("the emulator answers");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut payload = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// Percent-encodes a whole string for a URL query or a single path segment.
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes an object to fake-gcs-server with its own JSON API (a media upload), not
/// through cloudstore.
pub fn gcs_raw_put(bucket: &str, name: &str, body: &[u8]) {
    let endpoint = env("CLOUDSTORE_TEST_GCS_ENDPOINT");
    let url = format!(
        "{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
        encode_component(name)
    );
    let (status, answer) = raw_http(
        "POST",
        &url,
        &[("Content-Type", "application/octet-stream")],
        body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// The keys of `store`, in order, without what syncs keep for themselves under
/// [`cloudstore::migrate::STATE_PREFIX`].
pub async fn user_keys(store: &Store) -> Vec<String> {
    store
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.into_string())
        .filter(|k| !k.starts_with(cloudstore::migrate::STATE_PREFIX))
        .collect()
}
