//! The bridge to [`object_store`] (feature `object-store`), both ways:
//!
//! - [`StoreObjectStore`] ([`Store::into_object_store`]): a [`Store`] as an
//!   [`ObjectStore`](object_store::ObjectStore) for the crates built on that trait
//!   (DataFusion, delta-rs, Polars, Lance, Parquet's async reader), with its middleware,
//!   retries, metrics and key handling intact;
//! - [`ObjectStoreBackend`] ([`Store::from_object_store`]): any `ObjectStore` as a
//!   cloudstore [`Backend`](crate::Backend), under the `Store` API and the conformance
//!   suite.
//!
//! ```no_run
//! # fn main() -> cloudstore::Result<()> {
//! use cloudstore::{Store, StoreOptions};
//! let store = Store::from_url("s3://bucket/tables", &StoreOptions::new())?;
//! let os: std::sync::Arc<dyn object_store::ObjectStore> = store.into_object_store();
//! # Ok(()) }
//! ```
//!
//! How the two models meet in [`StoreObjectStore`]:
//!
//! - Paths and keys: an object_store [`Path`](object_store::path::Path) is used as the key, byte for byte (it is
//!   never percent-decoded). Keys that a `Path` cannot hold (empty or `.`/`..` segments,
//!   a leading or trailing `/`, control characters) are legal in cloudstore and in the
//!   clouds; object_store has no name for them, so its listings skip them, each with a
//!   `tracing` warning. That is object_store's limit: use the [`Store`] itself to reach them.
//! - Listings by prefix are by path segment, as object_store defines them: the prefix `a`
//!   lists `a/...`, never `ab`.
//! - Writes: [`PutMode`](object_store::PutMode) `Create` and `Update` become cloudstore's
//!   `Create` and `IfMatch`, where the backend can hold them atomically
//!   ([`Capabilities::put_modes`](crate::Capabilities::put_modes)); elsewhere they are
//!   [`NotImplemented`](object_store::Error::NotImplemented). `put_multipart_opts` streams
//!   through the transfer engine ([`Store::writer`]): parts, concurrency, memory budget,
//!   checksums and retries as configured for the store.
//! - Attributes: `ContentType` and `Metadata(..)` map to the content type and user
//!   metadata; the other attributes (cache control, content disposition, encoding,
//!   language, storage class) have no place in cloudstore's model and are refused with
//!   `NotImplemented` rather than dropped. Tags are ignored, as object_store allows.
//! - Reads: ranges (bounded, offset, suffix) and the four conditions map one to one; a
//!   `version` is refused (`NotImplemented`).
//! - Errors map to object_store's variants: `NotFound`, `AlreadyExists`, `Precondition`,
//!   `NotModified`, `NotSupported`, `PermissionDenied`, `Unauthenticated`; everything
//!   else is `Generic` with the cloudstore [`Error`] (and its kind) as the source.

mod from_object_store;
mod to_object_store;

pub use from_object_store::ObjectStoreBackend;
pub use to_object_store::StoreObjectStore;

use std::sync::Arc;

use object_store::{Attribute, AttributeValue, Attributes};

use crate::error::{Error, ErrorKind};
use crate::object::Metadata;
use crate::store::Store;

/// The name object_store's errors give this bridge.
const STORE: &str = "cloudstore";

impl Store {
    /// This store as an [`object_store::ObjectStore`], for crates that take an
    /// `Arc<dyn ObjectStore>` (see [`bridge`](crate::bridge)).
    pub fn into_object_store(self) -> Arc<dyn object_store::ObjectStore> {
        Arc::new(StoreObjectStore::new(self))
    }
}

/// A cloudstore error as object_store's, by kind.
pub(crate) fn to_os_error(e: Error) -> object_store::Error {
    let path = e.key().unwrap_or_default().to_string();
    let kind = e.kind();
    let source: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    match kind {
        ErrorKind::NotFound => object_store::Error::NotFound { path, source },
        ErrorKind::AlreadyExists => object_store::Error::AlreadyExists { path, source },
        ErrorKind::PreconditionFailed => object_store::Error::Precondition { path, source },
        ErrorKind::NotModified => object_store::Error::NotModified { path, source },
        ErrorKind::PermissionDenied => object_store::Error::PermissionDenied { path, source },
        ErrorKind::Unauthenticated => object_store::Error::Unauthenticated { path, source },
        ErrorKind::Unsupported => object_store::Error::NotSupported { source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

/// The object_store path of a key, when it has one: `Path::parse` keeps the text, and
/// refuses empty and dot segments and control characters; a leading or trailing `/`,
/// which it would strip, is refused here too.
fn path_of(key: &str) -> Option<object_store::path::Path> {
    object_store::path::Path::parse(key)
        .ok()
        .filter(|p| p.as_ref() == key)
}

/// A content type and user metadata as object_store attributes.
fn to_attributes(content_type: Option<&String>, metadata: &Metadata) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(ct) = content_type {
        attributes.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
    }
    for (name, value) in metadata {
        attributes.insert(
            Attribute::Metadata(name.clone().into()),
            AttributeValue::from(value.clone()),
        );
    }
    attributes
}

/// The content type and user metadata among object_store attributes, and the first
/// attribute that is neither (cloudstore has no place for it).
fn from_attributes(attributes: &Attributes) -> (Option<String>, Metadata, Option<&Attribute>) {
    let (mut content_type, mut metadata, mut other) = (None, Metadata::new(), None);
    for (attribute, value) in attributes {
        match attribute {
            Attribute::ContentType => content_type = Some(value.to_string()),
            Attribute::Metadata(name) => {
                metadata.insert(name.to_string(), value.to_string());
            }
            a => other = other.or(Some(a)),
        }
    }
    (content_type, metadata, other)
}
