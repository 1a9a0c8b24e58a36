//! No panic on any input: random keys, metadata names and values, content types, ETags,
//! ranges and presign expiries driven through `Store` on every backend (stores from URLs,
//! the emulators included). Each call ends in `Ok` or a typed error; a write that
//! succeeded reads back its attributes exactly.

use std::time::Duration;

use cloudstore::{
    ByteRange, CopyMode, ErrorKind, GetOptions, Metadata, PresignMethod, PutMode, PutOptions,
    Store, StoreOptions,
};
use proptest::prelude::*;

mod common;

/// Keys built from the pieces that matter: separators, dots, controls, NUL, percent
/// signs, URL characters and non-ASCII.
fn key() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("\\".to_string()),
        Just("\0".to_string()),
        Just("%2e".to_string()),
        Just("%".to_string()),
        Just("\n".to_string()),
        Just(" ".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("é".to_string()),
        Just("🦀".to_string()),
        "[a-z0-9_-]{1,8}",
    ];
    prop_oneof![
        prop::collection::vec(piece, 1..12).prop_map(|v| v.concat()),
        "[a-z]{1,4}".prop_map(|s| s.repeat(300)),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
        Just(String::new()),
        Just("=?UTF-8?B?aGk=?=".to_string()),
        Just(" x\r\ny ".to_string()),
        "[a-z]{1,3}".prop_map(|s| s.repeat(700)),
    ]
}

fn metadata_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,12}",
        Just("Upper".to_string()),
        Just("cloudstore-crc32c".to_string()),
        Just("sp ace".to_string()),
        Just(String::new()),
        text(),
    ]
}

fn put_options() -> impl Strategy<Value = PutOptions> {
    let mode = prop_oneof![
        Just(PutMode::Overwrite),
        Just(PutMode::Create),
        text().prop_map(PutMode::IfMatch),
    ];
    let ct = prop::option::of(prop_oneof![Just("text/plain".to_string()), text()]);
    let md = prop::collection::btree_map(metadata_name(), text(), 0..3);
    (mode, ct, md).prop_map(|(mode, content_type, metadata)| PutOptions {
        mode,
        content_type,
        metadata: metadata.into_iter().collect::<Metadata>(),
    })
}

fn range() -> impl Strategy<Value = Option<ByteRange>> {
    prop::option::of(prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ByteRange::Bounded(a..b)),
        (0u64..64, 0u64..64).prop_map(|(a, b)| ByteRange::Bounded(a..b)),
        any::<u64>().prop_map(ByteRange::From),
        any::<u64>().prop_map(ByteRange::Suffix),
    ])
}

fn expiry() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(7 * 24 * 3600)),
        Just(Duration::from_secs(7 * 24 * 3600 + 1)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_millis),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    key: String,
    other: String,
    put: PutOptions,
    range: Option<ByteRange>,
    etag: String,
    expiry: Duration,
}

fn input() -> impl Strategy<Value = Input> {
    (key(), key(), put_options(), range(), text(), expiry()).prop_map(
        |(key, other, put, range, etag, expiry)| Input {
            key,
            other,
            put,
            range,
            etag,
            expiry,
        },
    )
}

/// Runs one input through every operation; returns a description of the first call that
/// broke the rule.
async fn exercise(store: &Store, i: &Input) -> Result<(), String> {
    let typed = |what: &str, e: &cloudstore::Error| -> Result<(), String> {
        // Every error is typed by construction; `Other` must still name the operation.
        if e.kind() == ErrorKind::Other && e.to_string().is_empty() {
            return Err(format!("{what}: an untyped, empty error"));
        }
        Ok(())
    };
    match store.put_opts(&i.key, "body", &i.put).await {
        Ok(_) => {
            let head = store
                .head(&i.key)
                .await
                .map_err(|e| format!("head after a put: {e}"))?;
            let caps = store.capabilities();
            if caps.user_metadata && head.metadata != i.put.metadata {
                return Err(format!(
                    "metadata {:?} read back as {:?}",
                    i.put.metadata, head.metadata
                ));
            }
            if caps.content_type
                && i.put.content_type.is_some()
                && head.content_type != i.put.content_type
            {
                return Err(format!(
                    "content type {:?} read back as {:?}",
                    i.put.content_type, head.content_type
                ));
            }
        }
        Err(e) => typed("put", &e)?,
    }
    let get = GetOptions {
        range: i.range.clone(),
        if_match: (!i.etag.is_empty()).then(|| i.etag.clone()),
        ..Default::default()
    };
    match store.get_opts(&i.key, &get).await {
        Ok(r) => {
            if let Err(e) = r.bytes().await {
                typed("get body", &e)?;
            }
        }
        Err(e) => typed("get", &e)?,
    }
    if let Err(e) = store
        .copy_mode(&i.key, &i.other, CopyMode::IfMatch(i.etag.clone()))
        .await
    {
        typed("copy", &e)?;
    }
    if let Err(e) = store.copy(&i.key, &i.other).await {
        typed("copy", &e)?;
    }
    for method in [PresignMethod::Get, PresignMethod::Put] {
        if let Err(e) = store.presign(method, &i.key, i.expiry).await {
            typed("presign", &e)?;
        }
    }
    if let Err(e) = store.list_all(Some(&i.key)).await {
        typed("list", &e)?;
    }
    if let Err(e) = store.list_with_delimiter(Some(&i.other)).await {
        typed("list with delimiter", &e)?;
    }
    match store.create_multipart(&i.key, &i.put).await {
        Ok(id) => {
            let part = store.put_part(&i.key, &id, 1, "part").await;
            let done = match part {
                Ok(p) => {
                    store
                        .complete_multipart(&i.key, &id, &[p], &i.put.mode)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                typed("multipart", &e)?;
                let _ = store.abort_multipart(&i.key, &id).await;
            }
        }
        Err(e) => typed("create multipart", &e)?,
    }
    for k in [&i.key, &i.other] {
        if let Err(e) = store.delete(k).await {
            typed("delete", &e)?;
        }
    }
    Ok(())
}

fn run(label: &str, cases: u32, open: impl Fn() -> Store) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = open()
        .with_prefix(&common::unique(&format!("no-panic/{label}")))
        .unwrap();
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&input(), |i| {
        rt.block_on(exercise(&store, &i))
            .map_err(|m| TestCaseError::fail(format!("{label}: {m}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Nothing may be left behind by the calls that succeeded and were deleted.
    let left = rt.block_on(store.list_all(None)).unwrap();
    for m in left {
        let _ = rt.block_on(store.delete(m.key.as_str()));
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("CLOUDSTORE_NO_PANIC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn no_panic_on_memory() {
    run("memory", cases(300), || {
        Store::from_url("memory://", &StoreOptions::new()).unwrap()
    });
}

#[test]
fn no_panic_on_fs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    run("fs", cases(150), || {
        Store::from_url(&url, &StoreOptions::new()).unwrap()
    });
}

// The cloud stores come from URLs as the other suites build them, with the emulators'
// declared gaps (`common::emulators::emulator_gaps`): SeaweedFS, for one, turns a key
// ending in '\\' or '/' into a directory and drops its metadata, so such keys are refused
// there instead of compared.

#[test]
fn no_panic_on_seaweedfs() {
    run("seaweedfs", cases(40), || {
        common::emulators::s3_store("s3").unwrap()
    });
}

#[test]
fn no_panic_on_moto() {
    let bucket = common::env("CLOUDSTORE_TEST_MOTO_BUCKET");
    let options = StoreOptions::new()
        .with("endpoint", common::env("CLOUDSTORE_TEST_MOTO_ENDPOINT"))
        .with("allow_http", "true")
        .with("max_retries", "0");
    run("moto", cases(40), || {
        common::emulators::url_store("s3_moto", &format!("s3://{bucket}"), &options).unwrap()
    });
}

#[test]
fn no_panic_on_azurite() {
    run("azurite", cases(40), || {
        common::emulators::azure_store().unwrap()
    });
}

#[test]
fn no_panic_on_fake_gcs() {
    run("fake-gcs", cases(40), || {
        common::emulators::gcs_store().unwrap()
    });
}
