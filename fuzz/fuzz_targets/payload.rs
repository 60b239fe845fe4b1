//! Any bytes as payload JSON and flags: the client handshake, acks and channel_closed.
//! Properties in `sallyport::fuzz::payload`: no panic, nothing larger than the
//! input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sallyport::fuzz::payload(data);
});
