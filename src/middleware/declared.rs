//! [`Declared`]: a backend with capabilities declared narrower than its own, and enforced.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::checks::{
    check_attributes, check_completion_metadata, check_copy_mode, check_key, check_mode,
    check_object_size, check_part,
};
use crate::backend::{Backend, Capabilities};
use crate::error::{Error, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest,
    PutMode, PutOptions, UploadId,
};

/// A backend whose [`Capabilities`] are declared here rather than by the backend, for a
/// service that lacks what its protocol promises (an S3-compatible store without
/// conditional copies, an emulator that ignores a condition). Every feature declared absent
/// answers `Unsupported`, and every declared limit is enforced before the inner backend is
/// called, so a condition the service would silently ignore is never sent.
/// [`Store::with_capabilities`](crate::Store::with_capabilities) puts a store behind one.
#[derive(Debug)]
pub struct Declared {
    inner: Arc<dyn Backend>,
    caps: Capabilities,
}

impl Declared {
    /// `inner`, with `caps` declared and enforced.
    pub fn new(inner: Arc<dyn Backend>, caps: Capabilities) -> Self {
        Declared { inner, caps }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[async_trait]
impl Backend for Declared {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn retries_requests(&self) -> bool {
        self.inner.retries_requests()
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        let name = Declared::name(self);
        check_mode(name, Op::Put, key, &self.caps.put_modes, &opts.mode)?;
        check_key(name, Op::Put, key, &self.caps)?;
        check_attributes(name, Op::Put, key, &self.caps, opts)?;
        check_object_size(name, Op::Put, key, &self.caps, data.len())?;
        self.inner.put(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        self.inner.get(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.inner.list(req).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        check_key(Declared::name(self), Op::Copy, to, &self.caps)?;
        check_copy_mode(Declared::name(self), to, &self.caps, &mode)?;
        self.inner.copy(from, to, mode).await
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        let name = Declared::name(self);
        check_key(name, Op::CreateMultipart, key, &self.caps)?;
        check_attributes(name, Op::CreateMultipart, key, &self.caps, opts)?;
        self.inner.create_multipart(key, opts).await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        check_part(Declared::name(self), key, &self.caps, part, data.len())?;
        self.inner.put_part(key, upload, part, data).await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        let name = Declared::name(self);
        check_mode(
            name,
            Op::CompleteMultipart,
            key,
            &self.caps.multipart_modes,
            mode,
        )?;
        check_completion_metadata(name, key, &self.caps, metadata)?;
        self.inner
            .complete_multipart_with_metadata(key, upload, parts, mode, metadata)
            .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.inner.abort_multipart(key, upload).await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        self.inner.native_checksum(key).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        if !self.caps.multipart_listing {
            return Err(Error::unsupported(
                Op::ListMultipart,
                Declared::name(self),
                "listing multipart uploads is declared unsupported for this store",
            ));
        }
        self.inner.list_multipart_uploads(prefix).await
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        if !self.caps.presign {
            return Err(Error::unsupported(
                Op::Presign,
                Declared::name(self),
                "presigned URLs are declared unsupported for this store",
            )
            .with_key(key.as_str()));
        }
        self.inner.presign(method, key, expires_in).await
    }
}
