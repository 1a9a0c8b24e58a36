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
use futures::{StreamExt, TryStreamExt};

use cloudstore::{PutMode, PutOptions, Store, StoreOptions};

const PART: usize = 16 * 1024 * 1024;
const IN_FLIGHT: usize = 4;

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

fn part(n: usize, total: usize) -> Bytes {
    let start = n * PART;
    let end = (start + PART).min(total);
    let mut v = Vec::with_capacity(end - start);
    for b in (start >> 20)..end.div_ceil(1 << 20) {
        v.extend_from_slice(&block(b as u64));
    }
    v.truncate(end - start);
    Bytes::from(v)
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
    println!(
        "store   {url} (prefix '{}', backend {})",
        store.prefix(),
        store.backend_name()
    );

    // Upload: a multipart upload, parts generated on the fly, several in flight.
    let parts = total.div_ceil(PART).max(1);
    let started = Instant::now();
    let id = store
        .create_multipart(
            key,
            &PutOptions::default().with_content_type("application/octet-stream"),
        )
        .await?;
    let uploaded: Vec<_> = futures::stream::iter(0..parts)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            async move {
                let data = tokio::task::spawn_blocking(move || part(n, total))
                    .await
                    .expect("generator");
                store.put_part(key, &id, n as u32 + 1, data).await
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    let meta = store
        .complete_multipart(key, &id, &uploaded, &PutMode::Overwrite)
        .await?;
    let up = started.elapsed().as_secs_f64();
    println!(
        "upload  {key}: {} bytes in {parts} parts of {} MiB, {up:.2} s, {:.0} MiB/s",
        meta.size,
        PART >> 20,
        mib_s(total, up)
    );

    // Download: stream the body and compare every byte with what was generated.
    let started = Instant::now();
    let mut body = store.get(key).await?.into_checked_stream();
    let (mut offset, mut expected, mut block_no) = (0usize, Vec::new(), 0u64);
    let mut exp_pos = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let mut c = &chunk[..];
        while !c.is_empty() {
            if exp_pos == expected.len() {
                expected = block(block_no);
                block_no += 1;
                exp_pos = 0;
            }
            let n = c.len().min(expected.len() - exp_pos);
            if c[..n] != expected[exp_pos..exp_pos + n] {
                return Err(format!("mismatch near byte {offset}").into());
            }
            c = &c[n..];
            exp_pos += n;
            offset += n;
        }
    }
    if offset != total {
        return Err(format!("read {offset} bytes, expected {total}").into());
    }
    let down = started.elapsed().as_secs_f64();
    println!(
        "verify  {offset} bytes read back and identical, {down:.2} s, {:.0} MiB/s",
        mib_s(offset, down)
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
