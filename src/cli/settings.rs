//! Typed settings resolved from the command line, the environment and the config file.
//!
//! Precedence, highest first:
//! - profile: `--profile` > the alias's `profile` > `AWS_PROFILE` > config `profile` > SDK
//!   default;
//! - region: `--region` > the alias's `region` > `AWS_REGION` / `AWS_DEFAULT_REGION` >
//!   config `[profiles.P] region` > config `region` > the AWS profile's region;
//! - endpoint: `--endpoint-url` > the alias's `endpoint_url` > `AWS_ENDPOINT_URL_SSM` /
//!   `AWS_ENDPOINT_URL` > config `[profiles.P] endpoint_url` > config `endpoint_url` > SDK;
//! - proxy: `--no-proxy` > `--proxy` > config `proxy` > `*_PROXY` variables (read by
//!   `transport::ProxyRoutes`).

use std::time::Duration;

use crate::aws::AwsSettings;
use crate::config_file::ConfigFile;
use crate::error::{ExitCode, Failure};
use crate::target::{self, Spec};
use crate::transport::ProxyRequest;

use super::args::{GlobalArgs, Pick};

/// The longest `--wait` accepted.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Everything a command that talks to one target runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSettings {
    pub aws: AwsSettings,
    pub target: Spec,
    /// The alias the target came from, if any.
    pub alias: Option<String>,
    pub pick_first: bool,
    pub wait: Option<Duration>,
    /// Alias names, for "did you mean".
    pub aliases: Vec<String>,
    /// Identifies the AWS context for the lookup cache: profile, region, endpoint, key ID.
    pub cache_scope: String,
    /// The OS user from the config file (alias > `[profiles.P]` > top level), for
    /// `ssh/scp/sftp` when the command line names none.
    pub user: Option<String>,
}

/// AWS settings from flags alone (no config file, no target).
pub fn aws_settings(g: &GlobalArgs) -> AwsSettings {
    AwsSettings {
        profile: g.profile.clone(),
        region: g.region.clone(),
        endpoint_url: g.endpoint_url.clone(),
        proxy: proxy_request(g, None),
    }
}

/// What the flags and the config file say about proxies.
pub fn proxy_request(g: &GlobalArgs, file: Option<&ConfigFile>) -> ProxyRequest {
    ProxyRequest {
        flag: g.proxy.clone(),
        disabled: g.no_proxy,
        config: file.and_then(|f| f.proxy.clone()),
    }
}

/// Resolves flags, environment (`env`) and config file for `raw_target`.
pub fn for_target(
    g: &GlobalArgs,
    file: &ConfigFile,
    raw_target: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TargetSettings, Failure> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let key = raw_target.trim().trim_end_matches('.');
    // ssh lower-cases %h, so aliases match without regard to case.
    let alias = file
        .aliases
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key));
    let (alias_name, alias) = match alias {
        Some((n, a)) => (Some(n.clone()), Some(a)),
        None => (None, None),
    };
    let target = match alias {
        Some(a) => target::parse(&a.target).map_err(|f| {
            let path = file.path.as_ref().map(|p| p.display().to_string());
            Failure::new(
                f.code,
                format!(
                    "alias {key:?} in {}: {}",
                    path.unwrap_or_default(),
                    f.message
                ),
            )
        })?,
        None => target::parse(raw_target)?,
    };
    let a = |f: fn(&crate::config_file::Alias) -> &Option<String>| alias.and_then(|a| f(a).clone());
    let profile = (g.profile.clone())
        .or_else(|| a(|a| &a.profile))
        .or_else(|| env("AWS_PROFILE"))
        .or_else(|| file.defaults.profile.clone());
    let per_profile = profile.as_ref().and_then(|p| file.profiles.get(p));
    let from_env = |keys: &[&str]| keys.iter().any(|k| env(k).is_some());
    let region = (g.region.clone()).or_else(|| a(|a| &a.region)).or_else(|| {
        if from_env(&["AWS_REGION", "AWS_DEFAULT_REGION"]) {
            None // the SDK reads it
        } else {
            (per_profile.and_then(|p| p.region.clone())).or_else(|| file.defaults.region.clone())
        }
    });
    let endpoint_url = (g.endpoint_url.clone())
        .or_else(|| a(|a| &a.endpoint_url))
        .or_else(|| {
            if from_env(&["AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"]) {
                None // the SDK reads it
            } else {
                (per_profile.and_then(|p| p.endpoint_url.clone()))
                    .or_else(|| file.defaults.endpoint_url.clone())
            }
        });
    let user = a(|a| &a.user)
        .or_else(|| per_profile.and_then(|p| p.user.clone()))
        .or_else(|| file.defaults.user.clone());
    let effective = |v: &Option<String>, keys: &[&str]| {
        v.clone()
            .or_else(|| keys.iter().find_map(|k| env(k)))
            .unwrap_or_default()
    };
    let cache_scope = [
        effective(&profile, &[]),
        effective(&region, &["AWS_REGION", "AWS_DEFAULT_REGION"]),
        effective(&endpoint_url, &["AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"]),
        effective(&None, &["AWS_ACCESS_KEY_ID"]),
    ]
    .join("|");
    Ok(TargetSettings {
        aws: AwsSettings {
            profile,
            region,
            endpoint_url,
            proxy: proxy_request(g, Some(file)),
        },
        target,
        alias: alias_name,
        pick_first: g.pick == Some(Pick::First),
        wait: g.wait,
        aliases: file.aliases.keys().cloned().collect(),
        cache_scope,
        user,
    })
}

/// `90s`, `2m`, `1500ms`, `1h`, or plain seconds (`90`); at most an hour.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 90s, 2m or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use ms, s, m or h"
            ));
        }
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))?;
    if d > MAX_WAIT {
        return Err(format!("{s:?} is longer than the 1 h limit"));
    }
    Ok(d)
}

/// Failure for a config file that cannot be used.
pub fn config_failure(e: crate::config_file::ConfigError) -> Failure {
    Failure::new(ExitCode::Config, e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file;
    use clap::Parser as _;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["sallyport"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["proxy", "x"]);
        crate::cli::args::Cli::try_parse_from(argv).unwrap().global
    }

    fn file() -> ConfigFile {
        let text = r#"
            profile = "file-profile"
            region = "eu-west-1"
            endpoint_url = "https://file.example"
            [profiles.research]
            region = "us-east-2"
            endpoint_url = "https://research.example"
            [alias]
            jupyter = "i-0123456789abcdef0"
            Notebook = { tag = "Name=jupyter-alice", profile = "research" }
            bad = "tag:oops"
        "#;
        config_file::parse(text, std::path::Path::new("/c.toml")).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn config_file_fills_what_nothing_else_set() {
        let s = for_target(&global(&[]), &file(), "web-1", &no_env).unwrap();
        assert_eq!(s.aws.profile.as_deref(), Some("file-profile"));
        assert_eq!(s.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.aws.endpoint_url.as_deref(), Some("https://file.example"));
        assert_eq!(s.target, Spec::Name("web-1".into()));
        assert_eq!(s.alias, None);
    }

    #[test]
    fn flags_beat_env_beats_file() {
        let env = |k: &str| match k {
            "AWS_PROFILE" => Some("env-profile".to_owned()),
            "AWS_REGION" => Some("ap-south-1".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9".to_owned()),
            _ => None,
        };
        let s = for_target(&global(&[]), &file(), "web-1", &env).unwrap();
        assert_eq!(s.aws.profile.as_deref(), Some("env-profile"));
        assert_eq!(
            s.aws.region, None,
            "left to the SDK, which reads AWS_REGION"
        );
        assert_eq!(s.aws.endpoint_url, None);
        assert_eq!(s.cache_scope, "env-profile|ap-south-1|http://127.0.0.1:9|");
        let flags = global(&[
            "--profile",
            "p",
            "--region",
            "r",
            "--endpoint-url",
            "http://e",
        ]);
        let s = for_target(&flags, &file(), "web-1", &env).unwrap();
        assert_eq!(
            (s.aws.profile.as_deref(), s.aws.region.as_deref()),
            (Some("p"), Some("r"))
        );
        assert_eq!(s.aws.endpoint_url.as_deref(), Some("http://e"));
    }

    #[test]
    fn aliases_bring_their_target_and_profile() {
        let s = for_target(&global(&[]), &file(), "JUPYTER.", &no_env).unwrap();
        assert_eq!(s.target, Spec::Id("i-0123456789abcdef0".into()));
        assert_eq!(s.alias.as_deref(), Some("jupyter"));
        let s = for_target(&global(&[]), &file(), "notebook", &no_env).unwrap();
        let tag = Spec::Tag {
            key: "Name".into(),
            value: "jupyter-alice".into(),
        };
        assert_eq!(s.target, tag);
        assert_eq!(s.aws.profile.as_deref(), Some("research"));
        assert_eq!(
            s.aws.region.as_deref(),
            Some("us-east-2"),
            "[profiles.research]"
        );
        assert_eq!(
            s.aws.endpoint_url.as_deref(),
            Some("https://research.example")
        );
        let flags = global(&["--profile", "mine"]);
        let s = for_target(&flags, &file(), "notebook", &no_env).unwrap();
        assert_eq!(
            s.aws.profile.as_deref(),
            Some("mine"),
            "the flag still wins"
        );
        let e = for_target(&global(&[]), &file(), "bad", &no_env).unwrap_err();
        assert_eq!(e.code, ExitCode::Target);
        assert!(
            e.message.starts_with("alias \"bad\" in /c.toml: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn pick_and_wait_flags() {
        let s = for_target(
            &global(&["--pick", "first", "--wait", "90s"]),
            &file(),
            "x",
            &no_env,
        )
        .unwrap();
        assert!(s.pick_first);
        assert_eq!(s.wait, Some(Duration::from_secs(90)));
        let argv = ["sallyport", "--pick", "any", "proxy", "x"];
        assert!(crate::cli::args::Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        for bad in ["", "s", "ten", "5 parsecs", "2h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
