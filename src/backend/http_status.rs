//! HTTP statuses and provider error codes onto [`ErrorKind`], shared by the cloud backends
//! so that the same answer means the same kind whichever client library got it.

use crate::error::ErrorKind;

/// Maps a status (and the provider's error code in the body) onto a kind.
pub(crate) fn kind_for_status(status: u16, body: &str) -> (ErrorKind, bool) {
    const AUTH_CODES: &[&str] = &[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "InvalidToken",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "InvalidAuthenticationInfo",
    ];
    match status {
        304 => (ErrorKind::NotModified, false),
        400 | 411 | 413 | 414 | 416 => {
            if body.contains("RequestTimeout") {
                (ErrorKind::Timeout, true)
            } else {
                (ErrorKind::InvalidInput, false)
            }
        }
        401 => (ErrorKind::Unauthenticated, false),
        403 if AUTH_CODES.iter().any(|c| body.contains(c)) => (ErrorKind::Unauthenticated, false),
        403 => (ErrorKind::PermissionDenied, false),
        404 => (ErrorKind::NotFound, false),
        408 => (ErrorKind::Timeout, true),
        409 if body.contains("ConditionalRequestConflict") => {
            (ErrorKind::PreconditionFailed, false)
        }
        409 => (ErrorKind::AlreadyExists, false),
        412 => (ErrorKind::PreconditionFailed, false),
        429 => (ErrorKind::RateLimited, true),
        503 if body.contains("SlowDown") || body.contains("ServerBusy") => {
            (ErrorKind::RateLimited, true)
        }
        500..=599 => (ErrorKind::Other, true),
        _ => (ErrorKind::Other, false),
    }
}

/// ` (Code)` from an XML or JSON error body, if there is one.
#[cfg_attr(not(any(feature = "s3", feature = "azure")), allow(dead_code))]
pub(crate) fn provider_code(body: &str) -> String {
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c.trim().to_string());
    match code {
        Some(c) if !c.is_empty() && c.len() < 80 => format!(" ({c})"),
        _ => String::new(),
    }
}

/// Text with every URL query (where SAS signatures and presigned credentials travel)
/// replaced by `?<redacted>`.
pub(crate) fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        out.push_str("?<redacted>");
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')')
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
