//! Observability: `tracing` spans and [`metrics`] for every operation, part, range,
//! request, retry and listing page.
//!
//! Nothing needs switching on. Stores built by [`Store::from_url`](crate::Store::from_url)
//! record through [`Observed`](crate::middleware::Observed), placed directly over the
//! backend (under the retries, so that each attempt is one request); a store built in code
//! gets the same by wrapping its backend in `Observed`. With no `tracing` subscriber and no
//! `metrics` recorder installed, both cost a few branches per request.
//!
//! # Spans
//!
//! | span | level | fields |
//! |---|---|---|
//! | `cloudstore.operation` | info | `operation`, `backend`, `prefix`, `key` (or `key_hash`), `size`, `outcome`, `error_type` |
//! | `cloudstore.part` | debug | `part`, `size`, `outcome`, `error_type` |
//! | `cloudstore.range` | debug | `offset`, `size`, `outcome`, `error_type` |
//! | `cloudstore.list_page` | debug | `page`, `objects`, `outcome`, `error_type` |
//! | `cloudstore.request` | debug | `backend`, `operation`, `attempt`, `outcome`, `error_type` |
//!
//! An operation span is the parent of its parts, ranges and listing pages, also in the
//! tasks the transfer engine spawns; each request (one per attempt, so a retried request
//! shows as several) is a child of whatever span was current. Keys appear in the
//! operation span only, as `key`, or as `key_hash` (a stable FNV-1a hash) where the store
//! says so ([`KeyDisplay`], URL option `span_keys=hash`). No span carries credentials,
//! presigned URLs or payload bytes.
//!
//! # Metrics
//!
//! Names follow Prometheus conventions (base units, `_total` counters, `_seconds`,
//! `_bytes`); each has the OpenTelemetry name with dots instead of underscores and without
//! the `_total` suffix. Labels never carry keys.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | [`REQUESTS`] | counter | `backend`, `operation`, `outcome`, `error_type` | requests sent (each attempt) |
//! | [`REQUEST_DURATION`] | histogram | `backend`, `operation`, `outcome` | request latency, to the answer's headers |
//! | [`IO_BYTES`] | counter | `backend`, `direction` (`transmit`, `receive`) | payload bytes of writes that succeeded; body bytes read |
//! | [`RETRIES`] | counter | `backend`, `operation`, `error_type` | requests sent again after a failure |
//! | [`THROTTLED`] | counter | `backend`, `operation` | answers asking to slow down |
//! | [`STALLS`] | counter | `backend`, `operation` | requests or bodies cut for making no progress |
//! | [`RETRY_BUDGET_EXHAUSTED`] | counter | `backend` | failures not retried because the retry budget was spent |
//! | [`CHECKSUM_MISMATCHES`] | counter | `backend` | reads whose bytes did not match their CRC32C |
//! | [`PARTS_IN_FLIGHT`] | gauge | `backend`, `direction` | upload parts and download ranges under way |
//! | [`TRANSFER_MEMORY`] | gauge | | bytes of transfer memory budgets reserved |
//! | [`SYNC_OBJECTS`] | counter | `action` (`copied`, `skipped`, `deleted`, `failed`) | objects a sync decided |
//! | [`SYNC_BYTES`] | counter | | bytes a sync copied |
//!
//! `outcome` is `ok` or `error`; `error_type` is the [`ErrorKind`]'s name in snake case
//! (`not_found`, `rate_limited`, ...), only on errors. `operation` is the request's
//! [`Op`] in snake case (`put`, `get`, `put_part`, `complete_multipart`, ...).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::{ErrorKind, Op, Result};

/// Requests sent, each attempt counted (counter).
pub const REQUESTS: &str = "cloudstore_requests_total";
/// Request latency in seconds, to the answer's headers (histogram).
pub const REQUEST_DURATION: &str = "cloudstore_request_duration_seconds";
/// Bytes moved, by `direction` (counter).
pub const IO_BYTES: &str = "cloudstore_io_bytes_total";
/// Requests sent again after a failure (counter).
pub const RETRIES: &str = "cloudstore_retries_total";
/// Answers asking the client to slow down (counter).
pub const THROTTLED: &str = "cloudstore_throttled_total";
/// Requests or bodies cut because they made no progress (counter).
pub const STALLS: &str = "cloudstore_stalls_total";
/// Failures not retried because the retry budget was spent (counter).
pub const RETRY_BUDGET_EXHAUSTED: &str = "cloudstore_retry_budget_exhausted_total";
/// Reads whose bytes did not match their checksum (counter).
pub const CHECKSUM_MISMATCHES: &str = "cloudstore_checksum_mismatches_total";
/// Upload parts and download ranges under way (gauge).
pub const PARTS_IN_FLIGHT: &str = "cloudstore_parts_in_flight";
/// Bytes of transfer memory budgets reserved (gauge).
pub const TRANSFER_MEMORY: &str = "cloudstore_transfer_memory_bytes";
/// Objects a sync decided, by `action` (counter).
pub const SYNC_OBJECTS: &str = "cloudstore_sync_objects_total";
/// Bytes a sync copied (counter).
pub const SYNC_BYTES: &str = "cloudstore_sync_bytes_total";

/// Histogram buckets (seconds) that suit request latency, from a local write (1 ms) to a
/// slow cross-cloud request (a minute), for exporters that need buckets
/// (`metrics-exporter-prometheus` renders summaries without them).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Registers the description and unit of every metric with the installed recorder (an
/// exporter shows them as `# HELP` lines). Call it once after installing a recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests sent, each attempt counted."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Request latency, to the answer's headers."
    );
    describe_counter!(
        IO_BYTES,
        Unit::Bytes,
        "Payload bytes of writes that succeeded (transmit) and body bytes read (receive)."
    );
    describe_counter!(RETRIES, Unit::Count, "Requests sent again after a failure.");
    describe_counter!(THROTTLED, Unit::Count, "Answers asking to slow down.");
    describe_counter!(
        STALLS,
        Unit::Count,
        "Requests or bodies cut for making no progress."
    );
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED,
        Unit::Count,
        "Failures not retried because the retry budget was spent."
    );
    describe_counter!(
        CHECKSUM_MISMATCHES,
        Unit::Count,
        "Reads whose bytes did not match their CRC32C."
    );
    describe_gauge!(
        PARTS_IN_FLIGHT,
        Unit::Count,
        "Upload parts and download ranges under way."
    );
    describe_gauge!(
        TRANSFER_MEMORY,
        Unit::Bytes,
        "Bytes of transfer memory budgets reserved."
    );
    describe_counter!(
        SYNC_OBJECTS,
        Unit::Count,
        "Objects a sync decided, by action."
    );
    describe_counter!(SYNC_BYTES, Unit::Bytes, "Bytes a sync copied.");
}

/// How an operation span shows its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyDisplay {
    /// The key itself, in the field `key`.
    #[default]
    Plain,
    /// A stable 64-bit FNV-1a hash of the key, in hex, in the field `key_hash`: spans can
    /// be matched to a key without showing it.
    Hash,
}

impl std::str::FromStr for KeyDisplay {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "plain" => Ok(KeyDisplay::Plain),
            "hash" => Ok(KeyDisplay::Hash),
            other => Err(format!("'{other}' is not 'plain' or 'hash'")),
        }
    }
}

/// The stable hash [`KeyDisplay::Hash`] shows: FNV-1a over the key's bytes, 16 hex digits.
pub fn key_hash(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The snake-case name of a request's operation, as the `operation` label shows it.
pub fn op_label(op: Op) -> &'static str {
    match op {
        Op::Configure => "configure",
        Op::ParseKey => "parse_key",
        Op::Put => "put",
        Op::Get => "get",
        Op::Head => "head",
        Op::Delete => "delete",
        Op::List => "list",
        Op::Copy => "copy",
        Op::CreateMultipart => "create_multipart",
        Op::PutPart => "put_part",
        Op::CompleteMultipart => "complete_multipart",
        Op::AbortMultipart => "abort_multipart",
        Op::ListMultipart => "list_multipart",
        Op::Presign => "presign",
        Op::Sync => "sync",
    }
}

/// The snake-case name of an error kind, as the `error_type` label shows it.
pub fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::PreconditionFailed => "precondition_failed",
        ErrorKind::NotModified => "not_modified",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::ChecksumMismatch => "checksum_mismatch",
        ErrorKind::Other => "other",
    }
}

/// A backend name as a label value, cloned without allocating.
#[derive(Debug, Clone)]
pub(crate) struct BackendLabel(SharedString);

impl BackendLabel {
    pub(crate) fn new(name: &str) -> BackendLabel {
        BackendLabel(SharedString::from_shared(Arc::from(name)))
    }

    fn get(&self) -> SharedString {
        self.0.clone()
    }
}

tokio::task_local! {
    /// The attempt a retry loop is on, for the request spans below it.
    static ATTEMPT: u32;
}

/// Runs `fut` as attempt `attempt` of a request: the requests it sends say so.
pub(crate) async fn attempt<F: Future>(attempt: u32, fut: F) -> F::Output {
    ATTEMPT.scope(attempt, fut).await
}

fn current_attempt() -> u32 {
    ATTEMPT.try_with(|a| *a).unwrap_or(1)
}

/// Records the outcome of `result` on `span` (`outcome`, and `error_type` on errors).
pub(crate) fn record_outcome<T>(span: &tracing::Span, result: &Result<T>) {
    match result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(e) => record_error(span, e),
    }
}

/// Records a failure on `span`.
pub(crate) fn record_error(span: &tracing::Span, e: &crate::Error) {
    span.record("outcome", "error");
    span.record("error_type", kind_label(e.kind()));
}

/// Runs `fut` inside `span` and records a failure there; a success is left for the
/// caller to record (a step of an operation that is not finished yet).
pub(crate) async fn in_span<T>(
    span: &tracing::Span,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let result = fut.instrument(span.clone()).await;
    if let Err(e) = &result {
        record_error(span, e);
    }
    result
}

/// Runs `fut` inside `span` and records its outcome there.
pub(crate) async fn traced<T>(
    span: tracing::Span,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let result = fut.instrument(span.clone()).await;
    record_outcome(&span, &result);
    result
}

/// The span of one `Store` operation.
pub(crate) fn operation_span(
    operation: &'static str,
    backend: &str,
    prefix: &str,
    key: &str,
    display: KeyDisplay,
) -> tracing::Span {
    let span = tracing::info_span!(
        "cloudstore.operation",
        operation,
        backend,
        prefix,
        key = Empty,
        key_hash = Empty,
        size = Empty,
        outcome = Empty,
        error_type = Empty,
    );
    if !span.is_disabled() {
        match display {
            KeyDisplay::Plain => span.record("key", key),
            KeyDisplay::Hash => span.record("key_hash", key_hash(key).as_str()),
        };
    }
    span
}

/// The span of one part of an upload, below its operation.
pub(crate) fn part_span(operation: &tracing::Span, part: u32, size: u64) -> tracing::Span {
    tracing::debug_span!(parent: operation, "cloudstore.part", part, size, outcome = Empty, error_type = Empty)
}

/// The span of one range of a download, below its operation.
pub(crate) fn range_span(operation: &tracing::Span, offset: u64, size: u64) -> tracing::Span {
    tracing::debug_span!(parent: operation, "cloudstore.range", offset, size, outcome = Empty, error_type = Empty)
}

/// The span of one listing page, below its operation.
pub(crate) fn page_span(operation: &tracing::Span, page: u64) -> tracing::Span {
    tracing::debug_span!(
        parent: operation,
        "cloudstore.list_page",
        page,
        objects = Empty,
        outcome = Empty,
        error_type = Empty
    )
}

/// The span of one request (one attempt).
pub(crate) fn request_span(backend: &BackendLabel, op: Op) -> tracing::Span {
    tracing::debug_span!(
        "cloudstore.request",
        backend = &*backend.0,
        operation = op_label(op),
        attempt = current_attempt(),
        outcome = Empty,
        error_type = Empty,
    )
}

/// Counts one finished request.
pub(crate) fn request_done(
    backend: &BackendLabel,
    op: Op,
    error: Option<ErrorKind>,
    took: Duration,
) {
    let operation = op_label(op);
    match error {
        None => {
            metrics::counter!(REQUESTS, "backend" => backend.get(), "operation" => operation, "outcome" => "ok")
                .increment(1);
            metrics::histogram!(REQUEST_DURATION, "backend" => backend.get(), "operation" => operation, "outcome" => "ok")
                .record(took.as_secs_f64());
        }
        Some(kind) => {
            metrics::counter!(REQUESTS, "backend" => backend.get(), "operation" => operation, "outcome" => "error", "error_type" => kind_label(kind))
                .increment(1);
            metrics::histogram!(REQUEST_DURATION, "backend" => backend.get(), "operation" => operation, "outcome" => "error")
                .record(took.as_secs_f64());
            if kind == ErrorKind::RateLimited {
                metrics::counter!(THROTTLED, "backend" => backend.get(), "operation" => operation)
                    .increment(1);
            }
        }
    }
}

/// Which way bytes moved.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Transmit,
    Receive,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Transmit => "transmit",
            Direction::Receive => "receive",
        }
    }
}

/// Counts bytes moved.
pub(crate) fn io(backend: &BackendLabel, direction: Direction, bytes: u64) {
    if bytes > 0 {
        metrics::counter!(IO_BYTES, "backend" => backend.get(), "direction" => direction.label())
            .increment(bytes);
    }
}

/// Counts a retry.
pub(crate) fn retry(backend: &str, op: Op, kind: ErrorKind) {
    metrics::counter!(RETRIES, "backend" => backend.to_string(), "operation" => op_label(op), "error_type" => kind_label(kind))
        .increment(1);
}

/// Counts a request or body cut for making no progress.
pub(crate) fn stall(backend: &str, op: Op) {
    metrics::counter!(STALLS, "backend" => backend.to_string(), "operation" => op_label(op))
        .increment(1);
}

/// Counts a failure not retried for lack of retry budget.
pub(crate) fn budget_exhausted(backend: &str) {
    metrics::counter!(RETRY_BUDGET_EXHAUSTED, "backend" => backend.to_string()).increment(1);
}

/// Counts a checksum mismatch.
pub(crate) fn checksum_mismatch(backend: &str) {
    metrics::counter!(CHECKSUM_MISMATCHES, "backend" => backend.to_string()).increment(1);
}

/// Counts one sync decision.
pub(crate) fn sync_object(action: &'static str) {
    metrics::counter!(SYNC_OBJECTS, "action" => action).increment(1);
}

/// Counts bytes a sync copied.
pub(crate) fn sync_bytes(n: u64) {
    if n > 0 {
        metrics::counter!(SYNC_BYTES).increment(n);
    }
}

/// One part or range in flight, for as long as it lives.
pub(crate) struct InFlight(metrics::Gauge);

impl InFlight {
    pub(crate) fn new(backend: &str, direction: Direction) -> InFlight {
        let g = metrics::gauge!(PARTS_IN_FLIGHT, "backend" => backend.to_string(), "direction" => direction.label());
        g.increment(1.0);
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Transfer memory reserved, for as long as it lives.
pub(crate) struct Reserved(u64);

impl Reserved {
    pub(crate) fn new(bytes: u64) -> Reserved {
        metrics::gauge!(TRANSFER_MEMORY).increment(bytes as f64);
        Reserved(bytes)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        metrics::gauge!(TRANSFER_MEMORY).decrement(self.0 as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_stable_fnv1a() {
        // FNV-1a 64 of the empty string and of "a", as published.
        assert_eq!(key_hash(""), "cbf29ce484222325");
        assert_eq!(key_hash("a"), "af63dc4c8601ec8c");
        assert_ne!(key_hash("a/b"), key_hash("a/c"));
    }
}
