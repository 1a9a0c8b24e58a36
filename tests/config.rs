//! `Store::from_url` and `StoreOptions`: accepted forms, and a clear `InvalidInput` (or
//! `Unsupported` for recognised clouds not wired yet) for everything else.

use cloudstore::{ErrorKind, Store, StoreOptions};

fn open(url: &str) -> cloudstore::Result<Store> {
    Store::from_url(url, &StoreOptions::new())
}

fn err(url: &str) -> cloudstore::Error {
    open(url).expect_err(url)
}

#[tokio::test]
async fn memory_urls_open_fresh_stores_with_optional_prefix() {
    let a = open("memory://").unwrap();
    let b = open("memory://").unwrap();
    a.put("k", "x").await.unwrap();
    assert_eq!(
        b.head("k").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "two memory:// stores share nothing"
    );
    let p = open("memory:///tenant%20a/sub/").unwrap();
    assert_eq!(p.prefix(), "tenant a/sub");
    assert_eq!(p.backend_name(), "memory");
}

#[tokio::test]
async fn file_urls_open_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/data%20dir", dir.path().display());
    let store = open(&url).unwrap();
    store.put("a/b.txt", "hello").await.unwrap();
    let on_disk = std::fs::read(dir.path().join("data dir/a/b.txt")).unwrap();
    assert_eq!(on_disk, b"hello");
    assert_eq!(store.backend_name(), "fs");

    let opts = StoreOptions::new().with("fsync", "false");
    let fast = Store::from_url(&url, &opts).unwrap();
    assert_eq!(fast.get_bytes("a/b.txt").await.unwrap(), "hello");
}

#[test]
fn file_urls_need_an_absolute_path() {
    for url in ["file://relative/dir", "file://host.example/dir"] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.message().contains("absolute path"), "{url}: {e}");
    }
}

#[test]
fn malformed_and_unknown_urls_are_invalid_input() {
    for url in [
        "",
        "not a url",
        "://nothing",
        "ftp://host/x",
        "http://example.com/x",
    ] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url:?}: {e}");
        assert!(!e.message().is_empty());
    }
    assert!(
        err("ftp://host/x")
            .message()
            .contains("unknown scheme 'ftp'")
    );
    assert!(err("not a url").message().contains("malformed URL"));
}

#[test]
fn every_cloud_scheme_needs_a_bucket() {
    for url in ["s3:///x", "az:///x", "gs:///x"] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(e.message().contains("names no bucket"), "{url}: {e}");
    }
}

#[test]
fn credentials_in_urls_are_refused_and_never_echoed() {
    let e = err("s3://AKIAEXAMPLE:wJalrXUtnFEMIsecret@bucket/x");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("wJalrXUtnFEMIsecret"), "{shown}");
    assert!(!shown.contains("AKIAEXAMPLE"), "{shown}");
    let e = err("memory://user:pa55word@/x");
    assert!(!format!("{e} {e:?}").contains("pa55word"));
}

#[test]
fn unknown_or_malformed_options_are_invalid_input() {
    let e = Store::from_url("memory://", &StoreOptions::new().with("fsync", "true")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("unknown option 'fsync'"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let e = Store::from_url(&url, &StoreOptions::new().with("fsync", "maybe")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("true or false"), "{e}");
    let e = Store::from_url(&url, &StoreOptions::new().with("fsynk", "true")).unwrap_err();
    assert!(e.message().contains("unknown option 'fsynk'"), "{e}");
}

#[test]
fn invalid_prefixes_in_urls_are_invalid_input() {
    for url in [
        "memory:///a//b",
        "memory:///a/../b",
        "memory:///a/%2e%2E/b",
        "memory:///./a",
        "memory:///a/%00",
        "file:///tmp/../etc",
    ] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
}

#[test]
fn secret_options_are_redacted_from_debug() {
    let opts = StoreOptions::new()
        .with("access_key_id", "AKIAEXAMPLE")
        .with("secret_access_key", "s3cr3t")
        .with("sas_token", "sig=abc")
        .with("region", "eu-west-1");
    let shown = format!("{opts:?}");
    for secret in ["AKIAEXAMPLE", "s3cr3t", "sig=abc"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(
        shown.contains("eu-west-1"),
        "non-secret values stay visible: {shown}"
    );
}

#[test]
fn queries_fragments_and_hosts_that_would_be_ignored_are_refused() {
    for url in [
        "file:///tmp/d?fsync=maybe",
        "memory:///p#frag",
        "memory://tenant-a",
    ] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
}

#[test]
fn dot_segments_are_refused_in_every_url_form() {
    for url in [
        "memory:/a/../b",
        "file:///x/tmp\\..\\other",
        "memory:///a/%2E/b",
    ] {
        let e = err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
}

#[test]
fn secrets_in_unusual_url_forms_are_never_echoed() {
    for url in [
        "https:user:hunter2@acct.blob.core.windows.net/c",
        "https://acct.blob.core.windows.net/c/x?sv=2024&sig=hunter2",
        "s3:AKIA:hunter2@bucket",
        "az://container/x?sig=hunter2",
    ] {
        let e = err(url);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{url}: {shown}");
    }
}
