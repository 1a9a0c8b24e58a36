//! The backend SPI: the small set of primitives a storage provider really has.
//!
//! A [`Backend`] is deliberately dumb: it stores and returns bytes under validated keys,
//! evaluates conditions, and offers id-based multipart primitives. Policy (key prefixes,
//! part sizing, concurrency, retries) lives above it, in [`Store`](crate::Store) and the
//! middleware, written once for every backend.
//!
//! Implement this trait to plug in a provider of your own, then run the
//! [conformance suite](crate::conformance) (feature `conformance`) against it.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, MultipartUploadInfo, ObjectMeta,
    PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest, PutMode, PutOptions, UploadId,
};

#[cfg(feature = "azure")]
pub mod azure;
pub mod checks;
pub mod fs;
#[cfg(feature = "gcs")]
pub mod gcs;
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
mod http_status;
pub(crate) mod listing;
pub mod memory;
#[cfg(any(feature = "s3", feature = "azure"))]
mod object_store_core;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(feature = "s3", feature = "azure"))]
mod wire;

#[cfg(feature = "azure")]
pub use azure::AzureBackend;
pub use fs::FsBackend;
#[cfg(feature = "gcs")]
pub use gcs::GcsBackend;
pub use memory::MemoryBackend;
#[cfg(feature = "s3")]
pub use s3::S3Backend;

/// Which conditional write modes a write path supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConditionalModes {
    /// [`PutMode::Create`]: write only if absent.
    pub create: bool,
    /// [`PutMode::IfMatch`]: write only if the ETag matches.
    pub if_match: bool,
}

impl ConditionalModes {
    /// Both modes.
    pub const ALL: ConditionalModes = ConditionalModes {
        create: true,
        if_match: true,
    };
    /// Neither mode.
    pub const NONE: ConditionalModes = ConditionalModes {
        create: false,
        if_match: false,
    };

    /// Whether `mode` is supported (`Overwrite` always is).
    pub fn supports(&self, mode: &PutMode) -> bool {
        match mode {
            PutMode::Overwrite => true,
            PutMode::Create => self.create,
            PutMode::IfMatch(_) => self.if_match,
        }
    }
}

/// What a backend can do, as plain data that the transfer engine, the conformance suite and
/// users all read. A feature marked absent answers
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), never a silent fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Smallest size of a multipart part other than the last (S3: 5 MiB).
    pub min_part_size: u64,
    /// Largest size of a part (S3: 5 GiB).
    pub max_part_size: u64,
    /// Most parts in one upload (S3: 10,000).
    pub max_parts: u32,
    /// Largest object, if bounded (S3: 5 TiB).
    pub max_object_size: Option<u64>,
    /// Conditional modes of single-shot [`Backend::put`].
    pub put_modes: ConditionalModes,
    /// Conditional modes of [`Backend::complete_multipart`].
    pub multipart_modes: ConditionalModes,
    /// Whether [`CopyMode::Create`] (copy only if the destination is absent) is supported.
    pub copy_if_absent: bool,
    /// Whether [`CopyMode::IfMatch`] (copy only over a given version) is supported.
    pub copy_if_match: bool,
    /// Whether [`Backend::list_multipart_uploads`] is supported.
    pub multipart_listing: bool,
    /// Whether [`Backend::complete_multipart_with_metadata`] can add metadata when an upload
    /// completes (S3 fixes metadata when the upload is created). The transfer engine stores
    /// an object's checksum that way.
    pub complete_metadata: bool,
    /// Whether [`Backend::abort_multipart`] discards the uploaded parts, so that the upload
    /// can no longer be completed. Azure keeps uncommitted blocks until it collects them.
    pub abort_discards_parts: bool,
    /// Whether [`Backend::presign`] is supported.
    pub presign: bool,
    /// Longest presigned URL lifetime the provider accepts.
    pub max_presign_expiry: Duration,
    /// Whether user metadata is stored.
    pub user_metadata: bool,
    /// Whether the content type is stored.
    pub content_type: bool,
    /// Largest page a listing returns.
    pub max_list_page: usize,
    /// Whether an object and keys below it can coexist (`a` and `a/b`). A directory on a
    /// filesystem cannot also be a file, so the `fs` backend answers `false`.
    pub object_and_children: bool,
    /// The longest segment (text between `/`) a key may have, if the backend limits it
    /// beyond [`MAX_KEY_LEN`](crate::MAX_KEY_LEN); a longer one is `InvalidInput`.
    pub max_key_segment_len: Option<usize>,
    /// Whether `\\` is kept in keys as given (some S3-compatible stores turn it into `/`).
    /// Where it is not, keys with `\\` are refused with `Unsupported`.
    pub backslash_in_keys: bool,
    /// Whether keys that are not plain relative paths (empty segments as in `a//b`,
    /// `dir/` or `/lead`; `.` and `..` segments) are kept exactly as given. Where false they
    /// are refused with `Unsupported`: a store that cannot name them must not write them
    /// under another name.
    pub raw_keys: bool,
    /// Whether keys with `.` or `..` segments are kept as given (Azure resolves them as URL
    /// path segments, so it refuses them with `InvalidInput`, as its service does).
    pub dot_segments_in_keys: bool,
    /// Whether a listing can start after a key ([`ListRequest::start_after`]). Where false,
    /// [`Store`](crate::Store) lists from the prefix and drops what sorts before: the same
    /// answer, more pages.
    pub list_start_after: bool,
    /// Whether [`Backend::native_checksum`] asks the service (a request); where false it
    /// answers `None` without one.
    pub native_checksum: bool,
    /// Whether every write (a PUT, each part) carries a CRC64-NVME of its bytes that the
    /// service checks (S3 with `checksum_algorithm=crc64nvme`, the default). The streaming
    /// [`Upload`](crate::Upload) then computes it as the bytes come in, while they are
    /// still in the CPU caches, instead of the backend reading every part again before it
    /// sends it.
    pub sends_crc64nvme: bool,
    /// Whether parts sent side by side go faster than one at a time: true for network
    /// stores. False for a local directory, where one writer keeps the page cache busy and
    /// parts held in flight only leave the CPU caches before they are written; the
    /// streaming [`Upload`](crate::Upload) then sends each part as soon as it is full, one
    /// at a time.
    pub parallel_parts: bool,
    /// Whether [`Backend::create_multipart`] is one request to the service (S3, GCS), so
    /// that its time is a round trip: the streaming [`Upload`](crate::Upload) sizes its
    /// parts after the first by it (see
    /// [`TransferConfig::adapt_to_latency`](crate::transfer::TransferConfig::adapt_to_latency)).
    /// False where it is local bookkeeping (Azure, whose blocks need no creation; memory;
    /// fs).
    pub create_multipart_round_trip: bool,
}

impl Capabilities {
    /// The limits of S3, which memory and fs copy by default so that code tested on them
    /// behaves the same in the cloud.
    pub fn s3_like() -> Self {
        Capabilities {
            min_part_size: 5 * MIB,
            max_part_size: 5 * GIB,
            max_parts: 10_000,
            max_object_size: Some(5 * TIB),
            put_modes: ConditionalModes::ALL,
            multipart_modes: ConditionalModes::ALL,
            copy_if_absent: true,
            copy_if_match: true,
            multipart_listing: true,
            abort_discards_parts: true,
            complete_metadata: true,
            presign: false,
            max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
            user_metadata: true,
            content_type: true,
            max_list_page: 1000,
            object_and_children: true,
            max_key_segment_len: None,
            backslash_in_keys: true,
            raw_keys: true,
            dot_segments_in_keys: true,
            list_start_after: true,
            native_checksum: false,
            sends_crc64nvme: false,
            parallel_parts: true,
            create_multipart_round_trip: false,
        }
    }
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;
/// One tebibyte.
pub const TIB: u64 = 1024 * GIB;

/// The storage provider interface. Keys arrive validated; each method documents the
/// semantics every implementation must give (the conformance suite checks them).
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// A short name used in errors and logs (`memory`, `fs`, `s3`, ...).
    fn name(&self) -> &str;

    /// What this backend supports.
    fn capabilities(&self) -> &Capabilities;

    /// Whether this backend retries failed requests itself (as
    /// [`RetryBackend`](crate::middleware::RetryBackend) does). The transfer engine then
    /// sends each part and range once instead of retrying on top, so that attempts do not
    /// multiply and the retry budget holds.
    fn retries_requests(&self) -> bool {
        false
    }

    /// Writes a whole object in one request, honouring `opts.mode`.
    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta>;

    /// Reads an object or a range of it, honouring the conditions of `opts`.
    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult>;

    /// Reads an object's metadata, including user metadata.
    async fn head(&self, key: &Key) -> Result<ObjectMeta>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Lists one page of keys starting with `req.prefix`, in byte order.
    async fn list(&self, req: &ListRequest) -> Result<ListPage>;

    /// Copies an object within this backend, keeping content type and user metadata.
    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta>;

    /// Starts a multipart upload; content type and metadata come from `opts`, while the
    /// condition is enforced by [`Backend::complete_multipart`].
    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId>;

    /// Uploads part `part`; uploading the same number again replaces it.
    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo>;

    /// Assembles the listed parts (ascending numbers, every part but the last at least
    /// [`Capabilities::min_part_size`]) into the object, honouring `mode`. The object is
    /// invisible until this succeeds.
    async fn complete_multipart(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
    ) -> Result<ObjectMeta> {
        self.complete_multipart_with_metadata(
            key,
            upload,
            parts,
            mode,
            &crate::object::Metadata::new(),
        )
        .await
    }

    /// [`Backend::complete_multipart`], adding `metadata` to what the upload was created
    /// with (the transfer engine stores an object's checksum this way). Backends that
    /// cannot ([`Capabilities::complete_metadata`] is false) answer `Unsupported` unless
    /// `metadata` is empty: [`checks::check_completion_metadata`] says so.
    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &crate::object::Metadata,
    ) -> Result<ObjectMeta>;

    /// Discards an upload and its parts; aborting an unknown upload succeeds.
    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()>;

    /// The whole-object checksum the service stores for `key`, if it keeps one (S3 keeps a
    /// CRC64-NVME when uploads send it). Downloads verify against it when the object has no
    /// `cloudstore-crc32c` metadata.
    async fn native_checksum(&self, key: &Key) -> Result<Option<crate::object::NativeChecksum>> {
        let _ = key;
        Ok(None)
    }

    /// Lists in-progress multipart uploads whose key starts with `prefix`.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let _ = prefix;
        Err(Error::unsupported(
            Op::ListMultipart,
            self.name(),
            "listing multipart uploads is not supported by this backend",
        ))
    }

    /// A request that allows `method` on `key` without credentials until `expires_in`
    /// passes.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        let _ = (method, expires_in);
        Err(Error::unsupported(
            Op::Presign,
            self.name(),
            "presigned URLs are not supported by this backend",
        )
        .with_key(key.as_str()))
    }
}
