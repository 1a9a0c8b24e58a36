//! Seeded fault schedules against the real emulators, with a TCP fault proxy between the
//! client and the server cutting, resetting and stalling connections (SeaweedFS as S3,
//! Azurite as Azure Blob). The checks read through a direct, fault-free client.
//!
//! `CLOUDSTORE_PROXY_SEEDS` sets the schedules per emulator (default 40 in
//! `scripts/test.sh`; the full count: `CLOUDSTORE_PROXY_SEEDS=200`).
//! `CLOUDSTORE_FAULT_SEED=n` replays one schedule with debug logs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudstore::middleware::{RetryBackend, RetryPolicy};
use cloudstore::{AzureBackend, Backend, S3Backend, Store, StoreOptions};

use common::proxy::FaultProxy;
use common::schedules::{Rig, Tally, schedule, schedule_config, seed_range};
use common::{env, unique};

fn socket_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap();
    let port = u.port_or_known_default().unwrap();
    format!("{host}:{port}").parse().unwrap()
}

/// Short stall deadline (the proxy stalls for 2 s), fast backoff, enough attempts that
/// faults on several connections in a row are survived.
fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        budget: 100_000,
        stall_timeout: Some(Duration::from_secs(1)),
        slowest_rate: 64 << 20,
    }
}

fn rig(name: &str, through_proxy: Arc<dyn Backend>, direct: Store, scope: &str) -> Rig {
    let retry = RetryBackend::new(through_proxy, policy());
    Rig {
        name: name.into(),
        store: Store::new(retry.clone())
            .with_prefix(scope)
            .unwrap()
            .with_transfer_config(schedule_config()),
        clean: direct
            .with_prefix(scope)
            .unwrap()
            .with_transfer_config(schedule_config()),
        retry,
        faults: Box::new(|| 0),
    }
}

async fn run(name: &str, proxy: &FaultProxy, mut rig: Rig) {
    let counts = proxy.counts.clone();
    rig.faults = Box::new(move || counts.faults());
    let seeds = seed_range("CLOUDSTORE_PROXY_SEEDS", 40);
    let scratch = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let turn_on = |seed: u64| proxy.chaos(seed, 0.6);
    for seed in seeds.clone() {
        proxy.calm();
        schedule(seed, &rig, &mut tally, scratch.path(), Some(&turn_on)).await;
    }
    proxy.calm();
    eprintln!(
        "{name}: {} connections through the proxy",
        proxy
            .counts
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    tally.report(name, &seeds, 10);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeweedfs_through_a_faulty_network() {
    let endpoint = env("AWS_ENDPOINT");
    let proxy = FaultProxy::start(socket_of(&endpoint), Duration::from_secs(2)).await;
    let bucket = env("CLOUDSTORE_TEST_S3_BUCKET");
    let mut opts = StoreOptions::new();
    opts.set("endpoint", format!("http://{}", proxy.addr));
    opts.set("timeout", "30s");
    let through: Arc<dyn Backend> = Arc::new(S3Backend::new(&bucket, &opts).unwrap());
    let direct = Store::from_url(&format!("s3://{bucket}"), &StoreOptions::new()).unwrap();
    run(
        "SeaweedFS via proxy",
        &proxy,
        rig("SeaweedFS", through, direct, &unique("proxy-faults/run")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_through_a_faulty_network() {
    let endpoint = env("AZURITE_BLOB_STORAGE_URL");
    let proxy = FaultProxy::start(socket_of(&endpoint), Duration::from_secs(2)).await;
    let container = env("CLOUDSTORE_TEST_AZURE_CONTAINER");
    let account = env("AZURE_STORAGE_ACCOUNT_NAME");
    let mut opts = StoreOptions::new();
    // The emulator's path-style address, through the proxy.
    opts.set("use_emulator", "false");
    opts.set("endpoint", format!("http://{}/{account}", proxy.addr));
    opts.set("allow_http", "true");
    opts.set("timeout", "30s");
    let through: Arc<dyn Backend> = Arc::new(AzureBackend::new(&container, &opts).unwrap());
    let direct = Store::from_url(&format!("az://{container}"), &StoreOptions::new()).unwrap();
    run(
        "Azurite via proxy",
        &proxy,
        rig("Azurite", through, direct, &unique("proxy-faults/run")),
    )
    .await;
}
