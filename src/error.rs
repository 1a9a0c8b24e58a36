//! The one error type of the crate and its small, closed set of kinds.
//!
//! Every backend maps its failures onto [`ErrorKind`] so that the same situation gives the
//! same kind everywhere: a missing object is [`ErrorKind::NotFound`] on memory, on the local
//! filesystem and on every cloud. The conformance suite checks it.

use std::fmt;

/// Boxed source error kept inside an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `std::result::Result<T, cloudstore::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a closed set a caller can match on.
///
/// The set is deliberately small: each kind is something a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object, upload or container does not exist.
    NotFound,
    /// A write that required absence found an object already there.
    AlreadyExists,
    /// A condition (`IfMatch`, `if_unmodified_since`) did not hold.
    PreconditionFailed,
    /// A conditional read (`if_none_match`, `if_modified_since`) found the object unchanged.
    NotModified,
    /// The request itself is malformed: an invalid key, URL, range or part list.
    InvalidInput,
    /// The credentials are valid but do not allow this operation.
    PermissionDenied,
    /// The credentials are missing, wrong or expired.
    Unauthenticated,
    /// The service asked the client to slow down.
    RateLimited,
    /// The request or the stream took too long.
    Timeout,
    /// The backend cannot do this; see its [`Capabilities`](crate::Capabilities).
    Unsupported,
    /// The data read or written does not match its checksum.
    ChecksumMismatch,
    /// Anything else: I/O failures, unexpected service answers.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same request can help, by default, for this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Timeout)
    }

    /// A short lowercase name, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PreconditionFailed => "precondition failed",
            ErrorKind::NotModified => "not modified",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::Other => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Building a store from a URL or options.
    Configure,
    /// Validating a key or prefix.
    ParseKey,
    /// Single-shot write.
    Put,
    /// Read.
    Get,
    /// Metadata read.
    Head,
    /// Delete.
    Delete,
    /// Listing.
    List,
    /// Server-side copy.
    Copy,
    /// Start of a multipart upload.
    CreateMultipart,
    /// Upload of one part.
    PutPart,
    /// Completion of a multipart upload.
    CompleteMultipart,
    /// Abort of a multipart upload.
    AbortMultipart,
    /// Listing of in-progress multipart uploads.
    ListMultipart,
    /// Creation of a presigned URL.
    Presign,
    /// A sync or sharded sync job (its plan, claims and state).
    Sync,
}

impl Op {
    /// A short lowercase name, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Configure => "configure",
            Op::ParseKey => "parse key",
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Copy => "copy",
            Op::CreateMultipart => "create multipart",
            Op::PutPart => "put part",
            Op::CompleteMultipart => "complete multipart",
            Op::AbortMultipart => "abort multipart",
            Op::ListMultipart => "list multipart",
            Op::Presign => "presign",
            Op::Sync => "sync",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from any operation of the crate.
///
/// It carries its [`ErrorKind`], the [`Op`] it happened in, the key (when there is one), the
/// backend's name, a message, and the underlying source error. Its `Display` reads like
/// `get "a/b.txt" on fs: not found: no such object`.
///
/// ```
/// use cloudstore::{Error, ErrorKind, Op};
/// let e = Error::new(ErrorKind::NotFound, Op::Get, "memory", "no such object").with_key("a/b");
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// assert_eq!(e.to_string(), r#"get "a/b" on memory: not found: no such object"#);
/// assert!(!e.is_retryable());
/// ```
#[derive(thiserror::Error)]
#[error("{op}{key} on {backend}: {kind}: {message}", key = KeyDisplay(.key.as_deref()))]
pub struct Error {
    kind: ErrorKind,
    op: Op,
    backend: String,
    key: Option<String>,
    message: String,
    retryable: bool,
    #[source]
    source: Option<BoxError>,
}

struct KeyDisplay<'a>(Option<&'a str>);

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, " {k:?}"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("op", &self.op)
            .field("backend", &self.backend)
            .field("key", &self.key)
            .field("message", &self.message)
            .field("retryable", &self.retryable);
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl Error {
    /// A new error; whether it is retryable follows from the kind
    /// (see [`ErrorKind::is_retryable`]) until [`Error::with_retryable`] says otherwise.
    pub fn new(
        kind: ErrorKind,
        op: Op,
        backend: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error {
            kind,
            op,
            backend: backend.into(),
            key: None,
            message: message.into(),
            retryable: kind.is_retryable(),
            source: None,
        }
    }

    /// Names the key the operation was about.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Keeps the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether a retry can help (e.g. a 500 from a service is `Other` but retryable).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Replaces the operation (used when an error crosses layers).
    pub fn with_op(mut self, op: Op) -> Self {
        self.op = op;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The name of the backend that answered (e.g. `memory`, `fs`, `s3`).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The key concerned, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The human-readable detail.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same request can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Builds an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(op: Op, backend: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, op, backend, message)
    }

    /// Builds an [`ErrorKind::NotFound`] error for a key.
    pub fn not_found(op: Op, backend: &str, key: &str) -> Self {
        Error::new(ErrorKind::NotFound, op, backend, "no such object").with_key(key)
    }

    /// Builds an [`ErrorKind::AlreadyExists`] error for a key (a write that required absence).
    pub fn already_exists(op: Op, backend: &str, key: &str) -> Self {
        Error::new(
            ErrorKind::AlreadyExists,
            op,
            backend,
            "an object already exists at this key",
        )
        .with_key(key)
    }

    /// Builds an [`ErrorKind::Unsupported`] error.
    pub fn unsupported(op: Op, backend: &str, what: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, op, backend, what)
    }

    /// Maps a local I/O error onto a kind (not found, permission denied, timeout, other).
    pub fn from_io(op: Op, backend: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::TimedOut => ErrorKind::Timeout,
            Io::InvalidInput | Io::InvalidFilename => ErrorKind::InvalidInput,
            Io::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        };
        let retryable = matches!(
            err.kind(),
            Io::TimedOut | Io::Interrupted | Io::ConnectionReset | Io::ConnectionAborted
        );
        Error::new(kind, op, backend, err.to_string())
            .with_source(err)
            .with_retryable(retryable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_names_op_key_backend_kind() {
        let e = Error::new(ErrorKind::PreconditionFailed, Op::Put, "fs", "etag differs")
            .with_key("x/y");
        assert_eq!(
            e.to_string(),
            r#"put "x/y" on fs: precondition failed: etag differs"#
        );
    }

    #[test]
    fn io_errors_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::from_io(Op::Get, "fs", io);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.source().unwrap().to_string(), "gone");
    }

    #[test]
    fn retryable_follows_kind_unless_overridden() {
        assert!(Error::new(ErrorKind::RateLimited, Op::Get, "s3", "slow down").is_retryable());
        assert!(!Error::new(ErrorKind::Other, Op::Get, "s3", "500").is_retryable());
        assert!(
            Error::new(ErrorKind::Other, Op::Get, "s3", "500")
                .with_retryable(true)
                .is_retryable()
        );
    }
}
