//! One sync shared by four `cloudstore sync --worker` processes, as the pods of a
//! Kubernetes Indexed Job run it (identity from `JOB_COMPLETION_INDEX`), from SeaweedFS to
//! Azurite; one is killed with SIGKILL while it holds a unit, and the others finish its
//! work. Also: the Job manifest in `deploy/kubernetes/` is a valid Indexed Job of that
//! command.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudstore::migrate::{ShardedSync, SyncOptions};
use cloudstore::{Store, StoreOptions};
use futures::StreamExt;

use common::{env, unique, user_keys};

const BIN: &str = env!("CARGO_BIN_EXE_cloudstore");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_finish_a_sync_when_one_is_killed() {
    let n = 2000;
    let scope = unique("workers");
    let src_url = format!("s3://{}/{scope}", env("CLOUDSTORE_TEST_S3_BUCKET"));
    let dst_url = format!("az://{}/{scope}", env("CLOUDSTORE_TEST_AZURE_CONTAINER"));
    let src = Store::from_url(&src_url, &StoreOptions::new()).unwrap();
    let dst = Store::from_url(&dst_url, &StoreOptions::new()).unwrap();
    futures::stream::iter(0..n)
        .map(|i| {
            let src = src.clone();
            async move {
                let body = format!("object {i} ").repeat(1 + i % 50);
                src.put(&format!("p{}/k{i:05}", i % 10), body).await
            }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;

    let (job, run) = ("kill-test", "run-1");
    let spawn = |i: usize| {
        Command::new(BIN)
            .args([
                "--json",
                "sync",
                &src_url,
                &dst_url,
                "--worker",
                "--job",
                job,
                "--run",
                run,
                "--units",
                "16",
                "--lease",
                "3",
                "--min-unit-keys",
                "1",
            ])
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("HOSTNAME", format!("pod-{i}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs")
    };
    let mut workers: Vec<_> = (0..4).map(spawn).collect();

    // Kill worker 1 once it is in the middle of a unit: it holds the claim and some of the
    // unit's objects have arrived.
    let view = ShardedSync::new(&src, &dst, job, run, SyncOptions::default()).unwrap();
    let victim = "1-pod-1";
    let started = Instant::now();
    let in_flight = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "worker 1 never got into a unit"
        );
        let st = view.status().await.unwrap();
        let unit = st.claims.iter().find_map(|(u, c, done)| {
            let held = c
                .as_ref()
                .is_some_and(|c| c.worker == victim && !c.released);
            (held && !done).then(|| u.clone())
        });
        if let Some(u) = unit {
            let arrived = user_keys(&dst)
                .await
                .iter()
                .filter(|k| {
                    u.after.as_deref().is_none_or(|a| k.as_str() > a)
                        && u.until.as_deref().is_none_or(|z| k.as_str() <= z)
                })
                .count();
            if arrived >= 5 {
                break arrived;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[1].kill().expect("SIGKILL");
    let killed = workers.remove(1).wait().unwrap();
    assert!(!killed.success());
    let st = view.status().await.unwrap();
    assert!(st.done < 16, "the job was over before the kill: {st:?}");

    let mut units = 0;
    for w in workers {
        let o = w.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        units += v["units_done"].as_u64().unwrap();
    }
    assert!(units <= 16);

    // The status across all workers: every unit done, no claim open, every object once.
    let o = Command::new(BIN)
        .args([
            "--json", "sync", "status", &src_url, &dst_url, "--job", job, "--run", run,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["units"], 16, "{v}");
    assert_eq!(v["done"], 16, "{v}");
    assert_eq!(v["open_claims"], 0, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["source_objects"], n, "{v}");
    let (copied, skipped) = (
        v["copied"].as_u64().unwrap(),
        v["skipped"].as_u64().unwrap(),
    );
    // What the dead worker copied before it died is found in place, not copied twice.
    assert_eq!(copied + skipped, n as u64, "{v}");
    assert!(
        skipped >= in_flight as u64,
        "{in_flight} were there before the kill: {v}"
    );
    assert_eq!(user_keys(&dst).await.len(), n);

    let o = Command::new(BIN)
        .args(["verify", &src_url, &dst_url])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "4 workers, 1 killed: {copied} copied, {skipped} found in place (copied by the killed worker)"
    );
}

#[test]
fn the_kubernetes_manifest_is_an_indexed_job_of_sync_workers() {
    use k8s_openapi::api::batch::v1::Job;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/sync-job.yaml"),
    )
    .unwrap();
    let job: Job = serde_yaml::from_str(&text).expect("a batch/v1 Job");
    let spec = job.spec.expect("a spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert!(spec.completions.is_some_and(|n| n > 1));
    assert_eq!(spec.completions, spec.parallelism, "one pod per worker");
    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let args = c.args.clone().expect("the worker's arguments");
    assert_eq!(args[0], "sync");
    assert!(
        args[1].contains("://") && args[2].contains("://"),
        "{args:?}"
    );
    assert!(args.contains(&"--worker".to_string()), "{args:?}");
    let run = args.iter().position(|a| a == "--run").expect("--run");
    assert_eq!(args[run + 1], "$(JOB_NAME)");
    // The run is the Job's name, from the label Kubernetes puts on its pods.
    let env = c.env.clone().unwrap_or_default();
    let job_name = env.iter().find(|e| e.name == "JOB_NAME").expect("JOB_NAME");
    let field = job_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("from a field");
    assert_eq!(
        field.field_path,
        "metadata.labels['batch.kubernetes.io/job-name']"
    );
    // Credentials come from a Secret, never from the manifest.
    let from = c.env_from.clone().unwrap_or_default();
    assert!(from.iter().any(|f| f.secret_ref.is_some()));
    assert!(
        env.iter().all(|e| e.value.is_none()),
        "no literal values: {env:?}"
    );

    // The binary accepts the arguments: with the run expanded and no index it stops at the
    // missing JOB_COMPLETION_INDEX (exit 2), before opening any store.
    let mut args = args;
    args[run + 1] = "cloudstore-sync-1".into();
    let o = Command::new(BIN)
        .args(&args)
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("JOB_COMPLETION_INDEX"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
