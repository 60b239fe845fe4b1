//! Typed settings resolved from the command line, the environment and the config file.
//!
//! Precedence, highest first:
//! - profile: `--profile` > the alias's `profile` > `AWS_PROFILE` > config `profile` > SDK
//!   default;
//! - region: `--region` > the alias's `region` > `AWS_REGION` / `AWS_DEFAULT_REGION` >
//!   config `[profiles.P] region` > config `region` > the AWS profile's region;
//! - endpoint: `--endpoint-url` > the alias's `endpoint_url` > `AWS_ENDPOINT_URL_SSM` /
//!   `AWS_ENDPOINT_URL` > config `[profiles.P] endpoint_url` > config `endpoint_url` > SDK;
//! - data channel host: the alias's `endpoint_url_ssmmessages` >
//!   `AWS_ENDPOINT_URL_SSMMESSAGES` > config `[profiles.P] endpoint_url_ssmmessages` > config
//!   `endpoint_url_ssmmessages` > the AWS profile's `services` section (read at load);
//! - proxy: `--no-proxy` > `--proxy` > config `proxy` > `*_PROXY` variables (read by
//!   `transport::ProxyRoutes`).

use crate::aws::AwsSettings;
use crate::config_file::{Alias, ConfigFile};
use crate::error::{ExitCode, Failure};
use crate::target::{self, Spec, TargetSettings};
use crate::transport::ProxyRequest;

use super::args::{GlobalArgs, Pick};

/// What resolution reads besides one command's own arguments: the global flags, the
/// config file, the environment, and whether a person is at the terminal.
pub struct Inputs<'a> {
    pub global: &'a GlobalArgs,
    pub file: &'a ConfigFile,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Stdin and stderr are terminals: a picker may be shown.
    pub interactive: bool,
}

/// AWS settings with what the context they were resolved in says beyond them.
struct Context {
    aws: AwsSettings,
    cache_scope: String,
    /// The OS user from the config file (alias > `[profiles.P]` > top level).
    user: Option<String>,
    /// `--via` > the alias's `via` > `[profiles.P] via` > top-level `via` > auto.
    via: crate::target::via::Via,
}

impl Inputs<'_> {
    /// A non-empty environment variable.
    fn var(&self, k: &str) -> Option<String> {
        (self.env)(k).filter(|v| !v.is_empty())
    }

    /// The alias `raw` names, if any; ssh lower-cases %h, so without regard to case.
    fn alias(&self, raw: &str) -> Option<(&String, &Alias)> {
        let key = raw.trim().trim_end_matches('.');
        (self.file.aliases.iter()).find(|(name, _)| name.eq_ignore_ascii_case(key))
    }

    /// Resolves flags, environment and config file for `raw_target`.
    pub fn target(&self, raw_target: &str) -> Result<TargetSettings, Failure> {
        self.target_and_user(raw_target).map(|(s, _)| s)
    }

    /// [`Self::target`], with the OS user the config file names for it (alias >
    /// `[profiles.P]` > top level), for `ssh/scp/sftp` when the command line names none.
    pub fn target_and_user(
        &self,
        raw_target: &str,
    ) -> Result<(TargetSettings, Option<String>), Failure> {
        let key = raw_target.trim().trim_end_matches('.');
        // Before anything else, aliases included: shell syntax is never a target.
        target::check_word("target", raw_target)
            .map_err(|m| Failure::new(crate::error::ExitCode::Target, m))?;
        let alias = self.alias(raw_target);
        let target = match alias {
            Some((_, a)) => target::parse(&a.target).map_err(|f| {
                let f = Failure::from(f);
                let path = self.file.path.as_ref().map(|p| p.display().to_string());
                Failure::new(
                    f.code,
                    format!(
                        "alias {key:?} in {}: {}",
                        path.unwrap_or_default(),
                        f.message
                    ),
                )
            })?,
            // No target typed (`sallyport shell` alone): the picker's, or a clear error.
            None if raw_target.is_empty() => Spec::Pick,
            None => target::parse(raw_target)?,
        };
        let cx = self.context(alias.map(|(_, a)| a));
        let g = self.global;
        let settings = TargetSettings {
            aws: cx.aws,
            raw: raw_target.to_owned(),
            target,
            alias: alias.map(|(n, _)| n.clone()),
            pick_first: g.pick == Some(Pick::First),
            wait: g.wait,
            interactive: self.interactive,
            aliases: self.file.aliases.keys().cloned().collect(),
            cache_scope: cx.cache_scope,
            via: cx.via,
            max_tunnel_duration: g.max_tunnel_duration.map_or(
                crate::transport::MAX_TUNNEL_DURATION,
                std::time::Duration::from_secs,
            ),
        };
        Ok((settings, cx.user))
    }

    /// AWS settings for a command about the whole account rather than one target; an
    /// alias named by `alias_hint` (e.g. the first of `ls`'s filters) brings its profile,
    /// region and endpoint, as it would for that target.
    pub fn account(&self, alias_hint: Option<&str>) -> AwsSettings {
        let alias = alias_hint.and_then(|raw| self.alias(raw)).map(|(_, a)| a);
        self.context(alias).aws
    }

    fn context(&self, alias: Option<&Alias>) -> Context {
        let (g, file) = (self.global, self.file);
        let env = |k: &str| self.var(k);
        let a = |f: fn(&Alias) -> &Option<String>| alias.and_then(|a| f(a).clone());
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
                (per_profile.and_then(|p| p.region.clone()))
                    .or_else(|| file.defaults.region.clone())
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
        // Only the config file's: the environment and the AWS profile are read at load.
        let endpoint_url_ssmmessages = a(|a| &a.endpoint_url_ssmmessages).or_else(|| {
            if from_env(&[crate::aws::SSMMESSAGES_ENV]) {
                None
            } else {
                (per_profile.and_then(|p| p.endpoint_url_ssmmessages.clone()))
                    .or_else(|| file.defaults.endpoint_url_ssmmessages.clone())
            }
        });
        let user = a(|a| &a.user)
            .or_else(|| per_profile.and_then(|p| p.user.clone()))
            .or_else(|| file.defaults.user.clone());
        let via = (g.via)
            .or_else(|| alias.and_then(|a| a.via))
            .or_else(|| per_profile.and_then(|p| p.via))
            .or(file.defaults.via)
            .unwrap_or_default();
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
        Context {
            aws: AwsSettings {
                profile,
                region,
                endpoint_url,
                endpoint_url_ssmmessages,
                proxy: proxy_request(g, Some(file)),
            },
            cache_scope,
            user,
            via,
        }
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

/// Failure for a config file that cannot be used.
pub fn config_failure(e: crate::config_file::ConfigError) -> Failure {
    Failure::new(ExitCode::Config, e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file;
    use clap::Parser as _;
    use std::time::Duration;

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

    fn for_target(
        global: &GlobalArgs,
        file: &ConfigFile,
        raw: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TargetSettings, Failure> {
        let inputs = Inputs {
            global,
            file,
            env,
            interactive: false,
        };
        inputs.target(raw)
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
    fn the_data_channel_host_comes_from_alias_env_profile_then_file() {
        let text = r#"
            endpoint_url_ssmmessages = "https://top.example"
            [profiles.research]
            endpoint_url_ssmmessages = "https://research.example"
            [alias]
            nb = { target = "x", profile = "research" }
            db = { target = "y", endpoint_url_ssmmessages = "https://db.example" }
        "#;
        let file = config_file::parse(text, std::path::Path::new("/c.toml")).unwrap();
        let got = |raw: &str, env: &dyn Fn(&str) -> Option<String>| {
            for_target(&global(&[]), &file, raw, env)
                .unwrap()
                .aws
                .endpoint_url_ssmmessages
        };
        assert_eq!(got("web", &no_env).as_deref(), Some("https://top.example"));
        assert_eq!(
            got("nb", &no_env).as_deref(),
            Some("https://research.example")
        );
        let env = |k: &str| {
            (k == "AWS_ENDPOINT_URL_SSMMESSAGES").then(|| "https://env.example".to_owned())
        };
        assert_eq!(
            got("nb", &env),
            None,
            "left to the load, which reads the variable"
        );
        assert_eq!(got("db", &env).as_deref(), Some("https://db.example"));
        // The API endpoint variables do not move the data channel.
        let api = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:9".to_owned());
        assert_eq!(got("web", &api).as_deref(), Some("https://top.example"));
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
}
