//! Hostile input: property tests over keys, URLs, byte ranges and checkpoints. Whatever
//! the input, parsing never panics, answers a typed error when it refuses, and what it
//! accepts prints and parses back to the same value. (`fuzz/` runs the same entry points
//! under libFuzzer.)

use std::collections::BTreeMap;

use cloudstore::transfer::{Checkpoint, DonePart};
use cloudstore::{
    ByteRange, ErrorKind, Key, MAX_KEY_LEN, PartInfo, PartNumber, PutMode, Store, StoreOptions,
    UploadId,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings built from the characters that matter to keys: separators, dots, controls,
/// backslashes, NUL, percent signs and some non-ASCII.
fn keyish() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("\\".to_string()),
        Just("\0".to_string()),
        Just("%2e".to_string()),
        Just("\n".to_string()),
        Just("é".to_string()),
        "[a-z0-9_-]{1,12}",
    ];
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn keys_never_panic_and_accepted_keys_round_trip(s in prop_oneof![keyish(), any::<String>()]) {
        match Key::new(s.clone()) {
            Ok(k) => {
                // Any non-empty string up to 1024 bytes is a key, exactly as given.
                prop_assert_eq!(k.as_str(), s.as_str());
                prop_assert!(!s.is_empty() && s.len() <= MAX_KEY_LEN);
                let again: Key = k.to_string().parse().unwrap();
                prop_assert_eq!(&again, &k);
                // The portable rule: plain relative paths only.
                match k.check_portable() {
                    Ok(()) => {
                        prop_assert!(!s.starts_with('/'));
                        prop_assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
                        prop_assert!(!s.chars().any(char::is_control));
                    }
                    Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
                }
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                prop_assert!(s.is_empty() || s.len() > MAX_KEY_LEN);
            }
        }
    }

    #[test]
    fn urls_never_panic_and_refusals_are_typed(
        scheme in prop_oneof![
            Just("memory".to_string()), Just("file".to_string()), Just("s3".to_string()),
            Just("az".to_string()), Just("gs".to_string()), Just("https".to_string()), "[a-z]{1,6}"
        ],
        user in prop::option::of("[a-z]{1,5}(:[a-z]{1,5})?"),
        host in "[a-z0-9.%-]{0,20}",
        path in keyish(),
        query in prop::option::of("[a-z=&%]{0,12}"),
    ) {
        let auth = user.map(|u| format!("{u}@")).unwrap_or_default();
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        let url = format!("{scheme}://{auth}{host}/{path}{q}");
        if scheme == "file" {
            // A file URL would create directories: only check that it parses or refuses.
            let _ = url::Url::parse(&url);
            return Ok(());
        }
        match Store::from_url(&url, &StoreOptions::new()) {
            Ok(store) => prop_assert!(store.prefix().len() <= url.len()),
            Err(e) => {
                prop_assert!(
                    matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::Unauthenticated),
                    "{:?}", e
                );
                // A password in the URL is never repeated.
                if let Some((_, pw)) = auth.trim_end_matches('@').split_once(':') {
                    let needle = format!(":{pw}@");
                    prop_assert!(!e.to_string().contains(&needle));
                }
            }
        }
    }

    #[test]
    fn arbitrary_url_strings_never_panic(s in any::<String>()) {
        let _ = cloudstore::config::redact_url(&s);
        if !s.starts_with("file:") {
            let _ = Store::from_url(&s, &StoreOptions::new());
        }
    }

    #[test]
    fn ranges_resolve_inside_the_object(
        kind in 0u8..3, a in any::<u64>(), b in any::<u64>(), size in prop_oneof![0u64..10_000, any::<u64>()],
    ) {
        let range = match kind {
            0 => ByteRange::Bounded(a..b),
            1 => ByteRange::From(a),
            _ => ByteRange::Suffix(a),
        };
        if let Ok(r) = range.resolve(size) {
            prop_assert!(r.start < r.end && r.end <= size, "{:?} of {} gave {:?}", range, size, r);
        }
        if range.validate().is_ok() {
            let back: ByteRange = range.to_string().parse().unwrap();
            prop_assert_eq!(back, range);
        }
    }

    #[test]
    fn range_headers_never_panic(s in prop_oneof!["bytes=[0-9]{0,22}-[0-9]{0,22}", any::<String>()]) {
        if let Ok(r) = s.parse::<ByteRange>() {
            prop_assert!(r.validate().is_ok());
            let back: ByteRange = r.to_string().parse().unwrap();
            prop_assert_eq!(back, r);
        }
    }

    #[test]
    fn checkpoints_from_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = Checkpoint::from_json(&bytes) {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn checkpoints_round_trip_and_inconsistent_ones_are_refused(
        size in 0u64..1 << 40, part_size in 1u64..1 << 30, done in prop::collection::btree_set(1u32..200, 0..20),
        shift in 0u64..3,
    ) {
        let count = size.div_ceil(part_size);
        let mut parts = BTreeMap::new();
        for n in done {
            let n64 = u64::from(n);
            // shift 0: every part fits; otherwise the sizes are off.
            let size_of = if n64 <= count { part_size.min(size - (n64 - 1) * part_size) } else { part_size };
            parts.insert(n, DonePart {
                info: PartInfo { number: PartNumber::new(n).unwrap(), etag: format!("e{n}"), size: size_of + shift },
                crc32c: n,
            });
        }
        let consistent = (shift == 0 || parts.is_empty()) && parts.keys().all(|n| u64::from(*n) <= count);
        let cp = Checkpoint {
            format: 1,
            key: Key::new("a/b").unwrap(),
            upload_id: UploadId("u".into()),
            mode: PutMode::Create,
            part_size,
            size,
            modified_ns: 7,
            checksum_at_create: false,
            parts,
        };
        let json = cp.to_json().unwrap();
        match Checkpoint::from_json(&json) {
            Ok(back) => {
                prop_assert!(consistent);
                prop_assert_eq!(back, cp);
            }
            Err(e) => {
                prop_assert!(!consistent, "{}", e);
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
            }
        }
    }
}
