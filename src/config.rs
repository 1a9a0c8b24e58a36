//! Opening a [`Store`] from a URL plus options: configuration, never code, picks the backend.
//!
//! | URL | backend | status |
//! |---|---|---|
//! | `memory://` or `memory:///prefix` | a new, empty [`MemoryBackend`] | available |
//! | `file:///absolute/dir` | [`FsBackend`] rooted at the directory | available |
//! | `s3://bucket/prefix` | Amazon S3 and S3-compatible stores ([`S3Backend`](crate::backend::S3Backend), feature `s3`) | available |
//! | `az://container/prefix`, `abfss://container@<account>.dfs.core.windows.net/prefix`, `https://<account>.blob.core.windows.net/container/prefix` | Azure Blob Storage ([`AzureBackend`](crate::backend::AzureBackend), feature `azure`) | available |
//! | `gs://bucket/prefix` | Google Cloud Storage ([`GcsBackend`](crate::backend::GcsBackend), feature `gcs`) | available |
//!
//! A path after the location becomes the store's key prefix ([`Store::with_prefix`]).
//! `file://` URLs need an absolute path; percent-escapes in it are decoded.
//!
//! Options for `file://`: `fsync` (`true`/`false`, default `true`). `memory://` takes none.
//! `s3://` reads the `AWS_*` environment and takes every `object_store` S3 configuration key
//! as an option (`endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`,
//! `virtual_hosted_style_request`, ...), which wins over the environment. `az://` reads the
//! `AZURE_STORAGE_*` environment and takes every `object_store` Azure key (`account_name`,
//! `account_key`, `sas_token`, `use_emulator`, `endpoint`, ...). Every cloud URL takes
//! `max_retries` (default 3) for the retry layer its store is wrapped in. `gs://` reads `STORAGE_EMULATOR_HOST` and
//! `GOOGLE_APPLICATION_CREDENTIALS` and takes `endpoint`, `anonymous` and
//! `service_account_path`.
//! Every URL takes `key_policy` (`cloud`, `portable`; [`Store::with_key_policy`]) and
//! `span_keys` (`plain`, `hash`; how spans show keys, [`Store::with_span_keys`]). Every
//! store from a URL records spans and metrics for each request
//! ([`Observed`](crate::middleware::Observed), see [`crate::observe`]).
//! An unknown option is an error, so a typo cannot silently change behaviour.
//!
//! Credentials in a URL's user-info part are never repeated in errors or `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use crate::backend::{FsBackend, MemoryBackend};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::store::Store;

/// Options that go with a URL, as name/value strings (names are case-insensitive).
///
/// Values of options whose names suggest a secret (`secret`, `key`, `token`, `password`,
/// `credential`, `sas`, `signature`) are redacted from `Debug`.
///
/// ```
/// use cloudstore::StoreOptions;
/// let opts = StoreOptions::new().with("fsync", "false").with("secret_access_key", "hunter2");
/// assert_eq!(opts.get("FSYNC"), Some("false"));
/// assert!(!format!("{opts:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    entries: BTreeMap<String, String>,
}

impl StoreOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an option.
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// Adds or replaces an option.
    pub fn set(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        self.entries
            .insert(name.as_ref().to_ascii_lowercase(), value.into());
    }

    /// The value of an option.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Option names, lowercased.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(config_error(format!(
                    "option '{name}' must be true or false, not '{v}'"
                ))),
            },
        }
    }

    fn only(&self, scheme: &str, allowed: &[&str]) -> Result<()> {
        match self.names().find(|n| !allowed.contains(n)) {
            None => Ok(()),
            Some(n) => Err(config_error(format!(
                "unknown option '{n}' for {scheme}:// (known: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ))),
        }
    }
}

/// Whether an option name suggests a secret value.
pub fn is_secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "secret",
        "key",
        "token",
        "password",
        "credential",
        "sas",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.entries {
            if is_secret_option(k) {
                m.entry(k, &"<redacted>");
            } else if v.contains("://") {
                // Endpoints and proxies can carry user-info or a SAS query.
                m.entry(k, &redact_url(v));
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for StoreOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut o = StoreOptions::new();
        for (k, v) in iter {
            o.set(k, v);
        }
        o
    }
}

/// A duration written as `250ms`, `30s`, `5m` or plain seconds (`30`, `0.5`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| std::time::Duration::from_secs_f64(v * scale))
}

fn config_error(message: String) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Op::Configure,
        "cloudstore",
        message,
    )
}

/// A URL safe to show in messages: user-info (credentials) becomes `***`, and a query or
/// fragment (where SAS tokens and signatures live) becomes `?<redacted>`. Works on strings
/// that do not parse, too.
pub fn redact_url(url: &str) -> String {
    let (base, had_query) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], true),
        None => (url, false),
    };
    // The authority is what follows `scheme:` (and `//`, if any) up to the next `/`.
    let scheme_end = base
        .find(':')
        .filter(|&i| !base[..i].contains('/'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let rest = &base[scheme_end..];
    let slashes = rest.len() - rest.trim_start_matches('/').len();
    let auth_start = scheme_end + slashes;
    let auth_end = base[auth_start..]
        .find('/')
        .map(|i| auth_start + i)
        .unwrap_or(base.len());
    let mut out = match base[auth_start..auth_end].rfind('@') {
        Some(at) => format!(
            "{}***@{}",
            &base[..auth_start],
            &base[auth_start + at + 1..]
        ),
        None => base.to_string(),
    };
    if had_query {
        out.push_str("?<redacted>");
    }
    out
}

/// Opens a store; see the module documentation.
pub(crate) fn open(raw: &str, options: &StoreOptions) -> Result<Store> {
    // `key_policy` applies to every scheme: read here, not passed to the backends.
    let policy: crate::KeyPolicy = parsed(options, "key_policy")?;
    let span_keys: crate::observe::KeyDisplay = parsed(options, "span_keys")?;
    let mut rest = options.clone();
    rest.entries.remove("key_policy");
    rest.entries.remove("span_keys");
    Ok(open_scheme(raw, &rest)?
        .with_key_policy(policy)
        .with_span_keys(span_keys))
}

/// Option `name` parsed, or the type's default when it is not given.
fn parsed<T>(options: &StoreOptions, name: &str) -> Result<T>
where
    T: std::str::FromStr<Err = String> + Default,
{
    match options.get(name) {
        None => Ok(T::default()),
        Some(v) => v
            .parse()
            .map_err(|m| config_error(format!("option '{name}': {m}"))),
    }
}

fn open_scheme(raw: &str, options: &StoreOptions) -> Result<Store> {
    let shown = redact_url(raw);
    refuse_dot_segments(raw, &shown)?;
    let url =
        url::Url::parse(raw).map_err(|e| config_error(format!("malformed URL '{shown}': {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(format!(
            "URL '{shown}' has a query or fragment; give options as StoreOptions instead"
        )));
    }
    // abfs://container@account.dfs.core.windows.net/path names the container as user.
    let abfs = matches!(url.scheme(), "abfs" | "abfss") && url.password().is_none();
    if (!url.username().is_empty() && !abfs) || url.password().is_some() {
        return Err(config_error(format!(
            "URL '{shown}' carries credentials; pass them as options or environment instead"
        )));
    }
    match url.scheme() {
        "memory" => {
            options.only("memory", &[])?;
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(config_error(format!(
                    "memory URL '{shown}' names a host; a prefix goes in the path: memory:///prefix"
                )));
            }
            let store = Store::from_arc(observed(MemoryBackend::new()));
            with_path_prefix(store, url.path(), &shown)
        }
        "file" => {
            options.only("file", &["fsync"])?;
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(config_error(format!(
                    "file URL '{shown}' names a host; use an absolute path: file:///dir"
                )));
            }
            let path = url.to_file_path().map_err(|()| {
                config_error(format!(
                    "file URL '{shown}' needs an absolute path: file:///dir"
                ))
            })?;
            let backend = FsBackend::new(&path)?.with_fsync(options.bool("fsync", true)?);
            Ok(Store::from_arc(observed(backend)))
        }
        #[cfg(feature = "s3")]
        "s3" | "s3a" => {
            let bucket = bucket_of(&url, &shown)?;
            let backend = crate::backend::S3Backend::new(&bucket, options)?;
            with_path_prefix(retrying(backend, options)?, url.path(), &shown)
        }
        #[cfg(feature = "azure")]
        "az" | "azure" => {
            let container = bucket_of(&url, &shown)?;
            let backend = crate::backend::AzureBackend::new(&container, options)?;
            with_path_prefix(retrying(backend, options)?, url.path(), &shown)
        }
        #[cfg(feature = "azure")]
        "abfs" | "abfss" => {
            let container = percent_decode(url.username()).unwrap_or_default();
            let account = url
                .host_str()
                .and_then(|h| h.strip_suffix(".dfs.core.windows.net"));
            let (Some(account), false) = (account, container.is_empty()) else {
                return Err(config_error(format!(
                    "URL '{shown}' is not of the form abfss://container@account.dfs.core.windows.net/path"
                )));
            };
            azure_in_account(account, &container, url.path(), options, &shown)
        }
        #[cfg(feature = "azure")]
        "https" | "http"
            if url
                .host_str()
                .is_some_and(|h| h.ends_with(".blob.core.windows.net")) =>
        {
            let host = url.host_str().unwrap_or_default();
            let account = host.trim_end_matches(".blob.core.windows.net");
            let path = url.path().trim_start_matches('/');
            let (container, rest) = path.split_once('/').unwrap_or((path, ""));
            if container.is_empty() {
                return Err(config_error(format!(
                    "URL '{shown}' names no container: https://account.blob.core.windows.net/container/prefix"
                )));
            }
            let container = percent_decode(container).unwrap_or_default();
            azure_in_account(account, &container, rest, options, &shown)
        }
        #[cfg(feature = "gcs")]
        "gs" | "gcs" => {
            let bucket = bucket_of(&url, &shown)?;
            let backend = crate::backend::GcsBackend::new(&bucket, options)?;
            with_path_prefix(retrying(backend, options)?, url.path(), &shown)
        }
        // Schemes whose backend is not compiled in.
        #[allow(unreachable_patterns)]
        scheme @ ("s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" | "gcs") => {
            Err(not_wired(scheme, &shown))
        }
        "https" | "http"
            if url
                .host_str()
                .is_some_and(|h| h.ends_with(".blob.core.windows.net")) =>
        {
            Err(not_wired("azure", &shown))
        }
        other => Err(config_error(format!(
            "unknown scheme '{other}' in '{shown}'; expected memory, file, s3, az or gs"
        ))),
    }
}

/// URL parsing folds `.` and `..` segments away silently (`memory:///a/../b` would become
/// prefix `b`); a path that needs them is ambiguous, so it is refused instead.
fn refuse_dot_segments(raw: &str, shown: &str) -> Result<()> {
    let base = raw.split(['?', '#']).next().unwrap_or("");
    let after_scheme = match base.find(':') {
        Some(i) if !base[..i].contains('/') => &base[i + 1..],
        _ => base,
    };
    // Skip the authority of `scheme://authority/path`.
    let path = match after_scheme.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => after_scheme,
    };
    // `\` separates segments too for some schemes (file:), so split on both.
    for seg in path.split(['/', '\\']) {
        let decoded = percent_decode(seg).unwrap_or_default();
        if decoded == "." || decoded == ".." {
            return Err(config_error(format!(
                "URL '{shown}' has a '{decoded}' path segment; give the path without it"
            )));
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn not_wired(scheme: &str, shown: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        Op::Configure,
        "cloudstore",
        format!(
            "'{shown}': the {scheme} backend is not available in this version of cloudstore \
             (memory:// and file:// are)"
        ),
    )
}

/// An Azure store whose account comes from the URL (unless an option names one).
#[cfg(feature = "azure")]
fn azure_in_account(
    account: &str,
    container: &str,
    prefix_path: &str,
    options: &StoreOptions,
    shown: &str,
) -> Result<Store> {
    let mut opts = options.clone();
    if opts.get("account_name").is_none() && opts.get("azure_storage_account_name").is_none() {
        opts.set("account_name", account);
    }
    let backend = crate::backend::AzureBackend::new(container, &opts)?;
    with_path_prefix(retrying(backend, &opts)?, prefix_path, shown)
}

/// The bucket (or container) named by the URL's host.
#[allow(dead_code)]
fn bucket_of(url: &url::Url, shown: &str) -> Result<String> {
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(h.to_string()),
        _ => Err(config_error(format!(
            "URL '{shown}' names no bucket: {}://bucket/prefix",
            url.scheme()
        ))),
    }
}

/// A cloud backend behind the retry middleware: `max_retries` (default 3) retries after
/// the first attempt.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn retrying(backend: impl crate::Backend, options: &StoreOptions) -> Result<Store> {
    let mut policy = crate::middleware::RetryPolicy::default();
    if let Some(v) = options.get("max_retries") {
        let retries: u32 = v.parse().map_err(|_| {
            config_error(format!("option 'max_retries' has an invalid value '{v}'"))
        })?;
        policy.max_attempts = retries.saturating_add(1);
    }
    let backend = crate::middleware::RetryBackend::new(observed(backend), policy);
    Ok(Store::new(backend))
}

/// `backend` with its requests observed ([`crate::observe`]).
fn observed(backend: impl crate::Backend) -> std::sync::Arc<dyn crate::Backend> {
    std::sync::Arc::new(crate::middleware::Observed::new(std::sync::Arc::new(
        backend,
    )))
}

fn with_path_prefix(store: Store, path: &str, shown: &str) -> Result<Store> {
    let decoded = percent_decode(path)
        .ok_or_else(|| config_error(format!("URL '{shown}' has a path that is not UTF-8")))?;
    let p = decoded.trim_matches('/');
    if p.is_empty() {
        return Ok(store);
    }
    // A prefix in a URL is configuration, where `a//b` or `%00` is far likelier a slip than
    // intent: it must be a portable key (`Store::with_prefix` takes any).
    crate::Key::new(p)
        .and_then(|k| k.check_portable())
        .map_err(|e| config_error(format!("URL '{shown}': {}", e.message())))?;
    store
        .with_prefix(p)
        .map_err(|e| config_error(format!("URL '{shown}': {}", e.message())))
}

/// Decodes `%XX` escapes; `None` if the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_queries() {
        assert_eq!(redact_url("s3://AKIA:secret@bucket/x"), "s3://***@bucket/x");
        assert_eq!(redact_url("s3:AKIA:secret@bucket/x"), "s3:***@bucket/x");
        assert_eq!(
            redact_url("https:u:pw@acct.blob.core.windows.net/c"),
            "https:***@acct.blob.core.windows.net/c"
        );
        assert_eq!(
            redact_url("https://a.blob.core.windows.net/c?sv=1&sig=abc"),
            "https://a.blob.core.windows.net/c?<redacted>"
        );
        assert_eq!(redact_url("s3://bucket/x@y"), "s3://bucket/x@y");
        assert_eq!(redact_url("no scheme"), "no scheme");
        assert_eq!(redact_url("user:pw@host"), "user:***@host");
    }

    #[test]
    fn parses_durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc").unwrap(), "a b/c");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert!(percent_decode("%ff").is_none());
    }
}
