//! Cases of keys as the clouds have them: names other clients legally write (double,
//! leading and trailing slashes, `.` and `..` segments, URL-like names) are written, read,
//! listed, copied, uploaded in parts and deleted exactly as given.

use super::*;

/// Keys that are not plain paths, without `.` or `..` segments.
pub(crate) const RAW_KEYS: &[&str] = &[
    "a//b.txt",
    "dir/",
    "/lead",
    "https://example.org/p?q=1",
    "trail /x",
    "%41%2F/%",
    "double//slash//",
    "//",
];

/// Keys with `.` or `..` segments.
pub(crate) const DOT_KEYS: &[&str] = &["./x.txt", "x/../y", "a/./b", "../up", "end/.."];

/// Checks every operation on `names`, each exactly as given.
async fn raw_round_trip(s: &Store, names: &[&str]) -> CaseResult {
    for (i, k) in names.iter().enumerate() {
        let put = s.put(k, data(17, i as u64)).await?;
        ensure_eq!(put.key.as_str(), *k, "key returned by put");
    }
    let mut want: Vec<String> = names.iter().map(|k| k.to_string()).collect();
    want.sort();
    ensure_eq!(keys(s, None).await?, want, "listed keys");
    for (i, k) in names.iter().enumerate() {
        ensure_eq!(
            body_of(s, k).await?,
            data(17, i as u64),
            format!("body of {k:?}")
        );
        ensure_eq!(s.head(k).await?.key.as_str(), *k, "key from head");
        // Listed alone by its own key as prefix (other keys may share it).
        let alone = keys(s, Some(k)).await?;
        ensure!(
            alone.iter().any(|l| l == k),
            "{k:?} not listed under itself: {alone:?}"
        );
    }
    // Grouped at '/': every key is an object at its level or under one common prefix.
    let top = s.list_with_delimiter(None).await?;
    for k in names {
        let seen = match k.find('/') {
            Some(i) => top.common_prefixes.iter().any(|p| *p == k[..=i]),
            None => top.objects.iter().any(|m| m.key.as_str() == *k),
        };
        ensure!(seen, "{k:?} missing from the delimited listing {top:?}");
    }
    // A presigned GET of each name, fetched without credentials, serves its bytes.
    if s.capabilities().presign {
        let http = reqwest::Client::new();
        for (i, k) in names.iter().enumerate() {
            let signed = s
                .presign(PresignMethod::Get, k, std::time::Duration::from_secs(300))
                .await?;
            let resp = http
                .get(signed.url.clone())
                .send()
                .await
                .map_err(|e| Failure(format!("presigned GET of {k:?}: {}", e.without_url())))?;
            ensure_eq!(
                resp.status().as_u16(),
                200,
                format!("status of a presigned GET of {k:?}")
            );
            let got = resp
                .bytes()
                .await
                .map_err(|e| Failure(format!("presigned body of {k:?}: {}", e.without_url())))?;
            ensure_eq!(got, data(17, i as u64), format!("presigned body of {k:?}"));
        }
    }
    // Server-side copies and multipart uploads keep the names too.
    for (i, k) in names.iter().enumerate() {
        let to = format!("{k}~copy");
        s.copy(k, &to).await?;
        ensure_eq!(body_of(s, &to).await?, data(17, i as u64), "body of a copy");
        let mp = format!("{k}~mp");
        let id = s.create_multipart(&mp, &PutOptions::default()).await?;
        let p = s.put_part(&mp, &id, 1, data(33, i as u64)).await?;
        s.complete_multipart(&mp, &id, &[p], &PutMode::Overwrite)
            .await?;
        ensure_eq!(
            body_of(s, &mp).await?,
            data(33, i as u64),
            "body of an upload"
        );
    }
    let mut all: Vec<String> = names
        .iter()
        .flat_map(|k| [k.to_string(), format!("{k}~copy"), format!("{k}~mp")])
        .collect();
    all.sort();
    ensure_eq!(keys(s, None).await?, all, "keys after copies and uploads");
    for k in &all {
        s.delete(k).await?;
        expect_kind(s.head(k).await, ErrorKind::NotFound, "head after delete")?;
    }
    ensure_eq!(keys(s, None).await?.len(), 0, "keys left after delete");
    passed()
}

pub async fn keys_that_are_not_paths(s: Store) -> CaseResult {
    if !s.capabilities().raw_keys {
        ensure!(
            s.list_all(None).await?.is_empty(),
            "the store was not empty"
        );
        return not_applicable(s.put(RAW_KEYS[0], "x").await, "raw_keys");
    }
    raw_round_trip(&s, RAW_KEYS).await
}

pub async fn keys_with_dot_segments(s: Store) -> CaseResult {
    let caps = s.capabilities().clone();
    if !caps.raw_keys {
        return not_applicable(s.put(DOT_KEYS[0], "x").await, "raw_keys");
    }
    if !caps.dot_segments_in_keys {
        for k in DOT_KEYS {
            expect_kind(
                s.put(k, "x").await,
                ErrorKind::InvalidInput,
                &format!("put {k:?} with dot_segments_in_keys = false"),
            )?;
        }
        ensure_eq!(keys(&s, None).await?.len(), 0, "keys after refused writes");
        return Ok(Outcome::NotApplicable(
            "dot_segments_in_keys is false; verified writes answer InvalidInput".into(),
        ));
    }
    raw_round_trip(&s, DOT_KEYS).await
}

pub async fn raw_keys_do_not_collide(s: Store) -> CaseResult {
    if !s.capabilities().raw_keys {
        return not_applicable(s.put("a//b", "x").await, "raw_keys");
    }
    // Names a path normalisation would merge stay distinct objects. (`a/b` and `a/b/` need
    // an object and keys below it to coexist.)
    let both = s.capabilities().object_and_children;
    let mut names = vec!["a/b", "a//b", "/a/b"];
    if both {
        names.push("a/b/");
    }
    for (i, k) in names.iter().enumerate() {
        s.put(k, data(9, i as u64)).await?;
    }
    for (i, k) in names.iter().enumerate() {
        ensure_eq!(
            body_of(&s, k).await?,
            data(9, i as u64),
            format!("body of {k:?}")
        );
    }
    let mut want: Vec<String> = names.iter().map(|k| k.to_string()).collect();
    want.sort();
    ensure_eq!(keys(&s, None).await?, want, "listed keys");
    let under = s.list_with_delimiter(Some("a/")).await?;
    let objects: Vec<&str> = under.objects.iter().map(|m| m.key.as_str()).collect();
    ensure_eq!(objects, vec!["a/b"], "objects directly under a/");
    let mut prefixes = vec!["a//".to_string()];
    if both {
        prefixes.push("a/b/".to_string());
    }
    ensure_eq!(under.common_prefixes, prefixes, "common prefixes under a/");
    passed()
}
