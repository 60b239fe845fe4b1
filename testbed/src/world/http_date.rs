//! The HTTP `Date` header on every testbed response, on the testbed's clock
//! ([`crate::world::clock`], which may be set off from this machine's): AWS endpoints send one,
//! and `sallyport doctor` measures this machine's clock offset from it.

use hyper::header::{DATE, HeaderValue};

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate) for Unix seconds `secs`.
pub fn format(secs: i64) -> String {
    let amz = crate::world::clock::format_amz_date(secs); // YYYYMMDDTHHMMSSZ
    let part = |r: std::ops::Range<usize>| amz.get(r).unwrap_or("00").to_owned();
    let month = part(4..6).parse::<usize>().unwrap_or(1);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let weekday = DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{weekday}, {} {} {} {}:{}:{} GMT",
        part(6..8),
        MONTHS[month.clamp(1, 12) - 1],
        part(0..4),
        part(9..11),
        part(11..13),
        part(13..15)
    )
}

/// Sets `Date` to the testbed's clock (hyper then adds none of its own).
pub fn stamp(headers: &mut hyper::HeaderMap, offset_secs: i64) {
    if let Ok(v) = HeaderValue::from_str(&format(crate::world::clock::now_secs(offset_secs))) {
        headers.insert(DATE, v);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn imf_fixdate() {
        assert_eq!(super::format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(super::format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
