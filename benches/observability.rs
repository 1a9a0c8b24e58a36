//! `cargo bench --bench observability`: what spans and metrics cost per request, side by
//! side in one process, on the memory backend (where a request costs least, so the
//! overhead shows most):
//!
//! 1. a store without the `Observed` layer, nothing installed;
//! 2. the same store with the layer (as `Store::from_url` builds it), nothing installed;
//! 3. then with a Prometheus recorder and a `tracing` subscriber at INFO installed
//!    (operation spans on, request spans off: a production setting), with and without
//!    the layer;
//! 4. and with the subscriber at DEBUG (every request a span, as `-vv`).
//!
//! Each row is the median of 5 rounds of `CLOUDSTORE_BENCH_OPS` HEAD requests (default
//! 200,000) on one thread. From the extra nanoseconds per request it derives the CPU a
//! large transfer pays per GB with 16 MiB parts (64 requests per GiB), the quantity the
//! transfer benchmark measures too coarsely to resolve. Writes
//! `target/bench-observability.md`. Under `cargo test --benches` it runs 2,000 requests.

use std::sync::Arc;
use std::time::Instant;

use cloudstore::middleware::Observed;
use cloudstore::{MemoryBackend, Store};

fn per_request_ns(store: &Store, rt: &tokio::runtime::Runtime, ops: usize) -> f64 {
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..ops {
                    store.head("k").await.expect("head");
                }
                t.elapsed().as_nanos() as f64 / ops as f64
            })
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let ops: usize = match std::env::var("CLOUDSTORE_BENCH_OPS") {
        Ok(v) => v.parse().expect("CLOUDSTORE_BENCH_OPS is a number"),
        Err(_) if benching => 200_000,
        Err(_) => 2_000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = Store::memory();
    let observed = Store::new(Observed::new(Arc::new(MemoryBackend::new())));
    rt.block_on(async {
        bare.put("k", "v").await.unwrap();
        observed.put("k", "v").await.unwrap();
    });

    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "no layer, nothing installed",
        per_request_ns(&bare, &rt, ops),
    ));
    rows.push((
        "`Observed`, nothing installed",
        per_request_ns(&observed, &rt, ops),
    ));

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder");
    cloudstore::observe::describe();
    let level = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let debug = level.clone();
    // One subscriber whose level can be raised: INFO first, then DEBUG.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish();
    use tracing_subscriber::layer::SubscriberExt;
    let filtered = subscriber.with(tracing_subscriber::filter::filter_fn(move |m| {
        debug.load(std::sync::atomic::Ordering::Relaxed) || *m.level() <= tracing::Level::INFO
    }));
    tracing::subscriber::set_global_default(filtered).expect("the only subscriber");

    rows.push((
        "no layer, recorder and INFO subscriber",
        per_request_ns(&bare, &rt, ops),
    ));
    rows.push((
        "`Observed`, recorder and INFO subscriber",
        per_request_ns(&observed, &rt, ops),
    ));
    level.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    rows.push((
        "`Observed`, recorder and DEBUG subscriber",
        per_request_ns(&observed, &rt, ops),
    ));
    // The recorder really counted (the rows would prove nothing otherwise).
    let text = scrape.render();
    assert!(
        text.contains(
            "cloudstore_requests_total{backend=\"memory\",operation=\"head\",outcome=\"ok\"}"
        ),
        "the recorder saw no request"
    );

    let base = rows[0].1;
    let mut t = format!(
        "observability cost per request: memory backend, HEAD, one thread, median of 5 x {ops}\n\n\
         | setting | ns per request | extra ns | CPU-s/GB at 16 MiB parts |\n|---|--:|--:|--:|\n"
    );
    for (what, ns) in &rows {
        let extra = ns - base;
        // 64 requests per GiB: 1 GB = 10^9 / 2^24 parts.
        let per_gb = extra.max(0.0) * (1e9 / (16u64 << 20) as f64) / 1e9;
        t.push_str(&format!(
            "| {what} | {ns:.0} | {extra:+.0} | {per_gb:.6} |\n"
        ));
    }
    let worst = rows.iter().map(|r| r.1).fold(0f64, f64::max) - base;
    let per_gb = worst.max(0.0) * (1e9 / (16u64 << 20) as f64) / 1e9;
    t.push_str(&format!(
        "\n- at most {per_gb:.6} CPU-s/GB for large transfers (target <= 0.02): {}\n",
        if per_gb <= 0.02 { "met" } else { "NOT met" }
    ));
    print!("{t}");
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-observability.md");
    let _ = std::fs::write(&out, &t);
}
