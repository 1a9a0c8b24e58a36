//! `cargo bench --bench sync`: the sync engine at 10^4, 10^5 and 10^6 keys with 1, 2 and
//! 4 workers (a `ShardedSync` whose workers run as tasks of one process), measuring keys
//! a second and the peak RSS of the sync itself.
//!
//! The stores are synthetic and keep no state, so that what is measured is the sync and
//! not the stores: the source generates its listing and bodies from the key; the
//! destination accepts writes and forgets them, and lists either nothing (the first run)
//! or every key with a size and an ETag and nothing else (the re-run: unchanged data on a
//! destination whose listing carries no metadata, as S3's). What the sync keeps for itself
//! (plan, claims, results, records) goes to a real fs store on disk, routed by prefix.
//!
//! Each configuration runs in its own process (this binary, re-run with
//! `CLOUDSTORE_SYNC_BENCH_CHILD=keys,workers`), which reports its peak RSS (`VmHWM`).
//! `CLOUDSTORE_SYNC_BENCH_MAX` caps the key counts (default 1000000). Under `cargo test
//! --benches` (no `--bench` argument) it syncs 2000 keys once per worker count.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use cloudstore::middleware::RouterBackend;
use cloudstore::migrate::{STATE_PREFIX, ShardedSync, SyncOptions, SyncReport};
use cloudstore::{
    Backend, ByteRange, Capabilities, CopyMode, Error, GetOptions, GetResult, Key, ListPage,
    ListRequest, ObjectMeta, Op, Payload, PutOptions, Result, Store, UploadId,
};

const SIZE: u64 = 64;
const PAGE: usize = 1000;

fn key_of(i: u64) -> String {
    format!("data/{:03}/k{i:09}", i % 1000)
}

/// The key index of a generated key.
fn index_of(key: &str) -> Option<u64> {
    key.rsplit_once("/k")?.1.parse().ok()
}

/// Generated keys in key order: the last three digits of `i` lead, so keys sort by
/// `(i % 1000, i)`.
fn nth_sorted(n: u64, pos: u64) -> u64 {
    // Keys with the same `i % 1000 = r` are r, r + 1000, ...; there are ceil((n - r) / 1000).
    let mut left = pos;
    for r in 0..1000u64.min(n) {
        let count = (n - r).div_ceil(1000);
        if left < count {
            return r + left * 1000;
        }
        left -= count;
    }
    unreachable!("position {pos} beyond {n} keys")
}

/// Where a listing after `after` starts: the position of the first key greater than it.
fn position_after(n: u64, after: &str) -> u64 {
    // Binary search over positions: generated keys are sorted by position.
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if key_of(nth_sorted(n, mid)).as_str() <= after {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn meta(key: &str, etag: String) -> ObjectMeta {
    ObjectMeta {
        key: Key::new(key).unwrap(),
        size: SIZE,
        etag: Some(etag),
        last_modified: std::time::UNIX_EPOCH,
        version: None,
        content_type: None,
        metadata: Default::default(),
        crc32c: None,
        source_etag: None,
    }
}

/// A store of `n` generated keys (source) or a sink that forgets what it is given
/// (destination, listing every key when `full`).
#[derive(Debug)]
struct Synthetic {
    n: u64,
    source: bool,
    full: bool,
    caps: Capabilities,
}

impl Synthetic {
    fn etag(&self, i: u64) -> String {
        if self.source {
            format!("\"s{i}\"")
        } else {
            format!("\"d{i}\"")
        }
    }

    fn lists(&self) -> bool {
        self.source || self.full
    }

    fn find(&self, op: Op, key: &Key) -> Result<u64> {
        index_of(key.as_str())
            .filter(|&i| i < self.n && key_of(i) == key.as_str() && self.lists())
            .ok_or_else(|| Error::not_found(op, "synthetic", key.as_str()))
    }
}

fn unsupported<T>(op: Op) -> Result<T> {
    Err(Error::unsupported(op, "synthetic", "not in this benchmark"))
}

#[async_trait]
impl Backend for Synthetic {
    fn name(&self) -> &str {
        "synthetic"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn put(&self, key: &Key, data: Payload, _opts: &PutOptions) -> Result<ObjectMeta> {
        // The bytes are dropped: a sink keeps nothing.
        drop(data);
        let i = index_of(key.as_str()).unwrap_or(0);
        Ok(meta(key.as_str(), self.etag(i)))
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let i = self.find(Op::Get, key)?;
        let m = meta(key.as_str(), self.etag(i));
        let range = opts
            .range
            .clone()
            .unwrap_or(ByteRange::Bounded(0..SIZE))
            .resolve(SIZE)
            .map_err(|e| Error::invalid_input(Op::Get, "synthetic", e))?;
        let body = Bytes::from(vec![(i % 251) as u8; (range.end - range.start) as usize]);
        Ok(GetResult {
            meta: m,
            range,
            body: futures::stream::once(async move { Ok(body) }).boxed(),
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let i = self.find(Op::Head, key)?;
        Ok(meta(key.as_str(), self.etag(i)))
    }

    async fn delete(&self, _key: &Key) -> Result<()> {
        Ok(())
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        if !self.lists() || !"data/".starts_with(&req.prefix) && !req.prefix.starts_with("data/") {
            return Ok(ListPage::default());
        }
        let after = match (&req.token, &req.start_after) {
            (Some(t), Some(s)) => Some(t.max(s).clone()),
            (t, s) => t.clone().or(s.clone()),
        };
        let mut pos = after.map_or(0, |a| position_after(self.n, &a));
        let mut page = ListPage::default();
        while pos < self.n && page.objects.len() < PAGE {
            let i = nth_sorted(self.n, pos);
            let k = key_of(i);
            pos += 1;
            if !k.starts_with(&req.prefix) {
                if k.as_str() > req.prefix.as_str() {
                    break;
                }
                continue;
            }
            page.objects.push(meta(&k, self.etag(i)));
        }
        if pos < self.n && page.objects.len() == PAGE {
            page.next_token = page.objects.last().map(|m| m.key.as_str().to_string());
        }
        Ok(page)
    }

    async fn copy(&self, _from: &Key, _to: &Key, _mode: CopyMode) -> Result<ObjectMeta> {
        unsupported(Op::Copy)
    }

    async fn create_multipart(&self, _key: &Key, _opts: &PutOptions) -> Result<UploadId> {
        unsupported(Op::CreateMultipart)
    }

    async fn put_part(
        &self,
        _key: &Key,
        _upload: &UploadId,
        _part: cloudstore::PartNumber,
        _data: Payload,
    ) -> Result<cloudstore::PartInfo> {
        unsupported(Op::PutPart)
    }

    async fn complete_multipart_with_metadata(
        &self,
        _key: &Key,
        _upload: &UploadId,
        _parts: &[cloudstore::PartInfo],
        _mode: &cloudstore::PutMode,
        _metadata: &cloudstore::Metadata,
    ) -> Result<ObjectMeta> {
        unsupported(Op::CompleteMultipart)
    }

    async fn abort_multipart(&self, _key: &Key, _upload: &UploadId) -> Result<()> {
        unsupported(Op::AbortMultipart)
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn stores(n: u64, full: bool, state: &Store) -> (Store, Store) {
    let caps = Capabilities::s3_like();
    let src = Synthetic {
        n,
        source: true,
        full: true,
        caps: caps.clone(),
    };
    let sink = Synthetic {
        n,
        source: false,
        full,
        caps,
    };
    let dst = RouterBackend::new(Arc::new(sink)).route(".cloudstore/", state.backend().clone());
    (Store::new(src), Store::new(dst))
}

/// The job's report, its seconds and its number of units.
async fn run_job(src: &Store, dst: &Store, workers: usize, run: &str) -> (SyncReport, f64, u64) {
    let job = ShardedSync::new(
        src,
        dst,
        "bench",
        run,
        SyncOptions {
            concurrency: 32,
            window: std::env::var("CLOUDSTORE_SYNC_BENCH_WINDOW")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(SyncOptions::default().window),
            ..Default::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let units = std::env::var("CLOUDSTORE_SYNC_BENCH_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8 * workers);
    let plan = job.plan(units).await.unwrap();
    let reports = futures::future::join_all((0..workers).map(|w| {
        let job = job.clone();
        async move { job.run_worker(&format!("w{w}")).await.unwrap() }
    }))
    .await;
    let secs = started.elapsed().as_secs_f64();
    let mut total = SyncReport::default();
    for r in &reports {
        total.add(&r.report);
    }
    (total, secs, plan.units.len() as u64)
}

fn child(spec: &str) {
    let (n, workers) = spec.split_once(',').expect("keys,workers");
    let (n, workers): (u64, usize) = (n.parse().unwrap(), workers.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let state = Store::local(dir.path()).unwrap();
        let (src, dst) = stores(n, false, &state);
        let (first, first_secs, _) = run_job(&src, &dst, workers, "first").await;
        assert_eq!(first.copied, n, "{first:?}");
        let (src, dst) = stores(n, true, &state);
        let (again, again_secs, units) = run_job(&src, &dst, workers, "again").await;
        assert_eq!((again.copied, again.skipped), (0, n), "{again:?}");
        let q = &again.requests;
        // Requests besides listing pages: HEADs, copies, records, and the job's own plan,
        // claims and results.
        let coordination = 2 + 4 * units;
        let per_object = (q.per_object_checks() + q.copies + coordination) as f64 / n as f64;
        println!(
            "{{\"keys\":{n},\"workers\":{workers},\"first_keys_s\":{:.0},\"rerun_keys_s\":{:.0},\"peak_rss_kib\":{},\"rerun_requests_per_object\":{per_object:.5},\"rerun_list_pages\":{},\"rerun_heads\":{}}}",
            n as f64 / first_secs,
            n as f64 / again_secs,
            peak_rss_kib(),
            q.list_pages,
            q.heads
        );
        let _ = STATE_PREFIX;
    });
}

fn main() {
    if let Ok(spec) = std::env::var("CLOUDSTORE_SYNC_BENCH_CHILD") {
        child(&spec);
        return;
    }
    // Under `cargo test --benches` (no `--bench` argument): one small run of each worker
    // count, so that the benchmark's own checks run with the tests.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let max: u64 = std::env::var("CLOUDSTORE_SYNC_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2_000 } else { 1_000_000 });
    let exe = std::env::current_exe().unwrap();
    println!("sync benchmark: synthetic source and sink, records on local disk; 2 runtime threads");
    println!(
        "| keys | workers | first sync keys/s | re-run keys/s | peak RSS MiB | re-run requests/object (besides listing pages) |"
    );
    println!("|--:|--:|--:|--:|--:|--:|");
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let sizes: Vec<u64> = if smoke {
        vec![max]
    } else {
        [10_000u64, 100_000, 1_000_000]
            .into_iter()
            .filter(|&n| n <= max)
            .collect()
    };
    for n in sizes {
        for workers in [1usize, 2, 4] {
            let out = std::process::Command::new(&exe)
                .env("CLOUDSTORE_SYNC_BENCH_CHILD", format!("{n},{workers}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            println!(
                "| {n} | {workers} | {} | {} | {:.1} | {} |",
                v["first_keys_s"],
                v["rerun_keys_s"],
                v["peak_rss_kib"].as_f64().unwrap() / 1024.0,
                v["rerun_requests_per_object"]
            );
            rows.push(v);
        }
    }
    if smoke {
        return;
    }
    let rss = |n: u64, w: u64| {
        rows.iter()
            .find(|v| v["keys"] == n && v["workers"] == w)
            .and_then(|v| v["peak_rss_kib"].as_f64())
    };
    for w in [1u64, 2, 4] {
        if let (Some(a), Some(b)) = (rss(100_000, w), rss(1_000_000, w)) {
            let growth = b / a - 1.0;
            println!(
                "target: peak RSS within 10% from 10^5 to 10^6 keys, {w} worker(s): {:+.1}% -> {}",
                growth * 100.0,
                if growth <= 0.10 { "met" } else { "NOT met" }
            );
        }
    }
    let worst = rows
        .iter()
        .filter_map(|v| v["rerun_requests_per_object"].as_f64())
        .fold(0.0f64, f64::max);
    println!(
        "target: a re-run over unchanged data sends at most 0.05 requests per object besides listing pages: worst {worst:.5} -> {}",
        if worst <= 0.05 { "met" } else { "NOT met" }
    );
}
