//! Reuse of upload buffers while uploads are running.
//!
//! A fresh multi-MiB allocation is usually a fresh `mmap`: every page of it faults in and
//! is zeroed by the kernel before the first byte is copied, which costs about as much CPU
//! as the copy into the socket. Buffers that went out as part bodies come back here when
//! the last [`Bytes`] referring to them is dropped, and the next part is filled into them.
//!
//! On Linux a fresh buffer of 2 MiB or more is its own anonymous mapping, rounded up to a
//! multiple of 2 MiB (which the kernel then places on a 2 MiB boundary), and asks for
//! transparent huge pages (`MADV_HUGEPAGE`, which the kernel honours in its `always` and
//! `madvise` modes): one fault and one zeroing per 2 MiB instead of per 4 KiB, over all of
//! the buffer. Smaller buffers, and every buffer elsewhere, come from the heap.
//!
//! The pool only keeps buffers while at least one upload holds a [`Lease`], and never more
//! than its limit in bytes, so an idle store holds no memory for it.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// Free buffers of a store and its clones.
#[derive(Debug)]
pub(crate) struct Buffers {
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: Vec<Buf>,
    kept: usize,
    leases: usize,
}

impl Buffers {
    /// A pool that keeps at most `limit` bytes of free buffers.
    pub(crate) fn new(limit: usize) -> Buffers {
        Buffers {
            limit,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps buffers for reuse until the returned lease (and every other one) is dropped.
    pub(crate) fn lease(self: &Arc<Self>) -> Lease {
        self.lock().leases += 1;
        Lease(self.clone())
    }

    /// An empty buffer with at least `capacity` bytes of room: a free one when there is one.
    pub(crate) fn take(&self, capacity: usize) -> Buf {
        let mut inner = self.lock();
        if let Some(i) = inner.free.iter().position(|b| b.capacity() >= capacity) {
            let mut buf = inner.free.swap_remove(i);
            inner.kept -= buf.capacity();
            buf.clear();
            return buf;
        }
        drop(inner);
        Buf::with_capacity(capacity)
    }

    /// Wraps a filled buffer as `Bytes` that come back to the pool when last dropped. A
    /// buffer less than half full is copied out instead and returned at once, so that a
    /// small tail (which a store may keep, as memory does) never pins a large buffer.
    pub(crate) fn freeze(self: &Arc<Self>, buf: Buf) -> Bytes {
        if buf.len() * 2 < buf.capacity() {
            let small = Bytes::copy_from_slice(buf.as_slice());
            self.give(buf);
            return small;
        }
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    fn give(&self, buf: Buf) {
        let mut inner = self.lock();
        if inner.leases > 0 && inner.kept + buf.capacity() <= self.limit {
            inner.kept += buf.capacity();
            inner.free.push(buf);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().kept
    }
}

/// The size of a transparent huge page (x86-64; aarch64 with 4 KiB pages).
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// A transfer buffer: a fixed room, filled from the front.
#[derive(Debug, Default)]
pub(crate) struct Buf(Mem);

#[derive(Debug)]
enum Mem {
    Heap(Vec<u8>),
    /// An anonymous mapping of its own, a multiple of [`HUGE`] long; `len` bytes are filled.
    #[cfg(target_os = "linux")]
    Mapped {
        map: memmap2::MmapMut,
        len: usize,
    },
}

impl Default for Mem {
    fn default() -> Self {
        Mem::Heap(Vec::new())
    }
}

impl Buf {
    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Buf {
        #[cfg(target_os = "linux")]
        if capacity >= HUGE
            && let Some(buf) = Buf::mapped(capacity)
        {
            return buf;
        }
        Buf(Mem::Heap(Vec::with_capacity(capacity)))
    }

    /// A mapping of `capacity` rounded up to whole huge pages: the kernel places a private
    /// anonymous mapping of that length on a huge-page boundary, so every page of it can be
    /// a huge one. `None` (the heap then) when the mapping cannot be made.
    #[cfg(target_os = "linux")]
    fn mapped(capacity: usize) -> Option<Buf> {
        let room = capacity.checked_next_multiple_of(HUGE)?;
        let map = memmap2::MmapOptions::new().len(room).map_anon().ok()?;
        // Refused, the mapping keeps the kernel's default pages: still correct.
        let _ = map.advise(memmap2::Advice::HugePage);
        Some(Buf(Mem::Mapped { map, len: 0 }))
    }

    pub(crate) fn capacity(&self) -> usize {
        match &self.0 {
            Mem::Heap(v) => v.capacity(),
            #[cfg(target_os = "linux")]
            Mem::Mapped { map, .. } => map.len(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Mem::Heap(v) => v.len(),
            #[cfg(target_os = "linux")]
            Mem::Mapped { len, .. } => *len,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn clear(&mut self) {
        match &mut self.0 {
            Mem::Heap(v) => v.clear(),
            #[cfg(target_os = "linux")]
            Mem::Mapped { len, .. } => *len = 0,
        }
    }

    /// The filled bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Mem::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Mem::Mapped { map, len } => &map[..*len],
        }
    }

    /// The `n` bytes after the filled ones, to be filled by the caller, who then calls
    /// [`Buf::filled`]; a mapping without room for them moves to the heap first (callers
    /// keep within the capacity they asked for, so that is only a safety net).
    fn spare(&mut self, n: usize) -> &mut [u8] {
        let len = self.len();
        let end = len.saturating_add(n);
        if end > self.capacity() {
            self.move_to_heap();
        }
        match &mut self.0 {
            Mem::Heap(v) => {
                v.resize(end, 0);
                &mut v[len..end]
            }
            #[cfg(target_os = "linux")]
            Mem::Mapped { map, .. } => &mut map[len..end],
        }
    }

    /// Moves the filled bytes to the heap, where the buffer can grow.
    fn move_to_heap(&mut self) {
        if !matches!(self.0, Mem::Heap(_)) {
            self.0 = Mem::Heap(self.as_slice().to_vec());
        }
    }

    /// Counts `n` bytes given by [`Buf::spare`] as filled, or (`n` = 0 after a failure)
    /// drops them again.
    fn filled(&mut self, start: usize, n: usize) {
        match &mut self.0 {
            Mem::Heap(v) => v.truncate(start + n),
            #[cfg(target_os = "linux")]
            Mem::Mapped { len, .. } => *len = start + n,
        }
    }

    /// Appends `data`.
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        if let Mem::Heap(v) = &mut self.0 {
            v.extend_from_slice(data);
            return;
        }
        let start = self.len();
        self.spare(data.len()).copy_from_slice(data);
        self.filled(start, data.len());
    }

    /// Appends what `reader` holds, at most `limit` bytes (fewer where it ends); returns
    /// how many. On the heap nothing is zeroed first.
    pub(crate) fn read_from(&mut self, reader: impl Read, limit: usize) -> io::Result<usize> {
        if self.len().saturating_add(limit) > self.capacity() {
            self.move_to_heap();
        }
        if let Mem::Heap(v) = &mut self.0 {
            return reader.take(limit as u64).read_to_end(v);
        }
        let mut reader = reader;
        let start = self.len();
        let spare = self.spare(limit);
        let mut got = 0;
        let result = loop {
            match reader.read(&mut spare[got..]) {
                Ok(0) => break Ok(got),
                Ok(n) => {
                    got += n;
                    if got == spare.len() {
                        break Ok(got);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.filled(start, *result.as_ref().unwrap_or(&0));
        result
    }

    /// Appends exactly `n` bytes of `file` from `offset`.
    pub(crate) fn read_exact_at(&mut self, file: &File, offset: u64, n: usize) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let start = self.len();
        let result = file.read_exact_at(self.spare(n), offset);
        self.filled(start, if result.is_ok() { n } else { 0 });
        result
    }
}

/// Held by a running upload; when the last one goes, the free buffers are released.
#[derive(Debug)]
pub(crate) struct Lease(Arc<Buffers>);

impl Drop for Lease {
    fn drop(&mut self) {
        let released = {
            let mut inner = self.0.lock();
            inner.leases -= 1;
            if inner.leases == 0 {
                inner.kept = 0;
                std::mem::take(&mut inner.free)
            } else {
                Vec::new()
            }
        };
        // Freed outside the lock.
        drop(released);
    }
}

/// The owner behind pooled `Bytes`.
struct Pooled {
    buf: Buf,
    pool: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_slice()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_while_leased_and_go_when_idle() {
        let pool = Arc::new(Buffers::new(10 << 20));
        let lease = pool.lease();
        let mut buf = pool.take(4 << 20);
        buf.extend_from_slice(&vec![7; 3 << 20]);
        buf.extend_from_slice(b"part");
        let addr = buf.as_slice().as_ptr();
        let bytes = pool.freeze(buf);
        let half = bytes.slice((3 << 20) + 2..);
        drop(bytes);
        assert_eq!(pool.kept(), 0, "still referenced by a slice");
        assert_eq!(&half[..], b"rt");
        drop(half);
        assert_eq!(pool.kept(), 4 << 20);
        let again = pool.take(1 << 20);
        assert_eq!(
            again.as_slice().as_ptr(),
            addr,
            "the same allocation is reused"
        );
        assert!(again.is_empty());
        pool.give(again);
        drop(lease);
        assert_eq!(pool.kept(), 0, "no upload running: nothing kept");
        pool.give(Buf::with_capacity(1 << 20));
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn the_limit_caps_what_is_kept() {
        let pool = Arc::new(Buffers::new(6 << 20));
        let _lease = pool.lease();
        let full = |pool: &Arc<Buffers>| {
            let mut b = pool.take(4 << 20);
            b.extend_from_slice(&vec![1; 4 << 20]);
            pool.freeze(b)
        };
        let (a, b) = (full(&pool), full(&pool));
        drop((a, b));
        assert_eq!(pool.kept(), 4 << 20);
        assert_eq!(
            pool.take(8 << 20).capacity(),
            8 << 20,
            "none big enough: new"
        );
    }

    /// The flags of the mapping that holds `addr`, from /proc/self/smaps.
    #[cfg(target_os = "linux")]
    fn flags_at(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&addr);
            } else if inside && let Some(f) = line.strip_prefix("VmFlags:") {
                flags = Some(f.to_string());
            }
        }
        flags.expect("the address is in a listed mapping")
    }

    /// A fresh large buffer is a mapping of whole huge pages, all of it marked for them
    /// (`hg` among its flags in /proc/self/smaps); a small one comes from the heap.
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_large_buffers_are_mappings_marked_for_huge_pages() {
        let pool = Arc::new(Buffers::new(0));
        let mut buf = pool.take(5 << 20);
        assert_eq!(buf.capacity(), 6 << 20, "rounded up to whole huge pages");
        buf.extend_from_slice(&[1]);
        let start = buf.as_slice().as_ptr() as usize;
        for addr in [start, start + buf.capacity() - 1] {
            let flags = flags_at(addr);
            assert!(
                flags.split_whitespace().any(|f| f == "hg"),
                "flags of the buffer's mapping at {addr:#x}: {flags}"
            );
        }
        let small = pool.take(64 << 10);
        assert_eq!(small.capacity(), 64 << 10, "exactly what was asked");
    }

    /// What goes in comes out, whichever way it is filled; a buffer asked to hold more
    /// than its room keeps every byte (it moves to the heap).
    #[test]
    fn buffers_fill_from_slices_readers_and_files() {
        let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        for capacity in [4 << 20, 2 << 20, 1 << 20] {
            let mut buf = Buf::with_capacity(capacity);
            buf.extend_from_slice(&data[..10]);
            buf.read_exact_at(&file, 10, 1000).unwrap();
            assert_eq!(
                buf.read_from(&data[1010..], data.len()).unwrap(),
                data.len() - 1010
            );
            assert_eq!(buf.as_slice(), &data[..], "capacity {capacity}");

            buf.clear();
            let err = buf.read_exact_at(&file, 100, data.len()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert!(buf.is_empty(), "a failed read adds nothing");
            assert_eq!(buf.read_from(&data[..], 7).unwrap(), 7);
            assert_eq!(buf.as_slice(), &data[..7]);
        }
    }

    #[test]
    fn a_small_tail_is_copied_and_its_buffer_reused() {
        let pool = Arc::new(Buffers::new(10 << 20));
        let _lease = pool.lease();
        let mut buf = pool.take(4 << 20);
        buf.extend_from_slice(b"tail");
        let bytes = pool.freeze(buf);
        assert_eq!(&bytes[..], b"tail");
        assert_eq!(
            pool.kept(),
            4 << 20,
            "the buffer is back while the tail lives on"
        );
    }
}
