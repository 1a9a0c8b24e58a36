//! The streaming sync: two sorted listings merged into a bounded window of work.
//!
//! The source and destination listings are read page by page and merged by key; each key
//! becomes a decision (in place, copy, compare by HEAD, delete) that runs with at most
//! `concurrency` requests at once, while at most `window` keys are between the listing and
//! their outcome. Outcomes are taken in key order, so the records a sync keeps for its
//! re-runs ([`SyncOptions::state`]) are written in order, a chunk at a time. Memory does not
//! grow with the number of keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::state::{self, Entry, Scope, Slot};
use super::{CopyOptions, copy};
use crate::error::{ErrorKind, Result};
use crate::object::{ListRequest, ObjectMeta, PutMode};
use crate::observe;
use crate::store::Store;
use crate::transfer::declared;

/// Keys under this prefix (of the destination, relative to its store prefix) hold what
/// syncs keep for themselves: records for re-runs, plans, claims and results of sharded
/// jobs. A sync never copies, compares or deletes keys under it, on either side.
pub const STATE_PREFIX: &str = ".cloudstore/sync/";

/// A callback that receives a sync's progress while it runs (at most ten times a second,
/// and once when it ends).
pub type SyncProgressFn = Arc<dyn Fn(&SyncProgress) + Send + Sync>;

/// Options of [`sync`].
#[derive(Clone)]
pub struct SyncOptions {
    /// Only keys under this prefix (of both stores).
    pub prefix: Option<String>,
    /// Delete destination objects the source does not have.
    pub delete_extras: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Compare only: report what differs (as `failed`), copy and delete nothing. A
    /// verification trusts no record of an earlier sync: it compares checksums, or source
    /// ETags recorded on the objects, or asks the stores.
    pub verify_only: bool,
    /// Requests (copies, HEADs, deletes) in flight at once.
    pub concurrency: usize,
    /// Keys between the listing and their outcome at most: the bound of the work queue.
    pub window: usize,
    /// Keep what this sync learned in the destination under
    /// [`STATE_PREFIX`]`<name>/`, so that a re-run over unchanged data decides from the
    /// listings without a request per object. Use one name per source. `None` (the
    /// default) keeps nothing; the CLI and [`ShardedSync`](super::ShardedSync) always keep
    /// state.
    pub state: Option<String>,
    /// Called with the progress while the sync runs.
    pub progress: Option<SyncProgressFn>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            prefix: None,
            delete_extras: false,
            dry_run: false,
            verify_only: false,
            concurrency: 8,
            window: 1024,
            state: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("prefix", &self.prefix)
            .field("delete_extras", &self.delete_extras)
            .field("dry_run", &self.dry_run)
            .field("verify_only", &self.verify_only)
            .field("concurrency", &self.concurrency)
            .field("window", &self.window)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Requests a sync sent, by kind. Copies count once per object whatever they took (a
/// streamed copy is a GET and one or more writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SyncRequests {
    /// Listing pages of both stores.
    pub list_pages: u64,
    /// HEAD requests (two per object whose listings could not decide).
    pub heads: u64,
    /// Objects copied (or attempted).
    pub copies: u64,
    /// Destination objects deleted.
    pub deletes: u64,
    /// Reads of the sync's own state.
    pub state_reads: u64,
    /// Writes and deletes of the sync's own state.
    pub state_writes: u64,
}

impl SyncRequests {
    /// Every request but listing pages and copies: what a re-run over unchanged data
    /// should keep near zero.
    pub fn per_object_checks(&self) -> u64 {
        self.heads + self.state_reads + self.state_writes
    }

    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &SyncRequests) {
        self.list_pages += o.list_pages;
        self.heads += o.heads;
        self.copies += o.copies;
        self.deletes += o.deletes;
        self.state_reads += o.state_reads;
        self.state_writes += o.state_writes;
    }
}

/// What [`sync`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SyncReport {
    /// Objects the source listing returned under the prefix. Each ends as exactly one of
    /// `copied`, `skipped` or a `failed` entry: nothing is left out silently.
    pub source_objects: u64,
    /// Objects copied.
    pub copied: u64,
    /// Objects already in place (same size and checksum, or a copy of this version).
    pub skipped: u64,
    /// Destination objects deleted (`delete_extras`).
    pub deleted: u64,
    /// Keys that failed, with why (in `verify_only`: the keys that differ).
    pub failed: Vec<(String, String)>,
    /// Bytes copied.
    pub bytes: u64,
    /// Requests sent, by kind.
    pub requests: SyncRequests,
    /// Whether the records for re-runs were saved (false when none were asked for, in a
    /// dry run or verification, or when writing them failed).
    pub state_saved: bool,
}

impl SyncReport {
    /// Whether every source object was compared and found in place (what a verification
    /// must prove): none copied, none failed, and every listed source object skipped.
    pub fn all_in_place(&self) -> bool {
        self.failed.is_empty() && self.copied == 0 && self.skipped == self.source_objects
    }

    /// Adds `other`'s counts (the reports of several units or workers of one job).
    pub fn add(&mut self, other: &SyncReport) {
        self.source_objects += other.source_objects;
        self.copied += other.copied;
        self.skipped += other.skipped;
        self.deleted += other.deleted;
        self.failed.extend(other.failed.iter().cloned());
        self.bytes += other.bytes;
        self.requests.add(&other.requests);
        self.state_saved &= other.state_saved;
    }
}

/// A sync's progress: counts so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncProgress {
    /// Source objects listed.
    pub listed: u64,
    /// Bytes of the source objects listed.
    pub listed_bytes: u64,
    /// Source objects decided (in place, copied or failed).
    pub compared: u64,
    /// Objects copied.
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Objects found in place.
    pub skipped: u64,
    /// Destination objects deleted.
    pub deleted: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Whether the sync (or, for a worker, all of its units) has ended.
    pub done: bool,
}

impl SyncProgress {
    /// The counts of `r` (every source object it reports was listed and compared).
    pub(crate) fn of(r: &SyncReport) -> SyncProgress {
        SyncProgress {
            listed: r.source_objects,
            compared: r.source_objects,
            copied: r.copied,
            copied_bytes: r.bytes,
            skipped: r.skipped,
            deleted: r.deleted,
            failed: r.failed.len() as u64,
            ..Default::default()
        }
    }

    /// Adds `o`'s counts (the progress of several workers).
    pub fn add(&mut self, o: &SyncProgress) {
        self.listed += o.listed;
        self.listed_bytes += o.listed_bytes;
        self.compared += o.compared;
        self.copied += o.copied;
        self.copied_bytes += o.copied_bytes;
        self.skipped += o.skipped;
        self.deleted += o.deleted;
        self.failed += o.failed;
    }
}

/// Makes `dst` hold what `src` holds under `opts.prefix`: copies what is missing or
/// different, in parallel, verified end to end; optionally deletes extras. Listings are
/// merged as they are read (see the module documentation of `migrate`), so memory stays flat.
///
/// Whether an object is already in place is decided from the listings where they carry
/// enough (equal size, and: equal ETags on the same backend or between S3 stores; equal
/// CRC32C; the source ETag a copy recorded; or, with [`SyncOptions::state`], the versions
/// an earlier sync recorded), and by a HEAD of both otherwise. Interrupted at any point
/// and run again, it copies only what it cannot prove is already there. Failures of
/// single objects are reported, not fatal; listing failures are.
pub async fn sync(src: &Store, dst: &Store, opts: &SyncOptions) -> Result<SyncReport> {
    let slot = state_slot(dst, opts, "all", &Bounds::default())?;
    let on_progress = |p: &SyncProgress| {
        if let Some(f) = &opts.progress {
            f(p)
        }
    };
    let span = dst.op_span("sync", opts.prefix.as_deref().unwrap_or(""));
    let all = Bounds::default();
    let run = sync_range(src, dst, opts, &all, slot, &on_progress);
    observe::traced(span, run).await
}

/// The keys of one unit of work: after `after` (exclusive) up to `until` (inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub after: Option<String>,
    pub until: Option<String>,
}

/// Checks a state or job name: it becomes part of object names.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid_input(
            crate::Op::Sync,
            "migrate",
            format!("{what} {name:?} must be 1 to 64 of A-Z a-z 0-9 - _ . (not starting with '.')"),
        ))
    }
}

pub(crate) fn state_slot(
    dst: &Store,
    opts: &SyncOptions,
    unit: &str,
    bounds: &Bounds,
) -> Result<Option<Slot>> {
    let Some(job) = &opts.state else {
        return Ok(None);
    };
    check_name("the sync state name", job)?;
    Ok(Some(Slot::new(
        dst,
        job,
        unit,
        Scope {
            prefix: opts.prefix.clone().unwrap_or_default(),
            after: bounds.after.clone(),
            until: bounds.until.clone(),
        },
    )))
}

/// The counts of one run of [`sync_range`], shared with the tasks that update them.
#[derive(Default)]
struct Tally {
    listed: AtomicU64,
    listed_bytes: AtomicU64,
    src_pages: Arc<AtomicU64>,
    dst_pages: Arc<AtomicU64>,
    heads: AtomicU64,
    copies: AtomicU64,
    deletes: AtomicU64,
    state: state::Counts,
}

/// The longest prefix every key of `bounds` under `prefix` has: every string between two
/// that share a prefix shares it too. A unit listed by it reads only its own keys even
/// where a listing cannot start after a key (Azure).
fn narrowed(prefix: &str, bounds: &Bounds) -> String {
    let (Some(a), Some(u)) = (&bounds.after, &bounds.until) else {
        return prefix.to_string();
    };
    let common: usize = a
        .chars()
        .zip(u.chars())
        .take_while(|(x, y)| x == y)
        .map(|(c, _)| c.len_utf8())
        .sum();
    let lcp = &a[..common];
    if lcp.len() > prefix.len() && lcp.starts_with(prefix) {
        lcp.to_string()
    } else {
        prefix.to_string()
    }
}

/// One page-by-page listing of `store` within `bounds`, counting pages; keys under
/// [`STATE_PREFIX`] are not listed.
fn listing(
    store: &Store,
    prefix: &str,
    bounds: &Bounds,
    pages: &Arc<AtomicU64>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let req = ListRequest {
        prefix: narrowed(prefix, bounds),
        start_after: bounds.after.clone(),
        ..Default::default()
    };
    let (store, pages, until) = (store.clone(), pages.clone(), bounds.until.clone());
    stream::try_unfold(Some(req), move |req| {
        let (store, pages, until) = (store.clone(), pages.clone(), until.clone());
        async move {
            let Some(req) = req else {
                return Ok(None);
            };
            let page = store.list_page(&req).await?;
            pages.fetch_add(1, Ordering::Relaxed);
            let past_end = until
                .as_deref()
                .is_some_and(|u| page.objects.last().is_some_and(|m| m.key.as_str() > u));
            let next = match page.next_token {
                Some(t) if !past_end => Some(ListRequest {
                    token: Some(t),
                    ..req
                }),
                _ => None,
            };
            let objects = page.objects.into_iter().filter(move |m| {
                let k = m.key.as_str();
                !k.starts_with(STATE_PREFIX) && until.as_deref().is_none_or(|u| k <= u)
            });
            Ok(Some((stream::iter(objects.map(Ok)), next)))
        }
    })
    .try_flatten()
    .boxed()
}

/// One key of the merged listings.
struct Pair {
    src: Option<ObjectMeta>,
    dst: Option<ObjectMeta>,
}

impl Pair {
    fn key(&self) -> &str {
        self.src
            .as_ref()
            .or(self.dst.as_ref())
            .map(|m| m.key.as_str())
            .unwrap_or_default()
    }
}

/// The two listings merged by key.
struct Merge {
    a: BoxStream<'static, Result<ObjectMeta>>,
    b: BoxStream<'static, Result<ObjectMeta>>,
    x: Option<ObjectMeta>,
    y: Option<ObjectMeta>,
    started: bool,
}

impl Merge {
    async fn next(&mut self) -> Result<Option<Pair>> {
        if !self.started {
            self.started = true;
            self.x = self.a.try_next().await?;
            self.y = self.b.try_next().await?;
        }
        let order = match (&self.x, &self.y) {
            (None, None) => return Ok(None),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(s), Some(d)) => s.key.cmp(&d.key),
        };
        let mut pair = Pair {
            src: None,
            dst: None,
        };
        if order.is_le() {
            pair.src = std::mem::replace(&mut self.x, self.a.try_next().await?);
        }
        if order.is_ge() {
            pair.dst = std::mem::replace(&mut self.y, self.b.try_next().await?);
        }
        Ok(Some(pair))
    }
}

/// What became of one key.
enum Outcome {
    Copied(u64),
    Skipped,
    Deleted,
    Failed(String),
    /// A destination object the source does not have, left alone.
    Extra,
}

/// The keys of `bounds` synced (see [`sync`]); the records of `slot` read and written.
pub(crate) async fn sync_range(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    bounds: &Bounds,
    slot: Option<Slot>,
    on_progress: &(dyn Fn(&SyncProgress) + Sync),
) -> Result<SyncReport> {
    let prefix = opts.prefix.as_deref().unwrap_or("");
    let tally = Arc::new(Tally::default());
    let merge = Merge {
        a: listing(src, prefix, bounds, &tally.src_pages),
        b: listing(dst, prefix, bounds, &tally.dst_pages),
        x: None,
        y: None,
        started: false,
    };
    let use_state = !opts.verify_only;
    let save_state = use_state && !opts.dry_run;
    let mut prior = match (&slot, use_state) {
        (Some(s), true) => Some(s.prior(&tally.state).await),
        _ => None,
    };
    let mut writer = slot.as_ref().filter(|_| save_state).map(Slot::writer);
    let superseded = prior.as_ref().and_then(state::Prior::superseded);
    let limit = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let same_etags = comparable_etags(src, dst);
    let shared = Arc::new((src.clone(), dst.clone(), opts.clone()));

    // Listing, merge and the lookup of prior records run in key order; the decisions run
    // `window` at a time and come back in key order.
    // (The futures own what they use, so that a spawned sync is provably `Send`.)
    let counts = tally.clone();
    let decisions = stream::try_unfold((merge, prior.take()), move |(mut m, mut prior)| {
        let tally = counts.clone();
        async move {
            let Some(pair) = m.next().await? else {
                return Ok(None);
            };
            if let Some(s) = &pair.src {
                tally.listed.fetch_add(1, Ordering::Relaxed);
                tally.listed_bytes.fetch_add(s.size, Ordering::Relaxed);
            }
            let record = match (&mut prior, &pair.src, &pair.dst) {
                (Some(p), Some(_), Some(_)) => p.lookup(pair.key(), &tally.state).await,
                _ => None,
            };
            Ok(Some(((pair, record), (m, prior))))
        }
    });
    let mut outcomes = std::pin::pin!(
        decisions
            .map_ok(|(pair, record)| {
                let (limit, tally, shared) = (limit.clone(), tally.clone(), shared.clone());
                async move {
                    let (src, dst, opts) = &*shared;
                    let (outcome, entry) =
                        decide(src, dst, opts, same_etags, &pair, record, &limit, &tally).await;
                    Ok::<_, crate::Error>((pair, outcome, entry))
                }
            })
            .try_buffered(opts.window.max(opts.concurrency).max(1))
    );

    let mut report = SyncReport::default();
    let mut last = Instant::now();
    // Progress is the report so far, with what the listing has read beyond it.
    let progress = |report: &SyncReport, done: bool| SyncProgress {
        listed: tally.listed.load(Ordering::Relaxed),
        listed_bytes: tally.listed_bytes.load(Ordering::Relaxed),
        done,
        ..SyncProgress::of(report)
    };
    while let Some((pair, outcome, entry)) = outcomes.try_next().await? {
        if pair.src.is_some() {
            report.source_objects += 1;
        }
        match outcome {
            Outcome::Copied(bytes) => {
                report.copied += 1;
                report.bytes += bytes;
                observe::sync_object("copied");
                observe::sync_bytes(bytes);
            }
            Outcome::Skipped => {
                report.skipped += 1;
                observe::sync_object("skipped");
            }
            Outcome::Deleted => {
                report.deleted += 1;
                observe::sync_object("deleted");
            }
            Outcome::Failed(why) => {
                report.failed.push((pair.key().to_string(), why));
                observe::sync_object("failed");
            }
            Outcome::Extra => {}
        }
        if let (Some(w), Some(e)) = (&mut writer, entry) {
            w.push(e, &tally.state).await;
        }
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            on_progress(&progress(&report, false));
        }
    }
    if let Some(w) = writer {
        report.state_saved = w.finish(superseded, &tally.state).await;
    }
    on_progress(&progress(&report, true));
    report.failed.sort();
    report.requests = SyncRequests {
        list_pages: tally.src_pages.load(Ordering::Relaxed)
            + tally.dst_pages.load(Ordering::Relaxed),
        heads: tally.heads.load(Ordering::Relaxed),
        copies: tally.copies.load(Ordering::Relaxed),
        deletes: tally.deletes.load(Ordering::Relaxed),
        state_reads: tally.state.reads.load(Ordering::Relaxed),
        state_writes: tally.state.writes.load(Ordering::Relaxed),
    };
    Ok(report)
}

/// Whether equal ETags of the two stores mean equal bytes: the same backend, or two S3
/// stores (whose ETags are digests of the content and its part layout).
fn comparable_etags(src: &Store, dst: &Store) -> bool {
    Arc::ptr_eq(src.backend(), dst.backend())
        || (src.backend_name() == "s3" && dst.backend_name() == "s3")
}

/// How the listings (and records) settle a key whose sizes are equal.
fn listed_verdict(
    s: &ObjectMeta,
    d: &ObjectMeta,
    same_etags: bool,
    record: Option<&Entry>,
) -> Option<bool> {
    if same_etags && s.etag.is_some() && s.etag == d.etag {
        return Some(true);
    }
    if let (Some(a), Some(b)) = (declared(s), declared(d)) {
        return Some(a == b);
    }
    if let (Some(se), Some(recorded)) = (&s.etag, &d.source_etag) {
        return Some(se == recorded);
    }
    let (Some(se), Some(de)) = (&s.etag, &d.etag) else {
        return None;
    };
    record
        .filter(|r| r.1 == s.size && &r.2 == se && &r.3 == de)
        .map(|_| true)
}

/// The record of a key found in place, from what the listings showed.
fn kept(s: &ObjectMeta, d: &ObjectMeta) -> Option<Entry> {
    Some(Entry(
        s.key.as_str().to_string(),
        s.size,
        s.etag.clone()?,
        d.etag.clone()?,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    src: &Store,
    dst: &Store,
    opts: &SyncOptions,
    same_etags: bool,
    pair: &Pair,
    record: Option<Entry>,
    limit: &tokio::sync::Semaphore,
    tally: &Tally,
) -> (Outcome, Option<Entry>) {
    let key = pair.key();
    let Some(s) = &pair.src else {
        if !opts.delete_extras {
            return (Outcome::Extra, None);
        }
        if opts.verify_only {
            return (Outcome::Failed("not in the source".into()), None);
        }
        if opts.dry_run {
            return (Outcome::Deleted, None);
        }
        let _permit = limit.acquire().await;
        tally.deletes.fetch_add(1, Ordering::Relaxed);
        return match dst.delete(key).await {
            Ok(()) => (Outcome::Deleted, None),
            Err(e) => (Outcome::Failed(e.to_string()), None),
        };
    };
    let mut absent = true;
    if let Some(d) = &pair.dst {
        absent = false;
        if s.size == d.size {
            let verdict = match listed_verdict(s, d, same_etags, record.as_ref()) {
                Some(v) => Ok(v),
                None => {
                    let _permit = limit.acquire().await;
                    tally.heads.fetch_add(2, Ordering::Relaxed);
                    Box::pin(in_place(src, dst, key)).await
                }
            };
            match verdict {
                Ok(true) => return (Outcome::Skipped, kept(s, d)),
                Ok(false) => {}
                Err(e) => return (Outcome::Failed(e.to_string()), None),
            }
        }
    }
    if opts.verify_only {
        return (
            Outcome::Failed("missing or different in the destination".into()),
            None,
        );
    }
    if opts.dry_run {
        return (Outcome::Copied(0), None);
    }
    let _permit = limit.acquire().await;
    // Where the listing showed no object, the copy must not replace one that appeared
    // since (another worker's copy, the application's write).
    // (The copy's futures are boxed: a decision waiting in the window stays small, the
    // large state of a copy exists only for the `concurrency` copies running.)
    let mode = if absent && creates(src, dst) {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    tally.copies.fetch_add(1, Ordering::Relaxed);
    let copy_opts = CopyOptions {
        mode,
        progress: None,
    };
    match Box::pin(copy(src, key, dst, key, &copy_opts)).await {
        Ok(c) => {
            let entry = match (c.source_etag, c.meta.etag) {
                (Some(se), Some(de)) => Some(Entry(key.to_string(), c.bytes, se, de)),
                _ => None,
            };
            (Outcome::Copied(c.bytes), entry)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            tally.heads.fetch_add(2, Ordering::Relaxed);
            match Box::pin(in_place(src, dst, key)).await {
                Ok(true) => (Outcome::Skipped, None),
                Ok(false) => {
                    tally.copies.fetch_add(1, Ordering::Relaxed);
                    match Box::pin(copy(src, key, dst, key, &CopyOptions::default())).await {
                        Ok(c) => (Outcome::Copied(c.bytes), None),
                        Err(e) => (Outcome::Failed(e.to_string()), None),
                    }
                }
                Err(e) => (Outcome::Failed(e.to_string()), None),
            }
        }
        Err(e) => (Outcome::Failed(e.to_string()), None),
    }
}

/// Whether a copy from `src` to `dst` can be made conditional on absence.
fn creates(src: &Store, dst: &Store) -> bool {
    let caps = dst.capabilities();
    if Arc::ptr_eq(src.backend(), dst.backend()) {
        caps.copy_if_absent
    } else {
        caps.put_modes.create && caps.multipart_modes.create
    }
}

/// Whether `dst` already holds `src`'s object at `key`: equal sizes and the same CRC32C,
/// or a copy recorded from this very version.
pub(crate) async fn in_place(src: &Store, dst: &Store, key: &str) -> Result<bool> {
    let (s, d) = futures::try_join!(src.head(key), dst.head(key))?;
    Ok(s.size == d.size && listed_verdict(&s, &d, false, None) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_lists_the_prefix_its_bounds_share() {
        let b = |a: &str, u: &str| Bounds {
            after: Some(a.into()),
            until: Some(u.into()),
        };
        assert_eq!(narrowed("", &b("p3/k00100", "p3/k00250")), "p3/k00");
        assert_eq!(narrowed("p3/", &b("p3/a", "p4/b")), "p3/");
        assert_eq!(narrowed("x/", &b("p3/a", "p3/b")), "x/");
        assert_eq!(narrowed("", &b("é1", "é2")), "é");
        assert_eq!(narrowed("", &b("éa", "èb")), "");
        let open = Bounds {
            after: None,
            until: Some("z".into()),
        };
        assert_eq!(narrowed("q", &open), "q");
    }
}
