//! `doctor`'s endpoint probes: DNS, TCP (or the proxy's CONNECT tunnel), TLS and one
//! HTTP answer per endpoint, as every API call and websocket would reach it.

use std::net::{IpAddr, SocketAddr};

use tokio_tungstenite::tungstenite::Error as WsError;

use super::doctor::{Blame, Check, PROBE_TIMEOUT, parse_http_date, unix_now};

/// An endpoint to probe: the service's name and the URL sallyport would use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub service: &'static str,
    pub url: String,
    /// Where the URL came from, for the line ("default", "AWS_ENDPOINT_URL_KMS", …).
    pub source: String,
}

/// What a probe learned.
#[derive(Clone, Debug)]
pub struct Probe {
    pub check: Check,
    /// The server's `Date`, in Unix seconds, and our clock when it arrived.
    pub date: Option<(i64, i64)>,
}

/// DNS, TCP, then TLS and an HTTP answer (a websocket upgrade the endpoint refuses, which
/// takes one round trip and carries a `Date`). When the proxy settings route the endpoint
/// through a proxy (as every API call and websocket would go), the probe opens the same
/// CONNECT tunnel instead of resolving and connecting itself.
pub async fn probe(e: &Endpoint, net: &crate::transport::Network) -> Probe {
    let name = format!("endpoint {}", e.service);
    let Some((tls, host, port)) = split_url(&e.url) else {
        return Probe::failed(
            &name,
            Blame::Other,
            format!("{} ({}) is not an http(s) URL", e.url, e.source),
            "fix the endpoint URL",
        );
    };
    // The same proxy and trust as every other connection (`net`): the routes and the
    // platform roots plus AWS_CA_BUNDLE or the profile's ca_bundle, as resolved when the
    // configuration was loaded.
    let trust = net
        .tls
        .clone()
        .unwrap_or_else(|| crate::transport::client_config(&[]));
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let connected = match net.routes.choose(tls, &bare, port) {
        Some(proxy) => tunnel(&name, e, proxy, (&bare, port), &trust).await,
        None => direct(&name, &host, port).await,
    };
    let (stream, path) = match connected {
        Ok((stream, path)) => (stream, path),
        Err(failed) => return failed,
    };
    let ws = format!(
        "{}://{}/",
        if tls { "wss" } else { "ws" },
        host_port(&host, port)
    );
    let connector = if tls {
        tokio_tungstenite::Connector::Rustls(trust)
    } else {
        tokio_tungstenite::Connector::Plain
    };
    let answer = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio_tungstenite::client_async_tls_with_config(ws, stream, None, Some(connector)),
    )
    .await;
    let now = unix_now();
    let summary = format!(
        "{} ({}): {path}{}",
        e.url,
        e.source,
        if tls { ", TLS" } else { "" }
    );
    judge_answer(&name, &summary, tls, now, answer)
}

/// The CONNECT tunnel through `proxy` to the endpoint (`to`: bare host and port); the
/// stream and "via proxy <proxy>, CONNECT".
async fn tunnel(
    name: &str,
    e: &Endpoint,
    proxy: &crate::transport::ProxyUrl,
    to: (&str, u16),
    trust: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<(crate::transport::NetStream, String), Probe> {
    let (bare, port) = to;
    let tunnel = tokio::time::timeout(
        PROBE_TIMEOUT,
        crate::transport::open_tunnel(proxy, bare, port, trust),
    )
    .await;
    match tunnel {
        Ok(Ok(stream)) => Ok((stream, format!("via proxy {proxy}, CONNECT"))),
        Ok(Err(failure)) => Err(Probe::failed(
            name,
            Blame::Unreachable,
            format!("{} ({}): {failure}", e.url, e.source),
            "check the proxy (--proxy, `proxy` in config.toml, HTTPS_PROXY / HTTP_PROXY) and NO_PROXY, or pass --no-proxy if this host is reachable without it",
        )),
        Err(_) => Err(Probe::failed(
            name,
            Blame::Unreachable,
            format!(
                "{} ({}): the proxy {proxy} did not open a tunnel within {PROBE_TIMEOUT:?}",
                e.url, e.source
            ),
            "check the proxy, or pass --no-proxy if this host is reachable without it",
        )),
    }
}

/// The check for the endpoint's answer to the websocket upgrade (`summary`: the URL and
/// the path taken, `now`: our clock when it arrived): any HTTP answer passes and carries
/// the server's `Date`; no answer, a TLS failure or an untrusted issuer fails.
fn judge_answer<S>(
    name: &str,
    summary: &str,
    tls: bool,
    now: i64,
    answer: Result<
        Result<
            (
                S,
                tokio_tungstenite::tungstenite::handshake::client::Response,
            ),
            WsError,
        >,
        tokio::time::error::Elapsed,
    >,
) -> Probe {
    match answer {
        Err(_) => Probe::failed(
            name,
            Blame::Unreachable,
            format!("{summary}: no HTTP answer within {PROBE_TIMEOUT:?}"),
            "something between here and the endpoint holds the connection; check any proxy",
        ),
        Ok(Err(WsError::Http(resp))) => {
            let date = (resp.headers().get("date"))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date)
                .map(|d| (d, now));
            let plain = if tls {
                ""
            } else {
                " (plain HTTP: a local endpoint)"
            };
            Probe {
                check: Check::ok(
                    name,
                    format!("{summary}, HTTP {}{plain}", resp.status().as_u16()),
                ),
                date,
            }
        }
        Ok(Ok((_, resp))) => Probe {
            check: Check::ok(name, format!("{summary}, HTTP {}", resp.status().as_u16())),
            date: None,
        },
        Ok(Err(WsError::Tls(err))) => Probe::failed(
            name,
            Blame::Unreachable,
            format!("{}: TLS failed: {err}", summary.trim_end_matches(", TLS")),
            "a TLS-inspecting proxy or firewall needs its CA trusted here (AWS_CA_BUNDLE, or ca_bundle in the AWS profile); otherwise check the endpoint name",
        ),
        Ok(Err(err)) if crate::transport::is_unknown_issuer(&err) => Probe::failed(
            name,
            Blame::Unreachable,
            format!("{summary}: {err}"),
            "the certificate's issuer is not trusted: if a TLS-inspecting proxy or a private endpoint signs it, put its CA in AWS_CA_BUNDLE (or ca_bundle in the AWS profile)",
        ),
        Ok(Err(err)) => Probe::failed(
            name,
            Blame::Unreachable,
            format!("{summary}: {err}"),
            "check the endpoint URL and any proxy",
        ),
    }
}

impl Probe {
    fn failed(name: &str, blame: Blame, detail: String, fix: &str) -> Probe {
        Probe {
            check: Check::fail(name, blame, detail, fix),
            date: None,
        }
    }
}

/// DNS and TCP to the endpoint itself; the stream and "DNS <ip> (<kind> address), TCP".
async fn direct(
    name: &str,
    host: &str,
    port: u16,
) -> Result<(crate::transport::NetStream, String), Probe> {
    let fail = |blame, detail: String, fix: &str| Probe::failed(name, blame, detail, fix);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::lookup_host((bare, port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(err)) => {
            return Err(fail(
                Blame::Unreachable,
                format!("DNS: cannot resolve {host}: {err}"),
                "check DNS; for a VPC endpoint, enable its private DNS or pass its name with --endpoint-url",
            ));
        }
        Err(_) => {
            return Err(fail(
                Blame::Unreachable,
                format!("DNS: no answer for {host} within {PROBE_TIMEOUT:?}"),
                "check DNS",
            ));
        }
    };
    let Some(&addr) = addrs.first() else {
        return Err(fail(
            Blame::Unreachable,
            format!("DNS: {host} has no address"),
            "check DNS",
        ));
    };
    let tcp = match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(err)) => {
            return Err(fail(
                Blame::Unreachable,
                format!("TCP: cannot connect to {addr} ({host}): {err}"),
                &tcp_fix(&addrs),
            ));
        }
        Err(_) => {
            return Err(fail(
                Blame::Unreachable,
                format!("TCP: {addr} ({host}) did not answer within {PROBE_TIMEOUT:?}"),
                &tcp_fix(&addrs),
            ));
        }
    };
    let where_ = if addrs.iter().all(|a| is_private(a.ip())) {
        "private address"
    } else {
        "public address"
    };
    Ok((
        crate::transport::NetStream::Tcp(tcp),
        format!("DNS {} ({where_}), TCP", addr.ip()),
    ))
}

/// What to do when TCP fails: a public address that cannot be reached usually means a
/// host without internet access, which needs VPC interface endpoints (PrivateLink).
pub(super) fn tcp_fix(addrs: &[SocketAddr]) -> String {
    let mut fix =
        "check firewalls, security groups and any proxy; a VPC endpoint's security group must allow this host on its port".to_owned();
    if !addrs.iter().all(|a| is_private(a.ip())) {
        fix.push_str(
            "; this name resolves to a public address: a host without internet access needs VPC interface endpoints (ssm, ssmmessages, ec2messages, kms, sts) with private DNS enabled",
        );
    }
    fix
}

/// `https://host[:port][/…]` -> (tls, host, port).
pub(super) fn split_url(url: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    (!host.is_empty()).then_some((tls, host, port))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}
