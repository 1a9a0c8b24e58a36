//! Spans and metrics, asserted exactly: a known workload over a store with injected faults
//! (`middleware::Faults` under the retries, as `Store::from_url` stacks a cloud store:
//! retries over `Observed` over the backend), a debugging `metrics` recorder and a
//! subscriber that keeps every span with its parent.
//!
//! Recorder and subscriber are process-wide, so this file holds one test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstore::middleware::{Fault, Faults, Observed, RetryBackend, RetryPolicy, Rule};
use cloudstore::migrate::{self, SyncOptions};
use cloudstore::observe::{KeyDisplay, key_hash};
use cloudstore::{
    Backend, ErrorKind, Key, MemoryBackend, Op, PutOptions, Store, StoreOptions, TransferConfig,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::io::AsyncWriteExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const MIB: usize = 1024 * 1024;

/// A span as captured: its name, its fields, and the sequence number of its parent.
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// Keeps every span ever opened, numbered in order of creation (span ids are reused).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Captured>>>);

struct Seq(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is registered");
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Seq>().map(|s| s.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut all = self.0.lock().unwrap();
        span.extensions_mut().insert(Seq(all.len()));
        all.push(Captured {
            name: attrs.metadata().name(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is registered");
        let Some(seq) = span.extensions().get::<Seq>().map(|s| s.0) else {
            return;
        };
        let mut all = self.0.lock().unwrap();
        values.record(&mut Fields(&mut all[seq].fields));
    }
}

impl Spans {
    fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

/// The span tree below span `root`, one line per span, children in a stable order.
fn tree(spans: &[Captured], root: usize, depth: usize, out: &mut Vec<String>) {
    let s = &spans[root];
    let shown: Vec<String> = s
        .fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "backend" | "prefix"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push(format!(
        "{}{} {}",
        "  ".repeat(depth),
        s.name,
        shown.join(" ")
    ));
    let mut children: Vec<usize> = (0..spans.len())
        .filter(|i| spans[*i].parent == Some(root))
        .collect();
    let order = |i: &usize| {
        let f = &spans[*i].fields;
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        (
            spans[*i].name,
            f.get("operation").cloned().unwrap_or_default(),
            num("part"),
            num("attempt"),
        )
    };
    children.sort_by_key(order);
    for c in children {
        tree(spans, c, depth + 1, out);
    }
}

/// What every counter grew by since the last snapshot (a snapshot takes what counters
/// hold), as `name{label=value,...}` with labels sorted, leaving out those that did not.
fn counters(snapshotter: &Snapshotter) -> BTreeMap<String, u64> {
    values(snapshotter)
        .into_iter()
        .filter_map(|(k, v)| match v {
            DebugValue::Counter(n) if n > 0 => Some((k, n)),
            _ => None,
        })
        .collect()
}

fn values(snapshotter: &Snapshotter) -> Vec<(String, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn metrics_and_spans_of_a_faulted_workload_are_exact() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .expect("the only subscriber of this process");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = Arc::new(MemoryBackend::new());
        let faults = Faults::new(memory.clone())
            // Part 2 of the upload is throttled once.
            .with_rule(Rule::new(Op::PutPart, Fault::Fail(ErrorKind::RateLimited)).part(2))
            // The first read's body is cut after 1 MiB; the retries continue it, and the
            // continuation stalls after another MiB until the stall timeout cuts it.
            .with_rule(Rule::new(Op::Get, Fault::CutBody(MIB as u64)))
            .with_rule(Rule::new(Op::Get, Fault::StallBody(MIB as u64)));
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            stall_timeout: Some(Duration::from_millis(300)),
            ..RetryPolicy::default()
        };
        let observed = Observed::new(Arc::new(faults));
        let store = Store::new(RetryBackend::new(Arc::new(observed), policy)).with_transfer_config(
            TransferConfig {
                part_size: 5 * MIB as u64,
                concurrency: 2,
                ..TransferConfig::default()
            },
        );
        let data: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();

        // 1. A multipart upload of 12 MiB: parts of 5, 5 and 2 MiB; part 2 retried once.
        counters(&snapshotter);
        let mut up = store
            .writer("big", &PutOptions::default())
            .unwrap()
            .with_size_hint(data.len() as u64);
        up.write_all(&data).await.unwrap();
        up.finish().await.unwrap();
        let upload = counters(&snapshotter);
        assert_eq!(
            upload,
            expect(&[
                ("cloudstore_io_bytes_total{backend=memory,direction=transmit}", 12 * MIB as u64),
                ("cloudstore_requests_total{backend=memory,operation=complete_multipart,outcome=ok}", 1),
                ("cloudstore_requests_total{backend=memory,operation=create_multipart,outcome=ok}", 1),
                ("cloudstore_requests_total{backend=memory,error_type=rate_limited,operation=put_part,outcome=error}", 1),
                ("cloudstore_requests_total{backend=memory,operation=put_part,outcome=ok}", 3),
                ("cloudstore_retries_total{backend=memory,error_type=rate_limited,operation=put_part}", 1),
                ("cloudstore_throttled_total{backend=memory,operation=put_part}", 1),
            ])
        );

        // 2. A download whose body is cut, then stalls: each time the read goes on from
        //    where it stopped.
        counters(&snapshotter);
        let got = store.get_bytes("big").await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data[..], "the bytes read are the bytes written");
        let download = counters(&snapshotter);
        assert_eq!(
            download,
            expect(&[
                ("cloudstore_io_bytes_total{backend=memory,direction=receive}", 12 * MIB as u64),
                ("cloudstore_requests_total{backend=memory,operation=get,outcome=ok}", 3),
                ("cloudstore_retries_total{backend=memory,error_type=other,operation=get}", 1),
                ("cloudstore_retries_total{backend=memory,error_type=timeout,operation=get}", 1),
                ("cloudstore_stalls_total{backend=memory,operation=get}", 1),
            ])
        );

        // 3. Errors: a missing object, a failed condition, a checksum that does not match
        //    (an object written by another client with a wrong declared CRC32C).
        counters(&snapshotter);
        assert_eq!(store.with_span_keys(KeyDisplay::Hash).head("missing").await.unwrap_err().kind(), ErrorKind::NotFound);
        let taken = store.put_opts("big", "x", &PutOptions::create()).await;
        assert_eq!(taken.unwrap_err().kind(), ErrorKind::AlreadyExists);
        let wrong = PutOptions::default().with_metadata("cloudstore-crc32c", "00000000");
        memory
            .put(&Key::new("corrupt").unwrap(), "not what the checksum says".into(), &wrong)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let failed = store.download_file("corrupt", dir.path().join("c")).await;
        assert_eq!(failed.unwrap_err().kind(), ErrorKind::ChecksumMismatch);
        let errors = counters(&snapshotter);
        assert_eq!(
            errors,
            expect(&[
                ("cloudstore_checksum_mismatches_total{backend=memory}", 1),
                ("cloudstore_io_bytes_total{backend=memory,direction=receive}", 26),
                ("cloudstore_requests_total{backend=memory,error_type=already_exists,operation=put,outcome=error}", 1),
                ("cloudstore_requests_total{backend=memory,error_type=not_found,operation=head,outcome=error}", 1),
                // The download reads the small object in one GET, without a HEAD first.
                ("cloudstore_requests_total{backend=memory,operation=get,outcome=ok}", 1),
            ])
        );

        // 4. A sync of three objects into a store from a URL, then a re-run.
        for k in ["s/a", "s/b", "s/c"] {
            store.put(k, k).await.unwrap();
        }
        let dst = Store::from_url("memory:///", &StoreOptions::new()).unwrap();
        let opts = SyncOptions {
            prefix: Some("s/".into()),
            ..SyncOptions::default()
        };
        counters(&snapshotter);
        let first = migrate::sync(&store, &dst, &opts).await.unwrap();
        assert_eq!((first.copied, first.skipped), (3, 0));
        let again = migrate::sync(&store, &dst, &opts).await.unwrap();
        assert_eq!((again.copied, again.skipped), (0, 3));
        let sync = counters(&snapshotter);
        assert_eq!(
            sync,
            expect(&[
                ("cloudstore_io_bytes_total{backend=memory,direction=receive}", 9),
                ("cloudstore_io_bytes_total{backend=memory,direction=transmit}", 9),
                // Each streamed copy is one GET of the source (its answer carries the
                // attributes), and one PUT.
                ("cloudstore_requests_total{backend=memory,operation=get,outcome=ok}", 3),
                ("cloudstore_requests_total{backend=memory,operation=list,outcome=ok}", 4),
                ("cloudstore_requests_total{backend=memory,operation=put,outcome=ok}", 3),
                ("cloudstore_sync_bytes_total{}", 9),
                ("cloudstore_sync_objects_total{action=copied}", 3),
                ("cloudstore_sync_objects_total{action=skipped}", 3),
            ])
        );
    });
    drop(rt);

    // Nothing is left in flight or reserved once the work is done.
    for (key, value) in values(&snapshotter) {
        if key.starts_with("cloudstore_parts_in_flight")
            || key.starts_with("cloudstore_transfer_memory")
        {
            assert!(
                matches!(value, DebugValue::Gauge(g) if g.into_inner() == 0.0),
                "{key} = {value:?} after the work"
            );
        }
    }

    // The span tree of the multipart upload: the operation, its parts (in spawned tasks),
    // and each request (one per attempt) below what sent it.
    let all = spans.all();
    let root = all
        .iter()
        .position(|s| {
            s.name == "cloudstore.operation"
                && s.fields.get("operation").map(String::as_str) == Some("upload")
        })
        .expect("an upload span");
    let mut lines = Vec::new();
    tree(&all, root, 0, &mut lines);
    // Fields in name order, as `tree` shows them.
    let request = |depth: usize, op: &str, attempt: u32, error: Option<&str>| {
        let outcome = match error {
            None => format!("operation={op} outcome=ok"),
            Some(kind) => format!("error_type={kind} operation={op} outcome=error"),
        };
        format!(
            "{}cloudstore.request attempt={attempt} {outcome}",
            "  ".repeat(depth)
        )
    };
    let (ok, throttled) = (None, Some("rate_limited"));
    assert_eq!(
        lines,
        vec![
            "cloudstore.operation key=big operation=upload outcome=ok size=12582912".to_string(),
            "  cloudstore.part outcome=ok part=1 size=5242880".into(),
            request(2, "put_part", 1, ok),
            "  cloudstore.part outcome=ok part=2 size=5242880".into(),
            request(2, "put_part", 1, throttled),
            request(2, "put_part", 2, ok),
            "  cloudstore.part outcome=ok part=3 size=2097152".into(),
            request(2, "put_part", 1, ok),
            request(1, "complete_multipart", 1, ok),
            request(1, "create_multipart", 1, ok),
        ]
    );

    // A listing is an operation with a child span per page.
    let listing = all
        .iter()
        .position(|s| {
            s.name == "cloudstore.operation"
                && s.fields.get("operation").map(String::as_str) == Some("list")
        })
        .expect("a listing span");
    let mut lines = Vec::new();
    tree(&all, listing, 0, &mut lines);
    assert_eq!(
        lines,
        vec![
            "cloudstore.operation key=s/ operation=list outcome=ok".to_string(),
            "  cloudstore.list_page objects=3 outcome=ok page=1".into(),
            request(2, "list", 1, ok),
        ]
    );

    // A store that hashes keys shows the hash, never the key.
    let head = all
        .iter()
        .find(|s| {
            s.name == "cloudstore.operation"
                && s.fields.get("operation").map(String::as_str) == Some("head")
        })
        .expect("a head span");
    assert_eq!(head.fields.get("key_hash"), Some(&key_hash("missing")));
    assert_eq!(head.fields.get("key"), None);
    assert_eq!(
        head.fields.get("error_type").map(String::as_str),
        Some("not_found")
    );
}
