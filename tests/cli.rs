//! The `cloudstore` binary, run as a user would: help texts, copies with progress and
//! verification, listing, sync, verify (finding a corrupt object), errors with exit codes
//! and hints. Cloud cases use SeaweedFS (scripts/test.sh starts it).

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::unique;

const BIN: &str = env!("CARGO_BIN_EXE_cloudstore");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

fn bucket_url(scope: &str) -> String {
    let bucket = std::env::var("CLOUDSTORE_TEST_S3_BUCKET")
        .expect("CLOUDSTORE_TEST_S3_BUCKET is not set: run scripts/test.sh");
    format!("s3://{bucket}/{}", unique(&format!("cli/{scope}")))
}

#[test]
fn every_command_explains_itself() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for cmd in ["ls", "cat", "cp", "rm", "sync", "verify", "bench"] {
        assert!(help.contains(cmd), "{cmd} missing from --help");
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help failed");
        let h = text(&o.stdout);
        assert!(h.contains("Usage: cloudstore"), "{cmd}: {h}");
        assert!(
            h.lines().next().is_some_and(|l| l.len() > 20),
            "{cmd} has no description: {h}"
        );
    }
    assert!(help.contains("Exit codes"));
}

#[test]
fn bad_usage_and_missing_objects_have_distinct_codes_and_hints() {
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["cp", "a", "b"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("hint:"));
    let url = format!("{}/missing.bin", bucket_url("missing"));
    let o = run(&["cat", &url]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("hint: check the URL"));
    let o = run(&["--json", "cat", &url]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(json(&o)["error"]["exit_code"], 3);
}

fn write_file(path: &Path, len: usize, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn cp_up_and_down_shows_progress_and_verifies() {
    let mib: usize = std::env::var("CLOUDSTORE_CLI_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let data = write_file(&file, mib << 20, 3);
    let base = bucket_url("cp");
    let remote = format!("{base}/big.bin");

    let o = run(&[
        "--progress",
        "--json",
        "cp",
        file.to_str().unwrap(),
        &remote,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&o);
    assert_eq!(v["bytes"], (mib << 20) as u64);
    assert_eq!(v["verified"], true, "{v}");
    assert!(text(&o.stderr).contains("upload: ") && text(&o.stderr).contains("(100%)"));

    let back = dir.path().join("back.bin");
    let o = run(&["--progress", "cp", &remote, back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("verified"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("download: "));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // Cloud to cloud, then --no-clobber refuses to replace.
    let copy = format!("{base}/copy.bin");
    let o = run(&["--json", "cp", &remote, &copy]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["cp", "--no-clobber", file.to_str().unwrap(), &copy]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o.stderr));

    let o = run(&["--json", "ls", &base]);
    let v = json(&o);
    let keys: Vec<&str> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["big.bin", "copy.bin"]);
    let o = run(&["--json", "rm", "-r", &base]);
    assert!(o.status.success());
    assert_eq!(json(&o)["removed"], 2);
    let o = run(&["--json", "ls", "-r", &base]);
    assert!(json(&o)["objects"].as_array().unwrap().is_empty());
}

#[test]
fn sync_verify_and_a_corrupt_object_found() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    std::fs::create_dir_all(&src_dir).unwrap();
    let src = format!("file://{}", src_dir.display());
    // Files up to a staging prefix, then synced into a directory store: objects written
    // through the store keep their CRC32C beside them.
    let staging = bucket_url("staging");
    for i in 0..12 {
        let f = dir.path().join(format!("f{i}"));
        write_file(&f, 1000 + i * 777, i as u8);
        let o = run(&["cp", f.to_str().unwrap(), &format!("{staging}/a/obj{i}")]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let o = run(&["sync", &staging, &src]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let dst = bucket_url("sync");
    let o = run(&["--json", "sync", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(json(&o)["copied"], 12);
    let o = run(&["--json", "sync", &src, &dst]);
    let v = json(&o);
    assert_eq!(
        (v["copied"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(12))
    );
    let o = run(&["verify", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stdout));

    // Bit rot: one byte of a source file changes, its modification time does not.
    let victim = src_dir.join("a/obj4");
    let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    f.write_all_at(b"X", 10).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    let o = run(&["--json", "verify", &dst]);
    assert!(
        o.status.success(),
        "the copy is intact: {}",
        text(&o.stdout)
    );
    let o = run(&["--json", "sync", "--dry-run", &src, &dst]);
    assert!(o.status.success());
    let o = run(&["verify", &src]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("corrupt: a/obj4"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn bench_reports_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let o = run(&["--json", "bench", "--mib", "8", &url]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&o);
    assert!(v["upload_mb_s"].as_f64().unwrap() > 0.0 && v["download_mb_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn keys_with_reserved_characters_are_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a&b #1.txt");
    write_file(&file, 100, 1);
    let base = bucket_url("names");
    // Into a "directory": the file's own name, untouched.
    let o = run(&["cp", file.to_str().unwrap(), &format!("{base}/")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Percent-encoded in a URL: decoded once.
    let o = run(&[
        "cp",
        file.to_str().unwrap(),
        &format!("{base}/R%26D%20report%3F.txt"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&run(&["--json", "ls", &base]));
    let keys: Vec<&str> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["R&D report?.txt", "a&b #1.txt"]);
    // A raw ? or # would be cut off by URL parsing: refused, never another key.
    let o = run(&["rm", &format!("{base}/R&D report?.txt")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = run(&["rm", &format!("{base}/R%26D%20report%3F.txt")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["rm", "-r", &base]);
    assert!(o.status.success());
}

/// The migration this crate exists for must not leave names behind: objects another client
/// legally wrote to GCS under names that are not plain paths are listed, synced and
/// verified, every one of them, and verify fails when one is missing.
#[test]
fn odd_names_written_by_another_client_are_all_listed_synced_and_verified() {
    let bucket = common::env("CLOUDSTORE_TEST_GCS_BUCKET");
    let scope = unique("cli-odd");
    let names = [
        "a//b.txt",
        "dir/",
        "./x.txt",
        "https://example.org/p?q=1",
        "normal.txt",
    ];
    for (i, n) in names.iter().enumerate() {
        common::gcs_raw_put(
            &bucket,
            &format!("{scope}/{n}"),
            format!("body {i}").as_bytes(),
        );
    }
    let src = format!("gs://{bucket}/{scope}");
    let o = run(&["--json", "ls", "-r", &src]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let listed = text(&o.stdout);
    for n in names {
        assert!(
            listed.contains(&serde_json::to_string(n).unwrap()),
            "{n} not listed: {listed}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dst = format!("file://{}", dir.path().display());
    let o = run(&["--json", "sync", &src, &dst]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let v = json(&o);
    assert_eq!(
        (v["source_objects"].as_u64(), v["copied"].as_u64()),
        (Some(5), Some(5))
    );
    let o = run(&["verify", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("5 source objects: 5 in place"),
        "{}",
        text(&o.stdout)
    );
    // One name missing at the destination: verify must say so and fail.
    // (fs stores the empty segment of `a//b.txt` under its escape `%`.)
    std::fs::remove_file(dir.path().join("a/%/b.txt")).unwrap();
    let o = run(&["verify", &src, &dst]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("4 in place, 1 differ"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_migration_rehearsed_on_local_directories_with_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (src_dir, dst_dir) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&dst_dir).unwrap();
    // Files another program wrote are the source's objects.
    for i in 0..500 {
        let d = src_dir.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i:04}")), format!("file {i}")).unwrap();
    }
    let (src, dst) = (
        format!("file://{}", src_dir.display()),
        format!("file://{}", dst_dir.display()),
    );
    // `cp` takes file:// store URLs like any other store URL, both ways.
    // The first makes the directory a store; a later URL below it names a key of that
    // store (`extra/two.txt`), not a store of its own.
    let local = dir.path().join("extra.txt");
    std::fs::write(&local, "extra").unwrap();
    for (to, file) in [("one.txt", "one.txt"), ("extra/two.txt", "extra/two.txt")] {
        let o = run(&["cp", local.to_str().unwrap(), &format!("{src}/{to}")]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(
            std::fs::read_to_string(src_dir.join(file)).unwrap(),
            "extra"
        );
    }
    assert!(!src_dir.join("extra/.cloudstore").exists());
    let back = dir.path().join("back.txt");
    let o = run(&[
        "cp",
        &format!("{src}/extra/two.txt"),
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "extra");
    let o = run(&["cp", local.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));

    // Three workers in one process share the sync through claims in the destination.
    let o = run(&["--json", "--progress", "sync", "--workers", "3", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&o);
    assert_eq!(
        (v["copied"].as_u64(), v["workers"].as_u64()),
        (Some(502), Some(3))
    );
    assert!(
        text(&o.stderr).contains("sync: listed 502"),
        "{}",
        text(&o.stderr)
    );
    let run_name = v["run"].as_str().unwrap().to_string();
    let o = run(&["--json", "sync", "status", &src, &dst, "--run", &run_name]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let st = json(&o);
    assert_eq!(st["done"], st["units"], "{st}");
    assert_eq!(
        (st["open_claims"].as_u64(), st["copied"].as_u64()),
        (Some(0), Some(502))
    );

    // The next run reuses the plan and the records: nothing copied, no HEAD.
    let o = run(&["--json", "sync", "--workers", "2", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&o);
    assert_eq!(
        (v["copied"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(502))
    );
    assert_eq!(v["requests"]["heads"], 0, "{v}");
    let o = run(&["verify", &src, &dst]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    // A worker outside an Indexed Job says what it misses.
    let o = run(&["sync", "--worker", "--run", "r", &src, &dst]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("JOB_COMPLETION_INDEX"));
}

/// `--metrics FILE` writes the run's metrics in the Prometheus text format, and `-vv`
/// logs every request's span to stderr (never to stdout, which stays the command's).
#[test]
fn metrics_file_and_verbose_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    for i in 0..3 {
        std::fs::write(src.join(format!("f{i}")), "12345").unwrap();
    }
    let metrics = dir.path().join("run.prom");
    let out = run(&[
        "-q",
        "-vv",
        "--metrics",
        metrics.to_str().unwrap(),
        "sync",
        &format!("file://{}", src.display()),
        &format!("file://{}", dst.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "# TYPE cloudstore_requests_total counter",
        "cloudstore_sync_objects_total{action=\"copied\"} 3",
        "cloudstore_sync_bytes_total 15",
        "cloudstore_io_bytes_total{backend=\"fs\",direction=\"receive\"} 15",
    ] {
        assert!(prom.lines().any(|l| l == line), "no '{line}' in:\n{prom}");
    }
    let logs = text(&out.stderr);
    assert!(
        logs.contains(
            "cloudstore.request{backend=\"fs\" operation=\"put\" attempt=1 outcome=\"ok\"}"
        ),
        "no request span in the logs:\n{logs}"
    );
    assert!(!text(&out.stdout).contains("cloudstore.request"));

    // Without -v only warnings would show: a quiet, successful run logs nothing.
    let again = run(&[
        "-q",
        "sync",
        &format!("file://{}", src.display()),
        &format!("file://{}", dst.display()),
    ]);
    assert!(again.status.success());
    assert_eq!(text(&again.stderr), "");
}
