//! Load: 10,000 small objects put, listed, read and deleted with 64 requests in flight,
//! against SeaweedFS and Azurite (and memory): no error, exact counts and contents. The
//! rates are printed here and measured by `cargo bench --bench small_objects`.
//!
//! `CLOUDSTORE_LOAD_OBJECTS` changes the count (default 10,000).

mod common;

use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use cloudstore::{Store, StoreOptions};
use common::{env, unique};

const IN_FLIGHT: usize = 64;

fn count() -> usize {
    std::env::var("CLOUDSTORE_LOAD_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn key(i: usize) -> String {
    format!("obj/{i:06}")
}

/// 1 to 2000 bytes, different for every object.
fn body(i: usize) -> Bytes {
    let line = format!("object {i};");
    Bytes::from(line.repeat(1 + i % 2000 / line.len()))
}

async fn load(name: &str, store: Store) {
    let n = count();
    let rate = |t: Instant| n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { store.put(&key(i), body(i)).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap_or_else(|e| panic!("{name}: put failed: {e}"));
    let put_rate = rate(t);

    let t = Instant::now();
    let listed = store.list_all(None).await.unwrap();
    let list_rate = rate(t);
    let keys: Vec<String> = listed.iter().map(|m| m.key.as_str().to_string()).collect();
    let expected: Vec<String> = (0..n).map(key).collect();
    assert_eq!(keys.len(), n, "{name}: listed {} of {n}", keys.len());
    assert_eq!(
        keys, expected,
        "{name}: listing is not exact and in key order"
    );
    for (i, m) in listed.iter().enumerate() {
        assert_eq!(m.size, body(i).len() as u64, "{name}: size of {}", key(i));
    }

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { store.get_bytes(&key(i)).await.map(|b| (i, b)) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|(i, b)| async move {
            assert_eq!(b, body(i), "content of {}", key(i));
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: get failed: {e}"));
    let get_rate = rate(t);

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { store.delete(&key(i)).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap_or_else(|e| panic!("{name}: delete failed: {e}"));
    let delete_rate = rate(t);
    assert!(
        store.list_all(None).await.unwrap().is_empty(),
        "{name}: objects left"
    );

    eprintln!(
        "load ({name}, {n} objects, {IN_FLIGHT} in flight): put {put_rate:.0}/s, list \
         {list_rate:.0} keys/s, get {get_rate:.0}/s, delete {delete_rate:.0}/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_small_objects_on_memory() {
    load("memory", Store::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_small_objects_on_seaweedfs() {
    let url = format!(
        "s3://{}/{}",
        env("CLOUDSTORE_TEST_S3_BUCKET"),
        unique("load/run")
    );
    load(
        "SeaweedFS",
        Store::from_url(&url, &StoreOptions::new()).unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_small_objects_on_azurite() {
    let url = format!(
        "az://{}/{}",
        env("CLOUDSTORE_TEST_AZURE_CONTAINER"),
        unique("load/run")
    );
    load(
        "Azurite",
        Store::from_url(&url, &StoreOptions::new()).unwrap(),
    )
    .await;
}
