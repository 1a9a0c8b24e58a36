//! Fault injection for tests (feature `faults`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest,
    PutMode, PutOptions, UploadId,
};

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with an error of this kind without reaching the backend (retryable
    /// as [`ErrorKind::is_retryable`] says).
    Fail(ErrorKind),
    /// The call fails like a 500 answer: kind `Other`, retryable, not carried out.
    ServerError,
    /// The call is carried out, but its answer is lost: the caller sees a retryable
    /// `Timeout` for a request that happened.
    LoseAnswer,
    /// The call waits this long before going on.
    Delay(Duration),
    /// A read's body stops with a retryable error (a cut connection) after this many bytes
    /// (reads only; elsewhere it does nothing).
    CutBody(u64),
    /// A read's body stops sending, without closing, after this many bytes (a stalled
    /// connection; reads only).
    StallBody(u64),
}

/// What happens to a read's body.
#[derive(Debug, Clone, Copy)]
enum BodyFault {
    Cut(u64),
    Stall(u64),
}

/// When to inject a fault: "fail part 3 once", "cut the first GET after 1 MiB".
#[derive(Debug, Clone)]
pub struct Rule {
    op: Op,
    part: Option<u32>,
    key_prefix: Option<String>,
    skip: u64,
    times: u64,
    fault: Fault,
}

impl Rule {
    /// Injects `fault` into the next call of `op` (once; see [`Rule::times`]).
    pub fn new(op: Op, fault: Fault) -> Rule {
        Rule {
            op,
            part: None,
            key_prefix: None,
            skip: 0,
            times: 1,
            fault,
        }
    }

    /// Only for part `n` (of `PutPart`).
    pub fn part(mut self, n: u32) -> Rule {
        self.part = Some(n);
        self
    }

    /// Only for keys starting with `prefix`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Rule {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// Lets the first `n` matching calls through.
    pub fn after(mut self, n: u64) -> Rule {
        self.skip = n;
        self
    }

    /// Fires for `n` matching calls (`u64::MAX`: every one).
    pub fn times(mut self, n: u64) -> Rule {
        self.times = n;
        self
    }

    fn matches(&self, op: Op, key: &str, part: Option<u32>) -> bool {
        self.op == op
            && self.part.is_none_or(|p| Some(p) == part)
            && self
                .key_prefix
                .as_deref()
                .is_none_or(|k| key.starts_with(k))
    }
}

/// Faults drawn at random from a seed: each call of one of `ops` gets a fault with
/// probability `probability`, picked from `faults` (a `CutBody(n)` or `StallBody(n)` acts
/// after a random number of bytes below `n`, or below the body's length when `n` is 0).
#[derive(Debug, Clone)]
pub struct Chaos {
    /// The seed: the same seed and the same calls give the same faults.
    pub seed: u64,
    /// Chance of a fault per call, from 0 to 1.
    pub probability: f64,
    /// The faults to pick from.
    pub faults: Vec<Fault>,
    /// The operations that get faults.
    pub ops: Vec<Op>,
}

/// Faults injected so far, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// `Fail` and `ServerError`.
    pub errors: u64,
    /// `LoseAnswer`.
    pub lost_answers: u64,
    /// `Delay`.
    pub delays: u64,
    /// `CutBody` and `StallBody` that cut or stalled a body.
    pub cut_bodies: u64,
}

impl FaultCounts {
    /// All faults.
    pub fn total(&self) -> u64 {
        self.errors + self.lost_answers + self.delays + self.cut_bodies
    }
}

#[derive(Debug, Default)]
struct Counters {
    errors: AtomicU64,
    lost: AtomicU64,
    delays: AtomicU64,
    cuts: AtomicU64,
}

#[derive(Debug)]
struct Schedule {
    rules: Vec<(Rule, u64)>,
    chaos: Option<(Chaos, u64)>,
}

/// A [`Backend`] that injects faults into the calls to the one it wraps, by rule or by a
/// seeded random schedule; for users' tests of code built on cloudstore.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use cloudstore::middleware::{Fault, Faults, Rule};
/// use cloudstore::{ErrorKind, MemoryBackend, Op, Store};
///
/// let faults = Faults::new(Arc::new(MemoryBackend::new()))
///     .with_rule(Rule::new(Op::Put, Fault::Fail(ErrorKind::RateLimited)));
/// let store = Store::new(faults.clone());
/// let err = store.put("a", "x").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::RateLimited);
/// store.put("a", "x").await?; // the rule fired once
/// assert_eq!(faults.counts().errors, 1);
/// # Ok::<(), cloudstore::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<dyn Backend>,
    schedule: Arc<Mutex<Schedule>>,
    counters: Arc<Counters>,
}

impl Faults {
    /// Wraps `inner`, injecting nothing until rules or chaos are added.
    pub fn new(inner: Arc<dyn Backend>) -> Faults {
        Faults {
            inner,
            schedule: Arc::new(Mutex::new(Schedule {
                rules: Vec::new(),
                chaos: None,
            })),
            counters: Arc::default(),
        }
    }

    /// Adds a rule; rules are checked in the order added, before chaos.
    pub fn with_rule(self, rule: Rule) -> Faults {
        self.lock().rules.push((rule, 0));
        self
    }

    /// Adds random faults (replacing earlier chaos).
    pub fn with_chaos(self, chaos: Chaos) -> Faults {
        let seed = chaos.seed;
        self.lock().chaos = Some((chaos, seed));
        self
    }

    /// Stops all injection (rules and chaos).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.chaos = None;
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        FaultCounts {
            errors: c.errors.load(Ordering::Relaxed),
            lost_answers: c.lost.load(Ordering::Relaxed),
            delays: c.delays.load(Ordering::Relaxed),
            cut_bodies: c.cuts.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fault for this call, if any.
    fn draw(&self, op: Op, key: &str, part: Option<u32>) -> Option<Fault> {
        let mut s = self.lock();
        for (rule, seen) in s.rules.iter_mut() {
            if rule.matches(op, key, part) {
                *seen += 1;
                if *seen > rule.skip && *seen - rule.skip <= rule.times {
                    return Some(rule.fault.clone());
                }
            }
        }
        let (chaos, state) = s.chaos.as_mut()?;
        if chaos.faults.is_empty() || !chaos.ops.contains(&op) {
            return None;
        }
        let roll = splitmix(state);
        if (roll >> 11) as f64 / (1u64 << 53) as f64 >= chaos.probability {
            return None;
        }
        let pick = splitmix(state);
        let fault = chaos.faults[(pick % chaos.faults.len() as u64) as usize].clone();
        Some(match fault {
            Fault::CutBody(n) => Fault::CutBody(random_offset(state, n)),
            Fault::StallBody(n) => Fault::StallBody(random_offset(state, n)),
            Fault::Delay(d) => Fault::Delay(d.mul_f64((splitmix(state) % 1000) as f64 / 1000.0)),
            f => f,
        })
    }

    /// Applies the fault that comes before the call; returns the error to answer with, or
    /// whether the answer must be lost after the call.
    async fn before(
        &self,
        op: Op,
        key: &str,
        part: Option<u32>,
    ) -> Result<(bool, Option<BodyFault>)> {
        let fault = self.draw(op, key, part);
        if let Some(f) = &fault {
            tracing::debug!(op = %op, key, part, fault = ?f, "injecting a fault");
        }
        match fault {
            None => Ok((false, None)),
            Some(Fault::Fail(kind)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(kind, op, self.inner.name(), "injected fault").with_key(key))
            }
            Some(Fault::ServerError) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(
                    ErrorKind::Other,
                    op,
                    self.inner.name(),
                    "injected fault: HTTP 500",
                )
                .with_key(key)
                .with_retryable(true))
            }
            Some(Fault::LoseAnswer) => Ok((true, None)),
            Some(Fault::Delay(d)) => {
                self.counters.delays.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
                Ok((false, None))
            }
            Some(Fault::CutBody(n)) => Ok((false, Some(BodyFault::Cut(n)))),
            Some(Fault::StallBody(n)) => Ok((false, Some(BodyFault::Stall(n)))),
        }
    }

    /// Runs `call` under the fault drawn for it.
    async fn guard<T>(
        &self,
        op: Op,
        key: &str,
        part: Option<u32>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let (lose, _) = self.before(op, key, part).await?;
        let out = call.await;
        if lose && out.is_ok() {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            return Err(lost(op, self.inner.name(), key));
        }
        out
    }
}

fn lost(op: Op, backend: &str, key: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        op,
        backend,
        "injected fault: the answer was lost",
    )
    .with_key(key)
    .with_retryable(true)
}

/// A random offset below `n`; for `n == 0`, one resolved against the body's length later
/// (any value above it is taken modulo the length).
fn random_offset(state: &mut u64, n: u64) -> u64 {
    if n == 0 {
        u64::MAX - (splitmix(state) >> 1)
    } else {
        splitmix(state) % n
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[async_trait]
impl Backend for Faults {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        self.guard(Op::Put, key.as_str(), None, self.inner.put(key, data, opts))
            .await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let (lose, cut) = self.before(Op::Get, key.as_str(), None).await?;
        let mut res = self.inner.get(key, opts).await?;
        if lose {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            return Err(lost(Op::Get, self.inner.name(), key.as_str()));
        }
        let len = res.range.end - res.range.start;
        let Some(fault) = cut else {
            return Ok(res);
        };
        let (BodyFault::Cut(mut after) | BodyFault::Stall(mut after)) = fault;
        if after > len {
            // A random offset not bound by the rule: somewhere inside the body.
            after = if len == 0 { 0 } else { after % len };
        }
        if after >= len {
            return Ok(res);
        }
        self.counters.cuts.fetch_add(1, Ordering::Relaxed);
        let body = std::mem::replace(&mut res.body, futures::stream::empty().boxed());
        // The first `after` bytes, then the fault.
        let head = body
            .scan(after, |left, chunk| {
                let item = match chunk {
                    Ok(_) if *left == 0 => None,
                    Ok(c) => {
                        let take = (c.len() as u64).min(*left);
                        *left -= take;
                        Some(Ok(c.slice(..take as usize)))
                    }
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(item)
            })
            .boxed();
        res.body = match fault {
            BodyFault::Cut(_) => {
                let e = Error::new(
                    ErrorKind::Other,
                    Op::Get,
                    self.inner.name(),
                    "injected fault: connection cut",
                )
                .with_key(key.as_str())
                .with_retryable(true);
                head.chain(futures::stream::iter([Err(e)])).boxed()
            }
            BodyFault::Stall(_) => head.chain(futures::stream::pending()).boxed(),
        };
        Ok(res)
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.guard(Op::Head, key.as_str(), None, self.inner.head(key))
            .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.guard(Op::Delete, key.as_str(), None, self.inner.delete(key))
            .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.guard(Op::List, req.prefix.as_str(), None, self.inner.list(req))
            .await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        self.guard(Op::Copy, to.as_str(), None, self.inner.copy(from, to, mode))
            .await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        self.guard(
            Op::CreateMultipart,
            key.as_str(),
            None,
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
        self.guard(
            Op::PutPart,
            key.as_str(),
            Some(part.get()),
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
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        self.guard(
            Op::CompleteMultipart,
            key.as_str(),
            None,
            self.inner
                .complete_multipart_with_metadata(key, upload, parts, mode, extra_metadata),
        )
        .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.guard(
            Op::AbortMultipart,
            key.as_str(),
            None,
            self.inner.abort_multipart(key, upload),
        )
        .await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        self.guard(
            Op::Head,
            key.as_str(),
            None,
            self.inner.native_checksum(key),
        )
        .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.guard(
            Op::ListMultipart,
            prefix,
            None,
            self.inner.list_multipart_uploads(prefix),
        )
        .await
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        self.inner.presign(method, key, expires_in).await
    }
}
