//! Typed settings resolved from the command line (and, later, the config file).

use crate::aws::AwsSettings;
use crate::error::{ExitCode, Failure};

use super::args::GlobalArgs;

pub fn aws_settings(g: &GlobalArgs) -> AwsSettings {
    AwsSettings {
        profile: g.profile.clone(),
        region: g.region.clone(),
        endpoint_url: g.endpoint_url.clone(),
    }
}

/// Checks a target given on the command line. ssh passes `%h` as typed, which may carry a
/// trailing dot or upper case; instance IDs are lower-case hex.
pub fn target(raw: &str) -> Result<String, Failure> {
    let t = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = ["i-", "mi-"].iter().any(|p| {
        t.strip_prefix(p).is_some_and(|hex| {
            (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    });
    if valid {
        Ok(t)
    } else {
        Err(Failure::new(
            ExitCode::Target,
            format!(
                "{raw:?} is not an instance ID; use an ID such as i-0123456789abcdef0 or mi-0123456789abcdef0"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_as_ssh_passes_them() {
        assert_eq!(
            target("i-0123456789abcdef0").unwrap(),
            "i-0123456789abcdef0"
        );
        assert_eq!(
            target("I-0123456789ABCDEF0.").unwrap(),
            "i-0123456789abcdef0"
        );
        assert_eq!(target("i-12345678").unwrap(), "i-12345678");
        assert_eq!(
            target("mi-0123456789abcdef0").unwrap(),
            "mi-0123456789abcdef0"
        );
    }

    #[test]
    fn refuses_other_strings_with_a_clear_message() {
        for bad in ["web-1", "i-xyz", "i-", "i-0123456789abcdef0123", ""] {
            let e = target(bad).unwrap_err();
            assert_eq!(e.code, ExitCode::Target);
            assert!(e.message.contains("not an instance ID"), "{}", e.message);
        }
    }
}
