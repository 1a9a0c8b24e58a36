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
//!
//! [`sync`] streams: the two listings are merged as they are read into a bounded window of
//! work, so memory does not grow with the number of keys, and [`SyncOptions::progress`]
//! reports while it runs. With [`SyncOptions::state`] it keeps what it learned in the
//! destination under [`STATE_PREFIX`], so that a re-run over unchanged data decides from
//! the listings alone. [`ShardedSync`] splits one sync into key-range units that any number
//! of workers, on any machines, share through claims in the destination store.

mod sharded;
mod state;
mod sync;

pub use sharded::{Claim, Plan, ShardedSync, SyncStatus, Unit, WorkerReport};
pub use sync::{
    STATE_PREFIX, SyncOptions, SyncProgress, SyncProgressFn, SyncReport, SyncRequests, sync,
};

use std::sync::Arc;

use futures::StreamExt;

use crate::error::{Error, Op, Result};
use crate::object::{ObjectMeta, PutMode, PutOptions};
use crate::store::Store;
use crate::transfer::{Crc32c, ProgressFn};

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
    /// The ETag of the source version the bytes came from (streamed copies: the reader
    /// is pinned to it).
    pub source_etag: Option<String>,
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
                source_etag: None,
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
        crate::observe::checksum_mismatch(src.backend_name());
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
        source_etag: source.etag,
    })
}
