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

/// Where a listing stands: the last name returned, and on each backend the token of the
/// page being read (read again and filtered past that name).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ListState {
    last: Option<String>,
    cursors: Vec<Cursor>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    token: Option<String>,
    done: bool,
}

/// One backend's part of a listing call.
struct Feed {
    token: Option<String>,
    entries: Vec<Entry>,
    pos: usize,
    next: Option<String>,
    fetched: bool,
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

    /// One page of `backend`'s part of the listing `req`, sorted by name, and the token of
    /// the next page.
    async fn page(
        &self,
        route: &str,
        backend: &Arc<dyn Backend>,
        req: &ListRequest,
        token: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Entry>, Option<String>)> {
        let rest = route.strip_prefix(req.prefix.as_str()).unwrap_or("");
        if req.delimiter && rest.contains('/') {
            // The whole route lies below one common prefix of this listing.
            let cp = format!("{}{}/", req.prefix, rest.split('/').next().unwrap_or(""));
            let probe = ListRequest {
                prefix: route.to_string(),
                max_keys: Some(1),
                ..Default::default()
            };
            let any = !backend.list(&probe).await?.objects.is_empty();
            return Ok((
                if any {
                    vec![Entry::Prefix(cp)]
                } else {
                    Vec::new()
                },
                None,
            ));
        }
        let narrowed = ListRequest {
            prefix: if route.len() > req.prefix.len() {
                route.to_string()
            } else {
                req.prefix.clone()
            },
            delimiter: req.delimiter,
            token,
            max_keys: Some(limit),
            start_after: req.start_after.clone(),
        };
        let page = backend.list(&narrowed).await?;
        let mut entries: Vec<Entry> = page
            .objects
            .into_iter()
            .map(Entry::Object)
            .chain(page.common_prefixes.into_iter().map(Entry::Prefix))
            .collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        Ok((entries, page.next_token))
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
        let bad_token =
            || Error::invalid_input(Op::List, "router", "not a listing token of this router");
        let state: ListState = match &req.token {
            None => ListState {
                last: None,
                cursors: vec![Cursor::default(); backends.len()],
            },
            Some(t) => serde_json::from_str(t)
                .ok()
                .filter(|s: &ListState| s.cursors.len() == backends.len())
                .ok_or_else(bad_token)?,
        };
        let limit = req.max_keys.unwrap_or(1000).max(1);
        let mut last = state.last;
        let mut feeds: Vec<Feed> = Vec::with_capacity(backends.len());
        for (i, (route, _)) in backends.iter().enumerate() {
            let c = &state.cursors[i];
            let overlaps = route.starts_with(&req.prefix) || req.prefix.starts_with(route);
            feeds.push(Feed {
                token: c.token.clone(),
                entries: Vec::new(),
                pos: 0,
                next: None,
                // Not fetched yet: the page at `token` comes first.
                fetched: false,
                done: c.done || !overlaps,
            });
        }
        let mut out = ListPage::default();
        let mut emitted = 0usize;
        loop {
            // Every live feed holds its next entry, or has been read to its end, before
            // anything is emitted: no later page of one backend can hold a smaller name.
            for (i, f) in feeds.iter_mut().enumerate() {
                while !f.done && f.pos >= f.entries.len() {
                    if f.fetched {
                        match f.next.take() {
                            Some(t) => f.token = Some(t),
                            None => {
                                f.done = true;
                                break;
                            }
                        }
                    }
                    let (route, backend) = backends[i];
                    let (entries, next) = self
                        .page(route, backend, req, f.token.clone(), limit)
                        .await?;
                    f.fetched = true;
                    // Names already returned by earlier pages (or listed again after a
                    // change) are passed over by name, never by count.
                    f.entries = entries
                        .into_iter()
                        .filter(|e| last.as_deref().is_none_or(|l| e.name() > l))
                        .collect();
                    f.pos = 0;
                    f.next = next;
                    if f.entries.is_empty() && f.next.is_none() {
                        f.done = true;
                    }
                }
            }
            if emitted >= limit {
                break;
            }
            let pick = (0..feeds.len())
                .filter(|&i| !feeds[i].done && feeds[i].pos < feeds[i].entries.len())
                .min_by(|&a, &b| {
                    feeds[a].entries[feeds[a].pos]
                        .name()
                        .cmp(feeds[b].entries[feeds[b].pos].name())
                });
            let Some(i) = pick else { break };
            let name = feeds[i].entries[feeds[i].pos].name().to_string();
            // Every feed's entries of this name go together (a common prefix several
            // backends share is one entry).
            let mut chosen: Option<Entry> = None;
            for (j, f) in feeds.iter_mut().enumerate() {
                while f.pos < f.entries.len() && f.entries[f.pos].name() == name {
                    let e = std::mem::replace(&mut f.entries[f.pos], Entry::Prefix(String::new()));
                    f.pos += 1;
                    let keep = match &e {
                        Entry::Object(_) => self.owns(backends[j].0, &name),
                        Entry::Prefix(_) => true,
                    };
                    if keep && chosen.is_none() {
                        chosen = Some(e);
                    }
                }
            }
            last = Some(name);
            match chosen {
                Some(Entry::Object(m)) => out.objects.push(m),
                Some(Entry::Prefix(p)) => out.common_prefixes.push(p),
                None => continue,
            }
            emitted += 1;
        }
        let live = feeds.iter().any(|f| !f.done);
        if live {
            let state = ListState {
                last,
                cursors: feeds
                    .iter()
                    .map(|f| Cursor {
                        // The page being read is read again, past `last`.
                        token: f.token.clone(),
                        done: f.done,
                    })
                    .collect(),
            };
            out.next_token = Some(serde_json::to_string(&state).map_err(|e| {
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
        let opts = crate::migrate::CopyOptions {
            mode: mode.as_put_mode(),
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
