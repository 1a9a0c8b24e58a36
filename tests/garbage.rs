//! Garbage from the server: a fake S3 endpoint answers with broken XML, a short body, a
//! missing header, another object's ETag or a nonsense status. Every case ends in a typed
//! error, never a panic, and never in wrong data.

use std::sync::Arc;

use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use cloudstore::{ErrorKind, Store, StoreOptions};

/// How the fake server answers a request, given its request line.
type Answer = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

/// A server answering every request with `answer`; returns its address.
async fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                // Read the headers (and whatever body follows; the answers ignore it).
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let line = text.lines().next().unwrap_or_default().to_string();
                let _ = conn.write_all(&answer(&line)).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8], length: Option<usize>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\n\r\n",
        length.unwrap_or(body.len())
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const OBJECT_HEADERS: &[(&str, &str)] = &[
    ("last-modified", "Fri, 27 Nov 2026 10:00:00 GMT"),
    ("content-type", "application/octet-stream"),
];

async fn store(answer: Answer) -> Store {
    let endpoint = serve(answer).await;
    let mut opts = StoreOptions::new();
    for (k, v) in [
        ("endpoint", endpoint.as_str()),
        ("region", "us-east-1"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
        ("allow_http", "true"),
        ("virtual_hosted_style_request", "false"),
        ("max_retries", "0"),
        ("timeout", "5s"),
    ] {
        opts.set(k, v);
    }
    Store::from_url("s3://bucket", &opts).unwrap()
}

#[tokio::test]
async fn broken_listing_xml_is_a_typed_error() {
    for body in [
        &b"<ListBucketResult><Contents><Key>a"[..],
        b"this is not xml",
        b"<?xml version=\"1.0\"?><ListBucketResult><Contents><Size>twelve</Size></Contents></ListBucketResult>",
    ] {
        let body = body.to_vec();
        let s = store(Arc::new(move |_| response("200 OK", &[], &body, None))).await;
        let e = s.list_all(None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_a_typed_error() {
    let s = store(Arc::new(|_| {
        let mut h = OBJECT_HEADERS.to_vec();
        h.push(("etag", "\"abc\""));
        response("200 OK", &h, &[7u8; 50], Some(100))
    }))
    .await;
    let result: cloudstore::Result<Vec<bytes::Bytes>> =
        async { s.get("k").await?.into_checked_stream().try_collect().await }.await;
    let e = result.unwrap_err();
    assert!(e.is_retryable(), "a cut body can be read again: {e}");
}

#[tokio::test]
async fn a_malformed_answer_is_a_typed_error() {
    // A Content-Length that is not a number: the HTTP layer refuses the answer.
    let s = store(Arc::new(|_| {
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: many\r\n\r\nxyz".to_vec()
    }))
    .await;
    let e = s.head("k").await.unwrap_err();
    assert!(!e.message().is_empty());
    let e = s.get_bytes("k").await.unwrap_err();
    assert!(!e.message().is_empty());
}

/// A server holding a 10-byte object that answers HEAD and the first GET (of bytes 0-4) as
/// version "a" and every later GET, ignoring If-Match, with bytes 5-9 of version "b".
async fn changing_version() -> Store {
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = store(Arc::new(move |line: &str| {
        let mut h = OBJECT_HEADERS.to_vec();
        if line.starts_with("HEAD") {
            // The native checksum lookup (S3 objects without a CRC32C of this crate's).
            h.push(("etag", "\"a\""));
            return response("200 OK", &h, b"", Some(10));
        }
        let first = gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        let (etag, range, body) = if first {
            ("\"a\"", "bytes 0-4/10", b"01234")
        } else {
            ("\"b\"", "bytes 5-9/10", b"56789")
        };
        h.extend([("etag", etag), ("content-range", range)]);
        response("206 Partial Content", &h, body, None)
    }))
    .await;
    // Ranges of 5 bytes, so that the object takes two requests.
    s.with_transfer_config(cloudstore::TransferConfig {
        part_size: 5,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_range_from_another_version_is_refused_not_mixed() {
    let s = changing_version().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f");
    let e = s.download_file("k", &out).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file is left"
    );

    let s = changing_version().await;
    let mut r = s.reader("k").await.unwrap();
    let mut v = Vec::new();
    let e = r
        .read_to_end(&mut v)
        .await
        .unwrap_err()
        .downcast::<cloudstore::Error>()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
}

#[tokio::test]
async fn nonsense_statuses_are_typed_errors() {
    for status in ["599 Weird", "302 Found", "418 I'm a teapot"] {
        let s = store(Arc::new(move |_| {
            response(status, &[], b"<Error><Code>Odd</Code></Error>", None)
        }))
        .await;
        let e = s.get_bytes("k").await.unwrap_err();
        assert!(!e.message().is_empty(), "{status}: {e}");
        let e = s.put("k", "x").await.unwrap_err();
        assert!(!e.message().is_empty(), "{status}: {e}");
    }
}

#[tokio::test]
async fn an_error_inside_a_200_completion_is_an_error() {
    // Create and parts succeed; completion answers 200 with an error document.
    let s = store(Arc::new(|line: &str| {
        if line.starts_with("POST") && line.contains("uploads") && !line.contains("uploadId") {
            let xml = b"<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>";
            return response("200 OK", &[], xml, None);
        }
        if line.starts_with("PUT") {
            return response("200 OK", &[("etag", "\"p\"")], b"", None);
        }
        if line.starts_with("POST") {
            let xml = b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>";
            return response("200 OK", &[], xml, None);
        }
        response("204 No Content", &[], b"", None)
    }))
    .await;
    let id = s.create_multipart("k", &Default::default()).await.unwrap();
    let part = s.put_part("k", &id, 1, "data").await.unwrap();
    let e = s
        .complete_multipart("k", &id, &[part], &Default::default())
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "S3 says to retry an InternalError: {e}");
}
