//! The testbed's clock, which may be set off from this machine's, and the SigV4 rule that a
//! request's signing time must be within 5 minutes of the service's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, PrimitiveDateTime};

/// AWS's allowance between the signing time and its own clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Seconds since the epoch on the testbed's clock.
pub fn now_secs(offset_secs: i64) -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    real + offset_secs
}

/// `YYYYMMDDTHHMMSSZ` -> seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let format =
        time::format_description::parse_borrowed::<2>("[year][month][day]T[hour][minute][second]Z");
    let t = PrimitiveDateTime::parse(s, &format.ok()?).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

/// Seconds since the epoch -> `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let Fields { y, mo, d, h, mi, s } = fields(utc(secs));
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Seconds since the epoch -> `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
pub fn format_http_date(secs: i64) -> String {
    let t = utc(secs);
    let Fields { y, d, h, mi, s, .. } = fields(t);
    // English names; the first three letters are the short ones.
    let (weekday, month) = (t.weekday().to_string(), t.month().to_string());
    let (weekday, month) = (&weekday[..3], &month[..3]);
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

/// Seconds since the epoch -> `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 in UTC, as STS writes
/// `Expiration`).
pub fn format_rfc3339(secs: i64) -> String {
    let Fields { y, mo, d, h, mi, s } = fields(utc(secs));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A calendar time's numbers, for the formats above.
struct Fields {
    y: i32,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
}

fn fields(t: OffsetDateTime) -> Fields {
    Fields {
        y: t.year(),
        mo: u8::from(t.month()),
        d: t.day(),
        h: t.hour(),
        mi: t.minute(),
        s: t.second(),
    }
}

/// The UTC calendar time of `secs`, held within years 1 to 9999 (four-digit years).
fn utc(secs: i64) -> OffsetDateTime {
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    const FIRST: i64 = -62_135_596_800;
    const LAST: i64 = 253_402_300_799;
    OffsetDateTime::from_unix_timestamp(secs.clamp(FIRST, LAST))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The error text AWS gives when the signing time is outside the allowance, or None.
pub fn skew_error(signed: i64, now: i64) -> Option<String> {
    let max = MAX_SKEW.as_secs() as i64;
    if signed < now - max {
        Some(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            format_amz_date(signed),
            format_amz_date(now - max),
            format_amz_date(now)
        ))
    } else if signed > now + max {
        Some(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            format_amz_date(signed),
            format_amz_date(now + max),
            format_amz_date(now)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_known_values() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        for s in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(s)), Some(s));
        }
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
        assert_eq!(parse_amz_date("20150230T123600Z"), None);
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20150830T123600Z0"), None);
    }

    #[test]
    fn imf_fixdate() {
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(1_757_000_000),
            "Thu, 04 Sep 2025 15:33:20 GMT"
        );
    }

    #[test]
    fn rfc3339_as_sts_writes_it() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn times_past_the_calendar_stay_within_it() {
        assert_eq!(format_amz_date(i64::MAX), "99991231T235959Z");
        assert_eq!(format_amz_date(i64::MIN), "00010101T000000Z");
    }

    #[test]
    fn five_minutes_either_way() {
        let now = 1_700_000_000;
        assert_eq!(skew_error(now - 300, now), None);
        assert_eq!(skew_error(now + 300, now), None);
        assert!(
            skew_error(now - 301, now)
                .unwrap()
                .starts_with("Signature expired: ")
        );
        assert!(
            skew_error(now + 301, now)
                .unwrap()
                .starts_with("Signature not yet current: ")
        );
    }
}
