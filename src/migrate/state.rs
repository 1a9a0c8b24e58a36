//! What a sync learned, kept in the destination store so that a re-run decides from the
//! two listings alone where neither carries a checksum (S3 and fs listings carry size and
//! ETag only).
//!
//! For every key found in place or copied, a sync records the source version (size and
//! ETag) and the destination ETag it left. A re-run that lists the same source version and
//! the same destination ETag knows the copy is still in place without a request. The
//! records of one unit of work (a key range) are written in key order as chunks of
//! [`CHUNK`] entries, under a generation named at random; a small pointer object names the
//! current generation and its scope (prefix and key range), and is written last, so a
//! sync that dies leaves the previous state current. A re-run reads the chunks one at a
//! time while it merges the listings: memory stays one chunk, whatever the key count.
//!
//! Layout under the destination: `.cloudstore/sync/<job>/state/<unit>/current` and
//! `.cloudstore/sync/<job>/state/<unit>/<generation>/<chunk>`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::object::Payload;
use crate::store::Store;

/// Entries per state object: about 100 KB of JSON for typical keys, so that a few workers
/// stay small in memory, at about three requests per thousand objects.
pub(crate) const CHUNK: usize = 1000;

/// One key's record: `(key, source size, source ETag, destination ETag)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry(pub String, pub u64, pub String, pub String);

/// What a state covers: records are only trusted by a run over the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Scope {
    pub prefix: String,
    pub after: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    generation: String,
    chunks: u32,
    scope: Scope,
}

/// Requests a state makes, for the sync's report.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

/// The state of one unit of work in the destination store.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    store: Store,
    dir: String,
    scope: Scope,
}

impl Slot {
    /// The state of unit `unit` of job `job` (both plain names) in `dst`.
    pub(crate) fn new(dst: &Store, job: &str, unit: &str, scope: Scope) -> Slot {
        Slot {
            store: dst.clone(),
            dir: format!("{}{job}/state/{unit}/", super::STATE_PREFIX),
            scope,
        }
    }

    fn pointer_key(&self) -> String {
        format!("{}current", self.dir)
    }

    fn chunk_key(&self, generation: &str, n: u32) -> String {
        format!("{}{generation}/{n:06}", self.dir)
    }

    async fn pointer(&self, counts: &Counts) -> Option<Pointer> {
        counts.reads.fetch_add(1, Ordering::Relaxed);
        match self.store.get_bytes(&self.pointer_key()).await {
            Ok(b) => serde_json::from_slice(&b)
                .inspect_err(|e| tracing::warn!(error = %e, "ignoring an unreadable sync state"))
                .ok(),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(error = %e, "sync state unreadable; deciding without it");
                None
            }
        }
    }

    /// The records of the previous run over this scope (none if there was none, or it
    /// covered other keys).
    pub(crate) async fn prior(&self, counts: &Counts) -> Prior {
        let pointer = self.pointer(counts).await;
        let old = pointer.as_ref().map(|p| (p.generation.clone(), p.chunks));
        Prior {
            slot: self.clone(),
            pointer: pointer.filter(|p| p.scope == self.scope),
            old,
            next_chunk: 0,
            entries: Vec::new().into_iter().peekable(),
        }
    }

    /// A writer of a new generation of records.
    pub(crate) fn writer(&self) -> Writer {
        Writer {
            slot: self.clone(),
            generation: uuid::Uuid::new_v4().simple().to_string(),
            buf: Vec::new(),
            chunks: 0,
            failed: false,
        }
    }
}

/// The previous run's records, read a chunk at a time as keys are asked in order.
pub(crate) struct Prior {
    slot: Slot,
    pointer: Option<Pointer>,
    /// The generation current when the run started, removed once a new one is saved.
    old: Option<(String, u32)>,
    next_chunk: u32,
    entries: std::iter::Peekable<std::vec::IntoIter<Entry>>,
}

impl Prior {
    /// The record of `key`; keys must be asked in increasing order.
    pub(crate) async fn lookup(&mut self, key: &str, counts: &Counts) -> Option<Entry> {
        loop {
            while let Some(e) = self.entries.peek() {
                match e.0.as_str().cmp(key) {
                    std::cmp::Ordering::Less => {
                        self.entries.next();
                    }
                    std::cmp::Ordering::Equal => return self.entries.next(),
                    std::cmp::Ordering::Greater => return None,
                }
            }
            let p = self.pointer.as_ref()?;
            if self.next_chunk >= p.chunks {
                return None;
            }
            let at = self.slot.chunk_key(&p.generation, self.next_chunk);
            self.next_chunk += 1;
            counts.reads.fetch_add(1, Ordering::Relaxed);
            let chunk: Vec<Entry> = match self.slot.store.get_bytes(&at).await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "ignoring an unreadable sync state chunk");
                    Vec::new()
                }),
                Err(e) => {
                    // Without the rest of the records the run decides by requests.
                    tracing::warn!(error = %e, "sync state unreadable; deciding without it");
                    self.pointer = None;
                    Vec::new()
                }
            };
            self.entries = chunk.into_iter().peekable();
        }
    }

    /// The generation to remove once a new one is current.
    pub(crate) fn superseded(&self) -> Option<(String, u32)> {
        self.old.clone()
    }
}

/// Writes a new generation of records, in key order, a chunk at a time.
pub(crate) struct Writer {
    slot: Slot,
    generation: String,
    buf: Vec<Entry>,
    chunks: u32,
    failed: bool,
}

impl Writer {
    pub(crate) async fn push(&mut self, entry: Entry, counts: &Counts) {
        self.buf.push(entry);
        if self.buf.len() >= CHUNK {
            self.flush(counts).await;
        }
    }

    async fn flush(&mut self, counts: &Counts) {
        if self.buf.is_empty() || self.failed {
            self.buf.clear();
            return;
        }
        let body = serde_json::to_vec(&self.buf).unwrap_or_default();
        self.buf.clear();
        let key = self.slot.chunk_key(&self.generation, self.chunks);
        counts.writes.fetch_add(1, Ordering::Relaxed);
        match self.slot.store.put(&key, Payload::from(body)).await {
            Ok(_) => self.chunks += 1,
            Err(e) => {
                tracing::warn!(error = %e, "could not save the sync state; the next run will compare by requests");
                self.failed = true;
            }
        }
    }

    /// Saves the rest and makes this generation current; then removes the chunks of `old`.
    /// Returns whether the state was saved.
    pub(crate) async fn finish(mut self, old: Option<(String, u32)>, counts: &Counts) -> bool {
        self.flush(counts).await;
        if self.failed {
            return false;
        }
        let pointer = Pointer {
            generation: self.generation.clone(),
            chunks: self.chunks,
            scope: self.slot.scope.clone(),
        };
        let body = serde_json::to_vec(&pointer).unwrap_or_default();
        counts.writes.fetch_add(1, Ordering::Relaxed);
        let store = &self.slot.store;
        if let Err(e) = store.put(&self.slot.pointer_key(), body).await {
            tracing::warn!(error = %e, "could not save the sync state; the next run will compare by requests");
            return false;
        }
        if let Some((old, n)) = old.filter(|(g, _)| *g != self.generation) {
            for i in 0..n {
                counts.writes.fetch_add(1, Ordering::Relaxed);
                let _ = store.delete(&self.slot.chunk_key(&old, i)).await;
            }
        }
        true
    }
}
