//! No secret is ever printed: a failing run with credentials configured, with every log
//! line captured at TRACE level, must not show a secret in the logs, the errors or any
//! `Debug` output.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstore::{PresignMethod, Store, StoreOptions};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_errors_or_debug() {
    let logs = Captured::default();
    let writer = logs.clone();
    // Spans too: each span's fields are printed when it opens and when it closes (with
    // what was recorded on it meanwhile).
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(
            tracing_subscriber::fmt::format::FmtSpan::NEW
                | tracing_subscriber::fmt::format::FmtSpan::CLOSE,
        )
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let wrong_s3 = "wrong-s3-secret-7f3a9c";
    let wrong_azure = "d3JvbmctYXp1cmUta2V5LTdmM2E5Yy13cm9uZy1henVyZS1rZXktN2YzYTljCg==";
    let real_s3 = env("AWS_SECRET_ACCESS_KEY");
    let real_azure = env("AZURE_STORAGE_ACCOUNT_KEY");
    let mut shown = String::new();

    let s3_bad = Store::from_url(
        &format!("s3://{}", env("CLOUDSTORE_TEST_S3_BUCKET")),
        &StoreOptions::new()
            .with("secret_access_key", wrong_s3)
            .with("max_retries", "1"),
    )
    .unwrap();
    let az_bad = Store::from_url(
        &format!("az://{}", env("CLOUDSTORE_TEST_AZURE_CONTAINER")),
        &StoreOptions::new()
            .with("account_key", wrong_azure)
            .with("max_retries", "1"),
    )
    .unwrap();
    for store in [&s3_bad, &az_bad] {
        let errors: Vec<cloudstore::Error> = [
            store.put("secret-test/k", "x").await.err(),
            store.get("secret-test/k").await.err(),
            store.head("secret-test/k").await.err(),
            store.list_all(Some("secret-test/")).await.err(),
            store
                .create_multipart("secret-test/m", &Default::default())
                .await
                .err(),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert!(
            errors.len() >= 4,
            "wrong credentials were accepted: {errors:?}"
        );
        for e in errors {
            shown.push_str(&format!("{e}\n{e:?}\n"));
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                shown.push_str(&format!("{s}\n{s:?}\n"));
                src = s.source();
            }
        }
        shown.push_str(&format!("{store:?}\n"));
    }

    // Good credentials: presigned URLs are credentials themselves; they must not be logged
    // either, and their Debug form hides the signature.
    let s3 = Store::from_url(
        &format!("s3://{}", env("CLOUDSTORE_TEST_S3_BUCKET")),
        &StoreOptions::new(),
    )
    .unwrap();
    let az = Store::from_url(
        &format!("az://{}", env("CLOUDSTORE_TEST_AZURE_CONTAINER")),
        &StoreOptions::new(),
    )
    .unwrap();
    let mut signatures = Vec::new();
    for store in [&s3, &az] {
        store.put("secret-test/p", "x").await.unwrap();
        let signed = store
            .presign(PresignMethod::Get, "secret-test/p", Duration::from_secs(60))
            .await
            .unwrap();
        let sig = signed
            .url
            .query_pairs()
            .find(|(k, _)| k == "X-Amz-Signature" || k == "sig")
            .map(|(_, v)| v.into_owned())
            .expect("a signature parameter");
        shown.push_str(&format!("{signed:?}\n"));
        signatures.push(sig);
        store.delete("secret-test/p").await.unwrap();
    }

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        !logged.is_empty(),
        "the subscriber captured nothing; the test would prove nothing"
    );
    for span in [
        "cloudstore.operation",
        "cloudstore.request",
        "operation=\"presign\"",
    ] {
        assert!(logged.contains(span), "no {span} span was captured");
    }
    for secret in [wrong_s3, wrong_azure, real_s3.as_str(), real_azure.as_str()]
        .into_iter()
        .chain(signatures.iter().map(String::as_str))
    {
        assert!(
            !logged.contains(secret),
            "a secret was logged: ...{}...",
            &secret[..6]
        );
        assert!(
            !shown.contains(secret),
            "a secret was shown: ...{}...\n{shown}",
            &secret[..6]
        );
    }
}
