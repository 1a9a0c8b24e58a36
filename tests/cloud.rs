//! Cloud backends against the emulators (started by scripts/test.sh): configuration from
//! URLs, errors for wrong credentials and missing buckets, and no secret in any output.

use cloudstore::{ErrorKind, Store, StoreOptions};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh, or eval \"$(scripts/emulators.sh env)\"")
    })
}

const WRONG_SECRET: &str = "definitely-not-the-secret-0123456789";

#[tokio::test]
async fn s3_urls_work_and_the_path_is_a_prefix() {
    let bucket = env("CLOUDSTORE_TEST_S3_BUCKET");
    let store = Store::from_url(
        &format!("s3://{bucket}/cloud-tests/url-prefix"),
        &StoreOptions::new(),
    )
    .unwrap();
    assert_eq!(store.prefix(), "cloud-tests/url-prefix");
    store.put("k", "v").await.unwrap();
    let root = Store::from_url(&format!("s3://{bucket}"), &StoreOptions::new()).unwrap();
    assert_eq!(
        root.get_bytes("cloud-tests/url-prefix/k").await.unwrap(),
        "v"
    );
    store.delete("k").await.unwrap();
}

#[tokio::test]
async fn s3_wrong_secret_is_unauthenticated_and_never_shown() {
    let bucket = env("CLOUDSTORE_TEST_S3_BUCKET");
    let opts = StoreOptions::new().with("secret_access_key", WRONG_SECRET);
    let store = Store::from_url(&format!("s3://{bucket}"), &opts).unwrap();
    let e = store.get("anything").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e2 = store.put("anything", "x").await.unwrap_err();
    assert_eq!(e2.kind(), ErrorKind::Unauthenticated, "{e2}");
    // A HEAD answer has no body to say why; the kind must still be the same.
    let e3 = store.head("anything").await.unwrap_err();
    assert_eq!(e3.kind(), ErrorKind::Unauthenticated, "{e3}");
    let shown = format!("{e} {e:?} {e2} {e2:?} {e3:?} {store:?} {opts:?}");
    assert!(!shown.contains(WRONG_SECRET), "{shown}");
    assert!(!shown.contains(&env("AWS_SECRET_ACCESS_KEY")), "{shown}");
}

#[tokio::test]
async fn s3_missing_bucket_is_not_found() {
    let store = Store::from_url("s3://no-such-bucket-cloudstore", &StoreOptions::new()).unwrap();
    let e = store.get("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = store.list_all(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = store.put("k", "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn s3_bad_configuration_is_invalid_input() {
    let e = Store::from_url(
        "s3://bucket",
        &StoreOptions::new().with("no_such_option", "1"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("unknown option 'no_such_option'"),
        "{e}"
    );
    let e = Store::from_url(
        "s3://bucket",
        &StoreOptions::new().with("checksum_algorithm", "sha256"),
    )
    .unwrap_err();
    assert!(e.message().contains("crc64nvme"), "{e}");
    Store::from_url(
        "s3://bucket",
        &StoreOptions::new().with("checksum_algorithm", "none"),
    )
    .unwrap();
    let e = Store::from_url("s3:///only-a-path", &StoreOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_a_retryable_error() {
    let opts = StoreOptions::new()
        .with("endpoint", "http://127.0.0.1:9")
        .with("allow_http", "true")
        .with("timeout", "2s")
        .with("max_retries", "0");
    let store = Store::from_url("s3://bucket", &opts).unwrap();
    let e = store.head("k").await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        matches!(e.kind(), ErrorKind::Other | ErrorKind::Timeout),
        "{e}"
    );
}

const WRONG_KEY: &str = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmc=";

#[tokio::test]
async fn azure_urls_work_and_the_path_is_a_prefix() {
    let container = env("CLOUDSTORE_TEST_AZURE_CONTAINER");
    let store = Store::from_url(
        &format!("az://{container}/cloud-tests/url-prefix"),
        &StoreOptions::new(),
    )
    .unwrap();
    assert_eq!(store.prefix(), "cloud-tests/url-prefix");
    store.put("k", "v").await.unwrap();
    let root = Store::from_url(&format!("azure://{container}"), &StoreOptions::new()).unwrap();
    assert_eq!(
        root.get_bytes("cloud-tests/url-prefix/k").await.unwrap(),
        "v"
    );
    store.delete("k").await.unwrap();
}

#[test]
fn azure_account_urls_name_account_container_and_prefix() {
    for url in [
        "https://acct.blob.core.windows.net/data/tenant-a",
        "abfss://data@acct.dfs.core.windows.net/tenant-a",
    ] {
        let store =
            Store::from_url(url, &StoreOptions::new().with("account_key", WRONG_KEY)).unwrap();
        assert_eq!(store.prefix(), "tenant-a", "{url}");
        assert_eq!(store.backend_name(), "azure");
        let shown = format!("{store:?}");
        assert!(shown.contains("acct") && shown.contains("data"), "{shown}");
        assert!(!shown.contains(WRONG_KEY), "{shown}");
    }
    let e =
        Store::from_url("https://acct.blob.core.windows.net/", &StoreOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn azure_wrong_key_is_unauthenticated_and_never_shown() {
    let container = env("CLOUDSTORE_TEST_AZURE_CONTAINER");
    let opts = StoreOptions::new().with("account_key", WRONG_KEY);
    let store = Store::from_url(&format!("az://{container}"), &opts).unwrap();
    let e = store.put("anything", "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e2 = store.list_all(None).await.unwrap_err();
    assert_eq!(e2.kind(), ErrorKind::Unauthenticated, "{e2}");
    let e3 = store.head("anything").await.unwrap_err();
    assert_eq!(e3.kind(), ErrorKind::Unauthenticated, "{e3}");
    let shown = format!("{e} {e:?} {e2} {e2:?} {e3:?} {store:?} {opts:?}");
    assert!(!shown.contains(WRONG_KEY), "{shown}");
    assert!(
        !shown.contains(&env("AZURE_STORAGE_ACCOUNT_KEY")),
        "{shown}"
    );
}

#[tokio::test]
async fn azure_missing_container_is_not_found() {
    let store = Store::from_url("az://no-such-container-cloudstore", &StoreOptions::new()).unwrap();
    for e in [
        store.get("k").await.unwrap_err(),
        store.list_all(None).await.unwrap_err(),
        store.put("k", "x").await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
}

#[tokio::test]
async fn metadata_names_travel_unchanged_between_s3_and_azure() {
    let s3 = Store::from_url(
        &format!("s3://{}/cloud-tests/md", env("CLOUDSTORE_TEST_S3_BUCKET")),
        &StoreOptions::new(),
    )
    .unwrap();
    let az = Store::from_url(
        &format!(
            "az://{}/cloud-tests/md",
            env("CLOUDSTORE_TEST_AZURE_CONTAINER")
        ),
        &StoreOptions::new(),
    )
    .unwrap();
    let opts = cloudstore::PutOptions::default()
        .with_content_type("text/csv")
        .with_metadata("run-id", "42")
        .with_metadata("source.system", "erp")
        .with_metadata("csx_tricky", "escape-like");
    for store in [&s3, &az] {
        store.put_opts("k", "a,b", &opts).await.unwrap();
        let head = store.head("k").await.unwrap();
        assert_eq!(head.metadata, opts.metadata, "{}", store.backend_name());
        assert_eq!(head.content_type.as_deref(), Some("text/csv"));
        store.delete("k").await.unwrap();
    }
}

#[tokio::test]
async fn gcs_urls_work_and_the_path_is_a_prefix() {
    let bucket = env("CLOUDSTORE_TEST_GCS_BUCKET");
    let store = Store::from_url(
        &format!("gs://{bucket}/cloud-tests/url-prefix"),
        &StoreOptions::new(),
    )
    .unwrap();
    assert_eq!(store.prefix(), "cloud-tests/url-prefix");
    store.put("k", "v").await.unwrap();
    let root = Store::from_url(&format!("gs://{bucket}"), &StoreOptions::new()).unwrap();
    assert_eq!(
        root.get_bytes("cloud-tests/url-prefix/k").await.unwrap(),
        "v"
    );
    store.delete("k").await.unwrap();
}

#[tokio::test]
async fn gcs_missing_bucket_is_not_found_and_staging_is_hidden() {
    let store = Store::from_url("gs://no-such-bucket-cloudstore", &StoreOptions::new()).unwrap();
    assert_eq!(
        store.get("k").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.list_all(None).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Multipart staging lives under the reserved .cloudstore/ and never shows in listings.
    let bucket = env("CLOUDSTORE_TEST_GCS_BUCKET");
    let root = Store::from_url(&format!("gs://{bucket}"), &StoreOptions::new()).unwrap();
    let id = root
        .create_multipart("cloud-tests/staged", &Default::default())
        .await
        .unwrap();
    root.put_part("cloud-tests/staged", &id, 1, "part")
        .await
        .unwrap();
    let listing = root.list_with_delimiter(None).await.unwrap();
    assert!(
        !listing
            .common_prefixes
            .iter()
            .any(|p| p.starts_with(".cloudstore")),
        "{listing:?}"
    );
    assert!(
        root.list_all(Some(".cloudstore/"))
            .await
            .unwrap()
            .is_empty()
    );
    let e = root.put(".cloudstore/uploads/x", "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    root.abort_multipart("cloud-tests/staged", &id)
        .await
        .unwrap();
    assert!(
        root.list_multipart_uploads(Some("cloud-tests/"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn gcs_bad_configuration_is_invalid_input() {
    let e =
        Store::from_url("gs://b", &StoreOptions::new().with("endpoint", "not a url")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = Store::from_url("gs://b", &StoreOptions::new().with("region", "x")).unwrap_err();
    assert!(e.message().contains("unknown option 'region'"), "{e}");
}

/// The transfer engine against every cloud emulator: a multipart upload from a writer,
/// then a parallel download and a streaming read, both verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_round_trip_on_every_cloud() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let urls = [
        format!(
            "s3://{}/cloud-tests/transfer",
            env("CLOUDSTORE_TEST_S3_BUCKET")
        ),
        format!(
            "az://{}/cloud-tests/transfer",
            env("CLOUDSTORE_TEST_AZURE_CONTAINER")
        ),
        format!(
            "gs://{}/cloud-tests/transfer",
            env("CLOUDSTORE_TEST_GCS_BUCKET")
        ),
    ];
    let body: Vec<u8> = (0..12 * 1024 * 1024 + 12345)
        .map(|i: usize| (i * 7 % 251) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for url in urls {
        let store = Store::from_url(&url, &StoreOptions::new())
            .unwrap()
            .with_transfer_config(cloudstore::TransferConfig {
                part_size: 5 * 1024 * 1024,
                concurrency: 3,
                ..Default::default()
            });
        let name = store.backend_name().to_string();
        let mut up = store.writer("big.bin", &Default::default()).unwrap();
        for chunk in body.chunks(1 << 20) {
            up.write_all(chunk).await.unwrap();
        }
        let meta = up.finish().await.unwrap();
        assert_eq!(meta.size, body.len() as u64, "{name}");
        let head = store.head("big.bin").await.unwrap();
        if store.capabilities().complete_metadata {
            assert!(head.crc32c.is_some(), "{name}: no checksum stored");
        }
        let dst = dir.path().join(format!("{name}.bin"));
        store.download_file("big.bin", &dst).await.unwrap();
        assert!(
            std::fs::read(&dst).unwrap() == body,
            "{name}: downloaded file differs"
        );
        let mut read = Vec::new();
        store
            .reader("big.bin")
            .await
            .unwrap()
            .read_to_end(&mut read)
            .await
            .unwrap();
        assert!(read == body, "{name}: streamed read differs");
        if store.capabilities().multipart_listing {
            assert!(
                store.list_multipart_uploads(None).await.unwrap().is_empty(),
                "{name}: uploads left"
            );
        }
        store.delete("big.bin").await.unwrap();
    }
}
