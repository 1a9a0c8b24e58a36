//! File uploads: parts read in parallel with positional reads, and checkpoints that let
//! another process finish an interrupted upload, re-sending only the missing parts.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;

use super::checksum::{CHECKSUM_METADATA, Crc32c};
use super::pool::Buffers;
use super::upload::put_part_with_retries;
use super::{PartSizer, Progress, ProgressFn};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{ObjectMeta, PartInfo, PartNumber, Payload, PutMode, PutOptions, UploadId};
use crate::store::Store;

/// Where an interrupted file upload stands: enough for [`Store::resume_upload`] to finish
/// it from another process. Saved as JSON ([`Checkpoint::save`], [`Checkpoint::load`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Format version of this record.
    pub format: u32,
    /// The key, as the backend knows it (store prefix included).
    pub key: Key,
    /// The multipart upload.
    pub upload_id: UploadId,
    /// The condition the completion will carry.
    pub mode: PutMode,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Size of the file.
    pub size: u64,
    /// The file's modification time (ns since the epoch), to refuse a changed file.
    pub modified_ns: u128,
    /// Whether the object's CRC32C was stored when the upload was created (backends that
    /// cannot add metadata at completion) rather than at completion.
    pub checksum_at_create: bool,
    /// Parts uploaded so far, with the CRC32C of each.
    pub parts: BTreeMap<u32, DonePart>,
}

/// One uploaded part in a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DonePart {
    /// What the completion needs.
    pub info: PartInfo,
    /// CRC32C of the part's bytes.
    pub crc32c: u32,
}

impl Checkpoint {
    /// The checkpoint as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                Op::PutPart,
                "cloudstore",
                "cannot encode the checkpoint",
            )
            .with_source(e)
        })
    }

    /// A checkpoint from JSON, refused (`InvalidInput`) unless it is well formed: a known
    /// format, a valid key, a part size of at least one byte, and parts numbered within the
    /// file, each of the size its position gives.
    pub fn from_json(json: &[u8]) -> Result<Checkpoint> {
        let bad = |m: String| Error::invalid_input(Op::PutPart, "cloudstore", m);
        let cp: Checkpoint =
            serde_json::from_slice(json).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        if cp.format != 1 {
            return Err(bad(format!(
                "checkpoint format {} is not known to this version",
                cp.format
            )));
        }
        if cp.part_size == 0 {
            return Err(bad("a checkpoint with a part size of 0".into()));
        }
        let count = cp.size.div_ceil(cp.part_size);
        for (n, p) in &cp.parts {
            let n = u64::from(*n);
            let expected = if n == 0 || n > count {
                None
            } else {
                Some(cp.part_size.min(cp.size - (n - 1) * cp.part_size))
            };
            if expected != Some(p.info.size) || p.info.number.get() as u64 != n {
                return Err(bad(format!(
                    "part {n} of the checkpoint does not fit a {}-byte file in parts of {}",
                    cp.size, cp.part_size
                )));
            }
        }
        Ok(cp)
    }

    /// Writes the checkpoint to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let io_err =
            |e| Error::from_io(Op::PutPart, "cloudstore", e).with_key(path.display().to_string());
        std::fs::write(&tmp, json).map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(e)
        })
    }

    /// Reads a checkpoint saved by [`Checkpoint::save`] (checked as by
    /// [`Checkpoint::from_json`]).
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let raw = std::fs::read(path).map_err(|e| {
            Error::from_io(Op::PutPart, "cloudstore", e).with_key(path.display().to_string())
        })?;
        Self::from_json(&raw).map_err(|e| e.with_key(path.display().to_string()))
    }
}

/// Options of [`Store::upload_file_with`].
#[derive(Clone, Default)]
pub struct FileUploadOptions {
    /// Condition, content type and metadata of the object.
    pub put: PutOptions,
    /// Called as parts complete.
    pub progress: Option<ProgressFn>,
    /// Save a [`Checkpoint`] here after every part. On failure the multipart upload is then
    /// kept (for [`Store::resume_upload`]) instead of aborted; on success the file is
    /// removed. Use [`Store::abort_checkpoint`] to give up.
    pub checkpoint: Option<PathBuf>,
}

impl std::fmt::Debug for FileUploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileUploadOptions")
            .field("put", &self.put)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

fn modified_ns(m: &std::fs::Metadata) -> u128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A file opened for positional reads.
struct Source {
    file: Arc<std::fs::File>,
    path: PathBuf,
}

impl Source {
    fn open(path: &Path) -> Result<(Source, std::fs::Metadata)> {
        let io_err =
            |e| Error::from_io(Op::Put, "cloudstore", e).with_key(path.display().to_string());
        let file = std::fs::File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        Ok((
            Source {
                file: Arc::new(file),
                path: path.to_path_buf(),
            },
            meta,
        ))
    }

    /// Reads `len` bytes at `offset` and their CRC32C, both on a blocking thread.
    async fn read(&self, offset: u64, len: u64, buffers: &Arc<Buffers>) -> Result<(Bytes, Crc32c)> {
        let file = self.file.clone();
        let path = self.path.display().to_string();
        let buffers = buffers.clone();
        tokio::task::spawn_blocking(move || -> io::Result<(Bytes, Crc32c)> {
            let mut buf = buffers.take(len as usize);
            buf.read_exact_at(&file, offset, len as usize)?;
            let mut crc = Crc32c::new();
            crc.update(buf.as_slice());
            Ok((buffers.freeze(buf), crc))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| Error::from_io(Op::Put, "cloudstore", e).with_key(path))
    }

    /// The CRC32C of the whole file, in one sequential pass (hardware CRC is far faster
    /// than the network, so this costs one read of the file).
    async fn crc(&self) -> Result<Crc32c> {
        let file = self.file.clone();
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || -> io::Result<Crc32c> {
            use std::io::{Seek, SeekFrom};
            // Parts are read positionally, so moving the shared cursor disturbs nothing.
            let mut f: &std::fs::File = &file;
            f.seek(SeekFrom::Start(0))?;
            Crc32c::from_reader(f)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| Error::from_io(Op::Put, "cloudstore", e).with_key(path))
    }

    fn check_unchanged(&self, key: &Key, size: u64, modified: u128) -> Result<()> {
        let m = std::fs::metadata(&self.path).map_err(|e| {
            Error::from_io(Op::Put, "cloudstore", e).with_key(self.path.display().to_string())
        })?;
        if m.len() != size || modified_ns(&m) != modified {
            return Err(Error::invalid_input(
                Op::Put,
                "cloudstore",
                "the file changed during the upload",
            )
            .with_key(key.as_str()));
        }
        Ok(())
    }
}

impl Store {
    /// Uploads the file at `path`, reading its parts in parallel (positional reads, no
    /// shared cursor). The file must not change meanwhile: if its size or modification time
    /// differ at the end, the upload is aborted with an error.
    pub async fn upload_file(
        &self,
        key: &str,
        path: impl AsRef<Path>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let options = FileUploadOptions {
            put: opts.clone(),
            ..Default::default()
        };
        self.upload_file_with(key, path, &options).await
    }

    /// [`Store::upload_file`] with progress and an optional checkpoint.
    pub async fn upload_file_with(
        &self,
        key: &str,
        path: impl AsRef<Path>,
        options: &FileUploadOptions,
    ) -> Result<ObjectMeta> {
        let span = self.op_span("upload", key);
        let upload = self.upload_file_untraced(key, path.as_ref(), options, &span);
        crate::observe::traced(span.clone(), upload).await
    }

    async fn upload_file_untraced(
        &self,
        key: &str,
        path: &Path,
        options: &FileUploadOptions,
        span: &tracing::Span,
    ) -> Result<ObjectMeta> {
        let k = self.full_key(Op::Put, key)?;
        let opts = &options.put;
        self.check_put(Op::Put, &k, opts)?;
        let (source, before) = Source::open(path)?;
        let size = before.len();
        span.record("size", size);
        let cfg = self.transfer().config.clone();
        let part = PartSizer::new(self.capabilities(), cfg.part_size, Some(size)).size_of(1);
        if size <= part {
            // One part: a single PUT through the writer.
            let (data, _) = source.read(0, size, &self.transfer().buffers).await?;
            let mut up = self.writer(key, opts)?.with_size_hint(size);
            if let Some(p) = &options.progress {
                up = up.with_progress(p.clone());
            }
            up.write_bytes(data).await?;
            source.check_unchanged(&k, size, modified_ns(&before))?;
            return up.finish().await;
        }
        let backend = self.backend().clone();
        // Where metadata cannot be added at completion, the checksum goes in at creation,
        // which needs one pass over the file first.
        let caps = backend.capabilities();
        let checksum_at_create = cfg.checksum && caps.user_metadata && !caps.complete_metadata;
        let mut create_opts = opts.clone();
        if checksum_at_create {
            create_opts
                .metadata
                .insert(CHECKSUM_METADATA.into(), source.crc().await?.to_hex());
        }
        let upload_id = backend.create_multipart(&k, &create_opts).await?;
        let checkpoint = Checkpoint {
            format: 1,
            key: k,
            upload_id,
            mode: opts.mode.clone(),
            part_size: part,
            size,
            modified_ns: modified_ns(&before),
            checksum_at_create,
            parts: BTreeMap::new(),
        };
        if let Some(p) = &options.checkpoint {
            checkpoint.save(p)?;
        }
        self.run_file(
            source,
            checkpoint,
            options.checkpoint.clone(),
            options.progress.clone(),
        )
        .await
    }

    /// Finishes the upload a [`Checkpoint`] describes, re-sending only the parts it does not
    /// list, from the same (unchanged) file. The checkpoint file is updated as parts
    /// complete and removed at the end.
    pub async fn resume_upload(
        &self,
        checkpoint_path: impl AsRef<Path>,
        file: impl AsRef<Path>,
        progress: Option<ProgressFn>,
    ) -> Result<ObjectMeta> {
        let checkpoint_path = checkpoint_path.as_ref().to_path_buf();
        let cp = Checkpoint::load(&checkpoint_path)?;
        let span = self.op_span("upload", self.relative(cp.key.clone()).as_str());
        span.record("size", cp.size);
        let resumed = self.resume_untraced(cp, checkpoint_path, file.as_ref(), progress);
        crate::observe::traced(span, resumed).await
    }

    async fn resume_untraced(
        &self,
        cp: Checkpoint,
        checkpoint_path: PathBuf,
        file: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<ObjectMeta> {
        let parts = cp.size.div_ceil(cp.part_size);
        if parts > u64::from(self.capabilities().max_parts) {
            return Err(Error::invalid_input(
                Op::Put,
                self.backend_name(),
                format!(
                    "the checkpoint needs {parts} parts; this backend takes at most {}",
                    self.capabilities().max_parts
                ),
            )
            .with_key(cp.key.as_str()));
        }
        let (source, meta) = Source::open(file)?;
        if meta.len() != cp.size || modified_ns(&meta) != cp.modified_ns {
            return Err(Error::invalid_input(
                Op::Put,
                self.backend_name(),
                "the file is not the one the checkpoint was made from (size or modification time differ)",
            )
            .with_key(cp.key.as_str()));
        }
        self.run_file(source, cp, Some(checkpoint_path), progress)
            .await
    }

    /// Gives up the upload a checkpoint describes: aborts it and removes the checkpoint.
    pub async fn abort_checkpoint(&self, checkpoint_path: impl AsRef<Path>) -> Result<()> {
        let cp = Checkpoint::load(checkpoint_path.as_ref())?;
        self.backend()
            .abort_multipart(&cp.key, &cp.upload_id)
            .await?;
        let _ = std::fs::remove_file(checkpoint_path.as_ref());
        Ok(())
    }

    /// Sends the parts a checkpoint lacks, then completes.
    async fn run_file(
        &self,
        source: Source,
        checkpoint: Checkpoint,
        checkpoint_path: Option<PathBuf>,
        progress: Option<ProgressFn>,
    ) -> Result<ObjectMeta> {
        let cfg = self.transfer().config.clone();
        let backend = self.backend().clone();
        let (size, part) = (checkpoint.size, checkpoint.part_size.max(1));
        let count = size.div_ceil(part);
        let missing: Vec<u64> = (0..count)
            .filter(|i| !checkpoint.parts.contains_key(&(*i as u32 + 1)))
            .collect();
        let done_bytes: u64 = checkpoint.parts.values().map(|p| p.info.size).sum();
        let done = Arc::new(AtomicU64::new(done_bytes));
        let parts_done = Arc::new(AtomicU64::new(checkpoint.parts.len() as u64));
        let state = Arc::new(Mutex::new(checkpoint));
        let shared = self.transfer();
        let _lease = shared.buffers.lease();
        let (key, id) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            (s.key.clone(), s.upload_id.clone())
        };
        let source = Arc::new(source);
        // Dropped (cancelled) without a checkpoint: abort in the background.
        let mut guard = AbortOnDrop {
            store: self.clone(),
            key: key.clone(),
            id: checkpoint_path.is_none().then(|| id.clone()),
        };
        // After a failure no new part starts, but parts in flight finish and are recorded,
        // so that a resume does not send them again.
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let operation = tracing::Span::current();
        let results: Vec<Result<()>> = futures::stream::iter(missing)
            .map(|i| {
                let failed = failed.clone();
                let (backend, key, id, cfg) =
                    (backend.clone(), key.clone(), id.clone(), cfg.clone());
                let (done, parts_done, progress, state) = (
                    done.clone(),
                    parts_done.clone(),
                    progress.clone(),
                    state.clone(),
                );
                let (source, cp_path) = (source.clone(), checkpoint_path.clone());
                let offset = i * part;
                let len = part.min(size - offset);
                let span = crate::observe::part_span(&operation, i as u32 + 1, len);
                crate::observe::traced(span, async move {
                    if failed.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let r: Result<()> = async {
                        let _permit = shared.reserve(len, backend.name()).await?;
                        let _in_flight = crate::observe::InFlight::new(
                            backend.name(),
                            crate::observe::Direction::Transmit,
                        );
                        let (data, crc) = source.read(offset, len, &shared.buffers).await?;
                        let number = PartNumber::new(i as u32 + 1)?;
                        let info = put_part_with_retries(
                            backend.as_ref(),
                            &key,
                            &id,
                            number,
                            Payload::from(data),
                            &cfg,
                        )
                        .await?;
                        {
                            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                            s.parts.insert(
                                number.get(),
                                DonePart {
                                    info,
                                    crc32c: crc.value(),
                                },
                            );
                            // Saved every few parts (and at the end): a crash loses at most that
                            // much progress, and saving stays linear in the part count.
                            if let Some(p) = &cp_path
                                && s.parts.len() % CHECKPOINT_EVERY == 0
                            {
                                s.save(p)?;
                            }
                        }
                        let bytes = done.fetch_add(len, Ordering::Relaxed) + len;
                        let parts = parts_done.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(p) = &progress {
                            p(Progress {
                                bytes,
                                total: Some(size),
                                parts,
                            });
                        }
                        Ok(())
                    }
                    .await;
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .buffer_unordered(cfg.concurrency.max(1))
            .collect()
            .await;
        let sent: Result<()> = results.into_iter().collect();
        let cp = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(p) = &checkpoint_path {
            cp.save(p)?;
        }
        let completed = async {
            sent?;
            source.check_unchanged(&key, size, cp.modified_ns)?;
            let mut whole = Crc32c::new();
            let mut infos = Vec::with_capacity(cp.parts.len());
            for p in cp.parts.values() {
                let part_crc = Crc32c::from_parts(p.crc32c, p.info.size);
                whole = whole.combine(part_crc);
                infos.push(p.info.clone());
            }
            let mut extra = crate::object::Metadata::new();
            let caps = backend.capabilities();
            if cfg.checksum
                && !cp.checksum_at_create
                && caps.complete_metadata
                && caps.user_metadata
            {
                extra.insert(CHECKSUM_METADATA.into(), whole.to_hex());
            }
            backend
                .complete_multipart_with_metadata(&key, &id, &infos, &cp.mode, &extra)
                .await
        }
        .await;
        guard.id = None;
        match completed {
            Ok(meta) => {
                if let Some(p) = &checkpoint_path {
                    let _ = std::fs::remove_file(p);
                }
                Ok(self.relative_meta(meta))
            }
            // Resumable: keep the upload and the checkpoint. A refused condition or bad
            // input will not go better next time: those are cleaned up below.
            Err(e)
                if checkpoint_path.is_some()
                    && !matches!(
                        e.kind(),
                        ErrorKind::InvalidInput
                            | ErrorKind::AlreadyExists
                            | ErrorKind::PreconditionFailed
                    ) =>
            {
                Err(e)
            }
            Err(e) => {
                if let Err(abort) = backend.abort_multipart(&key, &id).await {
                    tracing::warn!(key = %key, error = %abort, "aborting a failed file upload failed");
                }
                if let Some(p) = &checkpoint_path {
                    let _ = std::fs::remove_file(p);
                }
                Err(e)
            }
        }
    }
}

/// How many parts between checkpoint saves.
const CHECKPOINT_EVERY: usize = 8;

/// Aborts an upload when a file upload is dropped mid-way (unless disarmed).
struct AbortOnDrop {
    store: Store,
    key: Key,
    id: Option<UploadId>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (backend, key) = (self.store.backend().clone(), self.key.clone());
            handle.spawn(async move {
                if let Err(e) = backend.abort_multipart(&key, &id).await {
                    tracing::warn!(key = %key, error = %e, "aborting a cancelled file upload failed");
                }
            });
        }
    }
}
