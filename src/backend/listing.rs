//! Paging and delimiter grouping over a sorted sequence of objects, shared by the backends
//! that list locally (memory, fs) so that they agree exactly.

use crate::object::{ListPage, ListRequest, ObjectMeta};

/// How many entries a page of `req` holds: what it asks for, between 1 and the backend's
/// largest page.
pub(crate) fn limit(req: &ListRequest, max_page: usize) -> usize {
    let max_page = max_page.max(1);
    req.max_keys.unwrap_or(max_page).clamp(1, max_page)
}

/// Builds one page from `objects`: every object whose key starts with `req.prefix`, in key
/// order. The token is the last key or common prefix returned; the next page starts after
/// it (and after every key below it when it is a common prefix).
pub(crate) fn page(
    objects: impl IntoIterator<Item = ObjectMeta>,
    req: &ListRequest,
    max_page: usize,
) -> ListPage {
    let limit = limit(req, max_page);
    let token = req.token.as_deref();
    let mut out = ListPage::default();
    let mut emitted = 0usize;
    let mut last: Option<String> = None;
    for meta in objects {
        let key = meta.key.as_str();
        if !key.starts_with(&req.prefix) {
            continue;
        }
        if let Some(t) = token {
            let below_token_prefix = req.delimiter && t.ends_with('/') && key.starts_with(t);
            if key <= t || below_token_prefix {
                continue;
            }
        }
        let rest = &key[req.prefix.len()..];
        let entry = match rest.find('/') {
            Some(i) if req.delimiter => {
                let cp = &key[..req.prefix.len() + i + 1];
                if last.as_deref() == Some(cp) {
                    continue;
                }
                Entry::Prefix(cp.to_string())
            }
            _ => Entry::Object(Box::new(meta)),
        };
        if emitted == limit {
            out.next_token = last;
            return out;
        }
        emitted += 1;
        match entry {
            Entry::Prefix(cp) => {
                last = Some(cp.clone());
                out.common_prefixes.push(cp);
            }
            Entry::Object(meta) => {
                last = Some(meta.key.as_str().to_string());
                out.objects.push(*meta);
            }
        }
    }
    out
}

enum Entry {
    Prefix(String),
    Object(Box<ObjectMeta>),
}
