//! The Azure Blob requests, built here for any blob name and authorised by
//! `object_store`'s [`AzureAuthorizer`] with the credentials of its providers; service
//! SAS URLs for presigning.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use object_store::azure::{AzureAuthorizer, AzureCredential, AzureCredentialProvider};
use percent_encoding::utf8_percent_encode;

use super::NAME;
use crate::backend::wire::{self, Request, STRICT};
use crate::error::{Error, Op, Result};

/// The version of the Blob service API the requests speak (and presigned URLs name).
pub(super) const VERSION: &str = "2023-11-03";

/// How requests reach one container and are authorised.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) account: String,
    pub(super) container: String,
    /// `https://<account>.blob.core.windows.net/<container>` (Azurite:
    /// `http://127.0.0.1:10000/<account>/<container>`), without a trailing `/`.
    pub(super) container_url: String,
    pub(super) credentials: AzureCredentialProvider,
    /// The account key, for service SAS URLs (presigning).
    pub(super) account_key: Option<Vec<u8>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("account", &self.account)
            .field("container", &self.container)
            .field(
                "container_url",
                &crate::config::redact_url(&self.container_url),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The URL of blob `key` (the caller refuses `.` and `..` segments, which Azure
    /// resolves).
    pub(super) fn blob_url(&self, op: Op, key: &str, query: Option<&str>) -> Result<url::Url> {
        self.url(
            op,
            key,
            &format!("{}/{}", self.container_url, wire::encode_path(key)),
            query,
        )
    }

    /// The URL of the container itself (listings).
    pub(super) fn container_url(&self, op: Op, prefix: &str, query: &str) -> Result<url::Url> {
        self.url(op, prefix, &self.container_url, Some(query))
    }

    fn url(&self, op: Op, key: &str, base: &str, query: Option<&str>) -> Result<url::Url> {
        let mut url = url::Url::parse(base).map_err(|e| {
            Error::invalid_input(op, NAME, format!("not a valid URL: {e}")).with_key(key)
        })?;
        if let Some(q) = query {
            url.set_query(Some(q));
        }
        Ok(url)
    }

    pub(super) async fn credential(&self, op: Op, key: &str) -> Result<Arc<AzureCredential>> {
        self.credentials
            .get_credential()
            .await
            .map_err(|e| super::super::object_store_core::map_error(NAME, op, key, e))
    }

    /// Authorises and sends `req`; a status outside 2xx (but 304) is a typed error.
    pub(super) async fn send(&self, mut req: Request<'_>) -> Result<reqwest::Response> {
        let (op, key) = (req.op, req.key);
        req = req.header("x-ms-version", VERSION)?;
        let headers = wire::with_length(std::mem::take(&mut req.headers), req.body.as_ref());
        let credential = self.credential(op, key).await?;
        let mut signed = http::Request::builder()
            .method(req.method.clone())
            .uri(req.url.as_str())
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| {
                Error::invalid_input(op, NAME, format!("not a valid request: {e}")).with_key(key)
            })?;
        *signed.headers_mut() = headers;
        AzureAuthorizer::new(&credential, &self.account)
            .try_authorize(&mut signed)
            .map_err(|e| super::super::object_store_core::map_error(NAME, op, key, e))?;
        // A SAS credential travels in the query.
        if let Ok(u) = url::Url::parse(&signed.uri().to_string()) {
            req.url = u;
        }
        let headers = std::mem::take(signed.headers_mut());
        req.send(&self.http, headers).await
    }

    /// How a copy's source is authorised for the copy request: a SAS travels in the
    /// source URL, a bearer token in `x-ms-copy-source-authorization`; an account key
    /// authorises reads of its own account.
    pub(super) async fn copy_source(&self, op: Op, from: &str) -> Result<(String, Option<String>)> {
        let mut url = self.blob_url(op, from, None)?;
        match &*self.credential(op, from).await? {
            AzureCredential::SASToken(pairs) => {
                url.set_query(Some(&wire::query(
                    &pairs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect::<Vec<_>>(),
                )));
                Ok((url.to_string(), None))
            }
            AzureCredential::BearerToken(t) => Ok((url.to_string(), Some(format!("Bearer {t}")))),
            _ => Ok((url.to_string(), None)),
        }
    }

    /// A service SAS URL allowing `method` on blob `key` until `expires_in` passes.
    pub(super) fn presign(
        &self,
        op: Op,
        key: &str,
        method: &str,
        expires_in: Duration,
    ) -> Result<url::Url> {
        let Some(secret) = &self.account_key else {
            return Err(
                Error::unsupported(op, NAME, "presigning needs an account key").with_key(key),
            );
        };
        let mut url = self.blob_url(op, key, None)?;
        let now = SystemTime::now();
        let time = |t: SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        // A start a little in the past tolerates clocks that differ.
        let start = time(now - Duration::from_secs(300));
        let expiry = time(now + expires_in);
        let permissions = if method == "PUT" { "cw" } else { "r" };
        let resource = format!("/blob/{}/{}/{key}", self.account, self.container);
        let to_sign = format!(
            "{permissions}\n{start}\n{expiry}\n{resource}\n\n\n\n{VERSION}\nb\n\n\n\n\n\n\n"
        );
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            to_sign.as_bytes(),
        );
        let pairs = [
            ("sv", VERSION),
            ("st", start.as_str()),
            ("se", expiry.as_str()),
            ("sr", "b"),
            ("sp", permissions),
        ];
        let mut q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, STRICT)))
            .collect();
        q.push(format!(
            "sig={}",
            utf8_percent_encode(&BASE64_STANDARD.encode(tag.as_ref()), STRICT)
        ));
        url.set_query(Some(&q.join("&")));
        Ok(url)
    }
}
