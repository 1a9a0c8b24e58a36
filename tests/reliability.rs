//! The retry middleware against injected faults, and the invariants of seeded fault
//! schedules over uploads, downloads and copies (on memory here; on the emulators through
//! a TCP fault proxy in `tests/proxy_faults.rs`).
//!
//! `CLOUDSTORE_FAULT_SEEDS` sets the number of schedules (default 200);
//! `CLOUDSTORE_FAULT_SEED=n` replays schedule `n` alone, with debug logs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloudstore::middleware::{Chaos, Fault, Faults, RetryBackend, RetryPolicy, Rule};
use cloudstore::{
    Backend, CopyMode, ErrorKind, MemoryBackend, Op, PutMode, PutOptions, Store, TransferConfig,
};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

use common::data;
use common::schedules::{Rig, Tally, read_all, schedule, schedule_config, seed_range};

fn quick(attempts: u32, budget: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        budget,
        stall_timeout: Some(Duration::from_millis(200)),
        slowest_rate: 1 << 30,
    }
}

/// memory <- faults <- retries <- store.
fn stack(policy: RetryPolicy) -> (Store, Faults, RetryBackend, Arc<dyn Backend>) {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let faults = Faults::new(inner.clone());
    let retry = RetryBackend::new(Arc::new(faults.clone()), policy);
    (Store::new(retry.clone()), faults, retry, inner)
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_other_errors_are_not() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    let faults = faults
        .with_rule(Rule::new(Op::Put, Fault::Fail(ErrorKind::RateLimited)).times(2))
        .with_rule(Rule::new(Op::Head, Fault::ServerError));
    store.put("a", "x").await.unwrap();
    assert_eq!(retry.counts().retries, 2);
    store.head("a").await.unwrap();
    assert_eq!(retry.counts().retries, 3);

    let faults = faults.with_rule(Rule::new(Op::Get, Fault::Fail(ErrorKind::PermissionDenied)));
    let e = store.get("a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        retry.counts().retries,
        3,
        "a denied request is not repeated"
    );
    assert_eq!(faults.counts().errors, 4);

    // Attempts are bounded: four failures in a row are returned.
    faults
        .clone()
        .with_rule(Rule::new(Op::Delete, Fault::ServerError).times(4));
    let e = store.delete("a").await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(retry.counts().retries, 6);
}

#[tokio::test]
async fn a_spent_budget_stops_retrying() {
    // 12 tokens: two retries (5 each), then failures come back at once.
    let (store, faults, retry, _) = stack(quick(10, 12));
    faults.with_rule(Rule::new(Op::Head, Fault::ServerError).times(u64::MAX));
    store.head("x").await.unwrap_err();
    let c = retry.counts();
    assert_eq!(c.retries, 2);
    assert_eq!(c.budget_exhausted, 1);
    store.head("x").await.unwrap_err();
    assert_eq!(retry.counts().retries, 2, "nothing left to spend");
}

#[tokio::test]
async fn a_read_cut_part_way_continues_where_it_stopped() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    let body = data(3 << 20, 7);
    store.put("big", body.clone()).await.unwrap();
    faults.with_rule(Rule::new(Op::Get, Fault::CutBody(1 << 20)));
    assert_eq!(read_all(&store, "big").await.unwrap(), body);
    assert_eq!(retry.counts().resumed_reads, 1);
}

#[tokio::test]
async fn a_read_continued_after_the_object_changed_fails_instead_of_mixing() {
    let (store, faults, _, inner) = stack(quick(4, 500));
    store.put("obj", data(2 << 20, 1)).await.unwrap();
    faults.with_rule(Rule::new(Op::Get, Fault::CutBody(1 << 20)));
    let mut body = store.get("obj").await.unwrap().into_checked_stream();
    let first = body.try_next().await.unwrap().unwrap();
    assert_eq!(first.len(), 1 << 20);
    // Replaced behind the reader's back.
    Store::from_arc(inner)
        .put("obj", data(2 << 20, 2))
        .await
        .unwrap();
    let e = body.try_next().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_recognised_by_its_checksum() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    faults
        .clone()
        .with_rule(Rule::new(Op::Put, Fault::LoseAnswer));
    // The transfer engine's single PUT carries the CRC32C: the object is recognised.
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let mut up = store.writer("made-once", &create).unwrap();
    up.write_all(b"hello").await.unwrap();
    let meta = up.finish().await.unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(retry.counts().verified_after_lost_answer, 1);
    assert_eq!(faults.counts().lost_answers, 1);

    // A plain put is recognised by its write id too.
    faults.with_rule(Rule::new(Op::Put, Fault::LoseAnswer));
    store.put_opts("plain", "hello", &create).await.unwrap();
    assert_eq!(read_all(&store, "plain").await.unwrap(), b"hello");
    assert_eq!(retry.counts().verified_after_lost_answer, 2);

    // An identical object that was already there is not taken for this write: a Create
    // whose first attempt failed with a 500 still reports AlreadyExists.
    let (store, faults, _, inner) = stack(quick(4, 500));
    Store::from_arc(inner).put("lock", "owner").await.unwrap();
    faults.with_rule(Rule::new(Op::Put, Fault::ServerError));
    let e = store.put_opts("lock", "owner", &create).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("answer was lost"), "{e}");

    // A Create that meets someone else's object is still refused.
    let (store, faults, _, inner) = stack(quick(4, 500));
    Store::from_arc(inner).put("taken", "theirs").await.unwrap();
    faults.with_rule(Rule::new(Op::Put, Fault::LoseAnswer));
    let mut up = store.writer("taken", &create).unwrap();
    up.write_all(b"mine").await.unwrap();
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(read_all(&store, "taken").await.unwrap(), b"theirs");
}

#[tokio::test]
async fn lost_answers_to_completion_and_creation_leave_one_object_and_no_upload() {
    let (store, faults, retry, inner) = stack(quick(4, 500));
    faults
        .with_rule(Rule::new(Op::CreateMultipart, Fault::LoseAnswer))
        .with_rule(Rule::new(Op::CompleteMultipart, Fault::LoseAnswer));
    let store = store.with_transfer_config(TransferConfig {
        part_size: 5 << 20,
        ..Default::default()
    });
    let body = data(11 << 20, 3);
    let meta = store
        .upload_stream(
            "multi",
            futures::stream::iter([Ok(Bytes::from(body.clone()))]),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(read_all(&store, "multi").await.unwrap(), body);
    assert_eq!(retry.counts().verified_after_lost_answer, 1);
    let left = Store::from_arc(inner)
        .list_multipart_uploads(None)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the lost creation's upload was aborted: {left:?}"
    );
}

#[tokio::test]
async fn a_copy_whose_answer_was_lost_is_recognised() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    let mut up = store.writer("src", &Default::default()).unwrap();
    up.write_all(b"copy me").await.unwrap();
    up.finish().await.unwrap();
    faults.with_rule(Rule::new(Op::Copy, Fault::LoseAnswer));
    store
        .copy_mode("src", "dst", CopyMode::Create)
        .await
        .unwrap();
    assert_eq!(read_all(&store, "dst").await.unwrap(), b"copy me");
    assert_eq!(retry.counts().verified_after_lost_answer, 1);
}

#[tokio::test]
async fn over_a_retry_layer_the_engine_does_not_retry_on_top() {
    let (store, faults, retry, inner) = stack(quick(2, 500));
    let faults = faults.with_rule(
        Rule::new(Op::PutPart, Fault::ServerError)
            .part(2)
            .times(u64::MAX),
    );
    let store = store.with_transfer_config(TransferConfig {
        part_size: 5 << 20,
        attempts: 4,
        ..Default::default()
    });
    let mut up = store.writer("retried", &Default::default()).unwrap();
    up.write_all(&data(11 << 20, 5)).await.unwrap();
    let e = up.finish().await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    // Two attempts (the layer's), not 2 x 4.
    assert_eq!(faults.counts().errors, 2);
    assert_eq!(retry.counts().retries, 1);
    let left = Store::from_arc(inner)
        .list_multipart_uploads(None)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_stalled_read_is_cut_and_continued() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    let body = data(2 << 20, 9);
    store.put("slow", body.clone()).await.unwrap();
    faults.with_rule(Rule::new(Op::Get, Fault::StallBody(1 << 20)));
    assert_eq!(read_all(&store, "slow").await.unwrap(), body);
    let c = retry.counts();
    assert_eq!((c.resumed_reads, c.retries), (1, 1));
}

#[tokio::test]
async fn a_part_that_does_not_answer_in_time_is_sent_again() {
    let (store, faults, retry, _) = stack(quick(4, 500));
    // Part 2 hangs far past the 200 ms deadline on its first attempt.
    faults.with_rule(Rule::new(Op::PutPart, Fault::Delay(Duration::from_secs(30))).part(2));
    let store = store.with_transfer_config(TransferConfig {
        part_size: 5 << 20,
        attempts: 1,
        ..Default::default()
    });
    let body = data(12 << 20, 4);
    let mut up = store.writer("parts", &Default::default()).unwrap();
    up.write_all(&body).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(read_all(&store, "parts").await.unwrap(), body);
    assert_eq!(retry.counts().retries, 1);
}

// ---------------------------------------------------------------------------------------
// Seeded fault schedules on memory (the same schedules run on the emulators through a TCP
// fault proxy in `tests/proxy_faults.rs`).

fn memory_rig(seed: u64) -> Rig {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let faults = Faults::new(inner.clone()).with_chaos(Chaos {
        seed,
        probability: 0.4,
        faults: vec![
            Fault::ServerError,
            Fault::Fail(ErrorKind::RateLimited),
            Fault::Fail(ErrorKind::Timeout),
            Fault::LoseAnswer,
            Fault::CutBody(0),
            Fault::StallBody(0),
            Fault::Delay(Duration::from_millis(3)),
        ],
        ops: vec![
            Op::Put,
            Op::Get,
            Op::Head,
            Op::Copy,
            Op::CreateMultipart,
            Op::PutPart,
            Op::CompleteMultipart,
            Op::AbortMultipart,
        ],
    });
    let retry = RetryBackend::new(Arc::new(faults.clone()), quick(5, 10_000));
    let store = Store::new(retry.clone()).with_transfer_config(schedule_config());
    Rig {
        name: "memory".into(),
        store,
        clean: Store::from_arc(inner),
        retry,
        faults: Box::new(move || faults.counts().total()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_schedules_end_whole_or_in_a_typed_error() {
    let seeds = seed_range("CLOUDSTORE_FAULT_SEEDS", 200);
    let scratch = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    for seed in seeds.clone() {
        let rig = memory_rig(seed);
        schedule(seed, &rig, &mut tally, scratch.path(), None).await;
    }
    tally.report("memory", &seeds, 4);
    // Nothing is left in the scratch directory (no temp file of a failed download).
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}
