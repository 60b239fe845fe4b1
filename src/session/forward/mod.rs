//! `sallyport forward`: local ports to ports on the target (`AWS-StartPortForwardingSession`)
//! or to hosts the target can reach (`...ToRemoteHost`), one session per SPEC, all in one
//! process; and with `-D` a SOCKS5 server ([`socks`]). [`driver`] carries one session's
//! connections (smux or basic, by the agent's version) and [`conn`] one local connection.
//!
//! Messages go to stderr only: one line per forward once its session is up
//! (`forwarding 127.0.0.1:58888 -> i-0abc:8888`). Ctrl-C (or SIGTERM, SIGHUP) ends every
//! forward cleanly: the TerminateSession flag, then the TerminateSession API; exit 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::error::Failure;
use crate::proto::client::{ClientEvent, ClientSession};
use crate::proto::payload::PayloadFlag;
use crate::session::SessionError;
use crate::transport::{Cx, DriveError, Engine, EngineOptions, Kind, Link, LinkOptions, Ready};

use super::lifecycle::{self, Signals, now};
use driver::{Ended, Incoming, Mode};

pub mod conn;
pub mod driver;
pub mod eice;
pub mod socks;

/// Where the remote end of a forward is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Remote {
    /// A port on the target itself.
    Port(u16),
    /// `host:port` as the target resolves and reaches it.
    Host { host: String, port: u16 },
}

/// One `[bind:]local:remote_port` or `[bind:]local:host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    pub bind: IpAddr,
    /// 0 for an ephemeral port.
    pub local_port: u16,
    pub remote: Remote,
}

impl std::str::FromStr for ForwardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts = split_spec(s)?;
        let port = |p: &str| -> Result<u16, String> {
            p.parse()
                .map_err(|_| format!("{p:?} in {s:?} is not a port number (0-65535)"))
        };
        let remote_port = |p: &str| -> Result<u16, String> {
            match port(p)? {
                0 => Err(format!("the remote port in {s:?} cannot be 0")),
                n => Ok(n),
            }
        };
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let spec = match parts.as_slice() {
            [p] => ForwardSpec {
                bind: localhost,
                local_port: remote_port(p)?,
                remote: Remote::Port(remote_port(p)?),
            },
            [l, r] => ForwardSpec {
                bind: localhost,
                local_port: port(l)?,
                remote: Remote::Port(remote_port(r)?),
            },
            [a, b, c] if a.parse::<u16>().is_ok() => ForwardSpec {
                bind: localhost,
                local_port: port(a)?,
                remote: host_remote(b, remote_port(c)?, s)?,
            },
            [a, b, c] => ForwardSpec {
                bind: parse_bind(a)?,
                local_port: port(b)?,
                remote: Remote::Port(remote_port(c)?),
            },
            [a, b, c, d] => ForwardSpec {
                bind: parse_bind(a)?,
                local_port: port(b)?,
                remote: host_remote(c, remote_port(d)?, s)?,
            },
            _ => {
                return Err(format!(
                    "{s:?} is not [bind:]local:remote_port or [bind:]local:host:port"
                ));
            }
        };
        Ok(spec)
    }
}

fn host_remote(host: &str, port: u16, spec: &str) -> Result<Remote, String> {
    if host.is_empty() {
        return Err(format!("the remote host in {spec:?} is empty"));
    }
    Ok(Remote::Host {
        host: host.to_owned(),
        port,
    })
}

/// `127.0.0.1`, `::1`, `0.0.0.0`, `localhost`, `*` (all IPv4 addresses).
pub fn parse_bind(b: &str) -> Result<IpAddr, String> {
    match b {
        "localhost" | "" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "*" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        _ => b
            .parse()
            .map_err(|_| format!("bind address {b:?} is not an IP address or localhost")),
    }
}

/// Splits on `:` outside `[...]`, dropping the brackets (`[::1]:80:[fd00::1]:80`).
fn split_spec(s: &str) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut in_brackets = false;
    for c in s.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    if in_brackets {
        return Err(format!("unbalanced [ in {s:?}"));
    }
    Ok(parts)
}

impl ForwardSpec {
    pub fn document(&self, local_port: u16) -> SessionDocument {
        match &self.remote {
            Remote::Port(port) => SessionDocument::PortForward {
                port: *port,
                local_port,
            },
            Remote::Host { host, port } => SessionDocument::PortForwardToHost {
                host: host.clone(),
                port: *port,
                local_port,
            },
        }
    }
}

/// `i-0abc:8888`, or `db.internal:5432 via i-0abc`. A host name may come from a SOCKS
/// client: it is shown as text ([`crate::text::shown`]).
pub fn describe_remote(target: &str, remote: &Remote) -> String {
    match remote {
        Remote::Port(p) => format!("{target}:{p}"),
        Remote::Host { host, port } => {
            let host = crate::text::shown_max(host, 255);
            if host.contains(':') {
                format!("[{host}]:{port} via {target}")
            } else {
                format!("{host}:{port} via {target}")
            }
        }
    }
}

pub struct ForwardRequest {
    pub target: String,
    pub specs: Vec<ForwardSpec>,
    /// `-D [bind:]port`: a SOCKS5 server.
    pub socks: Option<SocketAddr>,
    /// Open the first forward's address ([`browser_url`]) in a browser.
    pub open: bool,
    pub start: StartOptions,
    pub link: LinkOptions,
}

/// What every forward of one command shares.
#[derive(Clone)]
pub struct Shared {
    pub ssm: Ssm,
    pub target: String,
    pub start: StartOptions,
    pub link: LinkOptions,
    pub stop: watch::Receiver<bool>,
}

/// Runs every forward until Ctrl-C or until all have ended; returns the exit code.
///
/// A stop drops the sessions still being opened, whose guards end them in the background:
/// the caller awaits [`Ssm::await_background`] before exiting.
pub async fn run(ssm: &Ssm, req: &ForwardRequest) -> Result<u8, SessionError> {
    // Listening before any session starts.
    let mut signals = Signals::new();
    let mut listeners = Vec::new();
    for spec in &req.specs {
        listeners.push(bind(SocketAddr::new(spec.bind, spec.local_port)).await?);
    }
    let socks_listener = match req.socks {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // Listening beyond loopback: say so, once per listener, before anything connects.
    let bound = listeners.iter().chain(socks_listener.as_ref());
    for addr in bound.filter_map(|l| l.local_addr().ok()) {
        if let Some(warning) = exposure_warning(addr) {
            eprintln!("{warning}");
        }
    }
    let (stop_tx, stop) = watch::channel(false);
    let shared = Shared {
        ssm: ssm.clone(),
        target: req.target.clone(),
        start: req.start.clone(),
        link: req.link.clone(),
        stop,
    };
    let mut tasks = JoinSet::new();
    for (i, (spec, listener)) in req.specs.iter().zip(listeners).enumerate() {
        let open = req.open && i == 0;
        tasks.spawn(forward_listener(
            shared.clone(),
            spec.clone(),
            listener,
            open,
        ));
    }
    if let Some(l) = socks_listener {
        tasks.spawn(socks::serve(shared.clone(), l));
    }
    let mut first_failure: Option<Failure> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            sig = signals.recv(), if !stopping => {
                tracing::debug!(signal = sig.name(), "stopping the forwards");
                eprintln!("sallyport: {}: ending the sessions", sig.name());
                stopping = true;
                let _ = stop_tx.send(true);
            }
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    let f = Failure::from(e);
                    eprintln!("sallyport: {}", f.message);
                    first_failure.get_or_insert(f);
                }
                Some(Err(e)) => {
                    let e = SessionError::Internal(format!("a forward failed: {e}"));
                    eprintln!("sallyport: {e}");
                    first_failure.get_or_insert(Failure::from(e));
                }
            },
        }
    }
    Ok(first_failure.map_or(0, |f| f.exit_status()))
}

/// Whether `ip` reaches only this machine (`::ffff:127.0.0.1` included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The warning line for a listener other machines can reach: no authentication stands
/// between them and what the target reaches.
pub fn exposure_warning(bound: SocketAddr) -> Option<String> {
    (!is_loopback(bound.ip())).then(|| {
        format!(
            "sallyport: warning: listening on {bound}, beyond this machine: anyone who can \
             reach it gets through to the target's network, with no authentication \
             (bind 127.0.0.1 unless that is meant)"
        )
    })
}

/// `-D` on an address other machines can reach is a SOCKS proxy into the target's network
/// for anyone on them: refused unless `allowed` (`--allow-remote-socks`).
pub fn check_socks_bind(addr: SocketAddr, allowed: bool) -> Result<(), SessionError> {
    if allowed || is_loopback(addr.ip()) {
        return Ok(());
    }
    Err(SessionError::RemoteSocks(addr))
}

/// The URL `--open` opens for a listener bound to `bound`: its own address, or loopback
/// for a wildcard bind (`0.0.0.0`, `::`), which loopback reaches.
pub fn browser_url(bound: SocketAddr) -> String {
    let port = bound.port();
    match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => format!("http://127.0.0.1:{port}/"),
        IpAddr::V6(v6) if v6.is_unspecified() => format!("http://[::1]:{port}/"),
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SessionError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| SessionError::io(format!("cannot listen on {addr}"), e))
}

/// One SPEC: its session, its listener, until stopped or failed.
async fn forward_listener(
    shared: Shared,
    spec: ForwardSpec,
    listener: TcpListener,
    open: bool,
) -> Result<(), SessionError> {
    let local = listener
        .local_addr()
        .map_err(|e| SessionError::io("listener", e))?;
    let label = describe_remote(&shared.target, &spec.remote);
    let announce = move |mode: &Mode| {
        eprintln!("forwarding {local} -> {label}");
        tracing::debug!(mode = mode.name(), "forward up");
        if open {
            open_browser(local);
        }
    };
    let document = spec.document(local.port());
    one_session(
        &shared,
        &document,
        describe_remote(&shared.target, &spec.remote),
        Incoming::Listener(listener),
        announce,
    )
    .await
    .map(|_| ())
}

/// Starts a port session for `document`, waits for its handshake, calls `announce`,
/// then carries `incoming` connections until stopped, failed, or out of connections.
pub async fn one_session(
    shared: &Shared,
    document: &SessionDocument,
    label: String,
    incoming: Incoming,
    announce: impl FnOnce(&Mode),
) -> Result<Ended, SessionError> {
    let mut stop = shared.stop.clone();
    let mut opened = tokio::select! {
        o = lifecycle::open(&shared.ssm, &shared.target, document, &shared.start, &shared.link) => o?,
        _ = super::lifecycle::stopped(&mut stop) => return Ok(Ended::Stopped),
    };
    let options = lifecycle::engine_options(&opened);
    let result = driver::carry(
        &mut opened.link,
        &mut opened.session,
        options,
        incoming,
        &label,
        stop,
        announce,
    )
    .await;
    if opened.session.is_established() && !matches!(result, Err(ref e) if e.session_ended()) {
        end_politely(&mut opened.link, &mut opened.session).await;
    }
    opened.link.close().await;
    lifecycle::terminate(&shared.ssm, &opened.started.session_id).await;
    result
}

/// How long the agent gets to acknowledge the TerminateSession flag.
const GOODBYE_BUDGET: Duration = Duration::from_secs(1);

/// The TerminateSession flag, and a moment for the agent to acknowledge it.
async fn end_politely(link: &mut Link, session: &mut ClientSession) {
    if session
        .send_flag(now(), PayloadFlag::TerminateSession)
        .is_err()
    {
        return;
    }
    let mut settle = Settle {
        give_up: tokio::time::Instant::now() + GOODBYE_BUDGET,
    };
    let _ = Engine::new(link, session, EngineOptions::default())
        .run(&mut settle)
        .await;
}

/// Waits until everything sent is acknowledged (or a deadline), ignoring what arrives.
struct Settle {
    give_up: tokio::time::Instant,
}

impl Kind for Settle {
    type Done = ();
    type Error = DriveError;
    type Local = ();

    fn on_event(
        &mut self,
        _event: ClientEvent,
        _cx: &mut Cx<'_, '_>,
    ) -> Result<Option<()>, DriveError> {
        Ok(None)
    }

    fn local(&mut self, _ready: Ready) -> impl Future<Output = ()> {
        tokio::time::sleep_until(self.give_up)
    }

    fn on_local(&mut self, (): (), _cx: &mut Cx<'_, '_>) -> Result<Option<()>, DriveError> {
        Ok(Some(()))
    }

    fn turn(&mut self, cx: &mut Cx<'_, '_>) -> Result<Option<()>, DriveError> {
        Ok((cx.session().unacked() == 0).then_some(()))
    }
}

/// Opens [`browser_url`] of `bound` with the desktop's opener; failure is a warning.
fn open_browser(bound: SocketAddr) {
    let url = browser_url(bound);
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it without blocking the forward.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => eprintln!("sallyport: warning: could not open {url} with {opener}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    fn spec(s: &str) -> ForwardSpec {
        s.parse().unwrap()
    }

    #[test]
    fn specs_parse_like_ssh_dash_l() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            spec("58888:8888"),
            ForwardSpec {
                bind: lo,
                local_port: 58888,
                remote: Remote::Port(8888)
            }
        );
        assert_eq!(spec("8888").local_port, 8888);
        assert_eq!(spec("0:80").local_port, 0);
        assert_eq!(
            spec("5432:db.internal:5432").remote,
            Remote::Host {
                host: "db.internal".into(),
                port: 5432
            }
        );
        let s = spec("0.0.0.0:8080:80");
        assert_eq!(s.bind, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(s.remote, Remote::Port(80));
        let s = spec("[::1]:8080:[fd00::5]:80");
        assert_eq!(s.bind, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            s.remote,
            Remote::Host {
                host: "fd00::5".into(),
                port: 80
            }
        );
        assert_eq!(spec("localhost:1:2").bind, lo);
    }

    #[test]
    fn bad_specs_say_why() {
        for bad in [
            "",
            "x:80",
            "80:0",
            "1:2:3:4:5",
            "nohost:1:2",
            "[::1:80:80",
            "70000:80",
        ] {
            assert!(bad.parse::<ForwardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn open_goes_to_the_address_bound() {
        let url = |a: &str| browser_url(a.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("127.0.0.2:8080"), "http://127.0.0.2:8080/");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/");
        assert_eq!(url("[::1]:8080"), "http://[::1]:8080/");
        assert_eq!(url("[fd00::5]:8080"), "http://[fd00::5]:8080/");
        assert_eq!(
            url("0.0.0.0:8080"),
            "http://127.0.0.1:8080/",
            "wildcard: loopback"
        );
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/");
    }

    #[test]
    fn listeners_beyond_loopback_warn_and_socks_there_needs_asking() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        for lo in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(exposure_warning(a(lo)), None, "{lo}");
            assert!(check_socks_bind(a(lo), false).is_ok(), "{lo}");
        }
        for lan in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.5:8080",
            "[fd00::5]:8080",
        ] {
            let w = exposure_warning(a(lan)).expect(lan);
            assert!(w.starts_with("sallyport: warning: listening on "), "{w}");
            assert!(w.contains(&a(lan).to_string()) && !w.contains('\n'), "{w}");
            let e = Failure::from(check_socks_bind(a(lan), false).unwrap_err());
            assert_eq!(e.code, ExitCode::Usage);
            assert!(e.message.contains("--allow-remote-socks") && !e.message.contains('\n'));
            assert!(check_socks_bind(a(lan), true).is_ok());
        }
    }

    #[test]
    fn remotes_are_described_for_the_user() {
        assert_eq!(
            describe_remote("i-0abc", &Remote::Port(8888)),
            "i-0abc:8888"
        );
        assert_eq!(
            describe_remote(
                "i-0abc",
                &Remote::Host {
                    host: "::1".into(),
                    port: 80
                }
            ),
            "[::1]:80 via i-0abc"
        );
        let hostile = Remote::Host {
            host: "a\x1b]0;x\x07\u{202e}".into(),
            port: 80,
        };
        assert_eq!(
            describe_remote("i-0abc", &hostile),
            "a\\x1b]0;x\\x07\\u{202e}:80 via i-0abc"
        );
    }
}

/// `-D [bind:]port`: where the SOCKS server listens (127.0.0.1 by default).
pub fn parse_socks_addr(s: &str) -> Result<SocketAddr, String> {
    let parts = split_spec(s)?;
    let (bind, port) = match parts.as_slice() {
        [p] => (IpAddr::V4(Ipv4Addr::LOCALHOST), p.as_str()),
        [b, p] => (parse_bind(b)?, p.as_str()),
        _ => return Err(format!("{s:?} is not [bind:]port")),
    };
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} in {s:?} is not a port number"))?;
    Ok(SocketAddr::new(bind, port))
}

#[cfg(test)]
mod socks_addr_tests {
    use super::*;

    #[test]
    fn socks_addresses_parse() {
        assert_eq!(
            parse_socks_addr("1080").unwrap(),
            "127.0.0.1:1080".parse().unwrap()
        );
        assert_eq!(
            parse_socks_addr("[::1]:1080").unwrap(),
            "[::1]:1080".parse().unwrap()
        );
        assert!(parse_socks_addr("x").is_err());
    }
}
