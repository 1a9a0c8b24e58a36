//! Where the parts of a multipart upload wait for completion.
//!
//! An upload's directory `.cloudstore/uploads/<id>/` holds its manifest, a data file and a
//! lock file. The first part to arrive fixes the upload's *slot*: its own length. A part
//! no longer than the slot is written in place into the data file at
//! `(number - 1) x slot`, and a small record `part-NNNNN.at` (offset and length) says so;
//! its ETag is the record's. A part that does not fit (longer than the slot, or beyond the
//! largest object) is staged whole in its own file `part-NNNNN`.
//!
//! What [`Store::writer`](crate::Store::writer) sends, parts `1..=n` of one size and a
//! shorter last one, therefore lands in the data file exactly as the object's bytes, and
//! completion renames that file into place: every byte is written once. Any other part
//! list (gaps, a replaced part that no longer fits, parts staged on their own) is
//! assembled into a new file from the records and staged parts it names.
//!
//! Locks are `flock`s, so other processes on the same root are serialised too. A part
//! written in place holds the upload's lock shared (parts go on side by side) and its own
//! part lock exclusively (two writes of one part never interleave their bytes); completion
//! holds the upload's lock exclusively, so no part lands in a data file it has already
//! moved into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use super::layout::{Layout, TempFile, etag_of, open_regular, write_chunks_at};
use super::{NAME, io_error};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{PartInfo, PartNumber, Payload};

/// The upload's manifest.
pub(super) const MANIFEST: &str = "upload.json";
const DATA: &str = "data";
const LOCK: &str = "lock";
const SLOT: &str = "slot";

/// The file of part `number` with `suffix`: `""` for a staged part, [`RECORD`] for the
/// record of a part in place, [`PART_LOCK`] for its lock.
fn part_file(number: u32, suffix: &str) -> String {
    format!("part-{number:05}{suffix}")
}
const RECORD: &str = ".at";
const PART_LOCK: &str = ".lock";

/// Where a part in place lies in the data file.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct InPlace {
    offset: u64,
    len: u64,
}

/// A part as completion finds it.
enum Found {
    InPlace(InPlace),
    Staged(File),
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates the data and lock files of a new upload directory (before its manifest).
pub(super) fn prepare(dir: &Path) -> io::Result<()> {
    for name in [DATA, LOCK] {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(name))?;
    }
    Ok(())
}

/// How an upload's lock is held.
#[derive(Clone, Copy)]
enum Hold {
    /// By a part written in place: parts go on side by side.
    Shared,
    /// By completion: no part is being written.
    Exclusive,
}

/// The upload's lock, held until dropped; `None` for an upload directory without one
/// (left by an earlier version of this crate: its parts are all staged).
fn lock(dir: &Path, hold: Hold) -> io::Result<Option<File>> {
    match open_rw(&dir.join(LOCK)) {
        Ok(f) => {
            match hold {
                Hold::Shared => f.lock_shared()?,
                Hold::Exclusive => f.lock()?,
            }
            Ok(Some(f))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A part number's own lock, held exclusively while that part is written in place, so
/// that two writes of one part never interleave their bytes in its slot.
fn lock_part(dir: &Path, number: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(part_file(number, PART_LOCK)))?;
    f.lock()?;
    Ok(f)
}

/// The in-process gate of the upload whose directory is `dir` (one of a fixed set).
fn write_gate(dir: &Path) -> &'static Mutex<()> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    const GATES: usize = 64;
    static ALL: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
    let all = ALL.get_or_init(|| (0..GATES).map(|_| Mutex::new(())).collect());
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(dir);
    &all[(h as usize) % GATES]
}

/// The upload's slot size, fixed by the first part that asks.
fn slot(layout: &Layout, op: Op, key: &Key, dir: &Path, len: u64) -> Result<u64> {
    let path = dir.join(SLOT);
    let read = |path: &Path| -> Result<Option<u64>> {
        match fs::read_to_string(path) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| {
                Error::new(ErrorKind::Other, op, NAME, "corrupt upload slot record")
                    .with_key(key.as_str())
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(op, key)(e)),
        }
    };
    if let Some(s) = read(&path)? {
        return Ok(s);
    }
    let tmp = layout.write_temp(op, key.as_str(), &[Bytes::from(len.to_string())])?;
    // A hard link fails if another part fixed the slot first: then that one counts.
    match fs::hard_link(&tmp.path, &path) {
        Ok(()) => Ok(len),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read(&path)?.ok_or_else(|| io_error(op, key)(e))
        }
        Err(e) => Err(io_error(op, key)(e)),
    }
}

/// Writes `chunks` to a new file named `name` in the upload directory (via a temporary
/// file, so it appears whole) and returns its metadata; `gone` is the error for an upload
/// completed or aborted meanwhile.
fn place(
    layout: &Layout,
    key: &Key,
    dir: &Path,
    name: &str,
    chunks: &[Bytes],
    gone: impl Fn() -> Error,
) -> Result<fs::Metadata> {
    let op = Op::PutPart;
    let tmp = layout.write_temp(op, key.as_str(), chunks)?;
    let m = fs::symlink_metadata(&tmp.path).map_err(io_error(op, key))?;
    match fs::rename(&tmp.path, dir.join(name)) {
        Ok(()) => Ok(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(gone()),
        Err(e) => Err(io_error(op, key)(e)),
    }
}

/// Writes a part in place if it fits its slot; `None` when it must be staged instead.
/// `gone` is the error for an upload completed or aborted meanwhile.
pub(super) fn write_in_place(
    layout: &Layout,
    key: &Key,
    dir: &Path,
    number: PartNumber,
    data: &Payload,
    max_object: u64,
    gone: impl Fn() -> Error,
) -> Result<Option<PartInfo>> {
    let op = Op::PutPart;
    let io_err = io_error(op, key);
    let len = data.len();
    if len == 0 {
        return Ok(None);
    }
    let Some(_lock) = lock(dir, Hold::Shared).map_err(&io_err)? else {
        return Ok(None);
    };
    let slot = slot(layout, op, key, dir, len)?;
    let offset = u64::from(number.get() - 1) * slot;
    if len > slot || offset.saturating_add(len) > max_object {
        return Ok(None);
    }
    let _part = lock_part(dir, number.get()).map_err(&io_err)?;
    // Opened under the lock: completion moves the data file away while holding it.
    let file = match open_rw(&dir.join(DATA)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(io_err(e)),
    };
    {
        // One write at a time per upload in this process: the kernel serialises writes to
        // a file anyway, and waiting here sleeps where its lock would spin.
        let _gate = write_gate(dir).lock().unwrap_or_else(|p| p.into_inner());
        write_chunks_at(&file, data.chunks(), offset).map_err(&io_err)?;
    }
    if layout.fsync {
        file.sync_data().map_err(&io_err)?;
    }
    let raw = serde_json::to_vec(&InPlace { offset, len }).map_err(|e| {
        Error::new(ErrorKind::Other, op, NAME, "cannot encode part record")
            .with_key(key.as_str())
            .with_source(e)
    })?;
    let record = part_file(number.get(), RECORD);
    let m = place(layout, key, dir, &record, &[Bytes::from(raw)], gone)?;
    Ok(Some(PartInfo {
        number,
        etag: etag_of(&m),
        size: len,
    }))
}

/// Stages a part in a file of its own.
pub(super) fn write_staged(
    layout: &Layout,
    key: &Key,
    dir: &Path,
    number: PartNumber,
    data: &Payload,
    gone: impl Fn() -> Error,
) -> Result<PartInfo> {
    let m = place(
        layout,
        key,
        dir,
        &part_file(number.get(), ""),
        data.chunks(),
        gone,
    )?;
    Ok(PartInfo {
        number,
        etag: etag_of(&m),
        size: m.len(),
    })
}

/// The part `p` names: the record in place or the staged file whose ETag it carries.
fn find(op: Op, key: &Key, dir: &Path, p: &PartInfo) -> Result<Found> {
    let io_err = io_error(op, key);
    let mismatch = || {
        Error::invalid_input(
            op,
            NAME,
            format!(
                "part {} does not match the uploaded part (etag or size differ)",
                p.number
            ),
        )
        .with_key(key.as_str())
    };
    let mut seen = false;
    match open_regular(&dir.join(part_file(p.number.get(), RECORD))) {
        Ok((f, m)) => {
            seen = true;
            if etag_of(&m) == p.etag {
                let at: InPlace = serde_json::from_reader(io::BufReader::new(f)).map_err(|e| {
                    Error::new(ErrorKind::Other, op, NAME, "corrupt part record")
                        .with_key(key.as_str())
                        .with_source(e)
                })?;
                return if at.len == p.size {
                    Ok(Found::InPlace(at))
                } else {
                    Err(mismatch())
                };
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    match open_regular(&dir.join(part_file(p.number.get(), ""))) {
        Ok((f, m)) if etag_of(&m) == p.etag && m.len() == p.size => Ok(Found::Staged(f)),
        Ok(_) => Err(mismatch()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && seen => Err(mismatch()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(
                Error::invalid_input(op, NAME, format!("part {} was never uploaded", p.number))
                    .with_key(key.as_str()),
            )
        }
        Err(e) => Err(io_err(e)),
    }
}

/// The parts of an upload gathered into one file, ready to be committed, with the lock
/// that keeps in-place writers out until the upload directory is gone.
pub(super) struct Assembled {
    pub(super) file: TempFile,
    _lock: Option<File>,
}

/// Gathers the listed parts (already checked to ascend) into one temporary file: the data
/// file itself, linked, when the parts are `1..=n` in place with full slots but the last;
/// a new file otherwise. The upload directory is left as it is, so a completion that then
/// fails its condition can be retried.
pub(super) fn assemble(
    layout: &Layout,
    key: &Key,
    dir: &Path,
    parts: &[PartInfo],
) -> Result<Assembled> {
    let op = Op::CompleteMultipart;
    let io_err = io_error(op, key);
    let lock = lock(dir, Hold::Exclusive).map_err(&io_err)?;
    let found = parts
        .iter()
        .map(|p| find(op, key, dir, p))
        .collect::<Result<Vec<_>>>()?;
    let total: u64 = parts.iter().map(|p| p.size).sum();
    let tmp = TempFile::new(layout.state("tmp"));
    let data_path = dir.join(DATA);
    if lock.is_some() && in_order(parts, &found) {
        let data = open_rw(&data_path).map_err(&io_err)?;
        data.set_len(total).map_err(&io_err)?;
        if layout.fsync {
            data.sync_all().map_err(&io_err)?;
        }
        fs::hard_link(&data_path, &tmp.path).map_err(&io_err)?;
        return Ok(Assembled {
            file: tmp,
            _lock: lock,
        });
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp.path)
        .map_err(&io_err)?;
    let mut data: Option<File> = None;
    for part in found {
        match part {
            Found::Staged(mut f) => {
                io::copy(&mut f, &mut out).map_err(&io_err)?;
            }
            Found::InPlace(at) => {
                let mut f: &File = match &mut data {
                    Some(f) => f,
                    none => none.insert(open_regular(&data_path).map_err(&io_err)?.0),
                };
                f.seek(SeekFrom::Start(at.offset)).map_err(&io_err)?;
                let copied = io::copy(&mut io::Read::take(f, at.len), &mut out).map_err(&io_err)?;
                if copied != at.len {
                    return Err(Error::new(
                        ErrorKind::Other,
                        op,
                        NAME,
                        "the upload's data file is shorter than its parts",
                    )
                    .with_key(key.as_str()));
                }
            }
        }
    }
    if layout.fsync {
        out.sync_all().map_err(&io_err)?;
    }
    Ok(Assembled {
        file: tmp,
        _lock: lock,
    })
}

/// Whether the parts are `1..=n`, all in place, back to back from offset 0.
fn in_order(parts: &[PartInfo], found: &[Found]) -> bool {
    let mut next = 0u64;
    for (i, (p, f)) in parts.iter().zip(found).enumerate() {
        let Found::InPlace(at) = f else {
            return false;
        };
        if p.number.get() as usize != i + 1 || at.offset != next {
            return false;
        }
        next += at.len;
    }
    true
}

/// Removes a completed upload's directory: the manifest first, so that writers arriving
/// later find no upload, then the data file, which may share its inode with the object.
pub(super) fn remove(dir: &Path) {
    let _ = fs::remove_file(dir.join(MANIFEST));
    let _ = fs::remove_file(dir.join(DATA));
    let _ = fs::remove_dir_all(dir);
}
