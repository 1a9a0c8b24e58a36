//! Reuse of upload buffers while uploads are running.
//!
//! A fresh multi-MiB allocation is usually a fresh `mmap`: every page of it faults in and
//! is zeroed by the kernel before the first byte is copied, which costs about as much CPU
//! as the copy into the socket. Buffers that went out as part bodies come back here when
//! the last [`Bytes`] referring to them is dropped, and the next part is filled into them.
//!
//! On Linux a fresh buffer asks for transparent huge pages over its 2 MiB-aligned stretch
//! (`MADV_HUGEPAGE`, which the kernel honours in its `always` and `madvise` modes): one
//! fault and one zeroing per 2 MiB instead of per 4 KiB.
//!
//! The pool only keeps buffers while at least one upload holds a [`Lease`], and never more
//! than its limit in bytes, so an idle store holds no memory for it.

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
    free: Vec<Vec<u8>>,
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
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let mut inner = self.lock();
        if let Some(i) = inner.free.iter().position(|b| b.capacity() >= capacity) {
            let mut buf = inner.free.swap_remove(i);
            inner.kept -= buf.capacity();
            buf.clear();
            return buf;
        }
        drop(inner);
        let mut buf = Vec::with_capacity(capacity);
        prefer_huge_pages(&mut buf);
        buf
    }

    /// Wraps a filled buffer as `Bytes` that come back to the pool when last dropped. A
    /// buffer less than half full is copied out instead and returned at once, so that a
    /// small tail (which a store may keep, as memory does) never pins a large buffer.
    pub(crate) fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        if buf.len() * 2 < buf.capacity() {
            let small = Bytes::copy_from_slice(&buf);
            self.give(buf);
            return small;
        }
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    fn give(&self, buf: Vec<u8>) {
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

/// Asks Linux to back the 2 MiB-aligned stretch of a fresh buffer with transparent huge
/// pages (where they are given on request, `madvise` mode): one fault and one zeroing per
/// 2 MiB instead of per 4 KiB.
#[cfg(target_os = "linux")]
fn prefer_huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let last = (start + buf.capacity()) / HUGE * HUGE;
    if last > first {
        // SAFETY: the range lies within the allocation `buf` owns, and no reference to its
        // bytes exists; MADV_HUGEPAGE changes how the pages are backed, never what they
        // hold, and its failure is harmless.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn prefer_huge_pages(_: &mut Vec<u8>) {}

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
    buf: Vec<u8>,
    pool: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
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
        buf.resize(3 << 20, 7);
        buf.extend_from_slice(b"part");
        let addr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let half = bytes.slice((3 << 20) + 2..);
        drop(bytes);
        assert_eq!(pool.kept(), 0, "still referenced by a slice");
        assert_eq!(&half[..], b"rt");
        drop(half);
        assert_eq!(pool.kept(), 4 << 20);
        let again = pool.take(1 << 20);
        assert_eq!(again.as_ptr(), addr, "the same allocation is reused");
        assert!(again.is_empty());
        pool.give(again);
        drop(lease);
        assert_eq!(pool.kept(), 0, "no upload running: nothing kept");
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn the_limit_caps_what_is_kept() {
        let pool = Arc::new(Buffers::new(6 << 20));
        let _lease = pool.lease();
        let full = |pool: &Arc<Buffers>| {
            let mut b = pool.take(4 << 20);
            b.resize(4 << 20, 1);
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

    /// The 2 MiB-aligned stretch of a fresh buffer is marked for huge pages (`hg` among
    /// the mapping's flags in /proc/self/smaps).
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_buffers_ask_for_huge_pages() {
        let pool = Arc::new(Buffers::new(0));
        let buf = pool.take(8 << 20);
        let middle = (buf.as_ptr() as usize).next_multiple_of(2 << 20);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&middle);
            } else if inside && let Some(f) = line.strip_prefix("VmFlags:") {
                flags = Some(f.to_string());
            }
        }
        let flags = flags.expect("the buffer's mapping is listed");
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "flags of the buffer's mapping: {flags}"
        );
        drop(buf);
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
