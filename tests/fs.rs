//! The fs backend's own promises: confinement to its root, atomic writes, and no debris.

use std::os::unix::fs::symlink;
use std::path::Path;

use bytes::Bytes;
use cloudstore::{ErrorKind, FsBackend, PutMode, PutOptions, Store, UploadId};

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
    store: Store,
}

/// A root and, beside it, an "outside" directory holding a file that must never be read or
/// changed through the store.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"outside data").unwrap();
    let store = Store::new(FsBackend::new(&root).unwrap());
    Fixture {
        _dir: dir,
        root,
        outside,
        store,
    }
}

/// Every file below `dir`, as sorted relative paths.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_outside_untouched(f: &Fixture) {
    assert_eq!(tree(&f.outside), vec!["secret.txt".to_string()]);
    assert_eq!(
        std::fs::read(f.outside.join("secret.txt")).unwrap(),
        b"outside data"
    );
}

#[tokio::test]
async fn traversal_and_absolute_keys_stay_inside_the_root() {
    // Such names are keys in the clouds: the fs backend stores them under its escape, inside
    // the root, and never resolves them as paths.
    let f = fixture();
    let keys = [
        "../outside/secret.txt",
        "x/../../outside/secret.txt",
        "/etc/passwd",
        ".",
        "a/..",
    ];
    for key in keys {
        f.store.put(key, format!("kept {key}")).await.unwrap();
    }
    assert_outside_untouched(&f);
    for key in keys {
        assert_eq!(
            f.store.get_bytes(key).await.unwrap(),
            format!("kept {key}"),
            "{key}"
        );
        f.store.copy(key, &format!("{key}~copy")).await.unwrap();
    }
    assert!(f.root.join("%../outside/secret.txt").is_file());
    assert!(f.root.join("%/etc/passwd").is_file());
    let mut want: Vec<String> = keys
        .iter()
        .flat_map(|k| [k.to_string(), format!("{k}~copy")])
        .collect();
    want.sort();
    let listed: Vec<String> = f
        .store
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.into_string())
        .collect();
    assert_eq!(listed, want);
    for key in &want {
        f.store.delete(key).await.unwrap();
    }
    assert_outside_untouched(&f);
    assert!(f.store.list_all(None).await.unwrap().is_empty());
    // The portable policy refuses them before touching anything.
    let portable = f.store.with_key_policy(cloudstore::KeyPolicy::Portable);
    for key in keys {
        assert_eq!(
            portable.put(key, "pwned").await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{key}"
        );
    }
    assert!(f.store.list_all(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_symlinked_directory_pointing_out_is_refused() {
    let f = fixture();
    symlink(&f.outside, f.root.join("escape")).unwrap();
    let denied = |r: cloudstore::Result<_>| {
        let e = r.map(|_: ()| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.message().contains("symbolic link"), "{e}");
    };
    denied(f.store.get("escape/secret.txt").await.map(|_| ()));
    denied(f.store.head("escape/secret.txt").await.map(|_| ()));
    denied(f.store.put("escape/new.txt", "pwned").await.map(|_| ()));
    denied(f.store.put("escape/secret.txt", "pwned").await.map(|_| ()));
    denied(f.store.delete("escape/secret.txt").await);
    denied(
        f.store
            .copy("escape/secret.txt", "stolen")
            .await
            .map(|_| ()),
    );
    denied(f.store.list_all(Some("escape/")).await.map(|_| ()));
    denied(
        f.store
            .create_multipart("escape/mp", &PutOptions::default())
            .await
            .map(|_| ()),
    );
    assert_outside_untouched(&f);
    // A listing from the top does not follow the link either.
    assert!(f.store.list_all(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_symlinked_file_is_neither_read_nor_written_through() {
    let f = fixture();
    symlink(f.outside.join("secret.txt"), f.root.join("link.txt")).unwrap();
    let e = f.store.get("link.txt").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = f.store.put("link.txt", "pwned").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let id = f
        .store
        .create_multipart("other", &PutOptions::default())
        .await
        .unwrap();
    let p = f.store.put_part("other", &id, 1, "x").await.unwrap();
    f.store
        .complete_multipart("other", &id, &[p], &PutMode::Overwrite)
        .await
        .unwrap();
    let e = f.store.copy("other", "link.txt").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_outside_untouched(&f);
}

#[tokio::test]
async fn a_root_that_is_itself_a_symlink_works() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink(&real, dir.path().join("alias")).unwrap();
    let store = Store::new(FsBackend::new(dir.path().join("alias")).unwrap());
    store.put("k", "v").await.unwrap();
    assert_eq!(std::fs::read(real.join("k")).unwrap(), b"v");
}

#[tokio::test]
async fn upload_ids_cannot_name_paths() {
    let f = fixture();
    for id in [
        "../../../outside",
        "..",
        "/tmp",
        "ABCDEF0123456789ABCDEF0123456789",
        "",
    ] {
        let id = UploadId(id.to_string());
        let e = f.store.put_part("k", &id, 1, "x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{id}: {e}");
        f.store.abort_multipart("k", &id).await.unwrap();
    }
    assert_outside_untouched(&f);
}

#[tokio::test]
async fn state_names_are_escaped_and_overlong_names_are_invalid_input() {
    let f = fixture();
    // A key under `.cloudstore/` is stored under the escape, apart from the state.
    f.store.put(".cloudstore/tmp/x", "x").await.unwrap();
    assert_eq!(f.store.get_bytes(".cloudstore/tmp/x").await.unwrap(), "x");
    assert!(f.root.join("%.cloudstore/tmp/x").is_file());
    assert!(!f.root.join(".cloudstore/tmp/x").exists());
    let long = "x".repeat(251);
    let e = f.store.put(&long, "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("250 bytes"), "{e}");
    // A nested `.cloudstore` is an ordinary name.
    f.store.put("a/.cloudstore", "fine").await.unwrap();
}

#[tokio::test]
async fn files_written_by_other_tools_are_objects_and_non_escapes_are_skipped() {
    let f = fixture();
    std::fs::create_dir_all(f.root.join("dropped")).unwrap();
    std::fs::write(f.root.join("dropped/report.csv"), b"a,b\n").unwrap();
    std::fs::write(f.root.join("dropped/odd\nname"), b"x").unwrap();
    // A name starting with the escape that escapes nothing names no key.
    std::fs::write(f.root.join("dropped/%abc"), b"x").unwrap();
    let keys: Vec<_> = f
        .store
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.into_string())
        .collect();
    assert_eq!(keys, vec!["dropped/odd\nname", "dropped/report.csv"]);
    let head = f.store.head("dropped/report.csv").await.unwrap();
    assert_eq!(head.size, 4);
    assert!(head.etag.is_some());
    assert_eq!(
        f.store.get_bytes("dropped/report.csv").await.unwrap(),
        "a,b\n"
    );
}

#[tokio::test]
async fn writes_leave_no_temporary_files_even_when_they_fail() {
    let f = fixture();
    f.store.put("a/b", "x").await.unwrap();
    f.store
        .put_opts("a/b", "y", &PutOptions::create())
        .await
        .unwrap_err();
    f.store
        .put_opts("a/b", "y", &PutOptions::if_match("\"stale\""))
        .await
        .unwrap_err();
    // (An object and keys below it coexist: `a/b` moves into its directory.)
    f.store.put("a/b/c", "below").await.unwrap();
    assert_eq!(f.store.get_bytes("a/b").await.unwrap(), "x");
    f.store.copy_if_absent("a/b", "a/b").await.unwrap_err();
    let id = f
        .store
        .create_multipart("m", &PutOptions::default())
        .await
        .unwrap();
    let p = f.store.put_part("m", &id, 1, "part").await.unwrap();
    f.store
        .complete_multipart("m", &id, &[p], &PutMode::Overwrite)
        .await
        .unwrap();
    let id = f
        .store
        .create_multipart("n", &PutOptions::default())
        .await
        .unwrap();
    f.store
        .put_part("n", &id, 1, vec![0u8; 1000])
        .await
        .unwrap();
    f.store.abort_multipart("n", &id).await.unwrap();
    let state: Vec<_> = tree(&f.root.join(".cloudstore"))
        .into_iter()
        .filter(|p| !p.starts_with("meta/"))
        .collect();
    assert!(state.is_empty(), "debris under .cloudstore: {state:?}");
    assert_eq!(
        tree(&f.root)
            .into_iter()
            .filter(|p| !p.starts_with(".cloudstore"))
            .collect::<Vec<_>>(),
        vec!["a/b/%self", "a/b/c", "m"]
    );
}

#[tokio::test]
async fn delete_prunes_empty_directories() {
    let f = fixture();
    f.store.put("x/y/z/k", "v").await.unwrap();
    f.store.put("x/keep", "v").await.unwrap();
    f.store.delete("x/y/z/k").await.unwrap();
    assert!(!f.root.join("x/y").exists());
    assert!(f.root.join("x/keep").exists());
    // The freed name can now hold an object.
    f.store.put("x/y", "now a file").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_object() {
    let f = fixture();
    let size = 8 * 1024 * 1024;
    let versions: Vec<Bytes> = (0..4u8).map(|v| Bytes::from(vec![v; size])).collect();
    f.store.put("obj", versions[0].clone()).await.unwrap();
    let writer = {
        let (store, versions) = (f.store.clone(), versions.clone());
        tokio::spawn(async move {
            for round in 0..12 {
                store.put("obj", versions[round % 4].clone()).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 5 {
        let body = f.store.get_bytes("obj").await.unwrap();
        assert_eq!(body.len(), size, "a read returned a truncated object");
        let first = body[0];
        assert!(
            body.iter().all(|&b| b == first),
            "a read mixed two versions"
        );
        reads += 1;
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn the_old_object_stays_readable_from_an_open_stream() {
    let f = fixture();
    f.store
        .put("obj", vec![1u8; 3 * 1024 * 1024])
        .await
        .unwrap();
    let reading = f.store.get("obj").await.unwrap();
    f.store.put("obj", vec![2u8; 10]).await.unwrap();
    let old = reading.bytes().await.unwrap();
    assert_eq!(old.len(), 3 * 1024 * 1024);
    assert!(old.iter().all(|&b| b == 1));
}

#[tokio::test]
async fn state_directories_that_are_links_are_refused() {
    let f = fixture();
    // Metadata redirected out of the root through a link inside .cloudstore/meta.
    std::fs::create_dir_all(f.root.join(".cloudstore/meta")).unwrap();
    symlink(&f.outside, f.root.join(".cloudstore/meta/a.d")).unwrap();
    let opts = PutOptions::default().with_metadata("k", "v");
    let e = f.store.put_opts("a/b", "x", &opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_outside_untouched(&f);

    // A root whose temporary directory is a link cannot be opened at all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("r/.cloudstore")).unwrap();
    symlink(&f.outside, dir.path().join("r/.cloudstore/tmp")).unwrap();
    let e = FsBackend::new(dir.path().join("r")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}

#[tokio::test]
async fn a_fifo_is_not_an_object_and_never_blocks() {
    let f = fixture();
    let fifo = f.root.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), f.store.get("pipe")).await;
    let e = got.expect("get on a FIFO returned").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        f.store.head("pipe").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(f.store.list_all(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_root_serialise_if_match() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::new(FsBackend::new(dir.path()).unwrap());
    let b = Store::from_url(
        &format!("file://{}", dir.path().display()),
        &Default::default(),
    )
    .unwrap();
    for round in 0..20 {
        let etag = a
            .put("k", format!("base {round}"))
            .await
            .unwrap()
            .etag
            .unwrap();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let etag = etag.clone();
                tokio::spawn(async move {
                    s.put_opts("k", format!("w{i}"), &PutOptions::if_match(etag))
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for w in writers {
            match w.await.unwrap() {
                Ok(_) => wins += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_survive_concurrent_deletes_pruning_their_directory() {
    let f = fixture();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = f.store.clone();
            tokio::spawn(async move {
                let key = format!("shared/dir/k{}", i % 4);
                if i % 2 == 0 {
                    s.put(&key, "v").await.map(|_| ())
                } else {
                    s.delete(&key).await
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

/// An object and keys below it coexist: the object moves into its directory as `%self`,
/// keeping its bytes, attributes and ETag, lists in key order, and leaves it on delete.
#[tokio::test]
async fn an_object_and_keys_below_it_coexist() {
    let f = fixture();
    let opts = PutOptions::default()
        .with_content_type("text/plain")
        .with_metadata("k", "v");
    let a = f.store.put_opts("a", "object a", &opts).await.unwrap();
    f.store.put("a/b", "below").await.unwrap();
    assert!(f.root.join("a/%self").is_file());
    let head = f.store.head("a").await.unwrap();
    assert_eq!(head.etag, a.etag, "the move keeps the ETag");
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(f.store.get_bytes("a").await.unwrap(), "object a");
    // Conditions keep working on the moved object.
    f.store
        .put_opts("a", "object a2", &PutOptions::if_match(a.etag.unwrap()))
        .await
        .unwrap();
    f.store
        .put_opts("a", "x", &PutOptions::create())
        .await
        .unwrap_err();
    // The other way round: a directory first, then the object.
    f.store.put("c/d", "below").await.unwrap();
    f.store.put("c", "object c").await.unwrap();
    f.store.put("a-b", "sibling").await.unwrap();
    let keys: Vec<String> = f
        .store
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.into_string())
        .collect();
    assert_eq!(keys, ["a", "a-b", "a/b", "c", "c/d"]);
    let top = f.store.list_with_delimiter(None).await.unwrap();
    let objects: Vec<&str> = top.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(objects, ["a", "a-b", "c"]);
    assert_eq!(top.common_prefixes, ["a/", "c/"]);
    // Deleting the children leaves the object; deleting it leaves nothing.
    f.store.delete("a/b").await.unwrap();
    assert_eq!(f.store.get_bytes("a").await.unwrap(), "object a2");
    f.store.delete("a").await.unwrap();
    assert!(!f.root.join("a").exists());
    assert_eq!(
        f.store.head("a").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Every key of the listing `req` describes, read page by page through `list_page`.
async fn pages(store: &Store, mut req: cloudstore::ListRequest) -> (Vec<String>, usize) {
    let (mut out, mut pages) = (Vec::new(), 0);
    loop {
        let page = store.list_page(&req).await.unwrap();
        pages += 1;
        assert!(page.objects.len() + page.common_prefixes.len() <= req.max_keys.unwrap());
        out.extend(page.objects.into_iter().map(|m| m.key.into_string()));
        out.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => return (out, pages),
        }
    }
}

/// A directory with many more entries than a page is read a bounded chunk at a time; a
/// chunk whose entries hold no object (empty directories) or whose files vanish must not
/// end the directory early, nor may a page skip or repeat a key at a chunk's edge.
#[tokio::test]
async fn a_directory_larger_than_a_page_lists_every_key_once_in_order() {
    let f = fixture();
    let url = format!("file://{}", f.root.display());
    let store = Store::from_url(&url, &cloudstore::StoreOptions::default()).unwrap();
    let mut want = Vec::new();
    for i in 0..300 {
        let key = format!("big/f{i:04}");
        std::fs::create_dir_all(f.root.join("big")).unwrap();
        std::fs::write(f.root.join(&key), b"x").unwrap();
        want.push(key);
    }
    // Twenty empty directories in a row, more than a chunk of a 7-key page: no object.
    for i in 0..20 {
        std::fs::create_dir_all(f.root.join(format!("big/f0100e{i:02}"))).unwrap();
    }
    // Names that are no key's, and an object whose key is also a directory's name.
    std::fs::write(f.root.join("big/%abc"), b"x").unwrap();
    store.put("big/f0200/in", "below").await.unwrap();
    store.put("big/f0200", "own").await.unwrap();
    want.push("big/f0200/in".into());
    store.put("big/g/deep/x", "deep").await.unwrap();
    want.push("big/g/deep/x".into());
    want.sort();

    let req = |max: usize, delimiter: bool| cloudstore::ListRequest {
        prefix: "big/".into(),
        delimiter,
        max_keys: Some(max),
        ..Default::default()
    };
    for max in [1, 7, 64, 1000] {
        let (keys, n) = pages(&store, req(max, false)).await;
        assert_eq!(keys, want, "pages of {max}");
        assert_eq!(n, want.len().div_ceil(max), "pages of {max}");
    }
    // With a delimiter the directories are common prefixes, each once, in key order.
    let (entries, _) = pages(&store, req(7, true)).await;
    let mut grouped: Vec<String> = want
        .iter()
        .map(|k| match k[4..].find('/') {
            Some(i) => k[..4 + i + 1].to_string(),
            None => k.clone(),
        })
        .collect();
    grouped.dedup();
    let mut got = entries.clone();
    got.sort();
    assert_eq!(got, grouped);
    // Starting after a key in the middle of a chunk.
    let after = cloudstore::ListRequest {
        start_after: Some("big/f0149".into()),
        ..req(7, false)
    };
    let (keys, _) = pages(&store, after).await;
    let tail: Vec<String> = want
        .iter()
        .filter(|k| k.as_str() > "big/f0149")
        .cloned()
        .collect();
    assert_eq!(keys, tail);
}

/// Parts that fit the upload's slot are written in place in one data file, the others
/// staged on their own; whichever way a part was stored, completion gives exactly the
/// parts it lists, refuses a replaced version, and leaves no staging behind.
#[tokio::test]
async fn multipart_parts_in_place_staged_and_replaced_complete_exactly() {
    const MIB: usize = 1 << 20;
    let f = fixture();
    let s = &f.store;
    let fill = |b: u8, len: usize| Bytes::from(vec![b; len]);
    let body = |parts: &[(u8, usize)]| -> Vec<u8> {
        parts.iter().flat_map(|&(b, n)| vec![b; n]).collect()
    };
    let complete = |key: &'static str, id: UploadId, mut parts: Vec<cloudstore::PartInfo>| async move {
        parts.sort_by_key(|p| p.number);
        s.complete_multipart(key, &id, &parts, &PutMode::Overwrite)
            .await
    };

    // Out of order, all full but the last: the data file becomes the object.
    let id = s
        .create_multipart("a", &PutOptions::default())
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (n, len) in [(2u32, 5 * MIB), (3, 7), (1, 5 * MIB)] {
        parts.push(s.put_part("a", &id, n, fill(n as u8, len)).await.unwrap());
    }
    let meta = complete("a", id.clone(), parts).await.unwrap();
    let want = body(&[(1, 5 * MIB), (2, 5 * MIB), (3, 7)]);
    assert_eq!(meta.size, want.len() as u64);
    assert_eq!(s.get("a").await.unwrap().bytes().await.unwrap(), want);
    // A part sent after completion finds no upload, and changes nothing.
    let late = s.put_part("a", &id, 4, fill(4, 10)).await.unwrap_err();
    assert_eq!(late.kind(), ErrorKind::NotFound, "{late}");
    assert_eq!(s.get("a").await.unwrap().bytes().await.unwrap(), want);

    // A part replaced in place: the old version is refused, the new one completes.
    let id = s
        .create_multipart("b", &PutOptions::default())
        .await
        .unwrap();
    let old = s.put_part("b", &id, 1, fill(1, 5 * MIB)).await.unwrap();
    let last = s.put_part("b", &id, 2, fill(2, 10)).await.unwrap();
    let new = s.put_part("b", &id, 1, fill(9, 5 * MIB)).await.unwrap();
    let e = complete("b", id.clone(), vec![old, last.clone()])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    complete("b", id, vec![new, last]).await.unwrap();
    let got = s.get("b").await.unwrap().bytes().await.unwrap();
    assert_eq!(got, body(&[(9, 5 * MIB), (2, 10)]));

    // A part larger than the slot is staged; with a gap in the numbers the parts are
    // assembled into a new file, each from where it was stored.
    let id = s
        .create_multipart("c", &PutOptions::default())
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (n, len) in [(1u32, 5 * MIB), (3, 6 * MIB), (4, 1)] {
        parts.push(s.put_part("c", &id, n, fill(n as u8, len)).await.unwrap());
    }
    complete("c", id, parts).await.unwrap();
    let got = s.get("c").await.unwrap().bytes().await.unwrap();
    assert_eq!(got, body(&[(1, 5 * MIB), (3, 6 * MIB), (4, 1)]));

    // A completion refused by its condition leaves the upload whole for another try.
    let id = s
        .create_multipart("a", &PutOptions::default())
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (n, len) in [(1u32, 5 * MIB), (2, 3)] {
        parts.push(s.put_part("a", &id, n, fill(7, len)).await.unwrap());
    }
    let e = s
        .complete_multipart("a", &id, &parts, &PutMode::Create)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(s.get("a").await.unwrap().bytes().await.unwrap(), want);
    s.complete_multipart("a", &id, &parts, &PutMode::Overwrite)
        .await
        .unwrap();
    let got = s.get("a").await.unwrap().bytes().await.unwrap();
    assert_eq!(got, vec![7u8; 5 * MIB + 3]);

    let staging = f.root.join(".cloudstore/uploads");
    assert!(tree(&staging).is_empty(), "{:?}", tree(&staging));
    assert!(tree(&f.root.join(".cloudstore/tmp")).is_empty());
    assert_outside_untouched(&f);
}
