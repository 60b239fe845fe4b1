//! The value parsers clap calls: the command line's own syntax (durations, `NAME=VALUE`)
//! lives here; a domain type's syntax stays with its type (its `FromStr` or parse
//! function), and these only call it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::session::forward::ForwardSpec;

/// The longest duration accepted (`--wait`, `--keepalive`, …).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A duration in the syntax the testbed takes too (the `humantime` crate's): a number
/// with a unit, fractions allowed, terms adding up (`90s`, `2m`, `1500ms`, `0.5s`,
/// `1m30s`); here also plain seconds (`90`). At most an hour.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let plain_seconds = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if plain_seconds {
        humantime::parse_duration(&format!("{s}s"))
    } else {
        humantime::parse_duration(s)
    };
    let d = parsed
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 90s, 2m or 500ms"))?;
    if d > MAX_WAIT {
        return Err(format!("{s:?} is longer than the 1 h limit"));
    }
    Ok(d)
}

/// `NAME=VALUE` for `shell --parameter`.
pub fn parameter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// `[bind:]local:remote_port` or `[bind:]local:host:port`, as [`ForwardSpec`] parses it.
pub fn forward_spec(s: &str) -> Result<ForwardSpec, String> {
    s.parse()
}

/// `-D [bind:]port`, as [`crate::session::forward::parse_socks_addr`] parses it.
pub fn socks_addr(s: &str) -> Result<SocketAddr, String> {
    crate::session::forward::parse_socks_addr(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "ten", "5 parsecs", "2h", "-1s", ".", "1.", "61m"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_name_equals_value() {
        assert_eq!(
            parameter("command=top -b").unwrap(),
            ("command".into(), "top -b".into())
        );
        assert_eq!(parameter("a=").unwrap(), ("a".into(), String::new()));
        assert!(parameter("=x").is_err());
        assert!(parameter("novalue").is_err());
    }
}
