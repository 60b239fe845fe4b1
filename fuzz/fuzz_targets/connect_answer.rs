//! Any bytes as the proxy's answer to CONNECT.
//! Properties in `sallyport::fuzz::connect_answer`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::connect_answer(data);
});
