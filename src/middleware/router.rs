//! Key prefixes routed to different backends.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, Op, Result};
use crate::key::Key;
use crate::object::{
    CopyMode, GetOptions, GetResult, ListPage, ListRequest, Metadata, MultipartUploadInfo,
    NativeChecksum, ObjectMeta, PartInfo, PartNumber, Payload, PresignMethod, PresignedRequest,
    PutMode, PutOptions, UploadId,
};
use crate::store::Store;

/// One backend per key prefix (the longest matching prefix wins), the rest to a default:
/// e.g. some tenants on Azure, everyone else on S3. Keys keep their full names on every
/// backend. Listings merge the routed backends in key order; a key under a route is only
/// ever read from that route's backend. A copy between two backends streams through the
/// transfer engine; `list_multipart_uploads` merges them too.
#[derive(Debug, Clone)]
pub struct RouterBackend {
    /// Longest prefix first.
    routes: Vec<(String, Arc<dyn Backend>)>,
    default: Arc<dyn Backend>,
}

/// Where a listing stands on each backend: the token of the page being consumed and how
/// many entries of it were already returned.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    token: Option<String>,
    skip: usize,
    done: bool,
}

impl RouterBackend {
    /// Everything to `default` until routes are added.
    pub fn new(default: Arc<dyn Backend>) -> RouterBackend {
        RouterBackend {
            routes: Vec::new(),
            default,
        }
    }

    /// Sends keys starting with `prefix` to `backend`.
    pub fn route(mut self, prefix: impl Into<String>, backend: Arc<dyn Backend>) -> RouterBackend {
        self.routes.push((prefix.into(), backend));
        self.routes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        self
    }

    /// The backend holding `key`, and its route's prefix ("" for the default).
    fn pick(&self, key: &str) -> (&Arc<dyn Backend>, &str) {
        self.routes
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(p, b)| (b, p.as_str()))
            .unwrap_or((&self.default, ""))
    }

    fn backend_for(&self, key: &Key) -> &Arc<dyn Backend> {
        self.pick(key.as_str()).0
    }

    /// Every backend with its route prefix, the default last.
    fn all(&self) -> Vec<(&str, &Arc<dyn Backend>)> {
        let mut v: Vec<(&str, &Arc<dyn Backend>)> =
            self.routes.iter().map(|(p, b)| (p.as_str(), b)).collect();
        v.push(("", &self.default));
        v
    }

    /// Whether an entry listed on the backend of route `prefix` is that backend's to show.
    fn owns(&self, route: &str, entry: &str) -> bool {
        self.pick(entry).1 == route
    }
}

/// One listed entry: an object or a common prefix.
enum Entry {
    Object(ObjectMeta),
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(m) => m.key.as_str(),
            Entry::Prefix(p) => p,
        }
    }
}

#[async_trait]
impl Backend for RouterBackend {
    fn name(&self) -> &str {
        "router"
    }

    /// The default backend's: routed backends should offer the same.
    fn capabilities(&self) -> &Capabilities {
        self.default.capabilities()
    }

    async fn put(&self, key: &Key, data: Payload, opts: &PutOptions) -> Result<ObjectMeta> {
        self.backend_for(key).put(key, data, opts).await
    }

    async fn get(&self, key: &Key, opts: &GetOptions) -> Result<GetResult> {
        self.backend_for(key).get(key, opts).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.backend_for(key).head(key).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.backend_for(key).delete(key).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let backends = self.all();
        let mut cursors: Vec<Cursor> = match &req.token {
            None => vec![Cursor::default(); backends.len()],
            Some(t) => serde_json::from_str(t)
                .ok()
                .filter(|c: &Vec<Cursor>| c.len() == backends.len())
                .ok_or_else(|| {
                    Error::invalid_input(Op::List, "router", "not a listing token of this router")
                })?,
        };
        let limit = req.max_keys.unwrap_or(1000).max(1);
        // One page from every backend that can hold keys under the prefix.
        let mut pages: Vec<Vec<Entry>> = Vec::with_capacity(backends.len());
        let mut next_tokens: Vec<Option<String>> = Vec::with_capacity(backends.len());
        for (i, (route, backend)) in backends.iter().enumerate() {
            let c = &cursors[i];
            let overlaps = route.starts_with(&req.prefix) || req.prefix.starts_with(route);
            if c.done || !overlaps {
                cursors[i].done = true;
                pages.push(Vec::new());
                next_tokens.push(None);
                continue;
            }
            let rest = route.strip_prefix(req.prefix.as_str()).unwrap_or("");
            if req.delimiter && rest.contains('/') {
                // The whole route lies below one common prefix of this listing.
                let cp = format!("{}{}/", req.prefix, rest.split('/').next().unwrap_or(""));
                let probe = ListRequest {
                    prefix: route.to_string(),
                    max_keys: Some(1),
                    ..Default::default()
                };
                let any = backend
                    .list(&probe)
                    .await?
                    .objects
                    .into_iter()
                    .next()
                    .is_some();
                pages.push(if any {
                    vec![Entry::Prefix(cp)]
                } else {
                    Vec::new()
                });
                next_tokens.push(None);
                continue;
            }
            let narrowed = ListRequest {
                prefix: if route.len() > req.prefix.len() {
                    route.to_string()
                } else {
                    req.prefix.clone()
                },
                delimiter: req.delimiter,
                token: c.token.clone(),
                max_keys: Some(limit + c.skip),
            };
            let page = backend.list(&narrowed).await?;
            let mut entries: Vec<Entry> = page
                .objects
                .into_iter()
                .map(Entry::Object)
                .chain(page.common_prefixes.into_iter().map(Entry::Prefix))
                .collect();
            entries.sort_by(|a, b| a.name().cmp(b.name()));
            // Skip what an earlier page of this listing already returned.
            let entries: Vec<Entry> = entries.into_iter().skip(c.skip).collect();
            pages.push(entries);
            next_tokens.push(page.next_token);
        }
        // Merge in key order, dropping entries other routes own and repeated prefixes.
        let mut positions = vec![0usize; pages.len()];
        let mut out = ListPage::default();
        let mut last: Option<String> = None;
        let mut emitted = 0usize;
        loop {
            if emitted >= limit {
                break;
            }
            let pick = (0..pages.len())
                .filter(|&i| positions[i] < pages[i].len())
                .min_by(|&a, &b| {
                    pages[a][positions[a]]
                        .name()
                        .cmp(pages[b][positions[b]].name())
                });
            let Some(i) = pick else { break };
            let entry = &pages[i][positions[i]];
            positions[i] += 1;
            let name = entry.name().to_string();
            let owned = match entry {
                Entry::Object(_) => self.owns(backends[i].0, &name),
                Entry::Prefix(_) => true,
            };
            if !owned || last.as_deref() == Some(name.as_str()) {
                continue;
            }
            match entry {
                Entry::Object(m) => out.objects.push(m.clone()),
                Entry::Prefix(p) => out.common_prefixes.push(p.clone()),
            }
            last = Some(name);
            emitted += 1;
        }
        // Where each backend stands now.
        let mut more = false;
        for i in 0..pages.len() {
            if cursors[i].done {
                continue;
            }
            if positions[i] < pages[i].len() {
                // Part of this page is still to come: fetch it again, skipping more.
                cursors[i].skip += positions[i];
                more = true;
            } else if let Some(t) = next_tokens[i].take() {
                cursors[i] = Cursor {
                    token: Some(t),
                    skip: 0,
                    done: false,
                };
                more = true;
            } else {
                cursors[i].done = true;
            }
        }
        if more {
            out.next_token = Some(serde_json::to_string(&cursors).map_err(|e| {
                Error::new(crate::ErrorKind::Other, Op::List, "router", e.to_string())
            })?);
        }
        Ok(out)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: CopyMode) -> Result<ObjectMeta> {
        let (a, b) = (self.backend_for(from), self.backend_for(to));
        if Arc::ptr_eq(a, b) {
            return a.copy(from, to, mode).await;
        }
        let put_mode = match mode {
            CopyMode::Overwrite => PutMode::Overwrite,
            CopyMode::Create => PutMode::Create,
            CopyMode::IfMatch(t) => PutMode::IfMatch(t),
        };
        let opts = crate::migrate::CopyOptions {
            mode: put_mode,
            progress: None,
        };
        let (src, dst) = (Store::from_arc(a.clone()), Store::from_arc(b.clone()));
        crate::migrate::copy(&src, from.as_str(), &dst, to.as_str(), &opts)
            .await
            .map(|c| c.meta)
    }

    async fn create_multipart(&self, key: &Key, opts: &PutOptions) -> Result<UploadId> {
        self.backend_for(key).create_multipart(key, opts).await
    }

    async fn put_part(
        &self,
        key: &Key,
        upload: &UploadId,
        part: PartNumber,
        data: Payload,
    ) -> Result<PartInfo> {
        self.backend_for(key)
            .put_part(key, upload, part, data)
            .await
    }

    async fn complete_multipart_with_metadata(
        &self,
        key: &Key,
        upload: &UploadId,
        parts: &[PartInfo],
        mode: &PutMode,
        extra_metadata: &Metadata,
    ) -> Result<ObjectMeta> {
        self.backend_for(key)
            .complete_multipart_with_metadata(key, upload, parts, mode, extra_metadata)
            .await
    }

    async fn abort_multipart(&self, key: &Key, upload: &UploadId) -> Result<()> {
        self.backend_for(key).abort_multipart(key, upload).await
    }

    async fn native_checksum(&self, key: &Key) -> Result<Option<NativeChecksum>> {
        self.backend_for(key).native_checksum(key).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let mut all = Vec::new();
        for (route, backend) in self.all() {
            if !(route.starts_with(prefix) || prefix.starts_with(route)) {
                continue;
            }
            match backend.list_multipart_uploads(prefix).await {
                Ok(v) => all.extend(v.into_iter().filter(|u| self.owns(route, u.key.as_str()))),
                Err(e) if e.kind() == crate::ErrorKind::Unsupported => {}
                Err(e) => return Err(e),
            }
        }
        all.sort();
        Ok(all)
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        self.backend_for(key).presign(method, key, expires_in).await
    }

    fn retries_requests(&self) -> bool {
        self.default.retries_requests() && self.routes.iter().all(|(_, b)| b.retries_requests())
    }
}
