//! `cargo bench --bench simple_ops`: single-shot put/get throughput and small-object
//! operation rate on the memory and fs backends. Prints a markdown table and writes it to
//! `target/bench-simple_ops.md`. The transfer-engine benchmarks (multipart, peers, clouds)
//! come with the transfer engine.
//!
//! Size of the large object: `CLOUDSTORE_BENCH_MIB` (default 64).

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

use cloudstore::{FsBackend, Store};

struct Row {
    backend: &'static str,
    what: String,
    value: String,
}

async fn measure(backend: &'static str, store: Store, mib: usize, rows: &mut Vec<Row>) {
    let body = Bytes::from(vec![7u8; mib << 20]);
    let mb = (mib << 20) as f64 / 1e6;

    let t = Instant::now();
    store.put("bench/large", body.clone()).await.expect("put");
    rows.push(Row {
        backend,
        what: format!("put {mib} MiB"),
        value: format!("{:.0} MB/s", mb / t.elapsed().as_secs_f64()),
    });

    let t = Instant::now();
    let got = store.get_bytes("bench/large").await.expect("get");
    assert_eq!(got.len(), body.len());
    rows.push(Row {
        backend,
        what: format!("get {mib} MiB"),
        value: format!("{:.0} MB/s", mb / t.elapsed().as_secs_f64()),
    });

    let n = 2000usize;
    let t = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let store = store.clone();
            async move {
                store
                    .put(&format!("bench/small/{i:05}"), "tiny")
                    .await
                    .expect("small put");
            }
        })
        .await;
    rows.push(Row {
        backend,
        what: format!("{n} small puts, 32 in flight"),
        value: format!("{:.0} ops/s", n as f64 / t.elapsed().as_secs_f64()),
    });

    let t = Instant::now();
    let listed = store.list_all(Some("bench/small/")).await.expect("list");
    assert_eq!(listed.len(), n);
    rows.push(Row {
        backend,
        what: format!("list {n} keys"),
        value: format!("{:.0} keys/s", n as f64 / t.elapsed().as_secs_f64()),
    });

    for m in listed {
        store.delete(m.key.as_str()).await.expect("delete");
    }
    store.delete("bench/large").await.expect("delete");
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it quick
    // unless benchmarking was asked for.
    let benching = std::env::args().any(|a| a == "--bench");
    let mib: usize = std::env::var("CLOUDSTORE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 64 } else { 1 });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/simple_ops");
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = Vec::new();
    measure("memory", Store::memory(), mib, &mut rows).await;
    measure(
        "fs",
        Store::new(FsBackend::new(&dir).expect("fs root")),
        mib,
        &mut rows,
    )
    .await;
    measure(
        "fs (fsync off)",
        Store::new(FsBackend::new(&dir).expect("fs root").with_fsync(false)),
        mib,
        &mut rows,
    )
    .await;

    let mut table = String::from("| backend | operation | result |\n|---|---|---|\n");
    for r in &rows {
        table.push_str(&format!("| {} | {} | {} |\n", r.backend, r.what, r.value));
    }
    table.push_str("\nmemory stores and returns the caller's `Bytes` without copying, so its byte rates measure bookkeeping, not copying.\n");
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-simple_ops.md");
    std::fs::write(&out, &table).expect("write the table");
    println!("written to {}", out.display());
}
