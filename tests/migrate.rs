//! Moving data between stores: verified cross-store copy, and sync (resumable, with dry
//! run, verify-only and delete of extras), on memory and fs, and 1,000 objects of mixed
//! sizes from SeaweedFS to Azurite and to fake-gcs-server, interrupted and run again.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use cloudstore::middleware::{Fault, Faults, Rule};
use cloudstore::migrate::{self, CopyOptions, SyncOptions};
use cloudstore::{
    Backend, ErrorKind, MemoryBackend, Op, PutMode, PutOptions, Store, StoreOptions, TransferConfig,
};
use tokio::io::AsyncWriteExt;

use common::{crc_hex, data, env, unique};

fn small_parts() -> TransferConfig {
    TransferConfig {
        part_size: 5 << 20,
        concurrency: 4,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_copy_between_stores_keeps_bytes_type_and_metadata_and_records_the_source() {
    let (src, dst) = (Store::memory(), Store::memory());
    let body = data(7 << 20, 1);
    let opts = PutOptions {
        content_type: Some("text/csv".into()),
        metadata: [("owner".to_string(), "team-a".to_string())].into(),
        ..Default::default()
    };
    let mut up = src.writer("a.csv", &opts).unwrap();
    up.write_all(&body).await.unwrap();
    let src_meta = up.finish().await.unwrap();
    let src = src.with_transfer_config(small_parts());
    let dst = dst.with_transfer_config(small_parts());
    let c = migrate::copy(&src, "a.csv", &dst, "b/a.csv", &CopyOptions::default())
        .await
        .unwrap();
    assert!(!c.server_side);
    assert_eq!(c.bytes, body.len() as u64);
    assert_eq!(dst.get_bytes("b/a.csv").await.unwrap(), body);
    let m = dst.head("b/a.csv").await.unwrap();
    assert_eq!(m.content_type.as_deref(), Some("text/csv"));
    assert_eq!(m.metadata.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(m.source_etag, src_meta.etag);
    assert_eq!(m.crc32c.map(|c| format!("{c:08x}")), Some(crc_hex(&body)));
    assert!(!m.metadata.keys().any(|k| k.starts_with("cloudstore-")));
    // Create refuses an existing destination.
    let create = CopyOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let e = migrate::copy(&src, "a.csv", &dst, "b/a.csv", &create)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    // Same backend: the service copies.
    let c = migrate::copy(&src, "a.csv", &src, "copy.csv", &CopyOptions::default())
        .await
        .unwrap();
    assert!(c.server_side);
    assert_eq!(src.get_bytes("copy.csv").await.unwrap(), body);
}

#[tokio::test]
async fn a_corrupt_source_leaves_nothing_at_the_destination() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let src = Store::local(dir.path().join("src")).unwrap();
    let body = data(300_000, 2);
    let mut up = src.writer("rot.bin", &Default::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    let path = dir.path().join("src/rot.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[body[77] ^ 1], 77).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    let dst = Store::memory();
    let e = migrate::copy(&src, "rot.bin", &dst, "rot.bin", &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert_eq!(
        dst.head("rot.bin").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(dst.list_multipart_uploads(None).await.unwrap().is_empty());
}

async fn fill(store: &Store, n: usize, big_every: usize) {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| async move {
            let size = if big_every > 0 && i % big_every == 0 {
                (6 << 20) + i
            } else {
                (i * 7919) % 20_000
            };
            let mut up = store.writer(&key(i), &Default::default()).unwrap();
            up.write_all(&data(size, i as u8)).await.unwrap();
            up.finish().await.unwrap();
        })
        .await;
}

fn key(i: usize) -> String {
    format!("data/{:02}/obj-{i:04}", i % 17)
}

#[tokio::test]
async fn sync_copies_what_differs_and_a_rerun_only_what_is_missing() {
    let (src, dst) = (Store::memory(), Store::memory());
    fill(&src, 200, 0).await;
    let dry = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((dry.copied, dry.skipped), (200, 0));
    assert!(
        dst.list_all(None).await.unwrap().is_empty(),
        "a dry run changes nothing"
    );

    let first = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (first.copied, first.skipped, first.failed.len()),
        (200, 0, 0)
    );
    let again = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((again.copied, again.skipped, again.bytes), (0, 200, 0));

    // One changed (same size, other bytes), one new, one extra at the destination.
    let changed = dst.get_bytes(&key(5)).await.unwrap();
    src.put(&key(5), Bytes::from(vec![0xAB; changed.len()]))
        .await
        .unwrap();
    src.put("data/new", "new").await.unwrap();
    dst.put("data/extra", "extra").await.unwrap();
    let verify = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            verify_only: true,
            delete_extras: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let differing: Vec<&str> = verify.failed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(differing, vec![key(5).as_str(), "data/extra", "data/new"]);
    let third = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            delete_extras: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((third.copied, third.skipped, third.deleted), (2, 199, 1));
    assert_eq!(
        dst.get_bytes(&key(5)).await.unwrap(),
        src.get_bytes(&key(5)).await.unwrap()
    );
    let clean = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            verify_only: true,
            delete_extras: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(clean.failed.is_empty(), "{:?}", clean.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sync_resumes_without_copying_again() {
    let src = Store::memory().with_transfer_config(small_parts());
    fill(&src, 300, 50).await;
    let dst = Store::memory().with_transfer_config(small_parts());
    let task = {
        let (src, dst) = (src.clone(), dst.clone());
        tokio::spawn(async move { migrate::sync(&src, &dst, &SyncOptions::default()).await })
    };
    // Cancel it part-way.
    while dst.list_all(None).await.unwrap().len() < 100 {
        tokio::task::yield_now().await;
    }
    task.abort();
    let _ = task.await;
    // Dropped uploads abort in the background; whatever is visible is whole.
    common::eventually_no_uploads_left(&dst).await;
    let present = dst.list_all(None).await.unwrap().len() as u64;
    assert!(present < 300, "the sync was cut before the end");
    let rerun = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        rerun.copied,
        300 - present,
        "only what was missing is copied"
    );
    assert_eq!(rerun.skipped, present);
    let check = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            verify_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(check.failed.is_empty());
}

fn scope(label: &str) -> String {
    unique(&format!("migrate/{label}"))
}

/// 1,000 objects from SeaweedFS to `dst_url`; the first run fails its writes after 400
/// objects (injected), the second finishes and copies only what was missing.
async fn thousand_objects_to(dst_url: &str, label: &str) {
    let n = 1000;
    let src = Store::from_url(
        &format!("s3://{}/{}", env("CLOUDSTORE_TEST_S3_BUCKET"), scope(label)),
        &StoreOptions::new(),
    )
    .unwrap()
    .with_transfer_config(small_parts());
    fill(&src, n, 100).await;
    let dst = Store::from_url(&format!("{dst_url}/{}", scope(label)), &StoreOptions::new())
        .unwrap()
        .with_transfer_config(small_parts());
    // The interrupted run: the destination refuses writes after 400 objects.
    let faults = Faults::new(dst.backend().clone())
        .with_rule(
            Rule::new(Op::Put, Fault::Fail(ErrorKind::PermissionDenied))
                .after(400)
                .times(u64::MAX),
        )
        .with_rule(
            Rule::new(
                Op::CreateMultipart,
                Fault::Fail(ErrorKind::PermissionDenied),
            )
            .after(4)
            .times(u64::MAX),
        );
    let faulty = Store::from_arc(Arc::new(faults) as Arc<dyn Backend>)
        .with_prefix(dst.prefix())
        .unwrap()
        .with_transfer_config(small_parts());
    let first = migrate::sync(&src, &faulty, &SyncOptions::default())
        .await
        .unwrap();
    assert!(
        !first.failed.is_empty() && first.copied > 0,
        "{label}: {first:?}"
    );
    assert_eq!(first.copied + first.failed.len() as u64, n as u64);
    let present = dst.list_all(None).await.unwrap().len() as u64;
    assert_eq!(
        present, first.copied,
        "{label}: only whole copies are visible"
    );

    let second = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert!(second.failed.is_empty(), "{label}: {:?}", second.failed);
    assert_eq!(
        second.copied,
        n as u64 - present,
        "{label}: copied again what was there"
    );
    assert_eq!(second.skipped, present);

    // Identical listings and contents.
    let (a, b) = (
        src.list_all(None).await.unwrap(),
        dst.list_all(None).await.unwrap(),
    );
    let view = |v: &Vec<cloudstore::ObjectMeta>| -> Vec<(String, u64)> {
        v.iter()
            .map(|m| (m.key.as_str().to_string(), m.size))
            .collect()
    };
    assert_eq!(view(&a), view(&b), "{label}: listings differ");
    let verify = migrate::sync(
        &src,
        &dst,
        &SyncOptions {
            verify_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(verify.failed.is_empty(), "{label}: {:?}", verify.failed);
    // The destination's listing carries the source ETag each copy recorded, so a re-run
    // decides without a single HEAD (and without state of its own).
    let third = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((third.copied, third.skipped), (0, n as u64), "{label}");
    assert_eq!(third.requests.heads, 0, "{label}: {:?}", third.requests);
    for i in (0..n).step_by(97).chain([0, 100, 900]) {
        let (x, y) = (
            src.get_bytes(&key(i)).await.unwrap(),
            dst.get_bytes(&key(i)).await.unwrap(),
        );
        assert_eq!(crc_hex(&x), crc_hex(&y), "{label}: {}", key(i));
    }
    eprintln!(
        "sync of {n} objects SeaweedFS -> {label}: first run {} copied, {} failed (injected); \
         rerun {} copied, {} skipped, {} bytes",
        first.copied,
        first.failed.len(),
        second.copied,
        second.skipped,
        second.bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_objects_from_seaweedfs_to_azurite() {
    thousand_objects_to(
        &format!("az://{}", env("CLOUDSTORE_TEST_AZURE_CONTAINER")),
        "Azurite",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_objects_from_seaweedfs_to_fake_gcs() {
    thousand_objects_to(
        &format!("gs://{}", env("CLOUDSTORE_TEST_GCS_BUCKET")),
        "fake-gcs-server",
    )
    .await;
}

#[tokio::test]
async fn memory_backends_are_distinct_stores() {
    // Two MemoryBackend instances are different backends: a copy between them streams.
    let a = Store::new(MemoryBackend::new());
    let b = Store::new(MemoryBackend::new());
    a.put("k", "v").await.unwrap();
    let c = migrate::copy(&a, "k", &b, "k", &CopyOptions::default())
        .await
        .unwrap();
    assert!(!c.server_side);
    assert_eq!(b.get_bytes("k").await.unwrap(), "v");
}

/// Keys that are not plain paths cross memory -> fs -> memory exactly, and every source
/// object is accounted for; a verification proves each one is in place.
#[tokio::test]
async fn odd_keys_are_synced_through_a_directory_and_verified() {
    let names = [
        "a//b.txt",
        "dir/",
        "/lead",
        "./x.txt",
        "x/../y",
        "https://example.org/p?q=1",
        "trail ",
        "%41%2F",
        "normal.txt",
    ];
    let src = Store::memory();
    for (i, n) in names.iter().enumerate() {
        src.put(n, format!("body {i}")).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let local = Store::local(dir.path()).unwrap();
    let back = Store::memory();
    for (from, to) in [(&src, &local), (&local, &back)] {
        let r = migrate::sync(from, to, &SyncOptions::default())
            .await
            .unwrap();
        assert_eq!((r.source_objects, r.copied), (9, 9), "{r:?}");
        assert!(r.failed.is_empty(), "{r:?}");
        let verify = SyncOptions {
            verify_only: true,
            ..Default::default()
        };
        let v = migrate::sync(from, to, &verify).await.unwrap();
        assert!(v.all_in_place(), "{v:?}");
    }
    let mut want: Vec<&str> = names.to_vec();
    want.sort();
    let got: Vec<String> = back
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.into_string())
        .collect();
    assert_eq!(got, want);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(back.get_bytes(n).await.unwrap(), format!("body {i}"));
    }
    // A missing object makes the verification fail, by name.
    local.delete("./x.txt").await.unwrap();
    let v = migrate::sync(
        &src,
        &local,
        &SyncOptions {
            verify_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!v.all_in_place());
    assert_eq!(v.source_objects, 9);
    assert_eq!(v.failed.len(), 1);
    assert_eq!(v.failed[0].0, "./x.txt");
}
