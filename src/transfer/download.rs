//! Parallel ranged downloads pinned to one version of an object, and an ordered reader.
//!
//! A read starts with a GET of its first range (no HEAD): the answer names the version
//! (size, ETag, metadata) the other ranges are pinned to, and an object no larger than one
//! range is read in that one request. A range whose body is cut goes on from the byte where
//! it stopped.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, ReadBuf};
use tracing::Instrument;

use super::checksum::{Expected, Running, expected, verify};
use super::{NEAR_LATENCY, ONE_STREAM_RATE, Progress, ProgressFn, backoff};
use crate::backend::MIB;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{ByteRange, ByteStream, GetOptions, GetResult, ObjectMeta};
use crate::store::Store;

/// The ranges covering `span`, `chunk` bytes each.
fn ranges(span: Range<u64>, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    let start = span.start;
    (0..(span.end.saturating_sub(start)).div_ceil(chunk))
        .map(|i| start + i * chunk..(start + (i + 1) * chunk).min(span.end))
        .collect()
}

/// The largest range [`Store::download_file`] asks for. Its ranges stream to disk, so
/// their size costs no memory; larger ranges spend fewer round trips waiting for a first
/// byte, and a cut range goes on where it stopped, so a retry does not fetch it again.
const FILE_RANGE_MAX: u64 = 64 * MIB;

/// The range size for the `rest` bytes of a file download after its first range: about
/// four rounds of `in_flight` ranges, at least `part_size`, at most [`FILE_RANGE_MAX`]
/// (or `part_size`, if that is larger).
fn file_range_size(rest: u64, part_size: u64, in_flight: usize) -> u64 {
    let rounds = 4 * in_flight.max(1) as u64;
    rest.div_ceil(rounds)
        .clamp(part_size, part_size.max(FILE_RANGE_MAX))
}

/// Where the bytes of a range go as they arrive, in order.
trait RangeSink: Send {
    fn accept(&mut self, chunk: Bytes) -> impl Future<Output = Result<()>> + Send;
}

/// One range of a version in its fetch, in order, retrying what can be retried: after a cut
/// body the next attempt asks only for the bytes not yet received. Where a range is: the
/// answer being read (`first`: one already received, the read's opening request), the
/// bytes received, the attempt. A replaced object gives `PreconditionFailed`.
struct RangeFetch {
    version: Version,
    range: Range<u64>,
    /// An answer already received for this range (the read's opening request).
    first: Option<GetResult>,
    body: Option<crate::object::ByteStream>,
    got: u64,
    attempt: u32,
    /// `got` at the last retryable failure: a failure after progress starts the attempts
    /// over, so a long range survives any number of cuts that each move it forward.
    failed_at: u64,
    /// The range has been read to its end: every later call answers `None`.
    done: bool,
    _in_flight: crate::observe::InFlight,
}

impl RangeFetch {
    /// The next chunk of the range, `None` at its end. A retryable failure goes on after
    /// a pause from the first byte not yet received; the attempts count failures without
    /// progress in between.
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let result = self.step().await;
            if matches!(&result, Err(e) if e.is_retryable()) {
                if self.got > self.failed_at {
                    self.attempt = 1;
                }
                self.failed_at = self.got;
            }
            let store = &self.version.store;
            let cfg = &store.transfer().config;
            match result {
                Err(e)
                    if e.is_retryable()
                        && self.attempt < cfg.attempts_over(store.backend().as_ref()) =>
                {
                    crate::observe::retry(store.backend_name(), Op::Get, e.kind());
                    tracing::debug!(key = %self.version.key, attempt = self.attempt, got = self.got, error = %e, "going on with a range");
                    self.body = None;
                    tokio::time::sleep(backoff(cfg.backoff, self.attempt)).await;
                    self.attempt += 1;
                }
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    return Err(self.replaced("the object was replaced during the download"));
                }
                other => return other,
            }
        }
    }

    /// The error of a read whose object was replaced under it.
    fn replaced(&self, why: &str) -> Error {
        let v = &self.version;
        Error::new(
            ErrorKind::PreconditionFailed,
            Op::Get,
            v.store.backend_name(),
            why,
        )
        .with_key(v.key.as_str())
    }

    /// One step of the current attempt: opens the range's answer if none is open (pinned
    /// to the version `etag`), then reads a chunk of it.
    async fn step(&mut self) -> Result<Option<Bytes>> {
        let body = match &mut self.body {
            Some(body) => body,
            None => {
                let res = match self.first.take() {
                    Some(res) => res,
                    None => {
                        let opts = GetOptions {
                            range: Some(ByteRange::Bounded(
                                self.range.start + self.got..self.range.end,
                            )),
                            if_match: self.version.etag.clone(),
                            ..Default::default()
                        };
                        let get = self.version.store.backend().get(&self.version.key, &opts);
                        crate::observe::attempt(self.attempt, get).await?
                    }
                };
                // A server that ignores If-Match must not slip another version in.
                if let (Some(want), Some(got)) =
                    (self.version.etag.as_deref(), res.meta.etag.as_deref())
                    && want != got
                {
                    return Err(self.replaced("a range came from another version of the object"));
                }
                self.body.insert(res.into_checked_stream())
            }
        };
        match body.next().await.transpose()? {
            Some(chunk) => {
                self.got += chunk.len() as u64;
                Ok(Some(chunk))
            }
            // An answer for fewer bytes than asked ends the body early but whole.
            None if self.got < self.range.end - self.range.start => {
                self.body = None;
                let (got, len) = (self.got, self.range.end - self.range.start);
                Err(Error::new(
                    ErrorKind::Other,
                    Op::Get,
                    self.version.store.backend_name(),
                    format!("the range ended after {got} of {len} bytes"),
                )
                .with_key(self.version.key.as_str())
                .with_retryable(true))
            }
            None => {
                self.body = None;
                self.done = true;
                Ok(None)
            }
        }
    }

    /// The range as a stream inside `span`, which gets the outcome.
    fn into_stream(self, span: tracing::Span) -> ByteStream {
        futures::stream::try_unfold(self, move |mut fetch| {
            let span = span.clone();
            async move {
                let next = fetch.next().instrument(span.clone()).await;
                match &next {
                    Ok(Some(_)) => {}
                    Ok(None) => crate::observe::record_outcome(&span, &Ok::<(), Error>(())),
                    Err(e) => crate::observe::record_error(&span, e),
                }
                Ok(next?.map(|chunk| (chunk, fetch)))
            }
        })
        .boxed()
    }

    /// Reads the range into `sink`; where the bytes go failing (a full disk) is not the
    /// network's fault, so it is not retried.
    async fn into_sink(mut self, sink: &mut impl RangeSink) -> Result<()> {
        while let Some(chunk) = self.next().await? {
            sink.accept(chunk)
                .await
                .map_err(|e| e.with_retryable(false))?;
        }
        Ok(())
    }
}

/// Removes a temporary file unless it was renamed into place.
struct TempPath(Option<PathBuf>);

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn io_err(store: &Store, key: &Key, e: io::Error) -> Error {
    Error::from_io(Op::Get, store.backend_name(), e).with_key(key.as_str())
}

/// Bytes a file download gathers before one blocking write.
const WRITE_BATCH: usize = 2 * MIB as usize;

/// A range of a file download: its bytes are written in place as they arrive, in batches,
/// and checksummed on the way. A batch is written while the next one arrives: a range
/// that stopped reading during each write would leave its connection idle that long (a
/// connection capped by its TCP window cannot make the time up).
struct WriteAt {
    file: Arc<std::fs::File>,
    /// Where the next batch goes.
    at: u64,
    batch: Vec<Bytes>,
    batched: usize,
    /// The batch being written, and its length.
    writing: Option<(tokio::task::JoinHandle<io::Result<()>>, u64)>,
    crc: Running,
    done: Arc<AtomicU64>,
    total: u64,
    parts: Arc<AtomicU64>,
    progress: Option<ProgressFn>,
}

impl WriteAt {
    /// Starts writing the batch at its offset (one blocking hop) and asking the kernel to
    /// write those pages back, so the final `fsync` has little left to wait for; then
    /// waits for the batch before it. At most two batches are held.
    async fn flush(&mut self) -> Result<()> {
        if self.batched == 0 {
            return Ok(());
        }
        let (file, at, batch) = (self.file.clone(), self.at, std::mem::take(&mut self.batch));
        let len = std::mem::take(&mut self.batched) as u64;
        let write = tokio::task::spawn_blocking(move || -> io::Result<()> {
            crate::backend::fs::write_chunks_at(&file, &batch, at)?;
            start_writeback(&file, at, len);
            Ok(())
        });
        self.at += len;
        match self.writing.replace((write, len)) {
            Some(before) => self.written(before).await,
            None => Ok(()),
        }
    }

    /// Writes what is left and waits until every batch is written.
    async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        match self.writing.take() {
            Some(last) => self.written(last).await,
            None => Ok(()),
        }
    }

    /// Waits for a batch's write and reports the progress.
    async fn written(
        &self,
        (write, len): (tokio::task::JoinHandle<io::Result<()>>, u64),
    ) -> Result<()> {
        write
            .await
            .map_err(|e| Error::new(ErrorKind::Other, Op::Get, "cloudstore", e.to_string()))?
            .map_err(|e| Error::from_io(Op::Get, "cloudstore", e))?;
        let bytes = self.done.fetch_add(len, Ordering::Relaxed) + len;
        if let Some(p) = &self.progress {
            p(Progress {
                bytes,
                total: Some(self.total),
                parts: self.parts.load(Ordering::Relaxed),
            });
        }
        Ok(())
    }
}

impl RangeSink for WriteAt {
    async fn accept(&mut self, chunk: Bytes) -> Result<()> {
        self.crc.update(&chunk);
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Starts writeback of `len` bytes at `at` without waiting for it (Linux); elsewhere the
/// final `fsync` does all of it.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call only
    // schedules I/O on it and touches no memory of this process. Its failure is harmless
    // (the final fsync still writes everything), so the result is ignored.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            at as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _at: u64, _len: u64) {}

/// A read's opening answer: the version every range is pinned to, the first range's open
/// body (none for an empty object), and the checksum the bytes must match.
struct Opened {
    key: Key,
    meta: ObjectMeta,
    first: Option<GetResult>,
    cfg: super::TransferConfig,
    check: Option<Expected>,
    /// How long the opening request took to answer.
    latency: std::time::Duration,
}

/// A range to fetch: its bytes, the answer already open for it (the first range), and
/// its span.
type Planned = (Range<u64>, Option<GetResult>, tracing::Span);

/// The ranges of a read of `size` bytes: the opening answer's range first, then the rest
/// in ranges of `chunk(rest)` bytes, each with a span below `operation`.
fn plan(
    operation: &tracing::Span,
    first: Option<GetResult>,
    first_span: tracing::Span,
    size: u64,
    chunk: impl FnOnce(u64) -> u64,
) -> Vec<Planned> {
    let from = first.as_ref().map_or(0, |f| f.range.end);
    let mut plan: Vec<Planned> = first
        .map(|f| (f.range.clone(), Some(f), first_span))
        .into_iter()
        .collect();
    for r in ranges(from..size, chunk(size.saturating_sub(from))) {
        let span = crate::observe::range_span(operation, r.start, r.end - r.start);
        plan.push((r, None, span));
    }
    plan
}

impl Store {
    /// Opens a read: a GET of the first range (of `cfg.part_size` bytes). Its answer pins
    /// the version; an object no larger than one range is read in that request. Only a
    /// refused range (as an empty object gives) costs a HEAD.
    async fn open_read(&self, key: &str) -> Result<Opened> {
        let k = self.full_key(Op::Get, key)?;
        let cfg = self.transfer().config.clone();
        let opts = GetOptions {
            range: Some(ByteRange::Bounded(0..cfg.part_size.max(1))),
            ..Default::default()
        };
        let started = tokio::time::Instant::now();
        let opening = self.backend().get(&k, &opts).await;
        let latency = started.elapsed();
        let (meta, first) = match opening {
            Ok(res) => (res.meta.clone(), Some(res)),
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                let meta = self
                    .backend()
                    .head(&k)
                    .await
                    .map_err(|e| e.with_op(Op::Get))?;
                if meta.size != 0 {
                    return Err(e);
                }
                (meta, None)
            }
            Err(e) => return Err(e),
        };
        let check = if cfg.checksum {
            expected(self, &k, &meta).await?
        } else {
            None
        };
        Ok(Opened {
            key: k,
            meta,
            first,
            cfg,
            check,
            latency,
        })
    }

    /// [`Store::open_read`] inside the first range's span (a child of `operation`), both
    /// marked on failure; the span is returned for the first range's transfer.
    async fn open_traced(
        &self,
        key: &str,
        operation: &tracing::Span,
    ) -> Result<(Opened, tracing::Span)> {
        let first = crate::observe::range_span(operation, 0, self.transfer().config.part_size);
        let open = crate::observe::in_span(&first, self.open_read(key));
        let opened = crate::observe::in_span(operation, open).await?;
        operation.record("size", opened.meta.size);
        Ok((opened, first))
    }

    /// Downloads `key` into the file `path` with concurrent ranged reads, all pinned to the
    /// version the first request saw; each range streams in place into a temporary file
    /// beside `path` (memory stays a few MiB per range, whatever the range size), which is
    /// renamed over `path` only once every byte arrived, the checksum (if the object has
    /// one) verified and the file was synced. On any failure `path` is untouched.
    pub async fn download_file(&self, key: &str, path: impl AsRef<Path>) -> Result<ObjectMeta> {
        self.download_file_with_progress(key, path, None).await
    }

    /// [`Store::download_file`] reporting progress.
    pub async fn download_file_with_progress(
        &self,
        key: &str,
        path: impl AsRef<Path>,
        progress: Option<ProgressFn>,
    ) -> Result<ObjectMeta> {
        let span = self.op_span("download", key);
        let download = self.download_untraced(key, path.as_ref(), progress, &span);
        crate::observe::traced(span.clone(), download).await
    }

    async fn download_untraced(
        &self,
        key: &str,
        path: &Path,
        progress: Option<ProgressFn>,
        span: &tracing::Span,
    ) -> Result<ObjectMeta> {
        let path = path.to_path_buf();
        let (opened, first_span) = self.open_traced(key, span).await?;
        let Opened {
            key: k,
            meta,
            first,
            cfg,
            check,
            latency,
        } = opened;
        // Over a long round trip, more ranges in flight, whose waits for a first byte
        // overlap: they stream to disk, so each holds at most two batches of memory.
        let in_flight = cfg.concurrency.max(1) * cfg.split_for(latency) as usize;
        if in_flight > cfg.concurrency.max(1) {
            tracing::debug!(
                latency_ms = latency.as_millis() as u64,
                in_flight,
                "long round trip: more ranges in flight"
            );
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download");
        let tmp_path = dir.join(format!(
            ".{name}.cloudstore-{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| io_err(self, &k, e))?;
        let guard = TempPath(Some(tmp_path.clone()));
        crate::backend::fs::preallocate(&file, meta.size).map_err(|e| io_err(self, &k, e))?;
        let file = Arc::new(file);

        let plan = plan(span, first, first_span, meta.size, |rest| {
            file_range_size(rest, cfg.part_size, in_flight)
        });

        let done = Arc::new(AtomicU64::new(0));
        let parts = Arc::new(AtomicU64::new(0));
        let version = Version {
            store: self.clone(),
            key: k.clone(),
            etag: meta.etag.clone(),
        };
        let results: Vec<(u64, Running)> = futures::stream::iter(plan)
            .map(|(r, opened, range)| {
                let k = k.clone();
                let fetch = version.range(r.clone(), opened);
                let mut sink = WriteAt {
                    file: file.clone(),
                    at: r.start,
                    batch: Vec::new(),
                    batched: 0,
                    writing: None,
                    crc: Running::new(check),
                    done: done.clone(),
                    total: meta.size,
                    parts: parts.clone(),
                    progress: progress.clone(),
                };
                crate::observe::traced(range, async move {
                    let offset = r.start;
                    fetch.into_sink(&mut sink).await?;
                    sink.parts.fetch_add(1, Ordering::Relaxed);
                    sink.finish().await.map_err(|e| e.with_key(k.as_str()))?;
                    Ok::<_, Error>((offset, sink.crc))
                })
            })
            .buffer_unordered(in_flight)
            .try_collect()
            .await?;
        if check.is_some() {
            let mut ordered = results;
            ordered.sort_by_key(|(offset, _)| *offset);
            let whole = ordered
                .iter()
                .fold(Running::new(check), |acc, (_, c)| acc.combine(c));
            verify(self.backend_name(), &meta, check, &whole)?;
        }
        let file = Arc::try_unwrap(file).map_err(|_| {
            Error::new(
                ErrorKind::Other,
                Op::Get,
                "cloudstore",
                "a writer is still running",
            )
        })?;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| Error::new(ErrorKind::Other, Op::Get, "cloudstore", e.to_string()))?
            .map_err(|e| io_err(self, &k, e))?;
        tokio::fs::rename(&tmp_path, &path)
            .await
            .map_err(|e| io_err(self, &k, e))?;
        std::mem::forget(guard);
        Ok(self.relative_meta(meta))
    }

    /// An `AsyncRead` of `key`: ranges are fetched ahead, at most
    /// [`TransferConfig::concurrency`](super::TransferConfig::concurrency) at a time and
    /// delivered in order, all pinned to one version; the checksum (if any) is verified
    /// when the end is reached, and a mismatch is a read error.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader> {
        let span = self.op_span("download", key);
        let (opened, first_span) = self.open_traced(key, &span).await?;
        let Opened {
            key: k,
            meta,
            first,
            cfg,
            check,
            latency,
        } = opened;
        let version = Version {
            store: self.clone(),
            key: k,
            etag: meta.etag.clone(),
        };
        let from = first.as_ref().map_or(0, |f| f.range.end);
        let near = cfg.adapt_to_latency && latency < NEAR_LATENCY;
        let body = match first {
            // A local directory gains nothing from parallel reads: one stream; nor does a
            // near object read whole by its opening request.
            _ if !self.capabilities().parallel_parts || (near && from >= meta.size) => version
                .in_sequence(plan(&span, first, first_span, meta.size, |rest| {
                    rest.max(1)
                })),
            // Near the store, the opening answer streams on while its speed decides how
            // the rest is read.
            Some(head) if near => {
                let rest = (
                    from..meta.size,
                    cfg.part_size.max(1),
                    cfg.concurrency.max(1),
                );
                version.probed(head, first_span, rest, span.clone())
            }
            first => {
                // Over a long round trip, more and smaller ranges in flight: the same
                // read-ahead.
                let split = cfg.split_for(latency);
                let range = cfg.range_size(split);
                let in_flight = cfg.concurrency.max(1) * (cfg.part_size.max(1) / range) as usize;
                if split > 1 {
                    tracing::debug!(
                        latency_ms = latency.as_millis() as u64,
                        range,
                        in_flight,
                        "long round trip: reading in smaller ranges, more in flight"
                    );
                }
                let planned = plan(&span, first, first_span, meta.size, |_| range);
                let fetches = planned
                    .into_iter()
                    .map(move |(r, first, span)| (version.range(r, first), span));
                read_ahead(futures::stream::iter(fetches), in_flight)
            }
        };
        let verify_meta = meta.clone();
        let backend = self.backend_name().to_string();
        Ok(ObjectReader {
            meta: self.relative_meta(meta),
            inner: Verifying {
                body,
                crc: Running::new(check),
                meta: verify_meta,
                backend,
                check,
                pending: Bytes::new(),
                done: false,
                failed: None,
                span,
            },
        })
    }
}

/// What every range of one read shares: the store, the key and the version.
#[derive(Clone)]
struct Version {
    store: Store,
    key: Key,
    etag: Option<String>,
}

/// The most bytes of the opening answer the reader times before choosing how to read the
/// rest (see [`NEAR_LATENCY`]).
const PROBE_BYTES: u64 = 8 * MIB;

/// The least time the reader allows for the bytes it times, so that a small opening range
/// is not judged by the cost of a few calls: an opening range under 2 MB passes if it
/// arrives within 2 ms (with 1 MiB parts, from 524 MB/s), and the choice is not revisited.
const MIN_PROBE: Duration = Duration::from_millis(2);

impl Version {
    /// A fetch of `r`, going on from `first` if that answer is already open.
    fn range(&self, r: Range<u64>, first: Option<GetResult>) -> RangeFetch {
        RangeFetch {
            _in_flight: crate::observe::InFlight::new(
                self.store.backend_name(),
                crate::observe::Direction::Receive,
            ),
            version: self.clone(),
            range: r,
            first,
            body: None,
            got: 0,
            attempt: 1,
            failed_at: 0,
            done: false,
        }
    }

    /// The planned ranges one after another, each streamed as it arrives.
    fn in_sequence(self, plan: Vec<Planned>) -> ByteStream {
        futures::stream::iter(plan)
            .map(move |(r, first, span)| self.range(r, first).into_stream(span))
            .flatten()
            .boxed()
    }

    /// Streams the opening answer `head` and times its first bytes (up to
    /// [`PROBE_BYTES`] after its first chunk, counting only the time spent waiting for the
    /// connection, not the caller's between reads): a connection that delivers them at [`ONE_STREAM_RATE`] or more
    /// is held back by nothing, so the rest follows in one request as the head ends; a
    /// slower one (a per-connection cap, a busy server) has the rest read in parallel
    /// ranges from that moment, the head's remainder first. `rest` is the span still to
    /// read, the range size and the ranges in flight.
    fn probed(
        self,
        head: GetResult,
        head_span: tracing::Span,
        rest: (Range<u64>, u64, usize),
        operation: tracing::Span,
    ) -> ByteStream {
        let head_len = head.range.end - head.range.start;
        let probe = PROBE_BYTES.min(head_len);
        // The time `probe` bytes take at ONE_STREAM_RATE.
        let deadline =
            Duration::from_secs_f64(probe as f64 / ONE_STREAM_RATE as f64).max(MIN_PROBE);
        let fetch = self.range(head.range.clone(), Some(head));
        let probing = Probing {
            version: self,
            head: fetch,
            head_span,
            rest,
            operation,
            seen_first: false,
            timed: 0,
            waited: Duration::ZERO,
            probe,
            deadline,
        };
        futures::stream::unfold(Near::Probing(Box::new(probing)), |state| async move {
            match state {
                Near::Probing(mut p) => {
                    // Only the time spent waiting for the connection counts, not the
                    // caller's between reads, nor the first chunk (it may have been
                    // waiting in the socket since the answer came).
                    let asked = tokio::time::Instant::now();
                    let next = p.head.next().instrument(p.head_span.clone()).await;
                    let waited = asked.elapsed();
                    match next {
                        Err(e) => {
                            crate::observe::record_error(&p.head_span, &e);
                            Some((Err(e), Near::Done))
                        }
                        Ok(Some(chunk)) => {
                            if p.seen_first {
                                p.timed += chunk.len() as u64;
                                p.waited += waited;
                            }
                            p.seen_first = true;
                            let in_time = p.waited <= p.deadline;
                            let then = if p.timed >= p.probe {
                                Near::Then(p.rest(in_time))
                            } else if !in_time {
                                Near::Then(p.rest(false))
                            } else {
                                Near::Probing(p)
                            };
                            Some((Ok(chunk), then))
                        }
                        // The whole head arrived before the deadline (its span gets the
                        // outcome from the rest's stream, which starts with its end).
                        Ok(None) => {
                            let mut rest = p.rest(true);
                            rest.next().await.map(|item| (item, Near::Then(rest)))
                        }
                    }
                }
                Near::Then(mut rest) => rest.next().await.map(|item| (item, Near::Then(rest))),
                Near::Done => None,
            }
        })
        .boxed()
    }
}

/// Where a near read is: timing the opening answer, or reading the rest as decided.
enum Near {
    Probing(Box<Probing>),
    Then(ByteStream),
    Done,
}

/// The opening answer of a near read being timed.
struct Probing {
    version: Version,
    head: RangeFetch,
    head_span: tracing::Span,
    /// The span after the head, the range size and the ranges in flight.
    rest: (Range<u64>, u64, usize),
    operation: tracing::Span,
    /// Whether the first chunk (not timed) has come.
    seen_first: bool,
    /// Bytes timed after the first chunk, and the time spent waiting for them.
    timed: u64,
    waited: Duration,
    probe: u64,
    deadline: Duration,
}

impl Probing {
    /// The rest of the read after the bytes timed: the head's remainder and then the rest
    /// of the object in one request (`one_stream`), or both in parallel ranges.
    fn rest(self: Box<Self>, one_stream: bool) -> ByteStream {
        let Probing {
            version,
            head,
            head_span,
            rest: (span, range, in_flight),
            operation,
            timed,
            waited,
            ..
        } = *self;
        tracing::debug!(
            bytes = timed,
            micros = waited.as_micros() as u64,
            one_stream,
            "near the store: timed the opening answer"
        );
        if one_stream {
            // The rest's request (its gauge and span) starts when the head has ended.
            let tail = futures::stream::once(async move {
                let s = crate::observe::range_span(&operation, span.start, span.end - span.start);
                version.range(span, None).into_stream(s)
            })
            .flatten();
            return head.into_stream(head_span).chain(tail).boxed();
        }
        let ranges = ranges(span, range).into_iter().map(move |r| {
            let s = crate::observe::range_span(&operation, r.start, r.end - r.start);
            (version.range(r, None), s)
        });
        let fetches = std::iter::once((head, head_span)).chain(ranges);
        read_ahead(futures::stream::iter(fetches), in_flight)
    }
}

/// Reads `fetches` `in_flight` at a time, each range held in memory until its turn, and
/// hands out their chunks in order.
fn read_ahead(
    fetches: impl futures::Stream<Item = (RangeFetch, tracing::Span)> + Send + 'static,
    in_flight: usize,
) -> ByteStream {
    fetches
        .map(|(mut fetch, span)| {
            crate::observe::traced(span, async move {
                let mut chunks = Vec::new();
                while let Some(chunk) = fetch.next().await? {
                    chunks.push(chunk);
                }
                Ok(chunks)
            })
        })
        .buffered(in_flight.max(1))
        .map_ok(|chunks| futures::stream::iter(chunks.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// Streams ranges and checks the checksum at the end.
struct Verifying {
    body: BoxStream<'static, Result<Bytes>>,
    /// A failure is final: every later read reports it again, never a clean end.
    failed: Option<String>,
    crc: Running,
    meta: ObjectMeta,
    backend: String,
    check: Option<Expected>,
    pending: Bytes,
    done: bool,
    /// The read's operation span, which gets the outcome at the end.
    span: tracing::Span,
}

impl Verifying {
    /// The end of the body: verifies the checksum and records the outcome.
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        let result = match self.check {
            Some(_) => verify(&self.backend, &self.meta, self.check, &self.crc),
            None => Ok(()),
        };
        crate::observe::record_outcome(&self.span, &result);
        result
    }

    fn fail(&mut self, e: &Error) {
        crate::observe::record_error(&self.span, e);
    }
}

/// The reader returned by [`Store::reader`].
pub struct ObjectReader {
    meta: ObjectMeta,
    inner: Verifying,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// The metadata of the version being read.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// The rest of the object as a stream of owned chunks (no copy into a caller's
    /// buffer), with the same read-ahead and the same check at the end: a checksum
    /// mismatch is the stream's last item, an error.
    pub fn into_stream(self) -> crate::object::ByteStream {
        futures::stream::unfold(Some(self.inner), |state| async move {
            let mut v = state?;
            if let Some(msg) = v.failed.take() {
                let e = Error::new(ErrorKind::Other, Op::Get, v.backend.as_str(), msg);
                return Some((Err(e), None));
            }
            if !v.pending.is_empty() {
                let chunk = std::mem::take(&mut v.pending);
                return Some((Ok(chunk), Some(v)));
            }
            if v.done {
                return None;
            }
            match v.body.next().await {
                Some(Ok(chunk)) => {
                    if v.check.is_some() {
                        v.crc.update(&chunk);
                    }
                    Some((Ok(chunk), Some(v)))
                }
                Some(Err(e)) => {
                    v.fail(&e);
                    Some((Err(e), None))
                }
                None => match v.finish() {
                    Ok(()) => None,
                    Err(e) => Some((Err(e), None)),
                },
            }
        })
        .boxed()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let v = &mut self.inner;
        loop {
            if !v.pending.is_empty() {
                let n = v.pending.len().min(buf.remaining());
                buf.put_slice(&v.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if let Some(msg) = &v.failed {
                return Poll::Ready(Err(io::Error::other(msg.clone())));
            }
            if v.done {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(v.body.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => {
                    if v.check.is_some() {
                        v.crc.update(&chunk);
                    }
                    v.pending = chunk;
                }
                Some(Err(e)) => {
                    v.fail(&e);
                    v.failed = Some(e.to_string());
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                None => {
                    if let Err(e) = v.finish() {
                        v.failed = Some(e.to_string());
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::MIB;

    #[test]
    fn ranges_cover_the_span_exactly() {
        assert_eq!(super::ranges(0..0, 10), vec![]);
        assert_eq!(super::ranges(0..25, 10), vec![0..10, 10..20, 20..25]);
        assert_eq!(super::ranges(0..20, 10), vec![0..10, 10..20]);
        assert_eq!(super::ranges(5..27, 10), vec![5..15, 15..25, 25..27]);
    }

    #[test]
    fn file_ranges_make_about_four_rounds_within_bounds() {
        // 1 GiB after a first 16 MiB range, 8 in flight: 32 ranges of 31.5 MiB.
        assert_eq!(
            super::file_range_size(1008 * MIB, 16 * MIB, 8),
            1008 * MIB / 32
        );
        // Small objects keep the part size; huge ones stop at the cap...
        assert_eq!(super::file_range_size(40 * MIB, 16 * MIB, 8), 16 * MIB);
        assert_eq!(super::file_range_size(100_000 * MIB, 16 * MIB, 8), 64 * MIB);
        // ...unless the part size is larger still.
        assert_eq!(
            super::file_range_size(100_000 * MIB, 100 * MIB, 8),
            100 * MIB
        );
        assert_eq!(super::file_range_size(0, 8 * MIB, 0), 8 * MIB);
    }
}
