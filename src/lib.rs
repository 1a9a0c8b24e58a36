//! # cloudstore
//!
//! One storage API over memory, a local directory, Amazon S3 and
//! S3-compatible stores, Azure Blob Storage and Google Cloud Storage. Which one is a matter
//! of configuration, a URL plus options, never of code: the same [`Store`] calls, the same
//! typed [`Error`]s, the same conditional-write rules on every backend, proven by one
//! [conformance suite](crate::conformance) (feature `conformance`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cloudstore::{ErrorKind, PutOptions, Store, StoreOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("file://{}", dir.path().display());
//! let store = Store::from_url(&url, &StoreOptions::new())?;
//!
//! // Write only if absent: a second writer gets a typed error, not a silent overwrite.
//! store.put_opts("jobs/42.json", r#"{"state":"new"}"#, &PutOptions::create()).await?;
//! let again = store.put_opts("jobs/42.json", "{}", &PutOptions::create()).await;
//! assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
//!
//! let body = store.get_bytes("jobs/42.json").await?;
//! assert_eq!(body, r#"{"state":"new"}"#);
//! for meta in store.list_all(Some("jobs/")).await? {
//!     println!("{} ({} bytes)", meta.key, meta.size);
//! }
//! # Ok::<(), cloudstore::Error>(()) }).unwrap();
//! ```
//!
//! The layers, top to bottom:
//!
//! - [`Store`]: the cheap-to-clone handle: key prefix, validation, simple operations,
//!   id-based multipart primitives.
//! - [`transfer`]: the engine behind [`Store::writer`], [`Store::upload_file`],
//!   [`Store::download_file`] and [`Store::reader`]: parts in parallel under a memory
//!   budget, retries, CRC32C end to end, resumable file uploads.
//! - [`Backend`]: the small provider interface, with [`Capabilities`] as plain data. The
//!   built-in backends are [`MemoryBackend`], [`FsBackend`] and, with the default features
//!   `s3`, `azure` and `gcs`, `S3Backend` and `AzureBackend` (requests built here,
//!   configured and signed by `object_store`) and `GcsBackend` (over `gcloud-storage`,
//!   JSON API).
//!
//! - [`observe`]: `tracing` spans and `metrics` for every operation, part, range, request
//!   and retry, recorded by [`middleware::Observed`], which every store from
//!   [`Store::from_url`] has over its backend.
//!
//! URLs pick the backend: `memory://`, `file:///dir`, `s3://bucket/prefix`,
//! `az://container/prefix`, `gs://bucket/prefix` (see [`config`]).

#![warn(missing_docs)]

pub mod attributes;
pub mod backend;
#[cfg(feature = "object-store")]
pub mod bridge;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod key;
pub mod middleware;
pub mod migrate;
pub mod object;
pub mod observe;
pub mod store;
pub mod transfer;

#[cfg(feature = "azure")]
pub use backend::AzureBackend;
#[cfg(feature = "gcs")]
pub use backend::GcsBackend;
#[cfg(feature = "s3")]
pub use backend::S3Backend;
pub use backend::{Backend, Capabilities, ConditionalModes, FsBackend, MemoryBackend};
pub use config::StoreOptions;
pub use error::{Error, ErrorKind, Op, Result};
pub use key::{Key, KeyPolicy, MAX_KEY_LEN};
pub use object::{
    ByteRange, ByteStream, CopyMode, GetOptions, GetResult, ListPage, ListRequest, Listing,
    Metadata, MultipartUploadInfo, NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload,
    PresignMethod, PresignedRequest, PutMode, PutOptions, UploadId,
};
pub use store::{ListStream, Store};
pub use transfer::{Progress, ProgressFn, TransferConfig, Upload};
