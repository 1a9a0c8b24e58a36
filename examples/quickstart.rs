//! Quickstart: write a generated object of a few hundred MiB to the embedded default (a
//! local directory under `target/`), stream it back, verify every byte, list, and print
//! what happened.
//!
//! ```text
//! cargo run --release --example quickstart
//! CLOUDSTORE_QUICKSTART_MIB=1024 cargo run --release --example quickstart   # bigger
//! ```

use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use cloudstore::{PutOptions, Store, StoreOptions};

/// Deterministic content: block `i` (1 MiB) is a function of `i` alone, so the reader can
/// regenerate what it expects at any offset.
fn block(i: u64) -> Vec<u8> {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(1 << 20);
    while v.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::var("CLOUDSTORE_QUICKSTART_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let total = mib * 1024 * 1024;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/quickstart-data");
    let url = format!("file://{}", root.display());
    let store = Store::from_url(&url, &StoreOptions::new())?.with_prefix("quickstart")?;
    let key = "generated/object.bin";
    let cfg = store.transfer_config().clone();
    // A local directory takes parts one at a time, as they fill; network stores in parallel.
    let in_flight = cfg.parts_in_flight(store.capabilities());
    println!(
        "store   {url} (prefix '{}', backend {}; parts of {} MiB, {in_flight} in flight, ranges {} in flight)",
        store.prefix(),
        store.backend_name(),
        cfg.part_size >> 20,
        cfg.concurrency
    );

    // Upload: a streaming writer; owned blocks go to the parts without copying.
    let started = Instant::now();
    let mut up = store
        .writer(
            key,
            &PutOptions::default().with_content_type("application/octet-stream"),
        )?
        .with_size_hint(total as u64);
    for b in 0..total.div_ceil(1 << 20) {
        let mut blk = block(b as u64);
        blk.truncate((total - (b << 20)).min(1 << 20));
        up.write_bytes(Bytes::from(blk)).await?;
    }
    let meta = up.finish().await?;
    let up_s = started.elapsed().as_secs_f64();
    let crc = store
        .head(key)
        .await?
        .crc32c
        .map_or_else(|| "not recorded".to_string(), |c| format!("{c:08x}"));
    println!(
        "upload  {key}: {} bytes, {up_s:.2} s, {:.0} MiB/s, CRC32C {crc}",
        meta.size,
        mib_s(total, up_s)
    );

    // Stream it back through the ordered read-ahead reader and compare every byte.
    let started = Instant::now();
    let mut reader = store.reader(key).await?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut b) = (0usize, 0u64);
    loop {
        let want = (total - offset).min(1 << 20);
        if want == 0 {
            break;
        }
        reader.read_exact(&mut buf[..want]).await?;
        if buf[..want] != block(b)[..want] {
            return Err(format!("mismatch in the MiB at {offset}").into());
        }
        offset += want;
        b += 1;
    }
    if reader.read(&mut buf).await? != 0 {
        return Err("the object is longer than what was written".into());
    }
    let down = started.elapsed().as_secs_f64();
    println!(
        "verify  {offset} bytes read back and identical (checksum verified), {down:.2} s, {:.0} MiB/s",
        mib_s(offset, down)
    );

    // A parallel ranged download into a file.
    let file = root.with_file_name("quickstart-download.bin");
    let started = Instant::now();
    store.download_file(key, &file).await?;
    let dl = started.elapsed().as_secs_f64();
    println!(
        "file    {} ({} bytes), {dl:.2} s, {:.0} MiB/s",
        file.display(),
        std::fs::metadata(&file)?.len(),
        mib_s(total, dl)
    );

    // List what is there.
    let listing = store.list_with_delimiter(None).await?;
    println!(
        "list    {} common prefixes: {:?}",
        listing.common_prefixes.len(),
        listing.common_prefixes
    );
    for m in store.list_all(Some("generated/")).await? {
        println!(
            "        {} {} bytes etag {}",
            m.key,
            m.size,
            m.etag.unwrap_or_default()
        );
    }
    println!("files   {}", root.join("quickstart").join(key).display());
    Ok(())
}
