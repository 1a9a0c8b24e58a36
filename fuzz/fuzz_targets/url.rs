//! Store URLs: never a panic; refusals are typed; redaction never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cloudstore::config::redact_url(s);
    // file:// URLs create their directory: left to the property tests.
    if s.trim_start().to_ascii_lowercase().starts_with("file:") {
        return;
    }
    if let Err(e) = cloudstore::Store::from_url(s, &cloudstore::StoreOptions::new()) {
        assert!(!e.to_string().is_empty());
    }
});
