//! Checkpoints: any bytes are read without a panic; an accepted checkpoint writes and
//! reads back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cp) = cloudstore::transfer::Checkpoint::from_json(data) {
        let json = cp.to_json().expect("encode");
        let back = cloudstore::transfer::Checkpoint::from_json(&json).expect("round trip");
        assert_eq!(back, cp);
    }
});
