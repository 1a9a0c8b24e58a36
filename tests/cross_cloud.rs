//! The migration this crate exists for, with names other clients legally write: objects
//! put on S3 (moto) by raw requests move S3 -> Azure -> GCS -> fs -> S3 through
//! `migrate::sync` and the CLI, and every key and every byte arrives; GCS's own listing
//! (its JSON API, not cloudstore) shows the names exactly.

use std::process::Command;

use cloudstore::migrate::{self, SyncOptions};
use cloudstore::{Store, StoreOptions};

mod common;
use common::{encode_component, env, raw_http, unique};

/// Names S3, Azure, GCS and fs all hold as given (Azure resolves `.` and `..` segments, so
/// those stay out of a chain through it).
const NAMES: &[&str] = &[
    "a//b.txt",
    "dir/",
    "/lead",
    "https://example.org/p?q=1",
    "trail ",
    "%41%2F",
    "ünï/🦀 crab",
    "normal.txt",
];

fn body_of(name: &str) -> Vec<u8> {
    format!("the bytes of {name:?}").repeat(3).into_bytes()
}

/// A PUT to moto's S3 API by hand (moto takes unsigned requests), path-style.
fn moto_raw_put(prefix: &str, name: &str) {
    let endpoint = env("CLOUDSTORE_TEST_MOTO_ENDPOINT");
    let bucket = env("CLOUDSTORE_TEST_MOTO_BUCKET");
    let key = format!("{prefix}/{name}");
    let path: String = key
        .split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/");
    let (status, answer) = raw_http(
        "PUT",
        &format!("{endpoint}/{bucket}/{path}"),
        &[("Content-Type", "application/octet-stream")],
        &body_of(name),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// The names under `prefix/` in the GCS bucket, from the emulator's JSON API.
fn gcs_raw_names(prefix: &str) -> Vec<String> {
    let endpoint = env("CLOUDSTORE_TEST_GCS_ENDPOINT");
    let bucket = env("CLOUDSTORE_TEST_GCS_BUCKET");
    let url = format!(
        "{endpoint}/storage/v1/b/{bucket}/o?prefix={}",
        encode_component(&format!("{prefix}/"))
    );
    let (status, answer) = raw_http("GET", &url, &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| o["name"].as_str().unwrap()[prefix.len() + 1..].to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn check_holds_all(store: &Store, label: &str) {
    let mut want: Vec<&str> = NAMES.to_vec();
    want.sort();
    // Without what a CLI sync keeps for its re-runs.
    let got = common::user_keys(store).await;
    assert_eq!(got, want, "{label}: keys");
    for name in NAMES {
        assert_eq!(
            store.get_bytes(name).await.unwrap(),
            body_of(name),
            "{label}: bytes of {name:?}"
        );
    }
}

async fn hop(from: &Store, to: &Store, label: &str) {
    let r = migrate::sync(from, to, &SyncOptions::default())
        .await
        .unwrap();
    assert!(r.failed.is_empty(), "{label}: {r:?}");
    assert_eq!(
        (r.source_objects, r.copied),
        (NAMES.len() as u64, NAMES.len() as u64),
        "{label}: {r:?}"
    );
    let verify = SyncOptions {
        verify_only: true,
        ..Default::default()
    };
    let v = migrate::sync(from, to, &verify).await.unwrap();
    assert!(v.all_in_place(), "{label}: {v:?}");
    check_holds_all(to, label).await;
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloudstore"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_move_s3_azure_gcs_fs_s3_exactly() {
    let scope = unique("cross-cloud");
    for name in NAMES {
        moto_raw_put(&format!("{scope}/s3"), name);
    }
    let moto = StoreOptions::new()
        .with("endpoint", env("CLOUDSTORE_TEST_MOTO_ENDPOINT"))
        .with("allow_http", "true");
    let moto_bucket = env("CLOUDSTORE_TEST_MOTO_BUCKET");
    let s3 = Store::from_url(&format!("s3://{moto_bucket}/{scope}/s3"), &moto).unwrap();
    check_holds_all(&s3, "the raw writes").await;

    let container = env("CLOUDSTORE_TEST_AZURE_CONTAINER");
    let az_url = format!("az://{container}/{scope}/az");
    let azure = Store::from_url(&az_url, &StoreOptions::new()).unwrap();
    hop(&s3, &azure, "S3 -> Azure").await;

    // Azure -> GCS through the CLI, as an operator would run it.
    let bucket = env("CLOUDSTORE_TEST_GCS_BUCKET");
    let gs_url = format!("gs://{bucket}/{scope}/gs");
    let o = cli(&["--json", "sync", &az_url, &gs_url]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source_objects"], NAMES.len());
    assert_eq!(v["copied"], NAMES.len());
    let o = cli(&["verify", &az_url, &gs_url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains(&format!("{0} source objects: {0} in place", NAMES.len())),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut want: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    want.sort();
    // The CLI keeps its records for re-runs under the reserved prefix; nothing else is
    // there besides the objects.
    let (state, names): (Vec<String>, Vec<String>) = gcs_raw_names(&format!("{scope}/gs"))
        .into_iter()
        .partition(|n| n.starts_with(cloudstore::migrate::STATE_PREFIX));
    assert_eq!(names, want, "GCS's own listing");
    assert!(
        state.iter().any(|n| n.ends_with("/current")),
        "sync records: {state:?}"
    );
    let gcs = Store::from_url(&gs_url, &StoreOptions::new()).unwrap();
    check_holds_all(&gcs, "Azure -> GCS (CLI)").await;

    let dir = tempfile::tempdir().unwrap();
    let fs = Store::local(dir.path()).unwrap();
    hop(&gcs, &fs, "GCS -> fs").await;

    let back = Store::from_url(&format!("s3://{moto_bucket}/{scope}/back"), &moto).unwrap();
    hop(&fs, &back, "fs -> S3").await;

    for store in [&s3, &azure, &gcs, &back] {
        for name in NAMES {
            store.delete(name).await.unwrap();
        }
    }
}
