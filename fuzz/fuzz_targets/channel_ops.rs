//! Arbitrary operation sequences on a client/agent channel pair (see proto::ops).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::proto::ops::run(data);
});
