//! Small objects and a listing across a WAN link (issue 13): 1,000 objects of 1 KiB put,
//! read and HEADed with `CONCURRENCY_SMALL` requests in flight, and a listing of 10,000
//! keys, by cloudstore, object_store and OpenDAL, against SeaweedFS behind the shaping
//! proxy. Each client runs in its own process (`--small CLIENT --endpoint URL`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};

use crate::R;

/// Objects put, read and HEADed.
pub const OBJECTS: usize = 1000;
/// Requests in flight for the small objects.
pub const CONCURRENCY_SMALL: usize = 32;
/// Keys of the listing.
pub const LISTED: usize = 10_000;
/// Where the listed keys live.
pub const LIST_PREFIX: &str = "bench/list10k/";

/// Operations a second of each phase.
pub struct Rates {
    pub put: f64,
    pub get: f64,
    pub head: f64,
    /// Keys a second.
    pub list: f64,
}

fn env(name: &str) -> R<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn cloudstore(endpoint: &str) -> R<cloudstore::Store> {
    let opts = cloudstore::StoreOptions::new()
        .with("endpoint", endpoint)
        .with("allow_http", "true");
    Ok(cloudstore::Store::from_url(
        &format!("s3://{}", crate::s3_bucket()),
        &opts,
    )?)
}

/// Puts the listed keys once (directly, not through the proxy); skipped when they are there.
pub async fn seed(endpoint: &str) -> R<()> {
    let store = cloudstore(endpoint)?;
    let have = store.list_all(Some(LIST_PREFIX)).await?.len();
    if have == LISTED {
        return Ok(());
    }
    futures::stream::iter(0..LISTED)
        .map(|i| {
            let store = store.clone();
            async move { store.put(&format!("{LIST_PREFIX}{i:05}"), "x").await }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn timed<F, Fut>(n: usize, op: F) -> R<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = R<()>>,
{
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(op)
        .buffer_unordered(CONCURRENCY_SMALL)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs the phases with `client` (`cloudstore`, `object_store` or `opendal`) through
/// `endpoint`.
pub async fn run(client: &str, endpoint: &str) -> R<Rates> {
    let body = Bytes::from(vec![7u8; 1024]);
    let prefix = format!("bench/small/{client}/");
    let key = |i: usize| format!("{prefix}{i:04}");
    match client {
        "cloudstore" => {
            let store = cloudstore(endpoint)?;
            let put = timed(OBJECTS, |i| {
                let (store, body, k) = (store.clone(), body.clone(), key(i));
                async move { Ok(store.put(&k, body).await.map(|_| ())?) }
            })
            .await?;
            let get = timed(OBJECTS, |i| {
                let (store, k) = (store.clone(), key(i));
                async move { Ok(store.get_bytes(&k).await.map(|_| ())?) }
            })
            .await?;
            let head = timed(OBJECTS, |i| {
                let (store, k) = (store.clone(), key(i));
                async move { Ok(store.head(&k).await.map(|_| ())?) }
            })
            .await?;
            let list = listed(async { Ok(store.list_all(Some(LIST_PREFIX)).await?.len()) }).await?;
            Ok(Rates {
                put,
                get,
                head,
                list,
            })
        }
        "object_store" => {
            let store: Arc<dyn ObjectStore> = Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_bucket_name(crate::s3_bucket())
                    .build()?,
            );
            let path = |i: usize| object_store::path::Path::from(key(i).as_str());
            let put = timed(OBJECTS, |i| {
                let (store, body, p) = (store.clone(), body.clone(), path(i));
                async move { Ok(store.put(&p, body.into()).await.map(|_| ())?) }
            })
            .await?;
            let get = timed(OBJECTS, |i| {
                let (store, p) = (store.clone(), path(i));
                async move { Ok(store.get(&p).await?.bytes().await.map(|_| ())?) }
            })
            .await?;
            let head = timed(OBJECTS, |i| {
                let (store, p) = (store.clone(), path(i));
                async move { Ok(store.head(&p).await.map(|_| ())?) }
            })
            .await?;
            let prefix = object_store::path::Path::from(LIST_PREFIX.trim_end_matches('/'));
            let list = listed(async {
                Ok(store
                    .list(Some(&prefix))
                    .try_collect::<Vec<_>>()
                    .await?
                    .len())
            })
            .await?;
            Ok(Rates {
                put,
                get,
                head,
                list,
            })
        }
        "opendal" => {
            use opendal::{Operator, services};
            let op = Operator::new(
                services::S3::default()
                    .endpoint(endpoint)
                    .bucket(&crate::s3_bucket())
                    .region(&std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
                    .access_key_id(&env("AWS_ACCESS_KEY_ID")?)
                    .secret_access_key(&env("AWS_SECRET_ACCESS_KEY")?)
                    .disable_config_load()
                    .disable_ec2_metadata(),
            )?;
            let put = timed(OBJECTS, |i| {
                let (op, body, k) = (op.clone(), body.clone(), key(i));
                async move { Ok(op.write(&k, body).await.map(|_| ())?) }
            })
            .await?;
            let get = timed(OBJECTS, |i| {
                let (op, k) = (op.clone(), key(i));
                async move { Ok(op.read(&k).await.map(|_| ())?) }
            })
            .await?;
            let head = timed(OBJECTS, |i| {
                let (op, k) = (op.clone(), key(i));
                async move { Ok(op.stat(&k).await.map(|_| ())?) }
            })
            .await?;
            let list = listed(async {
                let entries = op.list_with(LIST_PREFIX).recursive(true).await?;
                Ok(entries
                    .into_iter()
                    .filter(|e| e.metadata().is_file())
                    .count())
            })
            .await?;
            Ok(Rates {
                put,
                get,
                head,
                list,
            })
        }
        other => Err(format!("unknown small-object client {other}").into()),
    }
}

/// Keys a second of the listing `list` (which counts the keys it read), checked to have
/// read every listed key.
async fn listed(list: impl std::future::Future<Output = R<usize>>) -> R<f64> {
    let t = Instant::now();
    let n = list.await?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    if n == LISTED {
        Ok(rate)
    } else {
        Err(format!("listed {n} keys, expected {LISTED}").into())
    }
}
