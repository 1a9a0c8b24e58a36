//! Moving data between stores: a verified copy of one object from any store to any other,
//! and a resumable [`sync`] of a whole prefix.
//!
//! A copy between two stores on the same backend is done by the service (server-side
//! copy; on S3 part by part above 5 GiB); otherwise the bytes stream
//! through the transfer engine with bounded memory: read ahead from the source (pinned to
//! one version, its checksum verified at the end), written as they arrive, and the upload
//! is completed only once the source verified; a mismatch aborts it, so nothing is left.
//!
//! Every streamed copy keeps the source's content type and metadata and adds
//! [`SOURCE_ETAG_METADATA`], the source version's ETag. That is how a later [`sync`]
//! recognises a finished copy even where no CRC32C can be stored (S3 multipart uploads of
//! objects written by other tools): an interrupted sync, run again, copies only what it
//! cannot prove is already there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Op, Result};
use crate::object::{ObjectMeta, PutMode, PutOptions};
use crate::store::Store;
use crate::transfer::{Crc32c, ProgressFn, declared};

/// The metadata entry a streamed copy adds: the ETag of the source version it copied.
pub const SOURCE_ETAG_METADATA: &str = crate::attributes::SOURCE_ETAG_RECORD;

/// Options of [`copy`].
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// `Overwrite` (default) or `Create` (fail with `AlreadyExists` if the destination
    /// exists).
    pub mode: PutMode,
    /// Called as the destination's parts complete (streamed copies).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What [`copy`] did.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The destination object.
    pub meta: ObjectMeta,
    /// Bytes copied.
    pub bytes: u64,
    /// Whether the service copied it (same backend), rather than the bytes streaming
    /// through this process.
    pub server_side: bool,
    /// The CRC32C of the bytes streamed (streamed copies).
    pub crc32c: Option<u32>,
}

/// The largest object a backend copies on the service side: Azure's synchronous copy
/// takes 256 MiB; S3 copies larger objects part by part (UploadPartCopy). Larger objects
/// stream.
fn server_copy_limit(backend: &str) -> u64 {
    match backend {
        "azure" => 256 << 20,
        _ => u64::MAX,
    }
}

/// Copies `src_key` of `src` to `dst_key` of `dst`, verified end to end (see the module
/// documentation).
pub async fn copy(
    src: &Store,
    src_key: &str,
    dst: &Store,
    dst_key: &str,
    opts: &CopyOptions,
) -> Result<Copied> {
    let same_backend = Arc::ptr_eq(src.backend(), dst.backend());
    if same_backend && !matches!(opts.mode, PutMode::IfMatch(_)) {
        let from = src.full_key(Op::Copy, src_key)?;
        // The size matters only where the service copies a bounded size.
        let limit = server_copy_limit(src.backend_name());
        let fits = limit == u64::MAX || src.backend().head(&from).await?.size <= limit;
        if fits {
            let to = dst.full_key(Op::Copy, dst_key)?;
            let mode = match opts.mode {
                PutMode::Create => crate::object::CopyMode::Create,
                _ => crate::object::CopyMode::Overwrite,
            };
            let meta = dst.backend().copy(&from, &to, mode).await?;
            return Ok(Copied {
                bytes: meta.size,
                meta: dst.relative_meta(meta),
                server_side: true,
                crc32c: None,
            });
        }
    }
    streamed(src, src_key, dst, dst_key, opts).await
}

async fn streamed(
    src: &Store,
    src_key: &str,
    dst: &Store,
    dst_key: &str,
    opts: &CopyOptions,
) -> Result<Copied> {
    let reader = src.reader(src_key).await?;
    let source = reader.meta().clone();
    let mut put = PutOptions {
        mode: opts.mode.clone(),
        content_type: source.content_type.clone(),
        metadata: source.metadata.clone(),
    };
    if let Some(etag) = &source.etag {
        put.metadata
            .insert(SOURCE_ETAG_METADATA.into(), etag.clone());
    }
    let mut up = dst
        .writer_for_copy(dst_key, &put)?
        .with_size_hint(source.size);
    if let Some(p) = &opts.progress {
        up = up.with_progress(p.clone());
    }
    let mut crc = Crc32c::new();
    let mut body = reader.into_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                crc.update(&c);
                // A failed write aborts the upload (dropped, it aborts in the background).
                up.write_bytes(c).await?;
            }
            Err(e) => {
                // The source failed or did not verify: the destination must not appear.
                up.abort().await?;
                return Err(e.with_op(Op::Copy));
            }
        }
    }
    if crc.len() != source.size {
        up.abort().await?;
        return Err(Error::new(
            crate::ErrorKind::ChecksumMismatch,
            Op::Copy,
            src.backend_name(),
            format!("read {} bytes of a {}-byte object", crc.len(), source.size),
        )
        .with_key(src_key));
    }
    let meta = up.finish().await?;
    Ok(Copied {
        bytes: crc.len(),
        meta,
        server_side: false,
        crc32c: Some(crc.value()),
    })
}

/// Options of [`sync`].
#[derive(Clone)]
pub struct SyncOptions {
    /// Only keys under this prefix (of both stores).
    pub prefix: Option<String>,
    /// Delete destination objects the source does not have.
    pub delete_extras: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Compare only: report what differs (as `failed`), copy and delete nothing.
    pub verify_only: bool,
    /// Objects handled at once.
    pub concurrency: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            prefix: None,
            delete_extras: false,
            dry_run: false,
            verify_only: false,
            concurrency: 8,
        }
    }
}

/// What [`sync`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Objects the source listing returned under the prefix. Each ends as exactly one of
    /// `copied`, `skipped` or a `failed` entry: nothing is left out silently.
    pub source_objects: u64,
    /// Objects copied.
    pub copied: u64,
    /// Objects already in place (same size and checksum, or a copy of this version).
    pub skipped: u64,
    /// Destination objects deleted (`delete_extras`).
    pub deleted: u64,
    /// Keys that failed, with why (in `verify_only`: the keys that differ).
    pub failed: Vec<(String, String)>,
    /// Bytes copied.
    pub bytes: u64,
}

enum Action {
    Copy(String),
    Check(String),
    Delete(String),
}

/// Makes `dst` hold what `src` holds under `opts.prefix`: copies what is missing or
/// different (size, then CRC32C or the source ETag a copy recorded), in parallel, verified
/// end to end; optionally deletes extras. Interrupted at any point and run again, it
/// copies only what it cannot prove is already there. Failures of single objects are
/// reported, not fatal; listing failures are.
pub async fn sync(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<SyncReport> {
    let prefix = opts.prefix.as_deref();
    let (mut a, mut b) = (src.list(prefix), dst.list(prefix));
    let mut actions = Vec::new();
    let (mut x, mut y) = (a.try_next().await?, b.try_next().await?);
    let mut source_objects = 0u64;
    loop {
        if let (Some(s), _) = (&x, &y)
            && y.as_ref().is_none_or(|d| s.key <= d.key)
        {
            source_objects += 1;
        }
        match (&x, &y) {
            (None, None) => break,
            (Some(s), None) => {
                actions.push(Action::Copy(s.key.as_str().to_string()));
                x = a.try_next().await?;
            }
            (None, Some(d)) => {
                actions.push(Action::Delete(d.key.as_str().to_string()));
                y = b.try_next().await?;
            }
            (Some(s), Some(d)) => match s.key.cmp(&d.key) {
                std::cmp::Ordering::Less => {
                    actions.push(Action::Copy(s.key.as_str().to_string()));
                    x = a.try_next().await?;
                }
                std::cmp::Ordering::Greater => {
                    actions.push(Action::Delete(d.key.as_str().to_string()));
                    y = b.try_next().await?;
                }
                std::cmp::Ordering::Equal => {
                    if s.size == d.size {
                        actions.push(Action::Check(s.key.as_str().to_string()));
                    } else {
                        actions.push(Action::Copy(s.key.as_str().to_string()));
                    }
                    x = a.try_next().await?;
                    y = b.try_next().await?;
                }
            },
        }
    }
    let copied = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let deleted = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    let fail = |key: &str, why: String| {
        failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.to_string(), why));
    };
    futures::stream::iter(actions)
        .for_each_concurrent(opts.concurrency.max(1), |action| {
            let (copied, skipped, deleted, bytes, fail) =
                (&copied, &skipped, &deleted, &bytes, &fail);
            async move {
                let key = match action {
                    Action::Delete(key) => {
                        if !opts.delete_extras {
                            return;
                        }
                        if opts.verify_only {
                            fail(&key, "not in the source".into());
                        } else if opts.dry_run {
                            deleted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            match dst.delete(&key).await {
                                Ok(()) => {
                                    deleted.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => fail(&key, e.to_string()),
                            }
                        }
                        return;
                    }
                    Action::Check(key) => match in_place(src, dst, &key).await {
                        Ok(true) => {
                            skipped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Ok(false) => key,
                        Err(e) => {
                            fail(&key, e.to_string());
                            return;
                        }
                    },
                    Action::Copy(key) => key,
                };
                if opts.verify_only {
                    fail(&key, "missing or different in the destination".into());
                    return;
                }
                if opts.dry_run {
                    copied.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match copy(src, &key, dst, &key, &CopyOptions::default()).await {
                    Ok(c) => {
                        copied.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(c.bytes, Ordering::Relaxed);
                    }
                    Err(e) => fail(&key, e.to_string()),
                }
            }
        })
        .await;
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    failed.sort();
    Ok(SyncReport {
        source_objects,
        copied: copied.into_inner(),
        skipped: skipped.into_inner(),
        deleted: deleted.into_inner(),
        failed,
        bytes: bytes.into_inner(),
    })
}

impl SyncReport {
    /// Whether every source object was compared and found in place (what a verification
    /// must prove): none copied, none failed, and every listed source object skipped.
    pub fn all_in_place(&self) -> bool {
        self.failed.is_empty() && self.copied == 0 && self.skipped == self.source_objects
    }
}

/// Whether `dst` already holds `src`'s object at `key` (their sizes are equal): the same
/// CRC32C, or a copy recorded from this very version.
async fn in_place(src: &Store, dst: &Store, key: &str) -> Result<bool> {
    let (s, d) = futures::try_join!(src.head(key), dst.head(key))?;
    if s.size != d.size {
        return Ok(false);
    }
    if let (Some(a), Some(b)) = (declared(&s), declared(&d)) {
        return Ok(a == b);
    }
    Ok(s.etag.is_some() && d.source_etag == s.etag)
}
