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
