//! Any bytes as the AWS answers sallyport parses by hand.
//! Properties in `sallyport::fuzz::aws_answers`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::aws_answers(data);
});
