//! Any bytes as config.toml, proxy URLs and NO_PROXY.
//! Properties in `sallyport::fuzz::config`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::config(data);
});
