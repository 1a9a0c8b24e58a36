//! Amazon S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph, R2, ...), over
//! `object_store`'s `AmazonS3`.
//!
//! Configuration comes from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...) and from
//! options, which take precedence and accept every `object_store` S3 configuration key
//! (`endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`,
//! `virtual_hosted_style_request`, `timeout`, `connect_timeout`, ...), plus `max_retries`
//! (retries after the first attempt, default 3, by cloudstore's retry layer).
//! An unknown option is an error.
//!
//! Over `https` (and so on AWS by default) payloads are sent unsigned (`UNSIGNED-PAYLOAD`):
//! TLS protects them in transit and the transfer engine's CRC32C covers them end to end,
//! which saves the SHA-256 pass SigV4 otherwise makes over every byte (about 0.7 CPU-s/GB).
//! Set `unsigned_payload=false` to sign payloads anyway; over plain `http` they are signed
//! unless `unsigned_payload=true`.
//!
//! Every upload carries a CRC64-NVME (`checksum_algorithm=crc64nvme`, the default) that S3
//! checks per part and keeps as the object's full-object checksum; downloads verify it.
//! For an S3-compatible store that lacks it, `checksum_algorithm=none` turns it off (the
//! transfer engine's CRC32C metadata still covers single PUTs and file uploads).
//!
//! Two operations `object_store` does not expose are sent as requests presigned by its own
//! signer: conditional multipart completion (`If-None-Match: *` / `If-Match` on
//! CompleteMultipartUpload) and listing in-progress uploads (ListMultipartUploads). Copy
//! only-if-absent sends `If-None-Match: *` on CopyObject unless the option
//! `copy_if_not_exists` says otherwise.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::signer::{SignedUrlOptions, Signer};

use super::object_store_core::{Core, contiguous, map_error, path, send_signed};
use super::{Backend, Capabilities};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, MultipartUploadInfo, ObjectMeta,
    PartInfo, PartNumber, Payload, PresignMethod, PutMode, PutOptions, UploadId,
};

const NAME: &str = "s3";
/// How long the presigned requests this backend sends to itself stay valid.
const SELF_SIGNED_TTL: Duration = Duration::from_secs(300);

/// A bucket on S3 or an S3-compatible store.
#[derive(Clone)]
pub struct S3Backend {
    core: Core,
    s3: Arc<AmazonS3>,
    http: reqwest::Client,
    caps: Capabilities,
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    /// Copies of larger objects go part by part (UploadPartCopy), in parts of this size.
    copy_part: u64,
}

/// CopyObject copies at most 5 GiB in one request.
const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

impl fmt::Debug for S3Backend {
    // Never the credentials: only where the data lives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::config::redact_url),
            )
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// S3's limits: parts of 5 MiB to 5 GiB, at most 10,000; objects up to 5 TiB.
pub fn s3_capabilities() -> Capabilities {
    Capabilities {
        presign: true,
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        // object_store's copy cannot carry If-Match for the destination.
        copy_if_match: false,
        // CompleteMultipartUpload takes no metadata: it is fixed at creation.
        complete_metadata: false,
        // object_store's paths cannot carry keys that are not plain paths.
        raw_keys: false,
        ..Capabilities::s3_like()
    }
}

fn config_error(message: String) -> Error {
    Error::invalid_input(Op::Configure, NAME, message)
}

impl S3Backend {
    /// A backend for `bucket`, configured from the environment and then `options`.
    pub fn new(bucket: &str, options: &StoreOptions) -> Result<S3Backend> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut copy_mode_given = false;
        let mut native_checksum = true;
        let mut copy_part = MAX_SINGLE_COPY;
        if let Some(retry) = super::object_store_core::retry_config(NAME, options)? {
            builder = builder.with_retry(retry);
        }
        for name in options
            .names()
            .filter(|n| !super::object_store_core::RETRY_OPTIONS.contains(n))
        {
            if name == "multipart_copy_threshold" {
                // Bytes above which server-side copies go part by part (default 5 GiB,
                // CopyObject's limit; at least 5 MiB, S3's smallest part).
                let v = options.get(name).unwrap_or_default();
                copy_part = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (5 << 20..=MAX_SINGLE_COPY).contains(n))
                    .ok_or_else(|| {
                        config_error(format!(
                            "option '{name}' takes a byte count from 5242880 to 5368709120, not '{v}'"
                        ))
                    })?;
                continue;
            }
            let key: AmazonS3ConfigKey = name
                .parse()
                .map_err(|_| config_error(format!("unknown option '{name}' for s3://")))?;
            copy_mode_given |= matches!(key, AmazonS3ConfigKey::CopyIfNotExists);
            if matches!(key, AmazonS3ConfigKey::Checksum) {
                let value = options.get(name).unwrap_or_default();
                if value.eq_ignore_ascii_case("none") {
                    // For S3-compatible stores without CRC64-NVME support.
                    native_checksum = false;
                    continue;
                }
                if !value.eq_ignore_ascii_case("crc64nvme") {
                    // Downloads verify S3's CRC64-NVME; another algorithm would go unchecked.
                    return Err(config_error(format!(
                        "option '{name}' takes crc64nvme (the default, verified by downloads) or none"
                    )));
                }
            }
            builder = builder.with_config(key, options.get(name).unwrap_or_default());
        }
        // Over TLS the payload needs no SHA-256 signature (TLS protects it, and the transfer
        // engine's CRC32C covers it end to end): sign headers only, unless told otherwise.
        let unsigned_given = options.get("unsigned_payload").is_some()
            || options.get("aws_unsigned_payload").is_some()
            || std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_some();
        let endpoint_is_tls = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_none_or(|e| e.starts_with("https://"));
        if !unsigned_given && endpoint_is_tls {
            builder = builder.with_unsigned_payload(true);
        }
        // Every upload carries a CRC64-NVME that S3 checks and keeps as the object's
        // full-object checksum, which downloads verify: parts and streams included, where
        // metadata could not be set after the upload started.
        if native_checksum {
            builder = builder.with_config(AmazonS3ConfigKey::Checksum, "crc64nvme");
        }
        if !copy_mode_given {
            builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Header(
                "If-None-Match".into(),
                "*".into(),
            ));
        }
        Ok(Self::from_builder(builder)?.with_copy_part(copy_part))
    }

    fn with_copy_part(mut self, bytes: u64) -> Self {
        self.copy_part = bytes;
        self
    }

    /// A backend from an `object_store` builder, for settings options cannot express.
    pub fn from_builder(builder: AmazonS3Builder) -> Result<S3Backend> {
        let bucket = builder
            .get_config_value(&AmazonS3ConfigKey::Bucket)
            .unwrap_or_default();
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        super::object_store_core::check_plain_http(
            NAME,
            endpoint.as_deref(),
            super::object_store_core::truthy(builder.get_config_value(&AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ))),
        )?;
        let region = builder.get_config_value(&AmazonS3ConfigKey::Region);
        let timeout = builder.get_config_value(&AmazonS3ConfigKey::Client(
            object_store::ClientConfigKey::Timeout,
        ));
        let s3 = Arc::new(
            builder
                .build()
                .map_err(|e| map_error(NAME, Op::Configure, &bucket, e))?,
        );
        Ok(S3Backend {
            core: Core {
                name: NAME,
                escape_metadata_names: false,
                store: s3.clone(),
                multipart: s3.clone(),
                signer: s3.clone(),
                lister: s3.clone(),
            },
            s3,
            http: super::object_store_core::http_client(timeout),
            caps: s3_capabilities(),
            bucket,
            endpoint,
            region,
            copy_part: MAX_SINGLE_COPY,
        })
    }

    /// Declares different capabilities (e.g. an S3-compatible store without conditional
    /// multipart completion). Declared-absent features answer `Unsupported`.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// CompleteMultipartUpload with a condition (or with part numbers that have gaps), sent
    /// as a request presigned with the condition header bound to the signature.
    async fn complete_signed(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        let p = path(op, NAME, key.as_str())?;
        crate::attributes::check_mode(mode)
            .map_err(|m| Error::invalid_input(op, NAME, m).with_key(key.as_str()))?;
        let header = match mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some((http::header::IF_NONE_MATCH, "*".to_string())),
            PutMode::IfMatch(etag) => Some((http::header::IF_MATCH, etag.clone())),
        };
        let mut opts = SignedUrlOptions::new().with_query([("uploadId", upload.0.as_str())]);
        if let Some((name, value)) = &header {
            let v = http::HeaderValue::from_str(value).map_err(|_| {
                Error::invalid_input(op, NAME, "the ETag is not a valid header value")
                    .with_key(key.as_str())
            })?;
            opts = opts.with_signed_header(name.clone(), v);
        }
        let url = self
            .s3
            .signed_url_opts(http::Method::POST, &p, SELF_SIGNED_TTL, &opts)
            .await
            .map_err(|e| map_error(NAME, op, key.as_str(), e))?;
        let mut xml = String::from("<CompleteMultipartUpload>");
        for part in parts {
            // With checksums on, object_store's part tag is a small XML record of the ETag
            // and the part's checksum; S3 needs both back.
            let (etag, crc) = match quick_xml::de::from_str::<PartMetadataXml>(&part.etag) {
                Ok(m) => (m.e_tag, m.checksum_crc64nvme),
                Err(_) => (part.etag.clone(), None),
            };
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                part.number,
                xml_escape(&etag)
            ));
            if let Some(c) = crc {
                xml.push_str(&format!(
                    "<ChecksumCRC64NVME>{}</ChecksumCRC64NVME>",
                    xml_escape(&c)
                ));
            }
            xml.push_str("</Part>");
        }
        xml.push_str("</CompleteMultipartUpload>");
        let mut req = self.http.post(url).body(xml);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let (_, body) = match send_signed(NAME, op, key.as_str(), req).await {
            // If-None-Match: * failing means the object exists.
            Err(e) if *mode == PutMode::Create && e.kind() == ErrorKind::PreconditionFailed => {
                return Err(Error::already_exists(op, NAME, key.as_str()));
            }
            Err(e)
                if matches!(mode, PutMode::IfMatch(_))
                    && e.kind() == ErrorKind::NotFound
                    && e.message().contains("NoSuchKey") =>
            {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    op,
                    NAME,
                    "no object exists, the completion required an ETag",
                )
                .with_key(key.as_str()));
            }
            other => other?,
        };
        error_in_200(op, key, &body, "completion failed")?;
        self.core.head(key).await
    }
}

impl S3Backend {
    /// A server-side copy part by part (UploadPartCopy), for objects CopyObject cannot
    /// take in one request: every part is pinned to the source's ETag, the completion
    /// carries the copy's condition, and any failure aborts the upload.
    async fn copy_by_parts(
        &self,
        from: &Key,
        to: &Key,
        mode: &CopyMode,
        source: &ObjectMeta,
    ) -> Result<ObjectMeta> {
        use futures::StreamExt;
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            content_type: source.content_type.clone(),
            metadata: source.metadata.clone(),
        };
        let part = self
            .copy_part
            .max(source.size.div_ceil(u64::from(self.caps.max_parts)));
        let id = self.core.create_multipart(to, &opts).await?;
        let ranges: Vec<(u32, std::ops::Range<u64>)> = (0..source.size.div_ceil(part))
            .map(|i| (i as u32 + 1, i * part..((i + 1) * part).min(source.size)))
            .collect();
        let copied: Vec<Result<PartInfo>> = futures::stream::iter(ranges)
            .map(|(n, r)| self.copy_part(from, to, &id, n, r, source.etag.as_deref()))
            .buffer_unordered(8)
            .collect()
            .await;
        let done: Result<Vec<PartInfo>> = copied.into_iter().collect();
        let completed = match done {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.number);
                self.complete_signed(to, &id, &parts, &mode.as_put_mode())
                    .await
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            let _ = self.core.abort(to, &id).await;
        }
        completed.map_err(|e| e.with_op(Op::Copy))
    }

    /// One UploadPartCopy, presigned with its copy headers bound to the signature.
    async fn copy_part(
        &self,
        from: &Key,
        to: &Key,
        id: &UploadId,
        number: u32,
        range: std::ops::Range<u64>,
        etag: Option<&str>,
    ) -> Result<PartInfo> {
        let op = Op::Copy;
        let p = path(op, NAME, to.as_str())?;
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let source = format!(
            "/{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(from.as_str(), KEEP)
        );
        let mut headers = vec![
            ("x-amz-copy-source", source),
            (
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            ),
        ];
        if let Some(e) = etag {
            headers.push(("x-amz-copy-source-if-match", e.to_string()));
        }
        let number_text = number.to_string();
        let mut opts = SignedUrlOptions::new().with_query([
            ("partNumber", number_text.as_str()),
            ("uploadId", id.0.as_str()),
        ]);
        for (name, value) in &headers {
            let v = http::HeaderValue::from_str(value).map_err(|_| {
                Error::invalid_input(op, NAME, "the copy source is not a valid header value")
                    .with_key(from.as_str())
            })?;
            opts = opts.with_signed_header(http::HeaderName::from_static(name), v);
        }
        let url = self
            .s3
            .signed_url_opts(http::Method::PUT, &p, SELF_SIGNED_TTL, &opts)
            .await
            .map_err(|e| map_error(NAME, op, to.as_str(), e))?;
        let mut req = self.http.put(url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let (_, body) = send_signed(NAME, op, to.as_str(), req).await?;
        error_in_200(op, to, &body, "part copy failed")?;
        let text = String::from_utf8_lossy(&body);
        let result: CopyPartResultXml = quick_xml::de::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                op,
                NAME,
                format!("an unreadable UploadPartCopy answer: {e}"),
            )
            .with_key(to.as_str())
        })?;
        // In the form object_store gives part tags, so that completion sends the
        // part's checksum back where the upload has one.
        let etag = match result.checksum_crc64nvme {
            Some(c) => format!(
                "<PartMetadata><e_tag>{}</e_tag><checksum_crc64nvme>{}</checksum_crc64nvme></PartMetadata>",
                xml_escape(&result.e_tag),
                xml_escape(&c)
            ),
            None => result.e_tag,
        };
        Ok(PartInfo {
            number: PartNumber::new(number)?,
            etag,
            size: range.end - range.start,
        })
    }
}

/// S3 may answer CompleteMultipartUpload and UploadPartCopy with a 200 whose body is an
/// error document: that is a failure (retryable unless its code says otherwise).
fn error_in_200(op: Op, key: &Key, body: &[u8], what: &str) -> Result<()> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("<Error>") {
        return Ok(());
    }
    let (kind, retryable) = super::http_status::kind_for_status(200, &text);
    Err(Error::new(
        kind,
        op,
        NAME,
        format!("{what}{}", super::http_status::provider_code(&text)),
    )
    .with_key(key.as_str())
    .with_retryable(retryable || kind == ErrorKind::Other))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopyPartResultXml {
    e_tag: String,
    #[serde(rename = "ChecksumCRC64NVME")]
    checksum_crc64nvme: Option<String>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// object_store's part tag when checksums are on.
#[derive(serde::Deserialize)]
#[serde(rename = "PartMetadata")]
struct PartMetadataXml {
    e_tag: String,
    checksum_crc64nvme: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsXml {
    #[serde(default)]
    upload: Vec<UploadXml>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        super::checks::check_mode(NAME, Op::Put, key, &self.caps.put_modes, &opts.mode)?;
        super::checks::check_key(NAME, Op::Put, key, &self.caps)?;
        super::checks::check_object_size(NAME, Op::Put, key, &self.caps, data.len())?;
        self.core.put(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        self.core.get(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.core.head(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.core.delete(key).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let limit = super::listing::limit(req, self.caps.max_list_page);
        self.core.list(req, limit, req.token.clone()).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        super::checks::check_key(NAME, Op::Copy, to, &self.caps)?;
        super::checks::check_copy_mode(NAME, to, &self.caps, &mode)?;
        let source = self
            .core
            .head(from)
            .await
            .map_err(|e| e.with_op(Op::Copy))?;
        if source.size > self.copy_part {
            return self.copy_by_parts(from, to, &mode, &source).await;
        }
        self.core.copy(from, to, mode).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        super::checks::check_key(NAME, Op::CreateMultipart, key, &self.caps)?;
        self.core.create_multipart(key, opts).await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        super::checks::check_part(NAME, key, &self.caps, part, data.len())?;
        self.core.put_part(key, upload, part, data).await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &crate::object::Metadata,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        // S3 fixes metadata when the upload is created: none can be added here.
        super::checks::check_completion_metadata(NAME, key, &self.caps, metadata)?;
        super::checks::check_mode(NAME, op, key, &self.caps.multipart_modes, mode)?;
        self.core.check_upload_id(op, key, upload)?;
        if parts.is_empty() {
            return Err(
                Error::invalid_input(op, NAME, "no parts to complete").with_key(key.as_str())
            );
        }
        if *mode == PutMode::Overwrite && contiguous(parts) {
            self.core.complete_contiguous(key, upload, parts).await
        } else {
            self.complete_signed(key, upload, parts, mode).await
        }
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.core.abort(key, upload).await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<crate::object::NativeChecksum>> {
        // A HEAD asking for the checksum (object_store's HEAD does not), presigned with the
        // mode header bound to the signature.
        let op = Op::Head;
        let p = path(op, NAME, key.as_str())?;
        let opts = SignedUrlOptions::new().with_signed_header(
            http::HeaderName::from_static("x-amz-checksum-mode"),
            http::HeaderValue::from_static("ENABLED"),
        );
        let url = self
            .s3
            .signed_url_opts(http::Method::HEAD, &p, SELF_SIGNED_TTL, &opts)
            .await
            .map_err(|e| map_error(NAME, op, key.as_str(), e))?;
        let req = self.http.head(url).header("x-amz-checksum-mode", "ENABLED");
        let (headers, _) = send_signed(NAME, op, key.as_str(), req).await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // Only a full-object checksum describes the bytes a download sees.
        if header("x-amz-checksum-type").is_some_and(|t| !t.eq_ignore_ascii_case("FULL_OBJECT")) {
            return Ok(None);
        }
        let value = header("x-amz-checksum-crc64nvme").and_then(|v| {
            use base64::Engine;
            let raw = base64::prelude::BASE64_STANDARD.decode(v).ok()?;
            Some(u64::from_be_bytes(raw.try_into().ok()?))
        });
        Ok(value.map(crate::object::NativeChecksum::Crc64Nvme))
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let op = Op::ListMultipart;
        let bucket_root = object_store::path::Path::default();
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("uploads".to_string(), String::new()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if let Some((k, u)) = &markers {
                query.push(("key-marker".into(), k.clone()));
                query.push(("upload-id-marker".into(), u.clone()));
            }
            let opts = SignedUrlOptions::new().with_query(query);
            let url = self
                .s3
                .signed_url_opts(http::Method::GET, &bucket_root, SELF_SIGNED_TTL, &opts)
                .await
                .map_err(|e| map_error(NAME, op, prefix, e))?;
            let (_, body) = send_signed(NAME, op, prefix, self.http.get(url)).await?;
            let parsed: ListUploadsXml =
                quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                    Error::new(
                        ErrorKind::Other,
                        op,
                        NAME,
                        format!("unreadable ListMultipartUploads answer: {e}"),
                    )
                    .with_key(prefix)
                })?;
            for u in parsed.upload {
                let Ok(key) = Key::new(u.key) else { continue };
                let initiated = u
                    .initiated
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)));
                out.push(MultipartUploadInfo {
                    key,
                    upload_id: UploadId(u.upload_id),
                    initiated,
                });
            }
            match (
                parsed.is_truncated,
                parsed.next_key_marker,
                parsed.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => markers = Some((k, u)),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<crate::object::PresignedRequest> {
        if !self.caps.presign {
            return Err(Error::unsupported(
                Op::Presign,
                NAME,
                "presigned URLs are declared unsupported for this store",
            )
            .with_key(key.as_str()));
        }
        self.core.presign(method, key, expires_in).await
    }
}
