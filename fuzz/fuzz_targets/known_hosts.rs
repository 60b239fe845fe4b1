//! Any bytes as known_hosts text looked up for a key.
//! Properties in `sallyport::fuzz::known_hosts`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::known_hosts(data);
});
