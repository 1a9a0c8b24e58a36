//! Seeded fault schedules: one operation (streaming, file or conditional upload, download,
//! copy) per seed, under faults injected below the retry layer; afterwards the target is
//! absent or whole, no multipart upload is left, and the outcome is a success or a typed
//! error.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cloudstore::middleware::RetryBackend;
use cloudstore::{CopyMode, ErrorKind, Op, PutMode, PutOptions, Store, TransferConfig};
use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::data;

/// A store under test (faults, then retries, in between) and a direct one to check it by.
pub struct Rig {
    pub name: String,
    pub store: Store,
    pub clean: Store,
    pub retry: RetryBackend,
    /// Faults injected so far.
    pub faults: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The transfer settings of every schedule: 5 MiB parts (the S3 minimum), 3 in flight.
pub fn schedule_config() -> TransferConfig {
    TransferConfig {
        part_size: 5 << 20,
        concurrency: 3,
        attempts: 2,
        backoff: Duration::from_millis(1),
        ..Default::default()
    }
}

/// The seeds to run: `count_var` (default `default`) schedules, or the one named by
/// `CLOUDSTORE_FAULT_SEED`.
pub fn seed_range(count_var: &str, default: u64) -> Range<u64> {
    if let Some(n) = std::env::var("CLOUDSTORE_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
        return n..n + 1;
    }
    let count = std::env::var(count_var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    0..count
}

#[derive(Debug, Default)]
pub struct Tally {
    pub schedules: u64,
    pub ok: u64,
    pub typed_errors: u64,
    pub faults: u64,
    pub retries: u64,
    pub resumed: u64,
    pub verified: u64,
}

impl Tally {
    /// Prints the counts and checks the schedules did their job: at least one fault per
    /// `faults_every` schedules (faults on a network depend on how many connections the
    /// client opens, so the proxy's bound is looser), and mostly successes.
    pub fn report(&self, target: &str, seeds: &Range<u64>, faults_every: u64) {
        eprintln!(
            "fault schedules ({target}): {} schedules, {} faults injected, {} retries, {} reads \
             resumed, {} lost answers verified; outcomes: {} whole objects, {} typed errors",
            self.schedules,
            self.faults,
            self.retries,
            self.resumed,
            self.verified,
            self.ok,
            self.typed_errors
        );
        let count = seeds.end - seeds.start;
        assert_eq!(self.schedules, count);
        if count >= 20 {
            assert!(
                self.faults >= count / faults_every,
                "too few faults: {self:?}"
            );
            assert!(self.ok > count / 2, "too few successes: {self:?}");
        }
    }
}

fn io_to_error(e: std::io::Error) -> cloudstore::Error {
    match e.downcast::<cloudstore::Error>() {
        Ok(e) => e,
        Err(e) => cloudstore::Error::from_io(Op::Put, "test", e),
    }
}

/// The whole object, length-checked.
pub async fn read_all(store: &Store, key: &str) -> cloudstore::Result<Vec<u8>> {
    let chunks: Vec<Bytes> = store
        .get(key)
        .await?
        .into_checked_stream()
        .try_collect()
        .await?;
    Ok(chunks.concat())
}

/// Runs schedule `seed` on `rig` under keys `s{seed}/...`. `before_faults` is called once
/// the schedule's fixtures are written (the proxy turns its faults on there).
pub async fn schedule(
    seed: u64,
    rig: &Rig,
    tally: &mut Tally,
    scratch: &Path,
    before_faults: Option<&(dyn Fn(u64) + Sync)>,
) {
    let faults0 = (rig.faults)();
    let retry0 = rig.retry.counts();
    let name = &rig.name;
    // Sizes around the 5 MiB part boundary.
    let sizes = [
        0usize,
        1,
        (5 << 20) - 1,
        5 << 20,
        (5 << 20) + 1,
        10 << 20,
        (12 << 20) + 3,
    ];
    let size = sizes[(seed % sizes.len() as u64) as usize];
    let body = data(size, seed as u8);
    let kind = (seed / sizes.len() as u64) % 5;
    let source = format!("s{seed}/source");
    let target = format!("s{seed}/target");
    // Sources of downloads and copies are written before the faults start.
    if kind >= 3 {
        let mut up = rig.clean.writer(&source, &Default::default()).unwrap();
        up.write_all(&body).await.unwrap();
        up.finish().await.unwrap();
    }
    let _ = rig.clean.delete(&target).await;
    if let Some(f) = before_faults {
        f(seed);
    }
    let store = &rig.store;
    let file = scratch.join(format!("f{seed}"));
    let outcome: cloudstore::Result<()> = async {
        match kind {
            0 => {
                let mut up = store.writer(&target, &Default::default())?;
                for chunk in body.chunks(1 << 20) {
                    up.write_all(chunk).await.map_err(io_to_error)?;
                }
                up.finish().await.map(|_| ())
            }
            1 => {
                std::fs::write(&file, &body).unwrap();
                store
                    .upload_file(&target, &file, &Default::default())
                    .await
                    .map(|_| ())
            }
            2 => {
                let create = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let chunks = futures::stream::iter([Ok(Bytes::from(body.clone()))]);
                store
                    .upload_stream(&target, chunks, &create)
                    .await
                    .map(|_| ())
            }
            3 => {
                let out = scratch.join(format!("d{seed}"));
                let r = store.download_file(&source, &out).await;
                match &r {
                    Ok(_) => assert_eq!(std::fs::read(&out).unwrap(), body, "{name} seed {seed}"),
                    Err(_) => assert!(
                        !out.exists(),
                        "{name} seed {seed}: a failed download left a file"
                    ),
                }
                let _ = std::fs::remove_file(&out);
                r?;
                // And the streamed reader.
                let mut reader = store.reader(&source).await?;
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.map_err(io_to_error)?;
                assert_eq!(got, body, "{name} seed {seed}");
                Ok(())
            }
            _ => store
                .copy_mode(&source, &target, CopyMode::Create)
                .await
                .map(|_| ()),
        }
    }
    .await;
    let _ = std::fs::remove_file(&file);
    // Whatever happened: the target is absent or whole, and no upload is left.
    let check = async {
        match read_all(&rig.clean, &target).await {
            Ok(stored) => assert!(
                stored == body,
                "{name} seed {seed}: a partial or wrong object ({} bytes of {})",
                stored.len(),
                body.len()
            ),
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{name} seed {seed}: {e}"),
        }
        if kind <= 2 && outcome.is_ok() {
            assert!(
                rig.clean.head(&target).await.is_ok(),
                "{name} seed {seed}: success without an object"
            );
        }
        // Aborts of dropped uploads run in the background.
        let prefix = format!("s{seed}/");
        for i in 0.. {
            let left = match rig.clean.list_multipart_uploads(Some(&prefix)).await {
                Ok(left) => left,
                Err(e) if e.kind() == ErrorKind::Unsupported => break,
                Err(e) => panic!("{name} seed {seed}: listing uploads failed: {e}"),
            };
            if left.is_empty() {
                break;
            }
            assert!(i < 200, "{name} seed {seed}: uploads left behind: {left:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    check.await;
    let _ = rig.clean.delete(&target).await;
    let _ = rig.clean.delete(&source).await;
    tally.schedules += 1;
    match outcome {
        Ok(()) => tally.ok += 1,
        Err(e) => {
            // Typed: a kind, the operation and a message.
            assert!(!e.message().is_empty(), "{name} seed {seed}: {e:?}");
            eprintln!("{name} seed {seed}: ended in a typed error: {e}");
            tally.typed_errors += 1;
        }
    }
    tally.faults += (rig.faults)() - faults0;
    let c = rig.retry.counts();
    tally.retries += c.retries - retry0.retries;
    tally.resumed += c.resumed_reads - retry0.resumed_reads;
    tally.verified += c.verified_after_lost_answer - retry0.verified_after_lost_answer;
}
