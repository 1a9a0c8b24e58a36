//! The transfer engine's promises on every emulator (and on fs where the issue asks):
//! part boundaries, back-pressure, abort and drop, ETag pinning, checksum mismatch, resume.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cloudstore::transfer::{Checkpoint, FileUploadOptions};
use cloudstore::{ErrorKind, PutOptions, Store, StoreOptions, TransferConfig};

mod common;
use common::{
    crc_hex, data, env, eventually_no_uploads_left, hook, no_uploads_left, recorded_crc, unique,
};

const PART: u64 = 5 * 1024 * 1024;

fn config() -> TransferConfig {
    TransferConfig {
        part_size: PART,
        concurrency: 3,
        upload_memory: PART * 4,
        backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    }
}

/// Each emulator's store, scoped to a fresh prefix.
fn clouds() -> Vec<Store> {
    let scope = unique("cloud-tests/transfer");
    [
        format!("s3://{}/{scope}", env("CLOUDSTORE_TEST_S3_BUCKET")),
        format!("az://{}/{scope}", env("CLOUDSTORE_TEST_AZURE_CONTAINER")),
        format!("gs://{}/{scope}", env("CLOUDSTORE_TEST_GCS_BUCKET")),
    ]
    .iter()
    .map(|u| {
        Store::from_url(u, &StoreOptions::new())
            .unwrap()
            .with_transfer_config(config())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_size_streams_round_trip_at_part_boundaries() {
    for store in clouds() {
        let name = store.backend_name().to_string();
        for (i, len) in [2 * PART as usize, 2 * PART as usize + 1]
            .into_iter()
            .enumerate()
        {
            let body = data(len, i as u8);
            let chunks: Vec<cloudstore::Result<Bytes>> = body
                .chunks(1 << 20)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let key = format!("boundary-{i}");
            let meta = store
                .upload_stream(&key, futures::stream::iter(chunks), &PutOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(meta.size, len as u64, "{name}");
            assert!(
                store.get_bytes(&key).await.unwrap() == body,
                "{name}: {len} bytes differ"
            );
            let head = store.head(&key).await.unwrap();
            if store.capabilities().complete_metadata {
                assert_eq!(
                    head.crc32c.map(|c| format!("{c:08x}")),
                    Some(crc_hex(&body)),
                    "{name}"
                );
            }
            store.delete(&key).await.unwrap();
        }
        assert!(no_uploads_left(&store).await, "{name}: uploads left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_budget_bounds_parts_in_flight_on_every_cloud() {
    for store in clouds() {
        let name = store.backend_name().to_string();
        let cfg = TransferConfig {
            global_memory: 2 * PART,
            upload_memory: 8 * PART,
            concurrency: 4,
            ..config()
        };
        let (hooked, hooks) = hook(&store, cfg);
        let mut up = hooked.writer("budget", &PutOptions::default()).unwrap();
        up.write_all(&data(5 * PART as usize, 3)).await.unwrap();
        up.finish().await.unwrap();
        let max = hooks.max_in_flight.load(Ordering::SeqCst);
        assert!(
            max <= 2,
            "{name}: {max} parts held at once; the budget holds 2"
        );
        store.delete("budget").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_drop_leave_nothing_on_every_cloud() {
    for store in clouds() {
        let name = store.backend_name().to_string();
        let mut up = store.writer("aborted", &PutOptions::default()).unwrap();
        up.write_all(&data(PART as usize + 100, 4)).await.unwrap();
        up.flush().await.unwrap();
        up.abort().await.unwrap();
        assert!(
            no_uploads_left(&store).await,
            "{name}: abort left an upload"
        );
        assert_eq!(
            store.head("aborted").await.unwrap_err().kind(),
            ErrorKind::NotFound,
            "{name}"
        );

        let mut up = store.writer("dropped", &PutOptions::default()).unwrap();
        up.write_all(&data(PART as usize + 100, 5)).await.unwrap();
        up.flush().await.unwrap();
        drop(up);
        assert!(
            eventually_no_uploads_left(&store).await,
            "{name}: drop left an upload"
        );
        assert_eq!(
            store.head("dropped").await.unwrap_err().kind(),
            ErrorKind::NotFound,
            "{name}"
        );
        assert!(
            store.list_all(None).await.unwrap().is_empty(),
            "{name}: objects left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_pinned_to_one_version_on_every_cloud() {
    let dir = tempfile::tempdir().unwrap();
    for store in clouds() {
        let name = store.backend_name().to_string();
        store.put("pinned", data(3 * 1024 * 1024, 6)).await.unwrap();
        let small = store.with_transfer_config(TransferConfig {
            part_size: 1024 * 1024,
            ..config()
        });
        // The reader measured version one; version two arrives before the ranges are read.
        let mut reader = small.reader("pinned").await.unwrap();
        store.put("pinned", data(3 * 1024 * 1024, 7)).await.unwrap();
        let mut sink = Vec::new();
        let e = reader.read_to_end(&mut sink).await.unwrap_err();
        assert!(e.to_string().contains("precondition failed"), "{name}: {e}");
        // download_file: the object changes after the first range.
        let (hooked, hooks) = hook(&small, small.transfer_config().clone());
        *hooks.replace_on_get.lock().unwrap() = Some(2);
        let dst = dir.path().join(format!("{name}.bin"));
        let e = hooked.download_file("pinned", &dst).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{name}: {e}");
        assert!(!dst.exists(), "{name}: a mixed file was left");
        store.delete("pinned").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_file_upload_resumes_on_every_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(4 * PART as usize + 12345, 8);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    for store in clouds() {
        let name = store.backend_name().to_string();
        let cp_path = dir.path().join(format!("{name}.checkpoint.json"));
        let (first, hooks) = hook(&store, config());
        hooks
            .fail_parts
            .lock()
            .unwrap()
            .insert(3, (u32::MAX, false));
        let options = FileUploadOptions {
            checkpoint: Some(cp_path.clone()),
            ..Default::default()
        };
        first
            .upload_file_with("resumed", &src, &options)
            .await
            .unwrap_err();
        let recorded = Checkpoint::load(&cp_path).unwrap().parts.len();
        assert!(recorded >= 1, "{name}: nothing recorded");
        assert_eq!(
            store.head("resumed").await.unwrap_err().kind(),
            ErrorKind::NotFound,
            "{name}"
        );

        let (second, hooks2) = hook(&store, config());
        second
            .resume_upload(&cp_path, &src, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hooks2.part_calls.load(Ordering::SeqCst),
            5 - recorded,
            "{name}: only missing parts"
        );
        assert!(
            store.get_bytes("resumed").await.unwrap() == body,
            "{name}: resumed object differs"
        );
        assert_eq!(
            recorded_crc(&store, "resumed").await,
            Some(crc_hex(&body)),
            "{name}"
        );
        assert!(no_uploads_left(&store).await, "{name}");
        store.delete("resumed").await.unwrap();
    }
}

#[tokio::test]
async fn a_corrupted_file_under_fs_is_detected_on_download() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path().join("root"))
        .unwrap()
        .with_transfer_config(TransferConfig {
            part_size: 64 * 1024,
            ..config()
        });
    let body = data(300_000, 9);
    let mut up = store.writer("rot.bin", &PutOptions::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    // Bit rot: one byte changes in place and the modification time stays as it was.
    let path = dir.path().join("root/rot.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[body[1234] ^ 0xff], 1234).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    let dst = dir.path().join("out.bin");
    let e = store.download_file("rot.bin", &dst).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert!(!dst.exists());
    let mut sink = Vec::new();
    let e = store
        .reader("rot.bin")
        .await
        .unwrap()
        .read_to_end(&mut sink)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
}

/// The writer checksums its input as it copies it, continuing each part's CRC64-NVME and the
/// object's CRC32C across chunks; writes of odd sizes, flushes and owned chunks in between
/// must still give every part the checksum of its bytes (S3 refuses a part whose
/// CRC64-NVME is wrong) and the object the CRC32C of the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_writes_carry_the_checksums_of_their_bytes_on_every_cloud() {
    for store in clouds() {
        let name = store.backend_name().to_string();
        let body = data(3 * PART as usize + 4321, 11);
        let mut up = store.writer("mixed", &PutOptions::default()).unwrap();
        let (head, rest) = body.split_at(PART as usize / 2 + 99);
        for piece in head.chunks(333_333) {
            up.write_all(piece).await.unwrap();
        }
        up.flush().await.unwrap();
        let (owned, rest) = rest.split_at(3 * (1 << 20) / 2);
        up.write_bytes(Bytes::copy_from_slice(owned)).await.unwrap();
        for piece in rest.chunks(1_000_003) {
            up.write_all(piece).await.unwrap();
        }
        let meta = up.finish().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.size, body.len() as u64, "{name}");
        assert!(
            store.get_bytes("mixed").await.unwrap() == body,
            "{name}: bytes differ"
        );
        if store.capabilities().complete_metadata {
            assert_eq!(
                recorded_crc(&store, "mixed").await,
                Some(crc_hex(&body)),
                "{name}"
            );
        }
        store.delete("mixed").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_streamed_uploads_are_verified_by_the_native_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let store = clouds().into_iter().next().unwrap();
    assert_eq!(store.backend_name(), "s3");
    let body = data(2 * PART as usize + 7, 10);
    let mut up = store.writer("native", &PutOptions::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    // S3 fixes metadata when a multipart upload starts: the stream's CRC32C is not there,
    // but S3 keeps the CRC64-NVME it checked on every part.
    let head = store.head("native").await.unwrap();
    assert!(head.crc32c.is_none());
    let key = store.full_key(cloudstore::Op::Get, "native").unwrap();
    assert!(
        store
            .backend()
            .native_checksum(&key)
            .await
            .unwrap()
            .is_some(),
        "no native checksum stored"
    );
    store
        .download_file("native", dir.path().join("ok.bin"))
        .await
        .unwrap();
    assert!(std::fs::read(dir.path().join("ok.bin")).unwrap() == body);

    let (hooked, hooks) = hook(&store, config());
    hooks.corrupt_native.store(true, Ordering::SeqCst);
    let e = hooked
        .download_file("native", dir.path().join("bad.bin"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert!(!dir.path().join("bad.bin").exists());
    let mut sink = Vec::new();
    let e = hooked
        .reader("native")
        .await
        .unwrap()
        .read_to_end(&mut sink)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    store.delete("native").await.unwrap();
}

/// Near the store (an emulator on this machine answers the creation of an upload within a
/// few milliseconds), a store from `Store::from_url` sends an upload's parts after the first
/// in smaller pieces: S3's multipart ETag counts the parts (16 MiB, then 5 MiB pieces, S3's
/// least). With `adapt_to_latency` off they are not split. The bytes are the same either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_s3_parts_after_the_first_are_split() {
    const MIB: u64 = 1024 * 1024;
    let url = format!(
        "s3://{}/{}",
        env("CLOUDSTORE_TEST_S3_BUCKET"),
        unique("cloud-tests/near-split")
    );
    let body = data(26 * MIB as usize, 12);
    for (adapt, parts) in [(false, 2), (true, 3)] {
        let store = Store::from_url(&url, &StoreOptions::new())
            .unwrap()
            .with_transfer_config(TransferConfig {
                part_size: 16 * MIB,
                concurrency: 2,
                upload_memory: 64 * MIB,
                adapt_to_latency: adapt,
                ..Default::default()
            });
        // A warm connection, so that the creation's time is one round trip; a creation
        // slowed by a busy machine is not near, so the split is given a few tries.
        store.put("warm", Bytes::from_static(b"w")).await.unwrap();
        let mut counted = Vec::new();
        for _ in 0..5 {
            let mut up = store.writer("near", &PutOptions::default()).unwrap();
            up.write_all(&body).await.unwrap();
            let meta = up.finish().await.unwrap();
            assert_eq!(meta.size, body.len() as u64);
            assert!(
                store.get_bytes("near").await.unwrap() == body,
                "adapt {adapt}"
            );
            let etag = meta.etag.unwrap_or_default();
            let count = etag
                .trim_matches('"')
                .rsplit_once('-')
                .map(|(_, n)| n.to_string());
            counted.push(count.clone());
            if count.as_deref() == Some(&parts.to_string()) {
                break;
            }
        }
        assert!(
            counted.last().unwrap().as_deref() == Some(&parts.to_string()),
            "adapt {adapt}: parts counted by the ETags {counted:?}, {parts} wanted"
        );
        if !adapt {
            assert_eq!(counted.len(), 1, "not split, every time");
        }
        store.delete("near").await.unwrap();
        store.delete("warm").await.unwrap();
    }
}
