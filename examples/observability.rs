//! Spans as JSON logs and metrics as a Prometheus scrape, with nothing to write but the
//! two installs: every store from `Store::from_url` records them.
//!
//! Runs an upload (multipart), a download and a sync between two local directories, then
//! prints the Prometheus text a scrape would get. The JSON span lines go to stderr.
//!
//! ```text
//! cargo run --example observability            # the scrape on stdout, spans on stderr
//! cargo run --example observability 2>/dev/null
//! ```

use cloudstore::migrate::{self, SyncOptions};
use cloudstore::observe;
use cloudstore::{PutOptions, Store, StoreOptions, TransferConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::io::AsyncWriteExt;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Metrics: a Prometheus recorder; request latency with buckets, not a summary.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(observe::REQUEST_DURATION.to_string()),
            observe::DURATION_BUCKETS,
        )?
        .build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    observe::describe();

    // Spans: JSON lines on stderr, one when each span closes (with its fields and timing).
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();

    let dir = tempfile::tempdir()?;
    let url = |name: &str| format!("file://{}/{name}", dir.path().display());
    for name in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(name))?;
    }
    let small_parts = TransferConfig {
        part_size: 5 * 1024 * 1024,
        ..TransferConfig::default()
    };
    let a = Store::from_url(&url("a"), &StoreOptions::new())?.with_transfer_config(small_parts);
    let b = Store::from_url(&url("b"), &StoreOptions::new())?;

    // An upload of 12 MiB in three parts, and a download of it.
    let data = vec![7u8; 12 * 1024 * 1024];
    let mut up = a.writer("data/big.bin", &PutOptions::default())?;
    up.write_all(&data).await?;
    up.finish().await?;
    let read = a.get_bytes("data/big.bin").await?;
    assert_eq!(read.len(), data.len());

    // A few small objects, and a sync of everything to the other directory.
    for i in 0..5 {
        a.put(&format!("data/small-{i}.txt"), format!("object {i}"))
            .await?;
    }
    let report = migrate::sync(&a, &b, &SyncOptions::default()).await?;
    eprintln!("synced: {} copied, {} bytes", report.copied, report.bytes);

    println!("{}", scrape.render());
    Ok(())
}
