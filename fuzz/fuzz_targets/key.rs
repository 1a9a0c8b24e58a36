//! Keys: never a panic; any non-empty string up to 1024 bytes is a key, printing and
//! parsing back to itself; the portable check answers a typed error or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match cloudstore::Key::new(s) {
        Ok(k) => {
            assert_eq!(k.as_str(), s);
            let again: cloudstore::Key = k.to_string().parse().expect("round trip");
            assert_eq!(again, k);
            if let Err(e) = k.check_portable() {
                assert_eq!(e.kind(), cloudstore::ErrorKind::InvalidInput);
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), cloudstore::ErrorKind::InvalidInput);
            assert!(s.is_empty() || s.len() > cloudstore::MAX_KEY_LEN);
        }
    }
});
