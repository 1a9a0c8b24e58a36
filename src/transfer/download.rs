//! Parallel ranged downloads pinned to one version of an object, and an ordered reader.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, ReadBuf};

use super::checksum::{Expected, Running, expected, verify};
use super::{Progress, ProgressFn, backoff};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{ByteRange, GetOptions, ObjectMeta};
use crate::store::Store;

/// The ranges of an object of `size` bytes, `chunk` bytes each.
fn ranges(size: u64, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(size))
        .collect()
}

/// Reads one range of the version `etag` into memory (at most one part), retrying what can
/// be retried (each attempt starts the range afresh); a replaced object gives
/// `PreconditionFailed`.
async fn fetch_range(
    store: &Store,
    key: &Key,
    etag: Option<&str>,
    range: Range<u64>,
    check: Option<Expected>,
) -> Result<(Vec<Bytes>, Running)> {
    let cfg = &store.transfer().config;
    let _in_flight =
        crate::observe::InFlight::new(store.backend_name(), crate::observe::Direction::Receive);
    let mut attempt = 1;
    loop {
        let opts = GetOptions {
            range: Some(ByteRange::Bounded(range.clone())),
            if_match: etag.map(str::to_string),
            ..Default::default()
        };
        let attempt_result: Result<(Vec<Bytes>, Running)> = async {
            let res = crate::observe::attempt(attempt, store.backend().get(key, &opts)).await?;
            // A server that ignores If-Match must not slip another version in.
            if let (Some(want), Some(got)) = (etag, res.meta.etag.as_deref())
                && want != got
            {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    Op::Get,
                    store.backend_name(),
                    "a range came from another version of the object",
                )
                .with_key(key.as_str()));
            }
            let mut crc = Running::new(check);
            let mut chunks = Vec::new();
            let mut body = res.into_checked_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                crc.update(&chunk);
                chunks.push(chunk);
            }
            Ok((chunks, crc))
        }
        .await;
        match attempt_result {
            Err(e) if e.is_retryable() && attempt < cfg.attempts_over(store.backend().as_ref()) => {
                crate::observe::retry(store.backend_name(), Op::Get, e.kind());
                tracing::debug!(key = %key, attempt, error = %e, "retrying a range");
                tokio::time::sleep(backoff(cfg.backoff, attempt)).await;
                attempt += 1;
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    Op::Get,
                    store.backend_name(),
                    "the object was replaced during the download",
                )
                .with_key(key.as_str()));
            }
            other => return other,
        }
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

impl Store {
    /// The version a read will be pinned to (its metadata), the transfer policy, and the
    /// checksum the bytes must match.
    async fn start_read(
        &self,
        key: &str,
    ) -> Result<(Key, ObjectMeta, super::TransferConfig, Option<Expected>)> {
        let k = self.full_key(Op::Get, key)?;
        let meta = self
            .backend()
            .head(&k)
            .await
            .map_err(|e| e.with_op(Op::Get))?;
        let cfg = self.transfer().config.clone();
        let check = if cfg.checksum {
            expected(self, &k, &meta).await?
        } else {
            None
        };
        Ok((k, meta, cfg, check))
    }

    /// Downloads `key` into the file `path` with concurrent ranged reads, all pinned to the
    /// version the first request saw; writes go in place into a temporary file beside
    /// `path`, renamed over it only once every byte arrived and the checksum (if the object
    /// has one) verified. On any failure `path` is untouched.
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
        let (k, meta, cfg, check) = self.start_read(key).await?;
        span.record("size", meta.size);
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
        file.set_len(meta.size).map_err(|e| io_err(self, &k, e))?;
        let file = Arc::new(file);

        let done = Arc::new(AtomicU64::new(0));
        let parts_done = Arc::new(AtomicU64::new(0));
        let etag = meta.etag.clone();
        let results: Vec<(usize, Running)> =
            futures::stream::iter(ranges(meta.size, cfg.part_size).into_iter().enumerate())
                .map(|(i, r)| {
                    let (store, k, etag, file) =
                        (self.clone(), k.clone(), etag.clone(), file.clone());
                    let (done, parts_done, progress) =
                        (done.clone(), parts_done.clone(), progress.clone());
                    let total = meta.size;
                    let range = crate::observe::range_span(span, r.start, r.end - r.start);
                    crate::observe::traced(range, async move {
                        let offset = r.start;
                        let (chunks, crc) =
                            fetch_range(&store, &k, etag.as_deref(), r, check).await?;
                        // One blocking hop per range: positional writes of its chunks.
                        let len = tokio::task::spawn_blocking(move || -> io::Result<u64> {
                            use std::os::unix::fs::FileExt;
                            let mut at = offset;
                            for c in &chunks {
                                file.write_all_at(c, at)?;
                                at += c.len() as u64;
                            }
                            Ok(at - offset)
                        })
                        .await
                        .map_err(|e| {
                            Error::new(ErrorKind::Other, Op::Get, "cloudstore", e.to_string())
                        })?
                        .map_err(|e| {
                            Error::from_io(Op::Get, "cloudstore", e).with_key(k.as_str())
                        })?;
                        let bytes = done.fetch_add(len, Ordering::Relaxed) + len;
                        let parts = parts_done.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(p) = &progress {
                            p(Progress {
                                bytes,
                                total: Some(total),
                                parts,
                            });
                        }
                        Ok::<_, Error>((i, crc))
                    })
                })
                .buffer_unordered(cfg.concurrency.max(1))
                .try_collect()
                .await?;
        if check.is_some() {
            let mut ordered = results;
            ordered.sort_by_key(|(i, _)| *i);
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
        let (k, meta, cfg, check) = crate::observe::in_span(&span, self.start_read(key)).await?;
        span.record("size", meta.size);
        let store = self.clone();
        let etag = meta.etag.clone();
        let operation = span.clone();
        let fetches = futures::stream::iter(ranges(meta.size, cfg.part_size))
            .map(move |r| {
                let (store, k, etag) = (store.clone(), k.clone(), etag.clone());
                let range = crate::observe::range_span(&operation, r.start, r.end - r.start);
                crate::observe::traced(range, async move {
                    fetch_range(&store, &k, etag.as_deref(), r, None)
                        .await
                        .map(|(chunks, _)| chunks)
                })
            })
            .buffered(cfg.concurrency.max(1))
            .map_ok(|chunks| futures::stream::iter(chunks.into_iter().map(Ok)))
            .try_flatten();
        let verify_meta = meta.clone();
        let backend = self.backend_name().to_string();
        let body = fetches.boxed();
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
    #[test]
    fn ranges_cover_the_object_exactly() {
        assert_eq!(super::ranges(0, 10), vec![]);
        assert_eq!(super::ranges(25, 10), vec![0..10, 10..20, 20..25]);
        assert_eq!(super::ranges(20, 10), vec![0..10, 10..20]);
    }
}
