//! The stores of every backend as the tests get them: from a URL, with each emulator's
//! gaps declared (the conformance suite and the object_store bridge's suite share them).

use std::sync::OnceLock;

use cloudstore::{Store, StoreOptions};

/// A temporary directory under `target/` made once per test binary in `cell` (its cases
/// share it, each under its own prefix, which also exercises concurrent use of one root).
pub fn shared_root(
    cell: &'static OnceLock<tempfile::TempDir>,
    prefix: &str,
) -> &'static std::path::Path {
    cell.get_or_init(|| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory under target/")
    })
    .path()
}

/// A store from a URL, as users get it, with the emulator's gaps declared on top.
pub fn url_store(gaps: &str, url: &str, options: &StoreOptions) -> cloudstore::Result<Store> {
    let store = Store::from_url(url, options)?;
    let caps = emulator_gaps(gaps, store.capabilities().clone());
    Ok(if &caps == store.capabilities() {
        store
    } else {
        store.with_capabilities(caps)
    })
}

/// The value of an environment variable the emulator script sets; a missing one fails the
/// test loudly instead of skipping it.
pub fn required_env(name: &str) -> cloudstore::Result<String> {
    std::env::var(name).map_err(|_| {
        cloudstore::Error::new(
            cloudstore::ErrorKind::InvalidInput,
            cloudstore::Op::Configure,
            "tests",
            format!(
                "{name} is not set: run the tests with scripts/test.sh, which starts the \
                 emulators, or eval \"$(scripts/emulators.sh env)\" (see the README for real endpoints)"
            ),
        )
    })
}

/// Emulator gaps, declared here and nowhere else: each is a capability the emulator lacks,
/// with the reason; the affected cases then check the `Unsupported` answer and print
/// "NOT APPLICABLE" by name. Against a real endpoint (`CLOUDSTORE_TEST_REAL=1`) none apply.
pub fn emulator_gaps(
    backend: &str,
    mut caps: cloudstore::Capabilities,
) -> cloudstore::Capabilities {
    if real_endpoints() {
        return caps;
    }
    if backend == "s3" {
        // SeaweedFS keeps keys as filer paths: it turns '\\' into '/' and refuses segments
        // over 255 bytes (KeyTooLongError). AWS S3 and MinIO do neither.
        caps.backslash_in_keys = false;
        caps.max_key_segment_len = Some(255);
        // It also turns `a//b` into `a/b` and `dir/` into a directory, and refuses `./x`:
        // keys that are not plain paths are moto's to prove.
        caps.raw_keys = false;
        // Its `start-after` skips the keys below a "directory" of the same name (after
        // `r/b` it omits `r/b/c`); AWS S3 does not.
        caps.list_start_after = false;
    }
    if backend == "s3_moto" {
        // moto ignores If-Match on CompleteMultipartUpload (it completes over any
        // version); it honours If-None-Match there. AWS S3 honours both.
        caps.multipart_modes.if_match = false;
        // It ignores If-None-Match on CopyObject (copies over an existing object).
        caps.copy_if_absent = false;
        // It does not verify signatures, so a tampered presigned URL is served.
        caps.presign = false;
    }
    if backend == "gcs" {
        // fake-gcs-server ignores ifGenerationMatch on copy (it copies over an existing
        // object); real GCS honours it.
        caps.copy_if_absent = false;
        caps.copy_if_match = false;
        // It ignores ifGenerationMatch on compose, so a conditional completion would
        // silently become unconditional: declared absent. Real GCS honours it.
        caps.multipart_modes = cloudstore::ConditionalModes::NONE;
    }
    caps
}

pub fn real_endpoints() -> bool {
    std::env::var("CLOUDSTORE_TEST_REAL").is_ok_and(|v| v == "1")
}

/// The S3 store on SeaweedFS (`s3`) or on moto (`s3_moto`, which keeps every key as given).
pub fn s3_store(backend: &str) -> cloudstore::Result<Store> {
    if backend == "s3" {
        let bucket = required_env("CLOUDSTORE_TEST_S3_BUCKET")?;
        return url_store("s3", &format!("s3://{bucket}"), &StoreOptions::new());
    }
    // Against real endpoints, the S3 endpoint again unless a second one is given.
    let (bucket, options) = match std::env::var("CLOUDSTORE_TEST_MOTO_ENDPOINT") {
        Err(_) if real_endpoints() => (
            required_env("CLOUDSTORE_TEST_S3_BUCKET")?,
            StoreOptions::new(),
        ),
        _ => (
            required_env("CLOUDSTORE_TEST_MOTO_BUCKET")?,
            StoreOptions::new()
                .with("endpoint", required_env("CLOUDSTORE_TEST_MOTO_ENDPOINT")?)
                .with("allow_http", "true"),
        ),
    };
    url_store("s3_moto", &format!("s3://{bucket}"), &options)
}

/// The Azure store on Azurite.
pub fn azure_store() -> cloudstore::Result<Store> {
    let container = required_env("CLOUDSTORE_TEST_AZURE_CONTAINER")?;
    url_store("azure", &format!("az://{container}"), &StoreOptions::new())
}

/// The GCS store on fake-gcs-server.
pub fn gcs_store() -> cloudstore::Result<Store> {
    let bucket = required_env("CLOUDSTORE_TEST_GCS_BUCKET")?;
    url_store("gcs", &format!("gs://{bucket}"), &StoreOptions::new())
}
