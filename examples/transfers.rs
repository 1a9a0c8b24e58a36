//! The transfer engine on the local directory store: a streaming upload with progress, a
//! resumable file upload (interrupted, then finished from its checkpoint as another
//! process would), and a parallel download verified by its checksum.
//!
//! ```text
//! cargo run --release --example transfers
//! ```
//! Point it elsewhere with `CLOUDSTORE_URL` (e.g. `s3://bucket/prefix` with the `AWS_*`
//! environment): the code does not change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use cloudstore::transfer::FileUploadOptions;
use cloudstore::{PutOptions, Store, StoreOptions, TransferConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/transfers-example");
    std::fs::create_dir_all(&target)?;
    let url = std::env::var("CLOUDSTORE_URL")
        .unwrap_or_else(|_| format!("file://{}", target.join("store").display()));
    let store = Store::from_url(&url, &StoreOptions::new())?.with_transfer_config(TransferConfig {
        part_size: 8 * 1024 * 1024,
        concurrency: 4,
        ..Default::default()
    });
    println!("store    {url}");

    // 1. A streaming upload of unknown size, with progress.
    let parts = Arc::new(AtomicU64::new(0));
    let seen = parts.clone();
    let mut up = store
        .writer("example/stream.bin", &PutOptions::default())?
        .with_progress(Arc::new(move |p| seen.store(p.parts, Ordering::Relaxed)));
    for i in 0..40u8 {
        up.write_all(&vec![i; 1 << 20]).await?;
    }
    let meta = up.finish().await?;
    println!(
        "stream   {} bytes in {} parts",
        meta.size,
        parts.load(Ordering::Relaxed).max(1)
    );

    // 2. A file upload with a checkpoint, given up half-way (dropped), then resumed.
    let file = target.join("input.bin");
    std::fs::write(
        &file,
        (0..64u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )?;
    let checkpoint = target.join("input.checkpoint.json");
    let options = FileUploadOptions {
        checkpoint: Some(checkpoint.clone()),
        ..Default::default()
    };
    let interrupted = tokio::time::timeout(
        std::time::Duration::from_millis(30),
        store.upload_file_with("example/file.bin", &file, &options),
    )
    .await;
    match interrupted {
        Ok(done) => println!(
            "file     finished before the interruption: {} bytes",
            done?.size
        ),
        Err(_) if checkpoint.exists() => {
            let cp = cloudstore::transfer::Checkpoint::load(&checkpoint)?;
            println!(
                "file     interrupted with {} parts recorded; resuming",
                cp.parts.len()
            );
            let meta = store.resume_upload(&checkpoint, &file, None).await?;
            println!("file     resumed: {} bytes", meta.size);
        }
        Err(_) => {
            // Interrupted before the first checkpoint: nothing to resume, start again.
            let meta = store
                .upload_file_with("example/file.bin", &file, &options)
                .await?;
            println!("file     uploaded again: {} bytes", meta.size);
        }
    }

    // 3. A parallel download, verified against the stored checksum.
    let out = target.join("output.bin");
    let meta = store.download_file("example/file.bin", &out).await?;
    let same = std::fs::read(&out)? == std::fs::read(&file)?;
    println!(
        "download {} bytes to {} (identical: {same}, checksum {})",
        meta.size,
        out.display(),
        store
            .head("example/file.bin")
            .await?
            .crc32c
            .map_or_else(|| "native".to_string(), |c| format!("CRC32C {c:08x}"))
    );
    Ok(())
}
