//! Keys: never a panic; an accepted key prints and parses back to itself.
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
        }
        Err(e) => assert_eq!(e.kind(), cloudstore::ErrorKind::InvalidInput),
    }
});
