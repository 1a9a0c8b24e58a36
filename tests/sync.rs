//! The streaming sync at scale, in process: progress while it runs, re-runs decided from
//! listings and the records kept in the destination (counted by request kind), and one
//! sync shared by several workers through claims in the destination store, including a
//! worker that dies holding a unit.

mod common;

use common::user_keys;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstore::migrate::{self, ShardedSync, SyncOptions, SyncProgress};
use cloudstore::{Store, StoreOptions};
use futures::StreamExt;

/// Two local directories opened by URL, as a user opens them; fs listings carry size and
/// ETag only, so re-runs there depend on the records a sync keeps.
fn dirs() -> (tempfile::TempDir, Store, Store) {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        Store::from_url(&format!("file://{}", p.display()), &StoreOptions::new()).unwrap()
    };
    let (src, dst) = (open("src"), open("dst"));
    (dir, src, dst)
}

fn name(i: usize) -> String {
    format!("d{}/obj-{i:05}", i % 7)
}

async fn fill(store: &Store, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { store.put(&name(i), format!("body {i}")).await }
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;
}

/// Fails unless a verification finds every source object in place at the destination.
async fn assert_all_in_place(src: &Store, dst: &Store) {
    let verify = migrate::sync(
        src,
        dst,
        &SyncOptions {
            verify_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(verify.all_in_place(), "{verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_unchanged_data_decides_from_listings_and_records() {
    let (_dir, src, dst) = dirs();
    let n = 3000;
    fill(&src, n).await;
    let seen = Arc::new(Mutex::new(Vec::<SyncProgress>::new()));
    let progress = {
        let seen = seen.clone();
        Arc::new(move |p: &SyncProgress| seen.lock().unwrap().push(p.clone()))
    };
    let opts = SyncOptions {
        state: Some("rehearsal".into()),
        concurrency: 16,
        window: 64,
        progress: Some(progress),
        ..Default::default()
    };
    let first = migrate::sync(&src, &dst, &opts).await.unwrap();
    assert_eq!((first.source_objects, first.copied), (n as u64, n as u64));
    assert!(first.failed.is_empty() && first.state_saved, "{first:?}");
    assert_eq!(user_keys(&dst).await, user_keys(&src).await);
    {
        let seen = seen.lock().unwrap();
        let last = seen.last().expect("progress was reported");
        assert!(last.done);
        assert_eq!(
            (last.listed, last.compared, last.copied),
            (3000, 3000, 3000)
        );
        assert!(seen[..seen.len() - 1].iter().all(|p| !p.done));
        assert!(
            seen.windows(2).all(|w| w[0].copied <= w[1].copied),
            "progress goes forward"
        );
    }

    // Unchanged data: no HEAD, no copy; the records cost about three requests per 1000 keys.
    let again = migrate::sync(&src, &dst, &opts).await.unwrap();
    assert_eq!((again.copied, again.skipped), (0, n as u64), "{again:?}");
    let q = &again.requests;
    assert_eq!((q.heads, q.copies), (0, 0), "{q:?}");
    let per_object = q.per_object_checks() as f64 / n as f64;
    assert!(
        per_object <= 0.05,
        "{per_object} requests per object: {q:?}"
    );
    // Each store lists its 3000 keys in pages of at most 1000.
    assert!(q.list_pages <= 8, "{q:?}");

    // Without records, the same re-run asks both stores about every object.
    let blind = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((blind.copied, blind.skipped), (0, n as u64));
    assert_eq!(blind.requests.heads, 2 * n as u64);

    // A changed source object (same size) is copied again; so is one removed from the
    // destination; the records do not hide either.
    src.put(&name(17), "BODY 17").await.unwrap();
    dst.delete(&name(18)).await.unwrap();
    let third = migrate::sync(&src, &dst, &opts).await.unwrap();
    assert_eq!(
        (third.copied, third.skipped),
        (2, n as u64 - 2),
        "{third:?}"
    );
    assert_eq!(dst.get_bytes(&name(17)).await.unwrap(), "BODY 17");
    assert_all_in_place(&src, &dst).await;
}

#[tokio::test]
async fn records_of_one_prefix_are_not_trusted_for_another() {
    let (_dir, src, dst) = dirs();
    fill(&src, 50).await;
    let opts = |prefix: Option<&str>| SyncOptions {
        state: Some("s".into()),
        prefix: prefix.map(str::to_string),
        ..Default::default()
    };
    migrate::sync(&src, &dst, &opts(None)).await.unwrap();
    let sub = migrate::sync(&src, &dst, &opts(Some("d1/"))).await.unwrap();
    assert_eq!(sub.copied, 0);
    // Other scope: decided by HEAD, not by the records of the whole-store run.
    assert_eq!(sub.requests.heads, 2 * sub.source_objects);
    let bad = SyncOptions {
        state: Some("../x".into()),
        ..Default::default()
    };
    let e = migrate::sync(&src, &dst, &bad).await.unwrap_err();
    assert_eq!(e.kind(), cloudstore::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn listings_that_carry_records_need_no_state() {
    // Memory listings (like GCS and Azure) carry the checksum and source ETag a copy
    // recorded.
    let (src, dst) = (
        Store::from_url("memory:///", &StoreOptions::new()).unwrap(),
        Store::from_url("memory:///", &StoreOptions::new()).unwrap(),
    );
    fill(&src, 200).await;
    migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    let again = migrate::sync(&src, &dst, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((again.skipped, again.requests.heads), (200, 0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_one_sync_through_claims_in_the_destination() {
    let (_dir, src, dst) = dirs();
    let n = 2000;
    fill(&src, n).await;
    let job = ShardedSync::new(&src, &dst, "move", "run-1", SyncOptions::default())
        .unwrap()
        .with_min_unit_keys(1);
    let plan = job.plan(12).await.unwrap();
    assert_eq!(plan.units.len(), 12);
    assert_eq!(plan.planned_keys, n as u64);
    // A second planner gets the same plan.
    assert_eq!(job.plan(3).await.unwrap(), plan);
    let (a, b, c) = futures::join!(
        job.run_worker("a"),
        job.run_worker("b"),
        job.run_worker("c")
    );
    let reports = [a.unwrap(), b.unwrap(), c.unwrap()];
    let units: u32 = reports.iter().map(|r| r.units).sum();
    let copied: u64 = reports.iter().map(|r| r.report.copied).sum();
    assert_eq!((units, copied), (12, n as u64), "{reports:?}");
    assert!(
        reports.iter().all(|r| r.units > 0),
        "work was shared: {reports:?}"
    );
    let st = job.status().await.unwrap();
    assert_eq!((st.units, st.done, st.open_claims), (12, 12, 0), "{st:?}");
    assert_eq!(st.report.copied, n as u64);
    assert_eq!(user_keys(&dst).await, user_keys(&src).await);

    // The next run of the job reuses the plan and each unit's records.
    let rerun = ShardedSync::new(&src, &dst, "move", "run-2", SyncOptions::default()).unwrap();
    let r = rerun.run_worker("solo").await.unwrap();
    assert_eq!(
        (r.units, r.report.copied, r.report.skipped),
        (12, 0, n as u64)
    );
    assert_eq!(r.report.requests.heads, 0, "{:?}", r.report.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_whose_worker_died_is_taken_over_when_its_lease_ends() {
    let (_dir, src, dst) = dirs();
    let n = 600;
    fill(&src, n).await;
    let lease = Duration::from_millis(600);
    let job = ShardedSync::new(&src, &dst, "j", "r", SyncOptions::default())
        .unwrap()
        .with_lease(lease)
        .with_min_unit_keys(1);
    job.plan(3).await.unwrap();
    // A worker that stops (its task dropped, as a killed process stops) in the middle of
    // its first unit, holding the claim.
    let dying = job.run_worker("dies");
    let started = async {
        while user_keys(&dst).await.len() < 20 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        r = dying => panic!("the worker ended before it was stopped: {r:?}"),
        () = started => {}
    }
    let st = job.status().await.unwrap();
    assert_eq!(st.open_claims, 1, "{st:?}");
    assert!(st.done < 3, "{st:?}");
    let r = job.run_worker("survivor").await.unwrap();
    assert_eq!(r.units, 3);
    let st = job.status().await.unwrap();
    assert_eq!((st.done, st.open_claims, st.expired), (3, 0, 0), "{st:?}");
    // Every object once: copied by the survivor or found in place (copied by the dead).
    assert_eq!(st.report.source_objects, n as u64);
    assert_eq!(st.report.copied + st.report.skipped, n as u64);
    assert!(st.report.failed.is_empty());
    assert_all_in_place(&src, &dst).await;
}

#[tokio::test]
async fn a_worker_that_cannot_list_fails_and_leaves_no_claim() {
    use cloudstore::middleware::{Fault, Faults, Rule};
    use cloudstore::{Backend, ErrorKind, Op};
    let (_dir, src, dst) = dirs();
    fill(&src, 100).await;
    let job = ShardedSync::new(&src, &dst, "j", "r", SyncOptions::default())
        .unwrap()
        .with_min_unit_keys(1);
    job.plan(2).await.unwrap();
    let refused = Faults::new(src.backend().clone())
        .with_rule(Rule::new(Op::List, Fault::Fail(ErrorKind::PermissionDenied)).times(u64::MAX));
    let refused = Store::from_arc(Arc::new(refused) as Arc<dyn Backend>);
    let broken = ShardedSync::new(&refused, &dst, "j", "r", SyncOptions::default()).unwrap();
    let e = broken.run_worker("w").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let st = job.status().await.unwrap();
    assert_eq!((st.done, st.open_claims), (0, 0), "{st:?}");
    // Another worker that can list takes the unit over at once.
    let r = job.run_worker("ok").await.unwrap();
    assert_eq!((r.units, r.report.copied), (2, 100));
}
