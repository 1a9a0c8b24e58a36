//! A backend over a local directory: the embedded default.
//!
//! # Layout
//!
//! Object `a/b/c.txt` is the plain file `<root>/a/b/c.txt`, so the directory can be read
//! with ordinary tools and files dropped into it become objects. The crate keeps its own
//! state under `<root>/.cloudstore/`: temporary files, multipart staging, and a sidecar per
//! object holding content type and user metadata.
//!
//! Every key is stored, exactly: a segment that is not a plain file name travels under an
//! escape, `%` followed by the segment with `%`, NUL and control characters
//! percent-encoded. The empty segment (of `a//b`, `dir/`, `/lead`) is `%`, `.` and `..` are
//! `%.` and `%..`, a segment starting with `%` (`%41`) is `%%2541`, and a first segment
//! `.cloudstore` is `%.cloudstore`, apart from the state directory. Listings decode names
//! back; a file whose name starts with `%` but is no such escape is not an object.
//!
//! # Guarantees
//!
//! - **Atomic writes.** Every write goes to a temporary file under `.cloudstore/tmp/`, is
//!   flushed (`fsync`, unless [`FsBackend::with_fsync`] turns it off), renamed into place,
//!   and the directory is flushed too: a reader sees the old object or the new one, never a
//!   part of either. A reader that already opened the old object keeps reading it whole.
//! - **Confinement.** A key cannot name anything outside the root: keys are never resolved
//!   as paths (`..`, `.`, empty segments and NUL travel under the escape); every component of every path the backend touches
//!   (objects, sidecars, staging) is checked not to be a symbolic link, files are opened
//!   with `O_NOFOLLOW`, and anything that is not a regular file (a FIFO, a device) is not
//!   an object. Upload ids are checked before they touch a path. The checks run before
//!   each operation: a process that can write inside the root and swaps a directory for a
//!   link at the same instant can still race them (closing that needs `openat2`).
//! - **Conditions.** `Create` uses a hard link, which fails atomically if the target exists,
//!   even against other processes. `IfMatch` and the metadata sidecar are kept consistent
//!   by key-striped locks shared by every `FsBackend` of this process on the same root;
//!   two *processes* doing `IfMatch` on one key at the same instant are not serialised.
//! - **Metadata.** Content type and user metadata live in a sidecar written *before* the
//!   data is renamed into place and keyed by the new file's ETag, so a failed write keeps
//!   the old object's metadata and a reader never pairs data with another version's.
//! - **ETags** are derived from inode, modification time (ns) and size, so every write
//!   (a new file, renamed into place) changes the tag, and files written by other tools
//!   get one too.
//!
//! # Limits
//!
//! A directory cannot also be a file: where an object `a` and keys under `a/` coexist, the
//! directory `a` holds the object as `a/%self` (moved there, ETag kept, when the first key
//! under it is written; a reader in another process at that instant may miss it once).
//! Each key segment must fit a file name: at most [`MAX_SEGMENT_LEN`] bytes
//! ([`Capabilities::max_key_segment_len`]). Listing a prefix that no storable key can have
//! returns nothing. Multipart uploads follow S3's limits by default, like the memory backend.

use std::fs;
use std::io::{self, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::checks::{
    check_attributes, check_get_conditions, check_mode, check_object_size, check_part,
    check_part_list, check_write_condition, resolve_range,
};
use super::{Backend, Capabilities, listing};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    ObjectMeta, PartInfo, PartNumber, Payload, PutMode, PutOptions, UploadId,
};

mod layout;
mod names;
mod staging;
mod walk;

use crate::transfer::pool::Buffers;
use layout::{
    Attributes, Layout, Sidecar, Stripes, TempFile, etag_of, link_refused, no_upload, open_regular,
};
pub(crate) use layout::{preallocate, write_chunks_at};

const NAME: &str = "fs";
/// The directory under the root that holds the crate's own state.
pub const STATE_DIR: &str = ".cloudstore";
/// The longest key segment the fs backend stores (file names are limited to 255 bytes;
/// the metadata sidecar adds a suffix).
pub const MAX_SEGMENT_LEN: usize = 250;
const READ_CHUNK: usize = 1 << 20;
/// Free read buffers kept while bodies are being read.
const READ_BUFFERS: usize = 32 * READ_CHUNK;
/// How often a write retries placing its file when a concurrent delete removed the
/// (empty) parent directory in between.
const PLACE_ATTEMPTS: usize = 8;

/// A backend storing objects as files under a root directory.
#[derive(Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    caps: Capabilities,
    stripes: Arc<Stripes>,
    /// Read buffers handed out as chunks of bodies come back here to be filled again,
    /// instead of each chunk faulting in fresh pages.
    buffers: Arc<Buffers>,
}

impl std::fmt::Debug for FsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsBackend")
            .field("root", &self.inner.layout.root)
            .field("fsync", &self.inner.layout.fsync)
            .finish_non_exhaustive()
    }
}

/// What a staged multipart upload records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UploadManifest {
    key: Key,
    content_type: Option<String>,
    metadata: Metadata,
    initiated_unix_ms: u64,
}

fn fs_capabilities(caps: Capabilities) -> Capabilities {
    Capabilities {
        presign: false,
        object_and_children: true,
        parallel_parts: false,
        max_key_segment_len: Some(
            caps.max_key_segment_len
                .map_or(MAX_SEGMENT_LEN, |n| n.min(MAX_SEGMENT_LEN)),
        ),
        ..caps
    }
}

impl FsBackend {
    /// A backend rooted at `root`, which is created if missing. The root is resolved to its
    /// canonical path once, here.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let cfg = |e: io::Error| {
            Error::from_io(Op::Configure, NAME, e).with_key(root.display().to_string())
        };
        fs::create_dir_all(root).map_err(cfg)?;
        let root = root.canonicalize().map_err(cfg)?;
        let layout = Layout { root, fsync: true };
        layout.prepare().map_err(cfg)?;
        Ok(FsBackend {
            inner: Arc::new(Inner {
                stripes: Stripes::for_root(&layout.root),
                layout,
                caps: fs_capabilities(Capabilities::s3_like()),
                buffers: Arc::new(Buffers::new(READ_BUFFERS)),
            }),
        })
    }

    /// Turns flushing each written file and directory to disk on or off (on by default).
    /// Off trades durability after a crash for speed; atomicity is kept either way.
    pub fn with_fsync(self, fsync: bool) -> Self {
        self.map_inner(|i| i.layout.fsync = fsync)
    }

    /// Replaces the limits (e.g. a small `min_part_size` for tests). `presign` and
    /// `object_and_children` stay off and segments stay within [`MAX_SEGMENT_LEN`]
    /// whatever is asked: a directory cannot provide more.
    pub fn with_capabilities(self, caps: Capabilities) -> Self {
        self.map_inner(|i| i.caps = fs_capabilities(caps))
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            layout: self.inner.layout.clone(),
            caps: self.inner.caps.clone(),
            stripes: self.inner.stripes.clone(),
            buffers: self.inner.buffers.clone(),
        };
        f(&mut inner);
        FsBackend {
            inner: Arc::new(inner),
        }
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Runs blocking filesystem work off the async threads.
    async fn blocking<T, F>(&self, op: Op, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    op,
                    NAME,
                    format!("blocking task failed: {e}"),
                )
                .with_key(key)
            })?
    }
}

pub(super) fn meta_from(key: &Key, m: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key: key.clone(),
        size: m.len(),
        etag: Some(etag_of(m)),
        last_modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        version: None,
        content_type: None,
        metadata: Metadata::new(),
        crc32c: None,
        source_etag: None,
    }
}

fn with_attributes(mut meta: ObjectMeta, sidecar: &Sidecar) -> ObjectMeta {
    if let Some(a) = sidecar.find(meta.etag.as_deref()) {
        meta.content_type = a.content_type.clone();
        meta.metadata = a.metadata.clone();
    }
    meta
}

fn io_error(op: Op, key: &Key) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::from_io(op, NAME, e).with_key(key.as_str())
}

/// Maps an open failure: absent or not a file is `NotFound`; a link met despite the checks
/// (a race) is `PermissionDenied`.
fn open_error(op: Op, key: &Key, root: &Path, path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => link_refused(op, key.as_str(), root, path),
        _ if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
        ) =>
        {
            Error::not_found(op, NAME, key.as_str())
        }
        _ => Error::from_io(op, NAME, e).with_key(key.as_str()),
    }
}

fn conflict(op: Op, key: &Key, why: &str) -> Error {
    Error::unsupported(
        op,
        NAME,
        format!(
            "{why}; a directory cannot also be a file (Capabilities::object_and_children is false)"
        ),
    )
    .with_key(key.as_str())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Inner {
    /// Current metadata of an object, or `None`; a directory at the path is no object.
    fn stat(&self, op: Op, key: &Key, path: &Path) -> Result<Option<ObjectMeta>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Ok(Some(meta_from(key, &m))),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
        }
    }

    /// Moves a finished temporary file into place as `key` if `mode` allows, with its
    /// content type and metadata.
    fn commit(
        &self,
        op: Op,
        key: &Key,
        tmp: TempFile,
        mode: &PutMode,
        content_type: Option<String>,
        metadata: Metadata,
    ) -> Result<ObjectMeta> {
        let layout = &self.layout;
        let path = layout.object_path(op, key)?;
        let sidecar_path = layout.sidecar_path(op, key)?;
        let io_err = io_error(op, key);
        let new = meta_from(key, &fs::symlink_metadata(&tmp.path).map_err(&io_err)?);
        let _guard = self
            .stripes
            .get(key)
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.stat(op, key, &path)?;
        check_write_condition(NAME, op, key, current.as_ref(), mode)?;

        // The sidecar first: it keeps the current version's entry, so whichever step below
        // fails, the object that stays has its own metadata.
        let old = Sidecar::read(&sidecar_path);
        let mut entries = Vec::new();
        if content_type.is_some() || !metadata.is_empty() {
            entries.push(Attributes {
                etag: new.etag.clone().unwrap_or_default(),
                content_type: content_type.clone(),
                metadata: metadata.clone(),
            });
        }
        if let Some(cur) = current.as_ref().and_then(|c| old.find(c.etag.as_deref())) {
            entries.push(cur.clone());
        }
        if !entries.is_empty() {
            self.write_sidecar(op, key, &sidecar_path, &Sidecar { entries })?;
        }

        self.place(op, key, &tmp, &path, mode, current.is_some())?;
        drop(tmp);
        if let Some(parent) = path.parent() {
            layout.sync_dir(parent);
        }
        Ok(ObjectMeta {
            content_type,
            metadata,
            ..new
        })
    }

    fn write_sidecar(&self, op: Op, key: &Key, path: &Path, sidecar: &Sidecar) -> Result<()> {
        let raw = serde_json::to_vec(sidecar).map_err(|e| {
            Error::new(ErrorKind::Other, op, NAME, "cannot encode metadata")
                .with_key(key.as_str())
                .with_source(e)
        })?;
        let t = self
            .layout
            .write_temp(op, key.as_str(), &[Bytes::from(raw)])?;
        let io_err = io_error(op, key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(&io_err)?;
        }
        fs::rename(&t.path, path).map_err(&io_err)
    }

    /// Renames (or, for `Create`, hard-links) the temporary file into place.
    fn place(
        &self,
        op: Op,
        key: &Key,
        tmp: &TempFile,
        path: &Path,
        mode: &PutMode,
        exists: bool,
    ) -> Result<()> {
        let io_err = io_error(op, key);
        for _ in 0..PLACE_ATTEMPTS {
            self.make_parent(op, key, path)?;
            if !exists && path.is_dir() {
                // An empty directory left behind can make way; one with children cannot.
                if fs::remove_dir(path).is_err() {
                    return Err(conflict(op, key, "keys exist below this key"));
                }
            }
            let placed = match mode {
                // A hard link fails if the target exists, even if another process raced us.
                PutMode::Create => fs::hard_link(&tmp.path, path),
                _ => fs::rename(&tmp.path, path),
            };
            match placed {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::already_exists(op, NAME, key.as_str()));
                }
                // A concurrent delete pruned the parent directory in between: again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.path.exists() => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(Error::new(
            ErrorKind::Other,
            op,
            NAME,
            "the parent directory kept disappearing under concurrent deletes",
        )
        .with_key(key.as_str())
        .with_retryable(true))
    }

    fn make_parent(&self, op: Op, key: &Key, path: &Path) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        match fs::create_dir_all(parent) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory
                ) =>
            {
                // An object exists at a prefix of this key: it moves into the directory
                // its name becomes, as that directory's `%self`.
                for (ancestor, at) in self.layout.ancestors(key) {
                    if fs::symlink_metadata(&at).is_ok_and(|m| m.is_file()) {
                        self.make_directory(op, key, &ancestor, &at)?;
                    }
                }
                fs::create_dir_all(parent)
                    .map_err(|e| Error::from_io(op, NAME, e).with_key(key.as_str()))
            }
            Err(e) => Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
        }
    }

    /// Turns the file of object `ancestor` at `at` into a directory holding it as
    /// `%self`, under the ancestor's lock. The move keeps the file (inode, time, size: its
    /// ETag); a reader in another process opening it at that instant may miss it.
    fn make_directory(&self, op: Op, key: &Key, ancestor: &str, at: &Path) -> Result<()> {
        let io_err = |e: io::Error| Error::from_io(op, NAME, e).with_key(key.as_str());
        let ancestor = Key::new(ancestor)?;
        let lock = self.stripes.get(&ancestor);
        // The writer holds its own key's stripe already; another is waited for, briefly,
        // so that two such moves can never wait on each other for good.
        let _guard = if std::ptr::eq(lock, self.stripes.get(key)) {
            None
        } else {
            let mut tries = 0;
            loop {
                match lock.try_write() {
                    Ok(g) => break Some(g),
                    Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) if tries < 2000 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Other,
                            op,
                            NAME,
                            "another write holds the object at a prefix of this key",
                        )
                        .with_key(key.as_str())
                        .with_retryable(true));
                    }
                }
            }
        };
        if !fs::symlink_metadata(at).is_ok_and(|m| m.is_file()) {
            return Ok(()); // Another writer moved it meanwhile.
        }
        let aside = self
            .layout
            .state("tmp")
            .join(format!("{}.self", uuid::Uuid::new_v4().simple()));
        fs::rename(at, &aside).map_err(io_err)?;
        if let Err(e) = fs::create_dir(at) {
            let _ = fs::rename(&aside, at);
            return Err(io_err(e));
        }
        if let Err(e) = fs::rename(&aside, at.join(names::SELF)) {
            let _ = fs::remove_dir(at);
            let _ = fs::rename(&aside, at);
            return Err(io_err(e));
        }
        self.layout.sync_dir(at);
        if let Some(parent) = at.parent() {
            self.layout.sync_dir(parent);
        }
        Ok(())
    }

    /// Removes now-empty directories from `path`'s parent up to (not including) `top`.
    fn prune_empty_dirs(&self, path: &Path, top: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == top || !d.starts_with(top) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    fn read_manifest(&self, op: Op, key: &Key, id: &UploadId) -> Result<(PathBuf, UploadManifest)> {
        let dir = self.layout.upload_dir(op, key, id)?;
        let file = match open_regular(&dir.join(staging::MANIFEST)) {
            Ok((f, _)) => f,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => {
                return Err(no_upload(op, key, id));
            }
            Err(e) => return Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
        };
        let manifest: UploadManifest =
            serde_json::from_reader(io::BufReader::new(file)).map_err(|e| {
                Error::new(ErrorKind::Other, op, NAME, "corrupt upload manifest")
                    .with_key(key.as_str())
                    .with_source(e)
            })?;
        if &manifest.key != key {
            return Err(no_upload(op, key, id));
        }
        Ok((dir, manifest))
    }
}

#[async_trait]
impl Backend for FsBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let caps = &self.inner.caps;
        check_mode(NAME, Op::Put, key, &caps.put_modes, &opts.mode)?;
        check_attributes(NAME, Op::Put, key, caps, opts)?;
        check_object_size(NAME, Op::Put, key, caps, data.len())?;
        let (k, opts) = (key.clone(), opts.clone());
        self.blocking(Op::Put, key.as_str(), move |inner| {
            inner.layout.object_path(Op::Put, &k)?;
            let tmp = inner
                .layout
                .write_temp(Op::Put, k.as_str(), data.chunks())?;
            inner.commit(
                Op::Put,
                &k,
                tmp,
                &opts.mode,
                opts.content_type,
                opts.metadata,
            )
        })
        .await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let k = key.clone();
        let (file, meta) = self
            .blocking(Op::Get, key.as_str(), move |inner| {
                let layout = &inner.layout;
                let path = layout.object_path(Op::Get, &k)?;
                let sidecar = layout.sidecar_path(Op::Get, &k)?;
                let _guard = inner
                    .stripes
                    .get(&k)
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let (file, m) = open_regular(&path)
                    .map_err(|e| open_error(Op::Get, &k, &layout.root, &path, e))?;
                let meta = with_attributes(meta_from(&k, &m), &Sidecar::read(&sidecar));
                Ok((file, meta))
            })
            .await?;
        check_get_conditions(NAME, key, opts, &meta)?;
        let range = resolve_range(NAME, key, opts, meta.size)?;
        let file = Arc::new(file);
        let key_s = key.as_str().to_string();
        let buffers = self.inner.buffers.clone();
        let lease = buffers.lease();
        let body = futures::stream::try_unfold(range.clone(), move |r| {
            let file = file.clone();
            let key_s = key_s.clone();
            let buffers = buffers.clone();
            // Named here so the closure owns the lease: buffers stay pooled while the body
            // is read.
            let _lease = &lease;
            async move {
                if r.start >= r.end {
                    return Ok(None);
                }
                let len = ((r.end - r.start) as usize).min(READ_CHUNK);
                let start = r.start;
                let chunk = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                    // Read into fresh capacity: no zeroing of a buffer about to be filled.
                    let mut f = &*file;
                    f.seek(io::SeekFrom::Start(start))?;
                    let mut buf = buffers.take(len);
                    buf.read_from(f, len)?;
                    if buf.len() < len {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file was truncated while being read",
                        ));
                    }
                    Ok(buffers.freeze(buf))
                })
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Other, Op::Get, NAME, e.to_string())
                        .with_key(key_s.as_str())
                })?
                .map_err(|e| Error::from_io(Op::Get, NAME, e).with_key(key_s))?;
                Ok(Some((chunk, r.start + len as u64..r.end)))
            }
        })
        .boxed();
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let k = key.clone();
        self.blocking(Op::Head, key.as_str(), move |inner| {
            let path = inner.layout.object_path(Op::Head, &k)?;
            let sidecar = inner.layout.sidecar_path(Op::Head, &k)?;
            let _guard = inner
                .stripes
                .get(&k)
                .read()
                .unwrap_or_else(|p| p.into_inner());
            match inner.stat(Op::Head, &k, &path)? {
                Some(meta) => Ok(with_attributes(meta, &Sidecar::read(&sidecar))),
                None => Err(Error::not_found(Op::Head, NAME, k.as_str())),
            }
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let k = key.clone();
        self.blocking(Op::Delete, key.as_str(), move |inner| {
            let layout = &inner.layout;
            let path = layout.object_path(Op::Delete, &k)?;
            let sidecar = layout.sidecar_path(Op::Delete, &k)?;
            let _guard = inner
                .stripes
                .get(&k)
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if inner.stat(Op::Delete, &k, &path)?.is_none() {
                return Ok(());
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::from_io(Op::Delete, NAME, e).with_key(k.as_str())),
            }
            let _ = fs::remove_file(&sidecar);
            if let Some(parent) = path.parent() {
                layout.sync_dir(parent);
            }
            inner.prune_empty_dirs(&path, &layout.root);
            inner.prune_empty_dirs(&sidecar, &layout.state("meta"));
            Ok(())
        })
        .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let req = req.clone();
        let prefix = req.prefix.clone();
        self.blocking(Op::List, &prefix, move |inner| {
            // A prefix no storable key can have lists nothing, as on any other backend.
            if let Some((dirs, _)) = req.prefix.rsplit_once('/') {
                let Some(dir) = inner.layout.dir_path(dirs) else {
                    return Ok(ListPage::default());
                };
                inner.layout.refuse_symlinks(Op::List, &req.prefix, &dir)?;
            }
            let mut walk = walk::Walk::new(
                &inner.layout,
                &req.prefix,
                req.resume_after(),
                req.delimiter,
                // The page takes one object past its limit to know whether more follow.
                listing::limit(&req, inner.caps.max_list_page) + 1,
            );
            let page = listing::page(&mut walk, &req, inner.caps.max_list_page);
            match walk.error.take() {
                Some(e) => Err(Error::from_io(Op::List, NAME, e).with_key(req.prefix.clone())),
                None => Ok(page),
            }
        })
        .await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        super::checks::check_copy_mode(NAME, to, &self.inner.caps, &mode)?;
        let (from, to) = (from.clone(), to.clone());
        let shown = to.as_str().to_string();
        self.blocking(Op::Copy, &shown, move |inner| {
            let layout = &inner.layout;
            let src = layout.object_path(Op::Copy, &from)?;
            let src_sidecar = layout.sidecar_path(Op::Copy, &from)?;
            layout.object_path(Op::Copy, &to)?;
            let tmp = TempFile::new(layout.state("tmp"));
            let attrs = {
                let _guard = inner
                    .stripes
                    .get(&from)
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let (mut file, m) = open_regular(&src)
                    .map_err(|e| open_error(Op::Copy, &from, &layout.root, &src, e))?;
                let meta = with_attributes(meta_from(&from, &m), &Sidecar::read(&src_sidecar));
                let io_err = io_error(Op::Copy, &to);
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp.path)
                    .map_err(&io_err)?;
                io::copy(&mut file, &mut out).map_err(&io_err)?;
                if layout.fsync {
                    out.sync_all().map_err(&io_err)?;
                }
                (meta.content_type, meta.metadata)
            };
            let mode = mode.as_put_mode();
            inner.commit(Op::Copy, &to, tmp, &mode, attrs.0, attrs.1)
        })
        .await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let op = Op::CreateMultipart;
        check_attributes(NAME, op, key, &self.inner.caps, opts)?;
        let (k, opts) = (key.clone(), opts.clone());
        self.blocking(op, key.as_str(), move |inner| {
            let layout = &inner.layout;
            layout.object_path(op, &k)?;
            let id = UploadId(uuid::Uuid::new_v4().simple().to_string());
            let dir = layout.upload_dir(op, &k, &id)?;
            let manifest = UploadManifest {
                key: k.clone(),
                content_type: opts.content_type,
                metadata: opts.metadata,
                initiated_unix_ms: unix_ms(SystemTime::now()),
            };
            let raw = serde_json::to_vec(&manifest).map_err(|e| {
                Error::new(ErrorKind::Other, op, NAME, "cannot encode upload manifest")
                    .with_key(k.as_str())
                    .with_source(e)
            })?;
            let tmp = layout.write_temp(op, k.as_str(), &[Bytes::from(raw)])?;
            let io_err = io_error(op, &k);
            fs::create_dir(&dir).map_err(&io_err)?;
            staging::prepare(&dir).map_err(&io_err)?;
            fs::rename(&tmp.path, dir.join(staging::MANIFEST)).map_err(&io_err)?;
            Ok(id)
        })
        .await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let op = Op::PutPart;
        check_part(NAME, key, &self.inner.caps, part, data.len())?;
        let (k, upload) = (key.clone(), upload.clone());
        self.blocking(op, key.as_str(), move |inner| {
            let (dir, _) = inner.read_manifest(op, &k, &upload)?;
            let gone = || no_upload(op, &k, &upload);
            let max = inner.caps.max_object_size.unwrap_or(u64::MAX);
            let layout = &inner.layout;
            match staging::write_in_place(layout, &k, &dir, part, &data, max, gone)? {
                Some(info) => Ok(info),
                None => staging::write_staged(layout, &k, &dir, part, &data, gone),
            }
        })
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
        super::checks::check_completion_metadata(NAME, key, &self.inner.caps, extra_metadata)?;
        let caps = &self.inner.caps;
        let op = Op::CompleteMultipart;
        check_mode(NAME, op, key, &caps.multipart_modes, mode)?;
        check_part_list(NAME, key, caps, parts)?;
        let total: u64 = parts.iter().map(|p| p.size).sum();
        check_object_size(NAME, op, key, caps, total)?;
        let (k, upload, parts, mode) = (key.clone(), upload.clone(), parts.to_vec(), mode.clone());
        let extra = extra_metadata.clone();
        self.blocking(op, key.as_str(), move |inner| {
            let (dir, manifest) = inner.read_manifest(op, &k, &upload)?;
            let assembled = staging::assemble(&inner.layout, &k, &dir, &parts)?;
            let meta = {
                let mut metadata = manifest.metadata;
                metadata.extend(extra);
                inner.commit(
                    op,
                    &k,
                    assembled.file,
                    &mode,
                    manifest.content_type,
                    metadata,
                )?
            };
            staging::remove(&dir);
            Ok(meta)
        })
        .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let op = Op::AbortMultipart;
        let (k, upload) = (key.clone(), upload.clone());
        self.blocking(op, key.as_str(), move |inner| {
            match inner.read_manifest(op, &k, &upload) {
                Ok((dir, _)) => match fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(Error::from_io(op, NAME, e).with_key(k.as_str()))
                    }
                    _ => Ok(()),
                },
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let op = Op::ListMultipart;
        if !self.inner.caps.multipart_listing {
            return Err(Error::unsupported(
                op,
                NAME,
                "multipart listing is turned off in this backend's capabilities",
            ));
        }
        let prefix = prefix.to_string();
        self.blocking(op, &prefix.clone(), move |inner| {
            let mut out = Vec::new();
            let uploads = inner.layout.state("uploads");
            let entries = fs::read_dir(&uploads).map_err(|e| Error::from_io(op, NAME, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::from_io(op, NAME, e))?;
                let Ok((f, _)) = open_regular(&entry.path().join(staging::MANIFEST)) else {
                    continue;
                };
                let Ok(m) = serde_json::from_reader::<_, UploadManifest>(io::BufReader::new(f))
                else {
                    continue;
                };
                if m.key.as_str().starts_with(&prefix) {
                    out.push(MultipartUploadInfo {
                        key: m.key,
                        upload_id: UploadId(entry.file_name().to_string_lossy().into_owned()),
                        initiated: Some(
                            SystemTime::UNIX_EPOCH + Duration::from_millis(m.initiated_unix_ms),
                        ),
                    });
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}
