//! Plain HTTP only when explicitly allowed: an `http://` endpoint without `allow_http`
//! (or the emulator's own setting) is refused when the store is configured, before any
//! request (and so any credential) can go out unencrypted.

use cloudstore::{ErrorKind, Store, StoreOptions};

fn opts(pairs: &[(&str, &str)]) -> StoreOptions {
    let mut o = StoreOptions::new();
    for (k, v) in pairs {
        o.set(*k, *v);
    }
    o
}

#[tokio::test]
async fn s3_refuses_a_plain_http_endpoint_unless_allowed() {
    let base = [
        ("endpoint", "http://127.0.0.1:9"),
        ("region", "us-east-1"),
        ("access_key_id", "AKIDEXAMPLE"),
        ("secret_access_key", "not-a-real-secret"),
        ("allow_http", "false"),
    ];
    let e = Store::from_url("s3://bucket", &opts(&base)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("allow_http"), "{e}");
    let mut allowed = base.to_vec();
    allowed[4] = ("allow_http", "true");
    Store::from_url("s3://bucket", &opts(&allowed)).unwrap();
}

#[tokio::test]
async fn azure_refuses_a_plain_http_endpoint_unless_allowed() {
    let base = [
        ("use_emulator", "false"),
        ("account_name", "acct"),
        ("account_key", "bm90LWEtcmVhbC1rZXk="),
        ("endpoint", "http://127.0.0.1:9/acct"),
        ("allow_http", "false"),
    ];
    let e = Store::from_url("az://container", &opts(&base)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let mut allowed = base.to_vec();
    allowed[4] = ("allow_http", "true");
    Store::from_url("az://container", &opts(&allowed)).unwrap();
}

#[tokio::test]
async fn gcs_refuses_a_plain_http_endpoint_unless_allowed() {
    let e =
        Store::from_url("gs://bucket", &opts(&[("endpoint", "http://127.0.0.1:9")])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    Store::from_url(
        "gs://bucket",
        &opts(&[("endpoint", "http://127.0.0.1:9"), ("allow_http", "true")]),
    )
    .unwrap();
}
