//! What the S3 and Azure backends take from `object_store` the same way: configuration
//! checks, the HTTP client for their requests, `object_store`'s errors (from building a
//! store and fetching credentials) mapped onto ours, and the metadata-name escape.

use std::error::Error as StdError;
use std::time::Duration;

use super::http_status::{kind_for_status, provider_code, scrub};
use crate::error::{Error, ErrorKind, Op, Result};

/// Options read by this crate rather than passed to `object_store`'s builders.
pub(crate) const RETRY_OPTIONS: &[&str] = &["max_retries"];

/// Refuses a plain `http://` endpoint unless it was allowed explicitly: requests (and
/// their credentials) must not leave unencrypted by accident.
pub(crate) fn check_plain_http(name: &str, endpoint: Option<&str>, allowed: bool) -> Result<()> {
    let plain = endpoint.is_some_and(|e| {
        e.trim_start()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    });
    if plain && !allowed {
        return Err(Error::invalid_input(
            Op::Configure,
            name,
            "the endpoint uses plain HTTP; set allow_http=true to allow it (local emulators, \
             trusted networks)",
        ));
    }
    Ok(())
}

/// Whether an `object_store` `allow_http` setting says yes.
pub(crate) fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The client for the few requests built by hand: the configured `timeout` (default 60 s)
/// bounds each, so none can hang.
pub(crate) fn http_client(timeout: Option<String>) -> reqwest::Client {
    let timeout = timeout
        .as_deref()
        .and_then(crate::config::parse_duration)
        .unwrap_or(Duration::from_secs(60));
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_default()
}

/// Finds the HTTP status and body of the request that failed. `object_store` keeps them
/// in a crate-private error type, so they are read from its message, which has the stable
/// form "Server returned non-2xx status code: 404 Not Found: <body>".
fn http_failure(e: &(dyn StdError + 'static)) -> Option<(u16, String)> {
    const STATUS: &str = "Server returned non-2xx status code: ";
    const ERROR_BODY: &str = "Server returned error response: ";
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        // A 200 whose body is an error, after object_store's own retries.
        if let Some(body) = text.strip_prefix(ERROR_BODY) {
            return Some((200, body.to_string()));
        }
        if let Some(rest) = text.strip_prefix(STATUS) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(status) = digits.parse() {
                let body = rest
                    .split_once(": ")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
                return Some((status, body));
            }
        }
        cur = err.source();
    }
    None
}

/// Whether the failure was a timeout of the connection or request.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            return h.kind() == object_store::client::HttpErrorKind::Timeout;
        }
        cur = err.source();
    }
    false
}

/// Maps an `object_store` error onto ours, naming the operation and key.
pub(crate) fn map_error(name: &str, op: Op, key: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let failure = http_failure(&e);
    let auth_failure = failure.as_ref().is_some_and(|(status, body)| {
        kind_for_status(*status, body).0 == ErrorKind::Unauthenticated
    });
    let (kind, retryable) = match (&e, &failure) {
        // object_store's own grouping knows the request's mode (a 412 on a create is
        // AlreadyExists), so it wins where it has one; a status refines the rest. A 409 is
        // decided by the provider's code: not every conflict is "already exists".
        (E::AlreadyExists { .. }, Some((409, body))) => kind_for_status(409, body),
        (E::NotFound { .. }, _) => (ErrorKind::NotFound, false),
        (E::AlreadyExists { .. }, _) => (ErrorKind::AlreadyExists, false),
        (E::Precondition { .. }, _) => (ErrorKind::PreconditionFailed, false),
        (E::NotModified { .. }, _) => (ErrorKind::NotModified, false),
        (E::PermissionDenied { .. }, _) if auth_failure => (ErrorKind::Unauthenticated, false),
        (E::PermissionDenied { .. }, _) => (ErrorKind::PermissionDenied, false),
        (E::Unauthenticated { .. }, _) => (ErrorKind::Unauthenticated, false),
        (E::NotSupported { .. } | E::NotImplemented { .. }, _) => (ErrorKind::Unsupported, false),
        (E::InvalidPath { .. }, _) => (ErrorKind::InvalidInput, false),
        (E::UnknownConfigurationKey { .. }, _) => (ErrorKind::InvalidInput, false),
        (_, Some((status, body))) => kind_for_status(*status, body),
        // Building a client sends nothing: what fails there is the configuration.
        _ if op == Op::Configure => (ErrorKind::InvalidInput, false),
        _ if timed_out(&e) => (ErrorKind::Timeout, true),
        // No HTTP status: the connection failed or the body was cut.
        _ => (ErrorKind::Other, true),
    };
    // Only the status and the provider's code: object_store's own messages carry request
    // URIs, which for SAS-authenticated stores would carry the signature.
    // Service bodies can echo what was signed (AWS SignatureDoesNotMatch carries the
    // canonical request, session token included; Azure echoes the MAC), so neither the
    // message nor the kept source repeats a body: status and code only.
    let (message, source) = match &failure {
        Some((status, body)) => {
            let m = format!("HTTP {status}{}", provider_code(body));
            (m.clone(), m)
        }
        None => {
            let chain = error_chain(&e);
            let cut = chain.split("Server returned").next().unwrap_or_default();
            (scrub(&e.to_string()), scrub(cut))
        }
    };
    Error::new(kind, op, name, message)
        .with_key(key)
        .with_retryable(retryable)
        .with_source(Scrubbed(source))
}

/// An error's message and its sources', joined.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// The underlying error, as text with secrets scrubbed (see [`scrub`]).
#[derive(Debug)]
struct Scrubbed(String);

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Scrubbed {}

/// The escape for metadata names a provider would refuse (see [`escape_name`]).
const ESCAPE: &str = "csx_";

/// Azure metadata names must be C# identifiers; S3 and GCS take any token. Names that are
/// identifiers (and do not start with the escape) pass unchanged; others travel as
/// `csx_` + hex of their bytes and come back as they were, so metadata moves between
/// clouds intact.
pub(crate) fn escape_name(name: &str) -> String {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier && !name.to_ascii_lowercase().starts_with(ESCAPE) {
        return name.to_string();
    }
    let mut out = String::from(ESCAPE);
    for b in name.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The inverse of [`escape_name`].
pub(crate) fn unescape_name(name: &str) -> String {
    let Some(hex) = name
        .get(..ESCAPE.len())
        .filter(|p| p.eq_ignore_ascii_case(ESCAPE))
        .map(|_| &name[ESCAPE.len()..])
    else {
        return name.to_string();
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .filter(|_| hex.len() % 2 == 0)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(&'static str);
    impl std::fmt::Display for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Fake {}

    fn generic(text: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Fake(text)),
        }
    }

    #[test]
    fn service_bodies_never_reach_messages_or_sources() {
        // A real AWS SignatureDoesNotMatch body echoes the canonical request.
        let e = generic(
            "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code>\
             <AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId><CanonicalRequest>x-amz-security-token:SESSIONSECRET\
             </CanonicalRequest></Error>",
        );
        let mapped = map_error("s3", Op::Get, "k", e);
        assert_eq!(mapped.kind(), ErrorKind::Unauthenticated);
        let shown = format!("{mapped} {mapped:?} {}", error_chain(&mapped));
        assert!(
            !shown.contains("SESSIONSECRET") && !shown.contains("AKIAEXAMPLE"),
            "{shown}"
        );
        assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
    }

    #[test]
    fn error_bodies_in_200_answers_and_conflicts_are_classified() {
        let slow = generic("Server returned error response: <Error><Code>SlowDown</Code></Error>");
        let m = map_error("s3", Op::Put, "k", slow);
        assert_eq!(m.kind(), ErrorKind::RateLimited);
        assert!(m.is_retryable());
        let lease = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: Box::new(Fake(
                "Server returned non-2xx status code: 409 Conflict: <Error><Code>LeaseIdMissing</Code></Error>",
            )),
        };
        assert_eq!(
            map_error("azure", Op::Put, "k", lease).kind(),
            ErrorKind::Other
        );
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: Box::new(Fake(
                "Server returned non-2xx status code: 409 Conflict: <Error><Code>BlobAlreadyExists</Code></Error>",
            )),
        };
        assert_eq!(
            map_error("azure", Op::Put, "k", exists).kind(),
            ErrorKind::AlreadyExists
        );
        let expired = generic(
            "Server returned non-2xx status code: 400 Bad Request: <Error><Code>ExpiredToken</Code></Error>",
        );
        assert_eq!(
            map_error("s3", Op::Get, "k", expired).kind(),
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn metadata_names_escape_and_come_back() {
        for name in [
            "owner",
            "run-id",
            "source.system",
            "csx_tricky",
            "Mixed_Case1",
            "ünï",
            "9lives",
        ] {
            let escaped = escape_name(name);
            assert!(
                escaped
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{escaped}"
            );
            assert_eq!(unescape_name(&escaped), name);
        }
        assert_eq!(escape_name("owner"), "owner");
    }
}
