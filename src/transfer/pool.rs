//! Reuse of upload buffers while uploads are running.
//!
//! A fresh multi-MiB allocation is usually a fresh `mmap`: every page of it faults in and
//! is zeroed by the kernel before the first byte is copied, which costs about as much CPU
//! as the copy into the socket. Buffers that went out as part bodies come back here when
//! the last [`Bytes`] referring to them is dropped, and the next part is filled into them.
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
        Vec::with_capacity(capacity)
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
