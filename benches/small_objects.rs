//! `cargo bench --bench small_objects`: 10,000 small objects (1 B to 2 KB) put, listed, read
//! and deleted with 64 requests in flight, on memory, fs and the emulators of
//! `scripts/emulators.sh` that are up (their settings are read from the script when the
//! environment lacks them). Prints operations per second as a markdown table and writes it
//! to `target/bench-small_objects.md`. `CLOUDSTORE_LOAD_OBJECTS` changes the count.
//! Under `cargo test --benches` (no `--bench` argument) it does nothing.

use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use cloudstore::{FsBackend, Store, StoreOptions};

const IN_FLIGHT: usize = 64;

fn body(i: usize) -> Bytes {
    let line = format!("object {i};");
    Bytes::from(line.repeat(1 + i % 2000 / line.len()))
}

/// Runs `f` on 0..n with 64 in flight; returns operations a second.
async fn phase<F, Fut>(n: usize, f: F) -> cloudstore::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = cloudstore::Result<()>>,
{
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn measure(store: Store, n: usize) -> cloudstore::Result<[f64; 4]> {
    let key = |i: usize| format!("obj/{i:06}");
    let put = phase(n, |i| {
        let s = store.clone();
        async move { s.put(&key(i), body(i)).await.map(|_| ()) }
    })
    .await?;
    let t = Instant::now();
    let listed = store.list_all(None).await?.len();
    let list = listed as f64 / t.elapsed().as_secs_f64();
    assert_eq!(listed, n);
    let get = phase(n, |i| {
        let s = store.clone();
        async move {
            let b = s.get_bytes(&key(i)).await?;
            assert_eq!(b, body(i));
            Ok(())
        }
    })
    .await?;
    let delete = phase(n, |i| {
        let s = store.clone();
        async move { s.delete(&key(i)).await }
    })
    .await?;
    Ok([put, list, get, delete])
}

/// The emulators' settings, from the environment or from `scripts/emulators.sh env`.
fn load_emulator_env() {
    if std::env::var("AWS_ENDPOINT").is_ok() {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulators.sh");
    let Ok(out) = std::process::Command::new("bash")
        .arg(script)
        .arg("env")
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            // SAFETY: set before any other thread of this process reads the environment.
            unsafe { std::env::set_var(k, v.trim_matches('"')) };
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    load_emulator_env();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n: usize = std::env::var("CLOUDSTORE_LOAD_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let scope = format!(
        "bench/small-objects/{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/small_objects");
    let _ = std::fs::remove_dir_all(&dir);
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let targets: Vec<(&str, Option<String>)> = vec![
        ("memory", None),
        ("fs", None),
        (
            "SeaweedFS",
            Some(format!("s3://{}/{scope}", var("CLOUDSTORE_TEST_S3_BUCKET"))),
        ),
        (
            "Azurite",
            Some(format!(
                "az://{}/{scope}",
                var("CLOUDSTORE_TEST_AZURE_CONTAINER")
            )),
        ),
    ];
    let mut table = String::from(
        "| target | put/s | list keys/s | get/s | delete/s |\n|---|--:|--:|--:|--:|\n",
    );
    for (name, url) in targets {
        let store = match (name, url) {
            ("memory", _) => Store::memory(),
            ("fs", _) => Store::new(FsBackend::new(&dir).expect("fs root")),
            (_, Some(u)) => match Store::from_url(&u, &StoreOptions::new()) {
                Ok(s) => s,
                Err(e) => {
                    table.push_str(&format!("| {name} | not measured: {e} | | | |\n"));
                    continue;
                }
            },
            _ => unreachable!(),
        };
        match rt.block_on(measure(store, n)) {
            Ok([p, l, g, d]) => {
                table.push_str(&format!("| {name} | {p:.0} | {l:.0} | {g:.0} | {d:.0} |\n"))
            }
            Err(e) => table.push_str(&format!("| {name} | not measured: {e} | | | |\n")),
        }
    }
    table.push_str(&format!(
        "\n{n} objects of 1 B to 2 KB, {IN_FLIGHT} requests in flight; fs with fsync on.\n"
    ));
    println!("{table}");
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-small_objects.md");
    std::fs::write(&out, &table).expect("write the table");
    println!("written to {}", out.display());
}
