//! Azure Blob Storage (and Azurite), over `object_store`'s `MicrosoftAzure`.
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
//! treat it as opaque). Completion is a Put Block List request authorised by a service SAS
//! from the account key, which carries the condition (`If-None-Match: *` or `If-Match`) and
//! the attributes that `object_store`'s completion cannot send. Without an account key
//! (e.g. with a SAS token or Entra ID credentials), conditional completion, multipart
//! attributes and presigning are declared unsupported.
//!
//! Azure cannot discard uncommitted blocks: abort forgets nothing server-side, and Azure
//! garbage-collects the blocks about a week after the last write. They are never visible
//! as an object, but an upload id kept after abort can still be completed
//! ([`Capabilities::abort_discards_parts`] is false). In-progress uploads cannot be listed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::prelude::{BASE64_STANDARD, BASE64_URL_SAFE_NO_PAD};
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::signer::Signer;

use super::object_store_core::{Core, RETRY_OPTIONS, map_error, path, retry_config, send_signed};
use super::{Backend, Capabilities, ConditionalModes, MIB};
use crate::config::StoreOptions;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{
    ByteRange, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, ObjectMeta,
    PartInfo, PartNumber, Payload, PresignMethod, PutMode, PutOptions, UploadId,
};

const NAME: &str = "azure";
const SELF_SIGNED_TTL: Duration = Duration::from_secs(300);
const UPLOAD_ID_PREFIX: &str = "az1.";

/// A container on Azure Blob Storage.
#[derive(Clone)]
pub struct AzureBackend {
    core: Core,
    azure: Arc<MicrosoftAzure>,
    http: reqwest::Client,
    caps: Capabilities,
    /// Whether an account key can sign SAS-authorised requests; decides the completion
    /// path, whatever the declared capabilities say.
    signing: bool,
    account: String,
    container: String,
    endpoint: Option<String>,
}

impl fmt::Debug for AzureBackend {
    // Never the key or a SAS: only where the data lives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("account", &self.account)
            .field("container", &self.container)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::config::redact_url),
            )
            .finish_non_exhaustive()
    }
}

/// Azure block blob limits: blocks up to 4,000 MiB, at most 50,000 per blob, no minimum.
/// `signing` says whether an account key is configured (needed for SAS-authorised
/// requests: presigning and conditional multipart completion).
pub fn azure_capabilities(signing: bool) -> Capabilities {
    Capabilities {
        min_part_size: 1,
        max_part_size: 4000 * MIB,
        max_parts: 50_000,
        max_object_size: Some(50_000 * 4000 * MIB),
        multipart_modes: if signing {
            ConditionalModes::ALL
        } else {
            ConditionalModes::NONE
        },
        multipart_listing: false,
        abort_discards_parts: false,
        presign: signing,
        // A service SAS signed with the account key has no maximum; a week matches the
        // other providers and user-delegation SAS.
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        max_list_page: 1000,
        // Azure turns '\\' in blob names into '/'.
        backslash_in_keys: false,
        // Azure resolves `.` and `..` in blob URLs; object_store's paths cannot carry the
        // other keys that are not plain paths.
        dot_segments_in_keys: false,
        raw_keys: false,
        // object_store's copy cannot carry If-Match for the destination.
        copy_if_match: false,
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl AzureBackend {
    /// A backend for `container`, configured from the environment and then `options`.
    pub fn new(container: &str, options: &StoreOptions) -> Result<AzureBackend> {
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
        if let Some(retry) = retry_config(NAME, options)? {
            builder = builder.with_retry(retry);
        }
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
        let container = builder
            .get_config_value(&AzureConfigKey::ContainerName)
            .unwrap_or_default();
        let account = builder
            .get_config_value(&AzureConfigKey::AccountName)
            .unwrap_or_default();
        let endpoint = builder.get_config_value(&AzureConfigKey::Endpoint);
        let timeout = builder.get_config_value(&AzureConfigKey::Client(
            object_store::ClientConfigKey::Timeout,
        ));
        let emulator = builder
            .get_config_value(&AzureConfigKey::UseEmulator)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        // The emulator setting is an explicit choice of plain HTTP.
        super::object_store_core::check_plain_http(
            NAME,
            endpoint.as_deref(),
            emulator
                || super::object_store_core::truthy(builder.get_config_value(
                    &AzureConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
                )),
        )?;
        // The emulator's well-known key is used when none is given.
        let signing = emulator
            || builder
                .get_config_value(&AzureConfigKey::AccessKey)
                .is_some();
        let azure = Arc::new(
            builder
                .build()
                .map_err(|e| map_error(NAME, Op::Configure, &container, e))?,
        );
        Ok(AzureBackend {
            core: Core {
                name: NAME,
                escape_metadata_names: true,
                store: azure.clone(),
                multipart: azure.clone(),
                signer: azure.clone(),
                lister: azure.clone(),
            },
            azure,
            http: super::object_store_core::http_client(timeout),
            caps: azure_capabilities(signing),
            signing,
            account,
            container,
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
        &self.container
    }

    /// Put Block List, authorised by a SAS, with the condition and the attributes.
    async fn commit_blocks(
        &self,
        key: &Key,
        attrs: UploadAttributes,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        let op = Op::CompleteMultipart;
        let p = path(op, NAME, key.as_str())?;
        let mut url = self
            .azure
            .signed_url(http::Method::PUT, &p, SELF_SIGNED_TTL)
            .await
            .map_err(|e| map_error(NAME, op, key.as_str(), e))?;
        url.query_pairs_mut().append_pair("comp", "blocklist");
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for part in parts {
            xml.push_str(&format!(
                "<Uncommitted>{}</Uncommitted>",
                xml_escape(&BASE64_STANDARD.encode(&part.etag))
            ));
        }
        xml.push_str("</BlockList>");
        let mut req = self
            .http
            .put(url)
            .header("x-ms-version", "2023-11-03")
            .header("content-type", "application/xml")
            .body(xml);
        crate::attributes::check_mode(mode)
            .map_err(|m| Error::invalid_input(op, NAME, m).with_key(key.as_str()))?;
        match mode {
            PutMode::Overwrite => {}
            PutMode::Create => req = req.header("if-none-match", "*"),
            PutMode::IfMatch(etag) => req = req.header("if-match", etag.as_str()),
        }
        if let Some(ct) = &attrs.ct {
            req = req.header("x-ms-blob-content-type", ct.as_str());
        }
        for (k, v) in &attrs.md {
            let name = super::object_store_core::escape_name(k);
            let value = crate::attributes::encode_header_value(v);
            req = req.header(format!("x-ms-meta-{name}"), value.as_ref());
        }
        match send_signed(NAME, op, key.as_str(), req).await {
            Ok(_) => self.core.head(key).await,
            // 409 BlobAlreadyExists answers If-None-Match: *.
            Err(e)
                if *mode == PutMode::Create
                    && matches!(
                        e.kind(),
                        ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists
                    ) =>
            {
                Err(Error::already_exists(op, NAME, key.as_str()))
            }
            Err(e)
                if matches!(mode, PutMode::IfMatch(_))
                    && e.kind() == ErrorKind::NotFound
                    && e.message().contains("BlobNotFound") =>
            {
                Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    op,
                    NAME,
                    "no object exists, the completion required an ETag",
                )
                .with_key(key.as_str()))
            }
            // A block list naming a block that was never uploaded.
            Err(e) if e.message().contains("InvalidBlockList") => Err(Error::invalid_input(
                op,
                NAME,
                "a listed part was never uploaded (InvalidBlockList)",
            )
            .with_key(key.as_str())),
            Err(e) => Err(e),
        }
    }
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
        self.core.put(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        // Azure has no suffix ranges: find the size, then read a bounded range pinned to
        // the version measured (unless the caller pinned one already).
        if let Some(ByteRange::Suffix(n)) = opts.range {
            let meta = self.core.head(key).await.map_err(|e| e.with_op(Op::Get))?;
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
            return self.core.get(key, &pinned).await;
        }
        self.core.get(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.core.head(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.core.delete(key).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let op = Op::List;
        let mut limit = super::listing::limit(req, self.caps.max_list_page);
        // object_store drops a blob named exactly like the prefix from Azure listings; it
        // sorts first, so the first page fetches it with a HEAD. Tokens are ours:
        // `m:<marker>` continues at Azure's marker, `s` starts Azure's listing after it.
        let (marker, mut first) = match req.token.as_deref() {
            None => (None, None),
            Some("s") => (None, None),
            Some(t) => match t.strip_prefix("m:") {
                Some(m) => (Some(m.to_string()), None),
                None => {
                    return Err(Error::invalid_input(
                        op,
                        NAME,
                        "not a listing token of this backend",
                    )
                    .with_key(req.prefix.as_str()));
                }
            },
        };
        if req.token.is_none()
            && !req.prefix.is_empty()
            && let Ok(k) = Key::new(req.prefix.as_str())
        {
            match self.core.head(&k).await {
                Ok(mut m) => {
                    m.content_type = None;
                    m.metadata = Metadata::new();
                    first = Some(m);
                }
                // (A prefix no object_store path can name, such as `dir/`, is no object
                // this backend can hold.)
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Unsupported) => {}
                Err(e) => return Err(e.with_op(op)),
            }
        }
        if first.is_some() {
            if limit == 1 {
                return Ok(ListPage {
                    objects: first.into_iter().collect(),
                    common_prefixes: Vec::new(),
                    next_token: Some("s".into()),
                });
            }
            limit -= 1;
        }
        let mut page = self.core.list(req, limit, marker).await?;
        if let Some(m) = first {
            page.objects.insert(0, m);
        }
        page.next_token = page.next_token.map(|t| format!("m:{t}"));
        Ok(page)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        super::checks::check_key(NAME, Op::Copy, to, &self.caps)?;
        super::checks::check_copy_mode(NAME, to, &self.caps, &mode)?;
        self.core.copy(from, to, mode).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let op = Op::CreateMultipart;
        super::checks::check_key(NAME, op, key, &self.caps)?;
        super::checks::check_attributes(NAME, op, key, &self.caps, opts)?;
        // Refused now what could not travel at the commit.
        self.core.attributes_of(op, key, opts)?;
        let has_attributes = opts.content_type.is_some() || !opts.metadata.is_empty();
        if has_attributes && !self.signing {
            return Err(Error::unsupported(
                op,
                NAME,
                "content type and metadata on multipart uploads need an account key",
            )
            .with_key(key.as_str()));
        }
        Ok(encode_upload_id(key, opts))
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        decode_upload_id(Op::PutPart, key, upload)?;
        super::checks::check_part(NAME, key, &self.caps, part, data.len())?;
        self.core.put_part(key, upload, part, data).await
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
        // A part's tag is its block id, unique per upload of a part: a repeat names a part
        // that was never uploaded under that number.
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
        if self.signing {
            self.commit_blocks(key, attrs, parts, mode).await
        } else if *mode == PutMode::Overwrite && attrs.ct.is_none() && attrs.md.is_empty() {
            self.core.complete_contiguous(key, upload, parts).await
        } else {
            // Without a SAS the condition and attributes cannot be sent: never drop them.
            Err(Error::unsupported(
                op,
                NAME,
                "a conditional completion or one with attributes needs an account key",
            )
            .with_key(key.as_str()))
        }
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        // Nothing to discard server-side (see the module docs); an id that is not ours is
        // as good as aborted.
        let _ = decode_upload_id(Op::AbortMultipart, key, upload);
        Ok(())
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<crate::object::PresignedRequest> {
        if !self.caps.presign {
            return Err(
                Error::unsupported(Op::Presign, NAME, "presigning needs an account key")
                    .with_key(key.as_str()),
            );
        }
        let mut req = self.core.presign(method, key, expires_in).await?;
        if method == PresignMethod::Put {
            // Put Blob must say which kind of blob it creates.
            req.headers
                .push(("x-ms-blob-type".into(), "BlockBlob".into()));
        }
        Ok(req)
    }
}
