//! HTTP statuses and provider error codes onto [`ErrorKind`], shared by the cloud backends
//! so that the same answer means the same kind whichever client library got it.

use crate::error::ErrorKind;

/// Provider codes that mean the credentials are wrong, missing or expired, whatever the
/// status they come with (S3 sends some with 400, some with 403).
const AUTH_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "AuthenticationFailed",
    "AuthorizationFailure",
    "InvalidAuthenticationInfo",
];

/// Maps a status (and the provider's error code in the body) onto a kind, and whether a
/// retry can help. A code in the body wins over the status where it says more.
pub(crate) fn kind_for_status(status: u16, body: &str) -> (ErrorKind, bool) {
    let has = |code: &str| body.contains(code);
    if AUTH_CODES.iter().any(|c| has(c)) {
        return (ErrorKind::Unauthenticated, false);
    }
    if has("SlowDown") || has("ServerBusy") || has("TooManyRequests") {
        return (ErrorKind::RateLimited, true);
    }
    if has("RequestTimeout") || has("OperationTimedOut") {
        return (ErrorKind::Timeout, true);
    }
    // Too much metadata (S3, Azure) is the caller's input, whatever the status.
    if has("MetadataTooLarge") || has("RequestHeaderSectionTooLarge") {
        return (ErrorKind::InvalidInput, false);
    }
    match status {
        304 => (ErrorKind::NotModified, false),
        // 431: the request's headers (metadata among them) are too large.
        400 | 411 | 413 | 414 | 416 | 431 => (ErrorKind::InvalidInput, false),
        401 => (ErrorKind::Unauthenticated, false),
        403 => (ErrorKind::PermissionDenied, false),
        404 => (ErrorKind::NotFound, false),
        408 => (ErrorKind::Timeout, true),
        // A concurrent conditional write won: the condition no longer holds.
        409 if has("ConditionalRequestConflict") => (ErrorKind::PreconditionFailed, false),
        // Only "already exists" conflicts mean that; others (leases, containers being
        // deleted, archived blobs) are not about existence. No body (a HEAD): assume it.
        409 if body.is_empty() || has("AlreadyExists") => (ErrorKind::AlreadyExists, false),
        409 => (ErrorKind::Other, false),
        412 => (ErrorKind::PreconditionFailed, false),
        429 => (ErrorKind::RateLimited, true),
        500..=599 => (ErrorKind::Other, true),
        // A 200 whose body is an error (S3 on CompleteMultipartUpload and copies).
        200..=299 if has("InternalError") => (ErrorKind::Other, true),
        _ => (ErrorKind::Other, false),
    }
}

/// Whether a 404 body says the bucket or container is missing (not the object).
pub(crate) fn missing_container(body: &str) -> bool {
    body.contains("NoSuchBucket") || body.contains("ContainerNotFound")
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
