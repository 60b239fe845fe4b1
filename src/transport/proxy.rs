//! Which HTTP proxy (if any) a connection goes through: ONE decision, used by the SDK's
//! HTTP client (`aws::http_client`) and by the data-channel websocket alike.
//!
//! Sources, strongest first: `--no-proxy`, `--proxy URL`, `proxy = "…"` in the config
//! file, then the environment: `https_proxy`/`HTTPS_PROXY` for TLS destinations
//! (`https://`, `wss://`), `http_proxy`/`HTTP_PROXY` for plain ones (`http://`, `ws://`),
//! `all_proxy`/`ALL_PROXY` for either when the specific one is unset. As in curl, the
//! lower-case variable wins when both cases are set, and an empty value counts as unset.
//! `no_proxy`/`NO_PROXY` applies whatever the source of the proxy.
//!
//! Like curl, and unlike many libraries, loopback is not special: a proxy applies to
//! `127.0.0.1` and `localhost` too unless `NO_PROXY` matches them.

use std::net::IpAddr;

/// A parsed proxy URL. Its `Display` is the URL with the password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `https://` proxy: TLS to the proxy itself, CONNECT inside it.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Percent-decoded userinfo, for `Proxy-Authorization: Basic`.
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(u) => write!(f, "{scheme}://{u}:***@{host}:{}", self.port),
            None => write!(f, "{scheme}://{host}:{}", self.port),
        }
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl ProxyUrl {
    /// Parses `http://[user[:pass]@]host[:port][/]`, `https://…`, or a bare `host:port`
    /// (taken as `http://`, as curl does). `source` names where the value came from, for
    /// the error.
    pub fn parse(value: &str, source: &str) -> Result<ProxyUrl, ProxyConfigError> {
        let bad = |why: &str| ProxyConfigError {
            message: format!(
                "the proxy URL {:?} from {source} is not usable: {why}",
                redact_userinfo(value)
            ),
        };
        let value = value.trim();
        let (tls, rest) = match value.split_once("://") {
            None => (false, value),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (false, rest),
                "https" => (true, rest),
                s if s.starts_with("socks") => {
                    return Err(bad(
                        "SOCKS proxies are not supported (the AWS SDK has none); use an HTTP proxy",
                    ));
                }
                _ => return Err(bad("the scheme must be http:// or https://")),
            },
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                let user = percent_decode(user).ok_or_else(|| bad("bad percent-encoding"))?;
                let pass = match pass {
                    Some(p) => Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding"))?),
                    None => None,
                };
                (Some(user), pass)
            }
        };
        Ok(ProxyUrl {
            tls,
            host: host.to_owned(),
            port,
            user,
            password,
        })
    }

    /// `Basic <base64(user:password)>`, when the URL has a user.
    pub fn basic_auth(&self) -> Option<String> {
        use base64::Engine;
        let user = self.user.as_ref()?;
        let pass = self.password.as_deref().unwrap_or_default();
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }

    /// The URL without its userinfo, as the SDK's HTTP client wants it (`scheme://host:port`).
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A proxy setting that cannot be used (bad URL): a configuration error.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProxyConfigError {
    pub message: String,
}

/// One `NO_PROXY` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// `*`: every host.
    All,
    /// A domain (`example.com`, `.example.com`, `*.example.com`): the host itself and its
    /// subdomains; optionally one port.
    Domain { name: String, port: Option<u16> },
    /// An IP literal, optionally with a port.
    Ip { ip: IpAddr, port: Option<u16> },
    /// `10.0.0.0/8`, `fd00::/8`.
    Cidr { net: IpAddr, bits: u8 },
}

/// Parsed `NO_PROXY` rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    rules: Vec<Rule>,
}

impl NoProxy {
    /// Comma- or space-separated entries; unparseable ones are ignored (as curl does).
    pub fn parse(value: &str) -> NoProxy {
        let rules = value
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .filter_map(parse_rule)
            .collect();
        NoProxy { rules }
    }

    /// True when a connection to `host:port` must not use a proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|rule| match rule {
            Rule::All => true,
            Rule::Domain { name, port: p } => {
                p.is_none_or(|p| p == port)
                    && (host == *name
                        || host
                            .strip_suffix(name.as_str())
                            .is_some_and(|pre| pre.ends_with('.')))
            }
            Rule::Ip {
                ip: rule_ip,
                port: p,
            } => p.is_none_or(|p| p == port) && ip.is_some_and(|ip| ip == *rule_ip),
            Rule::Cidr { net, bits } => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
        })
    }
}

fn parse_rule(entry: &str) -> Option<Rule> {
    if entry == "*" {
        return Some(Rule::All);
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let net = net.trim_start_matches('[').trim_end_matches(']');
        let net: IpAddr = net.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(Rule::Cidr { net, bits });
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(Rule::Ip { ip, port: None });
    }
    let (host, port) = split_host_port(entry)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Rule::Ip { ip, port });
    }
    let name = host
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!name.is_empty()).then_some(Rule::Domain { name, port })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. `None` for a bad port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons: no port.
        Some((host, _)) if host.contains(':') => Some((s, None)),
        Some((host, p)) => Some((host, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `scheme://user:pass@host` -> `scheme://user:***@host`, for messages about bad URLs,
/// including ones that do not parse: everything up to the last `@` is userinfo (a
/// password may hold `/`, `?`, `#` or `@`), and only the user name before its first `:`
/// (or `/`) is kept.
pub fn redact_userinfo(url: &str) -> String {
    // Only a real scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) is
    // kept whole: a `://` further on (in a query, after a mistyped `http:/`) leaves the
    // text before it to the userinfo rule.
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (format!("{scheme}://"), rest),
        _ => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo
                .split([':', '/', '?', '#'])
                .next()
                .unwrap_or_default();
            format!("{scheme}{user}:***@{host}")
        }
        None => format!("{scheme}{rest}"),
    }
}

/// What the user asked for, before the environment is read. Its `Debug` hides the
/// passwords in the URLs (settings holding it get logged and printed in panics).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyRequest {
    /// `--proxy URL`.
    pub flag: Option<String>,
    /// `--no-proxy`: no proxy at all, whatever the config file and environment say.
    pub disabled: bool,
    /// `proxy = "…"` in the config file.
    pub config: Option<String>,
}

impl std::fmt::Debug for ProxyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |u: &Option<String>| u.as_deref().map(redact_userinfo);
        f.debug_struct("ProxyRequest")
            .field("flag", &hide(&self.flag))
            .field("disabled", &self.disabled)
            .field("config", &hide(&self.config))
            .finish()
    }
}

/// The resolved proxy settings: which proxy, if any, each destination goes through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyRoutes {
    /// For `http://` and `ws://` destinations.
    pub plain: Option<ProxyUrl>,
    /// For `https://` and `wss://` destinations.
    pub tls: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
}

impl ProxyRoutes {
    /// Resolves `req` against the environment (`env` reads one variable).
    pub fn resolve(
        req: &ProxyRequest,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyRoutes, ProxyConfigError> {
        if req.disabled {
            return Ok(ProxyRoutes::default());
        }
        // Lower case first, as curl; an empty value is unset.
        let var = |name: &str| -> Option<(String, String)> {
            [name.to_ascii_lowercase(), name.to_ascii_uppercase()]
                .into_iter()
                .find_map(|n| env(&n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let no_proxy = var("no_proxy")
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        let explicit = match (&req.flag, &req.config) {
            (Some(f), _) => Some(ProxyUrl::parse(f, "--proxy")?),
            (None, Some(c)) => Some(ProxyUrl::parse(c, "`proxy` in the config file")?),
            (None, None) => None,
        };
        if let Some(p) = explicit {
            return Ok(ProxyRoutes {
                plain: Some(p.clone()),
                tls: Some(p),
                no_proxy,
            });
        }
        let from_env = |specific: &str| -> Result<Option<ProxyUrl>, ProxyConfigError> {
            match var(specific).or_else(|| var("all_proxy")) {
                Some((name, v)) => Ok(Some(ProxyUrl::parse(&v, &name)?)),
                None => Ok(None),
            }
        };
        Ok(ProxyRoutes {
            plain: from_env("http_proxy")?,
            tls: from_env("https_proxy")?,
            no_proxy,
        })
    }

    /// The proxy for a connection to `host:port` (`tls`: an `https://`/`wss://`
    /// destination), or `None` to go direct.
    pub fn choose(&self, tls: bool, host: &str, port: u16) -> Option<&ProxyUrl> {
        let proxy = if tls { &self.tls } else { &self.plain };
        proxy
            .as_ref()
            .filter(|_| !self.no_proxy.matches(host, port))
    }

    /// True when no destination can use a proxy.
    pub fn is_direct(&self) -> bool {
        self.plain.is_none() && self.tls.is_none()
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
