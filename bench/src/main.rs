//! `cloudstore-bench`: upload and download of one large object through cloudstore's transfer
//! engine, object_store's `WriteMultipart` and OpenDAL's writer/reader, with the same part
//! size and concurrency, against an in-process S3 sink, memory, fs and the local emulators
//! that are up. Every case runs in a child process (this binary with `--case ...`) so that
//! its peak RSS and CPU time are its own. Prints a markdown table and writes it to
//! `target/bench-transfer.md`.
//!
//! ```text
//! cloudstore-bench [--mib N] [--runs N] [--rounds N] [--part-mib N] [--out FILE] [FILTER...]
//! ```
//!
//! - size: `--mib`, else `CLOUDSTORE_BENCH_MIB`, else 256 (MiB; several GiB work: nothing
//!   holds a whole object except the memory stores, which must, and are therefore skipped
//!   above 2 GiB).
//! - part size of every client: `--part-mib`, else `CLOUDSTORE_BENCH_PART_MIB`, else 16.
//! - runs per case: `--runs`, else `CLOUDSTORE_BENCH_RUNS`, else 3; the table gives the
//!   median MB/s and CPU and the largest peak RSS.
//! - rounds of the interleaved cases (the sink's clients both ways, the uploads to memory
//!   and fs; one run of each client per round): `--rounds`, else
//!   `CLOUDSTORE_BENCH_ROUNDS`, else 9, and never fewer than the runs per case.
//! - FILTER: target names (`sink`, `memory`, `fs`, `seaweedfs`, `azurite`, `fake-gcs`)
//!   and/or client names (`cloudstore`, `object_store`, `opendal`, ... prefixes match);
//!   none means everything.
//! - emulators: the variables `scripts/emulators.sh env` prints. For a service whose
//!   endpoint variable is unset, the runner takes that service's variables from the script
//!   itself, so `scripts/emulators.sh start` is all `cargo bench` needs; a service that does
//!   not answer is skipped with a note.

mod cases;
mod sink;
mod small;
mod wan;

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cases::{Case, Client, Measured};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type R<T> = Result<T, BoxError>;

/// Bytes a second one connection carries over the WAN targets' links.
pub const WAN_CAP: u64 = 50_000_000;

/// The variable (and `--part-mib`) setting every client's part size, in MiB; the case
/// processes inherit it.
const PART_MIB_VAR: &str = "CLOUDSTORE_BENCH_PART_MIB";

/// Part (chunk, range) size of every client: `--part-mib` / `CLOUDSTORE_BENCH_PART_MIB`,
/// else 16 MiB.
pub fn part_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var(PART_MIB_VAR)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&m| m > 0)
            .unwrap_or(16)
            << 20
    })
}
/// Parts (ranges) in flight for every client.
pub const CONCURRENCY: usize = 8;

/// Deterministic, incompressible-looking bytes (xorshift).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn s3_bucket() -> String {
    std::env::var("CLOUDSTORE_TEST_S3_BUCKET").unwrap_or_else(|_| "cloudstore-test".into())
}

pub fn azure_container() -> String {
    std::env::var("CLOUDSTORE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "cloudstore-test".into())
}

pub fn gcs_bucket() -> String {
    std::env::var("CLOUDSTORE_TEST_GCS_BUCKET").unwrap_or_else(|_| "cloudstore-test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Sink,
    /// The sink behind a WAN link: 0, 20 or 80 ms round trip, 50 MB/s per connection.
    Wan0,
    Wan20,
    Wan80,
    Memory,
    Fs,
    SeaweedFs,
    Azurite,
    FakeGcs,
}

impl Target {
    const ALL: [Target; 9] = [
        Target::Sink,
        Target::Wan0,
        Target::Wan20,
        Target::Wan80,
        Target::Memory,
        Target::Fs,
        Target::SeaweedFs,
        Target::Azurite,
        Target::FakeGcs,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Sink => "sink",
            Target::Wan0 => "wan0",
            Target::Wan20 => "wan20",
            Target::Wan80 => "wan80",
            Target::Memory => "memory",
            Target::Fs => "fs",
            Target::SeaweedFs => "seaweedfs",
            Target::Azurite => "azurite",
            Target::FakeGcs => "fake-gcs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::Sink => "sink (in-process S3, discards)",
            Target::Wan0 => "sink over WAN, 0 ms RTT, 50 MB/s per connection",
            Target::Wan20 => "sink over WAN, 20 ms RTT, 50 MB/s per connection",
            Target::Wan80 => "sink over WAN, 80 ms RTT, 50 MB/s per connection",
            Target::Memory => "memory",
            Target::Fs => "fs (local dir)",
            Target::SeaweedFs => "SeaweedFS (S3)",
            Target::Azurite => "Azurite (Azure Blob)",
            Target::FakeGcs => "fake-gcs-server (GCS)",
        }
    }

    /// The round trip of a WAN target.
    pub fn rtt(self) -> Option<Duration> {
        match self {
            Target::Wan0 => Some(Duration::ZERO),
            Target::Wan20 => Some(Duration::from_millis(20)),
            Target::Wan80 => Some(Duration::from_millis(80)),
            _ => None,
        }
    }

    /// Whether the target is the in-process sink (directly or behind a WAN link).
    pub fn is_sink(self) -> bool {
        self == Target::Sink || self.rtt().is_some()
    }

    fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The clients measured here, in order (an uploader before those that read its object),
    /// each with a reason when it cannot be measured on this target.
    fn clients(self) -> Vec<(Client, Option<&'static str>)> {
        use Client::*;
        match self {
            Target::Sink => vec![
                (Cloudstore, None),
                (CloudstoreUnsigned, None),
                (CloudstoreUnsignedNoCrc, None),
                (CloudstoreRecorded, None),
                (CloudstoreBare, None),
                (CloudstoreDownloadFile, None),
                (CloudstoreGet, None),
                (ObjectStore, None),
                (ObjectStoreUnsigned, None),
                (OpenDal, None),
                (ObjectStoreFile, None),
                (OpenDalFile, None),
            ],
            Target::Wan0 | Target::Wan20 | Target::Wan80 => vec![
                (CloudstoreDefaults, None),
                (ObjectStoreDefaults, None),
                (OpenDalDefaults, None),
                (CloudstoreUnsigned, None),
                (CloudstoreDownloadFile, None),
                (CloudstoreGet, None),
                (ObjectStoreUnsigned, None),
                (OpenDal, None),
            ],
            Target::Memory => vec![
                (Cloudstore, None),
                (CloudstoreUnsignedNoCrc, None),
                (ObjectStore, None),
                (OpenDal, None),
            ],
            Target::Fs => vec![
                (Cloudstore, None),
                (CloudstoreUnsignedNoCrc, None),
                (CloudstoreDownloadFile, None),
                (ObjectStore, None),
                (OpenDal, None),
            ],
            Target::SeaweedFs | Target::Azurite => vec![
                (Cloudstore, None),
                (CloudstoreDownloadFile, None),
                (CloudstoreGet, None),
                (ObjectStore, None),
                (OpenDal, None),
            ],
            Target::FakeGcs => vec![
                (Cloudstore, None),
                (CloudstoreDownloadFile, None),
                (CloudstoreGet, None),
                (
                    ObjectStore,
                    Some(
                        "not measurable: object_store's GCS store writes through the XML API, which fake-gcs-server lacks (400 invalid uploadType)",
                    ),
                ),
                (
                    OpenDal,
                    Some(
                        "not measured: the benchmark builds OpenDAL with s3, azblob, fs and memory only",
                    ),
                ),
            ],
        }
    }

    /// What a reader of the table should know about a row.
    fn note(self, client: Client) -> &'static str {
        match (self, client) {
            (Target::Sink, Client::Cloudstore) => "SigV4 signs the payload (SHA-256), CRC32C on",
            (Target::Sink, Client::CloudstoreUnsigned) => "CRC32C on",
            (Target::Sink, Client::ObjectStore) => "SigV4 signs the payload (SHA-256)",
            (Target::Sink | Target::SeaweedFs, Client::OpenDal) => {
                "OpenDAL always sends UNSIGNED-PAYLOAD"
            }
            (Target::Memory, Client::Cloudstore) => {
                "the store lives in the client process: RSS includes the object; the reader hands out the stored chunks and checks the object's CRC32C at the end"
            }
            (Target::Memory | Target::Fs, Client::CloudstoreUnsignedNoCrc) => {
                "checksums off, like the peers"
            }
            (Target::Memory, _) => {
                "the store lives in the client process: RSS includes the object; reads hand out slices of the stored buffer, no copy"
            }
            (Target::Fs, Client::Cloudstore) => "fsync off (like the peers); page cache",
            (Target::Fs, _) => "page cache",
            (_, Client::CloudstoreDownloadFile) => "ranges x8 into a temp file, fsync, rename",
            (_, Client::CloudstoreGet) => "a single GET stream, no parallel ranges",
            (_, Client::ObjectStoreFile | Client::OpenDalFile) => {
                "in order into a file, a blocking write per chunk, fsync"
            }
            _ => "",
        }
    }
}

// ------------------------------------------------------------------ child side

fn child_main(args: &[String]) -> R<()> {
    // --case TARGET CLIENT up|down --mib N --scratch DIR [--sink URL]
    let target = Target::parse(&args[0]).ok_or("unknown target")?;
    let client = Client::parse(&args[1]).ok_or("unknown client")?;
    let upload = match args[2].as_str() {
        "up" => true,
        "down" => false,
        _ => return Err("expected up or down".into()),
    };
    let mut mib = 256;
    let mut scratch = PathBuf::from(".");
    let mut sink = None;
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        let v = rest.next().ok_or("missing value")?;
        match a.as_str() {
            "--mib" => mib = v.parse()?,
            "--scratch" => scratch = PathBuf::from(v),
            "--sink" => sink = Some(v.clone()),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    opendal::install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let case = Case {
        target,
        client,
        upload,
        mib,
        sink,
        scratch,
    };
    let m: Measured = rt.block_on(cases::run(&case))?;
    println!("RESULT {} {:.6} {:.6}", m.bytes, m.secs, m.cpu_secs);
    Ok(())
}

// ------------------------------------------------------------------ runner side

enum Outcome {
    Done {
        mbps: f64,
        cpu_per_gb: f64,
        rss_mib: f64,
        /// Half the range of the runs' MB/s, as a fraction of the median (0 for one run).
        spread: f64,
    },
    Failed(String),
    Skipped(&'static str),
}

struct Row {
    target: Target,
    client: Client,
    up: Outcome,
    down: Outcome,
}

/// Runs a case `runs` times (each in its own process): median MB/s and CPU, largest RSS.
/// Any failed run fails the case.
#[allow(clippy::too_many_arguments)]
fn run_case(
    exe: &Path,
    target: Target,
    client: Client,
    upload: bool,
    mib: u64,
    runs: u32,
    scratch: &Path,
    sink: &str,
) -> Outcome {
    let mut outcomes = Vec::new();
    for _ in 0..runs.max(1) {
        let o = run_child(exe, target, client, upload, mib, scratch, sink);
        let done = matches!(o, Outcome::Done { .. });
        outcomes.push(o);
        if !done {
            break;
        }
    }
    aggregate(outcomes)
}

/// Rounds of the interleaved cases in this run (`--rounds`, at least `--runs`).
static ROUNDS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Runs `clients` in rounds (one run of each per round), so that a machine that drifts
/// during the benchmark drifts under all of them alike; one outcome per client.
#[allow(clippy::too_many_arguments)]
fn run_interleaved(
    exe: &Path,
    target: Target,
    clients: &[Client],
    upload: bool,
    mib: u64,
    runs: u32,
    scratch: &Path,
    sink: &str,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Vec<Outcome>> = clients.iter().map(|_| Vec::new()).collect();
    for round in 0..runs.max(1) as usize {
        // Each round starts one client further on, so that no client always runs after
        // the same one (and inherits what it left: dirty pages, freed memory).
        for k in 0..clients.len() {
            let i = (round + k) % clients.len();
            let client = clients[i];
            outcomes[i].push(run_child(exe, target, client, upload, mib, scratch, sink));
        }
    }
    outcomes.into_iter().map(aggregate).collect()
}

/// Median MB/s and CPU and the largest RSS of a case's runs; a failed run fails the case.
fn aggregate(runs: Vec<Outcome>) -> Outcome {
    let mut speeds = Vec::new();
    let mut cpus = Vec::new();
    let mut rss = 0f64;
    for o in runs {
        match o {
            Outcome::Done {
                mbps,
                cpu_per_gb,
                rss_mib,
                ..
            } => {
                speeds.push(mbps);
                cpus.push(cpu_per_gb);
                rss = rss.max(rss_mib);
            }
            other => return other,
        }
    }
    let mid = median(&mut speeds);
    let spread = match (speeds.first(), speeds.last()) {
        (Some(lo), Some(hi)) if mid > 0.0 => (hi - lo) / 2.0 / mid,
        _ => 0.0,
    };
    Outcome::Done {
        mbps: mid,
        cpu_per_gb: median(&mut cpus),
        rss_mib: rss,
        spread,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs one case in a child process and measures it.
fn run_child(
    exe: &Path,
    target: Target,
    client: Client,
    upload: bool,
    mib: u64,
    scratch: &Path,
    sink: &str,
) -> Outcome {
    if target == Target::Fs {
        if upload {
            // Every upload writes a new object, as a migration does: replacing the last
            // run's 1 GiB file would have ext4 write the new one back at the rename (its
            // replace-by-rename heuristic), and the disk's speed would decide the row.
            let owner = client.object_owner();
            let old = scratch
                .join(format!("fs-{}", owner.name()))
                .join(cases::object_key(owner, mib));
            let _ = std::fs::remove_file(old);
        }
        // Each case starts with no dirty pages left by the one before, which the kernel
        // would otherwise write back during this one (and charge to whoever runs then).
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    let mut cmd = Command::new(exe);
    cmd.arg("--case")
        .arg(target.name())
        .arg(client.name())
        .arg(if upload { "up" } else { "down" })
        .arg("--mib")
        .arg(mib.to_string())
        .arg("--scratch")
        .arg(scratch);
    if target.is_sink() {
        cmd.arg("--sink").arg(sink);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start the case: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Generous: the slowest emulator writes about 20 MB/s.
    let deadline = Instant::now() + Duration::from_secs(120 + mib);
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: pid is our own child, not yet reaped.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 {
            return Outcome::Failed(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        if !killed && Instant::now() > deadline {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    if killed {
        return Outcome::Failed(format!("timed out after {} s", 120 + mib));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>());
    match (ok, result) {
        (true, Some(v)) if v.len() == 3 => {
            let bytes: f64 = v[0].parse().unwrap_or(0.0);
            let secs: f64 = v[1].parse().unwrap_or(f64::NAN);
            let cpu: f64 = v[2].parse().unwrap_or(f64::NAN);
            Outcome::Done {
                mbps: bytes / 1e6 / secs,
                cpu_per_gb: cpu / (bytes / 1e9),
                // ru_maxrss is in KiB on Linux.
                rss_mib: ru.ru_maxrss as f64 / 1024.0,
                spread: 0.0,
            }
        }
        _ => {
            let msg = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
                .to_string();
            Outcome::Failed(msg)
        }
    }
}

/// The emulator variables a service needs, keyed by the variable that says it is configured.
const EMULATOR_GROUPS: &[(&str, &[&str])] = &[
    (
        "AWS_ENDPOINT",
        &[
            "AWS_ENDPOINT",
            "AWS_ALLOW_HTTP",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
            "CLOUDSTORE_TEST_S3_BUCKET",
        ],
    ),
    (
        "AZURITE_BLOB_STORAGE_URL",
        &[
            "AZURE_STORAGE_USE_EMULATOR",
            "AZURITE_BLOB_STORAGE_URL",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "CLOUDSTORE_TEST_AZURE_CONTAINER",
        ],
    ),
    (
        "STORAGE_EMULATOR_HOST",
        &[
            "STORAGE_EMULATOR_HOST",
            "CLOUDSTORE_TEST_GCS_BUCKET",
            "CLOUDSTORE_TEST_GCS_ENDPOINT",
        ],
    ),
];

/// For each service whose endpoint variable is unset, takes its variables from
/// `scripts/emulators.sh env` (which only prints; it starts nothing).
fn load_emulator_env(root: &Path) {
    let missing: Vec<_> = EMULATOR_GROUPS
        .iter()
        .filter(|(key, _)| std::env::var_os(key).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let script = root.join("scripts/emulators.sh");
    let Ok(out) = Command::new("bash").arg(&script).arg("env").output() else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (_, vars) in missing {
        for (k, v) in &values {
            if vars.contains(&k.as_str()) {
                // SAFETY: set before any other thread of this process exists.
                unsafe { std::env::set_var(k, v) };
            }
        }
    }
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hp = rest.split('/').next()?;
    Some(if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:80")
    })
}

/// Whether an emulator target is configured and answers; the reason when not.
async fn probe(target: Target, scratch: &Path) -> Result<(), String> {
    let endpoint_var = match target {
        Target::SeaweedFs => "AWS_ENDPOINT",
        Target::Azurite => "AZURITE_BLOB_STORAGE_URL",
        Target::FakeGcs => "STORAGE_EMULATOR_HOST",
        _ => return Ok(()),
    };
    let endpoint = std::env::var(endpoint_var)
        .map_err(|_| format!("{endpoint_var} is not set (scripts/emulators.sh env)"))?;
    let addr = host_port(&endpoint).ok_or_else(|| format!("cannot read {endpoint}"))?;
    let connect = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(addr.as_str()),
    )
    .await;
    if !matches!(connect, Ok(Ok(_))) {
        return Err(format!(
            "nothing answers at {endpoint} (start it with scripts/emulators.sh start)"
        ));
    }
    let case = Case {
        target,
        client: Client::Cloudstore,
        upload: false,
        mib: 0,
        sink: None,
        scratch: scratch.to_path_buf(),
    };
    let store = cases::cloudstore_store(&case).map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(20),
        store.head("bench/transfer/probe-absent"),
    )
    .await
    {
        Err(_) => Err(format!("{endpoint} does not answer within 20 s")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == cloudstore::ErrorKind::NotFound => Ok(()),
        Ok(Err(e)) => Err(format!("{endpoint} answers, but: {e}")),
    }
}

/// Removes what the cases left on a target.
async fn clean(target: Target, mib: u64, scratch: &Path) {
    match target {
        Target::Sink | Target::Wan0 | Target::Wan20 | Target::Wan80 | Target::Memory => {}
        Target::Fs => {
            for c in ["cloudstore", "object_store", "opendal"] {
                let _ = std::fs::remove_dir_all(scratch.join(format!("fs-{c}")));
            }
        }
        _ => {
            let case = Case {
                target,
                client: Client::Cloudstore,
                upload: false,
                mib,
                sink: None,
                scratch: scratch.to_path_buf(),
            };
            if let Ok(store) = cases::cloudstore_store(&case) {
                for (client, _) in target.clients() {
                    let _ = store.delete(&cases::object_key(client, mib)).await;
                }
            }
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    format!("{cores} cores ({model}), {ram_gib:.1} GiB RAM")
}

/// Today's date (UTC) from the system clock, as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn cells(o: &Outcome) -> [String; 3] {
    match o {
        Outcome::Done {
            mbps,
            cpu_per_gb,
            rss_mib,
            ..
        } => [
            if *mbps > NO_COPY_MBPS {
                "> 100000".into()
            } else {
                format!("{mbps:.0}")
            },
            format!("{cpu_per_gb:.2}"),
            format!("{rss_mib:.0}"),
        ],
        Outcome::Failed(_) => ["FAILED".into(), "".into(), "".into()],
        Outcome::Skipped(_) => ["–".into(), "".into(), "".into()],
    }
}

/// Above this rate nothing was copied: zero-copy reads of an in-process store finish in
/// microseconds, and their rate says nothing more.
const NO_COPY_MBPS: f64 = 1e5;

fn show_mbps(mbps: f64) -> String {
    if mbps > NO_COPY_MBPS {
        "> 100000 MB/s".into()
    } else {
        format!("{mbps:.0} MB/s")
    }
}

fn mbps(o: &Outcome) -> Option<f64> {
    match o {
        Outcome::Done { mbps, .. } => Some(*mbps),
        _ => None,
    }
}

fn table(header: &str, rows: &[Row], skipped: &[(Target, String)]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{header}\n");
    t.push_str("| target | client | upload MB/s | up CPU-s/GB | up peak RSS MiB | download MB/s | down CPU-s/GB | down peak RSS MiB | notes |\n");
    t.push_str("|---|---|--:|--:|--:|--:|--:|--:|---|\n");
    for r in rows {
        let up = cells(&r.up);
        let down = cells(&r.down);
        let mut notes = vec![r.target.note(r.client).to_string()];
        for (what, o) in [("upload", &r.up), ("download", &r.down)] {
            match o {
                Outcome::Failed(m) => notes.push(format!("{what} failed: {m}")),
                Outcome::Skipped(m) if !m.is_empty() => notes.push(m.to_string()),
                _ => {}
            }
        }
        notes.retain(|n| !n.is_empty());
        notes.dedup();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target.label(),
            r.client.label(),
            up[0],
            up[1],
            up[2],
            down[0],
            down[1],
            down[2],
            notes.join("; ").replace('|', "\\|")
        );
    }
    for (target, why) in skipped {
        let _ = writeln!(
            t,
            "| {} | – | | | | | | | not measured: {} |",
            target.label(),
            why.replace('|', "\\|")
        );
    }
    t.push_str(&format!(
        "\nMB/s = 10^6 bytes per wall-clock second of the transfer alone; CPU-s/GB = user + system CPU seconds of the client process during the transfer (getrusage) per 10^9 bytes; peak RSS = ru_maxrss of the case's process (wait4). The sink runs in the runner's process, so its CPU and memory are not counted; memory and fs stores run inside the client process, so theirs are. Every client uses {} MiB parts (chunks, ranges) and 8 in flight. The sink's clients (both directions) and the uploads to memory and fs run interleaved, one run of each client per round, {} rounds (medians): one run of the same case swings 2-3x on a small machine.\n",
        part_size() >> 20,
        ROUNDS.get().copied().unwrap_or(9)
    ));
    t.push_str(&targets(rows));
    t
}

/// The issue's targets, checked against this run.
fn targets(rows: &[Row]) -> String {
    let find = |t: Target, c: Client| rows.iter().find(|r| r.target == t && r.client == c);
    let mut s = String::from("\nTargets (issue 4):\n");
    let yes = |b: bool| if b { "met" } else { "NOT met" };
    let sink_crc = [Client::Cloudstore, Client::CloudstoreUnsigned]
        .into_iter()
        .filter_map(|c| find(Target::Sink, c).and_then(|r| mbps(&r.up).map(|m| (c, m))))
        .fold(None, |best: Option<(Client, f64)>, x| match best {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        });
    // The best rate of `clients` on `t`, up or down.
    let best = |t: Target, clients: &[Client], up: bool| {
        clients
            .iter()
            .filter_map(|&c| find(t, c))
            .filter_map(|r| mbps(if up { &r.up } else { &r.down }))
            .reduce(f64::max)
    };
    let peers = |t: Target, up: bool| {
        let peers = [
            Client::ObjectStore,
            Client::ObjectStoreUnsigned,
            Client::OpenDal,
        ];
        best(t, &peers, up)
    };
    if let Some((c, m)) = sink_crc {
        let _ = writeln!(
            s,
            "- sink upload with checksums on >= 2000 MB/s: {m:.0} MB/s ({}): {}",
            c.label(),
            yes(m >= 2000.0)
        );
        if let Some(p) = peers(Target::Sink, true) {
            let _ = writeln!(
                s,
                "- sink upload >= 1.1x the best peer ({p:.0} MB/s): {:.2}x: {}",
                m / p,
                yes(m >= 1.1 * p)
            );
        }
    }
    // Issue 13, like for like: the peers send no checksum, so the row with checksums off
    // counts (the line above and the table hold the cost of cloudstore's default CRC64).
    if let (Some(m), Some(p)) = (
        find(Target::Sink, Client::CloudstoreUnsignedNoCrc).and_then(|r| mbps(&r.up)),
        peers(Target::Sink, true),
    ) {
        let _ = writeln!(
            s,
            "- sink upload, checksums off like the peers, >= 1.1x the best peer ({p:.0} MB/s): {m:.0} MB/s, {:.2}x: {} (issue 13)",
            m / p,
            yes(m >= 1.1 * p)
        );
    }
    // Issue 13: downloads at the sink against the best peer, and the reader's CPU against
    // one GET stream.
    let readers = [Client::Cloudstore, Client::CloudstoreUnsigned];
    // A file download against the peers' downloads into a file: both write every byte to
    // disk and sync it.
    let file_peers = best(
        Target::Sink,
        &[Client::ObjectStoreFile, Client::OpenDalFile],
        false,
    );
    for (what, m, p, against) in [
        (
            "reader",
            best(Target::Sink, &readers, false),
            peers(Target::Sink, false),
            "the best peer",
        ),
        (
            "download_file",
            best(Target::Sink, &[Client::CloudstoreDownloadFile], false),
            file_peers,
            "the best peer writing a file",
        ),
    ] {
        if let (Some(m), Some(p)) = (m, p) {
            let _ = writeln!(
                s,
                "- sink download ({what}) >= 1.1x {against} ({p:.0} MB/s): {m:.0} MB/s, {:.2}x: {} (issue 13)",
                m / p,
                yes(m >= 1.1 * p)
            );
        }
    }
    let cpu_down = |c: Client| match find(Target::Sink, c).map(|r| &r.down) {
        Some(Outcome::Done { cpu_per_gb, .. }) => Some(*cpu_per_gb),
        _ => None,
    };
    if let (Some(get), Some(reader)) = (
        cpu_down(Client::CloudstoreGet),
        readers.into_iter().filter_map(cpu_down).reduce(f64::min),
    ) {
        let _ = writeln!(
            s,
            "- sink reader CPU <= 1.2x one GET stream's ({get:.2} CPU-s/GB): {reader:.2}, {:.2}x: {} (issue 13)",
            reader / get,
            yes(reader <= 1.2 * get)
        );
    }
    // Like for like: the peers compute no checksums, so the row with checksums off counts
    // (the row with them on is in the table beside it).
    for t in [Target::Memory, Target::Fs] {
        for (up, what) in [(true, "upload"), (false, "download")] {
            let (Some(m), Some(p)) = (
                find(t, Client::CloudstoreUnsignedNoCrc)
                    .and_then(|r| mbps(if up { &r.up } else { &r.down })),
                peers(t, up),
            ) else {
                continue;
            };
            // Beyond 100 GB/s nothing is copied: the time is a few calls, not the bytes.
            let verdict = if m > NO_COPY_MBPS && p > NO_COPY_MBPS {
                "met: both hand out the stored bytes without a copy".to_string()
            } else {
                yes(m >= p).to_string()
            };
            let _ = writeln!(
                s,
                "- {} {what}, checksums off like the peers, >= the best peer ({}): {}, {:.2}x: {verdict} (issue 13)",
                t.label(),
                show_mbps(p),
                show_mbps(m),
                m / p,
            );
        }
    }
    if let Some(r) = find(Target::Sink, Client::Cloudstore) {
        if let Outcome::Done {
            cpu_per_gb,
            rss_mib,
            ..
        } = r.up
        {
            let _ = writeln!(
                s,
                "- sink client CPU up <= 0.25 CPU-s/GB (signed payload): {cpu_per_gb:.2}: {}",
                yes(cpu_per_gb <= 0.25)
            );
            let _ = rss_mib;
        }
        if let Outcome::Done { cpu_per_gb, .. } = r.down {
            let _ = writeln!(
                s,
                "- sink client CPU down <= 0.2 CPU-s/GB: {cpu_per_gb:.2}: {}",
                yes(cpu_per_gb <= 0.2)
            );
        }
    }
    if let Some(r) = find(Target::Sink, Client::CloudstoreUnsigned)
        && let Outcome::Done { cpu_per_gb, .. } = r.up
    {
        let _ = writeln!(
            s,
            "- sink client CPU up <= 0.25 CPU-s/GB (unsigned payload): {cpu_per_gb:.2}: {}",
            yes(cpu_per_gb <= 0.25)
        );
    }
    // Issue 12: what observability costs at the sink, side by side in this run.
    for (with, without, what) in [
        (
            Client::CloudstoreRecorded,
            Client::CloudstoreUnsigned,
            "a metrics recorder and a subscriber installed vs none",
        ),
        (
            Client::CloudstoreUnsigned,
            Client::CloudstoreBare,
            "the Observed layer with nothing installed vs no layer",
        ),
    ] {
        let (Some(a), Some(b)) = (find(Target::Sink, with), find(Target::Sink, without)) else {
            continue;
        };
        for (dir, oa, ob) in [("upload", &a.up, &b.up), ("download", &a.down, &b.down)] {
            if let (
                Outcome::Done {
                    mbps: ma,
                    cpu_per_gb: ca,
                    spread: sa,
                    ..
                },
                Outcome::Done {
                    mbps: mb,
                    cpu_per_gb: cb,
                    spread: sb,
                    ..
                },
            ) = (oa, ob)
            {
                let (ratio, extra) = (ma / mb, ca - cb);
                // The runs of one client vary this much: a smaller difference is not a
                // measured cost (benches/observability.rs measures it per request).
                let noise = sa.max(*sb);
                let verdict = if ratio >= 0.98 && extra <= 0.02 {
                    "met".to_string()
                } else if 1.0 - ratio <= noise {
                    format!(
                        "not resolved: within the spread of one client's runs (+/-{:.0} %)",
                        noise * 100.0
                    )
                } else {
                    "NOT met".to_string()
                };
                let _ = writeln!(
                    s,
                    "- observability at the sink ({what}), {dir}: {ratio:.3}x the throughput (>= 0.98), {extra:+.3} CPU-s/GB (<= 0.02): {verdict} (issue 12)"
                );
            }
        }
    }
    // Issue 13: over a WAN link, parallelism must fill min(link, concurrency x cap). The
    // link is what the same client carries through the proxy at 0 ms in this run (on this
    // machine the proxy, the sink and the client share two cores); without a 0 ms row it
    // is taken as unlimited.
    let cap_goal = (CONCURRENCY as f64) * WAN_CAP as f64 / 1e6;
    for t in [Target::Wan0, Target::Wan20, Target::Wan80] {
        let ms = t.rtt().map_or(0, |d| d.as_millis());
        for (client, up, what) in [
            (Client::CloudstoreUnsigned, true, "upload"),
            (Client::CloudstoreUnsigned, false, "download (reader)"),
            (Client::CloudstoreDownloadFile, false, "download_file"),
        ] {
            let rate =
                |t: Target| find(t, client).and_then(|r| mbps(if up { &r.up } else { &r.down }));
            let Some(m) = rate(t) else {
                continue;
            };
            let (goal, link) = match rate(Target::Wan0) {
                Some(l) => (l.min(cap_goal), format!("link {l:.0} MB/s at 0 ms")),
                None => (cap_goal, "link not measured".to_string()),
            };
            let _ = writeln!(
                s,
                "- {ms} ms RTT, {what} >= 80 % of min({link}, {CONCURRENCY} x {} MB/s) = {:.0} MB/s: {m:.0} MB/s ({:.0} % of {goal:.0}; {:.0} % of {cap_goal:.0}): {} (issue 13)",
                WAN_CAP / 1_000_000,
                0.8 * goal,
                100.0 * m / goal,
                100.0 * m / cap_goal,
                yes(m >= 0.8 * goal)
            );
        }
    }
    let limit = (CONCURRENCY as f64) * (part_size() >> 20) as f64 + 32.0;
    for t in [
        Target::Sink,
        Target::Fs,
        Target::SeaweedFs,
        Target::Azurite,
        Target::FakeGcs,
    ] {
        if let Some(Outcome::Done { rss_mib, .. }) = find(t, Client::Cloudstore).map(|r| &r.up) {
            let _ = writeln!(
                s,
                "- peak memory of a streaming upload to {} <= {limit:.0} MiB: {rss_mib:.0} MiB: {}",
                t.label(),
                yes(*rss_mib <= limit)
            );
        }
    }
    for t in [Target::SeaweedFs, Target::Azurite, Target::FakeGcs] {
        let Some(r) = find(t, Client::Cloudstore) else {
            continue;
        };
        if let (Some(m), Some(p)) = (mbps(&r.up), peers(t, true)) {
            let _ = writeln!(
                s,
                "- {} upload >= the best peer ({p:.0} MB/s): {m:.0} MB/s: {}",
                t.label(),
                yes(m >= p)
            );
        }
        if let (Some(par), Some(single)) = (
            mbps(&r.down),
            find(t, Client::CloudstoreGet).and_then(|g| mbps(&g.down)),
        ) {
            let _ = writeln!(
                s,
                "- {} parallel download >= 1.5x one GET stream ({single:.0} MB/s): {par:.0} MB/s, {:.2}x: {} (the server shares the client's 2 cores)",
                t.label(),
                par / single,
                yes(par >= 1.5 * single)
            );
        }
    }
    s
}

fn runner_main(args: &[String]) -> R<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    let mut mib: u64 = std::env::var("CLOUDSTORE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runs: u32 = std::env::var("CLOUDSTORE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rounds: u32 = std::env::var("CLOUDSTORE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let mut out = root.join("target/bench-transfer.md");
    let mut filters = Vec::new();
    let mut part_mib = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mib" => mib = it.next().ok_or("--mib needs a value")?.parse()?,
            "--runs" => runs = it.next().ok_or("--runs needs a value")?.parse()?,
            "--rounds" => rounds = it.next().ok_or("--rounds needs a value")?.parse()?,
            "--part-mib" => part_mib = Some(it.next().ok_or("--part-mib needs a value")?),
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a value")?),
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "cloudstore-bench [--mib N] [--runs N] [--rounds N] [--part-mib N] [--out FILE] [FILTER...]\n\n--runs: runs of a case (median); --rounds: rounds of the interleaved cases (default 9, at least --runs)\nFILTER: target ({}) or client ({}) names or prefixes",
                    Target::ALL.map(Target::name).join(", "),
                    Client::ALL.map(Client::name).join(", ")
                );
                return Ok(true);
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}").into()),
            f => filters.push(f.to_string()),
        }
    }
    if mib == 0 {
        return Err("the size must be at least 1 MiB".into());
    }
    if let Some(m) = part_mib {
        if m.parse::<u64>().map_or(true, |m| m == 0) {
            return Err(format!("--part-mib {m}: a whole number of MiB, at least 1").into());
        }
        // SAFETY: set once, before this process starts any thread; the case processes
        // inherit it.
        unsafe { std::env::set_var(PART_MIB_VAR, m) };
    }
    // `small` selects the small-object and listing rows across the WAN links.
    let small_rows = filters.is_empty() || filters.iter().any(|f| f == "small");
    filters.retain(|f| f != "small");
    let only_small = small_rows && filters.is_empty() && args.iter().any(|a| a == "small");
    let target_filters: Vec<&String> = filters
        .iter()
        .filter(|f| Target::ALL.iter().any(|t| t.name().starts_with(f.as_str())))
        .collect();
    let client_filters: Vec<&String> = filters
        .iter()
        .filter(|f| !target_filters.contains(f))
        .collect();

    load_emulator_env(&root);
    let scratch = root.join("target/bench-data/transfer");
    std::fs::create_dir_all(&scratch)?;
    let exe = std::env::current_exe()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let addr = rt.block_on(sink::start(mib << 20))?;
    let direct_url = format!("http://{addr}");
    // One shaping proxy per WAN target, in front of the same sink.
    let mut wan_urls = std::collections::HashMap::new();
    for t in Target::ALL {
        if let Some(rtt) = t.rtt() {
            let link = wan::Link { rtt, cap: WAN_CAP };
            let proxy = rt.block_on(wan::start(addr, link))?;
            wan_urls.insert(t, format!("http://{proxy}"));
        }
    }

    let header = format!(
        "cloudstore transfer benchmark, {}: {}; object {mib} MiB, {} MiB parts, 8 in flight, median of {runs} run(s) per case",
        today(),
        machine(),
        part_size() >> 20
    );
    println!("{header}");
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = false;
    // Outcomes of interleaved clients, computed with the first of them.
    let mut precomputed: std::collections::HashMap<(Client, bool), Outcome> =
        std::collections::HashMap::new();
    let client_wanted = |target: Target, client: Client| {
        let matches = |c: Client| {
            client_filters
                .iter()
                .any(|f| c.name().starts_with(f.as_str()))
        };
        // A download-only client follows the client whose object it reads, and needs it.
        client_filters.is_empty()
            || matches(client)
            || matches(client.object_owner())
            || target
                .clients()
                .iter()
                .any(|(d, _)| *d != client && d.object_owner() == client && matches(*d))
    };
    // Rounds for the interleaved clients (below): one run of the same case swings 2-3x on
    // this project's machine, so three rounds decide nothing.
    let many_rounds = rounds.max(runs);
    let _ = ROUNDS.set(many_rounds);
    for target in Target::ALL {
        if only_small {
            break;
        }
        if !target_filters.is_empty()
            && !target_filters
                .iter()
                .any(|f| target.name().starts_with(f.as_str()))
        {
            continue;
        }
        if target == Target::Memory && mib > 2048 {
            let why =
                "objects over 2 GiB: the in-process memory stores would hold one to three copies"
                    .to_string();
            println!("skipping {}: {why}", target.label());
            skipped.push((target, why));
            continue;
        }
        if let Err(why) = rt.block_on(probe(target, &scratch)) {
            println!("skipping {}: {why}", target.label());
            skipped.push((target, why));
            continue;
        }
        rt.block_on(clean(target, mib, &scratch));
        let sink_url = wan_urls.get(&target).unwrap_or(&direct_url).clone();
        // On the machine's own targets one run of the same case swings 2-3x with the
        // kernel (fresh pages, the page cache, the in-process sink sharing the cores; see
        // the README): their clients run interleaved, one run of each per round and
        // `--rounds` rounds (9 unless asked), so that no client gets only the quiet or only the busy minutes. Uploads
        // to memory and fs, and both directions at the sink.
        let interleaved: &[bool] = match target {
            Target::Sink => &[true, false],
            Target::Memory | Target::Fs => &[true],
            _ => &[],
        };
        for &upload in interleaved {
            let group: Vec<Client> = target
                .clients()
                .into_iter()
                .filter(|(c, why)| {
                    why.is_none() && client_wanted(target, *c) && (!upload || c.uploads())
                })
                .map(|(c, _)| c)
                .collect();
            if group.len() > 1 {
                let all = run_interleaved(
                    &exe,
                    target,
                    &group,
                    upload,
                    mib,
                    many_rounds,
                    &scratch,
                    &sink_url,
                );
                for (c, o) in group.iter().zip(all) {
                    precomputed.insert((*c, upload), o);
                }
            }
        }
        for (client, reason) in target.clients() {
            if !client_wanted(target, client) {
                continue;
            }
            let mut row = Row {
                target,
                client,
                up: Outcome::Skipped(""),
                down: Outcome::Skipped(""),
            };
            if let Some(r) = reason {
                row.up = Outcome::Skipped(r);
                row.down = Outcome::Skipped(r);
                println!("{:<22} {:<28} {r}", target.name(), client.name());
                rows.push(row);
                continue;
            }
            for upload in [true, false] {
                if upload && !client.uploads() {
                    continue;
                }
                let o = if let Some(o) = precomputed.remove(&(client, upload)) {
                    o
                } else {
                    run_case(&exe, target, client, upload, mib, runs, &scratch, &sink_url)
                };
                let [a, b, c] = cells(&o);
                let what = if upload { "upload" } else { "download" };
                match &o {
                    Outcome::Failed(m) => {
                        failed = true;
                        println!(
                            "{:<10} {:<26} {what:<8} FAILED: {m}",
                            target.name(),
                            client.name()
                        );
                    }
                    _ => println!(
                        "{:<10} {:<26} {what:<8} {a:>6} MB/s {b:>6} CPU-s/GB {c:>6} MiB peak RSS",
                        target.name(),
                        client.name()
                    ),
                }
                if upload {
                    row.up = o;
                } else {
                    row.down = o;
                }
            }
            rows.push(row);
        }
        rt.block_on(clean(target, mib, &scratch));
    }
    let mut text = table(&header, &rows, &skipped);
    if small_rows {
        match rt.block_on(probe(Target::SeaweedFs, &scratch)) {
            Ok(()) => match small_table(&rt, &exe) {
                Ok(t) => text.push_str(&t),
                Err(e) => {
                    failed = true;
                    text.push_str(&format!("\nsmall objects across a WAN: FAILED: {e}\n"));
                }
            },
            Err(why) => text.push_str(&format!(
                "\nsmall objects across a WAN: not measured: SeaweedFS {why}\n"
            )),
        }
    }
    println!("\n{text}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &text)?;
    println!("written to {}", out.display());
    Ok(!failed)
}

/// The small-object and listing rows: SeaweedFS behind a WAN link of 0, 20 and 80 ms,
/// each client in its own process.
fn small_table(rt: &tokio::runtime::Runtime, exe: &Path) -> R<String> {
    let endpoint = std::env::var("AWS_ENDPOINT")?;
    rt.block_on(small::seed(&endpoint))?;
    let upstream: std::net::SocketAddr = host_port(&endpoint)
        .ok_or("cannot read AWS_ENDPOINT")?
        .replace("localhost", "127.0.0.1")
        .parse()?;
    let mut t = format!(
        "\nSmall objects across a WAN (SeaweedFS behind the shaping proxy, 50 MB/s per connection): {} objects of 1 KiB put, read and HEADed with {} in flight, operations a second; a listing of {} keys, keys a second.\n\n| round trip | client | put | get | head | list |\n|--:|---|--:|--:|--:|--:|\n",
        small::OBJECTS,
        small::CONCURRENCY_SMALL,
        small::LISTED
    );
    let mut checks = String::new();
    let mut base: Option<[f64; 3]> = None;
    for ms in [0u64, 20, 80] {
        let link = wan::Link {
            rtt: Duration::from_millis(ms),
            cap: WAN_CAP,
        };
        let proxy = rt.block_on(wan::start(upstream, link))?;
        for client in ["cloudstore", "object_store", "opendal"] {
            let out = Command::new(exe)
                .args(["--small", client, "--endpoint", &format!("http://{proxy}")])
                .stdin(Stdio::null())
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find_map(|l| l.strip_prefix("SMALL ")) else {
                let _ = writeln!(
                    t,
                    "| {ms} ms | {client} | FAILED: {} | | | |",
                    String::from_utf8_lossy(&out.stderr)
                        .trim()
                        .replace('|', "\\|")
                );
                continue;
            };
            let v: Vec<f64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() != 4 {
                return Err(format!("cannot read '{line}'").into());
            }
            println!(
                "small {ms:>3} ms {client:<14} put {:>6.0} get {:>6.0} head {:>6.0} list {:>7.0}",
                v[0], v[1], v[2], v[3]
            );
            let _ = writeln!(
                t,
                "| {ms} ms | {client} | {:.0} | {:.0} | {:.0} | {:.0} |",
                v[0], v[1], v[2], v[3]
            );
            if client == "cloudstore" {
                if ms == 0 {
                    base = Some([v[0], v[1], v[2]]);
                } else if let Some(b) = base {
                    // With C requests in flight, each taking the round trip plus what it
                    // took the server at 0 ms (C / rate there), C / (RTT + C / rate0) a
                    // second is what concurrency allows; a client limited by the round
                    // trip instead falls short of it.
                    let c = small::CONCURRENCY_SMALL as f64;
                    let shares: Vec<f64> = (0..3)
                        .map(|i| v[i] / (c / (ms as f64 / 1000.0 + c / b[i])))
                        .collect();
                    let worst = shares.iter().copied().fold(f64::INFINITY, f64::min);
                    let _ = writeln!(
                        checks,
                        "- {ms} ms RTT: put/get/head reach {:.0} / {:.0} / {:.0} % of {} in flight / (RTT + the 0 ms service time): {} (issue 13: >= 80 %, throughput scales with concurrency)",
                        100.0 * shares[0],
                        100.0 * shares[1],
                        100.0 * shares[2],
                        small::CONCURRENCY_SMALL,
                        if worst >= 0.8 { "met" } else { "NOT met" }
                    );
                }
            }
        }
    }
    t.push_str("\nTargets (issue 13, small objects):\n");
    t.push_str(&checks);
    Ok(t)
}

fn small_main(args: &[String]) -> R<()> {
    // --small CLIENT --endpoint URL
    let client = args.first().ok_or("missing client")?;
    let endpoint = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("--endpoint"), Some(url)) => url.clone(),
        _ => return Err("expected --endpoint URL".into()),
    };
    opendal::install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(small::run(client, &endpoint))?;
    println!(
        "SMALL {:.1} {:.1} {:.1} {:.1}",
        r.put, r.get, r.head, r.list
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--small") {
        if let Err(e) = small_main(&args[1..]) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--case") {
        if args.len() < 4 {
            eprintln!(
                "usage: cloudstore-bench --case TARGET CLIENT up|down [--mib N] [--scratch DIR] [--sink URL]"
            );
            std::process::exit(2);
        }
        if let Err(e) = child_main(&args[1..]) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    match runner_main(&args) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("cloudstore-bench: some cases failed (see the table)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cloudstore-bench: {e}");
            std::process::exit(1);
        }
    }
}
