//! A lazy walk of the files under a root in key order, pruned by prefix and page token.
//!
//! Keys sort bytewise, which is not the order of a plain directory walk: `a-b` sorts before
//! `a/b` because `-` < `/`. Sorting the entries of each directory by their name, with `/`
//! appended to directory names, gives exactly key order, since every key under directory
//! `a/` starts with `a/`. Whole subtrees that sort before the token are skipped, and the
//! walk stops as soon as the page is full, so a page costs what it returns, not the size
//! of the tree.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::NAME;
use super::layout::Layout;
use crate::key::Key;
use crate::object::ObjectMeta;

struct Entry {
    /// The key (file) or key prefix ending with `/` (directory).
    sort: String,
    path: PathBuf,
    is_dir: bool,
}

/// Iterates objects in key order. In delimiter mode it yields, for each directory at the
/// grouping level, only the first object below it (enough to name the common prefix).
pub(super) struct Walk<'a> {
    prefix: &'a str,
    token: Option<&'a str>,
    delimiter: bool,
    stack: Vec<std::vec::IntoIter<Entry>>,
    /// The first I/O error met; the walk stops there.
    pub(super) error: Option<io::Error>,
}

impl<'a> Walk<'a> {
    /// A walk of the keys starting with `prefix`, after `token`.
    pub(super) fn new(
        layout: &'a Layout,
        prefix: &'a str,
        token: Option<&'a str>,
        delimiter: bool,
    ) -> Self {
        let mut walk = Walk {
            prefix,
            token,
            delimiter,
            stack: Vec::new(),
            error: None,
        };
        let (dir_rel, dir) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i + 1], layout.dir_path(&prefix[..i])),
            None => ("", Some(layout.root.clone())),
        };
        // No storable key starts with a prefix whose directories cannot be stored.
        let Some(dir) = dir else {
            return walk;
        };
        match walk.entries(&dir, dir_rel) {
            Ok(entries) => walk.stack.push(entries.into_iter()),
            Err(e) => walk.error = Some(e),
        }
        walk
    }

    /// The entries of `dir` (whose keys start with `rel`) that can hold keys of this walk,
    /// sorted in key order.
    fn entries(&self, dir: &std::path::Path, rel: &str) -> io::Result<Vec<Entry>> {
        let read = match fs::read_dir(dir) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(backend = NAME, path = %entry.path().display(), "skipping a non-UTF-8 file name");
                continue;
            };
            // Symbolic links, sockets and the like are never objects and never followed.
            let ft = entry.file_type()?;
            let is_dir = ft.is_dir();
            if !is_dir && !ft.is_file() {
                continue;
            }
            let Some(segment) = super::names::decode(&name, rel.is_empty()) else {
                let ours =
                    name == super::names::SELF || (rel.is_empty() && name == super::STATE_DIR);
                if !ours {
                    tracing::warn!(backend = NAME, path = %entry.path().display(), "skipping a file whose name no key is stored under");
                }
                continue;
            };
            let mut sort = format!("{rel}{segment}");
            // The object whose key is this directory's name lives inside it.
            let own = entry.path().join(super::names::SELF);
            if is_dir
                && fs::symlink_metadata(&own).is_ok_and(|m| m.is_file())
                && self.wanted(&sort, false)
            {
                out.push(Entry {
                    sort: sort.clone(),
                    path: own,
                    is_dir: false,
                });
            }
            if is_dir {
                sort.push('/');
            }
            if self.wanted(&sort, is_dir) {
                out.push(Entry {
                    sort,
                    path: entry.path(),
                    is_dir,
                });
            }
        }
        out.sort_unstable_by(|a, b| a.sort.cmp(&b.sort));
        Ok(out)
    }

    fn wanted(&self, sort: &str, is_dir: bool) -> bool {
        let on_prefix = sort.starts_with(self.prefix) || (is_dir && self.prefix.starts_with(sort));
        if !on_prefix {
            return false;
        }
        match self.token {
            None => true,
            // A file is wanted after the token; a directory unless all of its keys sort
            // before the token (the token is past the directory and not inside it).
            Some(t) if is_dir => t < sort || t.starts_with(sort),
            Some(t) => sort > t,
        }
    }

    fn object(&self, e: &Entry) -> Option<ObjectMeta> {
        let key = match Key::new(e.sort.as_str()) {
            Ok(k) => k,
            Err(err) => {
                tracing::warn!(backend = NAME, error = %err, "skipping a file whose name is not a valid key");
                return None;
            }
        };
        let m = fs::symlink_metadata(&e.path).ok().filter(|m| m.is_file())?;
        Some(super::meta_from(&key, &m))
    }

    /// The first object below directory entry `e`, searching in key order.
    fn first_below(&mut self, e: &Entry) -> Option<ObjectMeta> {
        let entries = match self.entries(&e.path, &e.sort) {
            Ok(v) => v,
            Err(err) => {
                self.error = Some(err);
                return None;
            }
        };
        for child in entries {
            let found = if child.is_dir {
                self.first_below(&child)
            } else {
                self.object(&child)
            };
            if found.is_some() || self.error.is_some() {
                return found;
            }
        }
        None
    }
}

impl Iterator for Walk<'_> {
    type Item = ObjectMeta;

    fn next(&mut self) -> Option<ObjectMeta> {
        loop {
            if self.error.is_some() {
                return None;
            }
            let top = self.stack.last_mut()?;
            let Some(e) = top.next() else {
                self.stack.pop();
                continue;
            };
            if !e.is_dir {
                match self.object(&e) {
                    Some(m) => return Some(m),
                    None => continue,
                }
            }
            // With a delimiter, a directory beyond the prefix is one common prefix: one
            // object below it is enough to name it.
            if self.delimiter && e.sort.len() > self.prefix.len() {
                match self.first_below(&e) {
                    Some(m) => return Some(m),
                    None => continue,
                }
            }
            match self.entries(&e.path, &e.sort) {
                Ok(children) => self.stack.push(children.into_iter()),
                Err(err) => self.error = Some(err),
            }
        }
    }
}
