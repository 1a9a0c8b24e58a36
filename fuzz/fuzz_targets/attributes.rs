//! The attribute contract and the header-value encoding: never a panic; any value encodes
//! to printable ASCII and decodes back to itself; any bytes from a server decode to text.
#![no_main]

use cloudstore::attributes::{
    check_content_type, check_etag, check_metadata_name, decode_header_value,
    encode_header_value,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_header_value(data);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let wire = encode_header_value(s);
    assert!(
        wire.bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    );
    assert_eq!(decode_header_value(wire.as_bytes()), s);
    let _ = (check_content_type(s), check_etag(s), check_metadata_name(s));
});
