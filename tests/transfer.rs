//! The transfer engine on memory and fs: part sizing, parallelism, failures, checksums,
//! downloads. A wrapper backend injects faults and observes what the engine sends.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cloudstore::transfer::CHECKSUM_METADATA;
use cloudstore::{
    Capabilities, Error, ErrorKind, MemoryBackend, Op, PutOptions, Store, TransferConfig,
};

mod common;
use common::{Hooked, Hooks, crc_hex, data, no_uploads_left, recorded_crc};
use futures::TryStreamExt;

/// Small limits so that a few hundred KiB make many parts.
fn small_caps() -> Capabilities {
    Capabilities {
        min_part_size: 1024,
        max_part_size: 64 * 1024,
        max_parts: 1000,
        max_object_size: Some(16 * 1024 * 1024),
        ..Capabilities::s3_like()
    }
}

fn config(part: u64, concurrency: usize) -> TransferConfig {
    TransferConfig {
        part_size: part,
        concurrency,
        upload_memory: part * (concurrency as u64 + 1),
        global_memory: 16 * 1024 * 1024,
        attempts: 3,
        backoff: std::time::Duration::from_millis(1),
        checksum: true,
        adapt_to_latency: true,
    }
}

/// The whole object `key` read back through the store's reader.
async fn read_back(store: &Store, key: &str) -> Vec<u8> {
    let mut read = Vec::new();
    let mut reader = store.reader(key).await.unwrap();
    reader.read_to_end(&mut read).await.unwrap();
    read
}

fn hooked(caps: Capabilities, cfg: TransferConfig) -> (Store, Arc<Hooks>) {
    let hooks = Arc::new(Hooks::default());
    let backend = Hooked {
        inner: Arc::new(MemoryBackend::with_capabilities(caps)),
        hooks: hooks.clone(),
    };
    (Store::new(backend).with_transfer_config(cfg), hooks)
}

#[tokio::test]
async fn a_small_object_is_one_put_with_its_checksum() {
    let (store, hooks) = hooked(small_caps(), config(4096, 4));
    let mut up = store
        .writer(
            "small",
            &PutOptions::default().with_content_type("text/plain"),
        )
        .unwrap();
    up.write_all(b"hello ").await.unwrap();
    up.write_all(b"world").await.unwrap();
    let meta = up.finish().await.unwrap();
    assert_eq!(meta.size, 11);
    assert_eq!(
        hooks.part_calls.load(Ordering::SeqCst),
        0,
        "no multipart for one part"
    );
    let head = store.head("small").await.unwrap();
    assert_eq!(
        head.crc32c.map(|c| format!("{c:08x}")),
        Some(crc_hex(b"hello world"))
    );
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn odd_writes_become_parts_uploaded_in_parallel() {
    let (store, hooks) = hooked(small_caps(), config(4096, 3));
    let body = data(100_000, 7);
    let mut up = store.writer("big", &PutOptions::default()).unwrap();
    for chunk in body.chunks(777) {
        up.write_all(chunk).await.unwrap();
    }
    let meta = up.finish().await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(store.get_bytes("big").await.unwrap(), body);
    let calls = hooks.part_calls.load(Ordering::SeqCst);
    assert_eq!(calls, body.len().div_ceil(4096));
    let max = hooks.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} parts in flight, the limit is 3");
    assert!(max >= 2, "parts never overlapped");
    assert_eq!(
        store
            .head("big")
            .await
            .unwrap()
            .crc32c
            .map(|c| format!("{c:08x}")),
        Some(crc_hex(&body))
    );
    assert!(no_uploads_left(&store).await);
}

#[tokio::test]
async fn the_checksum_covers_flushes_and_owned_chunks_between_writes() {
    for part in [4096, 5000, 1 << 16] {
        let (store, _) = hooked(small_caps(), config(part, 3));
        let body = data(300_001, 9);
        let mut up = store.writer("mixed", &PutOptions::default()).unwrap();
        let (head, rest) = body.split_at(12_345);
        for piece in head.chunks(1000) {
            up.write_all(piece).await.unwrap();
        }
        up.flush().await.unwrap();
        let (owned, rest) = rest.split_at(70_000);
        up.write_bytes(Bytes::copy_from_slice(owned)).await.unwrap();
        for piece in rest.chunks(9_999) {
            up.write_all(piece).await.unwrap();
            if piece[0] % 5 == 0 {
                up.flush().await.unwrap();
            }
        }
        up.finish().await.unwrap();
        assert_eq!(store.get_bytes("mixed").await.unwrap(), body, "part {part}");
        assert_eq!(
            recorded_crc(&store, "mixed").await,
            Some(crc_hex(&body)),
            "part {part}"
        );
    }
}

#[tokio::test]
async fn an_unknown_size_grows_parts_to_fit_the_part_limit() {
    // 8 parts at most, 1 KiB to 64 KiB each: 250 KiB only fits if parts grow.
    let caps = Capabilities {
        max_parts: 8,
        max_object_size: Some(300 * 1024),
        ..small_caps()
    };
    let (store, hooks) = hooked(caps.clone(), config(1024, 2));
    let body = data(250 * 1024, 3);
    let chunks: Vec<cloudstore::Result<Bytes>> = body
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    store
        .upload_stream(
            "grown",
            futures::stream::iter(chunks),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.get_bytes("grown").await.unwrap(), body);
    assert!(hooks.part_calls.load(Ordering::SeqCst) <= 8);

    // With the size known in advance the part size is chosen once.
    let (store, hooks) = hooked(caps, config(1024, 2));
    let mut up = store
        .writer("known", &PutOptions::default())
        .unwrap()
        .with_size_hint(body.len() as u64);
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    assert!(hooks.part_calls.load(Ordering::SeqCst) <= 8);
    assert_eq!(store.get_bytes("known").await.unwrap(), body);
}

#[tokio::test]
async fn owned_bytes_reach_the_backend_without_a_copy() {
    let store = Store::memory();
    let chunk = Bytes::from(vec![5u8; 1000]);
    let ptr = chunk.as_ptr();
    store
        .upload_stream(
            "zero-copy",
            futures::stream::iter([Ok(chunk)]),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let stored = store.get_bytes("zero-copy").await.unwrap();
    assert_eq!(
        stored.as_ptr(),
        ptr,
        "the stored bytes are the caller's buffer"
    );
}

#[tokio::test]
async fn a_failed_part_is_retried() {
    let (store, hooks) = hooked(small_caps(), config(1024, 2));
    hooks.fail_parts.lock().unwrap().insert(3, (2, true));
    let body = data(10_000, 1);
    let mut up = store.writer("retried", &PutOptions::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(store.get_bytes("retried").await.unwrap(), body);
    assert_eq!(
        hooks.part_calls.load(Ordering::SeqCst),
        body.len().div_ceil(1024) + 2
    );
}

#[tokio::test]
async fn a_final_failure_aborts_and_leaves_nothing() {
    let (store, hooks) = hooked(small_caps(), config(1024, 2));
    hooks.fail_parts.lock().unwrap().insert(4, (1, false));
    let mut up = store.writer("failed", &PutOptions::default()).unwrap();
    let written = up.write_all(&data(20_000, 2)).await;
    let e = match written {
        Err(e) => cloudstore::Error::new(ErrorKind::Other, Op::PutPart, "io", e.to_string()),
        Ok(()) => up.finish().await.unwrap_err(),
    };
    assert!(e.to_string().contains("injected failure"), "{e}");
    assert_eq!(
        store.head("failed").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(no_uploads_left(&store).await);
}

#[tokio::test]
async fn abort_and_drop_leave_nothing_behind() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    let mut up = store.writer("aborted", &PutOptions::default()).unwrap();
    up.write_all(&data(5000, 3)).await.unwrap();
    up.flush().await.unwrap();
    up.abort().await.unwrap();
    assert!(no_uploads_left(&store).await);
    assert_eq!(
        store.head("aborted").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let mut up = store.writer("dropped", &PutOptions::default()).unwrap();
    up.write_all(&data(5000, 4)).await.unwrap();
    up.flush().await.unwrap();
    assert!(
        !no_uploads_left(&store).await,
        "a multipart upload is in progress"
    );
    drop(up);
    // The abort runs in the background: wait for it (bounded), then check.
    for _ in 0..200 {
        if no_uploads_left(&store).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(no_uploads_left(&store).await);
    assert_eq!(
        store.head("dropped").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_failing_source_stream_aborts_instead_of_storing_a_short_object() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    let chunks: Vec<cloudstore::Result<Bytes>> = vec![
        Ok(Bytes::from(data(3000, 5))),
        Err(Error::new(
            ErrorKind::Other,
            Op::Get,
            "source",
            "the source broke",
        )),
    ];
    let e = store
        .upload_stream(
            "short",
            futures::stream::iter(chunks),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the source broke"));
    assert_eq!(
        store.head("short").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(no_uploads_left(&store).await);
}

#[tokio::test]
async fn conditions_hold_on_multipart_uploads() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    store.put("taken", "first").await.unwrap();
    let mut up = store.writer("taken", &PutOptions::create()).unwrap();
    up.write_all(&data(10_000, 6)).await.unwrap();
    assert_eq!(
        up.finish().await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(store.get_bytes("taken").await.unwrap(), "first");
    assert!(no_uploads_left(&store).await);
}

#[tokio::test]
async fn progress_reaches_the_total() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    let last = Arc::new(Mutex::new(cloudstore::Progress::default()));
    let l2 = last.clone();
    let mut up = store
        .writer("progress", &PutOptions::default())
        .unwrap()
        .with_size_hint(9000)
        .with_progress(Arc::new(move |p| *l2.lock().unwrap() = p));
    up.write_all(&data(9000, 8)).await.unwrap();
    up.finish().await.unwrap();
    let p = *last.lock().unwrap();
    assert_eq!((p.bytes, p.total, p.parts), (9000, Some(9000), 9));
}

#[tokio::test]
async fn files_upload_in_parallel_and_download_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, hooks) = hooked(small_caps(), config(4096, 4));
    let body = data(150_000, 9);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    let meta = store
        .upload_file("file", &src, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert!(hooks.max_in_flight.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        store
            .head("file")
            .await
            .unwrap()
            .crc32c
            .map(|c| format!("{c:08x}")),
        Some(crc_hex(&body))
    );

    let dst = dir.path().join("out/dst.bin");
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    store.download_file("file", &dst).await.unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), body);
    let leftovers: Vec<_> = std::fs::read_dir(dst.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    assert_eq!(read_back(&store, "file").await, body);
}

#[tokio::test]
async fn a_corrupt_object_is_refused_on_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::memory().with_transfer_config(config(4096, 2));
    let body = data(20_000, 10);
    // A wrong record, written under the Store's contract (which refuses reserved names).
    let opts = PutOptions::default().with_metadata(CHECKSUM_METADATA, crc_hex(b"something else"));
    let key = store.full_key(Op::Put, "bad").unwrap();
    store.backend().put(&key, body.into(), &opts).await.unwrap();
    let dst = dir.path().join("bad.bin");
    let e = store.download_file("bad", &dst).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert!(!dst.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary file left"
    );
    let mut reader = store.reader("bad").await.unwrap();
    let mut sink = Vec::new();
    let e = reader.read_to_end(&mut sink).await.unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn an_object_replaced_mid_download_is_a_precondition_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (store, hooks) = hooked(small_caps(), config(1024, 1));
    store.put("moving", data(10_000, 11)).await.unwrap();
    *hooks.replace_on_get.lock().unwrap() = Some(3);
    let dst = dir.path().join("moving.bin");
    let e = store.download_file("moving", &dst).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(!dst.exists(), "a mixed file was left");

    // The reader, near the store (one stream after the opening range) and in parallel
    // ranges: the bytes of another version are never handed out as this one's.
    for adapt in [true, false] {
        let cfg = TransferConfig {
            adapt_to_latency: adapt,
            ..config(1024, 1)
        };
        let (store, hooks) = hooked(small_caps(), cfg);
        store.put("moving", data(10_000, 11)).await.unwrap();
        *hooks.replace_on_get.lock().unwrap() = Some(2);
        let mut reader = store.reader("moving").await.unwrap();
        let mut read = Vec::new();
        let e = reader.read_to_end(&mut read).await.unwrap_err();
        assert!(
            e.to_string().contains("replaced"),
            "adapt {adapt}: {e} after {} bytes",
            read.len()
        );
        assert!(
            read.len() <= 1024,
            "adapt {adapt}: {} bytes of a mixed read",
            read.len()
        );
    }
}

#[tokio::test]
async fn the_global_budget_is_shared_by_clones() {
    // Two uploads through clones of one store: both complete within one shared budget.
    let (store, _) = hooked(
        small_caps(),
        TransferConfig {
            global_memory: 8 * 1024,
            ..config(2048, 2)
        },
    );
    let other = store.clone();
    let a = tokio::spawn(async move {
        let mut up = store.writer("a", &PutOptions::default()).unwrap();
        up.write_all(&data(50_000, 1)).await.unwrap();
        up.finish().await.unwrap()
    });
    let b = tokio::spawn(async move {
        let mut up = other.writer("b", &PutOptions::default()).unwrap();
        up.write_all(&data(50_000, 2)).await.unwrap();
        up.finish().await.unwrap()
    });
    assert_eq!(a.await.unwrap().size, 50_000);
    assert_eq!(b.await.unwrap().size, 50_000);
}

#[tokio::test]
async fn file_downloads_report_progress_up_to_the_total() {
    let (store, _) = hooked(small_caps(), config(4096, 3));
    let body = data(50_000, 9);
    store.put("p", body.clone()).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let progress: cloudstore::transfer::ProgressFn =
        Arc::new(move |p| record.lock().unwrap().push(p));
    let dir = tempfile::tempdir().unwrap();
    store
        .download_file_with_progress("p", dir.path().join("p"), Some(progress))
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("p")).unwrap(), body);
    let seen = seen.lock().unwrap();
    let last = seen.iter().max_by_key(|p| (p.bytes, p.parts)).unwrap();
    // A first range of 4096 bytes, then 45,904 bytes in ranges of at least 4096.
    assert_eq!((last.bytes, last.total), (50_000, Some(50_000)));
    assert!(last.parts >= 2 && last.parts <= 13, "{last:?}");
    assert!(
        seen.iter()
            .all(|p| p.bytes <= 50_000 && p.total == Some(50_000))
    );
}

#[tokio::test]
async fn empty_objects_upload_and_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::memory();
    let up = store.writer("empty", &PutOptions::default()).unwrap();
    assert_eq!(up.finish().await.unwrap().size, 0);
    let dst = dir.path().join("empty");
    store.download_file("empty", &dst).await.unwrap();
    assert_eq!(std::fs::read(&dst).unwrap().len(), 0);
    let body = read_back(&store, "empty").await;
    assert!(body.is_empty());
}

#[tokio::test]
async fn an_interrupted_file_upload_resumes_elsewhere_sending_only_missing_parts() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(40_000, 12);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    let cp_path = dir.path().join("upload.checkpoint.json");

    // First process: part 7 fails for good.
    let shared = MemoryBackend::with_capabilities(small_caps());
    let hooks = Arc::new(Hooks::default());
    hooks
        .fail_parts
        .lock()
        .unwrap()
        .insert(7, (u32::MAX, false));
    let first = Store::new(Hooked {
        inner: Arc::new(shared.clone()),
        hooks: hooks.clone(),
    })
    .with_transfer_config(config(2048, 2));
    let options = cloudstore::transfer::FileUploadOptions {
        put: PutOptions::default().with_content_type("application/x-test"),
        checkpoint: Some(cp_path.clone()),
        ..Default::default()
    };
    let e = first
        .upload_file_with("resumed", &src, &options)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("injected failure"), "{e}");
    let cp = cloudstore::transfer::Checkpoint::load(&cp_path).unwrap();
    assert!(!cp.parts.contains_key(&7));
    assert!(!cp.parts.is_empty(), "no part was recorded");
    assert_eq!(
        first.list_multipart_uploads(None).await.unwrap().len(),
        1,
        "the upload must be kept"
    );
    assert_eq!(
        first.head("resumed").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Second process: a new store over the same data, no faults.
    let hooks2 = Arc::new(Hooks::default());
    let second = Store::new(Hooked {
        inner: Arc::new(shared.clone()),
        hooks: hooks2.clone(),
    })
    .with_transfer_config(config(2048, 2));
    let meta = second.resume_upload(&cp_path, &src, None).await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    let expected_parts = body.len().div_ceil(2048) - cp.parts.len();
    assert_eq!(
        hooks2.part_calls.load(Ordering::SeqCst),
        expected_parts,
        "only missing parts are sent"
    );
    assert_eq!(second.get_bytes("resumed").await.unwrap(), body);
    let head = second.head("resumed").await.unwrap();
    assert_eq!(
        head.crc32c.map(|c| format!("{c:08x}")),
        Some(crc_hex(&body))
    );
    assert_eq!(head.content_type.as_deref(), Some("application/x-test"));
    assert!(!cp_path.exists(), "the checkpoint is removed when done");
    assert!(no_uploads_left(&second).await);
}

#[tokio::test]
async fn resuming_with_a_changed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, data(20_000, 13)).unwrap();
    let cp_path = dir.path().join("cp.json");
    let (store, hooks) = hooked(small_caps(), config(2048, 1));
    hooks
        .fail_parts
        .lock()
        .unwrap()
        .insert(3, (u32::MAX, false));
    let options = cloudstore::transfer::FileUploadOptions {
        checkpoint: Some(cp_path.clone()),
        ..Default::default()
    };
    store
        .upload_file_with("k", &src, &options)
        .await
        .unwrap_err();
    std::fs::write(&src, data(20_001, 14)).unwrap();
    let e = store.resume_upload(&cp_path, &src, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    store.abort_checkpoint(&cp_path).await.unwrap();
    assert!(no_uploads_left(&store).await);
    assert!(!cp_path.exists());
}

#[tokio::test]
async fn where_completion_takes_no_metadata_the_file_checksum_is_stored_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(30_000, 15);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    let caps = Capabilities {
        complete_metadata: false,
        ..small_caps()
    };
    let (store, _) = hooked(caps, config(2048, 2));
    store
        .upload_file("s3-like", &src, &PutOptions::default())
        .await
        .unwrap();
    let head = store.head("s3-like").await.unwrap();
    assert_eq!(
        head.crc32c.map(|c| format!("{c:08x}")),
        Some(crc_hex(&body))
    );
    let out = dir.path().join("out.bin");
    store.download_file("s3-like", &out).await.unwrap();
    assert_eq!(std::fs::read(out).unwrap(), body);
}

/// Both ways of reading: near the store (one stream after the opening range) and with
/// `adapt_to_latency` off (parallel ranges). Tokio's clock is paused, so the opening
/// request always answers "near".
#[tokio::test(start_paused = true)]
async fn a_read_cut_short_is_retried_without_duplicating_bytes() {
    for adapt in [true, false] {
        let (store, hooks) = hooked(
            small_caps(),
            TransferConfig {
                checksum: false,
                adapt_to_latency: adapt,
                ..config(2048, 2)
            },
        );
        let body = data(10_000, 16);
        store.put("cut", body.clone()).await.unwrap();
        *hooks.truncate_get.lock().unwrap() = Some(2);
        let read = read_back(&store, "cut").await;
        assert!(
            read == body,
            "adapt {adapt}: read {} bytes, expected {}",
            read.len(),
            body.len()
        );
        let cut = hooks.served.lock().unwrap()[1].clone();
        // Near the store the rest is one request, cut; otherwise a range of 2048.
        let want = if adapt { 2048..10_000 } else { 2048..4096 };
        assert_eq!(cut, want, "adapt {adapt}: the read that was cut");
        continues_where_cut(&hooks, 2, &cut);
        if !adapt {
            continue;
        }

        let before = hooks.gets.load(Ordering::SeqCst);
        hooks.served.lock().unwrap().clear();
        *hooks.truncate_get.lock().unwrap() = Some(before + 3);
        let dir = tempfile::tempdir().unwrap();
        store
            .download_file("cut", dir.path().join("cut"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("cut")).unwrap(), body);
        let cut = hooks.served.lock().unwrap()[2].clone();
        continues_where_cut(&hooks, 3, &cut);
    }
}

/// Near the store (no measurable round trip) or on a backend without parallel parts, the
/// reader streams the rest of the object in one request after the opening range; with
/// `adapt_to_latency` off, or near the store over a slow connection, a backend with
/// parallel parts is read in parallel ranges. (Tokio's clock is paused: the slow
/// connection's pauses cost no wall time.)
#[tokio::test(start_paused = true)]
async fn a_near_store_is_read_in_one_stream_after_the_opening_range() {
    let body = data(10_000, 17);
    for (adapt, parallel_parts, slow, dawdle, one_stream) in [
        (true, true, false, false, true),
        (false, true, false, false, false),
        (false, false, false, false, true),
        (true, true, true, false, false),
        (true, false, true, false, true),
        // A caller that takes its time between reads does not make the store look slow.
        (true, true, false, true, true),
    ] {
        let caps = Capabilities {
            parallel_parts,
            ..small_caps()
        };
        let cfg = TransferConfig {
            adapt_to_latency: adapt,
            ..config(2048, 3)
        };
        let (store, hooks) = hooked(caps, cfg);
        store.put("near", body.clone()).await.unwrap();
        hooks.served.lock().unwrap().clear();
        // 1 KiB per 5 ms: 200 KB/s, far below one stream's rate.
        *hooks.slow_body.lock().unwrap() =
            slow.then_some((std::time::Duration::from_millis(5), 1024));
        let what = format!("adapt {adapt}, parallel parts {parallel_parts}, slow {slow}");
        let mut read = Vec::new();
        let mut chunks = store.reader("near").await.unwrap().into_stream();
        while let Some(chunk) = chunks.try_next().await.unwrap() {
            read.extend_from_slice(&chunk);
            if dawdle {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        assert!(read == body, "{what}");
        let served = hooks.served.lock().unwrap().clone();
        let want: Vec<std::ops::Range<u64>> = if one_stream {
            vec![0..2048, 2048..10_000]
        } else {
            (0..5u64)
                .map(|i| i * 2048..((i + 1) * 2048).min(10_000))
                .collect()
        };
        assert_eq!(served, want, "{what}: ranges served");
    }
}

/// With an opening range larger than the bytes the reader times (8 MiB), the choice is made
/// part-way through it: the rest of the head streams on, then one request (fast), or the
/// head's remainder and the rest go into the parallel read-ahead (slow). Near the store the
/// first bytes reach the caller as they arrive, not once the whole first range has.
#[tokio::test(start_paused = true)]
async fn a_large_opening_range_is_judged_on_its_first_bytes() {
    const MIB: u64 = 1 << 20;
    let caps = Capabilities {
        min_part_size: MIB,
        ..Capabilities::s3_like()
    };
    let body = data((30 * MIB) as usize, 43);
    for (adapt, slow) in [(true, false), (true, true), (false, true)] {
        let cfg = TransferConfig {
            adapt_to_latency: adapt,
            ..config(12 * MIB, 2)
        };
        let (store, hooks) = hooked(caps.clone(), cfg);
        store.put("big", body.clone()).await.unwrap();
        hooks.served.lock().unwrap().clear();
        // 64 KiB per millisecond: about 65 MB/s.
        *hooks.slow_body.lock().unwrap() =
            slow.then_some((std::time::Duration::from_millis(1), 64 * 1024));
        let what = format!("adapt {adapt}, slow {slow}");
        let started = tokio::time::Instant::now();
        let mut chunks = store.reader("big").await.unwrap().into_stream();
        let first = chunks.try_next().await.unwrap().unwrap();
        let first_after = started.elapsed();
        let mut read = first.to_vec();
        while let Some(chunk) = chunks.try_next().await.unwrap() {
            read.extend_from_slice(&chunk);
        }
        assert!(read == body, "{what}: the bytes read back differ");
        let served = hooks.served.lock().unwrap().clone();
        let want = if slow {
            vec![0..12 * MIB, 12 * MIB..24 * MIB, 24 * MIB..30 * MIB]
        } else {
            vec![0..12 * MIB, 12 * MIB..30 * MIB]
        };
        assert_eq!(served, want, "{what}: ranges served");
        if slow {
            // The head is 192 pieces of 1 ms.
            let streamed = first_after < std::time::Duration::from_millis(10);
            assert_eq!(
                streamed, adapt,
                "{what}: first bytes after {first_after:?} (near: as they arrive; otherwise once the first range is whole)"
            );
        }
    }
}

/// A long range survives any number of cuts as long as each attempt moves it forward; the
/// attempts count failures without progress. And a server that answers less than asked
/// (its answer consistent with itself) is asked again for the rest.
#[tokio::test(start_paused = true)]
async fn a_long_stream_survives_cuts_and_short_answers_that_make_progress() {
    let body = data(40_000, 44);
    // Five cuts in a row with three attempts; then an answer for half the range asked.
    for (cuts, short) in [(Some(2..=6), None), (None, Some(2))] {
        let (store, hooks) = hooked(
            small_caps(),
            TransferConfig {
                checksum: false,
                ..config(2048, 2)
            },
        );
        store.put("long", body.clone()).await.unwrap();
        hooks.served.lock().unwrap().clear();
        *hooks.truncate_reads.lock().unwrap() = cuts.clone();
        *hooks.short_answer.lock().unwrap() = short;
        let read = read_back(&store, "long").await;
        assert!(
            read == body,
            "cuts {cuts:?}, short {short:?}: read {} bytes of {}",
            read.len(),
            body.len()
        );
        let served = hooks.served.lock().unwrap().clone();
        let total: u64 = served.iter().map(|r| r.end - r.start).sum();
        let asked_again = served.len() - 2;
        assert_eq!(
            asked_again,
            if cuts.is_some() { 5 } else { 1 },
            "cuts {cuts:?}, short {short:?}: {served:?}"
        );
        if short.is_some() {
            assert_eq!(total, 40_000, "bytes served: {served:?}");
        }
    }
}

/// After the read that answered `cut` lost the second half of its body, a later read asks
/// only for that half, and no byte is read twice.
fn continues_where_cut(hooks: &Hooks, n: usize, cut: &std::ops::Range<u64>) {
    let served = hooks.served.lock().unwrap().clone();
    let half = (cut.end - cut.start) / 2;
    assert!(
        served[n..].contains(&(cut.start + half..cut.end)),
        "after read {n} ({cut:?}) was cut, no read went on from its middle: {served:?}"
    );
    let total: u64 = served.iter().map(|r| r.end - r.start).sum();
    assert_eq!(
        total - (cut.end - cut.start - half),
        10_000,
        "bytes served, less those cut off: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_budget_bounds_parts_in_flight_across_clones() {
    // Two uploads, 4 parts in flight each by configuration, share a budget of 2 parts.
    let cfg = TransferConfig {
        global_memory: 2 * 2048,
        upload_memory: 8 * 2048,
        ..config(2048, 4)
    };
    let (store, hooks) = hooked(small_caps(), cfg);
    let writers: Vec<_> = (0..2u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut up = store
                    .writer(&format!("w{i}"), &PutOptions::default())
                    .unwrap();
                up.write_all(&data(20 * 2048, i)).await.unwrap();
                up.finish().await.unwrap()
            })
        })
        .collect();
    for w in writers {
        assert_eq!(w.await.unwrap().size, 20 * 2048);
    }
    let max = hooks.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max <= 2,
        "{max} parts were held at once; the shared budget holds 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_mid_way_leaves_no_upload() {
    let (store, hooks) = hooked(small_caps(), config(1024, 2));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *hooks.gate.lock().unwrap() = Some(gate.clone());
    let body = data(10_000_000, 17);
    let mut up = store.writer("cancelled", &PutOptions::default()).unwrap();
    // Parts block at the gate, the budget fills, the write waits: cancel it there.
    let r = tokio::time::timeout(std::time::Duration::from_millis(200), up.write_all(&body)).await;
    assert!(
        r.is_err(),
        "the write should have been waiting on back-pressure"
    );
    drop(up);
    gate.add_permits(1000);
    for _ in 0..400 {
        if no_uploads_left(&store).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(no_uploads_left(&store).await);
    assert_eq!(
        store.head("cancelled").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn shutdown_completes_the_upload() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    let body = data(5000, 18);
    let mut up = store.writer("shut", &PutOptions::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.shutdown().await.unwrap();
    assert_eq!(store.get_bytes("shut").await.unwrap(), body);
    assert_eq!(up.finish().await.unwrap().size, 5000);
}

#[tokio::test]
async fn writing_past_the_size_hint_is_refused() {
    let (store, _) = hooked(small_caps(), config(1024, 2));
    let mut up = store
        .writer("hinted", &PutOptions::default())
        .unwrap()
        .with_size_hint(3000);
    let r = up.write_all(&data(5000, 19)).await;
    let e = match r {
        Err(e) => e.to_string(),
        Ok(()) => up.finish().await.unwrap_err().to_string(),
    };
    assert!(e.contains("declared size"), "{e}");
    assert!(no_uploads_left(&store).await);
}

#[tokio::test]
async fn streams_round_trip_at_exact_part_multiples_and_one_byte_over() {
    for len in [3 * 2048, 3 * 2048 + 1, 2048, 2047, 1] {
        let (store, hooks) = hooked(small_caps(), config(2048, 2));
        let body = data(len, len as u8);
        let chunks: Vec<cloudstore::Result<Bytes>> = body
            .chunks(700)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let meta = store
            .upload_stream(
                "edge",
                futures::stream::iter(chunks),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(meta.size, len as u64);
        assert_eq!(store.get_bytes("edge").await.unwrap(), body, "{len} bytes");
        // One part or less is a single PUT; beyond, every part is full but the last.
        let expected_parts = if len <= 2048 { 0 } else { len.div_ceil(2048) };
        assert_eq!(
            hooks.part_calls.load(Ordering::SeqCst),
            expected_parts,
            "{len} bytes"
        );
        assert_eq!(
            store
                .head("edge")
                .await
                .unwrap()
                .crc32c
                .map(|c| format!("{c:08x}")),
            Some(crc_hex(&body))
        );
    }
}

#[tokio::test]
async fn stream_uploads_take_a_size_hint_and_report_progress() {
    let (store, hooks) = hooked(small_caps(), config(1024, 2));
    let body = data(10_000, 20);
    let last = Arc::new(Mutex::new(cloudstore::Progress::default()));
    let l2 = last.clone();
    let options = cloudstore::transfer::StreamUploadOptions {
        size_hint: Some(body.len() as u64),
        progress: Some(Arc::new(move |p| *l2.lock().unwrap() = p)),
        ..Default::default()
    };
    let chunks: Vec<cloudstore::Result<Bytes>> = body
        .chunks(3000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    store
        .upload_stream_with("hinted-stream", futures::stream::iter(chunks), &options)
        .await
        .unwrap();
    let p = *last.lock().unwrap();
    assert_eq!((p.bytes, p.total), (10_000, Some(10_000)));
    assert_eq!(hooks.part_calls.load(Ordering::SeqCst), 10);
    assert_eq!(store.get_bytes("hinted-stream").await.unwrap(), body);
}

/// Over a long round trip the engine sends the parts and ranges after the first in
/// smaller pieces, more of them in flight, within the same memory; near the store it sends
/// the parts in smaller pieces with no more in flight (less memory), and reads the rest of
/// an object in one stream; in between, with `adapt_to_latency` off, or where creating an
/// upload is no request (no round trip to time), parts are not split. (Tokio's clock is
/// paused: the round trips cost no wall time.)
#[tokio::test(start_paused = true)]
async fn the_round_trip_decides_how_parts_and_ranges_are_split() {
    const MIB: u64 = 1 << 20;
    #[derive(Debug, PartialEq, Clone, Copy)]
    enum Split {
        Far,
        Near,
        No,
    }
    // Part 1 of 8 MiB, then 6 more MiB-multiples, and a tail.
    let body = data((32 * MIB + 100) as usize, 41);
    for (latency_ms, adapt, timed, split) in [
        (160u64, true, true, Split::Far),
        (10, true, true, Split::No),
        (160, false, true, Split::No),
        (0, true, true, Split::Near),
        (0, false, true, Split::No),
        (160, true, false, Split::No),
        (0, true, false, Split::No),
    ] {
        let caps = Capabilities {
            min_part_size: MIB,
            create_multipart_round_trip: timed,
            ..Capabilities::s3_like()
        };
        let cfg = TransferConfig {
            adapt_to_latency: adapt,
            ..config(8 * MIB, 2)
        };
        let (store, hooks) = hooked(caps, cfg);
        if latency_ms > 0 {
            *hooks.latency.lock().unwrap() = Some(std::time::Duration::from_millis(latency_ms));
        }
        let what = format!("{latency_ms} ms, adapt {adapt}, creation timed {timed}");

        let mut up = store.writer("obj", &PutOptions::default()).unwrap();
        up.write_all(&body).await.unwrap();
        up.finish().await.unwrap();
        let sizes = hooks.part_sizes.lock().unwrap().clone();
        let (later, tail) = (4 * MIB, 100);
        let want: Vec<u64> = if split == Split::No {
            vec![8 * MIB, 8 * MIB, 8 * MIB, 8 * MIB, tail]
        } else {
            std::iter::once(8 * MIB)
                .chain(std::iter::repeat_n(later, 6))
                .chain([tail])
                .collect()
        };
        let mut got = sizes.clone();
        got.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(got, want, "{what}: part sizes");
        let in_flight = hooks.max_in_flight.load(Ordering::SeqCst);
        if split == Split::Far {
            assert!(
                in_flight > 2 && in_flight <= 4,
                "{what}: {in_flight} in flight"
            );
        } else {
            assert!(in_flight <= 2, "{what}: {in_flight} in flight");
        }

        hooks.served.lock().unwrap().clear();
        let read = read_back(&store, "obj").await;
        assert!(read == body, "{what}: the bytes read back differ");
        let served: Vec<u64> = hooks
            .served
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.end - r.start)
            .collect();
        assert_eq!(served[0], 8 * MIB, "{what}: the opening range");
        if adapt && latency_ms == 0 {
            // Near the store and fast: the rest in one request.
            assert_eq!(served, [8 * MIB, 24 * MIB + 100], "{what}");
        } else {
            let step = if latency_ms >= 60 && adapt {
                4 * MIB
            } else {
                8 * MIB
            };
            assert!(
                served[1..served.len() - 1].iter().all(|&n| n == step),
                "{what}: ranges {served:?}"
            );
        }
    }
}

/// `download_file` over a short round trip keeps `concurrency` reads open, and
/// twice as many from 60 ms on (their waits for a first byte overlap), unless
/// `adapt_to_latency` is off; the file is the object's bytes every time. (Tokio's clock is
/// paused: the round trips cost no wall time.)
#[tokio::test(start_paused = true)]
async fn file_downloads_keep_more_ranges_in_flight_over_a_long_round_trip() {
    let body = data(64 * 1024, 43);
    for (latency_ms, adapt, want) in [(160u64, true, 4), (10, true, 2), (160, false, 2)] {
        let cfg = TransferConfig {
            adapt_to_latency: adapt,
            ..config(1024, 2)
        };
        let (store, hooks) = hooked(small_caps(), cfg);
        store.put("far", body.clone()).await.unwrap();
        if latency_ms > 0 {
            *hooks.latency.lock().unwrap() = Some(std::time::Duration::from_millis(latency_ms));
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("far.bin");
        store.download_file("far", &out).await.unwrap();
        let what = format!("{latency_ms} ms, adapt {adapt}");
        assert!(
            std::fs::read(&out).unwrap() == body,
            "{what}: the file differs"
        );
        let open = hooks.max_reads_open.load(Ordering::SeqCst);
        assert_eq!(open, want, "{what}: reads open at once");
        assert_eq!(
            hooks.reads_open.load(Ordering::SeqCst),
            0,
            "{what}: a read left open"
        );
    }
}

/// A backend whose parts do not go faster side by side (a local directory) gets them one
/// at a time, each as soon as it is full; the object is the same.
#[tokio::test]
async fn a_backend_without_parallel_parts_gets_one_part_at_a_time() {
    let caps = Capabilities {
        parallel_parts: false,
        ..small_caps()
    };
    let (store, hooks) = hooked(caps, config(4096, 4));
    let body = data(50_000, 43);
    let mut up = store.writer("serial", &PutOptions::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    assert!(hooks.part_calls.load(Ordering::SeqCst) > 4);
    assert_eq!(hooks.max_in_flight.load(Ordering::SeqCst), 1);
    let got = store.get("serial").await.unwrap().bytes().await.unwrap();
    assert!(got == body, "the object differs");
    // The fs backend says so.
    let dir = tempfile::tempdir().unwrap();
    let fs = cloudstore::FsBackend::new(dir.path()).unwrap();
    assert!(!cloudstore::Backend::capabilities(&fs).parallel_parts);
}
