//! Amazon S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph, R2, ...), configured,
//! credentialed and signed by `object_store`.
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
//! Requests are built here for any key (`object_store`'s `Path` cannot carry `a//b`,
//! `dir/`, `/lead` or `./x`) and signed by `object_store`'s `AwsAuthorizer` with the
//! credentials of its providers, so configuration, credential chains and signing stay
//! `object_store`'s. Server-side encryption (`aws_server_side_encryption`,
//! `aws_sse_kms_key_id`, `aws_sse_bucket_key_enabled`) travels with every write; SSE-C and
//! S3 Express are not supported. Copy only-if-absent sends `If-None-Match: *` on
//! CopyObject; a store without it can be declared so with
//! [`Store::with_capabilities`](crate::Store::with_capabilities).

mod client;
mod presign;
mod xml;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use self::client::Client;
use super::wire::{self, Request, garbage, header, query, quoted};
use super::{Backend, Capabilities};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata,
    MultipartUploadInfo, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PutMode,
    PutOptions, UploadId,
};

const NAME: &str = "s3";

/// S3's names on the wire.
const WIRE: wire::Dialect = wire::Dialect {
    backend: NAME,
    content_type: "content-type",
    meta_prefix: "x-amz-meta-",
    version_header: "x-amz-version-id",
    name_out: as_is,
    name_in: as_is,
};

/// S3 takes metadata names as they are (it lowercases them; the contract allows no upper
/// case).
fn as_is(name: &str) -> String {
    name.to_string()
}

/// A bucket on S3 or an S3-compatible store.
#[derive(Clone)]
pub struct S3Backend {
    client: Client,
    caps: Capabilities,
    endpoint: Option<String>,
    /// Copies of larger objects go part by part (UploadPartCopy), in parts of this size.
    copy_part: u64,
}

/// CopyObject copies at most 5 GiB in one request.
const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

impl fmt::Debug for S3Backend {
    // Never the credentials: only where the data lives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.client.bucket)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::config::redact_url),
            )
            .field("region", &self.client.region)
            .finish_non_exhaustive()
    }
}

/// S3's limits: parts of 5 MiB to 5 GiB, at most 10,000; objects up to 5 TiB.
pub fn s3_capabilities() -> Capabilities {
    Capabilities {
        presign: true,
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        // CopyObject's If-Match tests the source, not the destination.
        copy_if_match: false,
        // CompleteMultipartUpload takes no metadata: it is fixed at creation.
        complete_metadata: false,
        // HEAD with x-amz-checksum-mode reads the stored CRC64-NVME.
        native_checksum: true,
        sends_crc64nvme: true,
        create_multipart_round_trip: true,
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
        let mut native_checksum = true;
        let mut copy_part = MAX_SINGLE_COPY;
        for name in options
            .names()
            .filter(|n| !super::object_store_core::RETRY_OPTIONS.contains(n))
        {
            let value = options.get(name).unwrap_or_default();
            if name == "multipart_copy_threshold" {
                // Bytes above which server-side copies go part by part (default 5 GiB,
                // CopyObject's limit; at least 5 MiB, S3's smallest part).
                copy_part = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (5 << 20..=MAX_SINGLE_COPY).contains(n))
                    .ok_or_else(|| {
                        config_error(format!(
                            "option '{name}' takes a byte count from 5242880 to 5368709120, not '{value}'"
                        ))
                    })?;
                continue;
            }
            let key: AmazonS3ConfigKey = name
                .parse()
                .map_err(|_| config_error(format!("unknown option '{name}' for s3://")))?;
            match key {
                AmazonS3ConfigKey::Checksum => {
                    if value.eq_ignore_ascii_case("none") {
                        // For S3-compatible stores without CRC64-NVME support.
                        native_checksum = false;
                        continue;
                    }
                    if !value.eq_ignore_ascii_case("crc64nvme") {
                        // Downloads verify S3's CRC64-NVME; another would go unchecked.
                        return Err(config_error(format!(
                            "option '{name}' takes crc64nvme (the default, verified by downloads) or none"
                        )));
                    }
                }
                AmazonS3ConfigKey::CopyIfNotExists | AmazonS3ConfigKey::ConditionalPut => {
                    return Err(config_error(format!(
                        "option '{name}' is not used: conditional writes and copies send \
                         If-None-Match / If-Match; declare a store that lacks them with \
                         Store::with_capabilities"
                    )));
                }
                AmazonS3ConfigKey::Encryption(_) if name.contains("sse_customer_key") => {
                    return Err(config_error(format!(
                        "option '{name}': SSE-C (customer-provided keys) is not supported"
                    )));
                }
                _ => {}
            }
            builder = builder.with_config(key, value);
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
        let mut backend = Self::from_builder(builder)?;
        backend.copy_part = copy_part;
        // Every upload then carries a CRC64-NVME that S3 checks and keeps.
        backend.caps.sends_crc64nvme = native_checksum;
        Ok(backend)
    }

    /// A backend from an `object_store` builder, for settings options cannot express.
    pub fn from_builder(builder: AmazonS3Builder) -> Result<S3Backend> {
        let get = |k: AmazonS3ConfigKey| builder.get_config_value(&k);
        let bucket = get(AmazonS3ConfigKey::Bucket).unwrap_or_default();
        let endpoint = get(AmazonS3ConfigKey::Endpoint);
        super::object_store_core::check_plain_http(
            NAME,
            endpoint.as_deref(),
            super::object_store_core::truthy(get(AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ))),
        )?;
        let truthy = |k| super::object_store_core::truthy(get(k));
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = truthy(AmazonS3ConfigKey::VirtualHostedStyleRequest);
        let bucket_endpoint = match (&endpoint, virtual_hosted) {
            (Some(e), true) => e.trim_end_matches('/').to_string(),
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let sign_payload = !truthy(AmazonS3ConfigKey::UnsignedPayload);
        let skip_signature = truthy(AmazonS3ConfigKey::SkipSignature);
        let request_payer = truthy(AmazonS3ConfigKey::RequestPayer);
        let encryption = encryption_headers(&builder)?;
        let timeout = get(AmazonS3ConfigKey::Client(
            object_store::ClientConfigKey::Timeout,
        ));
        let s3 = builder
            .build()
            .map_err(|e| super::object_store_core::map_error(NAME, Op::Configure, &bucket, e))?;
        Ok(S3Backend {
            client: Client {
                http: super::object_store_core::http_client(timeout),
                bucket,
                bucket_endpoint,
                region,
                credentials: s3.credentials().clone(),
                skip_signature,
                sign_payload,
                request_payer,
                encryption,
            },
            caps: s3_capabilities(),
            endpoint,
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
        &self.client.bucket
    }
}

/// The server-side encryption headers the configuration asks for.
fn encryption_headers(b: &AmazonS3Builder) -> Result<Vec<(http::HeaderName, http::HeaderValue)>> {
    // (object_store does not export its encryption key type: the keys are named.)
    let get = |name: &str| {
        name.parse::<AmazonS3ConfigKey>()
            .ok()
            .and_then(|k| b.get_config_value(&k))
    };
    let mut out = Vec::new();
    let mut add = |name: &'static str, value: String| -> Result<()> {
        let v = http::HeaderValue::from_str(&value)
            .map_err(|_| config_error(format!("the value for {name} is not a valid header")))?;
        out.push((http::HeaderName::from_static(name), v));
        Ok(())
    };
    if let Some(kind) = get("aws_server_side_encryption") {
        if kind.eq_ignore_ascii_case("sse-c") {
            return Err(config_error(
                "SSE-C (customer-provided keys) is not supported".into(),
            ));
        }
        add("x-amz-server-side-encryption", kind)?;
    }
    if let Some(id) = get("aws_sse_kms_key_id") {
        add("x-amz-server-side-encryption-aws-kms-key-id", id)?;
    }
    if let Some(on) = get("aws_sse_bucket_key_enabled") {
        add("x-amz-server-side-encryption-bucket-key-enabled", on)?;
    }
    Ok(out)
}

/// CRC64-NVME of a write's bytes, as S3's checksum header carries it.
fn crc64nvme(data: &Payload) -> String {
    use base64::Engine;
    base64::prelude::BASE64_STANDARD.encode(data.crc64nvme().to_be_bytes())
}

/// An id with a `/`, a `?` or nothing in it was never issued by a service: no such
/// upload, without asking (some services answer 400 instead of 404).
fn check_upload_id(op: Op, key: &Key, upload: &UploadId) -> Result<()> {
    if upload.0.is_empty() || upload.0.contains(['/', '?', '#', '&']) {
        return Err(Error::new(
            ErrorKind::NotFound,
            op,
            NAME,
            format!("no multipart upload {:?} for this key", upload.0),
        )
        .with_key(key.as_str()));
    }
    Ok(())
}

impl S3Backend {
    fn request<'a>(
        &self,
        op: Op,
        key: &'a Key,
        method: Method,
        q: Option<&str>,
    ) -> Result<Request<'a>> {
        let url = self.client.object_url(op, key.as_str(), q)?;
        Ok(Request::new(NAME, op, key.as_str(), method, url))
    }

    async fn put_object(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let op = Op::Put;
        let size = data.len();
        let mut req = WIRE.attributes(
            self.request(op, key, Method::PUT, None)?
                .condition(&opts.mode)?,
            opts,
        )?;
        if self.caps.sends_crc64nvme {
            req = req.header("x-amz-checksum-crc64nvme", &crc64nvme(&data))?;
        }
        let req = req.body(data);
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| wire::condition_error(NAME, e, &opts.mode))?;
        // A PUT answer carries no time: `written` takes the client's, close to the
        // service's; `head` gives the stored one.
        Ok(WIRE.written(key, size, opts, resp.headers()))
    }

    async fn get_object(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let op = Op::Get;
        let req = self
            .request(op, key, Method::GET, None)?
            .read_conditions(opts)?;
        WIRE.read_answer(op, key, opts, self.client.send(req).await)
    }

    async fn head_object(&self, key: &Key) -> Result<ObjectMeta> {
        let op = Op::Head;
        let req = self.request(op, key, Method::HEAD, None)?;
        match self.client.send(req).await {
            Ok(resp) => WIRE.head_answer(op, key, &resp),
            // A HEAD answer has no body, so a 403 cannot say whether the credentials are
            // wrong or only not allowed: a one-byte GET tells.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                let probe = GetOptions::range(ByteRange::Bounded(0..1));
                match self.get_object(key, &probe).await {
                    Err(p) if p.kind() == ErrorKind::Unauthenticated => Err(p.with_op(op)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn list_page(&self, req: &ListRequest, limit: usize) -> Result<ListPage> {
        let op = Op::List;
        let max = limit.to_string();
        let mut pairs = vec![
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", max.as_str()),
            ("prefix", req.prefix.as_str()),
        ];
        if req.delimiter {
            pairs.push(("delimiter", "/"));
        }
        if let Some(t) = &req.token {
            pairs.push(("continuation-token", t.as_str()));
        }
        if let Some(s) = req.start_after.as_deref().filter(|_| !req.delimiter) {
            pairs.push(("start-after", s));
        }
        let url = self.client.bucket_url(op, &req.prefix, &query(&pairs))?;
        let resp = self
            .client
            .send(Request::new(NAME, op, &req.prefix, Method::GET, url))
            .await?;
        let body = wire::body_of(NAME, op, &req.prefix, resp).await?;
        let parsed: xml::ListBucketResult = xml::parse(op, &req.prefix, &body, "ListObjectsV2")?;
        let encoded = parsed
            .encoding_type
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("url"));
        let name = |raw: &str| {
            xml::listed_key(raw, encoded)
                .ok_or_else(|| garbage(NAME, op, &req.prefix, "a listed key that does not decode"))
        };
        let mut objects = Vec::with_capacity(parsed.contents.len());
        for c in parsed.contents {
            let key = Key::new(name(&c.key)?).map_err(|e| e.with_op(op))?;
            objects.push(ObjectMeta {
                key,
                size: c.size,
                etag: quoted(c.e_tag.as_deref()),
                last_modified: c
                    .last_modified
                    .as_deref()
                    .and_then(xml::iso_time)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                version: None,
                content_type: None,
                metadata: Metadata::new(),
                crc32c: None,
                source_etag: None,
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut common_prefixes = parsed
            .common_prefixes
            .iter()
            .map(|p| name(&p.prefix))
            .collect::<Result<Vec<_>>>()?;
        common_prefixes.sort();
        let next_token = parsed
            .next_continuation_token
            .filter(|t| parsed.is_truncated && !t.is_empty());
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token,
        })
    }

    /// CopyObject of a source that fits one request, keeping its attributes.
    async fn copy_object(&self, from: &Key, to: &Key, mode: &CopyMode) -> Result<ObjectMeta> {
        let op = Op::Copy;
        let put_mode = mode.as_put_mode();
        let mut req = self.request(op, to, Method::PUT, None)?;
        req = req.header("x-amz-copy-source", &self.copy_source(op, from)?)?;
        req = req.condition(&put_mode)?;
        let resp = match self.client.send(req).await {
            Ok(r) => r,
            // A missing source is named by the source key.
            Err(e) if e.kind() == ErrorKind::NotFound && e.message().contains("NoSuchKey") => {
                return Err(
                    Error::new(ErrorKind::NotFound, op, NAME, "no such source object")
                        .with_key(from.as_str()),
                );
            }
            Err(e) => return Err(wire::condition_error(NAME, e, &put_mode)),
        };
        let body = wire::body_of(NAME, op, to.as_str(), resp).await?;
        wire::error_in_200(NAME, op, to, &body, "copy failed")?;
        self.head_object(to).await.map_err(|e| e.with_op(op))
    }

    /// `x-amz-copy-source` for `from`: the bucket and the key, URL-encoded.
    fn copy_source(&self, op: Op, from: &Key) -> Result<String> {
        let path = client::key_path(from.as_str())
            .map_err(|m| Error::invalid_input(op, NAME, m).with_key(from.as_str()))?;
        Ok(format!("/{}/{path}", self.client.bucket))
    }

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
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            content_type: source.content_type.clone(),
            metadata: source.metadata.clone(),
        };
        let part = self
            .copy_part
            .max(source.size.div_ceil(u64::from(self.caps.max_parts)));
        let id = self.create_upload(to, &opts).await?;
        let ranges: Vec<(u32, std::ops::Range<u64>)> = (0..source.size.div_ceil(part))
            .map(|i| (i as u32 + 1, i * part..((i + 1) * part).min(source.size)))
            .collect();
        let copied: Vec<Result<PartInfo>> = futures::stream::iter(ranges)
            .map(|(n, r)| self.copy_one_part(from, to, &id, n, r, source.etag.as_deref()))
            .buffer_unordered(8)
            .collect()
            .await;
        let done: Result<Vec<PartInfo>> = copied.into_iter().collect();
        let completed = match done {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.number);
                self.complete(to, &id, &parts, &mode.as_put_mode()).await
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            let _ = self.abort(to, &id).await;
        }
        completed.map_err(|e| e.with_op(Op::Copy))
    }

    /// One UploadPartCopy.
    async fn copy_one_part(
        &self,
        from: &Key,
        to: &Key,
        id: &UploadId,
        number: u32,
        range: std::ops::Range<u64>,
        etag: Option<&str>,
    ) -> Result<PartInfo> {
        let op = Op::Copy;
        let n = number.to_string();
        let q = query(&[("partNumber", &n), ("uploadId", &id.0)]);
        let mut req = self.request(op, to, Method::PUT, Some(&q))?;
        req = req.header("x-amz-copy-source", &self.copy_source(op, from)?)?;
        req = req.header(
            "x-amz-copy-source-range",
            &format!("bytes={}-{}", range.start, range.end - 1),
        )?;
        if let Some(e) = etag {
            req = req.header("x-amz-copy-source-if-match", e)?;
        }
        let resp = self.client.send(req).await?;
        let body = wire::body_of(NAME, op, to.as_str(), resp).await?;
        wire::error_in_200(NAME, op, to, &body, "part copy failed")?;
        let result: xml::CopyPartResult = xml::parse(op, to.as_str(), &body, "UploadPartCopy")?;
        Ok(PartInfo {
            number: PartNumber::new(number)?,
            etag: xml::part_tag(&result.e_tag, result.checksum_crc64nvme.as_deref()),
            size: range.end - range.start,
        })
    }

    async fn create_upload(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let op = Op::CreateMultipart;
        let mut req = self.request(op, key, Method::POST, Some("uploads"))?;
        req = WIRE.attributes(req, opts)?;
        if self.caps.sends_crc64nvme {
            req = req.header("x-amz-checksum-algorithm", "CRC64NVME")?;
        }
        let resp = self
            .client
            .send(req.body(Payload::from(Bytes::new())))
            .await?;
        let body = wire::body_of(NAME, op, key.as_str(), resp).await?;
        let r: xml::InitiateMultipartUploadResult =
            xml::parse(op, key.as_str(), &body, "CreateMultipartUpload")?;
        Ok(UploadId(r.upload_id))
    }

    async fn upload_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let op = Op::PutPart;
        check_upload_id(op, key, upload)?;
        let size = data.len();
        let n = part.get().to_string();
        let q = query(&[("partNumber", &n), ("uploadId", &upload.0)]);
        let mut req = self.request(op, key, Method::PUT, Some(&q))?;
        if self.caps.sends_crc64nvme {
            req = req.header("x-amz-checksum-crc64nvme", &crc64nvme(&data))?;
        }
        let resp = self.client.send(req.body(data)).await?;
        let headers = resp.headers();
        let etag = header(headers, "etag")
            .ok_or_else(|| garbage(NAME, op, key.as_str(), "a part answer without an ETag"))?;
        let crc = self
            .caps
            .sends_crc64nvme
            .then(|| header(headers, "x-amz-checksum-crc64nvme"))
            .flatten();
        Ok(PartInfo {
            number: part,
            etag: xml::part_tag(etag, crc),
            size,
        })
    }

    /// CompleteMultipartUpload with the condition of `mode`.
    async fn complete(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        check_upload_id(op, key, upload)?;
        let q = query(&[("uploadId", &upload.0)]);
        let doc = xml::complete_document(parts.iter().map(|p| (p.number.get(), p.etag.as_str())));
        let req = self
            .request(op, key, Method::POST, Some(&q))?
            .condition(mode)?
            .header("content-type", "application/xml")?
            .body(Payload::from(Bytes::from(doc)));
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| wire::condition_error(NAME, e, mode))?;
        let body = wire::body_of(NAME, op, key.as_str(), resp).await?;
        wire::error_in_200(NAME, op, key, &body, "completion failed")?;
        self.head_object(key).await.map_err(|e| e.with_op(op))
    }

    async fn abort(&self, key: &Key, upload: &UploadId) -> Result<()> {
        let op = Op::AbortMultipart;
        if check_upload_id(op, key, upload).is_err() {
            return Ok(());
        }
        let q = query(&[("uploadId", &upload.0)]);
        match self
            .client
            .send(self.request(op, key, Method::DELETE, Some(&q))?)
            .await
        {
            Ok(_) => Ok(()),
            // Aborting what is not there (any more) succeeds, as on every backend.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
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
        self.put_object(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        self.get_object(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.head_object(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let op = Op::Delete;
        match self
            .client
            .send(self.request(op, key, Method::DELETE, None)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && !e.message().contains("NoSuchBucket") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let limit = super::listing::limit(req, self.caps.max_list_page);
        self.list_page(req, limit).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        super::checks::check_key(NAME, Op::Copy, to, &self.caps)?;
        super::checks::check_copy_mode(NAME, to, &self.caps, &mode)?;
        let source = self
            .head_object(from)
            .await
            .map_err(|e| e.with_op(Op::Copy))?;
        if source.size > self.copy_part {
            return self.copy_by_parts(from, to, &mode, &source).await;
        }
        self.copy_object(from, to, &mode).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        super::checks::check_key(NAME, Op::CreateMultipart, key, &self.caps)?;
        self.create_upload(key, opts).await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        super::checks::check_part(NAME, key, &self.caps, part, data.len())?;
        self.upload_part(key, upload, part, data).await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        // S3 fixes metadata when the upload is created: none can be added here.
        super::checks::check_completion_metadata(NAME, key, &self.caps, metadata)?;
        super::checks::check_mode(NAME, op, key, &self.caps.multipart_modes, mode)?;
        if parts.is_empty() {
            return Err(
                Error::invalid_input(op, NAME, "no parts to complete").with_key(key.as_str())
            );
        }
        self.complete(key, upload, parts, mode).await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.abort(key, upload).await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<crate::object::NativeChecksum>> {
        let op = Op::Head;
        let req = self
            .request(op, key, Method::HEAD, None)?
            .header("x-amz-checksum-mode", "ENABLED")?;
        let resp = self.client.send(req).await?;
        let headers = resp.headers();
        // Only a full-object checksum describes the bytes a download sees.
        if header(headers, "x-amz-checksum-type")
            .is_some_and(|t| !t.eq_ignore_ascii_case("FULL_OBJECT"))
        {
            return Ok(None);
        }
        let value = header(headers, "x-amz-checksum-crc64nvme").and_then(|v| {
            use base64::Engine;
            let raw = base64::prelude::BASE64_STANDARD.decode(v).ok()?;
            Some(u64::from_be_bytes(raw.try_into().ok()?))
        });
        Ok(value.map(crate::object::NativeChecksum::Crc64Nvme))
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let op = Op::ListMultipart;
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut pairs = vec![
                ("uploads", ""),
                ("encoding-type", "url"),
                ("prefix", prefix),
            ];
            if let Some((k, u)) = &markers {
                pairs.push(("key-marker", k));
                pairs.push(("upload-id-marker", u));
            }
            let url = self.client.bucket_url(op, prefix, &query(&pairs))?;
            let resp = self
                .client
                .send(Request::new(NAME, op, prefix, Method::GET, url))
                .await?;
            let body = wire::body_of(NAME, op, prefix, resp).await?;
            let parsed: xml::ListUploadsResult =
                xml::parse(op, prefix, &body, "ListMultipartUploads")?;
            let encoded = parsed
                .encoding_type
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case("url"));
            for u in parsed.upload {
                let name = xml::listed_key(&u.key, encoded).ok_or_else(|| {
                    garbage(NAME, op, prefix, "a listed key that does not decode")
                })?;
                out.push(MultipartUploadInfo {
                    key: Key::new(name).map_err(|e| e.with_op(op))?,
                    upload_id: UploadId(u.upload_id),
                    initiated: u.initiated.as_deref().and_then(xml::iso_time),
                });
            }
            match (
                parsed.is_truncated,
                parsed.next_key_marker,
                parsed.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => {
                    let k = xml::listed_key(&k, encoded).unwrap_or(k);
                    markers = Some((k, u));
                }
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
        let op = Op::Presign;
        if !self.caps.presign {
            return Err(Error::unsupported(
                op,
                NAME,
                "presigned URLs are declared unsupported for this store",
            )
            .with_key(key.as_str()));
        }
        let mut url = self.client.object_url(op, key.as_str(), None)?;
        let verb = match method {
            PresignMethod::Get => "GET",
            PresignMethod::Put => "PUT",
        };
        let credential = self
            .client
            .credential(op, key.as_str())
            .await?
            .ok_or_else(|| {
                Error::unsupported(op, NAME, "an unsigned (anonymous) store cannot presign")
                    .with_key(key.as_str())
            })?;
        presign::sign(
            &mut url,
            verb,
            &credential,
            &self.client.region,
            expires_in,
            SystemTime::now(),
        );
        Ok(crate::object::PresignedRequest {
            method,
            url,
            headers: Vec::new(),
        })
    }
}
