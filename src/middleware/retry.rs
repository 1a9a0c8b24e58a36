//! Retries with backoff, a retry budget, resumed reads and honest conditional writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteStream, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata,
    MultipartUploadInfo, NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod,
    PresignedRequest, PutMode, PutOptions, UploadId,
};
use crate::transfer::CHECKSUM_METADATA;

/// How [`RetryBackend`] retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles each time, with up to 50 % jitter.
    pub base_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Retry tokens of the budget shared by all requests through one [`RetryBackend`] (and
    /// its clones). A retry costs 5 tokens (10 after a timeout); a success gives 1 back.
    /// When the budget is spent, failures are returned at once: a service in trouble is
    /// not flooded with retries.
    pub budget: u32,
    /// Longest wait for an answer, and, in a read's body, for the next bytes: past it the
    /// request is cut and retried (a read from the first byte it has not delivered).
    /// Writes get this plus the time their payload takes at [`RetryPolicy::slowest_rate`].
    /// `None`: no limit beyond the HTTP client's own timeout. Server-side copies and
    /// multipart completions, which services may take minutes over, are not timed.
    pub stall_timeout: Option<Duration>,
    /// The slowest upload rate (bytes a second) a write's deadline allows for.
    pub slowest_rate: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            budget: 500,
            stall_timeout: Some(Duration::from_secs(30)),
            slowest_rate: 1 << 20,
        }
    }
}

impl RetryPolicy {
    /// The deadline of one attempt that sends `bytes`.
    fn deadline(&self, bytes: u64) -> Option<Duration> {
        let rate = self.slowest_rate.max(1);
        self.stall_timeout
            .map(|t| t + Duration::from_secs_f64(bytes as f64 / rate as f64))
    }
}

const RETRY_COST: u32 = 5;
const TIMEOUT_COST: u32 = 10;

#[derive(Debug)]
struct Budget {
    tokens: AtomicU32,
    capacity: u32,
}

impl Budget {
    fn withdraw(&self, cost: u32) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
            .is_ok()
    }

    fn refund(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.capacity).then_some(t + 1)
            });
    }
}

/// What a [`RetryBackend`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryCounts {
    /// Requests sent again after a failure.
    pub retries: u64,
    /// Failures returned without retry because the budget was spent.
    pub budget_exhausted: u64,
    /// Reads continued from where their body stopped.
    pub resumed_reads: u64,
    /// Conditional writes whose answer was lost and that were found, on checking, to have
    /// been written by the lost attempt.
    pub verified_after_lost_answer: u64,
}

#[derive(Debug, Default)]
struct Counters {
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    resumed_reads: AtomicU64,
    verified: AtomicU64,
}

/// A [`Backend`] that retries the requests of the one it wraps.
///
/// - **What is retried**: errors that say a retry can help ([`Error::is_retryable`]):
///   throttling (429, 503 `SlowDown`), 500s, timeouts, cut connections, S3's error inside
///   a 200 answer to `CompleteMultipartUpload`. Never a missing object, a failed
///   condition, bad input or bad credentials.
/// - **How**: exponential backoff with jitter, at most [`RetryPolicy::max_attempts`], while
///   the shared [`RetryPolicy::budget`] lasts.
/// - **Reads** whose body fails part-way are continued from the first byte not yet
///   delivered, pinned to the object's ETag: an object replaced meanwhile gives
///   `PreconditionFailed`, never a mix of two versions.
/// - **Conditional writes** (`Create`, `IfMatch`, conditional completion and copy): when an
///   attempt fails without a clear answer (a timeout, a cut connection) the write may have
///   happened, so the retry can meet `AlreadyExists` or `PreconditionFailed` caused by the
///   lost attempt itself. Each conditional write therefore carries a fresh id in its
///   metadata ([`WRITE_ID_METADATA`]); the object found is reported as this write's only
///   if it carries that id (counted in [`RetryCounts::verified_after_lost_answer`]),
///   otherwise the error is returned and says an earlier attempt may have written it. A
///   completion whose retry fails after a lost answer (its upload gone, its blocks already
///   committed) is checked the same way. A server-side copy cannot carry an id: a copy
///   counts as done when the destination has the source's size and CRC32C.
/// - **Creating a multipart upload** whose answer was lost may leave an upload nobody
///   knows of; the retry then aborts uploads of the same key begun while the creation was
///   tried (where the backend lists uploads with their start times).
#[derive(Debug, Clone)]
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    /// Write ids of conditional multipart uploads, by upload id, until completion.
    write_ids: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

/// The result of one retried request and whether attempts failed without an answer.
struct Outcome<T> {
    result: Result<T>,
    /// An attempt before the last failed in a way that may come after the request was
    /// carried out: what the last attempt met may be that attempt's doing.
    lost_answer: bool,
    /// The last attempt failed that way (it may have been carried out).
    last_unanswered: bool,
}

impl RetryBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> RetryBackend {
        RetryBackend {
            inner,
            budget: Arc::new(Budget {
                tokens: AtomicU32::new(policy.budget),
                capacity: policy.budget,
            }),
            policy,
            counters: Arc::default(),
            write_ids: Arc::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// What was retried so far.
    pub fn counts(&self) -> RetryCounts {
        let c = &self.counters;
        RetryCounts {
            retries: c.retries.load(Ordering::Relaxed),
            budget_exhausted: c.budget_exhausted.load(Ordering::Relaxed),
            resumed_reads: c.resumed_reads.load(Ordering::Relaxed),
            verified_after_lost_answer: c.verified.load(Ordering::Relaxed),
        }
    }

    /// Whether to try again after `e` on attempt `attempt`; sleeps the backoff if so.
    async fn again(&self, e: &Error, attempt: u32) -> bool {
        if !e.is_retryable() || attempt >= self.policy.max_attempts {
            return false;
        }
        let cost = if e.kind() == ErrorKind::Timeout {
            TIMEOUT_COST
        } else {
            RETRY_COST
        };
        if !self.budget.withdraw(cost) {
            self.counters
                .budget_exhausted
                .fetch_add(1, Ordering::Relaxed);
            crate::observe::budget_exhausted(self.inner.name());
            return false;
        }
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        crate::observe::retry(self.inner.name(), e.op(), e.kind());
        tracing::debug!(op = %e.op(), attempt, error = %e, "retrying");
        let delay = crate::transfer::backoff(self.policy.base_delay, attempt);
        tokio::time::sleep(delay.min(self.policy.max_delay)).await;
        true
    }

    async fn run<T, F, Fut>(&self, op: Op, deadline: Option<Duration>, mut call: F) -> Outcome<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        let mut lost_answer = false;
        loop {
            let sent = crate::observe::attempt(attempt, call());
            let answer = match deadline {
                None => sent.await,
                Some(d) => match tokio::time::timeout(d, sent).await {
                    Ok(r) => r,
                    Err(_) => {
                        crate::observe::stall(self.inner.name(), op);
                        Err(Error::new(
                            ErrorKind::Timeout,
                            op,
                            self.inner.name(),
                            format!("no answer within {d:?}"),
                        )
                        .with_retryable(true))
                    }
                },
            };
            match answer {
                Ok(v) => {
                    self.budget.refund();
                    return Outcome {
                        result: Ok(v),
                        lost_answer,
                        last_unanswered: false,
                    };
                }
                Err(e) => {
                    // A throttling answer says the request was refused; another failure
                    // that a retry could mend (a timeout, a cut connection, a 500) may
                    // come after the request was carried out.
                    let unanswered = e.is_retryable() && e.kind() != ErrorKind::RateLimited;
                    if !self.again(&e, attempt).await {
                        return Outcome {
                            result: Err(e),
                            lost_answer,
                            last_unanswered: unanswered,
                        };
                    }
                    lost_answer |= unanswered;
                    attempt += 1;
                }
            }
        }
    }

    /// Runs a request without a payload, within the stall timeout.
    async fn retried<T, F, Fut>(&self, op: Op, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run(op, self.policy.stall_timeout, call).await.result
    }

    /// After a conditional write met the condition it set itself up for: whether the
    /// object is the one this write would have made, by its write id (or, for copies, its
    /// size and CRC32C).
    async fn written_by_us(
        &self,
        key: &Key,
        size: u64,
        mark: Option<(&str, &str)>,
        e: Error,
    ) -> Result<ObjectMeta> {
        let Some((entry, value)) = mark else {
            return Err(lost_answer_error(
                e,
                "and there is nothing to recognise it by",
            ));
        };
        match self.head(key).await {
            Ok(meta)
                if meta.size == size
                    && meta
                        .metadata
                        .get(entry)
                        .is_some_and(|v| v.eq_ignore_ascii_case(value)) =>
            {
                self.counters.verified.fetch_add(1, Ordering::Relaxed);
                Ok(meta)
            }
            _ => Err(lost_answer_error(
                e,
                "and the object there is not this write's",
            )),
        }
    }
}

fn lost_answer_error(e: Error, why: &str) -> Error {
    let mut out = Error::new(
        e.kind(),
        e.op(),
        e.backend(),
        format!(
            "{}; an earlier attempt's answer was lost and it may have written the object, {why}",
            e.message()
        ),
    )
    .with_retryable(false);
    if let Some(k) = e.key() {
        out = out.with_key(k.to_owned());
    }
    out.with_source(e)
}

/// Whether an error after a lost answer may be the lost attempt's own doing.
fn self_inflicted(e: &Error, mode: &PutMode) -> bool {
    match mode {
        PutMode::Overwrite => false,
        PutMode::Create => e.kind() == ErrorKind::AlreadyExists,
        PutMode::IfMatch(_) => e.kind() == ErrorKind::PreconditionFailed,
    }
}

/// The metadata entry holding the id of a conditional write (`Create`, `IfMatch`) that
/// went through a [`RetryBackend`]: it recognises the write if its answer is lost.
pub const WRITE_ID_METADATA: &str = crate::attributes::WRITE_ID_RECORD;

/// `opts` with a fresh write id when the write is conditional.
fn with_write_id(opts: &PutOptions) -> (PutOptions, Option<String>) {
    let mut opts = opts.clone();
    if opts.mode == PutMode::Overwrite {
        return (opts, None);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    opts.metadata.insert(WRITE_ID_METADATA.into(), id.clone());
    (opts, Some(id))
}

#[async_trait]
impl Backend for RetryBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn retries_requests(&self) -> bool {
        true
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        // A conditional write carries an id of its own, to tell it from an identical
        // object that was already there if its answer is lost.
        let (opts, id) = with_write_id(opts);
        let out = self
            .run(Op::Put, self.policy.deadline(data.len()), || {
                self.inner.put(key, data.clone(), &opts)
            })
            .await;
        match out.result {
            Err(e) if out.lost_answer && self_inflicted(&e, &opts.mode) => {
                let mark = id.as_deref().map(|v| (WRITE_ID_METADATA, v));
                self.written_by_us(key, data.len(), mark, e).await
            }
            other => other,
        }
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let first = self.retried(Op::Get, || self.inner.get(key, opts)).await?;
        Ok(self.resuming(key, first))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.retried(Op::Head, || self.inner.head(key)).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.retried(Op::Delete, || self.inner.delete(key)).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.retried(Op::List, || self.inner.list(req)).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let out = self
            .run(Op::Copy, None, || self.inner.copy(from, to, mode.clone()))
            .await;
        let put_mode = mode.as_put_mode();
        match out.result {
            Err(e) if out.lost_answer && self_inflicted(&e, &put_mode) => {
                // A copy keeps the source's metadata: the destination is the copy when
                // both have the same size and CRC32C.
                match self.head(from).await {
                    Ok(src) => {
                        let crc = src.metadata.get(CHECKSUM_METADATA).cloned();
                        let mark = crc.as_deref().map(|c| (CHECKSUM_METADATA, c));
                        self.written_by_us(to, src.size, mark, e).await
                    }
                    Err(_) => Err(lost_answer_error(e, "and the source cannot be read")),
                }
            }
            other => other,
        }
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let started = std::time::SystemTime::now();
        let (opts, id) = with_write_id(opts);
        let out = self
            .run(Op::CreateMultipart, self.policy.stall_timeout, || {
                self.inner.create_multipart(key, &opts)
            })
            .await;
        if let (Ok(upload), Some(id)) = (&out.result, id) {
            self.write_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(upload.0.clone(), id);
        }
        if out.lost_answer || out.last_unanswered {
            // Failed in the end or not, an attempt may have created an upload.
            self.abort_lost_uploads(key, out.result.as_ref().ok(), started)
                .await;
        }
        out.result
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        self.run(Op::PutPart, self.policy.deadline(data.len()), || {
            self.inner.put_part(key, upload, part, data.clone())
        })
        .await
        .result
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        // The write id given at creation (where metadata is fixed then), or one added now.
        let mut extra = extra_metadata.clone();
        let known = self
            .write_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&upload.0);
        let id = match known {
            Some(id) => Some(id),
            None if *mode != PutMode::Overwrite && self.inner.capabilities().complete_metadata => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                extra.insert(WRITE_ID_METADATA.into(), id.clone());
                Some(id)
            }
            None => None,
        };
        let out = self
            .run(Op::CompleteMultipart, None, || {
                self.inner
                    .complete_multipart_with_metadata(key, upload, parts, mode, &extra)
            })
            .await;
        match out.result {
            // After a lost answer the completion may be done: the upload is then gone
            // (S3: NoSuchUpload), its blocks committed (Azure: InvalidBlockList), or the
            // condition spent. Whatever the retry met, the object decides.
            Err(e) if out.lost_answer => {
                let size = parts.iter().map(|p| p.size).sum();
                let crc = extra_metadata.get(CHECKSUM_METADATA).cloned();
                let mark = match (&id, &crc) {
                    (Some(id), _) => Some((WRITE_ID_METADATA, id.as_str())),
                    (None, Some(c)) if *mode == PutMode::Overwrite => {
                        Some((CHECKSUM_METADATA, c.as_str()))
                    }
                    _ => None,
                };
                self.written_by_us(key, size, mark, e).await
            }
            other => other,
        }
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let out = self
            .run(Op::AbortMultipart, self.policy.stall_timeout, || {
                self.inner.abort_multipart(key, upload)
            })
            .await;
        match out.result {
            // The lost attempt aborted it.
            Err(e) if out.lost_answer && e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        self.retried(Op::Head, || self.inner.native_checksum(key))
            .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.retried(Op::ListMultipart, || {
            self.inner.list_multipart_uploads(prefix)
        })
        .await
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        // Signing is local: nothing to retry.
        self.inner.presign(method, key, expires_in).await
    }
}

impl RetryBackend {
    /// Aborts uploads of `key` other than `keep` created since `since` (a lost answer's).
    async fn abort_lost_uploads(
        &self,
        key: &Key,
        keep: Option<&UploadId>,
        since: std::time::SystemTime,
    ) {
        if !self.inner.capabilities().multipart_listing {
            return;
        }
        // Only uploads begun while this creation was being tried (a second of clock skew
        // either way): another writer's upload of the same key begun in that window would
        // be aborted too, and fail with a typed error, never lose data.
        let (since, until) = (
            since - Duration::from_secs(1),
            std::time::SystemTime::now() + Duration::from_secs(1),
        );
        let Ok(uploads) = self.list_multipart_uploads(key.as_str()).await else {
            return;
        };
        for u in uploads {
            let recent = u.initiated.is_some_and(|t| t >= since && t <= until);
            if u.key == *key && Some(&u.upload_id) != keep && recent {
                tracing::debug!(key = %key, "aborting an upload whose creation answer was lost");
                let _ = self.abort_multipart(key, &u.upload_id).await;
            }
        }
    }

    /// The body of `first`, continued from where it stops when it fails part-way.
    fn resuming(&self, key: &Key, first: GetResult) -> GetResult {
        let GetResult { meta, range, body } = first;
        let state = Resume {
            backend: self.clone(),
            key: key.clone(),
            etag: meta.etag.clone(),
            next: range.start,
            end: range.end,
            body,
            attempt: 1,
            done: false,
        };
        let body: ByteStream = futures::stream::unfold(state, Resume::step).boxed();
        GetResult { meta, range, body }
    }
}

struct Resume {
    backend: RetryBackend,
    key: Key,
    /// Pins the continued reads; without one a read is not continued (it could mix two
    /// versions of the object).
    etag: Option<String>,
    /// The first byte (of the object) not yet delivered.
    next: u64,
    end: u64,
    body: ByteStream,
    attempt: u32,
    done: bool,
}

impl Resume {
    async fn step(mut self) -> Option<(Result<Bytes>, Resume)> {
        if self.done {
            return None;
        }
        loop {
            let next = match self.backend.policy.stall_timeout {
                None => self.body.next().await,
                Some(d) => match tokio::time::timeout(d, self.body.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        crate::observe::stall(self.backend.name(), Op::Get);
                        Some(Err(Error::new(
                            ErrorKind::Timeout,
                            Op::Get,
                            self.backend.name(),
                            format!("no bytes for {d:?}"),
                        )
                        .with_key(self.key.as_str())
                        .with_retryable(true)))
                    }
                },
            };
            let failure = match next {
                Some(Ok(chunk)) => {
                    self.next += chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                None if self.next >= self.end => return None,
                None => Error::new(
                    ErrorKind::Other,
                    Op::Get,
                    self.backend.name(),
                    format!("the body ended at byte {} of {}", self.next, self.end),
                )
                .with_key(self.key.as_str())
                .with_retryable(true),
                // Every byte is in: a failure after the last one (a reset, a stall before
                // the connection closes) loses nothing, and no range is left to ask for.
                Some(Err(_)) if self.next >= self.end => return None,
                Some(Err(e)) => e,
            };
            if self.etag.is_none() || !self.backend.again(&failure, self.attempt).await {
                self.done = true;
                return Some((Err(failure), self));
            }
            self.attempt += 1;
            let opts = GetOptions {
                range: Some((self.next..self.end).into()),
                if_match: self.etag.clone(),
                ..Default::default()
            };
            let again =
                crate::observe::attempt(self.attempt, self.backend.inner.get(&self.key, &opts));
            let again = match self.backend.policy.stall_timeout {
                None => again.await,
                Some(d) => tokio::time::timeout(d, again).await.unwrap_or_else(|_| {
                    crate::observe::stall(self.backend.name(), Op::Get);
                    Err(Error::new(
                        ErrorKind::Timeout,
                        Op::Get,
                        self.backend.name(),
                        format!("no answer within {d:?}"),
                    )
                    .with_retryable(true))
                }),
            };
            match again {
                Ok(more) if more.meta.etag.is_some() && more.meta.etag != self.etag => {
                    // The server ignored If-Match: never mix two versions.
                    self.done = true;
                    let e = Error::new(
                        ErrorKind::PreconditionFailed,
                        Op::Get,
                        self.backend.name(),
                        "the object changed while it was read",
                    )
                    .with_key(self.key.as_str());
                    return Some((Err(e), self));
                }
                Ok(more) => {
                    self.backend
                        .counters
                        .resumed_reads
                        .fetch_add(1, Ordering::Relaxed);
                    self.body = more.body;
                }
                Err(e) if e.is_retryable() => {
                    // Try again (the attempt count bounds it).
                    self.body = futures::stream::iter([Err(e)]).boxed();
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}
