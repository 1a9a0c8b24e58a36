//! The conformance suite, once per backend: `cargo test --test conformance -- --list`
//! shows `<backend>::<case>` for every case. Every backend runs as users get it, from
//! `Store::from_url` with its middleware (the cloud stores' retry layer included); only
//! `memory_minimal`, a backend declaring every optional feature absent, is built by hand.

use std::sync::OnceLock;

use cloudstore::{MemoryBackend, Store, StoreOptions};

mod common;
use common::emulators::{azure_store, gcs_store, real_endpoints, s3_store, url_store};

/// One root shared by all fs cases of this run: every case works under its own prefix, so
/// sharing the directory also exercises concurrent use of one root.
fn fs_root() -> &'static std::path::Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::emulators::shared_root(&ROOT, "conformance-fs-")
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
        sends_crc64nvme: false,
        parallel_parts: false,
        create_multipart_round_trip: false,
    }
}

cloudstore::conformance_tests!(memory_minimal, || async {
    Ok(Store::new(MemoryBackend::with_capabilities(
        minimal_capabilities(),
    )))
});

// Stores of the object_store crate under cloudstore (bridge::ObjectStoreBackend), with the
// capabilities its probe finds.
#[cfg(feature = "object-store")]
cloudstore::conformance_tests!(object_store_memory, || async {
    Store::from_object_store(std::sync::Arc::new(object_store::memory::InMemory::new())).await
});

#[cfg(feature = "object-store")]
cloudstore::conformance_tests!(object_store_local, || async {
    let local = object_store::local::LocalFileSystem::new_with_prefix(object_store_root())
        .map_err(|e| {
            cloudstore::Error::new(
                cloudstore::ErrorKind::Other,
                cloudstore::Op::Configure,
                "tests",
                e.to_string(),
            )
        })?;
    Store::from_object_store(std::sync::Arc::new(local)).await
});

/// One root for the object_store `LocalFileSystem` cases; each works under its own prefix.
#[cfg(feature = "object-store")]
fn object_store_root() -> &'static std::path::Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::emulators::shared_root(&ROOT, "conformance-object-store-")
}

cloudstore::conformance_tests!(s3, || async { s3_store("s3") });

// moto's S3 server: the S3 target that keeps every key as given (SeaweedFS rewrites
// `a//b` and `dir/`).
cloudstore::conformance_tests!(s3_moto, || async { s3_store("s3_moto") }, known_gaps: moto_defects());

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

cloudstore::conformance_tests!(azure, || async { azure_store() });

cloudstore::conformance_tests!(gcs, || async { gcs_store() });
