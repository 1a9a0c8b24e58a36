//! The cases. Each takes a store scoped to a fresh prefix and checks one behaviour through
//! the public API.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{CaseResult, Failure, Outcome};
use crate::error::{ErrorKind, Op, Result};
use crate::key::MAX_KEY_LEN;
use crate::object::{
    ByteRange, GetOptions, ListRequest, PartInfo, PresignMethod, PutMode, PutOptions,
};
use crate::store::Store;

type R<T> = std::result::Result<T, Failure>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($fmt)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $what:expr) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err(Failure(format!("{}: got {:?}, expected {:?}", $what, l, r)));
                }
            }
        }
    };
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub(crate) fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// Expects an error of `kind`.
fn expect_kind<T: Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> R<crate::Error> {
    match r {
        Ok(v) => Err(Failure(format!(
            "{what}: succeeded with {v:?}, expected {kind:?}"
        ))),
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(Failure(format!(
            "{what}: got {:?} ({e}), expected {kind:?}",
            e.kind()
        ))),
    }
}

fn passed() -> CaseResult {
    Ok(Outcome::Passed)
}

/// Checks that a feature the backend declares absent answers `Unsupported`, and reports the
/// case as not applicable.
fn not_applicable<T: Debug>(r: Result<T>, capability: &str) -> CaseResult {
    expect_kind(
        r,
        ErrorKind::Unsupported,
        &format!("with {capability} = false"),
    )?;
    Ok(Outcome::NotApplicable(format!(
        "{capability} is false; verified the operation answers Unsupported"
    )))
}

async fn body_of(s: &Store, key: &str) -> R<Bytes> {
    Ok(s.get_bytes(key).await?)
}

async fn keys(s: &Store, prefix: Option<&str>) -> R<Vec<String>> {
    Ok(s.list_all(prefix)
        .await?
        .into_iter()
        .map(|m| m.key.into_string())
        .collect())
}

async fn round_trip(s: &Store, key: &str, body: Bytes) -> CaseResult {
    let meta = s.put(key, body.clone()).await?;
    ensure_eq!(meta.size, body.len() as u64, "size returned by put");
    let got = body_of(s, key).await?;
    ensure!(
        got == body,
        "read back {} bytes differing from the {} written",
        got.len(),
        body.len()
    );
    ensure_eq!(s.head(key).await?.size, body.len() as u64, "size from head");
    passed()
}

pub async fn put_get_empty_object(s: Store) -> CaseResult {
    round_trip(&s, "empty", Bytes::new()).await
}

pub async fn put_get_one_byte(s: Store) -> CaseResult {
    round_trip(&s, "one", Bytes::from_static(b"x")).await
}

pub async fn put_get_several_mib(s: Store) -> CaseResult {
    round_trip(&s, "big.bin", data(6 * 1024 * 1024 + 123, 7)).await
}

pub async fn put_overwrites_existing(s: Store) -> CaseResult {
    s.put("k", "first version").await?;
    s.put("k", "second").await?;
    ensure_eq!(
        body_of(&s, "k").await?,
        Bytes::from_static(b"second"),
        "body after overwrite"
    );
    passed()
}

pub async fn put_returns_meta_matching_head(s: Store) -> CaseResult {
    let put = s.put("dir/k.txt", "hello").await?;
    let head = s.head("dir/k.txt").await?;
    ensure_eq!(put.key.as_str(), "dir/k.txt", "key from put");
    ensure_eq!(head.key.as_str(), "dir/k.txt", "key from head");
    ensure!(head.etag.is_some(), "head has no ETag");
    ensure_eq!(put.etag, head.etag, "ETag from put and from head");
    ensure_eq!(head.size, 5, "size");
    let age = std::time::SystemTime::now()
        .duration_since(head.last_modified)
        .unwrap_or_default();
    ensure!(
        age < Duration::from_secs(3600),
        "last_modified is {age:?} old"
    );
    passed()
}

pub async fn get_reports_meta_and_range(s: Store) -> CaseResult {
    s.put("k", data(1000, 1)).await?;
    let r = s.get("k").await?;
    ensure_eq!(r.meta.size, 1000, "size from get");
    ensure_eq!(r.range, 0..1000, "range of a full read");
    let r = s.get_opts("k", &GetOptions::range(10..20)).await?;
    ensure_eq!(r.meta.size, 1000, "size from a ranged get (whole object)");
    ensure_eq!(r.range, 10..20, "range served");
    ensure_eq!(r.bytes().await?.len(), 10, "ranged body length");
    passed()
}

pub async fn get_missing_is_not_found(s: Store) -> CaseResult {
    expect_kind(
        s.get("missing").await,
        ErrorKind::NotFound,
        "get of a missing key",
    )?;
    expect_kind(
        s.get_range("missing", 0..1).await,
        ErrorKind::NotFound,
        "ranged get of a missing key",
    )?;
    passed()
}

pub async fn head_missing_is_not_found(s: Store) -> CaseResult {
    let e = expect_kind(
        s.head("missing/k").await,
        ErrorKind::NotFound,
        "head of a missing key",
    )?;
    ensure!(
        e.key().is_some_and(|k| k.ends_with("missing/k")),
        "error does not name the key: {e}"
    );
    passed()
}

pub async fn etag_changes_on_overwrite(s: Store) -> CaseResult {
    let a = s.put("k", "same length A").await?;
    let b = s.put("k", "same length B").await?;
    ensure!(
        a.etag != b.etag,
        "ETag did not change on overwrite: {:?}",
        a.etag
    );
    passed()
}

async fn keys_round_trip(s: &Store, names: &[&str]) -> CaseResult {
    for (i, k) in names.iter().enumerate() {
        s.put(k, data(17, i as u64)).await?;
    }
    for (i, k) in names.iter().enumerate() {
        ensure_eq!(
            body_of(s, k).await?,
            data(17, i as u64),
            format!("body of {k:?}")
        );
        ensure_eq!(s.head(k).await?.key.as_str(), *k, "key from head");
    }
    let mut want: Vec<String> = names.iter().map(|k| k.to_string()).collect();
    want.sort();
    ensure_eq!(keys(s, None).await?, want, "listed keys");
    for k in names {
        s.delete(k).await?;
    }
    ensure_eq!(keys(s, None).await?.len(), 0, "keys left after delete");
    passed()
}

pub async fn key_with_spaces(s: Store) -> CaseResult {
    keys_round_trip(
        &s,
        &[
            "with space",
            "dir with space/file name.txt",
            " lead",
            "trail ",
        ],
    )
    .await
}

pub async fn key_with_plus_and_percent(s: Store) -> CaseResult {
    keys_round_trip(&s, &["a+b", "100%", "%20", "%2F", "a%2Fb/c+d%25"]).await
}

pub async fn key_with_unicode_and_emoji(s: Store) -> CaseResult {
    keys_round_trip(
        &s,
        &["ünïcødé", "日本語/ファイル", "emoji/🦀🚀.bin", "mixed/é🦀x"],
    )
    .await
}

pub async fn key_with_special_segments(s: Store) -> CaseResult {
    keys_round_trip(
        &s,
        &[
            "..a",
            "a..",
            ".hidden",
            "x.",
            "~",
            "-dash",
            "star*",
            "q?",
            "hash#",
            "a&b=c",
            "[br]",
            "quote'\"",
            "semi;colon",
            "at@sign",
            "dollar$",
            "comma,",
        ],
    )
    .await
}

pub async fn key_with_backslash(s: Store) -> CaseResult {
    if !s.capabilities().backslash_in_keys {
        return not_applicable(s.put("back\\slash", "x").await, "backslash_in_keys");
    }
    keys_round_trip(&s, &["back\\slash", "dir\\file/x", "a\\"]).await
}

pub async fn key_of_max_length(s: Store) -> CaseResult {
    // The limit applies to the full key, store prefix included.
    let room = MAX_KEY_LEN - s.prefix().len() - 1;
    let seg_max = s
        .capabilities()
        .max_key_segment_len
        .unwrap_or(200)
        .clamp(2, 200);
    let key = key_of_len(room, seg_max);
    ensure_eq!(
        key.len() + s.prefix().len() + 1,
        MAX_KEY_LEN,
        "test key length"
    );
    s.put(&key, "max").await?;
    ensure_eq!(
        body_of(&s, &key).await?,
        Bytes::from_static(b"max"),
        "body at a 1024-byte key"
    );
    let too_long = format!("{key}k");
    expect_kind(
        s.put(&too_long, "x").await,
        ErrorKind::InvalidInput,
        "put at a 1025-byte key",
    )?;
    passed()
}

/// A key of exactly `len` bytes made of segments of at most `seg_max` bytes.
fn key_of_len(len: usize, seg_max: usize) -> String {
    let mut key = String::new();
    while key.len() < len {
        let left = len - key.len();
        if !key.is_empty() {
            // A separator and at least one byte of segment must fit; otherwise lengthen
            // the previous segment instead.
            if left < 2 {
                key.push('k');
                continue;
            }
            key.push('/');
        }
        let seg = (len - key.len()).min(seg_max);
        key.push_str(&"k".repeat(seg));
    }
    key
}

pub async fn key_segment_limit(s: Store) -> CaseResult {
    match s.capabilities().max_key_segment_len {
        Some(max) => {
            let ok = "s".repeat(max);
            s.put(&format!("d/{ok}"), "x").await?;
            let long = format!("d/{ok}s");
            let e = expect_kind(
                s.put(&long, "x").await,
                ErrorKind::InvalidInput,
                "put with an over-long segment",
            )?;
            ensure!(
                e.message().contains("segment"),
                "message does not name the segment: {e}"
            );
            ensure_eq!(
                keys(&s, Some(&format!("{long}/"))).await?.len(),
                0,
                "listing under an unstorable prefix"
            );
            ensure_eq!(keys(&s, None).await?, vec![format!("d/{ok}")], "keys");
        }
        None => {
            // As long as the key limit allows, store prefix included.
            let seg = "s".repeat(MAX_KEY_LEN - s.prefix().len() - 1);
            s.put(&seg, "x").await?;
            ensure_eq!(keys(&s, None).await?, vec![seg], "keys");
        }
    }
    passed()
}

pub async fn key_with_deep_path(s: Store) -> CaseResult {
    let deep: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let key = format!("{}/leaf", deep.join("/"));
    s.put(&key, "deep").await?;
    ensure_eq!(
        keys(&s, Some("d0/d1/")).await?,
        vec![key.clone()],
        "listing under a deep path"
    );
    let l = s.list_with_delimiter(Some("d0/d1/d2/")).await?;
    ensure_eq!(
        l.common_prefixes,
        vec!["d0/d1/d2/d3/".to_string()],
        "common prefix at depth"
    );
    passed()
}

pub async fn invalid_keys_are_rejected(s: Store) -> CaseResult {
    // Under the cloud rule, only the empty key and keys over 1024 bytes are not keys.
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for k in ["", too_long.as_str()] {
        let e = expect_kind(
            s.put(k, "x").await,
            ErrorKind::InvalidInput,
            &format!("put {k:?}"),
        )?;
        ensure!(
            e.message().contains("invalid key"),
            "message does not name the problem: {e}"
        );
        expect_kind(s.get(k).await, ErrorKind::InvalidInput, "get")?;
        expect_kind(s.head(k).await, ErrorKind::InvalidInput, "head")?;
        expect_kind(s.delete(k).await, ErrorKind::InvalidInput, "delete")?;
        expect_kind(s.copy(k, "ok").await, ErrorKind::InvalidInput, "copy from")?;
    }
    expect_kind(
        s.list_all(Some(&too_long)).await,
        ErrorKind::InvalidInput,
        "list with a prefix over 1024 bytes",
    )?;
    // The portable policy refuses what is not a plain relative path, before any request.
    let portable = s.with_key_policy(crate::KeyPolicy::Portable);
    let bad = [
        "/abs", "trail/", "a//b", ".", "..", "a/./b", "a/../b", "nul\0x", "tab\tx", "nl\nx",
        "del\x7f",
    ];
    for k in bad {
        let e = expect_kind(
            portable.put(k, "x").await,
            ErrorKind::InvalidInput,
            &format!("portable put {k:?}"),
        )?;
        ensure!(
            e.message().contains("not a portable key"),
            "message does not name the problem: {e}"
        );
        expect_kind(
            portable.get(k).await,
            ErrorKind::InvalidInput,
            "portable get",
        )?;
        expect_kind(
            portable.head(k).await,
            ErrorKind::InvalidInput,
            "portable head",
        )?;
        expect_kind(
            portable.delete(k).await,
            ErrorKind::InvalidInput,
            "portable delete",
        )?;
        expect_kind(
            portable.copy("ok", k).await,
            ErrorKind::InvalidInput,
            "portable copy to",
        )?;
    }
    expect_kind(
        portable.list_all(Some("a//")).await,
        ErrorKind::InvalidInput,
        "portable list with a non-portable prefix",
    )?;
    ensure_eq!(
        keys(&s, None).await?.len(),
        0,
        "objects stored by invalid writes"
    );
    passed()
}

async fn ranged(s: &Store, range: ByteRange) -> Result<Bytes> {
    s.get_range("r", range).await
}

pub async fn range_bounded(s: Store) -> CaseResult {
    let body = data(1000, 3);
    s.put("r", body.clone()).await?;
    ensure_eq!(
        ranged(&s, ByteRange::Bounded(0..1)).await?,
        body.slice(0..1),
        "first byte"
    );
    ensure_eq!(
        ranged(&s, ByteRange::Bounded(100..250)).await?,
        body.slice(100..250),
        "middle"
    );
    ensure_eq!(
        ranged(&s, ByteRange::Bounded(999..1000)).await?,
        body.slice(999..1000),
        "last byte"
    );
    ensure_eq!(
        ranged(&s, ByteRange::Bounded(0..1000)).await?,
        body,
        "whole"
    );
    passed()
}

pub async fn range_bounded_end_past_size_is_cut(s: Store) -> CaseResult {
    let body = data(100, 4);
    s.put("r", body.clone()).await?;
    let r = s.get_opts("r", &GetOptions::range(90..500)).await?;
    ensure_eq!(r.range, 90..100, "range served");
    ensure_eq!(r.bytes().await?, body.slice(90..100), "bytes");
    passed()
}

pub async fn range_from_offset(s: Store) -> CaseResult {
    let body = data(100, 5);
    s.put("r", body.clone()).await?;
    ensure_eq!(ranged(&s, ByteRange::From(0)).await?, body, "from 0");
    ensure_eq!(
        ranged(&s, ByteRange::From(42)).await?,
        body.slice(42..),
        "from 42"
    );
    ensure_eq!(
        ranged(&s, ByteRange::From(99)).await?,
        body.slice(99..),
        "from the last byte"
    );
    passed()
}

pub async fn range_suffix(s: Store) -> CaseResult {
    let body = data(100, 6);
    s.put("r", body.clone()).await?;
    ensure_eq!(
        ranged(&s, ByteRange::Suffix(1)).await?,
        body.slice(99..),
        "last byte"
    );
    ensure_eq!(
        ranged(&s, ByteRange::Suffix(30)).await?,
        body.slice(70..),
        "last 30"
    );
    ensure_eq!(
        ranged(&s, ByteRange::Suffix(100)).await?,
        body,
        "suffix of the exact size"
    );
    passed()
}

pub async fn range_suffix_longer_than_object(s: Store) -> CaseResult {
    let body = data(10, 7);
    s.put("r", body.clone()).await?;
    let r = s
        .get_opts("r", &GetOptions::range(ByteRange::Suffix(1000)))
        .await?;
    ensure_eq!(r.range, 0..10, "range served");
    ensure_eq!(r.bytes().await?, body, "whole object");
    passed()
}

pub async fn range_start_past_end_is_invalid(s: Store) -> CaseResult {
    s.put("r", data(10, 8)).await?;
    for r in [
        ByteRange::Bounded(10..20),
        ByteRange::Bounded(50..60),
        ByteRange::From(10),
        ByteRange::From(11),
    ] {
        expect_kind(
            ranged(&s, r.clone()).await,
            ErrorKind::InvalidInput,
            &format!("range {r}"),
        )?;
    }
    passed()
}

pub async fn range_of_empty_object_is_invalid(s: Store) -> CaseResult {
    s.put("r", Bytes::new()).await?;
    for r in [
        ByteRange::Bounded(0..1),
        ByteRange::From(0),
        ByteRange::Suffix(5),
    ] {
        expect_kind(
            ranged(&s, r.clone()).await,
            ErrorKind::InvalidInput,
            &format!("range {r} of an empty object"),
        )?;
    }
    ensure_eq!(
        body_of(&s, "r").await?.len(),
        0,
        "plain read of an empty object"
    );
    passed()
}

pub async fn range_empty_or_reversed_is_invalid(s: Store) -> CaseResult {
    s.put("r", data(10, 9)).await?;
    #[allow(clippy::reversed_empty_ranges)]
    for r in [
        ByteRange::Bounded(3..3),
        ByteRange::Bounded(5..2),
        ByteRange::Suffix(0),
    ] {
        expect_kind(
            ranged(&s, r.clone()).await,
            ErrorKind::InvalidInput,
            &format!("range {r:?}"),
        )?;
    }
    passed()
}

pub async fn delete_removes_object(s: Store) -> CaseResult {
    s.put("a/b", "x").await?;
    s.put("a/c", "y").await?;
    s.delete("a/b").await?;
    expect_kind(
        s.head("a/b").await,
        ErrorKind::NotFound,
        "head after delete",
    )?;
    expect_kind(s.get("a/b").await, ErrorKind::NotFound, "get after delete")?;
    ensure_eq!(
        keys(&s, None).await?,
        vec!["a/c".to_string()],
        "keys after delete"
    );
    passed()
}

pub async fn delete_missing_is_ok(s: Store) -> CaseResult {
    // The backend itself must succeed, not only `Store` (which forgives NotFound).
    let missing = s.full_key(Op::Delete, "never/existed")?;
    s.backend().delete(&missing).await?;
    s.delete("never/existed").await?;
    s.put("k", "x").await?;
    s.delete("k").await?;
    s.delete("k").await?;
    passed()
}

async fn put_all(s: &Store, names: &[&str]) -> R<()> {
    for k in names {
        s.put(k, k.to_string()).await.map_err(Failure::from)?;
    }
    Ok(())
}

pub async fn list_prefix_exact_boundaries(s: Store) -> CaseResult {
    put_all(&s, &["di", "dir/file", "dir/file2", "dir2/x", "dirx"]).await?;
    let cases: &[(&str, &[&str])] = &[
        ("", &["di", "dir/file", "dir/file2", "dir2/x", "dirx"]),
        ("di", &["di", "dir/file", "dir/file2", "dir2/x", "dirx"]),
        ("dir", &["dir/file", "dir/file2", "dir2/x", "dirx"]),
        ("dir/", &["dir/file", "dir/file2"]),
        ("dir/file", &["dir/file", "dir/file2"]),
        ("dir/file2", &["dir/file2"]),
        ("dir/file3", &[]),
        ("dir2/x", &["dir2/x"]),
        ("dirx/", &[]),
        ("e", &[]),
    ];
    for (p, want) in cases {
        let want: Vec<String> = want.iter().map(|k| k.to_string()).collect();
        ensure_eq!(keys(&s, Some(p)).await?, want, format!("list({p:?})"));
    }
    passed()
}

pub async fn list_is_sorted_bytewise(s: Store) -> CaseResult {
    let names = ["a-b", "a/b", "a0", "A", "é", "z", "Z", "a b", "~", "🦀"];
    put_all(&s, &names).await?;
    let mut want: Vec<String> = names.iter().map(|k| k.to_string()).collect();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ensure_eq!(keys(&s, None).await?, want, "listing order");
    passed()
}

pub async fn list_with_delimiter(s: Store) -> CaseResult {
    put_all(
        &s,
        &[
            "top1", "top2", "d1/a", "d1/b", "d1/sub/c", "d2/x", "d3-file",
        ],
    )
    .await?;
    let l = s.list_with_delimiter(None).await?;
    let objs: Vec<_> = l.objects.iter().map(|m| m.key.as_str()).collect();
    ensure_eq!(objs, vec!["d3-file", "top1", "top2"], "objects at the top");
    ensure_eq!(
        l.common_prefixes,
        vec!["d1/".to_string(), "d2/".to_string()],
        "common prefixes"
    );
    let l = s.list_with_delimiter(Some("d1/")).await?;
    let objs: Vec<_> = l.objects.iter().map(|m| m.key.as_str()).collect();
    ensure_eq!(objs, vec!["d1/a", "d1/b"], "objects in d1/");
    ensure_eq!(
        l.common_prefixes,
        vec!["d1/sub/".to_string()],
        "common prefixes in d1/"
    );
    let l = s.list_with_delimiter(Some("d")).await?;
    ensure_eq!(
        l.common_prefixes,
        vec!["d1/".to_string(), "d2/".to_string()],
        "common prefixes for 'd'"
    );
    ensure_eq!(l.objects.len(), 1, "objects for 'd'");
    passed()
}

pub async fn list_with_delimiter_nested(s: Store) -> CaseResult {
    put_all(&s, &["x/y/1", "x/y/z/2", "x/y/z/w/3", "x/yy/4"]).await?;
    let l = s.list_with_delimiter(Some("x/y/z/")).await?;
    let objs: Vec<_> = l.objects.iter().map(|m| m.key.as_str()).collect();
    ensure_eq!(objs, vec!["x/y/z/2"], "objects");
    ensure_eq!(
        l.common_prefixes,
        vec!["x/y/z/w/".to_string()],
        "common prefixes"
    );
    let l = s.list_with_delimiter(Some("x/y")).await?;
    ensure_eq!(
        l.common_prefixes,
        vec!["x/y/".to_string(), "x/yy/".to_string()],
        "partial segment"
    );
    passed()
}

pub async fn list_pagination_past_1000(s: Store) -> CaseResult {
    let n = 1050usize;
    let names: Vec<String> = (0..n).map(|i| format!("p/{i:05}")).collect();
    let results: Vec<Result<_>> = futures::stream::iter(names.clone())
        .map(|k| {
            let s = s.clone();
            async move { s.put(&k, Bytes::new()).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let page = s
        .list_page(&ListRequest {
            prefix: "p/".into(),
            ..Default::default()
        })
        .await?;
    ensure!(page.objects.len() < n, "one page returned all {n} keys");
    ensure!(
        page.next_token.is_some(),
        "first page has no continuation token"
    );
    ensure_eq!(keys(&s, Some("p/")).await?, names, "all keys in order");
    passed()
}

pub async fn list_page_tokens_resume(s: Store) -> CaseResult {
    let names: Vec<String> = (0..10).map(|i| format!("t/{i:02}")).collect();
    for k in &names {
        s.put(k, "x").await?;
    }
    let mut req = ListRequest {
        prefix: "t/".into(),
        max_keys: Some(3),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = s.list_page(&req).await?;
        sizes.push(page.objects.len());
        seen.extend(page.objects.into_iter().map(|m| m.key.into_string()));
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => break,
        }
        ensure!(sizes.len() < 20, "pagination does not end");
    }
    ensure_eq!(seen, names, "keys across pages");
    ensure!(
        sizes.iter().all(|&n| n <= 3),
        "a page exceeded max_keys: {sizes:?}"
    );
    passed()
}

pub async fn list_starts_after_a_key(s: Store) -> CaseResult {
    // `r/b` beside `r/b/c`: a listing that starts after `r/b` must still return `r/b/c`
    // (where the store can hold both).
    let both = s.capabilities().object_and_children;
    let names: Vec<String> = ["r/a", "r/b", "r/b/c", "r/bb", "r/c", "r/d/e"]
        .iter()
        .filter(|k| both || **k != "r/b/c")
        .map(|k| k.to_string())
        .collect();
    for k in &names {
        s.put(k, "x").await?;
    }
    s.put("q", "outside").await?;
    for after in ["r/b", "r/a", "r/", "r/bz", "r/z"] {
        let expected: Vec<String> = names
            .iter()
            .filter(|k| k.as_str() > after)
            .cloned()
            .collect();
        let mut req = ListRequest {
            prefix: "r/".into(),
            max_keys: Some(2),
            start_after: Some(after.into()),
            ..Default::default()
        };
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = s.list_page(&req).await?;
            seen.extend(page.objects.into_iter().map(|m| m.key.into_string()));
            match page.next_token {
                Some(t) => req.token = Some(t),
                None => break,
            }
        }
        ensure_eq!(seen, expected, format!("keys after {after:?}"));
        let streamed: Vec<String> = s
            .list_after(Some("r/"), Some(after))
            .map_ok(|m| m.key.into_string())
            .try_collect()
            .await?;
        ensure_eq!(streamed, expected, format!("list_after {after:?}"));
    }
    passed()
}

pub async fn list_delimiter_pages_do_not_repeat_prefixes(s: Store) -> CaseResult {
    for d in 0..5 {
        for f in 0..3 {
            s.put(&format!("d{d}/f{f}"), "x").await?;
        }
    }
    put_all(&s, &["a-top", "z-top"]).await?;
    let mut req = ListRequest {
        delimiter: true,
        max_keys: Some(2),
        ..Default::default()
    };
    let (mut prefixes, mut objects) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let page = s.list_page(&req).await?;
        ensure!(
            page.objects.len() + page.common_prefixes.len() <= 2,
            "page exceeded max_keys"
        );
        prefixes.extend(page.common_prefixes);
        objects.extend(page.objects.into_iter().map(|m| m.key.into_string()));
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => break,
        }
    }
    let want: Vec<String> = (0..5).map(|d| format!("d{d}/")).collect();
    ensure_eq!(prefixes, want, "common prefixes across pages");
    ensure_eq!(
        objects,
        vec!["a-top".to_string(), "z-top".to_string()],
        "objects across pages"
    );
    passed()
}

pub async fn list_unknown_prefix_is_empty(s: Store) -> CaseResult {
    s.put("exists/k", "x").await?;
    ensure_eq!(keys(&s, Some("nothing-here/")).await?.len(), 0, "objects");
    let l = s.list_with_delimiter(Some("nothing-here/")).await?;
    ensure!(
        l.objects.is_empty() && l.common_prefixes.is_empty(),
        "delimited listing not empty"
    );
    passed()
}

pub async fn list_leaves_out_metadata_but_head_has_it(s: Store) -> CaseResult {
    let caps = s.capabilities().clone();
    let mut opts = PutOptions::default();
    if caps.content_type {
        opts = opts.with_content_type("text/plain");
    }
    if caps.user_metadata {
        opts = opts.with_metadata("color", "blue");
    }
    let put = s.put_opts("m", "hello", &opts).await?;
    let listed = s.list_all(None).await?;
    ensure_eq!(listed.len(), 1, "listed objects");
    let m = &listed[0];
    ensure_eq!(m.size, 5, "listed size");
    ensure_eq!(m.etag, put.etag, "listed ETag");
    ensure!(
        m.metadata.is_empty() && m.content_type.is_none(),
        "listing carries metadata: {m:?}"
    );
    let head = s.head("m").await?;
    ensure_eq!(
        head.content_type,
        opts.content_type,
        "content type from head"
    );
    ensure_eq!(head.metadata, opts.metadata, "metadata from head");
    passed()
}

pub async fn store_prefixes_nest(s: Store) -> CaseResult {
    let inner = s.with_prefix("tenant-a")?;
    inner.put("k", "x").await?;
    s.put("tenant-ab/k", "y").await?;
    ensure_eq!(
        keys(&inner, None).await?,
        vec!["k".to_string()],
        "keys seen inside"
    );
    ensure_eq!(
        keys(&s, None).await?,
        vec!["tenant-a/k".to_string(), "tenant-ab/k".to_string()],
        "keys seen outside"
    );
    ensure_eq!(
        inner.head("k").await?.key.as_str(),
        "k",
        "key from inner head"
    );
    let l = inner.list_with_delimiter(None).await?;
    ensure_eq!(l.objects.len(), 1, "inner delimited listing");
    passed()
}

pub async fn metadata_and_content_type_round_trip(s: Store) -> CaseResult {
    let caps = s.capabilities().clone();
    let opts = PutOptions::default()
        .with_content_type("application/json; charset=utf-8")
        .with_metadata("owner", "team-data")
        .with_metadata("run-id", "42");
    if !caps.user_metadata || !caps.content_type {
        let what = if caps.user_metadata {
            "content_type"
        } else {
            "user_metadata"
        };
        expect_kind(
            s.put_opts("m", "{}", &opts).await,
            ErrorKind::Unsupported,
            "put through the store",
        )?;
        return not_applicable(backend_put(&s, "m", &opts).await, what);
    }
    s.put_opts("m", "{}", &opts).await?;
    let head = s.head("m").await?;
    ensure_eq!(
        head.content_type.as_deref(),
        Some("application/json; charset=utf-8"),
        "content type"
    );
    ensure_eq!(head.metadata, opts.metadata, "user metadata");
    let got = s.get("m").await?;
    ensure_eq!(
        got.meta.content_type.as_deref(),
        Some("application/json; charset=utf-8"),
        "content type from get"
    );
    passed()
}

pub async fn overwrite_replaces_metadata(s: Store) -> CaseResult {
    if !s.capabilities().user_metadata {
        let opts = PutOptions::default().with_metadata("a", "1");
        return not_applicable(s.put_opts("m", "x", &opts).await, "user_metadata");
    }
    s.put_opts(
        "m",
        "x",
        &PutOptions::default()
            .with_metadata("a", "1")
            .with_content_type("text/plain"),
    )
    .await?;
    s.put("m", "y").await?;
    let head = s.head("m").await?;
    ensure!(
        head.metadata.is_empty(),
        "old metadata survived an overwrite: {:?}",
        head.metadata
    );
    ensure!(
        head.content_type.as_deref() != Some("text/plain"),
        "old content type survived an overwrite"
    );
    passed()
}

pub async fn put_create_when_absent(s: Store) -> CaseResult {
    if !s.capabilities().put_modes.create {
        return not_applicable(
            s.put_opts("c", "x", &PutOptions::create()).await,
            "put_modes.create",
        );
    }
    s.put_opts("c", "first", &PutOptions::create()).await?;
    ensure_eq!(
        body_of(&s, "c").await?,
        Bytes::from_static(b"first"),
        "body"
    );
    passed()
}

pub async fn put_create_when_present_fails_and_keeps_data(s: Store) -> CaseResult {
    if !s.capabilities().put_modes.create {
        return not_applicable(
            s.put_opts("c", "x", &PutOptions::create()).await,
            "put_modes.create",
        );
    }
    let first = s.put("c", "original").await?;
    expect_kind(
        s.put_opts("c", "intruder", &PutOptions::create()).await,
        ErrorKind::AlreadyExists,
        "second create",
    )?;
    ensure_eq!(
        body_of(&s, "c").await?,
        Bytes::from_static(b"original"),
        "body kept"
    );
    ensure_eq!(s.head("c").await?.etag, first.etag, "ETag kept");
    passed()
}

pub async fn put_if_match_current_succeeds(s: Store) -> CaseResult {
    let first = s.put("c", "v1").await?;
    let etag = first.etag.clone().unwrap_or_default();
    if !s.capabilities().put_modes.if_match {
        return not_applicable(
            s.put_opts("c", "v2", &PutOptions::if_match(etag)).await,
            "put_modes.if_match",
        );
    }
    let second = s.put_opts("c", "v2", &PutOptions::if_match(etag)).await?;
    ensure!(second.etag != first.etag, "ETag unchanged");
    ensure_eq!(body_of(&s, "c").await?, Bytes::from_static(b"v2"), "body");
    passed()
}

pub async fn put_if_match_stale_fails_and_keeps_data(s: Store) -> CaseResult {
    let first = s.put("c", "v1").await?;
    let stale = first.etag.clone().unwrap_or_default();
    if !s.capabilities().put_modes.if_match {
        return not_applicable(
            s.put_opts("c", "v2", &PutOptions::if_match(stale)).await,
            "put_modes.if_match",
        );
    }
    s.put("c", "v2").await?;
    expect_kind(
        s.put_opts("c", "v3", &PutOptions::if_match(stale)).await,
        ErrorKind::PreconditionFailed,
        "stale if-match",
    )?;
    ensure_eq!(
        body_of(&s, "c").await?,
        Bytes::from_static(b"v2"),
        "body kept"
    );
    passed()
}

pub async fn put_if_match_rejects_an_older_version(s: Store) -> CaseResult {
    let v1 = s.put("c", "v1").await?.etag.unwrap_or_default();
    if !s.capabilities().put_modes.if_match {
        return not_applicable(
            s.put_opts("c", "x", &PutOptions::if_match(v1)).await,
            "put_modes.if_match",
        );
    }
    // Same size every time: a tag must not come back for a later version.
    s.put("c", "v2").await?;
    s.put("c", "v3").await?;
    expect_kind(
        s.put_opts("c", "v4", &PutOptions::if_match(v1)).await,
        ErrorKind::PreconditionFailed,
        "if-match with the first version's tag",
    )?;
    ensure_eq!(
        body_of(&s, "c").await?,
        Bytes::from_static(b"v3"),
        "body kept"
    );
    passed()
}

pub async fn put_if_match_missing_object_fails(s: Store) -> CaseResult {
    let etag = s.put("other", "v1").await?.etag.unwrap_or_default();
    let opts = PutOptions::if_match(etag);
    if !s.capabilities().put_modes.if_match {
        return not_applicable(s.put_opts("absent", "x", &opts).await, "put_modes.if_match");
    }
    expect_kind(
        s.put_opts("absent", "x", &opts).await,
        ErrorKind::PreconditionFailed,
        "if-match on a missing object",
    )?;
    expect_kind(
        s.head("absent").await,
        ErrorKind::NotFound,
        "object after the failed write",
    )?;
    passed()
}

pub async fn create_race_has_exactly_one_winner(s: Store) -> CaseResult {
    if !s.capabilities().put_modes.create {
        return not_applicable(
            s.put_opts("race", "x", &PutOptions::create()).await,
            "put_modes.create",
        );
    }
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                (
                    i,
                    s.put_opts("race", data(4096, 100 + i), &PutOptions::create())
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t
            .await
            .map_err(|e| Failure(format!("writer task failed: {e}")))?;
        match r {
            Ok(_) => winners.push(i),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Failure(format!("writer {i}: unexpected {e}"))),
        }
    }
    ensure_eq!(winners.len(), 1, "number of winners");
    ensure_eq!(
        body_of(&s, "race").await?,
        data(4096, 100 + winners[0]),
        "stored body is the winner's"
    );
    passed()
}

pub async fn if_match_race_has_exactly_one_winner(s: Store) -> CaseResult {
    let etag = s.put("race", "v0").await?.etag.unwrap_or_default();
    if !s.capabilities().put_modes.if_match {
        return not_applicable(
            s.put_opts("race", "x", &PutOptions::if_match(etag)).await,
            "put_modes.if_match",
        );
    }
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let (s, etag) = (s.clone(), etag.clone());
            tokio::spawn(async move {
                (
                    i,
                    s.put_opts("race", data(4096, 200 + i), &PutOptions::if_match(etag))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t
            .await
            .map_err(|e| Failure(format!("writer task failed: {e}")))?;
        match r {
            Ok(_) => winners.push(i),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
            Err(e) => return Err(Failure(format!("writer {i}: unexpected {e}"))),
        }
    }
    ensure_eq!(winners.len(), 1, "number of winners");
    ensure_eq!(
        body_of(&s, "race").await?,
        data(4096, 200 + winners[0]),
        "stored body is the winner's"
    );
    passed()
}

pub async fn get_if_none_match(s: Store) -> CaseResult {
    let etag = s.put("g", "body").await?.etag.unwrap_or_default();
    let opts = GetOptions {
        if_none_match: Some(etag),
        ..Default::default()
    };
    expect_kind(
        s.get_opts("g", &opts).await,
        ErrorKind::NotModified,
        "if-none-match current",
    )?;
    let opts = GetOptions {
        if_none_match: Some("\"other\"".into()),
        ..Default::default()
    };
    ensure_eq!(
        s.get_opts("g", &opts).await?.bytes().await?,
        Bytes::from_static(b"body"),
        "if-none-match other"
    );
    passed()
}

pub async fn get_if_match(s: Store) -> CaseResult {
    let first = s.put("g", "v1").await?.etag.unwrap_or_default();
    let current = s.put("g", "v2").await?.etag.unwrap_or_default();
    let opts = GetOptions {
        if_match: Some(first),
        ..Default::default()
    };
    expect_kind(
        s.get_opts("g", &opts).await,
        ErrorKind::PreconditionFailed,
        "if-match stale",
    )?;
    let opts = GetOptions {
        if_match: Some(current),
        range: Some(ByteRange::From(1)),
        ..Default::default()
    };
    ensure_eq!(
        s.get_opts("g", &opts).await?.bytes().await?,
        Bytes::from_static(b"2"),
        "if-match current with range"
    );
    passed()
}

pub async fn get_if_modified_since(s: Store) -> CaseResult {
    let modified = s.put("g", "body").await?;
    let modified = s
        .head("g")
        .await
        .map(|h| h.last_modified)
        .unwrap_or(modified.last_modified);
    let opts = GetOptions {
        if_modified_since: Some(modified + Duration::from_secs(5)),
        ..Default::default()
    };
    expect_kind(
        s.get_opts("g", &opts).await,
        ErrorKind::NotModified,
        "if-modified-since later",
    )?;
    let opts = GetOptions {
        if_modified_since: Some(modified - Duration::from_secs(60)),
        ..Default::default()
    };
    ensure_eq!(
        s.get_opts("g", &opts).await?.bytes().await?,
        Bytes::from_static(b"body"),
        "if-modified-since earlier"
    );
    passed()
}

pub async fn get_if_unmodified_since(s: Store) -> CaseResult {
    s.put("g", "body").await?;
    let modified = s.head("g").await?.last_modified;
    let opts = GetOptions {
        if_unmodified_since: Some(modified - Duration::from_secs(60)),
        ..Default::default()
    };
    expect_kind(
        s.get_opts("g", &opts).await,
        ErrorKind::PreconditionFailed,
        "if-unmodified-since earlier",
    )?;
    let opts = GetOptions {
        if_unmodified_since: Some(modified + Duration::from_secs(5)),
        ..Default::default()
    };
    ensure_eq!(
        s.get_opts("g", &opts).await?.bytes().await?,
        Bytes::from_static(b"body"),
        "if-unmodified-since later"
    );
    passed()
}

pub async fn copy_object_with_metadata(s: Store) -> CaseResult {
    let caps = s.capabilities().clone();
    let mut opts = PutOptions::default();
    if caps.content_type {
        opts = opts.with_content_type("text/csv");
    }
    if caps.user_metadata {
        opts = opts.with_metadata("k", "v");
    }
    let body = data(3000, 11);
    s.put_opts("src/a", body.clone(), &opts).await?;
    let meta = s.copy("src/a", "dst/a").await?;
    ensure_eq!(meta.key.as_str(), "dst/a", "key returned by copy");
    ensure_eq!(body_of(&s, "dst/a").await?, body, "copied body");
    let head = s.head("dst/a").await?;
    ensure_eq!(head.content_type, opts.content_type, "copied content type");
    ensure_eq!(head.metadata, opts.metadata, "copied metadata");
    ensure_eq!(body_of(&s, "src/a").await?.len(), 3000, "source kept");
    passed()
}

pub async fn copy_overwrites_destination(s: Store) -> CaseResult {
    s.put("a", "new").await?;
    s.put("b", "old content").await?;
    s.copy("a", "b").await?;
    ensure_eq!(
        body_of(&s, "b").await?,
        Bytes::from_static(b"new"),
        "destination body"
    );
    passed()
}

pub async fn copy_missing_source_is_not_found(s: Store) -> CaseResult {
    expect_kind(
        s.copy("nope", "dst").await,
        ErrorKind::NotFound,
        "copy from a missing key",
    )?;
    expect_kind(
        s.head("dst").await,
        ErrorKind::NotFound,
        "destination after a failed copy",
    )?;
    passed()
}

pub async fn copy_if_absent_to_new_key(s: Store) -> CaseResult {
    s.put("a", "body").await?;
    if !s.capabilities().copy_if_absent {
        return not_applicable(backend_copy_if_absent(&s, "a", "b").await, "copy_if_absent");
    }
    s.copy_if_absent("a", "b").await?;
    ensure_eq!(
        body_of(&s, "b").await?,
        Bytes::from_static(b"body"),
        "copied body"
    );
    passed()
}

pub async fn copy_if_absent_existing_fails_and_keeps_data(s: Store) -> CaseResult {
    s.put("a", "new").await?;
    s.put("b", "kept").await?;
    if !s.capabilities().copy_if_absent {
        return not_applicable(backend_copy_if_absent(&s, "a", "b").await, "copy_if_absent");
    }
    let e = expect_kind(
        s.copy_if_absent("a", "b").await,
        ErrorKind::AlreadyExists,
        "copy onto an existing key",
    )?;
    ensure!(
        e.key().is_some_and(|k| k.ends_with('b')),
        "error names {:?}, not the destination",
        e.key()
    );
    ensure_eq!(
        body_of(&s, "b").await?,
        Bytes::from_static(b"kept"),
        "destination kept"
    );
    passed()
}

/// Copy-if-absent straight through the backend, bypassing `Store`'s own capability check,
/// so a not-applicable verdict proves the backend itself refuses.
async fn backend_copy_if_absent(s: &Store, from: &str, to: &str) -> Result<crate::ObjectMeta> {
    let f = s.full_key(Op::Copy, from)?;
    let t = s.full_key(Op::Copy, to)?;
    s.backend().copy(&f, &t, crate::CopyMode::Create).await
}

/// A put with attributes straight through the backend (see [`backend_copy_if_absent`]).
async fn backend_put(s: &Store, key: &str, opts: &PutOptions) -> Result<crate::ObjectMeta> {
    let k = s.full_key(Op::Put, key)?;
    s.backend().put(&k, crate::Payload::from("x"), opts).await
}

pub async fn copy_if_match_guards_the_destination(s: Store) -> CaseResult {
    s.put("src", "new").await?;
    let stale = s.put("dst", "v1").await?.etag.unwrap_or_default();
    let current = s.put("dst", "v2").await?.etag.unwrap_or_default();
    if !s.capabilities().copy_if_match {
        let (f, t) = (s.full_key(Op::Copy, "src")?, s.full_key(Op::Copy, "dst")?);
        let r = s
            .backend()
            .copy(&f, &t, crate::CopyMode::IfMatch(current))
            .await;
        return not_applicable(r, "copy_if_match");
    }
    expect_kind(
        s.copy_if_match("src", "dst", &stale).await,
        ErrorKind::PreconditionFailed,
        "copy over a stale ETag",
    )?;
    ensure_eq!(
        body_of(&s, "dst").await?,
        Bytes::from_static(b"v2"),
        "destination kept"
    );
    expect_kind(
        s.copy_if_match("src", "absent", &current).await,
        ErrorKind::PreconditionFailed,
        "copy-if-match onto a missing key",
    )?;
    s.copy_if_match("src", "dst", &current).await?;
    ensure_eq!(
        body_of(&s, "dst").await?,
        Bytes::from_static(b"new"),
        "destination replaced"
    );
    passed()
}

fn part_size(s: &Store) -> usize {
    s.capabilities().min_part_size.max(1024) as usize
}

pub async fn multipart_parts_out_of_order(s: Store) -> CaseResult {
    let ps = part_size(&s);
    let bodies = [data(ps, 21), data(ps, 22), data(1234, 23)];
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let mut parts = Vec::new();
    for n in [3u32, 1, 2] {
        parts.push(
            s.put_part("mp", &id, n, bodies[n as usize - 1].clone())
                .await?,
        );
    }
    parts.sort_by_key(|p| p.number);
    let meta = s
        .complete_multipart("mp", &id, &parts, &PutMode::Overwrite)
        .await?;
    let want: Vec<u8> = bodies.iter().flat_map(|b| b.iter().copied()).collect();
    ensure_eq!(meta.size, want.len() as u64, "size from complete");
    ensure!(body_of(&s, "mp").await? == want, "assembled body differs");
    ensure_eq!(
        s.get_range("mp", (ps as u64 - 2)..(ps as u64 + 2))
            .await?
            .len(),
        4,
        "range across a part boundary"
    );
    passed()
}

pub async fn multipart_invisible_before_complete(s: Store) -> CaseResult {
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let p = s.put_part("mp", &id, 1, data(100, 24)).await?;
    expect_kind(
        s.head("mp").await,
        ErrorKind::NotFound,
        "head before complete",
    )?;
    expect_kind(
        s.get("mp").await,
        ErrorKind::NotFound,
        "get before complete",
    )?;
    ensure_eq!(
        keys(&s, None).await?.len(),
        0,
        "objects listed before complete"
    );
    s.complete_multipart("mp", &id, &[p], &PutMode::Overwrite)
        .await?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        data(100, 24),
        "body after complete"
    );
    passed()
}

pub async fn multipart_abort_leaves_nothing(s: Store) -> CaseResult {
    let ps = part_size(&s);
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let p1 = s.put_part("mp", &id, 1, data(ps, 25)).await?;
    let p2 = s.put_part("mp", &id, 2, data(10, 26)).await?;
    s.abort_multipart("mp", &id).await?;
    expect_kind(s.head("mp").await, ErrorKind::NotFound, "head after abort")?;
    ensure_eq!(keys(&s, None).await?.len(), 0, "objects after abort");
    if s.capabilities().multipart_listing {
        let left = s.list_multipart_uploads(None).await?;
        ensure!(left.is_empty(), "uploads left after abort: {left:?}");
    }
    if !s.capabilities().abort_discards_parts {
        s.abort_multipart("mp", &id).await?;
        return Ok(Outcome::NotApplicable(
            "abort_discards_parts is false: verified the aborted upload left no object and \
             no listed upload; its parts stay completable until the service collects them"
                .into(),
        ));
    }
    expect_kind(
        s.complete_multipart("mp", &id, &[p1, p2], &PutMode::Overwrite)
            .await,
        ErrorKind::NotFound,
        "completing an aborted upload",
    )?;
    expect_kind(
        s.head("mp").await,
        ErrorKind::NotFound,
        "head after completing an aborted upload",
    )?;
    s.abort_multipart("mp", &id).await?;
    passed()
}

pub async fn multipart_complete_missing_part_fails(s: Store) -> CaseResult {
    let ps = part_size(&s);
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let p1 = s.put_part("mp", &id, 1, data(ps, 27)).await?;
    let mut ghost = p1.clone();
    ghost.number = crate::object::PartNumber::new(2)?;
    ghost.size = 10;
    expect_kind(
        s.complete_multipart("mp", &id, &[p1, ghost], &PutMode::Overwrite)
            .await,
        ErrorKind::InvalidInput,
        "complete listing a part never uploaded",
    )?;
    expect_kind(
        s.head("mp").await,
        ErrorKind::NotFound,
        "object after the failed completion",
    )?;
    s.abort_multipart("mp", &id).await?;
    passed()
}

pub async fn multipart_part_too_small_fails(s: Store) -> CaseResult {
    let min = s.capabilities().min_part_size;
    if min <= 1 {
        return Ok(Outcome::NotApplicable(
            "min_part_size is at most 1 byte: no part can be too small".into(),
        ));
    }
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let small = (min - 1) as usize;
    let p1 = s.put_part("mp", &id, 1, data(small, 28)).await?;
    let p2 = s.put_part("mp", &id, 2, data(10, 29)).await?;
    expect_kind(
        s.complete_multipart("mp", &id, &[p1, p2], &PutMode::Overwrite)
            .await,
        ErrorKind::InvalidInput,
        "complete with a small non-last part",
    )?;
    expect_kind(
        s.head("mp").await,
        ErrorKind::NotFound,
        "object after the failed completion",
    )?;
    s.abort_multipart("mp", &id).await?;
    passed()
}

pub async fn multipart_single_small_part(s: Store) -> CaseResult {
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    let p = s
        .put_part("mp", &id, 1, Bytes::from_static(b"tiny"))
        .await?;
    s.complete_multipart("mp", &id, &[p], &PutMode::Overwrite)
        .await?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        Bytes::from_static(b"tiny"),
        "body"
    );
    passed()
}

pub async fn multipart_replaced_part_wins(s: Store) -> CaseResult {
    let id = s.create_multipart("mp", &PutOptions::default()).await?;
    s.put_part("mp", &id, 1, Bytes::from_static(b"first"))
        .await?;
    let p = s
        .put_part("mp", &id, 1, Bytes::from_static(b"second"))
        .await?;
    s.complete_multipart("mp", &id, &[p], &PutMode::Overwrite)
        .await?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        Bytes::from_static(b"second"),
        "body"
    );
    passed()
}

pub async fn multipart_keeps_metadata(s: Store) -> CaseResult {
    let caps = s.capabilities().clone();
    let mut opts = PutOptions::default();
    if caps.content_type {
        opts = opts.with_content_type("video/mp4");
    }
    if caps.user_metadata {
        opts = opts.with_metadata("source", "camera-7");
    }
    let id = s.create_multipart("mp", &opts).await?;
    let p = s.put_part("mp", &id, 1, data(64, 30)).await?;
    s.complete_multipart("mp", &id, &[p], &PutMode::Overwrite)
        .await?;
    let head = s.head("mp").await?;
    ensure_eq!(head.content_type, opts.content_type, "content type");
    ensure_eq!(head.metadata, opts.metadata, "metadata");
    passed()
}

pub async fn multipart_completion_adds_metadata(s: Store) -> CaseResult {
    let opts = if s.capabilities().user_metadata {
        PutOptions::default().with_metadata("set-at", "create")
    } else {
        PutOptions::default()
    };
    let id = s.create_multipart("mp", &opts).await?;
    let p = s.put_part("mp", &id, 1, data(100, 31)).await?;
    let k = s.full_key(Op::CompleteMultipart, "mp")?;
    let mut extra = crate::Metadata::new();
    extra.insert("added-at".into(), "completion".into());
    let r = s
        .backend()
        .complete_multipart_with_metadata(&k, &id, &[p], &PutMode::Overwrite, &extra)
        .await;
    if !s.capabilities().complete_metadata || !s.capabilities().user_metadata {
        s.abort_multipart("mp", &id).await?;
        return not_applicable(r, "complete_metadata");
    }
    r?;
    let head = s.head("mp").await?;
    ensure_eq!(
        head.metadata.get("added-at").map(String::as_str),
        Some("completion"),
        "metadata added at completion"
    );
    ensure_eq!(
        head.metadata.get("set-at").map(String::as_str),
        Some("create"),
        "metadata from creation"
    );
    passed()
}

async fn one_part_upload(s: &Store, key: &str, body: Bytes) -> R<(crate::UploadId, Vec<PartInfo>)> {
    let id = s.create_multipart(key, &PutOptions::default()).await?;
    let p = s.put_part(key, &id, 1, body).await?;
    Ok((id, vec![p]))
}

pub async fn multipart_create_mode(s: Store) -> CaseResult {
    let (id, parts) = one_part_upload(&s, "mp", Bytes::from_static(b"winner")).await?;
    if !s.capabilities().multipart_modes.create {
        let r = s
            .complete_multipart("mp", &id, &parts, &PutMode::Create)
            .await;
        s.abort_multipart("mp", &id).await?;
        return not_applicable(r, "multipart_modes.create");
    }
    s.complete_multipart("mp", &id, &parts, &PutMode::Create)
        .await?;
    let (id, parts) = one_part_upload(&s, "mp", Bytes::from_static(b"loser")).await?;
    expect_kind(
        s.complete_multipart("mp", &id, &parts, &PutMode::Create)
            .await,
        ErrorKind::AlreadyExists,
        "create-mode completion over an existing object",
    )?;
    s.abort_multipart("mp", &id).await?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        Bytes::from_static(b"winner"),
        "body kept"
    );
    passed()
}

pub async fn multipart_if_match_mode(s: Store) -> CaseResult {
    let stale = s.put("mp", "v1").await?.etag.unwrap_or_default();
    let current = s.put("mp", "v2").await?.etag.unwrap_or_default();
    let (id, parts) = one_part_upload(&s, "mp", Bytes::from_static(b"v3")).await?;
    if !s.capabilities().multipart_modes.if_match {
        let r = s
            .complete_multipart("mp", &id, &parts, &PutMode::IfMatch(current))
            .await;
        s.abort_multipart("mp", &id).await?;
        return not_applicable(r, "multipart_modes.if_match");
    }
    expect_kind(
        s.complete_multipart("mp", &id, &parts, &PutMode::IfMatch(stale))
            .await,
        ErrorKind::PreconditionFailed,
        "if-match completion with a stale ETag",
    )?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        Bytes::from_static(b"v2"),
        "body kept"
    );
    s.complete_multipart("mp", &id, &parts, &PutMode::IfMatch(current))
        .await?;
    ensure_eq!(
        body_of(&s, "mp").await?,
        Bytes::from_static(b"v3"),
        "body replaced"
    );
    passed()
}

pub async fn multipart_listing(s: Store) -> CaseResult {
    if !s.capabilities().multipart_listing {
        return not_applicable(s.list_multipart_uploads(None).await, "multipart_listing");
    }
    let a = s.create_multipart("up/a", &PutOptions::default()).await?;
    let b = s.create_multipart("up/b", &PutOptions::default()).await?;
    let other = s.create_multipart("other", &PutOptions::default()).await?;
    let listed = s.list_multipart_uploads(Some("up/")).await?;
    let mut got: Vec<_> = listed
        .iter()
        .map(|u| (u.key.as_str().to_string(), u.upload_id.clone()))
        .collect();
    got.sort();
    ensure_eq!(
        got,
        vec![
            ("up/a".to_string(), a.clone()),
            ("up/b".to_string(), b.clone())
        ],
        "uploads under up/"
    );
    s.abort_multipart("up/a", &a).await?;
    s.abort_multipart("up/b", &b).await?;
    s.abort_multipart("other", &other).await?;
    ensure!(
        s.list_multipart_uploads(None).await?.is_empty(),
        "uploads left after abort"
    );
    passed()
}

pub async fn multipart_unknown_upload_is_not_found(s: Store) -> CaseResult {
    let (real, _) = one_part_upload(&s, "mp", Bytes::from_static(b"x")).await?;
    let bogus = crate::UploadId("0123456789abcdef0123456789abcdef".into());
    expect_kind(
        s.put_part("mp", &bogus, 1, "x").await,
        ErrorKind::NotFound,
        "put part of an unknown upload",
    )?;
    expect_kind(
        s.put_part("other-key", &real, 1, "x").await,
        ErrorKind::NotFound,
        "put part under another key",
    )?;
    let traversal = crate::UploadId("../../escape".into());
    expect_kind(
        s.put_part("mp", &traversal, 1, "x").await,
        ErrorKind::NotFound,
        "put part with a path-like id",
    )?;
    expect_kind(
        s.put_part("mp", &real, 0, "x").await,
        ErrorKind::InvalidInput,
        "part number 0",
    )?;
    s.abort_multipart("mp", &real).await?;
    passed()
}

pub async fn presign_get_and_put(s: Store) -> CaseResult {
    s.put("p", "signed").await?;
    if !s.capabilities().presign {
        return not_applicable(
            s.presign(PresignMethod::Get, "p", Duration::from_secs(60))
                .await,
            "presign",
        );
    }
    let too_long = s.capabilities().max_presign_expiry + Duration::from_secs(1);
    expect_kind(
        s.presign(PresignMethod::Get, "p", too_long).await,
        ErrorKind::InvalidInput,
        "presign past the maximum expiry",
    )?;
    // A client with no credentials at all.
    let http = reqwest::Client::new();
    let fail = |what: &str, e: reqwest::Error| Failure(format!("{what}: {}", e.without_url()));
    let send = |req: &crate::PresignedRequest, url: url::Url, body: Option<&'static str>| {
        let mut r = match req.method {
            PresignMethod::Get => http.get(url),
            PresignMethod::Put => http.put(url),
        };
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        r.send()
    };
    let signed = s
        .presign(PresignMethod::Get, "p", Duration::from_secs(300))
        .await?;
    let resp = send(&signed, signed.url.clone(), None)
        .await
        .map_err(|e| fail("presigned GET", e))?;
    ensure_eq!(resp.status().as_u16(), 200, "status of a presigned GET");
    let body = resp
        .bytes()
        .await
        .map_err(|e| fail("presigned GET body", e))?;
    ensure_eq!(
        body,
        Bytes::from_static(b"signed"),
        "body of a presigned GET"
    );

    // The same signature for another object must be refused.
    s.put("q", "other").await?;
    let mut tampered = signed.url.clone();
    let path = tampered.path().to_string();
    ensure!(path.ends_with("/p"), "unexpected presigned path {path}");
    tampered.set_path(&format!("{}q", &path[..path.len() - 1]));
    let resp = send(&signed, tampered, None)
        .await
        .map_err(|e| fail("tampered GET", e))?;
    let status = resp.status().as_u16();
    ensure!(
        status == 403 || status == 401,
        "a tampered URL answered {status}"
    );

    let signed_put = s
        .presign(PresignMethod::Put, "uploaded", Duration::from_secs(300))
        .await?;
    let resp = send(
        &signed_put,
        signed_put.url.clone(),
        Some("via presigned PUT"),
    )
    .await
    .map_err(|e| fail("presigned PUT", e))?;
    ensure!(
        resp.status().is_success(),
        "a presigned PUT answered {}",
        resp.status()
    );
    ensure_eq!(
        body_of(&s, "uploaded").await?,
        Bytes::from_static(b"via presigned PUT"),
        "object written by a presigned PUT"
    );
    passed()
}

pub async fn object_and_children(s: Store) -> CaseResult {
    s.put("node", "file").await?;
    if !s.capabilities().object_and_children {
        let r = s.put("node/child", "x").await;
        ensure_eq!(
            body_of(&s, "node").await?,
            Bytes::from_static(b"file"),
            "object kept after the refused write"
        );
        s.put("other/child", "x").await?;
        let r2 = s.put("other", "x").await;
        ensure_eq!(
            body_of(&s, "other/child").await?,
            Bytes::from_static(b"x"),
            "child kept after the refused write"
        );
        expect_kind(r2, ErrorKind::Unsupported, "object over existing children")?;
        return not_applicable(r, "object_and_children");
    }
    s.put("node/child", "child").await?;
    ensure_eq!(
        keys(&s, None).await?,
        vec!["node".to_string(), "node/child".to_string()],
        "keys"
    );
    let l = s.list_with_delimiter(None).await?;
    ensure_eq!(
        l.common_prefixes,
        vec!["node/".to_string()],
        "common prefixes"
    );
    ensure_eq!(l.objects.len(), 1, "objects at the top");
    passed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_is_deterministic_and_seeded() {
        assert_eq!(super::data(100, 1), super::data(100, 1));
        assert_ne!(super::data(100, 1), super::data(100, 2));
        assert_eq!(super::data(13, 1).len(), 13);
    }
}

mod attributes;
mod keys;
pub use attributes::*;
pub use keys::*;
