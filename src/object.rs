//! The data types of the API: object metadata, options, ranges, payloads, listings and
//! multipart identifiers.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Op, Result};
use crate::key::Key;

/// User metadata: short string pairs stored with an object.
pub type Metadata = BTreeMap<String, String>;

/// What a backend knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key (relative to the [`Store`](crate::Store)'s prefix).
    pub key: Key,
    /// Size in bytes.
    pub size: u64,
    /// An opaque tag that changes whenever the content changes; used by conditions.
    pub etag: Option<String>,
    /// When the object was last written.
    pub last_modified: SystemTime,
    /// The version id, where the backend keeps versions.
    pub version: Option<String>,
    /// The content type given when the object was written.
    pub content_type: Option<String>,
    /// User metadata given when the object was written. Listings may leave it empty;
    /// [`Store::head`](crate::Store::head) returns it. Through a [`Store`](crate::Store)
    /// it never holds the library's own records (names starting with
    /// [`RESERVED_PREFIX`](crate::attributes::RESERVED_PREFIX)); a [`Backend`](crate::Backend)
    /// returns them here as they are on the wire.
    pub metadata: Metadata,
    /// The CRC32C of the object's bytes, where the library recorded it when it wrote the
    /// object (the transfer engine does for every upload where the backend can store it).
    pub crc32c: Option<u32>,
    /// The ETag of the source object a [`migrate`](crate::migrate) copy came from.
    pub source_etag: Option<String>,
}

/// How a write treats an object that may already exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PutMode {
    /// Replace whatever is there.
    #[default]
    Overwrite,
    /// Write only if no object exists at the key; otherwise
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists).
    Create,
    /// Write only if the current object's ETag equals this one; otherwise (also when there is
    /// no object) [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed).
    IfMatch(String),
}

impl PutMode {
    /// A short name used in capabilities and messages.
    pub fn name(&self) -> &'static str {
        match self {
            PutMode::Overwrite => "overwrite",
            PutMode::Create => "create",
            PutMode::IfMatch(_) => "if-match",
        }
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The condition of the write.
    pub mode: PutMode,
    /// The content type to store (e.g. `application/json`).
    pub content_type: Option<String>,
    /// User metadata to store.
    pub metadata: Metadata,
}

impl PutOptions {
    /// Options with mode [`PutMode::Create`].
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        }
    }

    /// Options with mode [`PutMode::IfMatch`].
    pub fn if_match(etag: impl Into<String>) -> Self {
        PutOptions {
            mode: PutMode::IfMatch(etag.into()),
            ..Default::default()
        }
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds one user metadata pair.
    pub fn with_metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }
}

/// How a copy treats an object that may already exist at the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum CopyMode {
    /// Replace the destination.
    #[default]
    Overwrite,
    /// Copy only if the destination does not exist; otherwise
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists).
    Create,
    /// Copy only if the destination's current ETag is this one; otherwise (also when there
    /// is no destination) [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed).
    IfMatch(String),
}

impl CopyMode {
    /// The same condition, as a write mode.
    pub fn as_put_mode(&self) -> PutMode {
        match self {
            CopyMode::Overwrite => PutMode::Overwrite,
            CopyMode::Create => PutMode::Create,
            CopyMode::IfMatch(e) => PutMode::IfMatch(e.clone()),
        }
    }
}

/// A byte range of an object to read.
///
/// Semantics follow HTTP range requests, the same on every backend:
/// a range that starts at or past the end of the object is
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) ("range not satisfiable"),
/// as is any range of an empty object; an end past the object is cut to its size; a suffix
/// longer than the object reads the whole object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ByteRange {
    /// Bytes `start..end` (end exclusive). Must not be empty.
    Bounded(Range<u64>),
    /// Bytes from an offset to the end.
    From(u64),
    /// The last `n` bytes (`n > 0`).
    Suffix(u64),
}

impl From<Range<u64>> for ByteRange {
    fn from(r: Range<u64>) -> Self {
        ByteRange::Bounded(r)
    }
}

impl From<std::ops::RangeFrom<u64>> for ByteRange {
    fn from(r: std::ops::RangeFrom<u64>) -> Self {
        ByteRange::From(r.start)
    }
}

impl ByteRange {
    /// Checks the range on its own (before the object's size is known).
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            ByteRange::Bounded(r) if r.start >= r.end => {
                Err(format!("empty or reversed range {}..{}", r.start, r.end))
            }
            ByteRange::Suffix(0) => Err("suffix range of 0 bytes".into()),
            _ => Ok(()),
        }
    }

    /// Resolves the range against an object of `size` bytes.
    pub fn resolve(&self, size: u64) -> std::result::Result<Range<u64>, String> {
        self.validate()?;
        let unsatisfiable = || format!("range not satisfiable: {self} of a {size}-byte object");
        if size == 0 {
            return Err(unsatisfiable());
        }
        match *self {
            ByteRange::Bounded(ref r) => {
                if r.start >= size {
                    return Err(unsatisfiable());
                }
                Ok(r.start..r.end.min(size))
            }
            ByteRange::From(start) => {
                if start >= size {
                    return Err(unsatisfiable());
                }
                Ok(start..size)
            }
            ByteRange::Suffix(n) => Ok(size.saturating_sub(n)..size),
        }
    }
}

impl fmt::Display for ByteRange {
    /// The HTTP `Range` header form, e.g. `bytes=0-99`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::Bounded(r) => {
                write!(f, "bytes={}-{}", r.start, r.end.saturating_sub(1))
            }
            ByteRange::From(s) => write!(f, "bytes={s}-"),
            ByteRange::Suffix(n) => write!(f, "bytes=-{n}"),
        }
    }
}

impl std::str::FromStr for ByteRange {
    type Err = String;

    /// Parses the HTTP `Range` form that `Display` prints: `bytes=0-99`, `bytes=100-`,
    /// `bytes=-500` (one range; the result is validated).
    fn from_str(s: &str) -> std::result::Result<ByteRange, String> {
        let bad = || format!("not a byte range: {s:?}");
        let spec = s.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| -> std::result::Result<u64, String> {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        let range = match (a.is_empty(), b.is_empty()) {
            (true, true) => return Err(bad()),
            (true, false) => ByteRange::Suffix(num(b)?),
            (false, true) => ByteRange::From(num(a)?),
            (false, false) => {
                let (start, last) = (num(a)?, num(b)?);
                let end = last.checked_add(1).ok_or_else(bad)?;
                ByteRange::Bounded(start..end)
            }
        };
        range.validate()?;
        Ok(range)
    }
}

/// Options of a read.
///
/// Conditions are evaluated as HTTP does (RFC 9110): `if_match`, then
/// `if_unmodified_since` (only without `if_match`), then `if_none_match`, then
/// `if_modified_since` (only without `if_none_match`). Times compare at whole seconds, the
/// precision of HTTP dates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read only these bytes.
    pub range: Option<ByteRange>,
    /// Fail with `PreconditionFailed` unless the ETag equals this.
    pub if_match: Option<String>,
    /// Fail with `NotModified` if the ETag equals this.
    pub if_none_match: Option<String>,
    /// Fail with `NotModified` unless modified after this time.
    pub if_modified_since: Option<SystemTime>,
    /// Fail with `PreconditionFailed` if modified after this time.
    pub if_unmodified_since: Option<SystemTime>,
}

impl GetOptions {
    /// Options reading only `range`.
    pub fn range(range: impl Into<ByteRange>) -> Self {
        GetOptions {
            range: Some(range.into()),
            ..Default::default()
        }
    }

    /// Evaluates the conditions against an object's metadata, for backends that evaluate
    /// them locally. Returns the kind of failure, if any.
    pub fn check_conditions(&self, meta: &ObjectMeta) -> Option<crate::ErrorKind> {
        use crate::ErrorKind;
        let etag = meta.etag.as_deref();
        let modified = unix_secs(meta.last_modified);
        if let Some(want) = &self.if_match {
            if want != "*" && Some(want.as_str()) != etag {
                return Some(ErrorKind::PreconditionFailed);
            }
        } else if let Some(t) = self.if_unmodified_since
            && modified > unix_secs(t)
        {
            return Some(ErrorKind::PreconditionFailed);
        }
        if let Some(not) = &self.if_none_match {
            if not == "*" || Some(not.as_str()) == etag {
                return Some(ErrorKind::NotModified);
            }
        } else if let Some(t) = self.if_modified_since
            && modified <= unix_secs(t)
        {
            return Some(ErrorKind::NotModified);
        }
        None
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    }
}

/// The bytes of a write: one or more [`Bytes`] chunks sent as they are, without copying.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    chunks: Vec<Bytes>,
    len: u64,
    /// The CRC64-NVME of the bytes, when the code that gathered them computed it on the
    /// way in (the upload engine does, for stores that send it); not part of equality.
    crc64nvme: Option<u64>,
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.chunks == other.chunks
    }
}

impl Eq for Payload {}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len() as u64;
            self.chunks.push(chunk);
            self.crc64nvme = None;
        }
    }

    /// Records the CRC64-NVME of the bytes as they are now, computed by the caller while
    /// it gathered them (a later [`push`](Self::push) forgets it).
    pub(crate) fn set_crc64nvme(&mut self, crc: u64) {
        self.crc64nvme = Some(crc);
    }

    /// The CRC64-NVME of the bytes: the recorded one, else computed over the chunks.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn crc64nvme(&self) -> u64 {
        self.crc64nvme.unwrap_or_else(|| {
            let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
            for c in &self.chunks {
                digest.update(c);
            }
            digest.finalize()
        })
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Consumes the payload into its chunks.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The bytes `range` of the payload as slices of its chunks, without copying.
    /// Bytes past the end are not there: the slices then cover less than asked.
    pub fn slice(&self, range: Range<u64>) -> Vec<Bytes> {
        let mut out = Vec::new();
        if range.is_empty() {
            return out;
        }
        let mut at = 0u64;
        for c in &self.chunks {
            let end = at + c.len() as u64;
            if end > range.start && at < range.end {
                let from = range.start.saturating_sub(at) as usize;
                let to = (range.end.min(end) - at) as usize;
                out.push(c.slice(from..to));
            }
            at = end;
            if at >= range.end {
                break;
            }
        }
        out
    }

    /// One contiguous buffer (copies only if there is more than one chunk).
    pub fn into_bytes(self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut buf = BytesMut::with_capacity(self.len as usize);
                for c in &self.chunks {
                    buf.extend_from_slice(c);
                }
                buf.freeze()
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        let mut p = Payload::new();
        p.push(b);
        p
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<&'static [u8]> for Payload {
    fn from(v: &'static [u8]) -> Self {
        Bytes::from_static(v).into()
    }
}

impl<const N: usize> From<&'static [u8; N]> for Payload {
    fn from(v: &'static [u8; N]) -> Self {
        Bytes::from_static(v).into()
    }
}

impl From<&'static str> for Payload {
    fn from(v: &'static str) -> Self {
        Bytes::from_static(v.as_bytes()).into()
    }
}

impl From<String> for Payload {
    fn from(v: String) -> Self {
        Bytes::from(v).into()
    }
}

impl From<Vec<Bytes>> for Payload {
    fn from(v: Vec<Bytes>) -> Self {
        let mut p = Payload::new();
        for c in v {
            p.push(c);
        }
        p
    }
}

/// A stream of byte chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The answer to a read: metadata, the range served, and the body as a stream.
pub struct GetResult {
    /// The object's metadata (of the whole object, not the range).
    pub meta: ObjectMeta,
    /// The bytes of the object this body holds.
    pub range: Range<u64>,
    /// The body; it yields exactly `range.end - range.start` bytes or an error.
    pub body: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl GetResult {
    /// Reads the whole body into one buffer, checking its length.
    pub async fn bytes(self) -> Result<Bytes> {
        let expected = self.range.end - self.range.start;
        let key = self.meta.key.clone();
        let mut chunks: Vec<Bytes> = self.body.try_collect().await?;
        let got: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if got != expected {
            return Err(Error::new(
                crate::ErrorKind::Other,
                Op::Get,
                "cloudstore",
                format!("body ended after {got} of {expected} bytes"),
            )
            .with_key(key.as_str())
            .with_retryable(true));
        }
        Ok(if chunks.len() == 1 {
            chunks.pop().unwrap_or_default()
        } else {
            Payload::from(chunks).into_bytes()
        })
    }

    /// A body stream that fails with a retryable error if it ends before `range` is
    /// complete, or yields more bytes than `range` holds.
    pub fn into_checked_stream(self) -> ByteStream {
        let expected = self.range.end - self.range.start;
        let key = self.meta.key.into_string();
        let state = (self.body, 0u64, false);
        futures::stream::unfold(state, move |(mut body, seen, done)| {
            let key = key.clone();
            async move {
                if done {
                    return None;
                }
                let short = |seen: u64| {
                    Error::new(
                        crate::ErrorKind::Other,
                        Op::Get,
                        "cloudstore",
                        format!("body held {seen} bytes, expected {expected}"),
                    )
                    .with_key(key.clone())
                    .with_retryable(true)
                };
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let seen = seen + chunk.len() as u64;
                        if seen > expected {
                            return Some((Err(short(seen)), (body, seen, true)));
                        }
                        Some((Ok(chunk), (body, seen, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (body, seen, true))),
                    None if seen != expected => Some((Err(short(seen)), (body, seen, true))),
                    None => None,
                }
            }
        })
        .boxed()
    }
}

/// A request for one page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys starting with this string (a plain string prefix, not a path).
    pub prefix: String,
    /// Group keys that have a `/` after the prefix into common prefixes.
    pub delimiter: bool,
    /// Continue after this token (from [`ListPage::next_token`]).
    pub token: Option<String>,
    /// At most this many entries (objects plus common prefixes); the backend may cap it
    /// ([`Capabilities::max_list_page`](crate::Capabilities::max_list_page)).
    pub max_keys: Option<usize>,
    /// Only keys that sort after this one (byte order), for listings without a
    /// delimiter. S3, GCS, memory and fs start there; a backend that cannot (Azure lists
    /// only by prefix) lists from the prefix and [`Store::list_page`](crate::Store::list_page)
    /// drops what sorts before, so the answer is the same everywhere, only slower.
    pub start_after: Option<String>,
}

impl ListRequest {
    /// Where a backend that continues after the last key returned should continue: the
    /// later of the page token and [`ListRequest::start_after`] (memory and fs use keys as
    /// tokens).
    pub(crate) fn resume_after(&self) -> Option<&str> {
        match (self.token.as_deref(), self.start_after.as_deref()) {
            (Some(t), Some(s)) if !self.delimiter => Some(t.max(s)),
            (Some(t), _) => Some(t),
            (None, s) => s.filter(|_| !self.delimiter),
        }
    }
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in byte order of their keys.
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the distinct `prefix + segment + "/"` strings, in order.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next_token: Option<String>,
}

/// A complete listing with a delimiter: objects directly under a prefix and the common
/// prefixes ("directories") below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects directly under the prefix.
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes, each ending with `/`.
    pub common_prefixes: Vec<String>,
}

/// The id a backend gives a multipart upload; with the key, it is all another process
/// needs to continue, complete or abort the upload.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UploadId(pub String);

impl UploadId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A part's number in a multipart upload: 1 to the backend's
/// [`max_parts`](crate::Capabilities::max_parts).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PartNumber(u32);

impl PartNumber {
    /// Part number `n`; 0 is invalid.
    pub fn new(n: u32) -> Result<PartNumber> {
        if n == 0 {
            return Err(Error::invalid_input(
                Op::PutPart,
                "cloudstore",
                "part numbers start at 1",
            ));
        }
        Ok(PartNumber(n))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What completing an upload needs to know of one uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PartInfo {
    /// The part's number.
    pub number: PartNumber,
    /// The tag the backend gave the part.
    pub etag: String,
    /// The part's size in bytes.
    pub size: u64,
}

/// An in-progress multipart upload, as listed by
/// [`Store::list_multipart_uploads`](crate::Store::list_multipart_uploads). Uploads order
/// by key, then id (the order listings return them in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MultipartUploadInfo {
    /// The key the upload will write.
    pub key: Key,
    /// Its id.
    pub upload_id: UploadId,
    /// When it was created, where known.
    pub initiated: Option<SystemTime>,
}

/// A request anyone can send, without credentials, until it expires: the URL and the
/// headers that must go with it (Azure, for one, needs `x-ms-blob-type: BlockBlob` on an
/// upload). Its `Debug` leaves out the URL's query, where the signature is.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// The method the URL allows.
    pub method: PresignMethod,
    /// The signed URL. It is a credential until it expires: treat it like one.
    pub url: url::Url,
    /// Headers the request must carry, as name/value pairs.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresignedRequest")
            .field("method", &self.method)
            .field("url", &crate::config::redact_url(self.url.as_str()))
            .field("headers", &self.headers)
            .finish()
    }
}

/// A whole-object checksum the service itself stores and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NativeChecksum {
    /// CRC64-NVME of the whole object (S3's full-object checksum).
    Crc64Nvme(u64),
}

/// The HTTP method a presigned URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresignMethod {
    /// Download.
    Get,
    /// Upload.
    Put,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_slices_cover_any_range_of_its_chunks() {
        let chunks: Vec<Bytes> = ["abc", "", "defg", "h", "ijklmn"]
            .iter()
            .map(|c| Bytes::from_static(c.as_bytes()))
            .collect();
        let p = Payload::from(chunks);
        let all = "abcdefghijklmn";
        for start in 0..=all.len() as u64 {
            for end in start..=all.len() as u64 + 2 {
                let got: Vec<u8> = p.slice(start..end).concat();
                let want = &all.as_bytes()[start as usize..(end as usize).min(all.len())];
                assert_eq!(got, want, "{start}..{end}");
                assert!(p.slice(start..end).iter().all(|c| !c.is_empty()));
            }
        }
    }

    #[test]
    fn ranges_resolve_like_http() {
        assert_eq!(ByteRange::Bounded(2..5).resolve(10).unwrap(), 2..5);
        assert_eq!(ByteRange::Bounded(8..50).resolve(10).unwrap(), 8..10);
        assert_eq!(ByteRange::From(3).resolve(10).unwrap(), 3..10);
        assert_eq!(ByteRange::Suffix(4).resolve(10).unwrap(), 6..10);
        assert_eq!(ByteRange::Suffix(40).resolve(10).unwrap(), 0..10);
        assert!(ByteRange::Bounded(10..11).resolve(10).is_err());
        assert!(ByteRange::From(10).resolve(10).is_err());
        assert!(ByteRange::Bounded(3..3).resolve(10).is_err());
        assert!(ByteRange::Suffix(0).resolve(10).is_err());
        assert!(ByteRange::Suffix(1).resolve(0).is_err());
        assert_eq!(ByteRange::Bounded(0..100).to_string(), "bytes=0-99");
    }

    #[test]
    fn payload_keeps_chunks_without_copy() {
        let a = Bytes::from_static(b"abc");
        let p = Payload::from(vec![a.clone(), Bytes::new(), Bytes::from_static(b"de")]);
        assert_eq!(p.len(), 5);
        assert_eq!(p.chunks().len(), 2);
        assert_eq!(p.chunks()[0].as_ptr(), a.as_ptr());
        assert_eq!(&p.into_bytes()[..], b"abcde");
    }
}
