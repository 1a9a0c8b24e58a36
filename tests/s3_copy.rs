//! S3 server-side copies of objects larger than CopyObject takes go part by part
//! (UploadPartCopy). The 5 GiB threshold is lowered to 5 MiB here (option
//! `multipart_copy_threshold`) so that SeaweedFS exercises the path with a 12 MiB object.

use cloudstore::migrate::{self, CopyOptions};
use cloudstore::{ErrorKind, PutMode, PutOptions, S3Backend, Store, StoreOptions, TransferConfig};
use tokio::io::AsyncWriteExt;

fn store() -> Store {
    let bucket = std::env::var("CLOUDSTORE_TEST_S3_BUCKET")
        .expect("CLOUDSTORE_TEST_S3_BUCKET is not set: run scripts/test.sh");
    let mut opts = StoreOptions::new();
    opts.set("multipart_copy_threshold", "5242880");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Store::new(S3Backend::new(&bucket, &opts).unwrap())
        .with_prefix(&format!("s3-copy/{nanos:x}-{}", std::process::id()))
        .unwrap()
        .with_transfer_config(TransferConfig {
            part_size: 5 << 20,
            ..Default::default()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_go_part_by_part_on_the_server() {
    let s = store();
    let body: Vec<u8> = (0..(12 << 20) + 7).map(|i| (i % 251) as u8).collect();
    let opts = PutOptions {
        content_type: Some("application/x-test".into()),
        metadata: [("origin".to_string(), "tests".to_string())].into(),
        ..Default::default()
    };
    let mut up = s.writer("big", &opts).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();

    let meta = s.copy("big", "big-copy").await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(s.get_bytes("big-copy").await.unwrap(), body);
    let m = s.head("big-copy").await.unwrap();
    assert_eq!(m.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(m.metadata.get("origin").map(String::as_str), Some("tests"));
    // A multipart object: three parts of 5 MiB.
    assert!(
        m.etag.as_deref().is_some_and(|e| e.contains("-3")),
        "{:?}",
        m.etag
    );

    // Create refuses an existing destination, and leaves no upload behind.
    let e = s.copy_if_absent("big", "big-copy").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(s.list_multipart_uploads(None).await.unwrap().is_empty());

    // migrate::copy between stores on this backend uses the service too.
    let c = migrate::copy(
        &s,
        "big",
        &s,
        "big-3",
        &CopyOptions {
            mode: PutMode::Create,
            progress: None,
        },
    )
    .await
    .unwrap();
    assert!(c.server_side);
    assert_eq!(s.get_bytes("big-3").await.unwrap(), body);

    let e = s.copy("missing", "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn the_threshold_is_checked() {
    let mut opts = StoreOptions::new();
    opts.set("multipart_copy_threshold", "1024");
    let e = S3Backend::new("b", &opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
