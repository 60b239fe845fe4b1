//! Any bytes as smux frames, whole and in pieces into a session.
//! Properties in `sallyport::fuzz::smux`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::smux(data);
});
