//! Streaming multipart upload with bounded memory and parallel parts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::AsyncWrite;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::checksum::{CHECKSUM_METADATA, Crc32c};
use super::pool::{Buf, Buffers, Lease};
use super::{PartSizer, Progress, ProgressFn, backoff};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{ObjectMeta, PartInfo, PartNumber, Payload, PutOptions, UploadId};
use crate::store::Store;

/// Memory is counted in KiB so that a part of several GiB fits a semaphore request.
pub(super) const UNIT: u64 = 1024;
/// `AsyncWrite` input is gathered into chunks of this size before it joins a part.
const STAGING: usize = 4 * 1024 * 1024;
/// Input is copied and checksummed in blocks of this size (well within a core's L2 cache).
const SUM_BLOCK: usize = 64 * 1024;

/// Permits a part holds until it is uploaded.
struct Reservation {
    _global: super::Held,
    _local: OwnedSemaphorePermit,
}

/// What the engine knows once started; kept apart from the `AsyncWrite` state machine.
struct Engine {
    store: Store,
    key: Key,
    opts: PutOptions,
    size_hint: Option<u64>,
    sizer: Option<PartSizer>,
    upload_id: Option<UploadId>,
    current: Payload,
    /// The object's CRC32C and the current part's CRC64-NVME so far, computed as the bytes
    /// come in.
    sums: Sums,
    current_target: u64,
    reservation: Option<Reservation>,
    next_part: u32,
    tasks: JoinSet<Result<PartInfo>>,
    /// Finished parts.
    parts: Vec<PartInfo>,
    /// Bytes accepted so far.
    written: u64,
    local: Arc<Semaphore>,
    local_units: u64,
    slots: Arc<Semaphore>,
    progress: Option<ProgressFn>,
    bytes_done: Arc<AtomicU64>,
    parts_done: Arc<AtomicU64>,
    closed: bool,
    /// The upload's operation span, parent of its parts and requests.
    span: tracing::Span,
    /// Into how many requests parts after the first are split (see
    /// [`TransferConfig::adapt_to_latency`](super::TransferConfig::adapt_to_latency)).
    split: u64,
}

pub(super) fn units(bytes: u64, cap: u64) -> u32 {
    bytes
        .div_ceil(UNIT)
        .clamp(1, cap.max(1))
        .min(u32::MAX as u64) as u32
}

impl Engine {
    fn new(store: Store, key: Key, opts: PutOptions) -> Engine {
        let cfg = &store.transfer().config;
        let local_units = cfg.upload_memory.div_ceil(UNIT).max(1);
        let span = store.op_span("upload", store.relative(key.clone()).as_str());
        let sums = Sums::for_store(&store);
        Engine {
            span,
            local: Arc::new(Semaphore::new(local_units as usize)),
            local_units,
            slots: Arc::new(Semaphore::new(cfg.parts_in_flight(store.capabilities()))),
            store,
            key,
            opts,
            size_hint: None,
            sizer: None,
            upload_id: None,
            current: Payload::new(),
            sums,
            current_target: 0,
            reservation: None,
            next_part: 1,
            tasks: JoinSet::new(),
            parts: Vec::new(),
            written: 0,
            progress: None,
            bytes_done: Arc::default(),
            parts_done: Arc::default(),
            closed: false,
            split: 1,
        }
    }

    fn sizer(&mut self) -> PartSizer {
        *self.sizer.get_or_insert_with(|| {
            let caps = self.store.capabilities();
            PartSizer::new(caps, self.store.transfer().config.part_size, self.size_hint)
        })
    }

    fn report(&self) {
        if let Some(p) = &self.progress {
            p(Progress {
                bytes: self.bytes_done.load(Ordering::Relaxed),
                total: self.size_hint,
                parts: self.parts_done.load(Ordering::Relaxed),
            });
        }
    }

    /// Reserves memory for the next part: this is where writers wait when the budget is
    /// spent (back-pressure).
    async fn reserve(&mut self) -> Result<()> {
        let (n, split) = (self.next_part, self.split);
        let target = self.sizer().split_size(n, split);
        // The upload's own budget first: an upload waiting on its parts in flight holds
        // nothing of the budget other uploads share.
        let backend = self.store.backend_name();
        let local = super::reserve_in(&self.local, target, self.local_units, backend).await?;
        let global = self.store.transfer().reserve(target, backend).await?;
        self.current_target = target;
        self.reservation = Some(Reservation {
            _global: global,
            _local: local,
        });
        Ok(())
    }

    /// Where the next chunk of input goes: the checksums it continues from, and how many
    /// bytes it may hold without crossing into another part (as far as known now).
    fn next_chunk(&mut self) -> (Known, u64) {
        if self.reservation.is_some() && self.current.len() < self.current_target {
            let base_len = self.current.len();
            let known = Known {
                sums: self.sums,
                base_len,
            };
            return (known, self.current_target - base_len);
        }
        // The chunk starts a part.
        let number = match self.reservation {
            Some(_) => self.next_part.saturating_add(1),
            None => self.next_part,
        };
        let room = self.sizer().split_size(number, self.split);
        let mut sums = self.sums;
        sums.start_part();
        (Known { sums, base_len: 0 }, room)
    }

    /// Adds bytes, sealing and sending parts as they fill. `known`, when given, holds the
    /// checksums of `data` as [`Engine::next_chunk`] predicted its place.
    async fn push(&mut self, mut data: Bytes, mut known: Option<Known>) -> Result<()> {
        if self.closed {
            return Err(self.closed_error());
        }
        if let Some(hint) = self.size_hint
            && self.written + data.len() as u64 > hint
        {
            let e = Error::invalid_input(
                Op::PutPart,
                self.store.backend_name(),
                format!("more bytes written than the declared size of {hint}"),
            )
            .with_key(self.key.as_str());
            self.abort_now().await;
            return Err(e);
        }
        self.written += data.len() as u64;
        while !data.is_empty() {
            // A full part is sent only once more data arrives, so that an object of
            // exactly one part is still a single PUT.
            if self.reservation.is_some()
                && self.current.len() == self.current_target
                && let Err(e) = self.seal().await
            {
                // A part failed for good: nothing may be left behind.
                self.abort_now().await;
                return Err(e);
            }
            if self.reservation.is_none() {
                self.reserve().await?;
            }
            let room = (self.current_target - self.current.len()) as usize;
            let take = room.min(data.len());
            let piece = data.split_to(take);
            match known.take() {
                // The whole chunk joins the part where it was predicted to.
                Some(k) if data.is_empty() && self.current.len() == k.base_len => {
                    self.sums.adopt(k.sums);
                }
                _ => self.sums.update(&piece),
            }
            self.current.push(piece);
        }
        Ok(())
    }

    /// The bytes gathered so far, with their CRC64-NVME where it was computed.
    fn take_current(&mut self) -> Payload {
        let mut payload = std::mem::take(&mut self.current);
        if let Some(crc) = self.sums.end_part() {
            payload.set_crc64nvme(crc);
        }
        payload
    }

    fn closed_error(&self) -> Error {
        Error::invalid_input(
            Op::PutPart,
            self.store.backend_name(),
            "the upload is already finished or aborted",
        )
        .with_key(self.key.as_str())
    }

    async fn ensure_upload(&mut self) -> Result<UploadId> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let started = tokio::time::Instant::now();
        let id = self
            .store
            .backend()
            .create_multipart(&self.key, &self.opts)
            .await?;
        self.upload_id = Some(id.clone());
        // The creation's time is a round trip where it is a request: later parts go
        // smaller, more of them in flight over a long one, as many near the store.
        let caps = self.store.capabilities();
        if !(caps.parallel_parts && caps.create_multipart_round_trip) {
            return Ok(id);
        }
        let latency = started.elapsed();
        let cfg = &self.store.transfer().config;
        let (plan, concurrency) = (cfg.upload_split_for(latency), cfg.concurrency.max(1));
        let sizer = self.sizer();
        let next = self.next_part.saturating_add(1);
        if plan.pieces > 1 && sizer.split_size(next, plan.pieces) < sizer.size_of(next) {
            tracing::debug!(
                latency_ms = latency.as_millis() as u64,
                pieces = plan.pieces,
                in_flight = plan.in_flight,
                "smaller parts after the first"
            );
            self.split = plan.pieces;
            self.slots
                .add_permits(plan.in_flight.saturating_sub(concurrency));
        }
        Ok(id)
    }

    /// Sends the current part in the background, retried while its bytes are held.
    async fn seal(&mut self) -> Result<()> {
        self.reap()?;
        let id = self.ensure_upload().await?;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.closed_error())?;
        let payload = self.take_current();
        if !self.store.capabilities().complete_metadata {
            // The upload is multipart and its completion takes no metadata: the object's
            // CRC32C cannot be recorded any more.
            self.sums.crc32c = None;
        }
        let reservation = self.reservation.take();
        let number = PartNumber::new(self.next_part)?;
        self.next_part += 1;
        let backend = self.store.backend().clone();
        let key = self.key.clone();
        let cfg = self.store.transfer().config.clone();
        let (bytes_done, parts_done) = (self.bytes_done.clone(), self.parts_done.clone());
        let progress = self.progress.clone();
        let total = self.size_hint;
        let span = crate::observe::part_span(&self.span, number.get(), payload.len());
        self.tasks.spawn(crate::observe::traced(span, async move {
            let _held = (reservation, slot);
            let _in_flight =
                crate::observe::InFlight::new(backend.name(), crate::observe::Direction::Transmit);
            let info =
                put_part_with_retries(backend.as_ref(), &key, &id, number, payload, &cfg).await?;
            let bytes = bytes_done.fetch_add(info.size, Ordering::Relaxed) + info.size;
            let parts = parts_done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(p) = progress {
                p(Progress {
                    bytes,
                    total,
                    parts,
                });
            }
            Ok(info)
        }));
        Ok(())
    }

    /// Collects finished parts; the first failure fails the upload.
    fn reap(&mut self) -> Result<()> {
        while let Some(done) = self.tasks.try_join_next() {
            self.parts.push(joined(done, &self.store, &self.key)?);
        }
        Ok(())
    }

    /// Completes the upload, recording the outcome on its span.
    async fn finish(&mut self) -> Result<ObjectMeta> {
        let span = self.span.clone();
        let result = self.finish_in_span().instrument(span.clone()).await;
        span.record("size", self.written);
        crate::observe::record_outcome(&span, &result);
        result
    }

    async fn finish_in_span(&mut self) -> Result<ObjectMeta> {
        if self.closed {
            return Err(self.closed_error());
        }
        self.closed = true;
        // The CRC32C is recorded where the backend stores metadata.
        let checksum =
            self.store.transfer().config.checksum && self.store.capabilities().user_metadata;
        if self.upload_id.is_none() {
            // At most one part: a single PUT.
            let mut opts = self.opts.clone();
            if let (true, Some(crc)) = (checksum, self.sums.crc32c) {
                opts.metadata.insert(CHECKSUM_METADATA.into(), crc.to_hex());
            }
            let payload = self.take_current();
            let size = payload.len();
            self.reservation = None;
            let meta = self.put_with_retries(payload, &opts).await?;
            self.bytes_done.fetch_add(size, Ordering::Relaxed);
            self.parts_done.fetch_add(1, Ordering::Relaxed);
            self.report();
            return Ok(self.store.relative_meta(meta));
        }
        let result = self.complete(checksum).await;
        match result {
            Ok(m) => {
                // Completed: nothing to abort any more.
                self.upload_id = None;
                Ok(self.store.relative_meta(m))
            }
            Err(e) => {
                self.abort_now().await;
                Err(e)
            }
        }
    }

    async fn put_with_retries(&self, payload: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let cfg = &self.store.transfer().config;
        let mut attempt = 1;
        let backend = self.store.backend();
        loop {
            let put = backend.put(&self.key, payload.clone(), opts);
            match crate::observe::attempt(attempt, put).await {
                // A conditional PUT whose answer was lost may have succeeded: repeating
                // it would report a failure for a write that happened. Only plain PUTs
                // are retried.
                Err(e)
                    if e.is_retryable()
                        && attempt < cfg.attempts_over(self.store.backend().as_ref())
                        && opts.mode == crate::object::PutMode::Overwrite =>
                {
                    crate::observe::retry(backend.name(), Op::Put, e.kind());
                    tokio::time::sleep(backoff(cfg.backoff, attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn complete(&mut self, checksum: bool) -> Result<ObjectMeta> {
        if !self.current.is_empty() {
            self.seal().await?;
        }
        while let Some(done) = self.tasks.join_next().await {
            let info = joined(done, &self.store, &self.key)?;
            self.parts.push(info);
        }
        self.parts.sort_by_key(|p| p.number);
        let id = self
            .upload_id
            .clone()
            .unwrap_or_else(|| UploadId(String::new()));
        let backend = self.store.backend();
        let mut extra = crate::object::Metadata::new();
        if let (true, Some(whole)) = (
            checksum && backend.capabilities().complete_metadata,
            self.sums.crc32c,
        ) {
            extra.insert(CHECKSUM_METADATA.into(), whole.to_hex());
        }
        backend
            .complete_multipart_with_metadata(&self.key, &id, &self.parts, &self.opts.mode, &extra)
            .await
    }

    async fn abort_now(&mut self) {
        self.closed = true;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take()
            && let Err(e) = self.store.backend().abort_multipart(&self.key, &id).await
        {
            tracing::warn!(key = %self.key, error = %e, "aborting a failed upload failed");
        }
    }
}

/// Uploads one part, retrying with backoff what can be retried; the payload's bytes are
/// shared, not copied, between attempts.
pub(super) async fn put_part_with_retries(
    backend: &dyn crate::Backend,
    key: &Key,
    id: &UploadId,
    number: PartNumber,
    payload: Payload,
    cfg: &super::TransferConfig,
) -> Result<PartInfo> {
    let mut attempt = 1;
    loop {
        let sent = backend.put_part(key, id, number, payload.clone());
        match crate::observe::attempt(attempt, sent).await {
            Err(e) if e.is_retryable() && attempt < cfg.attempts_over(backend) => {
                crate::observe::retry(backend.name(), Op::PutPart, e.kind());
                tracing::debug!(part = number.get(), attempt, error = %e, "retrying a part");
                tokio::time::sleep(backoff(cfg.backoff, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The checksums an upload computes as its bytes arrive (while they are still in the CPU
/// caches, rather than in a second pass over parts that have left them): the object's
/// CRC32C, where the transfer engine records it, and the current part's CRC64-NVME, where
/// the store sends one with every write
/// ([`Capabilities::sends_crc64nvme`](crate::Capabilities::sends_crc64nvme)). Both run on
/// from one chunk to the next: combining CRCs costs more than computing them here.
#[derive(Clone, Copy)]
struct Sums {
    crc32c: Option<Crc32c>,
    crc64: Option<crc_fast::Digest>,
}

impl Sums {
    fn for_store(store: &Store) -> Sums {
        let caps = store.capabilities();
        let recorded = caps.user_metadata || caps.complete_metadata;
        Sums {
            crc32c: (store.transfer().config.checksum && recorded).then(Crc32c::new),
            crc64: caps
                .sends_crc64nvme
                .then(|| crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme)),
        }
    }

    /// Whether nothing is computed.
    fn is_off(&self) -> bool {
        self.crc32c.is_none() && self.crc64.is_none()
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(c) = &mut self.crc32c {
            c.update(data);
        }
        if let Some(d) = &mut self.crc64 {
            d.update(data);
        }
    }

    /// Takes the sums a writer continued, for what is still computed.
    fn adopt(&mut self, continued: Sums) {
        self.crc64 = continued.crc64;
        if self.crc32c.is_some() {
            self.crc32c = continued.crc32c;
        }
    }

    /// Starts the next part's CRC64-NVME (the CRC32C covers the whole object).
    fn start_part(&mut self) {
        if let Some(d) = &mut self.crc64 {
            d.reset();
        }
    }

    /// The part's CRC64-NVME, if computed, starting the next part's.
    fn end_part(&mut self) -> Option<u64> {
        self.crc64.as_mut().map(|d| d.finalize_reset())
    }
}

/// A chunk's checksums, computed by the writer from where [`Engine::next_chunk`] said the
/// chunk would go.
#[derive(Clone, Copy)]
struct Known {
    sums: Sums,
    /// How many bytes the part held before the chunk (0: the chunk starts a part).
    base_len: u64,
}

fn joined<T>(
    done: std::result::Result<Result<T>, tokio::task::JoinError>,
    store: &Store,
    key: &Key,
) -> Result<T> {
    match done {
        Ok(r) => r,
        Err(e) => Err(Error::new(
            ErrorKind::Other,
            Op::PutPart,
            store.backend_name(),
            format!("a part task failed: {e}"),
        )
        .with_key(key.as_str())),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropped unfinished: abort in the background so that nothing is left behind.
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, upload = %id, "an unfinished upload was dropped outside a runtime and could not be aborted");
            return;
        };
        // Parts still in flight are stopped and awaited first, so that none lands after
        // the abort.
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.abort_all();
        let (backend, key) = (self.store.backend().clone(), self.key.clone());
        handle.spawn(async move {
            while tasks.join_next().await.is_some() {}
            if let Err(e) = backend.abort_multipart(&key, &id).await {
                tracing::warn!(key = %key, error = %e, "aborting a dropped upload failed");
            }
        });
    }
}

enum State {
    Idle(Box<Engine>),
    Busy(BoxFuture<'static, (Box<Engine>, Result<()>)>),
    /// Completing, started by `shutdown`.
    Finishing(BoxFuture<'static, Result<ObjectMeta>>),
    /// Completed by `shutdown`.
    Done(ObjectMeta),
    Gone,
}

/// A streaming upload: write with `tokio::io::AsyncWriteExt`, then [`Upload::finish`].
///
/// Data is cut into parts as it arrives; up to
/// [`TransferConfig::concurrency`](super::TransferConfig::concurrency) parts upload at once,
/// and writes wait while the memory budget is spent. Below one part, the object is written
/// with a single PUT. Complete it with [`Upload::finish`] (or `shutdown` from
/// `AsyncWriteExt`, after which `finish` returns the metadata), or give it up with
/// [`Upload::abort`]; an upload dropped before completing is aborted in the background.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tokio::io::AsyncWriteExt;
/// let store = cloudstore::Store::memory();
/// let mut up = store.writer("logs/today.txt", &Default::default())?;
/// up.write_all(b"line one\n").await?;
/// up.write_all(b"line two\n").await?;
/// let meta = up.finish().await?;
/// assert_eq!(meta.size, 18);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct Upload {
    state: State,
    /// Input gathered into a chunk of [`STAGING`] bytes (a pooled buffer).
    staging: Buf,
    /// The checksums continued over `staging`, block by block as the input is copied in
    /// (`None`: the engine computes them when the chunk joins the upload).
    staging_sums: Option<Known>,
    /// The chunk is handed on at this size (at most [`STAGING`]; less where a part ends).
    staging_limit: usize,
    buffers: Arc<Buffers>,
    _lease: Lease,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").finish_non_exhaustive()
    }
}

impl Upload {
    pub(crate) fn new(store: Store, key: Key, opts: PutOptions) -> Upload {
        let buffers = store.transfer().buffers.clone();
        Upload {
            staging_sums: None,
            staging_limit: STAGING,
            state: State::Idle(Box::new(Engine::new(store, key, opts))),
            staging: Buf::default(),
            _lease: buffers.lease(),
            buffers,
        }
    }

    fn engine(&mut self) -> Option<&mut Engine> {
        match &mut self.state {
            State::Idle(e) => Some(e),
            _ => None,
        }
    }

    /// Declares the total size in advance (before writing), so that parts are sized once
    /// and progress reports a total.
    pub fn with_size_hint(mut self, size: u64) -> Self {
        if let Some(e) = self.engine()
            && e.sizer.is_none()
        {
            e.size_hint = Some(size);
        }
        self
    }

    /// Calls `progress` as parts complete.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        if let Some(e) = self.engine() {
            e.progress = Some(progress);
        }
        self
    }

    /// Adds owned bytes to the upload without copying them.
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<()> {
        self.settle().await?;
        self.flush_staging().await?;
        self.run(move |e| Box::pin(async move { e.push(data, None).await }))
            .await
    }

    async fn flush_staging(&mut self) -> Result<()> {
        if self.staging.is_empty() {
            return Ok(());
        }
        let (chunk, sums) = self.take_staging();
        self.run(move |e| Box::pin(async move { e.push(chunk, sums).await }))
            .await
    }

    async fn run<F>(&mut self, f: F) -> Result<()>
    where
        F: for<'a> FnOnce(&'a mut Engine) -> BoxFuture<'a, Result<()>>,
    {
        let mut engine = match std::mem::replace(&mut self.state, State::Gone) {
            State::Idle(e) => e,
            other => {
                self.state = other;
                return Err(Error::invalid_input(
                    Op::PutPart,
                    "cloudstore",
                    "the upload is busy or gone",
                ));
            }
        };
        let span = engine.span.clone();
        let r = crate::observe::in_span(&span, f(&mut engine)).await;
        self.state = State::Idle(engine);
        r
    }

    /// Completes the upload and returns the object's metadata. On failure the multipart
    /// upload is aborted: nothing is left behind and no partial object is visible.
    pub async fn finish(mut self) -> Result<ObjectMeta> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Done(meta) => return Ok(meta),
            State::Finishing(fut) => return fut.await,
            other => self.state = other,
        }
        self.settle().await?;
        self.flush_staging().await?;
        let mut engine = match std::mem::replace(&mut self.state, State::Gone) {
            State::Idle(e) => e,
            _ => {
                return Err(Error::invalid_input(
                    Op::CompleteMultipart,
                    "cloudstore",
                    "the upload is gone",
                ));
            }
        };
        engine.finish().await
    }

    /// Abandons the upload and removes what was uploaded.
    pub async fn abort(mut self) -> Result<()> {
        self.settle().await?;
        if let State::Idle(mut e) = std::mem::replace(&mut self.state, State::Gone) {
            let span = e.span.clone();
            e.abort_now().instrument(span.clone()).await;
            span.record("outcome", "aborted");
        }
        Ok(())
    }

    /// Waits for a write in progress (left by a cancelled `poll_write`).
    async fn settle(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Busy(fut) => {
                let (engine, r) = fut.await;
                self.state = State::Idle(engine);
                r
            }
            other => {
                self.state = other;
                Ok(())
            }
        }
    }

    fn poll_busy(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Busy(fut) = &mut self.state {
            let (engine, r) = ready!(fut.as_mut().poll(cx));
            self.state = State::Idle(engine);
            r.map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }

    /// The staged input as one chunk, with its checksums.
    fn take_staging(&mut self) -> (Bytes, Option<Known>) {
        let chunk = self.buffers.freeze(std::mem::take(&mut self.staging));
        (chunk, self.staging_sums.take())
    }

    /// Starts a staging chunk: a pooled buffer, and where the chunk will go.
    fn begin_staging(&mut self) {
        self.staging = self.buffers.take(STAGING);
        self.staging_limit = STAGING;
        self.staging_sums = None;
        if let State::Idle(engine) = &mut self.state
            && !engine.sums.is_off()
        {
            let (known, room) = engine.next_chunk();
            self.staging_sums = Some(known);
            self.staging_limit = room.clamp(1, STAGING as u64) as usize;
        }
    }

    fn start_push(&mut self) {
        let (chunk, sums) = self.take_staging();
        if let State::Idle(mut engine) = std::mem::replace(&mut self.state, State::Gone) {
            let span = engine.span.clone();
            self.state = State::Busy(Box::pin(async move {
                let r = crate::observe::in_span(&span, engine.push(chunk, sums)).await;
                (engine, r)
            }));
        }
    }
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_busy(cx))?;
        if matches!(this.state, State::Gone) {
            return Poll::Ready(Err(io::Error::other("the upload is finished or aborted")));
        }
        if this.staging.len() >= this.staging_limit {
            this.start_push();
            ready!(this.poll_busy(cx))?;
        }
        if this.staging.capacity() == 0 {
            this.begin_staging();
        }
        let n = buf
            .len()
            .min(this.staging_limit.saturating_sub(this.staging.len()));
        match &mut this.staging_sums {
            // Checksummed block by block right after the copy, while the block is still in
            // the CPU's nearest caches.
            Some(known) => {
                for block in buf[..n].chunks(SUM_BLOCK) {
                    this.staging.extend_from_slice(block);
                    known.sums.update(block);
                }
            }
            None => this.staging.extend_from_slice(&buf[..n]),
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_busy(cx))?;
        if !this.staging.is_empty() && matches!(this.state, State::Idle(_)) {
            this.start_push();
            ready!(this.poll_busy(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Completes the upload, like [`Upload::finish`] (which then returns the metadata).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let this = &mut *self;
        if let State::Idle(_) = this.state
            && let State::Idle(mut engine) = std::mem::replace(&mut this.state, State::Gone)
        {
            this.state = State::Finishing(Box::pin(async move { engine.finish().await }));
        }
        match &mut this.state {
            State::Finishing(fut) => {
                let r = ready!(fut.as_mut().poll(cx));
                match r {
                    Ok(meta) => {
                        this.state = State::Done(meta);
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err(io::Error::other(e))),
                }
            }
            State::Done(_) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::other("the upload is gone"))),
        }
    }
}

impl Store {
    /// A streaming upload to `key` (see [`Upload`]); `opts` gives the condition, content
    /// type and metadata of the object it will write.
    pub fn writer(&self, key: &str, opts: &PutOptions) -> Result<Upload> {
        let k = self.full_key(Op::Put, key)?;
        self.check_put(Op::Put, &k, opts)?;
        Ok(Upload::new(self.clone(), k, opts.clone()))
    }

    /// [`Store::writer`] for attributes that come from another store (a migration): they
    /// need not follow the [attribute contract](crate::attributes), only be storable here.
    pub(crate) fn writer_for_copy(&self, key: &str, opts: &PutOptions) -> Result<Upload> {
        let k = self.full_key(Op::Put, key)?;
        self.check_capabilities(Op::Put, &k, opts)?;
        Ok(Upload::new(self.clone(), k, opts.clone()))
    }

    /// Uploads a stream of owned chunks, sent as they are (no copy).
    pub async fn upload_stream<S>(
        &self,
        key: &str,
        stream: S,
        opts: &PutOptions,
    ) -> Result<ObjectMeta>
    where
        S: futures::Stream<Item = Result<Bytes>> + Send,
    {
        let options = StreamUploadOptions {
            put: opts.clone(),
            ..Default::default()
        };
        self.upload_stream_with(key, stream, &options).await
    }

    /// [`Store::upload_stream`] with a size hint (parts sized once, progress with a total,
    /// more bytes than declared refused) and progress.
    pub async fn upload_stream_with<S>(
        &self,
        key: &str,
        stream: S,
        options: &StreamUploadOptions,
    ) -> Result<ObjectMeta>
    where
        S: futures::Stream<Item = Result<Bytes>> + Send,
    {
        use futures::StreamExt;
        let mut up = self.writer(key, &options.put)?;
        if let Some(size) = options.size_hint {
            up = up.with_size_hint(size);
        }
        if let Some(p) = &options.progress {
            up = up.with_progress(p.clone());
        }
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => up.write_bytes(c).await?,
                Err(e) => {
                    // A failing source must not become a short object.
                    up.abort().await?;
                    return Err(e);
                }
            }
        }
        up.finish().await
    }
}

/// Options of [`Store::upload_stream_with`].
#[derive(Clone, Default)]
pub struct StreamUploadOptions {
    /// Condition, content type and metadata of the object.
    pub put: PutOptions,
    /// The total size, when known in advance.
    pub size_hint: Option<u64>,
    /// Called as parts complete.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for StreamUploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamUploadOptions")
            .field("put", &self.put)
            .field("size_hint", &self.size_hint)
            .finish_non_exhaustive()
    }
}
