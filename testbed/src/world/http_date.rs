//! The HTTP `Date` header on every testbed response, on the testbed's clock
//! ([`crate::world::clock`], which may be set off from this machine's): AWS endpoints send one,
//! and `sallyport doctor` measures this machine's clock offset from it.

use hyper::header::{DATE, HeaderValue};

/// Sets `Date` to the testbed's clock (hyper then adds none of its own).
pub fn stamp(headers: &mut hyper::HeaderMap, offset_secs: i64) {
    if let Ok(v) = HeaderValue::from_str(&crate::world::clock::format_http_date(
        crate::world::clock::now_secs(offset_secs),
    )) {
        headers.insert(DATE, v);
    }
}
