//! `cloudstore`: the operator's tool over every store `Store::from_url` opens.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use cloudstore::migrate::{self, CopyOptions, ShardedSync, SyncOptions, SyncProgress, SyncReport};
use cloudstore::transfer::{Crc32c, FileUploadOptions};
use cloudstore::{Error, ErrorKind, ObjectMeta, Progress, Store, StoreOptions};

/// Lists, reads, copies, removes, syncs, verifies and benchmarks objects on S3 (and
/// S3-compatible stores), Azure Blob Storage, Google Cloud Storage and local directories,
/// with one set of commands.
///
/// Locations are URLs: s3://bucket/key, az://container/key,
/// https://ACCOUNT.blob.core.windows.net/container/key, gs://bucket/key, file:///dir (a
/// directory as a store; in cp, file:///dir/key is a key of the nearest enclosing
/// directory that already is a store, else of the file's own directory). A plain path is
/// a local file (cp).
/// Credentials come from the usual environment (AWS_*, AZURE_STORAGE_*,
/// GOOGLE_APPLICATION_CREDENTIALS, STORAGE_EMULATOR_HOST) or from -o options.
///
/// Exit codes: 0 done, 1 failed, 2 bad usage, 3 not found, 4 verification failed
/// (checksums or contents differ), 5 credentials refused, 6 conflict (already exists).
#[derive(Parser, Debug)]
#[command(name = "cloudstore", version)]
struct Cli {
    /// Print results as JSON (one document on stdout) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A store option for every URL, as NAME=VALUE (repeatable): e.g. -o region=eu-west-1,
    /// -o endpoint=http://127.0.0.1:9000 -o allow_http=true.
    #[arg(short = 'o', long = "option", value_name = "NAME=VALUE", global = true)]
    options: Vec<String>,
    /// Show transfer progress even when stderr is not a terminal (one line per 10 %).
    #[arg(long, global = true)]
    progress: bool,
    /// Never show progress.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log more to stderr: -v for what the library reports as it goes (info), -vv for
    /// every request with its timing (debug), -vvv for everything. Warnings always show.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the run's metrics to FILE at the end, in the Prometheus text format.
    #[arg(long, global = true, value_name = "FILE")]
    metrics: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List objects under a URL: one level (directories end with /), or all with -r.
    Ls {
        /// Store URL with an optional prefix, e.g. s3://bucket/logs/2026/.
        url: String,
        /// List every object under the prefix, not just one level.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Write an object to stdout (its checksum is verified at the end).
    Cat {
        /// The object, e.g. gs://bucket/reports/q3.csv.
        url: String,
    },
    /// Copy a file to a store, an object to a file, or an object between stores; verified
    /// by CRC32C end to end.
    Cp {
        /// A local path or an object URL.
        source: String,
        /// A local path (a directory takes the object's name) or an object URL (ending
        /// with / takes the source's name).
        destination: String,
        /// Fail if the destination exists instead of replacing it.
        #[arg(long)]
        no_clobber: bool,
    },
    /// Remove an object, or with -r everything under a prefix.
    Rm {
        /// The object (or, with -r, the prefix) URL.
        url: String,
        /// Remove every object under the prefix.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Make DESTINATION hold what SOURCE holds: copy what is missing or different, in
    /// parallel, verified; safe to run again after an interruption. With --workers or
    /// --worker, the sync is split into units shared by many workers through the
    /// destination store (see `cloudstore sync status`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Sync {
        #[command(subcommand)]
        action: Option<SyncAction>,
        #[command(flatten)]
        args: Box<SyncArgs>,
    },
    /// Check objects: with one URL, read every object under it and verify its stored
    /// checksum; with two, check that DESTINATION holds what SOURCE holds.
    Verify {
        /// Store URL (with an optional prefix).
        source: String,
        /// A second store URL to compare with.
        destination: Option<String>,
        /// With two URLs: also report objects only in DESTINATION.
        #[arg(long)]
        extras: bool,
    },
    /// Measure upload and download throughput to a store with one object (removed after).
    Bench {
        /// Store URL (with an optional prefix) to write the test object under.
        url: String,
        /// Object size in MiB.
        #[arg(long, default_value_t = 256)]
        mib: u64,
    },
}

#[derive(clap::Args, Debug)]
struct SyncArgs {
    /// Source store URL (with an optional prefix).
    #[arg(required = true)]
    source: Option<String>,
    /// Destination store URL (with an optional prefix).
    #[arg(required = true)]
    destination: Option<String>,
    /// Also delete destination objects the source does not have.
    #[arg(long)]
    delete: bool,
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Requests (copies, HEADs, deletes) in flight at once, per worker.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Split the sync into units and run N workers in this process.
    #[arg(long, value_name = "N", conflicts_with = "worker")]
    workers: Option<usize>,
    /// Run one worker of a sync shared by many processes (a Kubernetes Indexed Job): its
    /// index comes from JOB_COMPLETION_INDEX; index 0 plans the units. Needs --run.
    #[arg(long)]
    worker: bool,
    /// The job's name: its plan and the records kept for re-runs (default: derived from
    /// the source URL and prefix).
    #[arg(long)]
    job: Option<String>,
    /// The name of this run of the job (its claims and results): the same for every
    /// worker of one run, new for the next (default with --workers: a new one each time;
    /// with --worker: $CLOUDSTORE_SYNC_RUN).
    #[arg(long)]
    run: Option<String>,
    /// Units to plan when the job has no plan yet (default: 8 per worker with --workers,
    /// 64 with --worker).
    #[arg(long)]
    units: Option<usize>,
    /// Seconds a worker's claim on a unit lasts without renewal.
    #[arg(long, default_value_t = 60)]
    lease: u64,
    /// The fewest keys a planned unit should have (a small job gets fewer units).
    #[arg(long, default_value_t = 10_000)]
    min_unit_keys: u64,
}

#[derive(Subcommand, Debug)]
enum SyncAction {
    /// Show where a sharded sync stands across all workers: units done, running and
    /// expired, open claims, and the totals of the units done.
    Status {
        /// Source store URL (names the job when --job is not given).
        source: String,
        /// Destination store URL (holds the plan, claims and results).
        destination: String,
        /// The job's name (default: derived from the source URL and prefix).
        #[arg(long)]
        job: Option<String>,
        /// The run to show.
        #[arg(long)]
        run: String,
    },
}

/// A failure with its exit code and advice.
struct Failure {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let (code, hint) = match e.kind() {
            ErrorKind::NotFound => (
                3,
                "check the URL; `cloudstore ls` on its parent shows what is there",
            ),
            ErrorKind::ChecksumMismatch => (
                4,
                "the data does not match its checksum: do not trust this copy; read it again \
                 or restore it from another copy",
            ),
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => (
                5,
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 AZURE_STORAGE_ACCOUNT_KEY or a SAS token, GOOGLE_APPLICATION_CREDENTIALS) \
                 and that they may do this",
            ),
            ErrorKind::AlreadyExists | ErrorKind::PreconditionFailed => (
                6,
                "the destination exists or changed; drop --no-clobber to replace it",
            ),
            ErrorKind::InvalidInput => (1, "check the URL, key and options"),
            ErrorKind::RateLimited | ErrorKind::Timeout => (
                1,
                "the service is slow or throttling: try again later or with less concurrency",
            ),
            ErrorKind::Unsupported => (1, "this store cannot do that"),
            _ => (1, ""),
        };
        Failure {
            code,
            message: e.to_string(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        }
    }
}

fn fail(code: u8, message: impl Into<String>, hint: Option<&str>) -> Failure {
    Failure {
        code,
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

type Out = Result<serde_json::Value, Failure>;

/// glibc gives every thread that contends for the allocator an arena of its own, and the
/// blocking threads of local-directory I/O then hold freed memory in up to 8 per core: a
/// sync of 10^5 small files peaked at 23 MiB that way. Two arenas keep it at 15 MiB
/// and cost no throughput here.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let metrics = match cli.metrics.clone().map(Metrics::install) {
        Some(Err(code)) => return code,
        Some(Ok(m)) => Some(m),
        None => None,
    };
    let code = run_main(cli);
    if let Some(m) = metrics
        && let Err(code) = m.write()
    {
        return code;
    }
    code
}

/// Logs to stderr: warnings, and more with each -v.
fn init_logs(verbose: u8) {
    use tracing_subscriber::fmt::format::FmtSpan;
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    // From -vv on, each span's end is a line with its fields and timing: every request.
    let events = if verbose >= 2 {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_span_events(events)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The Prometheus recorder of `--metrics`, and where its output goes.
struct Metrics {
    path: std::path::PathBuf,
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

impl Metrics {
    fn install(path: std::path::PathBuf) -> Result<Metrics, ExitCode> {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    cloudstore::observe::REQUEST_DURATION.to_string(),
                ),
                cloudstore::observe::DURATION_BUCKETS,
            )
            .map(|b| b.build_recorder());
        let recorder = match recorder {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cloudstore: cannot record metrics: {e}");
                return Err(ExitCode::from(1));
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            eprintln!("cloudstore: cannot record metrics: a recorder is already installed");
            return Err(ExitCode::from(1));
        }
        cloudstore::observe::describe();
        Ok(Metrics { path, handle })
    }

    fn write(self) -> Result<(), ExitCode> {
        std::fs::write(&self.path, self.handle.render()).map_err(|e| {
            eprintln!(
                "cloudstore: cannot write the metrics to {}: {e}",
                self.path.display()
            );
            ExitCode::from(1)
        })
    }
}

fn run_main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cloudstore: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(value) => {
            if json {
                println!("{value:#}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                println!(
                    "{:#}",
                    json!({"error": {"message": f.message, "hint": f.hint, "exit_code": f.code}})
                );
            } else {
                eprintln!("cloudstore: {}", f.message);
                if let Some(h) = &f.hint {
                    eprintln!("hint: {h}");
                }
            }
            ExitCode::from(f.code)
        }
    }
}

struct Ctx {
    options: StoreOptions,
    json: bool,
    show_progress: Option<bool>,
}

impl Ctx {
    fn store(&self, url: &str) -> Result<Store, Failure> {
        Ok(Store::from_url(url, &self.options)?)
    }

    /// The store and key of an object URL.
    fn object(&self, url: &str) -> Result<(Store, String), Failure> {
        let (store_url, key) = split_url(url, true)?;
        Ok((self.store(&store_url)?, key))
    }

    /// The store and key of `name` under the prefix URL `dir` (ending with `/`).
    fn object_under(&self, dir: &str, name: &str) -> Result<(Store, String), Failure> {
        let (store_url, prefix) = split_url(dir, false)?;
        Ok((self.store(&store_url)?, format!("{prefix}{name}")))
    }

    /// Progress for `total` bytes: a bar on a terminal, lines with --progress, else none.
    fn progress(&self, what: &str, total: u64) -> Option<Arc<Bar>> {
        let terminal = std::io::stderr().is_terminal();
        let show = self.show_progress.unwrap_or(terminal && !self.json);
        if !show {
            return None;
        }
        let bar = if terminal {
            let pb = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_message(what.to_string());
            Bar::Terminal(pb)
        } else {
            Bar::Lines {
                what: what.to_string(),
                total,
                last: std::sync::atomic::AtomicU64::new(0),
            }
        };
        Some(Arc::new(bar))
    }
}

enum Bar {
    Terminal(indicatif::ProgressBar),
    Lines {
        what: String,
        total: u64,
        last: std::sync::atomic::AtomicU64,
    },
}

impl Bar {
    fn set(&self, bytes: u64) {
        match self {
            Bar::Terminal(pb) => pb.set_position(bytes),
            Bar::Lines { what, total, last } => {
                let tenth = if *total == 0 {
                    10
                } else {
                    bytes.saturating_mul(10) / total
                };
                if last.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth {
                    eprintln!("{what}: {bytes}/{total} bytes ({}%)", tenth * 10);
                }
            }
        }
    }

    fn finish(&self) {
        if let Bar::Terminal(pb) = self {
            pb.finish_and_clear();
        }
    }

    fn callback(self: &Arc<Self>) -> cloudstore::ProgressFn {
        let bar = self.clone();
        Arc::new(move |p: Progress| bar.set(p.bytes))
    }
}

/// `s3://bucket/a/b` -> (`s3://bucket`, `a/b`); Azure's https form keeps the container,
/// `abfss://container@account...` its user part. With `object`, the key must name an
/// object; otherwise it is a prefix (possibly empty). Keys are percent-decoded; a query or
/// fragment is refused rather than silently dropped (`?` and `#` in keys are written
/// `%3F` and `%23`).
fn split_url(url: &str, object: bool) -> Result<(String, String), Failure> {
    let parsed = url::Url::parse(url).map_err(|e| {
        fail(
            2,
            format!("'{url}' is not a URL: {e}"),
            Some("e.g. s3://bucket/key"),
        )
    })?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(fail(
            2,
            format!("'{url}' has a query or fragment"),
            Some("write ? as %3F and # as %23 in keys"),
        ));
    }
    let decode = |t: &str| -> Result<String, Failure> {
        percent_encoding::percent_decode_str(t)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                fail(
                    2,
                    format!("'{url}' decodes to a key that is not UTF-8"),
                    None,
                )
            })
    };
    let path = parsed.path().trim_start_matches('/');
    if parsed.scheme() == "file" {
        // The store is the nearest enclosing directory that already is one (it holds the
        // store's `.cloudstore`), else the file's own directory.
        let segments: Vec<&str> = path.split('/').collect();
        let parent = segments.len() - 1;
        if object && segments[parent].is_empty() {
            return Err(fail(2, format!("'{url}' names no file"), None));
        }
        let is_store = |n: usize| {
            url::Url::parse(&format!("file:///{}", segments[..n].join("/")))
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .is_some_and(|d| d.join(".cloudstore").is_dir())
        };
        let root = (0..=parent).rev().find(|&n| is_store(n)).unwrap_or(parent);
        return Ok((
            format!("file:///{}", segments[..root].join("/")),
            decode(&segments[root..].join("/"))?,
        ));
    }
    let (store_path, key) = if matches!(parsed.scheme(), "https" | "http") {
        match path.split_once('/') {
            Some((container, key)) => (format!("/{container}"), key),
            None => (format!("/{path}"), ""),
        }
    } else {
        (String::new(), path)
    };
    if object && (key.is_empty() || key.ends_with('/')) {
        return Err(fail(
            2,
            format!("'{url}' names no object"),
            Some("give the object's key after the bucket or container"),
        ));
    }
    let user = match parsed.username() {
        "" => String::new(),
        u => format!("{u}@"),
    };
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok((
        format!("{}://{user}{host}{port}{store_path}", parsed.scheme()),
        decode(key)?,
    ))
}

/// Whether `s` names a store object (`file:///dir/key` is key `key` of the store
/// `file:///dir`, like any other store URL); a plain path is a local file.
fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// A local path from a plain path or a `file://` URL.
fn local_path(s: &str) -> PathBuf {
    match url::Url::parse(s).ok().filter(|u| u.scheme() == "file") {
        Some(u) => u.to_file_path().unwrap_or_else(|_| PathBuf::from(s)),
        None => PathBuf::from(s),
    }
}

fn meta_json(m: &ObjectMeta) -> serde_json::Value {
    let modified = m
        .last_modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "key": m.key.as_str(),
        "size": m.size,
        "etag": m.etag,
        "last_modified_unix": modified,
        "content_type": m.content_type,
    })
}

async fn run(cli: Cli) -> Out {
    let mut options = StoreOptions::new();
    for o in &cli.options {
        let Some((k, v)) = o.split_once('=') else {
            return Err(fail(2, format!("option '{o}' is not NAME=VALUE"), None));
        };
        options.set(k.trim(), v.trim());
    }
    let ctx = Ctx {
        options,
        json: cli.json,
        show_progress: if cli.quiet {
            Some(false)
        } else if cli.progress {
            Some(true)
        } else {
            None
        },
    };
    match cli.command {
        Command::Ls { url, recursive } => ls(&ctx, &url, recursive).await,
        Command::Cat { url } => cat(&ctx, &url).await,
        Command::Cp {
            source,
            destination,
            no_clobber,
        } => cp(&ctx, &source, &destination, no_clobber).await,
        Command::Rm { url, recursive } => rm(&ctx, &url, recursive).await,
        Command::Sync { action, args } => match action {
            Some(SyncAction::Status {
                source,
                destination,
                job,
                run,
            }) => sync_status(&ctx, &source, &destination, job, &run).await,
            None => sync_command(&ctx, *args).await,
        },
        Command::Verify {
            source,
            destination,
            extras,
        } => match destination {
            Some(d) => {
                let opts = SyncOptions {
                    verify_only: true,
                    delete_extras: extras,
                    ..Default::default()
                };
                sync(&ctx, &source, &d, &opts).await
            }
            None => verify_objects(&ctx, &source).await,
        },
        Command::Bench { url, mib } => bench(&ctx, &url, mib).await,
    }
}

async fn ls(ctx: &Ctx, url: &str, recursive: bool) -> Out {
    let store = ctx.store(url)?;
    let (objects, dirs) = if recursive {
        (store.list_all(None).await?, Vec::new())
    } else {
        let l = store.list_with_delimiter(None).await?;
        (l.objects, l.common_prefixes)
    };
    if !ctx.json {
        for d in &dirs {
            println!("{:>14}  {:>19}  {d}", "DIR", "");
        }
        for m in &objects {
            let modified = m
                .last_modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            println!("{:>14}  {:>19}  {}", m.size, modified, m.key.as_str());
        }
    }
    Ok(json!({
        "directories": dirs,
        "objects": objects.iter().map(meta_json).collect::<Vec<_>>(),
    }))
}

async fn cat(ctx: &Ctx, url: &str) -> Out {
    let (store, key) = ctx.object(url)?;
    let reader = store.reader(&key).await?;
    let size = reader.meta().size;
    let mut body = reader.into_stream();
    let mut out = tokio::io::stdout();
    while let Some(chunk) = body.try_next().await? {
        out.write_all(&chunk)
            .await
            .map_err(|e| fail(1, format!("writing to stdout failed: {e}"), None))?;
    }
    out.flush()
        .await
        .map_err(|e| fail(1, format!("writing to stdout failed: {e}"), None))?;
    Ok(json!({"key": key, "bytes": size}))
}

/// The CRC32C of a local file, in one pass.
async fn file_crc(path: &Path) -> Result<Crc32c, Failure> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Crc32c::from_reader(std::fs::File::open(&path)?))
        .await
        .map_err(|e| fail(1, e.to_string(), None))?
        .map_err(|e| fail(1, format!("reading the local file failed: {e}"), None))
}

fn declared_crc(m: &ObjectMeta) -> Option<String> {
    m.crc32c.map(|c| format!("{c:08x}"))
}

async fn cp(ctx: &Ctx, source: &str, destination: &str, no_clobber: bool) -> Out {
    let mode = if no_clobber {
        cloudstore::PutMode::Create
    } else {
        cloudstore::PutMode::Overwrite
    };
    let started = Instant::now();
    let (bytes, verified, how) = match (is_url(source), is_url(destination)) {
        (false, false) => {
            return Err(fail(
                2,
                "both locations are local paths",
                Some("one of them must be a store URL such as s3://bucket/key or file:///dir/key"),
            ));
        }
        (false, true) => {
            let path = local_path(source);
            let size = std::fs::metadata(&path)
                .map_err(|e| {
                    fail(
                        3,
                        format!("cannot read '{source}': {e}"),
                        Some("check the local path"),
                    )
                })?
                .len();
            let (store, key) = if destination.ends_with('/') {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
                ctx.object_under(destination, name)?
            } else {
                ctx.object(destination)?
            };
            let bar = ctx.progress("upload", size);
            let opts = FileUploadOptions {
                put: cloudstore::PutOptions {
                    mode,
                    ..Default::default()
                },
                progress: bar.as_ref().map(|b| b.callback()),
                checkpoint: None,
            };
            let meta = store.upload_file_with(&key, &path, &opts).await;
            if let Some(b) = &bar {
                b.finish();
            }
            let meta = meta?;
            // End to end: the file's CRC32C against the one the store now declares.
            let local = file_crc(&path).await?.to_hex();
            let stored = declared_crc(&store.head(&key).await?);
            match stored {
                Some(c) if c == local => (meta.size, true, "CRC32C of the file and the object"),
                Some(c) => {
                    return Err(fail(
                        4,
                        format!("uploaded object's CRC32C {c} differs from the file's {local}"),
                        Some("upload it again"),
                    ));
                }
                None => (meta.size, false, "size only: the store keeps no CRC32C"),
            }
        }
        (true, false) => {
            let (store, key) = ctx.object(source)?;
            let head = store.head(&key).await?;
            let mut path = local_path(destination);
            if path.is_dir() || destination.ends_with('/') {
                let name = key.rsplit('/').next().unwrap_or("object");
                path = path.join(name);
            }
            if no_clobber && path.exists() {
                return Err(fail(6, format!("'{}' exists", path.display()), None));
            }
            let bar = ctx.progress("download", head.size);
            let meta = store
                .download_file_with_progress(&key, &path, bar.as_ref().map(|b| b.callback()))
                .await;
            if let Some(b) = &bar {
                b.finish();
            }
            let meta = meta?;
            let verified = declared_crc(&head).is_some();
            (
                meta.size,
                verified,
                if verified {
                    "CRC32C checked while downloading"
                } else {
                    "the store's own checksum where it keeps one, else size"
                },
            )
        }
        (true, true) => {
            let (src, src_key) = ctx.object(source)?;
            let (dst, dst_key) = if destination.ends_with('/') {
                let name = src_key.rsplit('/').next().unwrap_or("object");
                ctx.object_under(destination, name)?
            } else {
                ctx.object(destination)?
            };
            let size = src.head(&src_key).await?.size;
            let bar = ctx.progress("copy", size);
            let opts = CopyOptions {
                mode,
                progress: bar.as_ref().map(|b| b.callback()),
            };
            let copied = migrate::copy(&src, &src_key, &dst, &dst_key, &opts).await;
            if let Some(b) = &bar {
                b.finish();
            }
            let c = copied?;
            (
                c.bytes,
                true,
                if c.server_side {
                    "copied by the service"
                } else {
                    "source verified while streaming"
                },
            )
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if !ctx.json {
        println!(
            "copied {bytes} bytes in {secs:.1} s ({:.0} MB/s); {}: {how}",
            bytes as f64 / 1e6 / secs.max(1e-9),
            if verified { "verified" } else { "not verified" }
        );
    }
    Ok(json!({
        "source": source,
        "destination": destination,
        "bytes": bytes,
        "seconds": secs,
        "verified": verified,
        "verification": how,
    }))
}

async fn rm(ctx: &Ctx, url: &str, recursive: bool) -> Out {
    if recursive {
        let store = ctx.store(url)?;
        let keys: Vec<String> = store
            .list_all(None)
            .await?
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect();
        let results: Vec<(String, cloudstore::Result<()>)> = futures::stream::iter(keys)
            .map(|k| {
                let store = store.clone();
                async move {
                    let r = store.delete(&k).await;
                    (k, r)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let (mut done, mut failed) = (0u64, Vec::new());
        for (k, r) in results {
            match r {
                Ok(()) => done += 1,
                Err(e) => failed.push(json!({"key": k, "error": e.to_string()})),
            }
        }
        if !ctx.json {
            println!("removed {done} objects");
        }
        if !failed.is_empty() {
            return Err(fail(
                1,
                format!("{} objects could not be removed: {failed:?}", failed.len()),
                None,
            ));
        }
        return Ok(json!({"removed": done}));
    }
    let (store, key) = ctx.object(url)?;
    store.head(&key).await?;
    store.delete(&key).await?;
    if !ctx.json {
        println!("removed {key}");
    }
    Ok(json!({"removed": 1, "key": key}))
}

/// The sync's progress on stderr: a spinner with counts on a terminal, a line every
/// five seconds with --progress, else nothing.
enum SyncBar {
    Terminal(indicatif::ProgressBar),
    Lines(std::sync::Mutex<Instant>),
}

impl SyncBar {
    fn new(ctx: &Ctx) -> Option<Arc<SyncBar>> {
        let terminal = std::io::stderr().is_terminal();
        if !ctx.show_progress.unwrap_or(terminal && !ctx.json) {
            return None;
        }
        if !terminal {
            return Some(Arc::new(SyncBar::Lines(std::sync::Mutex::new(
                Instant::now(),
            ))));
        }
        let pb = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            pb.set_style(style);
        }
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(Arc::new(SyncBar::Terminal(pb)))
    }

    fn show(&self, p: &SyncProgress) {
        use indicatif::HumanBytes;
        let line = format!(
            "listed {} ({}), copied {} ({}), in place {}, deleted {}, failed {}",
            p.listed,
            HumanBytes(p.listed_bytes),
            p.copied,
            HumanBytes(p.copied_bytes),
            p.skipped,
            p.deleted,
            p.failed
        );
        match self {
            SyncBar::Terminal(pb) => pb.set_message(line),
            SyncBar::Lines(last) => {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if p.done || last.elapsed() >= std::time::Duration::from_secs(5) {
                    *last = Instant::now();
                    eprintln!("sync: {line}");
                }
            }
        }
    }

    fn finish(&self) {
        if let SyncBar::Terminal(pb) = self {
            pb.finish_and_clear();
        }
    }
}

/// A job name from the source URL (without credentials or query): the same source gets
/// the same records in the destination.
fn default_job(source: &str) -> String {
    let shown = match url::Url::parse(source) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => source.to_string(),
    };
    // FNV-1a: stable across builds and platforms.
    let h = shown.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("j{h:016x}")
}

async fn sync_command(ctx: &Ctx, args: SyncArgs) -> Out {
    let (Some(source), Some(destination)) = (args.source, args.destination) else {
        return Err(fail(2, "sync needs SOURCE and DESTINATION", None));
    };
    let job = args.job.unwrap_or_else(|| default_job(&source));
    let opts = SyncOptions {
        delete_extras: args.delete,
        dry_run: args.dry_run,
        concurrency: args.concurrency,
        state: Some(job.clone()),
        ..Default::default()
    };
    if !(args.worker || args.workers.is_some()) {
        return sync(ctx, &source, &destination, &opts).await;
    }
    if args.dry_run {
        return Err(fail(
            2,
            "--dry-run runs in one process: drop --workers/--worker",
            None,
        ));
    }
    // The run, and for one worker of many (a Kubernetes Indexed Job) its index: checked
    // before any store is opened.
    let (run, index) = match args.workers {
        Some(_) => {
            let run = args.run.unwrap_or_else(|| {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                format!("local-{millis}")
            });
            (run, None)
        }
        None => {
            let (index, run) = worker_identity(args.run)?;
            (run, Some(index))
        }
    };
    let (src, dst) = (ctx.store(&source)?, ctx.store(&destination)?);
    let sharded = ShardedSync::new(&src, &dst, &job, &run, opts.clone())?
        .with_lease(std::time::Duration::from_secs(args.lease.max(1)))
        .with_min_unit_keys(args.min_unit_keys);
    let started = Instant::now();
    let bar = SyncBar::new(ctx);
    if let Some(n) = args.workers {
        let n = n.max(1);
        let plan = sharded.plan(args.units.unwrap_or(8 * n)).await?;
        let per = std::sync::Mutex::new(vec![SyncProgress::default(); n]);
        let workers = (0..n).map(|i| {
            let (sharded, per, bar) = (&sharded, &per, &bar);
            async move {
                let show = move |p: &SyncProgress| {
                    let mut per = per.lock().unwrap_or_else(|p| p.into_inner());
                    per[i] = p.clone();
                    if let Some(b) = bar {
                        let mut total = SyncProgress::default();
                        per.iter().for_each(|w| total.add(w));
                        total.done = per.iter().all(|w| w.done);
                        b.show(&total);
                    }
                };
                sharded.run_worker_with(&format!("local-{i}"), &show).await
            }
        });
        let reports = futures::future::join_all(workers).await;
        if let Some(b) = &bar {
            b.finish();
        }
        let mut total = SyncReport::default();
        total.state_saved = true;
        for r in reports {
            total.add(&r?.report);
        }
        let extra = json!({"job": job, "run": run, "units": plan.units.len(), "workers": n});
        return summarize(ctx, &total, &opts, started, extra);
    }
    let index = index.unwrap_or_default();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| std::process::id().to_string());
    let worker = format!("{index}-{host}");
    if index == 0 {
        sharded.plan(args.units.unwrap_or(64)).await?;
    }
    let show = |p: &SyncProgress| {
        if let Some(b) = &bar {
            b.show(p)
        }
    };
    let r = sharded.run_worker_with(&worker, &show).await;
    if let Some(b) = &bar {
        b.finish();
    }
    let r = r?;
    let extra = json!({"job": job, "run": run, "worker": worker, "units_done": r.units, "units_given_up": r.given_up});
    let out = summarize(ctx, &r.report, &opts, started, extra)?;
    // Every unit has a result now; objects that failed in any worker's units fail every
    // worker, so that the Job shows it (a new run copies them).
    let failed = sharded.status().await?.report.failed.len();
    if failed > 0 {
        return Err(fail(
            1,
            format!("run {run}: {failed} objects failed in the units of all workers"),
            Some("see `cloudstore sync status`; a new run (a new Job) copies what is missing"),
        ));
    }
    Ok(out)
}

/// A worker's index (from `JOB_COMPLETION_INDEX`) and run name (`--run`, else
/// `CLOUDSTORE_SYNC_RUN`).
fn worker_identity(run: Option<String>) -> Result<(u32, String), Failure> {
    let index = std::env::var("JOB_COMPLETION_INDEX")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            fail(
                2,
                "--worker needs JOB_COMPLETION_INDEX (a number), which an Indexed Job sets",
                Some("run it in a Kubernetes Indexed Job, or set JOB_COMPLETION_INDEX"),
            )
        })?;
    let run = run
        .or_else(|| std::env::var("CLOUDSTORE_SYNC_RUN").ok())
        .ok_or_else(|| {
            fail(
                2,
                "--worker needs --run (or CLOUDSTORE_SYNC_RUN), the same for every worker",
                Some("in Kubernetes, pass the Job's name"),
            )
        })?;
    Ok((index, run))
}

async fn sync_status(
    ctx: &Ctx,
    source: &str,
    destination: &str,
    job: Option<String>,
    run: &str,
) -> Out {
    let (src, dst) = (ctx.store(source)?, ctx.store(destination)?);
    let job = job.unwrap_or_else(|| default_job(source));
    let st = ShardedSync::new(&src, &dst, &job, run, SyncOptions::default())?
        .status()
        .await?;
    let r = &st.report;
    if !ctx.json {
        if st.units == 0 {
            println!("job {job}: not planned yet");
        } else {
            println!(
                "job {job} run {run}: {}/{} units done, {} running, {} expired, {} pending; {} claims open",
                st.done,
                st.units,
                st.running,
                st.expired,
                st.units - st.done - st.running - st.expired,
                st.open_claims
            );
            println!(
                "units done: {} source objects: copied {} ({} bytes), skipped {}, deleted {}, failed {}",
                r.source_objects,
                r.copied,
                r.bytes,
                r.skipped,
                r.deleted,
                r.failed.len()
            );
        }
    }
    Ok(json!({
        "job": job,
        "run": run,
        "units": st.units,
        "done": st.done,
        "running": st.running,
        "expired": st.expired,
        "open_claims": st.open_claims,
        "source_objects": r.source_objects,
        "copied": r.copied,
        "skipped": r.skipped,
        "deleted": r.deleted,
        "failed": r.failed.len(),
        "bytes": r.bytes,
        "requests": r.requests,
    }))
}

async fn sync(ctx: &Ctx, source: &str, destination: &str, opts: &SyncOptions) -> Out {
    let (src, dst) = (ctx.store(source)?, ctx.store(destination)?);
    let started = Instant::now();
    let bar = SyncBar::new(ctx);
    let mut opts = opts.clone();
    if let Some(b) = &bar {
        let b = b.clone();
        opts.progress = Some(Arc::new(move |p: &SyncProgress| b.show(p)));
    }
    let r = migrate::sync(&src, &dst, &opts).await;
    if let Some(b) = &bar {
        b.finish();
    }
    summarize(ctx, &r?, &opts, started, json!({}))
}

/// Prints a sync's summary (text unless --json) and turns failures into the exit code.
fn summarize(
    ctx: &Ctx,
    r: &SyncReport,
    opts: &SyncOptions,
    started: Instant,
    extra: serde_json::Value,
) -> Out {
    let secs = started.elapsed().as_secs_f64();
    let mut report = json!({
        "source_objects": r.source_objects,
        "copied": r.copied,
        "skipped": r.skipped,
        "deleted": r.deleted,
        "failed": r.failed.iter().map(|(k, why)| json!({"key": k, "error": why})).collect::<Vec<_>>(),
        "bytes": r.bytes,
        "seconds": secs,
        "dry_run": opts.dry_run,
        "verify_only": opts.verify_only,
        "requests": r.requests,
    });
    if let (Some(o), Some(e)) = (report.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    if !ctx.json {
        let verb = if opts.dry_run { "would copy" } else { "copied" };
        if opts.verify_only {
            println!(
                "{} source objects: {} in place, {} differ or missing",
                r.source_objects,
                r.skipped,
                r.failed.len()
            );
        } else {
            println!(
                "{} source objects: {verb} {} ({} bytes), skipped {}, deleted {}, failed {} in {secs:.1} s",
                r.source_objects,
                r.copied,
                r.bytes,
                r.skipped,
                r.deleted,
                r.failed.len()
            );
        }
        let q = &r.requests;
        println!(
            "requests: {} listing pages, {} HEAD, {} copies, {} deletes, {} state reads, {} state writes",
            q.list_pages, q.heads, q.copies, q.deletes, q.state_reads, q.state_writes
        );
        for (k, why) in &r.failed {
            println!("  {k}: {why}");
        }
    }
    // A verification passes only if every source object was compared and found in place.
    let incomplete = opts.verify_only && !r.all_in_place();
    if !r.failed.is_empty() || incomplete {
        let (code, what) = if opts.verify_only {
            (4, "the stores differ")
        } else {
            (1, "some objects failed")
        };
        return Err(Failure {
            code,
            message: format!("{what}: {report}"),
            hint: Some(if opts.verify_only {
                "run `cloudstore sync` to bring the destination in line".into()
            } else {
                "run the same sync again: it copies only what is missing".into()
            }),
        });
    }
    Ok(report)
}

async fn verify_objects(ctx: &Ctx, url: &str) -> Out {
    let store = ctx.store(url)?;
    let objects = store.list_all(None).await?;
    let results: Vec<(String, bool, cloudstore::Result<u64>)> = futures::stream::iter(objects)
        .map(|m| {
            let store = store.clone();
            async move {
                let key = m.key.as_str().to_string();
                let checked = declared_crc(&m).is_some();
                let r = async {
                    let mut n = 0u64;
                    let mut body = store.reader(&key).await?.into_stream();
                    while let Some(c) = body.try_next().await? {
                        n += c.len() as u64;
                    }
                    Ok(n)
                }
                .await;
                (key, checked, r)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let (mut ok, mut corrupt, mut errors) = (0u64, Vec::new(), Vec::new());
    for (key, _, r) in results {
        match r {
            Ok(_) => ok += 1,
            Err(e) if e.kind() == ErrorKind::ChecksumMismatch => corrupt.push(key),
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    corrupt.sort();
    if !ctx.json {
        println!(
            "{ok} objects read and checked, {} corrupt, {} errors",
            corrupt.len(),
            errors.len()
        );
        for k in &corrupt {
            println!("  corrupt: {k}");
        }
        for e in &errors {
            println!("  error: {e}");
        }
    }
    let report = json!({"ok": ok, "corrupt": corrupt, "errors": errors});
    if !corrupt.is_empty() {
        return Err(Failure {
            code: 4,
            message: format!(
                "{} objects do not match their checksums: {report}",
                corrupt.len()
            ),
            hint: Some("restore them from another copy (cloudstore cp or sync)".into()),
        });
    }
    if !errors.is_empty() {
        return Err(fail(
            1,
            format!("{} objects could not be read: {report}", errors.len()),
            None,
        ));
    }
    Ok(report)
}

async fn bench(ctx: &Ctx, url: &str, mib: u64) -> Out {
    let store = ctx.store(url)?;
    let key = format!(
        "cloudstore-bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let size = mib << 20;
    let chunk = bytes::Bytes::from(vec![0x5au8; 1 << 20]);
    let started = Instant::now();
    let stream = futures::stream::iter((0..mib).map(|_| Ok(chunk.clone())));
    let up = store.upload_stream(&key, stream, &Default::default()).await;
    let up_secs = started.elapsed().as_secs_f64();
    up?;
    let started = Instant::now();
    let mut n = 0u64;
    let down = async {
        let mut body = store.reader(&key).await?.into_stream();
        while let Some(c) = body.try_next().await? {
            n += c.len() as u64;
        }
        Ok::<(), Error>(())
    }
    .await;
    let down_secs = started.elapsed().as_secs_f64();
    let _ = store.delete(&key).await;
    down?;
    let (up_mbs, down_mbs) = (size as f64 / 1e6 / up_secs, n as f64 / 1e6 / down_secs);
    if !ctx.json {
        println!("upload {mib} MiB: {up_mbs:.0} MB/s; download: {down_mbs:.0} MB/s");
    }
    Ok(json!({"mib": mib, "upload_mb_s": up_mbs, "download_mb_s": down_mbs}))
}
