//! Azure Blob Storage (and Azurite), configured, credentialed and authorised by
//! `object_store`.
//!
//! Configuration comes from the environment (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_USE_EMULATOR`,
//! `AZURITE_BLOB_STORAGE_URL`, ...) and from options, which take precedence and accept every
//! `object_store` Azure configuration key (`account_name`, `account_key`, `sas_token`,
//! `use_emulator`, `endpoint`, `timeout`, ...), plus `max_retries` (retries
//! after the first attempt, default 3, by cloudstore's retry layer).
//!
//! # Multipart uploads on Azure
//!
//! Azure has no upload object: parts are uncommitted blocks of the blob, and completing is
//! committing a block list. So that another process can complete an upload with the right
//! content type and metadata, the [`UploadId`] this backend returns carries them (encoded;
//! treat it as opaque). Completion is a Put Block List request carrying the condition
//! (`If-None-Match: *` or `If-Match`) and the attributes. Presigning makes a service SAS
//! and needs an account key; with a SAS token or Entra ID credentials it is declared
//! unsupported.
//!
//! Azure cannot discard uncommitted blocks: abort forgets nothing server-side, and Azure
//! garbage-collects the blocks about a week after the last write. They are never visible
//! as an object, but an upload id kept after abort can still be completed
//! ([`Capabilities::abort_discards_parts`] is false). In-progress uploads cannot be listed.

//!
//! Requests are built here for any blob name (`object_store`'s `Path` cannot carry `a//b`,
//! `dir/` or `/lead`) and authorised by `object_store`'s `AzureAuthorizer` with the
//! credentials of its providers. Azure resolves `.` and `..` segments in blob URLs, so keys
//! with them are refused (`InvalidInput`), as the service would. Metadata names that are not
//! identifiers travel as `csx_` + hex and come back as they were.

mod client;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::prelude::{BASE64_STANDARD, BASE64_URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::Method;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use self::client::Client;
use super::object_store_core::{RETRY_OPTIONS, escape_name, map_error, unescape_name};
use super::wire::{self, Request, garbage, header, query};
use super::{Backend, Capabilities, MIB};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, ObjectMeta,
    PartInfo, PartNumber, Payload, PresignMethod, PutMode, PutOptions, UploadId,
};

const NAME: &str = "azure";

/// Azure's names on the wire: metadata names that are not identifiers are escaped.
const WIRE: wire::Dialect = wire::Dialect {
    backend: NAME,
    content_type: "x-ms-blob-content-type",
    meta_prefix: "x-ms-meta-",
    version_header: "x-ms-version-id",
    name_out: escape_name,
    name_in: unescape_name,
};
const UPLOAD_ID_PREFIX: &str = "az1.";
/// Azurite's fixed, publicly documented development account key (not a secret).
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How long a copy the service finishes in the background is waited for.
const COPY_WAIT: Duration = Duration::from_secs(600);

/// A container on Azure Blob Storage.
#[derive(Clone)]
pub struct AzureBackend {
    client: Client,
    caps: Capabilities,
    endpoint: Option<String>,
}

impl fmt::Debug for AzureBackend {
    // Never the key or a SAS: only where the data lives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("account", &self.client.account)
            .field("container", &self.client.container)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::config::redact_url),
            )
            .finish_non_exhaustive()
    }
}

/// Azure block blob limits: blocks up to 4,000 MiB, at most 50,000 per blob, no minimum.
/// `signing` says whether an account key is configured (needed for presigning).
pub fn azure_capabilities(signing: bool) -> Capabilities {
    Capabilities {
        min_part_size: 1,
        max_part_size: 4000 * MIB,
        max_parts: 50_000,
        max_object_size: Some(50_000 * 4000 * MIB),
        multipart_listing: false,
        abort_discards_parts: false,
        presign: signing,
        // A service SAS signed with the account key has no maximum; a week matches the
        // other providers and user-delegation SAS.
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        max_list_page: 1000,
        // Azure turns '\\' in blob names into '/'.
        backslash_in_keys: false,
        // Azure resolves `.` and `..` in blob URLs.
        dot_segments_in_keys: false,
        // List Blobs continues only from its own opaque marker.
        list_start_after: false,
        ..Capabilities::s3_like()
    }
}

fn config_error(message: String) -> Error {
    Error::invalid_input(Op::Configure, NAME, message)
}

/// Content type and metadata carried by an upload id (see the module docs).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct UploadAttributes {
    /// The key the upload writes: an id is only good for its own key.
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ct: Option<String>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    md: Metadata,
}

fn encode_upload_id(key: &Key, opts: &PutOptions) -> UploadId {
    let attrs = UploadAttributes {
        k: key.as_str().to_string(),
        ct: opts.content_type.clone(),
        md: opts.metadata.clone(),
    };
    let json = serde_json::to_vec(&attrs).unwrap_or_default();
    UploadId(format!(
        "{UPLOAD_ID_PREFIX}{}",
        BASE64_URL_SAFE_NO_PAD.encode(json)
    ))
}

fn decode_upload_id(op: Op, key: &Key, id: &UploadId) -> Result<UploadAttributes> {
    id.0.strip_prefix(UPLOAD_ID_PREFIX)
        .and_then(|b| BASE64_URL_SAFE_NO_PAD.decode(b).ok())
        .and_then(|json| serde_json::from_slice::<UploadAttributes>(&json).ok())
        .filter(|a| a.k == key.as_str())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                op,
                NAME,
                format!("no multipart upload {:?} for this key", id.0),
            )
            .with_key(key.as_str())
        })
}

impl AzureBackend {
    /// A backend for `container`, configured from the environment and then `options`.
    pub fn new(container: &str, options: &StoreOptions) -> Result<AzureBackend> {
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
        for name in options.names().filter(|n| !RETRY_OPTIONS.contains(n)) {
            let key: AzureConfigKey = name
                .parse()
                .map_err(|_| config_error(format!("unknown option '{name}' for az://")))?;
            builder = builder.with_config(key, options.get(name).unwrap_or_default());
        }
        Self::from_builder(builder)
    }

    /// A backend from an `object_store` builder, for settings options cannot express.
    pub fn from_builder(builder: MicrosoftAzureBuilder) -> Result<AzureBackend> {
        let get = |k: AzureConfigKey| builder.get_config_value(&k);
        let container = get(AzureConfigKey::ContainerName).unwrap_or_default();
        let endpoint = get(AzureConfigKey::Endpoint);
        let timeout = get(AzureConfigKey::Client(
            object_store::ClientConfigKey::Timeout,
        ));
        let emulator = super::object_store_core::truthy(get(AzureConfigKey::UseEmulator));
        // The emulator setting is an explicit choice of plain HTTP.
        super::object_store_core::check_plain_http(
            NAME,
            endpoint.as_deref(),
            emulator
                || super::object_store_core::truthy(get(AzureConfigKey::Client(
                    object_store::ClientConfigKey::AllowHttp,
                ))),
        )?;
        let key_text =
            get(AzureConfigKey::AccessKey).or_else(|| emulator.then(|| EMULATOR_KEY.to_string()));
        let account_key = match key_text {
            None => None,
            Some(k) => Some(
                BASE64_STANDARD
                    .decode(k.trim())
                    .map_err(|_| config_error("the account key is not base64".into()))?,
            ),
        };
        let account = get(AzureConfigKey::AccountName)
            .or_else(|| emulator.then(|| "devstoreaccount1".to_string()))
            .unwrap_or_default();
        let service_url = if emulator {
            let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:10000".into());
            format!("{}/{account}", base.trim_end_matches('/'))
        } else {
            match &endpoint {
                Some(e) => e.trim_end_matches('/').to_string(),
                None => format!("https://{account}.blob.core.windows.net"),
            }
        };
        let azure = builder
            .build()
            .map_err(|e| map_error(NAME, Op::Configure, &container, e))?;
        Ok(AzureBackend {
            caps: azure_capabilities(account_key.is_some()),
            client: Client {
                http: super::object_store_core::http_client(timeout),
                container_url: format!("{service_url}/{container}"),
                account,
                container,
                credentials: azure.credentials().clone(),
                account_key,
            },
            endpoint,
        })
    }

    /// Declares different capabilities. Declared-absent features answer `Unsupported`.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.client.container
    }

    /// A request on blob `key`; a key Azure would resolve as a path is `InvalidInput`.
    fn request<'a>(
        &self,
        op: Op,
        key: &'a Key,
        method: Method,
        q: Option<&str>,
    ) -> Result<Request<'a>> {
        if key.segments().any(|s| s == "." || s == "..") {
            return Err(Error::invalid_input(
                op,
                NAME,
                "Azure resolves '.' and '..' segments in blob names, so it cannot hold this key",
            )
            .with_key(key.as_str()));
        }
        let url = self.client.blob_url(op, key.as_str(), q)?;
        Ok(Request::new(NAME, op, key.as_str(), method, url))
    }

    async fn put_blob(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let op = Op::Put;
        let size = data.len();
        let req = self
            .request(op, key, Method::PUT, None)?
            .header("x-ms-blob-type", "BlockBlob")?
            .condition(&opts.mode)?;
        let req = WIRE.attributes(req, opts)?.body(data);
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| wire::condition_error(NAME, e, &opts.mode))?;
        Ok(WIRE.written(key, size, opts, resp.headers()))
    }

    async fn get_blob(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        let op = Op::Get;
        let req = self
            .request(op, key, Method::GET, None)?
            .read_conditions(opts)?;
        WIRE.read_answer(op, key, opts, self.client.send(req).await)
    }

    async fn head_blob(&self, key: &Key) -> Result<ObjectMeta> {
        let op = Op::Head;
        match self
            .client
            .send(self.request(op, key, Method::HEAD, None)?)
            .await
        {
            Ok(resp) => WIRE.head_answer(op, key, &resp),
            // A HEAD answer has no body, so a 403 cannot say whether the credentials are
            // wrong or only not allowed: a one-byte GET tells.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                let probe = GetOptions::range(ByteRange::Bounded(0..1));
                match self.get_blob(key, &probe).await {
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
            ("restype", "container"),
            ("comp", "list"),
            ("maxresults", max.as_str()),
            ("prefix", req.prefix.as_str()),
        ];
        if req.delimiter {
            pairs.push(("delimiter", "/"));
        }
        if let Some(t) = &req.token {
            pairs.push(("marker", t.as_str()));
        }
        // For the library's records (a sync decides from them without a HEAD).
        pairs.push(("include", "metadata"));
        let url = self.client.container_url(op, &req.prefix, &query(&pairs))?;
        let resp = self
            .client
            .send(Request::new(NAME, op, &req.prefix, Method::GET, url))
            .await?;
        let body = wire::body_of(NAME, op, &req.prefix, resp).await?;
        let parsed: EnumerationResults =
            quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                garbage(
                    NAME,
                    op,
                    &req.prefix,
                    &format!("an unreadable List Blobs answer: {e}"),
                )
            })?;
        let mut objects = Vec::new();
        let mut common_prefixes = Vec::new();
        for item in parsed.blobs.items {
            match item {
                Item::Blob(b) => {
                    let name = b.name.decoded().ok_or_else(|| {
                        garbage(NAME, op, &req.prefix, "a listed name that does not decode")
                    })?;
                    objects.push(ObjectMeta {
                        key: Key::new(name).map_err(|e| e.with_op(op))?,
                        size: b.properties.content_length,
                        etag: wire::quoted(b.properties.etag.as_deref()),
                        last_modified: b
                            .properties
                            .last_modified
                            .as_deref()
                            .and_then(wire::http_time)
                            .unwrap_or(SystemTime::UNIX_EPOCH),
                        version: None,
                        content_type: None,
                        metadata: records(b.metadata),
                        crc32c: None,
                        source_etag: None,
                    });
                }
                Item::BlobPrefix(p) => {
                    common_prefixes.push(p.name.decoded().ok_or_else(|| {
                        garbage(
                            NAME,
                            op,
                            &req.prefix,
                            "a listed prefix that does not decode",
                        )
                    })?);
                }
                Item::Other => {}
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        common_prefixes.sort();
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token: parsed.next_marker.filter(|m| !m.is_empty()),
        })
    }

    /// Copy Blob (the destination keeps the source's content type and metadata), waiting
    /// for a copy the service finishes in the background.
    async fn copy_blob(&self, from: &Key, to: &Key, mode: &CopyMode) -> Result<ObjectMeta> {
        let op = Op::Copy;
        let put_mode = mode.as_put_mode();
        // A source Azure would resolve as a path cannot be named either.
        self.request(op, from, Method::HEAD, None)?;
        let (source, auth) = self.client.copy_source(op, from.as_str()).await?;
        let mut req = self
            .request(op, to, Method::PUT, None)?
            .header("x-ms-copy-source", &source)?
            .condition(&put_mode)?;
        if let Some(a) = &auth {
            req = req.header("x-ms-copy-source-authorization", a)?;
        }
        let resp = match self.client.send(req).await {
            Ok(r) => r,
            // A missing source is named by the source key.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && (e.message().contains("CannotVerifyCopySource")
                        || e.message().contains("BlobNotFound")) =>
            {
                return Err(
                    Error::new(ErrorKind::NotFound, op, NAME, "no such source object")
                        .with_key(from.as_str()),
                );
            }
            Err(e) => return Err(wire::condition_error(NAME, e, &put_mode)),
        };
        let mut status = header(resp.headers(), "x-ms-copy-status").map(str::to_string);
        let started = std::time::Instant::now();
        while status.as_deref() == Some("pending") {
            if started.elapsed() > COPY_WAIT {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    op,
                    NAME,
                    "the service had not finished the copy after 10 minutes",
                )
                .with_key(to.as_str())
                .with_retryable(true));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let resp = self
                .client
                .send(self.request(op, to, Method::HEAD, None)?)
                .await?;
            status = header(resp.headers(), "x-ms-copy-status").map(str::to_string);
        }
        if let Some(s) = status.filter(|s| s != "success") {
            return Err(
                Error::new(ErrorKind::Other, op, NAME, format!("the copy ended {s}"))
                    .with_key(to.as_str())
                    .with_retryable(true),
            );
        }
        self.head_blob(to).await.map_err(|e| e.with_op(op))
    }

    /// Put Block List with the condition and the attributes the upload id carries.
    async fn commit_blocks(
        &self,
        key: &Key,
        attrs: UploadAttributes,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for part in parts {
            xml.push_str(&format!(
                "<Uncommitted>{}</Uncommitted>",
                BASE64_STANDARD.encode(&part.etag)
            ));
        }
        xml.push_str("</BlockList>");
        let opts = PutOptions {
            mode: mode.clone(),
            content_type: attrs.ct,
            metadata: attrs.md,
        };
        let req = self
            .request(op, key, Method::PUT, Some("comp=blocklist"))?
            .header("content-type", "application/xml")?
            .condition(mode)?;
        let req = WIRE
            .attributes(req, &opts)?
            .body(Payload::from(Bytes::from(xml)));
        match self.client.send(req).await {
            Ok(_) => self.head_blob(key).await.map_err(|e| e.with_op(op)),
            Err(e) if e.message().contains("InvalidBlockList") => Err(Error::invalid_input(
                op,
                NAME,
                "a listed part was never uploaded (InvalidBlockList)",
            )
            .with_key(key.as_str())),
            Err(e) => Err(wire::condition_error(NAME, e, mode)),
        }
    }
}

/// The answer of List Blobs.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    next_marker: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct Blobs {
    #[serde(rename = "$value", default)]
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
enum Item {
    Blob(BlobXml),
    BlobPrefix(PrefixXml),
    #[serde(other)]
    Other,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobXml {
    name: NameXml,
    properties: PropertiesXml,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// The library's records among a listed blob's metadata (names as on the wire).
fn records(listed: Option<BTreeMap<String, String>>) -> Metadata {
    let mut out: Metadata = listed
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let value = crate::attributes::decode_header_value(value.as_bytes());
            (unescape_name(&name), value)
        })
        .collect();
    crate::attributes::keep_records(&mut out);
    out
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PrefixXml {
    name: NameXml,
}

/// A blob name; `Encoded="true"` marks one percent-encoded because XML cannot hold it.
#[derive(serde::Deserialize)]
struct NameXml {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    value: String,
}

impl NameXml {
    fn decoded(&self) -> Option<String> {
        if self.encoded.as_deref() == Some("true") {
            percent_encoding::percent_decode_str(&self.value)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        } else {
            Some(self.value.clone())
        }
    }
}

#[derive(serde::Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Etag")]
    etag: Option<String>,
    #[serde(rename = "Last-Modified")]
    last_modified: Option<String>,
}

#[async_trait]
impl Backend for AzureBackend {
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
        self.put_blob(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        // Azure has no suffix ranges: the size first, then the range pinned to that version.
        if let Some(ByteRange::Suffix(n)) = opts.range {
            let meta = self.head_blob(key).await.map_err(|e| e.with_op(Op::Get))?;
            if n == 0 || meta.size == 0 {
                return Err(Error::invalid_input(
                    Op::Get,
                    NAME,
                    format!(
                        "range not satisfiable: bytes=-{n} of a {}-byte object",
                        meta.size
                    ),
                )
                .with_key(key.as_str()));
            }
            let pinned = GetOptions {
                range: Some(ByteRange::Bounded(meta.size.saturating_sub(n)..meta.size)),
                if_match: opts.if_match.clone().or(meta.etag),
                ..opts.clone()
            };
            return self.get_blob(key, &pinned).await;
        }
        self.get_blob(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.head_blob(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let op = Op::Delete;
        match self
            .client
            .send(self.request(op, key, Method::DELETE, None)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && !super::http_status::missing_container(e.message()) =>
            {
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
        self.copy_blob(from, to, &mode).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let op = Op::CreateMultipart;
        super::checks::check_key(NAME, op, key, &self.caps)?;
        super::checks::check_attributes(NAME, op, key, &self.caps, opts)?;
        // Refused now what could not travel at the commit.
        WIRE.attributes(self.request(op, key, Method::PUT, None)?, opts)?;
        Ok(encode_upload_id(key, opts))
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        let op = Op::PutPart;
        decode_upload_id(op, key, upload)?;
        super::checks::check_part(NAME, key, &self.caps, part, data.len())?;
        let size = data.len();
        // Block ids of one blob have one length: 32 hex digits.
        let id = uuid::Uuid::new_v4().simple().to_string();
        let q = query(&[("comp", "block"), ("blockid", &BASE64_STANDARD.encode(&id))]);
        let req = self.request(op, key, Method::PUT, Some(&q))?.body(data);
        self.client.send(req).await?;
        Ok(PartInfo {
            number: part,
            etag: id,
            size,
        })
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        super::checks::check_completion_metadata(NAME, key, &self.caps, extra_metadata)?;
        let op = Op::CompleteMultipart;
        super::checks::check_mode(NAME, op, key, &self.caps.multipart_modes, mode)?;
        let mut attrs = decode_upload_id(op, key, upload)?;
        attrs.md.extend(extra_metadata.clone());
        super::checks::check_part_list(NAME, key, &self.caps, parts)?;
        // A part listed twice names one block: the other part was never uploaded.
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = parts.iter().find(|p| !seen.insert(p.etag.as_str())) {
            return Err(Error::invalid_input(
                op,
                NAME,
                format!(
                    "part {} repeats the block of another part; it was never uploaded",
                    dup.number
                ),
            )
            .with_key(key.as_str()));
        }
        self.commit_blocks(key, attrs, parts, mode).await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        // Nothing to discard: uncommitted blocks are collected by the service.
        let _ = decode_upload_id(Op::AbortMultipart, key, upload);
        Ok(())
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<crate::object::PresignedRequest> {
        let op = Op::Presign;
        if !self.caps.presign {
            return Err(
                Error::unsupported(op, NAME, "presigning needs an account key")
                    .with_key(key.as_str()),
            );
        }
        self.request(op, key, Method::GET, None)?;
        let (verb, headers) = match method {
            PresignMethod::Get => ("GET", Vec::new()),
            // Put Blob needs the blob type.
            PresignMethod::Put => (
                "PUT",
                vec![("x-ms-blob-type".to_string(), "BlockBlob".to_string())],
            ),
        };
        let url = self.client.presign(op, key.as_str(), verb, expires_in)?;
        Ok(crate::object::PresignedRequest {
            method,
            url,
            headers,
        })
    }
}
