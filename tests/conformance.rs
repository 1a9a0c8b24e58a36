//! The conformance suite, once per backend: `cargo test --test conformance -- --list`
//! shows `<backend>::<case>` for every case. Every backend runs as users get it, from
//! `Store::from_url` with its middleware (the cloud stores' retry layer included); only
//! `memory_minimal`, a backend declaring every optional feature absent, is built by hand.

use std::sync::OnceLock;

use cloudstore::{MemoryBackend, Store, StoreOptions};

/// One root shared by all fs cases of this run: every case works under its own prefix, so
/// sharing the directory also exercises concurrent use of one root.
fn fs_root() -> &'static std::path::Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("conformance-fs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory under target/")
    })
    .path()
}

/// A store from a URL, as users get it, with the emulator's gaps declared on top.
fn url_store(gaps: &str, url: &str, options: &StoreOptions) -> cloudstore::Result<Store> {
    let store = Store::from_url(url, options)?;
    let caps = emulator_gaps(gaps, store.capabilities().clone());
    Ok(if &caps == store.capabilities() {
        store
    } else {
        store.with_capabilities(caps)
    })
}

cloudstore::conformance_tests!(memory, || async {
    url_store("memory", "memory://", &StoreOptions::new())
});

cloudstore::conformance_tests!(fs, || async {
    url_store(
        "fs",
        &format!("file://{}", fs_root().display()),
        &StoreOptions::new(),
    )
});

/// A backend that declares every optional feature absent and small limits: proves that each
/// gated case checks the `Unsupported` answer instead of passing silently.
fn minimal_capabilities() -> cloudstore::Capabilities {
    cloudstore::Capabilities {
        min_part_size: 1,
        max_part_size: 64 * 1024 * 1024,
        max_parts: 10_000,
        max_object_size: None,
        put_modes: cloudstore::ConditionalModes::NONE,
        multipart_modes: cloudstore::ConditionalModes::NONE,
        copy_if_absent: false,
        copy_if_match: false,
        multipart_listing: false,
        presign: false,
        max_presign_expiry: std::time::Duration::from_secs(3600),
        user_metadata: false,
        content_type: false,
        max_list_page: 100,
        object_and_children: true,
        max_key_segment_len: Some(100),
        backslash_in_keys: false,
        raw_keys: false,
        dot_segments_in_keys: false,
        list_start_after: false,
        abort_discards_parts: true,
        complete_metadata: false,
        native_checksum: false,
    }
}

cloudstore::conformance_tests!(memory_minimal, || async {
    Ok(Store::new(MemoryBackend::with_capabilities(
        minimal_capabilities(),
    )))
});

/// The value of an environment variable the emulator script sets; a missing one fails the
/// test loudly instead of skipping it.
fn required_env(name: &str) -> cloudstore::Result<String> {
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
fn emulator_gaps(backend: &str, mut caps: cloudstore::Capabilities) -> cloudstore::Capabilities {
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

cloudstore::conformance_tests!(s3, || async {
    let bucket = required_env("CLOUDSTORE_TEST_S3_BUCKET")?;
    url_store("s3", &format!("s3://{bucket}"), &StoreOptions::new())
});

// moto's S3 server: the S3 target that keeps every key as given (SeaweedFS rewrites
// `a//b` and `dir/`).
cloudstore::conformance_tests!(s3_moto, || async {
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
}, known_gaps: moto_defects());

fn real_endpoints() -> bool {
    std::env::var("CLOUDSTORE_TEST_REAL").is_ok_and(|v| v == "1")
}

/// moto's defects that no capability describes; each case must still fail on it. None
/// against a real endpoint.
fn moto_defects() -> &'static [(&'static str, &'static str)] {
    if real_endpoints() { &[] } else { MOTO_DEFECTS }
}

const MOTO_DEFECTS: &[(&str, &str)] = &[
    (
        "multipart_unknown_upload_is_not_found",
        "moto answers 500 (a KeyError) for an unknown upload id, not 404 NoSuchUpload",
    ),
    (
        "multipart_abort_leaves_nothing",
        "moto answers 500 (a KeyError) for an aborted upload id, not 404 NoSuchUpload",
    ),
];

cloudstore::conformance_tests!(azure, || async {
    let container = required_env("CLOUDSTORE_TEST_AZURE_CONTAINER")?;
    url_store("azure", &format!("az://{container}"), &StoreOptions::new())
});

cloudstore::conformance_tests!(gcs, || async {
    let bucket = required_env("CLOUDSTORE_TEST_GCS_BUCKET")?;
    url_store("gcs", &format!("gs://{bucket}"), &StoreOptions::new())
});
