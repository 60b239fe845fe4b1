//! Any bytes as target strings, scp operands and forward specs.
//! Properties in `sallyport::fuzz::target`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::target(data);
});
