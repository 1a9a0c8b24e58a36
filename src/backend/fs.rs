//! A backend over a local directory: the embedded default.
//!
//! # Layout
//!
//! Object `a/b/c.txt` is the plain file `<root>/a/b/c.txt`, so the directory can be read
//! with ordinary tools and files dropped into it become objects. The crate keeps its own
//! state under `<root>/.cloudstore/`: temporary files, multipart staging, and a sidecar per
//! object holding content type and user metadata. Keys whose first segment is `.cloudstore`
//! are therefore refused (`InvalidInput`) and never listed.
//!
//! # Guarantees
//!
//! - **Atomic writes.** Every write goes to a temporary file under `.cloudstore/tmp/`, is
//!   flushed (`fsync`, unless [`FsBackend::with_fsync`] turns it off) and renamed into
//!   place: a reader sees the old object or the new one, never a part of either. A reader
//!   that already opened the old object keeps reading it whole.
//! - **Confinement.** A key cannot name anything outside the root: key validation refuses
//!   `..`, `.`, absolute paths and NUL; every path component is checked to be a real
//!   directory or file, never a symbolic link (a link inside the root that points out is
//!   refused with `PermissionDenied`); upload ids are checked before they touch a path.
//! - **Conditions.** `Create` uses a hard link, which fails atomically if the target exists,
//!   even against other processes. `IfMatch` and the metadata sidecar are made consistent by
//!   a lock per key stripe inside this process; two processes doing `IfMatch` on the same
//!   key at the same instant are not serialised.
//! - **ETags** are derived from inode, modification time (ns) and size, so every write
//!   (a new inode by rename) changes the tag, and files written by other tools get one too.
//!
//! # Limits
//!
//! A directory cannot also be a file, so an object `a` and an object `a/b` cannot coexist:
//! the second write answers `Unsupported` ([`Capabilities::object_and_children`] is false).
//! Each key segment must fit a file name (at most 250 bytes). Multipart uploads follow
//! S3's limits by default, like the memory backend.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::checks::{
    check_get_conditions, check_mode, check_part, check_part_list, check_write_condition,
    resolve_range,
};
use super::{Backend, Capabilities, listing};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    ObjectMeta, PartInfo, PartNumber, Payload, PutMode, PutOptions, UploadId,
};

const NAME: &str = "fs";
/// The directory under the root that holds the crate's own state.
pub const STATE_DIR: &str = ".cloudstore";
/// The longest key segment the fs backend stores (file names are limited to 255 bytes;
/// the metadata sidecar adds a suffix).
pub const MAX_SEGMENT_LEN: usize = 250;
const STRIPES: usize = 64;
const READ_CHUNK: usize = 1 << 20;

/// A backend storing objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    caps: Capabilities,
    fsync: bool,
    stripes: Vec<RwLock<()>>,
}

/// What the sidecar of an object records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Sidecar {
    /// The ETag of the data file this sidecar belongs to; a sidecar whose tag differs from
    /// the file's is stale and ignored.
    etag: String,
    content_type: Option<String>,
    metadata: Metadata,
}

/// What a staged multipart upload records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UploadManifest {
    key: Key,
    content_type: Option<String>,
    metadata: Metadata,
    initiated_unix_ms: u64,
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
        for sub in ["tmp", "meta", "uploads"] {
            fs::create_dir_all(root.join(STATE_DIR).join(sub)).map_err(cfg)?;
        }
        Ok(FsBackend {
            inner: Arc::new(Inner {
                root,
                caps: Capabilities {
                    presign: false,
                    object_and_children: false,
                    ..Capabilities::s3_like()
                },
                fsync: true,
                stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            }),
        })
    }

    /// Turns flushing each written file to disk on or off (on by default). Off trades
    /// durability after a crash for speed; atomicity is kept either way.
    pub fn with_fsync(self, fsync: bool) -> Self {
        self.map_inner(|i| i.fsync = fsync)
    }

    /// Replaces the limits (e.g. a small `min_part_size` for tests). `presign` and
    /// `object_and_children` stay off whatever is asked: a directory cannot provide them.
    pub fn with_capabilities(self, caps: Capabilities) -> Self {
        self.map_inner(|i| {
            i.caps = Capabilities {
                presign: false,
                object_and_children: false,
                ..caps
            }
        })
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            root: shared.root.clone(),
            caps: shared.caps.clone(),
            fsync: shared.fsync,
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        });
        f(&mut inner);
        FsBackend {
            inner: Arc::new(inner),
        }
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
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
                    Op::Get,
                    NAME,
                    format!("blocking task failed: {e}"),
                )
            })?
    }
}

impl Inner {
    fn state(&self, sub: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(sub)
    }

    fn stripe(&self, key: &Key) -> &RwLock<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key.as_str());
        &self.stripes[(h as usize) % STRIPES]
    }

    /// The path of an object's file, after checking the key fits this backend and that no
    /// existing component of the path is a symbolic link.
    fn object_path(&self, op: Op, key: &Key) -> Result<PathBuf> {
        let mut path = self.root.clone();
        for (i, seg) in key.segments().enumerate() {
            if i == 0 && seg == STATE_DIR {
                return Err(Error::invalid_input(
                    op,
                    NAME,
                    format!("keys under '{STATE_DIR}/' are reserved by the fs backend"),
                )
                .with_key(key.as_str()));
            }
            if seg.len() > MAX_SEGMENT_LEN {
                return Err(Error::invalid_input(
                    op,
                    NAME,
                    format!(
                        "segment of {} bytes: the fs backend stores segments of at most {MAX_SEGMENT_LEN} bytes",
                        seg.len()
                    ),
                )
                .with_key(key.as_str()));
            }
            path.push(seg);
        }
        self.refuse_symlinks(op, key, &path)?;
        Ok(path)
    }

    /// Walks from the root to `path` and refuses any component that is a symbolic link.
    fn refuse_symlinks(&self, op: Op, key: &Key, path: &Path) -> Result<()> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            Error::new(
                ErrorKind::PermissionDenied,
                op,
                NAME,
                "path outside the root",
            )
            .with_key(key.as_str())
        })?;
        let mut cur = self.root.clone();
        for comp in rel.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        op,
                        NAME,
                        format!(
                            "'{}' is a symbolic link; the fs backend never follows links",
                            cur.strip_prefix(&self.root).unwrap_or(&cur).display()
                        ),
                    )
                    .with_key(key.as_str()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(()),
                Err(e) => return Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
            }
        }
        Ok(())
    }

    /// The sidecar path: every directory segment gets `.d`, the file `.m`, so sidecars of
    /// `a` and `a.m/x` never collide.
    fn sidecar_path(&self, key: &Key) -> PathBuf {
        let mut p = self.state("meta");
        let segs: Vec<&str> = key.segments().collect();
        for (i, s) in segs.iter().enumerate() {
            if i + 1 == segs.len() {
                p.push(format!("{s}.m"));
            } else {
                p.push(format!("{s}.d"));
            }
        }
        p
    }

    fn upload_dir(&self, op: Op, key: &Key, id: &UploadId) -> Result<PathBuf> {
        // Ids are ours: 32 lowercase hex digits. Anything else cannot name an upload, and
        // must never reach a path.
        let valid = id.0.len() == 32
            && id
                .0
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !valid {
            return Err(no_upload(op, key, id));
        }
        Ok(self.state("uploads").join(&id.0))
    }

    /// Writes `chunks` to a new temporary file and returns its guard.
    fn write_temp(&self, op: Op, key: &Key, chunks: &[Bytes]) -> Result<TempFile> {
        let tmp = TempFile::new(self.state("tmp"));
        let io_err = |e| Error::from_io(op, NAME, e).with_key(key.as_str());
        let mut f = File::create(&tmp.path).map_err(io_err)?;
        for c in chunks {
            f.write_all(c).map_err(io_err)?;
        }
        if self.fsync {
            f.sync_all().map_err(io_err)?;
        }
        Ok(tmp)
    }

    /// Current metadata of an object, or `None`; a directory at the path is no object.
    fn stat(&self, op: Op, key: &Key, path: &Path) -> Result<Option<ObjectMeta>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Ok(Some(self.meta_from(key, &m))),
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

    fn meta_from(&self, key: &Key, m: &fs::Metadata) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size: m.len(),
            etag: Some(etag_of(m)),
            last_modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            version: None,
            content_type: None,
            metadata: Metadata::new(),
        }
    }

    /// Adds content type and user metadata from the sidecar, if it belongs to this file.
    fn with_sidecar(&self, mut meta: ObjectMeta) -> ObjectMeta {
        if let Ok(raw) = fs::read(self.sidecar_path(&meta.key))
            && let Ok(sc) = serde_json::from_slice::<Sidecar>(&raw)
            && Some(&sc.etag) == meta.etag.as_ref()
        {
            meta.content_type = sc.content_type;
            meta.metadata = sc.metadata;
        }
        meta
    }

    fn read_sidecar_attrs(&self, meta: &ObjectMeta) -> (Option<String>, Metadata) {
        let m = self.with_sidecar(meta.clone());
        (m.content_type, m.metadata)
    }

    /// Moves a finished temporary file into place as `key`, if `mode` allows, and records
    /// its content type and metadata.
    fn commit(
        &self,
        op: Op,
        key: &Key,
        tmp: TempFile,
        mode: &PutMode,
        content_type: Option<String>,
        metadata: Metadata,
    ) -> Result<ObjectMeta> {
        let path = self.object_path(op, key)?;
        let io_err = |e: io::Error| Error::from_io(op, NAME, e).with_key(key.as_str());
        let tmp_meta = fs::symlink_metadata(&tmp.path).map_err(io_err)?;
        let _guard = self.stripe(key).write().unwrap_or_else(|p| p.into_inner());
        let current = self.stat(op, key, &path)?;
        check_write_condition(NAME, op, key, current.as_ref(), mode)?;
        self.make_parent(op, key, &path)?;
        if current.is_none() && path.is_dir() {
            // An empty directory left behind can make way; one with children cannot.
            if fs::remove_dir(&path).is_err() {
                return Err(conflict(op, key, "keys exist below this key"));
            }
        }
        match mode {
            // A hard link fails if the target exists, even if another process raced us.
            PutMode::Create => match fs::hard_link(&tmp.path, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        op,
                        NAME,
                        "an object already exists at this key",
                    )
                    .with_key(key.as_str()));
                }
                Err(e) => return Err(io_err(e)),
            },
            _ => fs::rename(&tmp.path, &path).map_err(io_err)?,
        }
        drop(tmp);
        let mut meta = self.meta_from(key, &tmp_meta);
        let sidecar = self.sidecar_path(key);
        if content_type.is_some() || !metadata.is_empty() {
            let sc = Sidecar {
                etag: meta.etag.clone().unwrap_or_default(),
                content_type: content_type.clone(),
                metadata: metadata.clone(),
            };
            let raw = serde_json::to_vec(&sc).map_err(|e| {
                Error::new(ErrorKind::Other, op, NAME, "cannot encode metadata").with_source(e)
            })?;
            let t = self.write_temp(op, key, &[Bytes::from(raw)])?;
            if let Some(dir) = sidecar.parent() {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
            fs::rename(&t.path, &sidecar).map_err(io_err)?;
        } else {
            let _ = fs::remove_file(&sidecar);
        }
        meta.content_type = content_type;
        meta.metadata = metadata;
        Ok(meta)
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
                Err(conflict(
                    op,
                    key,
                    "an object exists at a prefix of this key",
                ))
            }
            Err(e) => Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
        }
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
        let dir = self.upload_dir(op, key, id)?;
        let raw = match fs::read(dir.join("upload.json")) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_upload(op, key, id)),
            Err(e) => return Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
        };
        let manifest: UploadManifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::new(ErrorKind::Other, op, NAME, "corrupt upload manifest")
                .with_key(key.as_str())
                .with_source(e)
        })?;
        if &manifest.key != key {
            return Err(no_upload(op, key, id));
        }
        Ok((dir, manifest))
    }

    /// Walks `dir` (relative key prefix `rel`) collecting every regular file as an object.
    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        prefix: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(path = %entry.path().display(), "fs: skipping a non-UTF-8 file name");
                continue;
            };
            if rel.is_empty() && name == STATE_DIR {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Prune subtrees that cannot hold a key with the prefix.
            let cmp_len = key.len().min(prefix.len());
            if key.as_bytes()[..cmp_len] != prefix.as_bytes()[..cmp_len] {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.walk(&entry.path(), &key, prefix, out)?;
            } else if ft.is_file() && key.starts_with(prefix) {
                match Key::new(key) {
                    Ok(k) => {
                        let m = entry.metadata()?;
                        out.push(self.meta_from(&k, &m));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fs: skipping a file whose name is not a valid key")
                    }
                }
            }
        }
        Ok(())
    }
}

fn etag_of(m: &fs::Metadata) -> String {
    let mtime_ns = (m.mtime() as i128) * 1_000_000_000 + m.mtime_nsec() as i128;
    format!("\"{:x}-{:x}-{:x}\"", m.ino(), mtime_ns, m.len())
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

fn no_upload(op: Op, key: &Key, id: &UploadId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        op,
        NAME,
        format!("no multipart upload {id:?} for this key"),
    )
    .with_key(key.as_str())
}

/// A temporary file removed on drop unless it was moved into place.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(dir: PathBuf) -> Self {
        TempFile {
            path: dir.join(uuid::Uuid::new_v4().simple().to_string()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a rename the path no longer exists; after a hard link it must go.
        let _ = fs::remove_file(&self.path);
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        check_mode(NAME, Op::Put, key, &self.inner.caps.put_modes, &opts.mode)?;
        let key = key.clone();
        let opts = opts.clone();
        self.blocking(move |inner| {
            inner.object_path(Op::Put, &key)?;
            let tmp = inner.write_temp(Op::Put, &key, data.chunks())?;
            inner.commit(
                Op::Put,
                &key,
                tmp,
                &opts.mode,
                opts.content_type,
                opts.metadata,
            )
        })
        .await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let key2 = key.clone();
        let (file, meta) = self
            .blocking(move |inner| {
                let key = key2;
                let path = inner.object_path(Op::Get, &key)?;
                let _guard = inner.stripe(&key).read().unwrap_or_else(|p| p.into_inner());
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound
                                | io::ErrorKind::NotADirectory
                                | io::ErrorKind::IsADirectory
                        ) =>
                    {
                        return Err(Error::not_found(Op::Get, NAME, key.as_str()));
                    }
                    Err(e) => return Err(Error::from_io(Op::Get, NAME, e).with_key(key.as_str())),
                };
                let m = file
                    .metadata()
                    .map_err(|e| Error::from_io(Op::Get, NAME, e))?;
                if !m.is_file() {
                    return Err(Error::not_found(Op::Get, NAME, key.as_str()));
                }
                let meta = inner.with_sidecar(inner.meta_from(&key, &m));
                Ok((file, meta))
            })
            .await?;
        check_get_conditions(NAME, key, opts, &meta)?;
        let range = resolve_range(NAME, key, opts, meta.size)?;
        let file = Arc::new(file);
        let key_s = key.as_str().to_string();
        let body = futures::stream::try_unfold(range.clone(), move |r| {
            let file = file.clone();
            let key_s = key_s.clone();
            async move {
                if r.start >= r.end {
                    return Ok(None);
                }
                let len = ((r.end - r.start) as usize).min(READ_CHUNK);
                let start = r.start;
                let chunk = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                    let mut buf = BytesMut::zeroed(len);
                    file.read_exact_at(&mut buf, start)?;
                    Ok(buf.freeze())
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Other, Op::Get, NAME, e.to_string()))?
                .map_err(|e| Error::from_io(Op::Get, NAME, e).with_key(key_s))?;
                Ok(Some((chunk, r.start + len as u64..r.end)))
            }
        })
        .boxed();
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let key = key.clone();
        self.blocking(move |inner| {
            let path = inner.object_path(Op::Head, &key)?;
            let _guard = inner.stripe(&key).read().unwrap_or_else(|p| p.into_inner());
            match inner.stat(Op::Head, &key, &path)? {
                Some(meta) => Ok(inner.with_sidecar(meta)),
                None => Err(Error::not_found(Op::Head, NAME, key.as_str())),
            }
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let key = key.clone();
        self.blocking(move |inner| {
            let path = inner.object_path(Op::Delete, &key)?;
            let _guard = inner
                .stripe(&key)
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if inner.stat(Op::Delete, &key, &path)?.is_none() {
                return Ok(());
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::from_io(Op::Delete, NAME, e).with_key(key.as_str())),
            }
            let sidecar = inner.sidecar_path(&key);
            let _ = fs::remove_file(&sidecar);
            inner.prune_empty_dirs(&path, &inner.root);
            inner.prune_empty_dirs(&sidecar, &inner.state("meta"));
            Ok(())
        })
        .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let req = req.clone();
        self.blocking(move |inner| {
            let list_err = |e| Error::from_io(Op::List, NAME, e).with_key(req.prefix.clone());
            // Start the walk at the deepest directory the prefix names completely.
            let (dir_rel, start) = match req.prefix.rfind('/') {
                Some(i) => {
                    let d = &req.prefix[..i];
                    let dkey = Key::new(d).map_err(|e| e.with_op(Op::List))?;
                    (d.to_string(), inner.object_path(Op::List, &dkey)?)
                }
                None => (String::new(), inner.root.clone()),
            };
            let mut objects = Vec::new();
            inner
                .walk(&start, &dir_rel, &req.prefix, &mut objects)
                .map_err(list_err)?;
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(listing::page(objects, &req, inner.caps.max_list_page))
        })
        .await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |inner| {
            let src = inner.object_path(Op::Copy, &from)?;
            inner.object_path(Op::Copy, &to)?;
            let tmp = TempFile::new(inner.state("tmp"));
            let (ct, md) = {
                let _guard = inner
                    .stripe(&from)
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let Some(meta) = inner.stat(Op::Copy, &from, &src)? else {
                    return Err(Error::not_found(Op::Copy, NAME, from.as_str()));
                };
                fs::copy(&src, &tmp.path)
                    .map_err(|e| Error::from_io(Op::Copy, NAME, e).with_key(from.as_str()))?;
                inner.read_sidecar_attrs(&meta)
            };
            if inner.fsync {
                File::open(&tmp.path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::from_io(Op::Copy, NAME, e).with_key(to.as_str()))?;
            }
            let mode = match mode {
                CopyMode::Overwrite => PutMode::Overwrite,
                CopyMode::Create => PutMode::Create,
            };
            inner.commit(Op::Copy, &to, tmp, &mode, ct, md)
        })
        .await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let key = key.clone();
        let opts = opts.clone();
        self.blocking(move |inner| {
            let op = Op::CreateMultipart;
            inner.object_path(op, &key)?;
            let id = UploadId(uuid::Uuid::new_v4().simple().to_string());
            let dir = inner.upload_dir(op, &key, &id)?;
            let manifest = UploadManifest {
                key: key.clone(),
                content_type: opts.content_type,
                metadata: opts.metadata,
                initiated_unix_ms: unix_ms(SystemTime::now()),
            };
            let raw = serde_json::to_vec(&manifest).map_err(|e| {
                Error::new(ErrorKind::Other, op, NAME, "cannot encode upload manifest")
                    .with_source(e)
            })?;
            let tmp = inner.write_temp(op, &key, &[Bytes::from(raw)])?;
            let io_err = |e| Error::from_io(op, NAME, e).with_key(key.as_str());
            fs::create_dir_all(&dir).map_err(io_err)?;
            fs::rename(&tmp.path, dir.join("upload.json")).map_err(io_err)?;
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
        check_part(NAME, key, &self.inner.caps, part, data.len())?;
        let (key, upload) = (key.clone(), upload.clone());
        self.blocking(move |inner| {
            let op = Op::PutPart;
            let (dir, _) = inner.read_manifest(op, &key, &upload)?;
            let tmp = inner.write_temp(op, &key, data.chunks())?;
            let m = fs::symlink_metadata(&tmp.path).map_err(|e| Error::from_io(op, NAME, e))?;
            let dest = dir.join(format!("part-{:05}", part.get()));
            match fs::rename(&tmp.path, &dest) {
                Ok(()) => {}
                // Aborted meanwhile: the staging directory is gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(no_upload(op, &key, &upload));
                }
                Err(e) => return Err(Error::from_io(op, NAME, e).with_key(key.as_str())),
            }
            Ok(PartInfo {
                number: part,
                etag: etag_of(&m),
                size: m.len(),
            })
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        let caps = &self.inner.caps;
        let op = Op::CompleteMultipart;
        check_mode(NAME, op, key, &caps.multipart_modes, mode)?;
        check_part_list(NAME, key, caps, parts)?;
        let (key, upload, parts, mode) =
            (key.clone(), upload.clone(), parts.to_vec(), mode.clone());
        self.blocking(move |inner| {
            let (dir, manifest) = inner.read_manifest(op, &key, &upload)?;
            let io_err = |e| Error::from_io(op, NAME, e).with_key(key.as_str());
            let tmp = TempFile::new(inner.state("tmp"));
            let mut out = File::create(&tmp.path).map_err(io_err)?;
            for p in &parts {
                let path = dir.join(format!("part-{:05}", p.number.get()));
                let mut f = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(Error::invalid_input(
                            op,
                            NAME,
                            format!("part {} was never uploaded", p.number),
                        )
                        .with_key(key.as_str()));
                    }
                    Err(e) => return Err(io_err(e)),
                };
                let m = f.metadata().map_err(io_err)?;
                if etag_of(&m) != p.etag || m.len() != p.size {
                    return Err(Error::invalid_input(
                        op,
                        NAME,
                        format!(
                            "part {} does not match the uploaded part (etag or size differ)",
                            p.number
                        ),
                    )
                    .with_key(key.as_str()));
                }
                io::copy(&mut f, &mut out).map_err(io_err)?;
            }
            if inner.fsync {
                out.sync_all().map_err(io_err)?;
            }
            drop(out);
            let meta = inner.commit(
                op,
                &key,
                tmp,
                &mode,
                manifest.content_type,
                manifest.metadata,
            )?;
            let _ = fs::remove_dir_all(&dir);
            Ok(meta)
        })
        .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let (key, upload) = (key.clone(), upload.clone());
        self.blocking(move |inner| {
            let op = Op::AbortMultipart;
            match inner.read_manifest(op, &key, &upload) {
                Ok((dir, _)) => fs::remove_dir_all(&dir).or_else(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(Error::from_io(op, NAME, e).with_key(key.as_str()))
                    }
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        if !self.inner.caps.multipart_listing {
            return Err(Error::unsupported(
                Op::ListMultipart,
                NAME,
                "multipart listing is turned off in this backend's capabilities",
            ));
        }
        let prefix = prefix.to_string();
        self.blocking(move |inner| {
            let op = Op::ListMultipart;
            let mut out = Vec::new();
            let entries =
                fs::read_dir(inner.state("uploads")).map_err(|e| Error::from_io(op, NAME, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::from_io(op, NAME, e))?;
                let Ok(raw) = fs::read(entry.path().join("upload.json")) else {
                    continue;
                };
                let Ok(m) = serde_json::from_slice::<UploadManifest>(&raw) else {
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
            out.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
            Ok(out)
        })
        .await
    }
}
