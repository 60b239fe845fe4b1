//! Any bytes as a SOCKS5 greeting and request, as a client sends them.
//! Properties in `sallyport::fuzz::socks`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::socks(data);
});
