//! Moves a prefix from one store to another, verified, and prints a report: by default
//! from the S3 emulator (SeaweedFS) to Azurite.
//!
//! ```text
//! scripts/emulators.sh start && eval "$(scripts/emulators.sh env)"
//! cargo run --release --example migrate                 # s3://cloudstore-test/demo -> az://cloudstore-test/demo
//! cargo run --release --example migrate -- SRC_URL DST_URL
//! ```
//!
//! With the default URLs it first writes 300 demo objects (1 KiB to 12 MiB) to the source
//! if it has none. Then: a sync (copies, verified end to end), a verify-only pass, and a
//! second sync that has nothing left to copy.

use std::time::Instant;

use cloudstore::migrate::{self, SyncOptions, SyncReport};
use cloudstore::{Store, StoreOptions, TransferConfig};
use tokio::io::AsyncWriteExt;

fn print(label: &str, r: &SyncReport, secs: f64) {
    println!(
        "{label:<14} copied {:>4}  skipped {:>4}  deleted {:>3}  failed {:>3}  {:>10} bytes  {:>6.1} s  {:>6.1} MB/s",
        r.copied,
        r.skipped,
        r.deleted,
        r.failed.len(),
        r.bytes,
        secs,
        r.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    for (k, why) in r.failed.iter().take(10) {
        println!("    {k}: {why}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo = args.is_empty();
    let (src_url, dst_url) = match args.as_slice() {
        [a, b] => (a.clone(), b.clone()),
        [] => {
            let (Ok(bucket), Ok(container)) = (
                std::env::var("CLOUDSTORE_TEST_S3_BUCKET"),
                std::env::var("CLOUDSTORE_TEST_AZURE_CONTAINER"),
            ) else {
                eprintln!(
                    "no emulator settings: run `scripts/emulators.sh start && eval \"$(scripts/emulators.sh env)\"` first, or pass SRC_URL DST_URL"
                );
                std::process::exit(2);
            };
            (
                format!("s3://{bucket}/demo"),
                format!("az://{container}/demo"),
            )
        }
        _ => {
            eprintln!("usage: migrate [SRC_URL DST_URL]");
            std::process::exit(2);
        }
    };
    let cfg = TransferConfig {
        part_size: 8 << 20,
        ..Default::default()
    };
    let src = Store::from_url(&src_url, &StoreOptions::new())?.with_transfer_config(cfg.clone());
    let dst = Store::from_url(&dst_url, &StoreOptions::new())?.with_transfer_config(cfg);
    println!("migrating {src_url} -> {dst_url}");

    if demo && src.list_all(None).await?.is_empty() {
        let t = Instant::now();
        for i in 0..300usize {
            let size = if i % 50 == 0 {
                (12 << 20) + i
            } else {
                1024 + (i * 7919) % 65_536
            };
            let body: Vec<u8> = (0..size)
                .map(|j| (j as u8).wrapping_mul(31) ^ i as u8)
                .collect();
            let mut up = src.writer(
                &format!("tenant-{}/file-{i:04}.bin", i % 7),
                &Default::default(),
            )?;
            up.write_all(&body).await?;
            up.finish().await?;
        }
        println!(
            "wrote 300 demo objects to the source in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    let opts = SyncOptions {
        delete_extras: true,
        concurrency: 16,
        ..Default::default()
    };
    let t = Instant::now();
    let first = migrate::sync(&src, &dst, &opts).await?;
    print("sync", &first, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let verify = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            verify_only: true,
            ..opts.clone()
        },
    )
    .await?;
    print("verify", &verify, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let again = migrate::sync(&src, &dst, &opts).await?;
    print("sync again", &again, t.elapsed().as_secs_f64());

    let ok = first.failed.is_empty() && verify.failed.is_empty() && again.copied == 0;
    println!(
        "{}",
        if ok {
            "done: the destination holds what the source holds, verified"
        } else {
            "NOT done: see the failures above; run again to finish"
        }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
