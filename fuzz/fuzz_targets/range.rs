//! Byte ranges: parsing never panics; a parsed range prints and parses back to itself and
//! resolves inside any object.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(s) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    if let Ok(r) = s.parse::<cloudstore::ByteRange>() {
        let back: cloudstore::ByteRange = r.to_string().parse().expect("round trip");
        assert_eq!(back, r);
        if let Ok(span) = r.resolve(size) {
            assert!(span.start < span.end && span.end <= size);
        }
    }
});
