//! Where things live under the root, and the checks that keep every access inside it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use bytes::Bytes;

use super::{NAME, STATE_DIR};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{Metadata, UploadId};

const STRIPES: usize = 64;

/// Key-striped locks shared by every `FsBackend` of this process on the same root, so that
/// two handles opened on one directory still serialise conditional writes.
pub(super) struct Stripes(Vec<RwLock<()>>);

impl Stripes {
    pub(super) fn for_root(root: &Path) -> Arc<Stripes> {
        static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Stripes>>>> = OnceLock::new();
        let mut reg = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = reg.get(root).and_then(Weak::upgrade) {
            return s;
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(Stripes((0..STRIPES).map(|_| RwLock::new(())).collect()));
        reg.insert(root.to_path_buf(), Arc::downgrade(&s));
        s
    }

    pub(super) fn get(&self, key: &Key) -> &RwLock<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key.as_str());
        &self.0[(h as usize) % STRIPES]
    }
}

/// The paths of one root.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) root: PathBuf,
    pub(super) fsync: bool,
}

impl Layout {
    pub(super) fn state(&self, sub: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(sub)
    }

    /// Creates the state directories and checks that each is a real directory, not a link
    /// that would carry temporary files or metadata out of the root.
    pub(super) fn prepare(&self) -> io::Result<()> {
        let top = self.root.join(STATE_DIR);
        for dir in [
            top.clone(),
            self.state("tmp"),
            self.state("meta"),
            self.state("uploads"),
        ] {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let m = fs::symlink_metadata(&dir)?;
            if !m.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is not a plain directory", dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// The path of an object's file: the key must fit this backend, and no existing
    /// component of the path may be a symbolic link. Where keys under `key/` made the
    /// key's own path a directory, the object is that directory's [`super::names::SELF`].
    pub(super) fn object_path(&self, op: Op, key: &Key) -> Result<PathBuf> {
        let names = super::names::encode_all(key.as_str())
            .map_err(|problem| Error::invalid_input(op, NAME, problem).with_key(key.as_str()))?;
        let mut path = self.root.clone();
        path.extend(names.iter().map(|n| n.as_ref()));
        self.refuse_symlinks(op, key.as_str(), &path)?;
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            path.push(super::names::SELF);
        }
        Ok(path)
    }

    /// The paths of `key`'s ancestors (`a` and `a/b` for `a/b/c`), nearest last, with
    /// their keys.
    pub(super) fn ancestors(&self, key: &Key) -> Vec<(String, PathBuf)> {
        let Ok(names) = super::names::encode_all(key.as_str()) else {
            return Vec::new();
        };
        let segments: Vec<&str> = key.segments().collect();
        let mut path = self.root.clone();
        let mut out = Vec::new();
        for i in 0..names.len().saturating_sub(1) {
            path.push(names[i].as_ref());
            out.push((segments[..=i].join("/"), path.clone()));
        }
        out
    }

    /// The directory holding the keys that start with `dirs/`, or `None` if no storable
    /// key does.
    pub(super) fn dir_path(&self, dirs: &str) -> Option<PathBuf> {
        let names = super::names::encode_all(dirs).ok()?;
        let mut path = self.root.clone();
        path.extend(names.iter().map(|n| n.as_ref()));
        Some(path)
    }

    /// Walks from the root to `path` and refuses any component that is a symbolic link.
    pub(super) fn refuse_symlinks(&self, op: Op, key: &str, path: &Path) -> Result<()> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            Error::new(
                ErrorKind::PermissionDenied,
                op,
                NAME,
                "path outside the root",
            )
            .with_key(key)
        })?;
        let mut cur = self.root.clone();
        for comp in rel.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(link_refused(op, key, &self.root, &cur));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(Error::from_io(op, NAME, e).with_key(key)),
            }
        }
        Ok(())
    }

    /// The sidecar path: directory segments get `.d`, the last one `.m`, so the sidecars of
    /// `a` and `a.m/x` never collide.
    pub(super) fn sidecar_path(&self, op: Op, key: &Key) -> Result<PathBuf> {
        let mut p = self.state("meta");
        let segs = super::names::encode_all(key.as_str())
            .map_err(|problem| Error::invalid_input(op, NAME, problem).with_key(key.as_str()))?;
        for (i, s) in segs.iter().enumerate() {
            let suffix = if i + 1 == segs.len() { "m" } else { "d" };
            p.push(format!("{s}.{suffix}"));
        }
        self.refuse_symlinks(op, key.as_str(), &p)?;
        Ok(p)
    }

    /// The staging directory of an upload. Ids are ours (32 lowercase hex digits); anything
    /// else cannot name an upload and never reaches a path.
    pub(super) fn upload_dir(&self, op: Op, key: &Key, id: &UploadId) -> Result<PathBuf> {
        let valid =
            id.0.len() == 32 && id.0.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(no_upload(op, key, id));
        }
        let dir = self.state("uploads").join(&id.0);
        self.refuse_symlinks(op, key.as_str(), &dir)?;
        Ok(dir)
    }

    /// A new temporary file holding `chunks`, flushed if fsync is on.
    pub(super) fn write_temp(&self, op: Op, key: &str, chunks: &[Bytes]) -> Result<TempFile> {
        let tmp = TempFile::new(self.state("tmp"));
        let io_err = |e| Error::from_io(op, NAME, e).with_key(key);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp.path)
            .map_err(io_err)?;
        for c in chunks {
            write_seq(&mut f, c).map_err(io_err)?;
        }
        if self.fsync {
            f.sync_all().map_err(io_err)?;
        }
        Ok(tmp)
    }

    /// Flushes a directory entry change (after a rename) when fsync is on.
    pub(super) fn sync_dir(&self, dir: &Path) {
        if self.fsync
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
    }
}

/// The most bytes one write hands the page cache. Linux backs a write of 2 MiB or more
/// with 2 MiB page-cache folios where the filesystem allows (ext4, XFS); on a virtual
/// machine that returns free memory to its host (free page reporting, which reports free
/// blocks of 2 MiB and more), those folios come from memory the host took back, and the
/// copy into them waits for the host at every 4 KiB. Smaller writes get smaller folios,
/// mostly from memory still in place: a new 1 GiB file written with `dd` in 4 MiB writes
/// took 0.29-0.83 s of system time on this project's machine, in 1 MiB writes 0.29-0.34
/// (10 rounds each, alternating). 1024 writes per GiB cost nothing measurable.
const PAGE_CACHE_WRITE: usize = 1 << 20;

/// Writes all of `buf` at the file's position, at most [`PAGE_CACHE_WRITE`] bytes a call.
pub(super) fn write_seq(file: &mut File, buf: &[u8]) -> io::Result<()> {
    buf.chunks(PAGE_CACHE_WRITE)
        .try_for_each(|piece| file.write_all(piece))
}

/// Makes a new, empty `file` `len` bytes long with its blocks reserved where the filesystem
/// can (Linux `fallocate`), so that a full disk is an error before any byte is written, and
/// so the writeback of pieces written out of order (a parallel download's ranges) finds
/// its blocks already placed: on this project's machine (ext4) a 1 GiB file written by
/// eight ranges at once and synced took 0.34-0.38 CPU-s instead of 0.49-0.65 (four rounds
/// each, alternating). Where it cannot, the file is only extended (sparse).
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Ok(l) = libc::off_t::try_from(len)
        && l > 0
    {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: the descriptor is open for as long as `file` is borrowed; the call
            // touches no memory of this process.
            if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, l) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // The filesystem cannot reserve blocks: a sparse file will do.
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => break,
                _ => return Err(e),
            }
        }
    }
    file.set_len(len)
}

/// Writes `chunks` one after another from offset `at`, at most [`PAGE_CACHE_WRITE`]
/// bytes a call.
pub(crate) fn write_chunks_at(file: &File, chunks: &[Bytes], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut pos = at;
    for piece in chunks.iter().flat_map(|c| c.chunks(PAGE_CACHE_WRITE)) {
        file.write_all_at(piece, pos)?;
        pos += piece.len() as u64;
    }
    Ok(())
}

/// Opens a regular file without following a final symbolic link and without blocking on a
/// FIFO or device; anything but a regular file is reported as `NotFound`.
pub(super) fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        ));
    }
    Ok((f, m))
}

pub(super) fn link_refused(op: Op, key: &str, root: &Path, at: &Path) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        op,
        NAME,
        format!(
            "'{}' is a symbolic link; the fs backend never follows links",
            at.strip_prefix(root).unwrap_or(at).display()
        ),
    )
    .with_key(key)
}

pub(super) fn no_upload(op: Op, key: &Key, id: &UploadId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        op,
        NAME,
        format!("no multipart upload {id:?} for this key"),
    )
    .with_key(key.as_str())
}

/// The ETag of a file: inode, modification time in nanoseconds and size. A write replaces
/// the file by rename, so its tag changes.
pub(super) fn etag_of(m: &fs::Metadata) -> String {
    let mtime_ns = (m.mtime() as i128) * 1_000_000_000 + m.mtime_nsec() as i128;
    format!("\"{:x}-{:x}-{:x}\"", m.ino(), mtime_ns, m.len())
}

/// A temporary file removed on drop unless it was moved into place.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
}

impl TempFile {
    pub(super) fn new(dir: PathBuf) -> Self {
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

/// Content type and user metadata of one version of an object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Attributes {
    /// The ETag of the data file these attributes belong to.
    pub(super) etag: String,
    pub(super) content_type: Option<String>,
    pub(super) metadata: Metadata,
}

/// The sidecar of a key holds the attributes of the current version and, while a write is
/// in flight, of the next one; a reader takes the entry whose ETag matches the file it
/// opened. Writing the sidecar before the data keeps both consistent whichever step fails.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Sidecar {
    pub(super) entries: Vec<Attributes>,
}

impl Sidecar {
    pub(super) fn read(path: &Path) -> Sidecar {
        open_regular(path)
            .ok()
            .and_then(|(f, _)| serde_json::from_reader(io::BufReader::new(f)).ok())
            .unwrap_or_default()
    }

    pub(super) fn find(&self, etag: Option<&str>) -> Option<&Attributes> {
        self.entries.iter().find(|a| Some(a.etag.as_str()) == etag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.5 MiB of bytes that differ from one position to the next.
    fn numbered() -> Vec<u8> {
        (0..7 * PAGE_CACHE_WRITE / 2)
            .map(|i| (i % 251) as u8)
            .collect()
    }

    #[test]
    fn writes_split_into_pieces_land_where_they_belong() {
        let dir = tempfile::tempdir().unwrap();
        let data = numbered();

        let path = dir.path().join("seq");
        let mut f = File::create(&path).unwrap();
        write_seq(&mut f, &data[..10]).unwrap();
        write_seq(&mut f, &data[10..]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);

        let path = dir.path().join("at");
        let f = File::create(&path).unwrap();
        let at = 12_345u64;
        let chunks = [
            Bytes::copy_from_slice(&data[..3]),
            Bytes::copy_from_slice(&data[3..]),
        ];
        write_chunks_at(&f, &chunks, at).unwrap();
        let read = fs::read(&path).unwrap();
        assert_eq!(read.len() as u64, at + data.len() as u64);
        assert!(read[..at as usize].iter().all(|&b| b == 0));
        assert_eq!(&read[at as usize..], &data[..]);
    }

    #[test]
    fn preallocated_files_have_their_length_and_read_as_zeros() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        for len in [0u64, 1, 4096, 3 * 1024 * 1024 + 7] {
            let path = dir.path().join(format!("pre-{len}"));
            let f = File::create(&path).unwrap();
            preallocate(&f, len).unwrap();
            let m = f.metadata().unwrap();
            assert_eq!(m.len(), len);
            // Linux filesystems that reserve blocks (ext4, XFS, tmpfs, btrfs) hold them
            // all now, not a sparse hole.
            #[cfg(target_os = "linux")]
            assert!(
                m.blocks() * 512 >= len,
                "{len} bytes, {} blocks",
                m.blocks()
            );
            assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
            // Bytes written later land in place; the length stays.
            write_chunks_at(&f, &[Bytes::from_static(b"xy")], len / 2).unwrap();
            assert_eq!(f.metadata().unwrap().len(), len.max(len / 2 + 2));
        }
    }
}
