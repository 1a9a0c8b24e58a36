//! The conformance suite, once per backend: `cargo test --test conformance -- --list`
//! shows `<backend>::<case>` for every case.

use std::sync::OnceLock;

use cloudstore::{FsBackend, MemoryBackend, Store};

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

cloudstore::conformance_tests!(memory, || async { Ok(Store::new(MemoryBackend::new())) });

cloudstore::conformance_tests!(fs, || async { Ok(Store::new(FsBackend::new(fs_root())?)) });

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
        multipart_listing: false,
        presign: false,
        max_presign_expiry: std::time::Duration::from_secs(3600),
        user_metadata: false,
        content_type: false,
        max_list_page: 100,
        object_and_children: true,
        max_key_segment_len: Some(100),
    }
}

cloudstore::conformance_tests!(memory_minimal, || async {
    Ok(Store::new(MemoryBackend::with_capabilities(
        minimal_capabilities(),
    )))
});
