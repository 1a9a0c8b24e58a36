//! A lazy walk of the files under a root in key order, pruned by prefix and page token.
//!
//! Keys sort bytewise, which is not the order of a plain directory walk: `a-b` sorts before
//! `a/b` because `-` < `/`. Sorting the entries of each directory by their name, with `/`
//! appended to directory names, gives exactly key order, since every key under directory
//! `a/` starts with `a/`. Whole subtrees that sort before the token are skipped, and the
//! walk stops as soon as the page is full, so a page costs what it returns, not the size
//! of the tree.
//!
//! A directory is read in chunks: each read keeps only the first `chunk` entries (in key
//! order) after the last one taken, so a page holds a bounded number of entries however
//! many files one directory has. A directory larger than the chunk is read again for the
//! next chunk, which only happens when a page needs more than `chunk` of its entries.

use std::collections::BinaryHeap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::NAME;
use super::layout::Layout;
use super::names::{self, SELF};
use crate::key::Key;
use crate::object::ObjectMeta;

/// The most entries a directory read keeps when looking for the first object below it.
const PROBE_CHUNK: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// The object whose key is the directory's own name, stored as `name/%self`.
    Own,
}

struct Entry {
    /// The key (file) or key prefix ending with `/` (directory).
    sort: String,
    /// The file name in the directory read.
    name: String,
    kind: Kind,
}

impl Entry {
    fn path(&self, dir: &Path) -> PathBuf {
        let path = dir.join(&self.name);
        match self.kind {
            Kind::Own => path.join(SELF),
            Kind::File | Kind::Dir => path,
        }
    }
}

// Entries of one directory compare by their sort keys, which are unique there (names
// decode canonically, and a directory's own object sorts before its `/` prefix).
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.sort == other.sort
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort.cmp(&other.sort)
    }
}

/// Which keys a walk wants: those starting with the prefix, after the token.
#[derive(Clone, Copy)]
struct Filter<'a> {
    prefix: &'a str,
    token: Option<&'a str>,
}

impl Filter<'_> {
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
}

/// One directory being walked: the entries of its current chunk, and where the next
/// chunk starts.
struct Cursor {
    dir: PathBuf,
    /// What the keys below this directory start with.
    rel: String,
    chunk: usize,
    entries: std::vec::IntoIter<Entry>,
    /// The sort key of the last entry of the chunk read; the next chunk starts after it.
    last: Option<String>,
    /// Whether the chunk read holds every wanted entry left (no further chunk to read).
    complete: bool,
}

impl Cursor {
    fn new(dir: PathBuf, rel: String, chunk: usize) -> Self {
        Cursor {
            dir,
            rel,
            chunk: chunk.max(1),
            entries: Vec::new().into_iter(),
            last: None,
            complete: false,
        }
    }

    /// The next entry in key order, reading the next chunk when the current one is used up.
    fn next(&mut self, filter: Filter<'_>) -> io::Result<Option<Entry>> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.complete {
                return Ok(None);
            }
            let (chunk, complete) = self.read(filter)?;
            self.complete = complete;
            self.last = chunk.last().map(|e| e.sort.clone());
            self.entries = chunk.into_iter();
        }
    }

    /// The first `chunk` wanted entries after `last`, in key order, and whether they are
    /// all there are.
    fn read(&self, filter: Filter<'_>) -> io::Result<(Vec<Entry>, bool)> {
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok((Vec::new(), true));
            }
            Err(e) => return Err(e),
        };
        let mut kept = Chunk {
            heap: BinaryHeap::with_capacity(self.chunk + 1),
            cap: self.chunk,
            after: self.last.as_deref(),
            complete: true,
        };
        let mut sort = String::new();
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
            let Some(segment) = names::decode(&name, self.rel.is_empty()) else {
                let ours = name == SELF || (self.rel.is_empty() && name == super::STATE_DIR);
                if !ours {
                    tracing::warn!(backend = NAME, path = %entry.path().display(), "skipping a file whose name no key is stored under");
                }
                continue;
            };
            sort.clear();
            sort.push_str(&self.rel);
            sort.push_str(&segment);
            if is_dir {
                // The object whose key is this directory's name lives inside it.
                if filter.wanted(&sort, false)
                    && kept.admits(&sort)
                    && fs::symlink_metadata(entry.path().join(SELF)).is_ok_and(|m| m.is_file())
                {
                    kept.push(Entry {
                        sort: sort.clone(),
                        name: name.clone(),
                        kind: Kind::Own,
                    });
                }
                sort.push('/');
            }
            if filter.wanted(&sort, is_dir) && kept.admits(&sort) {
                kept.push(Entry {
                    sort: sort.clone(),
                    name,
                    kind: if is_dir { Kind::Dir } else { Kind::File },
                });
            }
        }
        Ok((kept.heap.into_sorted_vec(), kept.complete))
    }
}

/// The smallest `cap` entries after `after` seen so far.
struct Chunk<'a> {
    heap: BinaryHeap<Entry>,
    cap: usize,
    after: Option<&'a str>,
    /// Whether no entry after `after` has been left out.
    complete: bool,
}

impl Chunk<'_> {
    /// Whether an entry sorting as `sort` belongs in the chunk as it stands.
    fn admits(&mut self, sort: &str) -> bool {
        if self.after.is_some_and(|a| sort <= a) {
            return false;
        }
        if self.heap.len() < self.cap {
            return true;
        }
        self.complete = false;
        self.heap.peek().is_some_and(|max| sort < max.sort.as_str())
    }

    fn push(&mut self, e: Entry) {
        self.heap.push(e);
        if self.heap.len() > self.cap {
            self.heap.pop();
        }
    }
}

/// The object of file entry `e` of directory `dir`, if it still is a file.
fn object(dir: &Path, e: Entry) -> Option<ObjectMeta> {
    let m = fs::symlink_metadata(e.path(dir))
        .ok()
        .filter(|m| m.is_file())?;
    let key = match Key::new(e.sort) {
        Ok(k) => k,
        Err(err) => {
            tracing::warn!(backend = NAME, error = %err, "skipping a file whose name is not a valid key");
            return None;
        }
    };
    Some(super::meta_from(&key, &m))
}

/// Iterates objects in key order. In delimiter mode it yields, for each directory at the
/// grouping level, only the first object below it (enough to name the common prefix).
pub(super) struct Walk<'a> {
    filter: Filter<'a>,
    delimiter: bool,
    /// How many entries of one directory a read keeps.
    chunk: usize,
    stack: Vec<Cursor>,
    /// The first I/O error met; the walk stops there.
    pub(super) error: Option<io::Error>,
}

impl<'a> Walk<'a> {
    /// A walk of the keys starting with `prefix`, after `token`, for a consumer that takes
    /// about `wanted` objects (more cost extra directory reads, never a missed key).
    pub(super) fn new(
        layout: &'a Layout,
        prefix: &'a str,
        token: Option<&'a str>,
        delimiter: bool,
        wanted: usize,
    ) -> Self {
        let mut walk = Walk {
            filter: Filter { prefix, token },
            delimiter,
            chunk: wanted,
            stack: Vec::new(),
            error: None,
        };
        let (dir_rel, dir) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i + 1], layout.dir_path(&prefix[..i])),
            None => ("", Some(layout.root.clone())),
        };
        // No storable key starts with a prefix whose directories cannot be stored.
        if let Some(dir) = dir {
            walk.stack
                .push(Cursor::new(dir, dir_rel.to_string(), walk.chunk));
        }
        walk
    }

    /// The first object below directory `dir` (whose keys start with `rel`), in key order.
    fn first_below(&mut self, dir: PathBuf, rel: String) -> Option<ObjectMeta> {
        let mut cursor = Cursor::new(dir, rel, PROBE_CHUNK);
        loop {
            let child = match cursor.next(self.filter) {
                Ok(Some(child)) => child,
                Ok(None) => return None,
                Err(err) => {
                    self.error = Some(err);
                    return None;
                }
            };
            let found = match child.kind {
                Kind::Dir => self.first_below(child.path(&cursor.dir), child.sort),
                Kind::File | Kind::Own => object(&cursor.dir, child),
            };
            if found.is_some() || self.error.is_some() {
                return found;
            }
        }
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
            let e = match top.next(self.filter) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    self.stack.pop();
                    continue;
                }
                Err(err) => {
                    self.error = Some(err);
                    return None;
                }
            };
            if e.kind != Kind::Dir {
                match object(&top.dir, e) {
                    Some(m) => return Some(m),
                    None => continue,
                }
            }
            let path = e.path(&top.dir);
            // With a delimiter, a directory beyond the prefix is one common prefix: one
            // object below it is enough to name it.
            if self.delimiter && e.sort.len() > self.filter.prefix.len() {
                match self.first_below(path, e.sort) {
                    Some(m) => return Some(m),
                    None => continue,
                }
            }
            self.stack.push(Cursor::new(path, e.sort, self.chunk));
        }
    }
}
