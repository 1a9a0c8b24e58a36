//! The mirror (dual writes, fallback reads, secondary outage by policy, repair) and the
//! router (prefix routing, merged listings across backends with pages and delimiters).

use std::sync::Arc;

use cloudstore::middleware::{Fault, Faults, MirrorBackend, RouterBackend, Rule, SecondaryFailure};
use cloudstore::{
    Backend, ErrorKind, MemoryBackend, Op, PutMode, PutOptions, Store, TransferConfig,
};
use tokio::io::AsyncWriteExt;

fn mem() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

fn mirror(policy: SecondaryFailure) -> (Store, MirrorBackend, Store, Store, Faults) {
    let (p, s) = (mem(), mem());
    let faulty = Faults::new(s.clone());
    let m = MirrorBackend::new(p.clone(), Arc::new(faulty.clone()), policy);
    (
        Store::new(m.clone()),
        m,
        Store::from_arc(p),
        Store::from_arc(s),
        faulty,
    )
}

#[tokio::test]
async fn writes_reach_both_and_reads_fall_back_to_the_secondary() {
    let (store, _, primary, secondary, _) = mirror(SecondaryFailure::FailWrite);
    store.put("a", "one").await.unwrap();
    let mut up = store
        .with_transfer_config(TransferConfig {
            part_size: 5 << 20,
            ..Default::default()
        })
        .writer("big", &Default::default())
        .unwrap();
    up.write_all(&vec![7u8; 11 << 20]).await.unwrap();
    up.finish().await.unwrap();
    for s in [&primary, &secondary] {
        assert_eq!(s.get_bytes("a").await.unwrap(), "one");
        assert_eq!(s.get_bytes("big").await.unwrap().len(), 11 << 20);
    }
    // Only on the secondary (migrated earlier): still readable through the mirror.
    secondary.put("old", "from before").await.unwrap();
    assert_eq!(store.get_bytes("old").await.unwrap(), "from before");
    store.delete("a").await.unwrap();
    for s in [&primary, &secondary] {
        assert_eq!(s.head("a").await.unwrap_err().kind(), ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn conditions_are_decided_by_the_primary() {
    let (store, _, primary, secondary, _) = mirror(SecondaryFailure::FailWrite);
    // The secondary has a stale copy; a Create on the mirror follows the primary.
    secondary.put("k", "stale").await.unwrap();
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store.put_opts("k", "fresh", &create).await.unwrap();
    assert_eq!(secondary.get_bytes("k").await.unwrap(), "fresh");
    let e = store.put_opts("k", "again", &create).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(primary.get_bytes("k").await.unwrap(), "fresh");
    assert_eq!(secondary.get_bytes("k").await.unwrap(), "fresh");
}

#[tokio::test]
async fn a_secondary_outage_follows_the_policy_and_repair_restores_agreement() {
    for policy in [SecondaryFailure::FailWrite, SecondaryFailure::Record] {
        let (store, m, primary, secondary, faults) = mirror(policy);
        store.put("before", "x").await.unwrap();
        let faults = faults
            .with_rule(Rule::new(Op::Put, Fault::Fail(ErrorKind::Timeout)).times(u64::MAX))
            .with_rule(Rule::new(Op::Delete, Fault::ServerError).times(u64::MAX));
        let r = store.put("during", "y").await;
        match policy {
            SecondaryFailure::FailWrite => {
                let e = r.unwrap_err();
                assert!(e.to_string().contains("recorded for repair"), "{e}");
            }
            SecondaryFailure::Record => {
                r.unwrap();
            }
        }
        let _ = store.delete("before").await;
        // The delete missed the secondary, yet the mirror does not bring the object back.
        assert_eq!(
            store.head("before").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(primary.get_bytes("during").await.unwrap(), "y");
        assert_eq!(
            secondary.head("during").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(secondary.get_bytes("before").await.unwrap(), "x");
        let pending: Vec<String> = m.pending().iter().map(|k| k.as_str().to_string()).collect();
        assert_eq!(pending, ["before", "during"]);
        // Still out: repair keeps them.
        let report = m.repair().await;
        assert_eq!(report.failed.len(), 2, "{report:?}");
        faults.clear();
        let report = m.repair().await;
        assert_eq!(
            (report.copied, report.deleted, report.failed.len()),
            (1, 1, 0)
        );
        assert!(m.pending().is_empty());
        let (a, b) = (
            primary.list_all(None).await.unwrap(),
            secondary.list_all(None).await.unwrap(),
        );
        let keys = |v: &Vec<cloudstore::ObjectMeta>| {
            v.iter()
                .map(|m| m.key.as_str().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(secondary.get_bytes("during").await.unwrap(), "y");
    }
}

fn router() -> (Store, Store, Store, Store) {
    let (default, acme, globex) = (mem(), mem(), mem());
    let r = RouterBackend::new(default.clone())
        .route("tenants/acme/", acme.clone())
        .route("tenants/globex/", globex.clone());
    (
        Store::new(r),
        Store::from_arc(default),
        Store::from_arc(acme),
        Store::from_arc(globex),
    )
}

#[tokio::test]
async fn keys_go_to_their_routes_and_listings_merge_in_order() {
    let (store, default, acme, globex) = router();
    let mut keys = Vec::new();
    for t in ["acme", "globex", "initech"] {
        for i in 0..25 {
            let k = format!("tenants/{t}/obj-{i:02}");
            store.put(&k, k.clone()).await.unwrap();
            keys.push(k);
        }
    }
    store.put("a-first", "x").await.unwrap();
    store.put("z-last", "x").await.unwrap();
    keys.push("a-first".into());
    keys.push("z-last".into());
    keys.sort();
    assert_eq!(acme.list_all(None).await.unwrap().len(), 25);
    assert_eq!(globex.list_all(None).await.unwrap().len(), 25);
    assert_eq!(default.list_all(None).await.unwrap().len(), 27);
    // A key under a route lives only there, even if the default has a stray copy.
    default.put("tenants/acme/obj-00", "stray").await.unwrap();
    assert_eq!(
        store.get_bytes("tenants/acme/obj-00").await.unwrap(),
        "tenants/acme/obj-00"
    );

    // The whole listing, in pages of 7: every key once, in order.
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_page(&cloudstore::ListRequest {
                prefix: String::new(),
                delimiter: false,
                token: token.clone(),
                max_keys: Some(7),
                start_after: None,
            })
            .await
            .unwrap();
        assert!(page.objects.len() <= 7);
        listed.extend(page.objects.iter().map(|m| m.key.as_str().to_string()));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(listed, keys);
    let all: Vec<String> = store
        .list_all(Some("tenants/g"))
        .await
        .unwrap()
        .iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert_eq!(all.len(), 25);

    // One level: the routes show up as the common prefix they sit under.
    let top = store.list_with_delimiter(None).await.unwrap();
    assert_eq!(top.common_prefixes, ["tenants/"]);
    let objs: Vec<&str> = top.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(objs, ["a-first", "z-last"]);
    let tenants = store.list_with_delimiter(Some("tenants/")).await.unwrap();
    assert_eq!(
        tenants.common_prefixes,
        ["tenants/acme/", "tenants/globex/", "tenants/initech/"]
    );
}

#[tokio::test]
async fn a_copy_across_routes_streams_and_uploads_route_by_key() {
    let (store, default, acme, _) = router();
    store.put("shared/report", "r").await.unwrap();
    store
        .copy("shared/report", "tenants/acme/report")
        .await
        .unwrap();
    assert_eq!(acme.get_bytes("tenants/acme/report").await.unwrap(), "r");
    assert_eq!(default.get_bytes("shared/report").await.unwrap(), "r");
    let id = store
        .create_multipart("tenants/acme/up", &Default::default())
        .await
        .unwrap();
    let uploads = store.list_multipart_uploads(None).await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(acme.list_multipart_uploads(None).await.unwrap().len(), 1);
    store.abort_multipart("tenants/acme/up", &id).await.unwrap();
}

fn capped(page: usize) -> Arc<dyn Backend> {
    let mut caps = MemoryBackend::new().capabilities().clone();
    caps.max_list_page = page;
    Arc::new(MemoryBackend::with_capabilities(caps))
}

async fn all_pages(store: &Store, prefix: &str, delimiter: bool, page: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let p = store
            .list_page(&cloudstore::ListRequest {
                prefix: prefix.to_string(),
                delimiter,
                token: token.clone(),
                max_keys: Some(page),
                start_after: None,
            })
            .await
            .unwrap();
        names.extend(p.objects.iter().map(|m| m.key.as_str().to_string()));
        names.extend(p.common_prefixes.iter().cloned());
        match p.next_token {
            Some(t) => token = Some(t),
            None => return names,
        }
    }
}

#[tokio::test]
async fn merged_listings_stay_in_order_when_a_backend_pages_short() {
    // The route's backend returns two keys a page: its later pages must still come
    // before the default's later keys.
    let (default, routed) = (mem(), capped(2));
    let store = Store::new(RouterBackend::new(default.clone()).route("r/", routed.clone()));
    for k in ["a", "z"] {
        store.put(k, "x").await.unwrap();
    }
    for k in ["r/1", "r/2", "r/3", "r/4", "r/5"] {
        store.put(k, "x").await.unwrap();
    }
    // A stray key under the route on the default backend is never shown.
    Store::from_arc(default).put("r/0", "stray").await.unwrap();
    let want = ["a", "r/1", "r/2", "r/3", "r/4", "r/5", "z"];
    let all: Vec<String> = store
        .list_all(None)
        .await
        .unwrap()
        .iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert_eq!(all, want);
    for page in [1, 2, 3, 10] {
        assert_eq!(
            all_pages(&store, "", false, page).await,
            want,
            "pages of {page}"
        );
    }
}

#[tokio::test]
async fn deleting_what_was_listed_does_not_skip_what_was_not() {
    let (store, ..) = router();
    let mut keys = Vec::new();
    for t in ["acme", "globex", "initech"] {
        for i in 0..4 {
            let k = format!("tenants/{t}/{i}");
            store.put(&k, "x").await.unwrap();
            keys.push(k);
        }
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let p = store
            .list_page(&cloudstore::ListRequest {
                prefix: String::new(),
                delimiter: false,
                token: token.clone(),
                max_keys: Some(4),
                start_after: None,
            })
            .await
            .unwrap();
        for m in &p.objects {
            seen.push(m.key.as_str().to_string());
            store.delete(m.key.as_str()).await.unwrap();
        }
        match p.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    keys.sort();
    assert_eq!(seen, keys);
}

#[tokio::test]
async fn a_shared_common_prefix_is_listed_once_across_pages() {
    let (default, routed) = (mem(), mem());
    let store = Store::new(RouterBackend::new(default).route("x/y/", routed));
    store.put("x/y/1", "a").await.unwrap();
    store.put("x/z", "b").await.unwrap();
    assert_eq!(all_pages(&store, "", true, 1).await, ["x/"]);
    assert_eq!(all_pages(&store, "x/", true, 1).await, ["x/y/", "x/z"]);
}
