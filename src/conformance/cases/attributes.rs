//! Cases of the attribute contract ([`crate::attributes`]): the same rules, checked before
//! any backend is called, on every backend; values that HTTP cannot carry round-trip; the
//! library's records stay out of user metadata.

use std::time::Duration;

use super::*;
use crate::attributes::{MAX_USER_METADATA_BYTES, metadata_wire_size};
use crate::object::{CopyMode, Metadata};

/// Values that survive no HTTP header as they are.
const AWKWARD_VALUES: &[(&str, &str)] = &[
    ("accented", "Zürich café"),
    ("cjk", "日本語のテキスト"),
    ("emoji", "🦀 crab"),
    ("leading", " leading space"),
    ("trailing", "trailing space "),
    ("encoded-look", "=?UTF-8?B?aGk=?="),
    ("newline", "line\r\nbreak"),
    ("tab", "tab\tinside"),
    ("empty", ""),
];

fn awkward_metadata() -> Metadata {
    AWKWARD_VALUES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Expects `InvalidInput` from every way of writing with `opts`, and no object.
async fn refused_everywhere(s: &Store, opts: &PutOptions, what: &str) -> R<()> {
    expect_kind(
        s.put_opts("refused", "x", opts).await,
        ErrorKind::InvalidInput,
        &format!("put with {what}"),
    )?;
    expect_kind(
        s.create_multipart("refused", opts).await,
        ErrorKind::InvalidInput,
        &format!("create_multipart with {what}"),
    )?;
    expect_kind(
        s.writer("refused", opts).map(|_| ()),
        ErrorKind::InvalidInput,
        &format!("writer with {what}"),
    )?;
    let chunks = futures::stream::iter([Ok(Bytes::from_static(b"x"))]);
    expect_kind(
        s.upload_stream("refused", chunks, opts).await,
        ErrorKind::InvalidInput,
        &format!("upload_stream with {what}"),
    )?;
    expect_kind(
        s.head("refused").await,
        ErrorKind::NotFound,
        &format!("head after refused writes with {what}"),
    )?;
    Ok(())
}

pub async fn metadata_values_round_trip_exactly(s: Store) -> CaseResult {
    let opts = PutOptions {
        metadata: awkward_metadata(),
        ..Default::default()
    };
    if !s.capabilities().user_metadata {
        return not_applicable(s.put_opts("m", "x", &opts).await, "user_metadata");
    }
    s.put_opts("m", "x", &opts).await?;
    ensure_eq!(
        s.head("m").await?.metadata,
        opts.metadata,
        "metadata from head"
    );
    ensure_eq!(
        s.get("m").await?.meta.metadata,
        opts.metadata,
        "metadata from get"
    );
    // Through a multipart upload and through a server-side copy as well.
    let id = s.create_multipart("mp", &opts).await?;
    let p = s.put_part("mp", &id, 1, data(32, 40)).await?;
    s.complete_multipart("mp", &id, &[p], &PutMode::Overwrite)
        .await?;
    ensure_eq!(
        s.head("mp").await?.metadata,
        opts.metadata,
        "metadata of a multipart upload"
    );
    s.copy("m", "copied").await?;
    ensure_eq!(
        s.head("copied").await?.metadata,
        opts.metadata,
        "metadata of a copy"
    );
    passed()
}

pub async fn metadata_names_follow_the_rule(s: Store) -> CaseResult {
    for name in ["Upper", "with space", "", "ünï", "colon:name", "new\nline"] {
        let opts = PutOptions::default().with_metadata(name, "v");
        refused_everywhere(&s, &opts, &format!("metadata name {name:?}")).await?;
    }
    passed()
}

pub async fn reserved_metadata_names_are_invalid(s: Store) -> CaseResult {
    for name in [
        "cloudstore-crc32c",
        "cloudstore-write-id",
        "cloudstore-source-etag",
        "cloudstore-anything",
    ] {
        let opts = PutOptions::default().with_metadata(name, "v");
        refused_everywhere(&s, &opts, &format!("reserved name {name:?}")).await?;
    }
    passed()
}

/// Metadata of exactly `size` wire bytes in one value.
fn metadata_of_size(size: usize) -> Metadata {
    let mut md = Metadata::new();
    md.insert("n".into(), "v".repeat(size - 1));
    md
}

pub async fn metadata_size_limit(s: Store) -> CaseResult {
    let at_limit = PutOptions {
        metadata: metadata_of_size(MAX_USER_METADATA_BYTES),
        ..Default::default()
    };
    let past = PutOptions {
        metadata: metadata_of_size(MAX_USER_METADATA_BYTES + 1),
        ..Default::default()
    };
    refused_everywhere(&s, &past, "one byte too much metadata").await?;
    // Non-ASCII values count as they travel: 700 two-byte characters fit in UTF-8 but not
    // on the wire.
    let wide = PutOptions::default().with_metadata("w", "é".repeat(700));
    ensure!(
        metadata_wire_size(&wide.metadata) > MAX_USER_METADATA_BYTES,
        "the wide value should exceed the limit on the wire"
    );
    refused_everywhere(&s, &wide, "wide non-ASCII metadata").await?;
    if !s.capabilities().user_metadata {
        return not_applicable(s.put_opts("m", "x", &at_limit).await, "user_metadata");
    }
    s.put_opts("m", "x", &at_limit).await?;
    ensure_eq!(
        s.head("m").await?.metadata,
        at_limit.metadata,
        "metadata at the limit"
    );
    // At the limit, the records the library adds still fit (a conditional write's id,
    // the engine's CRC32C).
    if s.capabilities().put_modes.create {
        s.put_opts(
            "created",
            "x",
            &PutOptions {
                mode: PutMode::Create,
                ..at_limit.clone()
            },
        )
        .await?;
    }
    let body = data(64, 41);
    let chunks = futures::stream::iter([Ok(body.clone())]);
    s.upload_stream("streamed", chunks, &at_limit).await?;
    let head = s.head("streamed").await?;
    ensure_eq!(head.metadata, at_limit.metadata, "metadata of an upload");
    ensure_eq!(s.get_bytes("streamed").await?, body, "body of an upload");
    passed()
}

pub async fn library_records_stay_out_of_user_metadata(s: Store) -> CaseResult {
    let modes = s.capabilities().put_modes;
    let mut opts = PutOptions::default();
    if modes.create {
        opts.mode = PutMode::Create;
    }
    if s.capabilities().user_metadata {
        opts = opts.with_metadata("owner", "team-data");
    }
    let body = data(1000, 42);
    let put = s.put_opts("created", body.clone(), &opts).await?;
    ensure_eq!(put.metadata, opts.metadata, "metadata returned by a create");
    let head = s.head("created").await?;
    ensure_eq!(
        head.metadata,
        opts.metadata,
        "metadata of a conditional put"
    );
    if modes.if_match {
        let replaced = s
            .put_opts(
                "created",
                body.clone(),
                &PutOptions {
                    mode: PutMode::IfMatch(head.etag.clone().unwrap_or_default()),
                    ..opts.clone()
                },
            )
            .await?;
        ensure_eq!(
            s.head("created").await?.metadata,
            opts.metadata,
            "metadata after an if-match put"
        );
        ensure!(replaced.etag.is_some(), "no ETag from the if-match put");
    }
    let opts = PutOptions {
        mode: PutMode::Overwrite,
        ..opts
    };
    // The engine records the CRC32C where the backend stores metadata: a typed field.
    let mut up = s.writer("uploaded", &opts)?;
    up.write_bytes(body.clone()).await?;
    up.finish().await?;
    let head = s.head("uploaded").await?;
    ensure_eq!(head.metadata, opts.metadata, "metadata of an engine upload");
    if s.capabilities().user_metadata {
        let mut crc = crate::transfer::Crc32c::new();
        crc.update(&body);
        let want = crc.value();
        ensure_eq!(head.crc32c, Some(want), "the recorded CRC32C");
    }
    for m in s.list_all(None).await? {
        ensure!(
            !m.metadata.keys().any(|k| crate::attributes::is_reserved(k)),
            "a listing shows the library's records: {m:?}"
        );
    }
    passed()
}

pub async fn content_type_follows_the_rule(s: Store) -> CaseResult {
    for ct in [
        "",
        "text/plain\r\nx-injected: 1",
        " text/plain",
        "text/plain ",
        "tëxt/plain",
    ] {
        let opts = PutOptions::default().with_content_type(ct);
        refused_everywhere(&s, &opts, &format!("content type {ct:?}")).await?;
    }
    let long = format!("application/x-{}", "a".repeat(2000));
    refused_everywhere(
        &s,
        &PutOptions::default().with_content_type(long),
        "a content type of 2 KiB",
    )
    .await?;
    passed()
}

pub async fn condition_etags_follow_the_rule(s: Store) -> CaseResult {
    let first = s.put("k", "original").await?;
    for etag in ["", "*", "\"a\r\nb\"", " \"x\"", "\"ü\""] {
        let what = format!("ETag {etag:?}");
        expect_kind(
            s.put_opts("k", "replaced", &PutOptions::if_match(etag))
                .await,
            ErrorKind::InvalidInput,
            &format!("put if-match {what}"),
        )?;
        let get = GetOptions {
            if_match: Some(etag.to_string()),
            ..Default::default()
        };
        expect_kind(
            s.get_opts("k", &get).await.map(|r| r.meta),
            ErrorKind::InvalidInput,
            &format!("get if-match {what}"),
        )?;
        let get = GetOptions {
            if_none_match: Some(etag.to_string()),
            ..Default::default()
        };
        expect_kind(
            s.get_opts("k", &get).await.map(|r| r.meta),
            ErrorKind::InvalidInput,
            &format!("get if-none-match {what}"),
        )?;
        expect_kind(
            s.copy_mode("k", "k2", CopyMode::IfMatch(etag.to_string()))
                .await,
            ErrorKind::InvalidInput,
            &format!("copy if-match {what}"),
        )?;
        let id = s.create_multipart("mp", &PutOptions::default()).await?;
        let p = s.put_part("mp", &id, 1, data(16, 43)).await?;
        let r = s
            .complete_multipart("mp", &id, &[p], &PutMode::IfMatch(etag.to_string()))
            .await;
        s.abort_multipart("mp", &id).await?;
        expect_kind(
            r,
            ErrorKind::InvalidInput,
            &format!("complete if-match {what}"),
        )?;
    }
    ensure_eq!(
        body_of(&s, "k").await?,
        Bytes::from_static(b"original"),
        "body after refused conditional writes"
    );
    ensure_eq!(
        s.head("k").await?.etag,
        first.etag,
        "ETag after refused writes"
    );
    // Well-formed ETags that name no version are a failed condition, never an
    // authentication error.
    if s.capabilities().put_modes.if_match {
        for etag in ["\"no such version\"", "W/\"weak\"", "\"0x8DC000000000000\""] {
            expect_kind(
                s.put_opts("k", "replaced", &PutOptions::if_match(etag))
                    .await,
                ErrorKind::PreconditionFailed,
                &format!("put if-match {etag:?}"),
            )?;
        }
    }
    passed()
}

pub async fn presign_zero_expiry_is_invalid(s: Store) -> CaseResult {
    s.put("p", "x").await?;
    for method in [PresignMethod::Get, PresignMethod::Put] {
        expect_kind(
            s.presign(method, "p", Duration::ZERO).await,
            ErrorKind::InvalidInput,
            &format!("presign {method:?} with an expiry of zero"),
        )?;
    }
    passed()
}
