//! The transfer engine: streaming multipart uploads and parallel ranged downloads, written
//! once above the [`Backend`] SPI so every backend gets them.
//!
//! - [`Upload`] (from [`Store::writer`](crate::Store::writer)) is a `tokio` `AsyncWrite`
//!   that cuts the stream into parts, uploads up to [`TransferConfig::concurrency`] of them
//!   at once (one at a time where parts do not go faster side by side:
//!   [`Capabilities::parallel_parts`]), and waits (back-pressure) when the memory budget is
//!   spent. Below one part it is a single PUT. Over a long round trip, parts after the
//!   first are split and more go in flight; near the store they are split with as many in
//!   flight ([`TransferConfig::adapt_to_latency`]). [`Store::upload_stream`](crate::Store::upload_stream) takes owned `Bytes`
//!   and sends them without copying; [`Store::upload_file`](crate::Store::upload_file) reads
//!   the parts of a file in parallel.
//! - Part sizes follow the backend's [`Capabilities`]: at least its
//!   minimum; grown so that a known size fits its part limit; and, for a stream of unknown
//!   size, grown as the upload goes so that the backend's largest object still fits (on
//!   Azure, 90 % of it: see [`PartSizer::new`]). A part larger than the budget (a very long
//!   stream, or a large `part_size`) is held alone: memory is then one part.
//! - Memory: each upload holds at most its budget ([`TransferConfig::upload_memory`]), and
//!   all uploads of a [`Store`](crate::Store) and its clones share
//!   [`TransferConfig::global_memory`]. A part reserves its bytes when it starts to fill and
//!   releases them once uploaded. Upload buffers are reused while uploads run and
//!   released when none is. An upload waits for memory only while it holds no
//!   unfilled part, so uploads each written to the end do not deadlock; a single task that
//!   interleaves writes to more uploads than the budget holds parts for can wait on itself.
//! - Failures: a part is retried with exponential backoff while its bytes are held; a
//!   final failure aborts the multipart upload and returns a typed error; an upload dropped
//!   unfinished is aborted in the background.
//! - Checksums: a CRC32C of the whole object is computed as its bytes come in (hardware
//!   accelerated; the [`Upload`] writer checksums each block of input right
//!   after copying it, while it is still in the CPU's caches; a file's parts as they are
//!   read) and stored with the object in the metadata entry
//!   [`CHECKSUM_METADATA`] (as 8 hex digits); downloads verify it and answer
//!   [`ErrorKind::ChecksumMismatch`](crate::ErrorKind::ChecksumMismatch). On S3, where
//!   metadata is fixed when a multipart upload starts, every upload also carries a
//!   CRC64-NVME that S3 checks per part and keeps as the object's full-object checksum;
//!   downloads verify against it when there is no CRC32C metadata
//!   ([`Backend::native_checksum`]). CRC32C costs far
//!   less than SHA-256 or MD5 per byte; on S3 the payload signature (SHA-256) is still
//!   computed by the SigV4 signer unless the option `unsigned_payload=true` is given (safe
//!   over TLS, where the CRC then protects the content end to end).
//! - Downloads: [`Store::download_file`](crate::Store::download_file) fetches ranges in
//!   parallel, all pinned to the ETag of the first answer (an object replaced mid-way gives
//!   `PreconditionFailed`, never a mixed file), writes them in place into a temporary file
//!   and renames it at the end; [`Store::reader`](crate::Store::reader) is an `AsyncRead`
//!   with bounded, ordered read-ahead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::backend::{Backend, Capabilities, MIB};

mod checksum;
mod download;
mod file;
pub(crate) mod pool;
mod upload;

pub(crate) use checksum::declared;
pub use checksum::{CHECKSUM_METADATA, Crc32c};
pub use download::ObjectReader;
pub use file::{Checkpoint, DonePart, FileUploadOptions};
pub use upload::{StreamUploadOptions, Upload};

/// Policy of the transfer engine, per [`Store`](crate::Store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// Preferred part size; raised to the backend's minimum and as limits require.
    pub part_size: u64,
    /// Parts (or ranges) in flight per transfer.
    pub concurrency: usize,
    /// Most bytes one upload holds in memory, the part being filled included; at least one
    /// part. With `concurrency x part_size` (the default), an upload's peak is about that
    /// plus a 4 MiB write buffer.
    pub upload_memory: u64,
    /// Most bytes all uploads of a store and its clones hold together.
    pub global_memory: u64,
    /// Attempts per part (or range) before the transfer fails. Over a backend that retries
    /// requests itself ([`Backend::retries_requests`], e.g. every cloud store from
    /// [`Store::from_url`](crate::Store::from_url)) the engine makes one attempt and leaves
    /// retries to that layer.
    pub attempts: u32,
    /// First backoff between attempts; doubles each time, with jitter.
    pub backoff: Duration,
    /// Compute, store and verify a CRC32C of each object.
    pub checksum: bool,
    /// Split parts and ranges when the round trip is long (on by default). A request waits
    /// a round trip for its answer, idle time that a connection capped by its TCP window
    /// cannot make up; more, smaller requests in flight fill it. The first request of a
    /// transfer (the opening GET of a read, the creation of a multipart upload) measures
    /// the latency, and from [`SPLIT_LATENCY`] on, every later part or range of
    /// `part_size` is sent as [`split_for`](TransferConfig::split_for) requests of
    /// `part_size / k` each, with `k x concurrency` in flight: the same bytes in flight and
    /// the same memory, split over more connections. Parts are never split below the
    /// backend's minimum part size or 4 MiB, nor where the part limit could then no longer
    /// hold the object. `download_file` keeps its ranges (sized for the whole file, at least
    /// `part_size`) and puts `k x concurrency` of them in flight: they stream to disk, so
    /// each holds at most two 2 MiB batches of memory. The other way, near the store (a first request
    /// answered within [`NEAR_LATENCY`]): a reader times the opening answer and reads the
    /// rest in one stream when one connection is fast enough ([`ONE_STREAM_RATE`]); an
    /// upload sends the parts after the first in [`NEAR_SPLIT`] pieces with `concurrency`
    /// in flight, so that the bytes in flight stay within the CPU's caches
    /// ([`upload_split_for`](TransferConfig::upload_split_for)). An upload measures the
    /// round trip only where creating it is a request
    /// ([`Capabilities::create_multipart_round_trip`]). Off, every read of a backend with
    /// [`Capabilities::parallel_parts`] goes in parallel ranges of `part_size`, and parts
    /// are never split.
    pub adapt_to_latency: bool,
}

/// The first-request latency from which transfers split their parts and ranges (see
/// [`TransferConfig::adapt_to_latency`]): a round trip of about 60 ms on a reused
/// connection, or 30 ms on a new one (the handshake adds a round trip).
pub const SPLIT_LATENCY: Duration = Duration::from_millis(60);

/// The opening-request latency below which a read is near its store (the same machine or
/// network). With [`TransferConfig::adapt_to_latency`], [`Store::reader`](crate::Store::reader)
/// then streams the opening answer on and times its first bytes: at [`ONE_STREAM_RATE`] or
/// more the rest follows in one request (one stream moves more there than parallel ranges,
/// at a third of the CPU, as it holds no read-ahead); slower, the rest is read in parallel
/// ranges from then on.
pub const NEAR_LATENCY: Duration = Duration::from_millis(5);

/// The speed (bytes per second) from which one connection near the store reads the whole
/// object (see [`NEAR_LATENCY`]): 1 GB/s.
pub const ONE_STREAM_RATE: u64 = 1_000_000_000;

/// Into how many pieces an upload near its store ([`NEAR_LATENCY`]) splits its parts after
/// the first, with no more of them in flight: at the in-process S3 sink of the transfer
/// benchmark (2 cores, 32 MiB of L3 cache), 16 MiB parts, 8 in flight, went from 0.34 to
/// 0.32 CPU-s/GB and from about 3630 to 3900 MB/s (5 MiB pieces, S3's minimum), and the
/// peak memory from 151 to 80 MiB. With 128 MiB in flight the kernel read every part back
/// from memory to copy it into the socket; with 40 MiB, mostly from the cache.
pub const NEAR_SPLIT: u64 = 4;

/// How an upload sends its parts after the first (see
/// [`TransferConfig::upload_split_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSplit {
    /// Into how many requests each part is split (1: whole parts).
    pub pieces: u64,
    /// How many of those requests go at once.
    pub in_flight: usize,
}

/// Parts and ranges are not split below this size.
const MIN_SPLIT_PART: u64 = 4 * MIB;

/// One of `k` pieces of `whole` bytes: not below `min` or [`MIN_SPLIT_PART`], never above
/// `whole`.
fn split_piece(whole: u64, k: u64, min: u64) -> u64 {
    (whole / k.max(1)).max(min).max(MIN_SPLIT_PART).min(whole)
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            part_size: 16 * MIB,
            concurrency: 8,
            upload_memory: 128 * MIB,
            global_memory: 512 * MIB,
            attempts: 4,
            backoff: Duration::from_millis(100),
            checksum: true,
            adapt_to_latency: true,
        }
    }
}

/// What a transfer has done so far, reported to a [`ProgressFn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes transferred and acknowledged.
    pub bytes: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
    /// Parts (or ranges) done.
    pub parts: u64,
}

/// A progress callback; it is called from the transfer's tasks, so keep it quick.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// The budget shared by a store and its clones.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: TransferConfig,
    pub(crate) memory: Arc<Semaphore>,
    pub(crate) buffers: Arc<pool::Buffers>,
}

impl Shared {
    pub(crate) fn new(config: TransferConfig) -> Arc<Shared> {
        // Counted in KiB, as parts request it (a part of several GiB fits one request).
        let permits =
            (config.global_memory.div_ceil(1024).max(1) as usize).min(Semaphore::MAX_PERMITS);
        // Free buffers kept for reuse: what one upload may hold, or its parts in flight.
        let keep = config
            .upload_memory
            .max(config.part_size.saturating_mul(config.concurrency as u64))
            .min(config.global_memory);
        Arc::new(Shared {
            memory: Arc::new(Semaphore::new(permits)),
            buffers: Arc::new(pool::Buffers::new(
                usize::try_from(keep).unwrap_or(usize::MAX),
            )),
            config,
        })
    }
}

impl TransferConfig {
    /// Into how many requests a part or range of `part_size` is split when a transfer's
    /// first request took `latency`: 1 below [`SPLIT_LATENCY`], 2 below 200 ms, 3 below
    /// 400 ms, else 4; always 1 when [`adapt_to_latency`](Self::adapt_to_latency) is off.
    pub fn split_for(&self, latency: Duration) -> u64 {
        if !self.adapt_to_latency || latency < SPLIT_LATENCY {
            1
        } else if latency < Duration::from_millis(200) {
            2
        } else if latency < Duration::from_millis(400) {
            3
        } else {
            4
        }
    }

    /// How an upload sends each part after the first when creating it took `latency`:
    /// [`NEAR_SPLIT`] pieces below [`NEAR_LATENCY`] with `concurrency` in flight (less
    /// memory), else [`split_for`](Self::split_for) pieces with that many times
    /// `concurrency` in flight (the same memory); whole parts when
    /// [`adapt_to_latency`](Self::adapt_to_latency) is off.
    pub fn upload_split_for(&self, latency: Duration) -> UploadSplit {
        let concurrency = self.concurrency.max(1);
        if self.adapt_to_latency && latency < NEAR_LATENCY {
            UploadSplit {
                pieces: NEAR_SPLIT,
                in_flight: concurrency,
            }
        } else {
            let pieces = self.split_for(latency);
            UploadSplit {
                pieces,
                in_flight: concurrency * pieces as usize,
            }
        }
    }

    /// The size of each range a read asks for after its first, `k` ways split, not below
    /// 4 MiB (and never above `part_size`).
    pub(crate) fn range_size(&self, k: u64) -> u64 {
        split_piece(self.part_size.max(1), k, 0)
    }

    /// Parts an upload to a backend with `caps` sends at once: `concurrency`, or one where
    /// parts do not go faster side by side ([`Capabilities::parallel_parts`]).
    pub fn parts_in_flight(&self, caps: &Capabilities) -> usize {
        if caps.parallel_parts {
            self.concurrency.max(1)
        } else {
            1
        }
    }

    /// Attempts the engine itself makes per part or range over `backend`.
    pub(crate) fn attempts_over(&self, backend: &dyn Backend) -> u32 {
        if backend.retries_requests() {
            1
        } else {
            self.attempts.max(1)
        }
    }
}

impl Shared {
    /// Waits until `bytes` fit the store-wide budget and holds them until the permit drops.
    pub(crate) fn reserve(
        &self,
        bytes: u64,
        backend: &str,
    ) -> impl Future<Output = crate::Result<Held>> + Send + 'static {
        let total = self.config.global_memory.div_ceil(upload::UNIT).max(1);
        let wanted = reserve_in(&self.memory, bytes, total, backend);
        async move {
            let permit = wanted.await?;
            Ok(Held {
                _gauge: crate::observe::Reserved::new(bytes),
                _permit: permit,
            })
        }
    }
}

/// Bytes of the store-wide memory budget, held until dropped (and shown by the
/// [`TRANSFER_MEMORY`](crate::observe::TRANSFER_MEMORY) gauge).
pub(crate) struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _gauge: crate::observe::Reserved,
}

/// Waits until `bytes` fit the budget `memory` (of `total` KiB units; a request larger than
/// the whole budget takes all of it) and holds them until the permit drops.
pub(crate) fn reserve_in(
    memory: &Arc<Semaphore>,
    bytes: u64,
    total: u64,
    backend: &str,
) -> impl Future<Output = crate::Result<tokio::sync::OwnedSemaphorePermit>> + Send + 'static {
    let wanted = memory
        .clone()
        .acquire_many_owned(upload::units(bytes, total));
    let backend = backend.to_owned();
    async move {
        wanted.await.map_err(|_| {
            crate::Error::new(
                crate::ErrorKind::Other,
                crate::Op::PutPart,
                backend,
                "the memory budget was closed",
            )
        })
    }
}

/// How parts are sized for one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    base: u64,
    max_part: u64,
    /// Parts per size step: the size doubles after every `step` parts (unknown size).
    step: u32,
    fixed: bool,
    /// The backend's minimum part size, below which a split part never goes.
    min_part: u64,
    max_parts: u64,
    /// What the part limit must hold: the object's size (known) or the largest object
    /// aimed at (unknown).
    target: u64,
}

impl PartSizer {
    /// Sizes for an upload of `size` bytes (or unknown), within `caps`.
    ///
    /// Known size: one size for all parts, at least `preferred` and the minimum, grown so
    /// the object fits the part limit. Unknown size: start at that size and double every
    /// `max_parts / 16` parts (fewer if needed), so that the part limit can hold the
    /// largest object the backend takes, or 90 % of `max_parts x max_part_size` where the
    /// largest object is that product (Azure: about 171 TiB of 190.7).
    pub fn new(caps: &Capabilities, preferred: u64, size: Option<u64>) -> PartSizer {
        let max_part = caps.max_part_size.max(1);
        let base = preferred.max(caps.min_part_size).clamp(1, max_part);
        let max_parts = caps.max_parts.max(1) as u64;
        match size {
            Some(size) => {
                let needed = size.div_ceil(max_parts);
                // Round up to whole MiB where parts are that large anyway.
                let needed = if needed > MIB {
                    needed.div_ceil(MIB) * MIB
                } else {
                    needed
                };
                PartSizer {
                    base: base.max(needed).min(max_part),
                    max_part,
                    step: u32::MAX,
                    fixed: true,
                    min_part: caps.min_part_size,
                    max_parts,
                    target: size,
                }
            }
            None => {
                // Where the largest object needs every part at the largest size (Azure:
                // 50,000 x 4000 MiB), no growth from small parts reaches it; aiming there
                // would make the first part 4000 MiB, far over any memory budget. Aim at
                // 90 % of that ceiling instead: larger streams need a size hint.
                let ceiling = max_parts.saturating_mul(max_part) / 10 * 9;
                let target = caps
                    .max_object_size
                    .unwrap_or(5 * crate::backend::TIB)
                    .min(ceiling);
                let mut base = base;
                let mut step = (max_parts / 16).max(1);
                // Shorten the steps until the part limit can hold the target; if growing
                // every part is not enough, start from larger parts.
                while step > 1 && Self::capacity(base, max_part, step, max_parts) < target {
                    step /= 2;
                }
                while base < max_part && Self::capacity(base, max_part, step, max_parts) < target {
                    base = base.saturating_mul(2).min(max_part);
                }
                PartSizer {
                    base,
                    max_part,
                    step: step.min(u32::MAX as u64) as u32,
                    fixed: false,
                    min_part: caps.min_part_size,
                    max_parts,
                    target,
                }
            }
        }
    }

    /// Bytes that `max_parts` parts hold under this growth.
    fn capacity(base: u64, max_part: u64, step: u64, max_parts: u64) -> u64 {
        let mut total = 0u64;
        let mut n = 0u64;
        let mut size = base;
        while n < max_parts {
            let k = step.min(max_parts - n);
            total = total.saturating_add(size.saturating_mul(k));
            n += k;
            size = size.saturating_mul(2).min(max_part);
        }
        total
    }

    /// The size of part `n` when parts are split `k` ways (see
    /// [`TransferConfig::adapt_to_latency`]): `size_of(n) / k`, not below the backend's
    /// minimum part size or 4 MiB, where
    /// the part limit still holds the object (a known size) or the largest object aimed at
    /// (an unknown size, whose parts are split within the first size step only); else
    /// `size_of(n)`.
    pub fn split_size(&self, n: u32, k: u64) -> u64 {
        let whole = self.size_of(n);
        let small = split_piece(whole, k, self.min_part);
        if small == whole {
            return whole;
        }
        let holds = if self.fixed {
            self.target.div_ceil(small) <= self.max_parts
        } else {
            let step = u64::from(self.step);
            let full = Self::capacity(self.base, self.max_part, step, self.max_parts);
            u64::from(n) <= step
                && full.saturating_sub(step.saturating_mul(self.base - small)) >= self.target
        };
        if holds { small } else { whole }
    }

    /// The size of part `n` (from 1).
    pub fn size_of(&self, n: u32) -> u64 {
        if self.fixed {
            return self.base;
        }
        let doublings = ((n.saturating_sub(1)) / self.step.max(1)).min(63);
        self.base
            .saturating_mul(1u64 << doublings)
            .min(self.max_part)
    }
}

/// A delay for attempt `n` (from 1): exponential with up to 50 % jitter.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    exp + exp.mul_f64(jitter as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::GIB;

    fn caps(min: u64, max_part: u64, max_parts: u32, max_object: u64) -> Capabilities {
        Capabilities {
            min_part_size: min,
            max_part_size: max_part,
            max_parts,
            max_object_size: Some(max_object),
            ..Capabilities::s3_like()
        }
    }

    #[test]
    fn split_parts_never_break_the_part_limit() {
        let s3 = Capabilities::s3_like();
        // A known size that fits either way: split; one that 8 MiB parts cannot hold in
        // 10,000 parts: whole.
        let p = PartSizer::new(&s3, 16 * MIB, Some(GIB));
        assert_eq!(p.split_size(2, 2), 8 * MIB);
        let big = 100_000 * MIB;
        let p = PartSizer::new(&s3, 16 * MIB, Some(big));
        assert_eq!(p.split_size(2, 2), p.size_of(2));
        assert!(p.size_of(2) * 10_000 >= big);
        // Never below the minimum part size or 4 MiB.
        let p = PartSizer::new(&s3, 8 * MIB, Some(GIB));
        assert_eq!(p.split_size(2, 4), s3.min_part_size);
        let p = PartSizer::new(&caps(MIB, 5 * GIB, 10_000, 5 * GIB), 8 * MIB, Some(GIB));
        assert_eq!(p.split_size(2, 4), 4 * MIB);
        // Unknown size: split within the first size step only, and the part limit still
        // holds the largest object.
        let p = PartSizer::new(&s3, 16 * MIB, None);
        assert_eq!(p.split_size(2, 2), 8 * MIB);
        let late = p.step + 1;
        assert_eq!(p.split_size(late, 2), p.size_of(late));
        let full = PartSizer::capacity(p.base, p.max_part, p.step.into(), p.max_parts);
        let lost = u64::from(p.step) * (p.base - 8 * MIB);
        assert!(full - lost >= p.target);
    }

    #[test]
    fn known_sizes_fit_the_part_limit() {
        let s3 = Capabilities::s3_like();
        let p = PartSizer::new(&s3, 8 * MIB, Some(100 * MIB));
        assert_eq!(p.size_of(1), 8 * MIB);
        let p = PartSizer::new(&s3, 8 * MIB, Some(1000 * GIB));
        assert!(p.size_of(1) * 10_000 >= 1000 * GIB);
        assert!(p.size_of(1) >= s3.min_part_size);
        let tiny = caps(1024, 1 << 20, 10, 10 << 20);
        let p = PartSizer::new(&tiny, 100, Some(5 << 20));
        assert!(p.size_of(1) >= 1024 && p.size_of(1) * 10 >= 5 << 20);
    }

    #[test]
    fn unknown_sizes_grow_to_hold_the_largest_object() {
        let s3 = Capabilities::s3_like();
        let p = PartSizer::new(&s3, 8 * MIB, None);
        let total: u64 = (1..=10_000).map(|n| p.size_of(n)).sum();
        assert!(total >= 5 * crate::backend::TIB, "{total}");
        assert_eq!(p.size_of(1), 8 * MIB);
        let tiny = caps(1024, 64 * 1024, 10, 300 * 1024);
        let p = PartSizer::new(&tiny, 1024, None);
        let total: u64 = (1..=10).map(|n| p.size_of(n)).sum();
        assert!(total >= 300 * 1024, "{total}");
        assert!((1..=10).all(|n| p.size_of(n) <= 64 * 1024));
    }

    #[test]
    fn unknown_sizes_start_small_where_the_largest_object_needs_every_part_full() {
        // Azure: the largest blob is exactly 50,000 blocks of 4000 MiB.
        let azure = caps(1, 4000 * MIB, 50_000, 50_000 * 4000 * MIB);
        let p = PartSizer::new(&azure, 16 * MIB, None);
        assert_eq!(p.size_of(1), 16 * MIB);
        // Still 16 MiB parts after several GiB: memory stays within a small budget.
        assert_eq!(p.size_of(200), 16 * MIB);
        let total: u64 = (1..=50_000).map(|n| p.size_of(n)).sum();
        assert!(total >= 50_000 * 4000 * MIB / 10 * 9, "{total}");
    }
}
