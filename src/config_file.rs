//! The config file, `~/.config/sallyport/config.toml` (`$XDG_CONFIG_HOME` is honoured;
//! `--config FILE` or `SALLYPORT_CONFIG` point elsewhere): defaults for the AWS settings, the
//! same per AWS profile, and target aliases.
//!
//! ```toml
//! profile = "dev"                     # defaults, below flags and environment variables
//! region = "eu-west-1"
//! endpoint_url = "https://vpce-0abc-123.ssm.eu-west-1.vpce.amazonaws.com"
//! endpoint_url_ssmmessages = "https://vpce-0def-456.ssmmessages.eu-west-1.vpce.amazonaws.com"
//! proxy = "http://proxy.corp:3128"    # below --proxy/--no-proxy, above HTTPS_PROXY etc.
//!
//! [profiles.research]                 # applied when the profile in use is "research"
//! region = "us-east-2"
//!
//! [alias]
//! jupyter = "i-0123456789abcdef0"     # any target: ID, Name tag value, tag:K=V, IP, host name
//! notebook = { tag = "Name=jupyter-alice", profile = "research" }
//! db = { target = "db-1", region = "eu-central-1" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the config file could not be used; one sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The config file as read; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it was read from (`None`: there was none).
    pub path: Option<PathBuf>,
    pub defaults: Defaults,
    /// `[profiles.NAME]`: defaults that apply when the AWS profile in use is NAME.
    pub profiles: BTreeMap<String, Defaults>,
    pub aliases: BTreeMap<String, Alias>,
    /// `scp`/`sftp`: sessions a transfer may spread over (`parallel = N`, 1..=16) and
    /// whether SSH compression is negotiated (`compression = true`).
    pub parallel: Option<usize>,
    pub compression: Option<bool>,
    /// `proxy = "http://…"`: the HTTP(S) proxy for every connection (top level only).
    pub proxy: Option<String>,
}

/// AWS settings a config file may default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// The data channel's endpoint: replaces the StreamUrl's host.
    pub endpoint_url_ssmmessages: Option<String>,
    /// The OS user `sallyport ssh/scp/sftp` log in as when none is given.
    pub user: Option<String>,
    /// `via = "ssm" | "eice" | "auto"`: the way to reach targets.
    pub via: Option<crate::target::via::Via>,
}

/// An alias: a target and, optionally, where to look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Any target form except another alias: an ID, `tag:Key=Value`, a Name, an IP.
    pub target: String,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub endpoint_url_ssmmessages: Option<String>,
    /// The OS user to log in as on this target.
    pub user: Option<String>,
    /// The way to reach this target.
    pub via: Option<crate::target::via::Via>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    profile: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    endpoint_url_ssmmessages: Option<String>,
    user: Option<String>,
    via: Option<String>,
    proxy: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    alias: BTreeMap<String, RawAlias>,
    parallel: Option<i64>,
    compression: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    region: Option<String>,
    endpoint_url: Option<String>,
    endpoint_url_ssmmessages: Option<String>,
    user: Option<String>,
    via: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAlias {
    Target(String),
    Table(BTreeMap<String, String>),
}

/// The default location: `$XDG_CONFIG_HOME/sallyport/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("sallyport").join("config.toml"))
}

/// Reads `explicit` (from `--config` or `SALLYPORT_CONFIG`; it must exist), else the default
/// file if there is one.
pub fn load(explicit: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(ConfigFile::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok(ConfigFile::default());
        }
        Err(e) => {
            let next = if must_exist {
                "fix the path given by --config or SALLYPORT_CONFIG"
            } else {
                "fix its permissions or remove it"
            };
            return Err(ConfigError(format!(
                "cannot read the config file {}: {e}; {next}",
                path.display()
            )));
        }
    };
    parse(&text, &path)
}

/// Parses and checks a config file's text; `path` is only for messages.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let bad = |what: String| ConfigError(format!("invalid config file {}: {what}", path.display()));
    let raw: RawFile = toml::from_str(text).map_err(|e| bad(toml_error(&e, text)))?;
    let defaults = Defaults {
        profile: raw.profile,
        region: raw.region,
        endpoint_url: raw.endpoint_url,
        endpoint_url_ssmmessages: raw.endpoint_url_ssmmessages,
        user: raw.user,
        via: via(raw.via.as_deref(), "").map_err(bad)?,
    };
    check_defaults(&defaults, "").map_err(bad)?;
    if let Some(p) = &raw.proxy {
        crate::transport::ProxyUrl::parse(p, "`proxy`").map_err(|e| bad(e.message))?;
    }
    let mut profiles = BTreeMap::new();
    for (name, p) in raw.profiles {
        // The name is shown as text: a quoted TOML key may hold a newline or an escape.
        let section = format!("[profiles.{}] ", crate::text::shown(&name));
        let d = Defaults {
            profile: None,
            region: p.region,
            endpoint_url: p.endpoint_url,
            endpoint_url_ssmmessages: p.endpoint_url_ssmmessages,
            user: p.user,
            via: via(p.via.as_deref(), &section).map_err(bad)?,
        };
        check_defaults(&d, &section).map_err(bad)?;
        profiles.insert(name, d);
    }
    let mut aliases = BTreeMap::new();
    for (name, a) in raw.alias {
        let alias = alias(&name, a).map_err(bad)?;
        aliases.insert(name, alias);
    }
    let parallel = match raw.parallel {
        Some(n @ 1..=16) => Some(n as usize),
        Some(n) => return Err(bad(format!("`parallel` is {n}; it must be 1 to 16"))),
        None => None,
    };
    Ok(ConfigFile {
        path: Some(path.to_path_buf()),
        defaults,
        profiles,
        aliases,
        parallel,
        compression: raw.compression,
        proxy: raw.proxy,
    })
}

/// toml's error as one line: where, and what, without the text of the offending line
/// that toml's own message quotes (it may be `proxy = "http://user:password@…"`), and
/// with any URL's password in the message masked.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        format!("line {line}, column {column}: ")
    });
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message
        .split(' ')
        .map(|w| match w.split_once("://") {
            Some((_, rest)) if rest.contains('@') => crate::transport::redact_userinfo(w),
            _ => w.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    // Keys toml quotes back may hold escapes (`"a\u001b"`): shown as text.
    format!("{}{}", at.unwrap_or_default(), crate::text::shown(&message))
}

fn check_defaults(d: &Defaults, prefix: &str) -> Result<(), String> {
    for (key, v) in [
        ("profile", &d.profile),
        ("region", &d.region),
        ("user", &d.user),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(format!("{prefix}`{key}` is empty"));
        }
    }
    if let Some(u) = &d.endpoint_url {
        check_url(u).map_err(|e| format!("{prefix}`endpoint_url` {e}"))?;
    }
    if let Some(u) = &d.endpoint_url_ssmmessages {
        crate::aws::StreamHost::parse(u, &format!("{prefix}`endpoint_url_ssmmessages`"))?;
    }
    Ok(())
}

fn check_url(u: &str) -> Result<(), String> {
    let lower = u.to_ascii_lowercase();
    if lower.starts_with("https://") {
        Ok(())
    } else if lower.starts_with("http://") {
        plain_http_check(u)
    } else {
        Err(format!(
            "{:?} must start with https:// (or http:// for a local testbed)",
            crate::transport::redact_userinfo(u)
        ))
    }
}

/// Refuses an `http://` endpoint whose host is not this machine: StartSession's
/// TokenValue, the session token and the KMS data key would cross the network in clear.
/// `https://` and anything else pass (the SDK judges those). The message does not name
/// where the URL came from; callers add it.
pub fn plain_http_check(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
    else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => hostport.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{:?} is plain http:// to a host other than this machine, which would send session tokens and keys in clear; use https:// (http:// only for a local testbed on 127.0.0.1 or localhost)",
            crate::transport::redact_userinfo(url)
        ))
    }
}

/// `via = "…"`: ssm, eice or auto.
fn via(raw: Option<&str>, prefix: &str) -> Result<Option<crate::target::via::Via>, String> {
    raw.map(|v| v.parse().map_err(|e| format!("{prefix}`via`: {e}")))
        .transpose()
}

fn alias(name: &str, raw: RawAlias) -> Result<Alias, String> {
    if name.trim().is_empty() {
        return Err("an alias name is empty".to_owned());
    }
    let mut table = match raw {
        RawAlias::Target(t) => BTreeMap::from([("target".to_owned(), t)]),
        RawAlias::Table(t) => t,
    };
    let target = match (table.remove("target"), table.remove("tag")) {
        (Some(t), None) => t,
        (None, Some(tag)) => match tag.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => format!("tag:{k}={v}"),
            _ => {
                return Err(format!(
                    "alias {name:?}: `tag` must be \"Key=Value\", e.g. \"Name=web-1\", not {tag:?}"
                ));
            }
        },
        (Some(_), Some(_)) => {
            return Err(format!(
                "alias {name:?} has both `target` and `tag`; keep one"
            ));
        }
        (None, None) => {
            return Err(format!(
                "alias {name:?} needs `target = \"…\"` or `tag = \"Key=Value\"`"
            ));
        }
    };
    if target.trim().is_empty() {
        return Err(format!("alias {name:?} has an empty target"));
    }
    let alias = Alias {
        target,
        profile: table.remove("profile"),
        region: table.remove("region"),
        endpoint_url: table.remove("endpoint_url"),
        endpoint_url_ssmmessages: table.remove("endpoint_url_ssmmessages"),
        user: table.remove("user"),
        via: via(table.remove("via").as_deref(), &format!("alias {name:?}: "))?,
    };
    if let Some(u) = &alias.endpoint_url {
        check_url(u).map_err(|e| format!("alias {name:?}: `endpoint_url` {e}"))?;
    }
    if let Some(u) = &alias.endpoint_url_ssmmessages {
        crate::aws::StreamHost::parse(u, &format!("alias {name:?}: `endpoint_url_ssmmessages`"))?;
    }
    if let Some(unknown) = table.keys().next() {
        return Err(format!(
            "alias {name:?} has an unknown key `{unknown}` (known: target, tag, profile, region, \
             endpoint_url, endpoint_url_ssmmessages, user, via)"
        ));
    }
    Ok(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(text, Path::new("/cfg.toml"))
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
            profile = "dev"
            region = "eu-west-1"
            endpoint_url = "https://vpce-0abc-123.ssm.eu-west-1.vpce.amazonaws.com"
            endpoint_url_ssmmessages = "https://vpce-0def-456.ssmmessages.eu-west-1.vpce.amazonaws.com"
            [profiles.research]
            region = "us-east-2"
            endpoint_url_ssmmessages = "https://[fd00::5]:8443"
            [alias]
            jupyter = "i-0123456789abcdef0"
            notebook = { tag = "Name=jupyter-alice", profile = "research" }
            db = { target = "db-1", region = "eu-central-1" }
        "#;
        let c = p(text).unwrap();
        assert_eq!(c.defaults.profile.as_deref(), Some("dev"));
        assert_eq!(c.profiles["research"].region.as_deref(), Some("us-east-2"));
        assert_eq!(
            c.defaults.endpoint_url_ssmmessages.as_deref(),
            Some("https://vpce-0def-456.ssmmessages.eu-west-1.vpce.amazonaws.com")
        );
        assert_eq!(
            c.profiles["research"].endpoint_url_ssmmessages.as_deref(),
            Some("https://[fd00::5]:8443")
        );
        assert_eq!(c.aliases["jupyter"].target, "i-0123456789abcdef0");
        let nb = &c.aliases["notebook"];
        assert_eq!(nb.target, "tag:Name=jupyter-alice");
        assert_eq!(nb.profile.as_deref(), Some("research"));
        assert_eq!(c.aliases["db"].region.as_deref(), Some("eu-central-1"));
        assert_eq!(p("").unwrap().aliases.len(), 0);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("regoin = \"x\"", "unknown field `regoin`"),
            ("[alias]\na = { tag = \"Name\" }", "must be \"Key=Value\""),
            ("[alias]\na = { profile = \"p\" }", "needs `target"),
            ("[alias]\na = { target = \"x\", tag = \"a=b\" }", "both"),
            (
                "[alias]\na = { target = \"x\", zone = \"b\" }",
                "unknown key `zone`",
            ),
            (
                "endpoint_url = \"vpce.example\"",
                "must start with https://",
            ),
            (
                "endpoint_url = \"http://ssm.example.com\"",
                "plain http:// to a host other than this machine",
            ),
            (
                "[profiles.p]\nendpoint_url = \"http://10.0.0.5:8080/\"",
                "[profiles.p] `endpoint_url` \"http://10.0.0.5:8080/\" is plain http://",
            ),
            (
                "[alias]\na = { target = \"x\", endpoint_url = \"HTTP://[fd00::1]:80\" }",
                "plain http://",
            ),
            (
                "endpoint_url_ssmmessages = \"https://vpce.example/v1\"",
                "`endpoint_url_ssmmessages` \"https://vpce.example/v1\" has a path or query",
            ),
            (
                "[profiles.p]\nendpoint_url_ssmmessages = \"http://10.0.0.5\"",
                "[profiles.p] `endpoint_url_ssmmessages` \"http://10.0.0.5\" is plain http://",
            ),
            (
                "[alias]\na = { target = \"x\", endpoint_url_ssmmessages = \"\" }",
                "`endpoint_url_ssmmessages` is set but empty",
            ),
            ("region = \"\"", "`region` is empty"),
            ("[alias]\na = 5", "invalid config file /cfg.toml"),
            ("profile = ", "invalid config file /cfg.toml"),
        ];
        for (text, want) in cases {
            let e = p(text).unwrap_err().0;
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("/cfg.toml"), "{e}");
        }
    }

    /// toml quotes the offending line in its own message: a `proxy` URL's password must
    /// not reach the terminal that way.
    #[test]
    fn a_parse_error_never_shows_a_proxy_password() {
        for text in [
            "proxy = \"http://alice:s3cret@proxy.corp:3128\" region = \"x\"\n",
            "proxy = \"http://alice:s3cret@proxy.corp:3128\nregion = \"x\"\n",
            "proxy = \"http://alice:s3cret@proxy.corp:3128\"\nproxy = \"http://bob:s3cret@p\"\n",
            "parallel = \"http://alice:s3cret@proxy.corp:3128\"\n",
            "proxy = \"http://alice:s3cret@proxy.corp:3128\" x\n",
        ] {
            let e = p(text).unwrap_err().0;
            assert!(!e.contains("s3cret"), "{text:?}: {e}");
            assert!(e.contains("line "), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn transfer_keys() {
        let f = parse("parallel = 8\ncompression = true", Path::new("c.toml")).unwrap();
        assert_eq!((f.parallel, f.compression), (Some(8), Some(true)));
        let e = parse("parallel = 0", Path::new("c.toml")).unwrap_err();
        assert!(
            e.0.contains("`parallel` is 0; it must be 1 to 16"),
            "{}",
            e.0
        );
        assert!(parse("parallel = 17", Path::new("c.toml")).is_err());
    }

    #[test]
    fn explicit_path_must_exist_default_may_not() {
        let e = load(Some(Path::new("/nonexistent/sallyport.toml"))).unwrap_err();
        assert!(e.0.contains("cannot read the config file"), "{}", e.0);
    }

    #[test]
    fn via_is_read_at_the_top_per_profile_and_per_alias() {
        use crate::target::via::Via;
        let c = p(r#"
            via = "ssm"
            [profiles.prod]
            via = "EICE"
            [alias.db]
            target = "i-0123456789abcdef0"
            via = "auto"
            [alias.web]
            target = "web-1"
        "#)
        .unwrap();
        assert_eq!(c.defaults.via, Some(Via::Ssm));
        assert_eq!(c.profiles["prod"].via, Some(Via::Eice));
        assert_eq!(c.aliases["db"].via, Some(Via::Auto));
        assert_eq!(c.aliases["web"].via, None);
        for (text, says) in [
            ("via = \"bastion\"", "`via`: \"bastion\" is not a way"),
            ("[profiles.x]\nvia = \"x\"", "[profiles.x] `via`"),
            (
                "[alias.a]\ntarget = \"i-0123456789abcdef0\"\nvia = \"\"",
                "alias \"a\": `via`",
            ),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.0.contains(says), "{text}: {}", e.0);
        }
    }
}
