//! The event loop of one forward: local TCP connections on one side, one port session on
//! the other, in smux mode (many connections at once, each a smux stream) or basic mode
//! (one connection at a time, raw bytes, DisconnectToPort when it ends), PROTOCOL.md §7.
//!
//! Connections come from an [`Incoming`]: a listener, or a channel fed by the SOCKS
//! server. A ConnectToPortError from the agent closes the one connection it concerns
//! (in smux mode the agent's FIN does that) and is reported once; the forward goes on.

use std::collections::HashMap;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::error::{ExitCode, Failure};
use crate::proto::client::{ClientEvent, ClientSession};
use crate::proto::handshake::SessionParams;
use crate::proto::payload::PayloadFlag;
use crate::transport::{DriveError, Link};

use super::forward_conn::{Backlog, ConnEvent, LocalConn};
use super::lifecycle::{self, now, sleep_opt};
use super::smux::{KeepAlive, Mux, MuxEvent, Role};

/// Remote bytes waiting for slow local readers beyond which we stop reading the channel
/// (xtaci's MaxReceiveBuffer, where the plugin's smux stops reading too).
const BACKLOG_LIMIT: usize = 4 * 1024 * 1024;
/// Free send-window messages needed before more local data is taken (one local read is
/// at most 16 messages).
const WINDOW_RESERVE: usize = 32;
/// At most this many local connections at once (smux's accept backlog on the agent).
const MAX_CONNECTIONS: usize = 1024;

/// Where a forward's local connections come from.
pub enum Incoming {
    Listener(TcpListener),
    /// Connections handed over with bytes to write to them first (a SOCKS reply).
    Handed(mpsc::Receiver<(TcpStream, Vec<u8>)>),
}

impl Incoming {
    async fn next(&mut self) -> Option<(TcpStream, Vec<u8>)> {
        match self {
            Incoming::Listener(l) => loop {
                match l.accept().await {
                    Ok((s, _)) => return Some((s, Vec::new())),
                    Err(e) => {
                        // EMFILE and friends: wait a little rather than spin.
                        tracing::warn!("accepting a local connection failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            },
            Incoming::Handed(rx) => rx.recv().await,
        }
    }
}

/// Which way local connections ride the session (PROTOCOL.md §7.1).
pub enum Mode {
    Mux(Mux),
    Basic { current: Option<u32> },
}

impl Mode {
    /// The plugin's rule: smux for `LocalPortForwarding` when the agent is newer than
    /// 3.0.196.0; smux keep-alive only for agents up to 3.1.1511.0.
    pub fn for_session(params: &SessionParams) -> Mode {
        let forwarding =
            params.properties.get("type").and_then(|t| t.as_str()) == Some("LocalPortForwarding");
        if forwarding && version_newer_than(&params.agent_version, "3.0.196.0") {
            let keepalive =
                (!version_newer_than(&params.agent_version, "3.1.1511.0")).then(KeepAlive::default);
            Mode::Mux(Mux::new(Role::Client, keepalive, now()))
        } else {
            Mode::Basic { current: None }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Mux(_) => "smux",
            Mode::Basic { .. } => "basic",
        }
    }
}

/// The plugin's version check: both must have four numeric parts, else "not newer".
pub fn version_newer_than(version: &str, than: &str) -> bool {
    fn parts(v: &str) -> Option<[u64; 4]> {
        let p: Vec<u64> = v
            .trim()
            .split('.')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        p.try_into().ok()
    }
    match (parts(version), parts(than)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// How a forward's loop ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// We were asked to stop.
    Stopped,
    /// No more connections will come (the SOCKS server dropped this destination).
    IncomingClosed,
}

pub struct Driver<'a> {
    pub link: &'a mut Link,
    pub session: &'a mut ClientSession,
    pub mode: Mode,
    pub incoming: Incoming,
    /// Names the forward in messages, e.g. `i-0abc:8888`.
    pub label: String,
    pub stop: watch::Receiver<bool>,
}

impl Driver<'_> {
    pub async fn run(mut self) -> Result<Ended, Failure> {
        let (events_tx, mut events) = mpsc::channel::<ConnEvent>(64);
        let backlog = Backlog::default();
        let mut conns: HashMap<u32, LocalConn> = HashMap::new();
        let mut next_basic_id = 0u32;
        let mut incoming_open = true;
        loop {
            self.deliver(&mut conns)?;
            if let Mode::Mux(mux) = &mut self.mode
                && let Some(bytes) = mux.poll_transmit()
            {
                let _ = self.session.send_data(now(), &bytes);
            }
            lifecycle::flush(self.session, self.link);
            let timer = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let mux_timer = match &self.mode {
                Mode::Mux(m) => m.poll_timeout().map(tokio::time::Instant::from_std),
                Mode::Basic { .. } => None,
            };
            let can_accept = incoming_open
                && match &self.mode {
                    Mode::Mux(_) => conns.len() < MAX_CONNECTIONS,
                    Mode::Basic { current } => current.is_none(),
                };
            let can_send = self.session.window_available() > WINDOW_RESERVE;
            tokio::select! {
                biased;
                _ = self.stop.changed() => return Ok(Ended::Stopped),
                event = self.link.recv(), if backlog.get() < BACKLOG_LIMIT => {
                    lifecycle::on_link_event(self.session, event).map_err(|e| drive_failure(e, &self.label))?;
                }
                _ = sleep_opt(timer) => self
                    .session
                    .handle_timeout(now())
                    .map_err(lifecycle::protocol_failure)?,
                _ = sleep_opt(mux_timer) => {
                    if let Mode::Mux(mux) = &mut self.mode {
                        mux.handle_timeout(now()).map_err(|e| Failure::new(
                            ExitCode::Protocol, format!("{}: {e}", self.label)))?;
                    }
                }
                Some(ev) = events.recv(), if can_send => self.on_conn_event(ev, &mut conns),
                next = self.incoming.next(), if can_accept => match next {
                    None => {
                        incoming_open = false;
                        if conns.is_empty() {
                            return Ok(Ended::IncomingClosed);
                        }
                    }
                    Some((mut tcp, greeting)) => {
                        if !greeting.is_empty() && tcp.write_all(&greeting).await.is_err() {
                            continue;
                        }
                        let id = match &mut self.mode {
                            Mode::Mux(mux) => mux.open(),
                            Mode::Basic { current } => {
                                next_basic_id = next_basic_id.wrapping_add(1);
                                *current = Some(next_basic_id);
                                next_basic_id
                            }
                        };
                        tracing::debug!(id, label = self.label, "local connection accepted");
                        conns.insert(id, LocalConn::spawn(id, tcp, events_tx.clone(), backlog.clone()));
                    }
                },
            }
            if !incoming_open && conns.is_empty() {
                return Ok(Ended::IncomingClosed);
            }
        }
    }

    /// Hands what the session delivered to local connections.
    fn deliver(&mut self, conns: &mut HashMap<u32, LocalConn>) -> Result<(), Failure> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                ClientEvent::Data(bytes) => match &mut self.mode {
                    Mode::Mux(mux) => {
                        mux.handle_input(now(), &bytes).map_err(|e| {
                            Failure::new(ExitCode::Protocol, format!("{}: {e}", self.label))
                        })?;
                        while let Some(mev) = mux.poll_event() {
                            match mev {
                                MuxEvent::Data(id, data) => {
                                    if let Some(c) = conns.get(&id) {
                                        c.send(data);
                                    }
                                }
                                MuxEvent::Finished(id) => {
                                    // smux has no half-close: the stream is over.
                                    mux.close(id);
                                    conns.remove(&id);
                                }
                                // We never accept streams: refuse one the agent opens.
                                MuxEvent::Accepted(id) => mux.close(id),
                            }
                        }
                    }
                    Mode::Basic { current } => {
                        // Output for a connection that already ended is dropped, as the
                        // plugin does.
                        if let Some(c) = current.and_then(|id| conns.get(&id)) {
                            c.send(bytes);
                        }
                    }
                },
                ClientEvent::PortConnectError => {
                    eprintln!(
                        "sallyport: {}: the instance could not connect to the destination; \
                         closed that connection",
                        self.label
                    );
                    if let Mode::Basic { current } = &mut self.mode
                        && let Some(id) = current.take()
                    {
                        conns.remove(&id);
                        let _ = self.session.send_flag(now(), PayloadFlag::DisconnectToPort);
                    }
                }
                ClientEvent::Closed { output } => {
                    let why = if output.is_empty() {
                        "the service ended the session".to_owned()
                    } else {
                        output
                    };
                    return Err(Failure::new(
                        ExitCode::SessionEnded,
                        format!("{}: {why}", self.label),
                    ));
                }
                ClientEvent::Established { .. }
                | ClientEvent::StdErr(_)
                | ClientEvent::ExitCode(_) => {}
            }
        }
        Ok(())
    }

    fn on_conn_event(&mut self, ev: ConnEvent, conns: &mut HashMap<u32, LocalConn>) {
        match (&mut self.mode, ev) {
            (Mode::Mux(mux), ConnEvent::Data(id, data)) => {
                let _ = mux.write(id, &data);
            }
            (Mode::Mux(mux), ConnEvent::Eof(id)) => {
                // Keep the connection for what the remote side still sends before its FIN.
                mux.close(id);
            }
            (Mode::Mux(mux), ConnEvent::WriteFailed(id)) => {
                mux.close(id);
                conns.remove(&id);
            }
            (Mode::Basic { current }, ConnEvent::Data(id, data)) => {
                if *current == Some(id) {
                    let _ = self.session.send_data(now(), &data);
                }
            }
            (Mode::Basic { current }, ConnEvent::Eof(id) | ConnEvent::WriteFailed(id)) => {
                if *current == Some(id) {
                    *current = None;
                    conns.remove(&id);
                    let _ = self.session.send_flag(now(), PayloadFlag::DisconnectToPort);
                }
            }
        }
    }
}

fn drive_failure(e: DriveError, label: &str) -> Failure {
    let f = Failure::drive(e, label, 0);
    Failure::new(f.code, format!("{label}: {}", f.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(agent: &str, kind: Option<&str>) -> SessionParams {
        SessionParams {
            agent_version: agent.into(),
            session_type: "Port".into(),
            properties: match kind {
                Some(t) => json!({"portNumber": "80", "type": t}),
                None => json!({"portNumber": "22"}),
            },
        }
    }

    #[test]
    fn mode_follows_the_plugins_rules() {
        assert_eq!(
            Mode::for_session(&params("3.3.987.0", Some("LocalPortForwarding"))).name(),
            "smux"
        );
        assert_eq!(
            Mode::for_session(&params("3.0.196.0", Some("LocalPortForwarding"))).name(),
            "basic"
        );
        assert_eq!(
            Mode::for_session(&params("3.0.100.0", Some("LocalPortForwarding"))).name(),
            "basic"
        );
        // A three-part version is "not newer" for the plugin.
        assert_eq!(
            Mode::for_session(&params("3.3.987", Some("LocalPortForwarding"))).name(),
            "basic"
        );
        assert_eq!(
            Mode::for_session(&params("3.3.987.0", None)).name(),
            "basic"
        );
    }

    #[test]
    fn keepalive_only_for_old_agents() {
        let Mode::Mux(m) = Mode::for_session(&params("3.3.987.0", Some("LocalPortForwarding")))
        else {
            panic!("smux expected")
        };
        assert_eq!(m.poll_timeout(), None);
        let Mode::Mux(m) = Mode::for_session(&params("3.1.1511.0", Some("LocalPortForwarding")))
        else {
            panic!("smux expected")
        };
        assert!(m.poll_timeout().is_some());
    }

    #[test]
    fn versions_compare_like_the_plugin() {
        assert!(version_newer_than("3.0.197.0", "3.0.196.0"));
        assert!(version_newer_than("10.0.0.0", "3.0.196.0"));
        assert!(!version_newer_than("3.0.196.0", "3.0.196.0"));
        assert!(!version_newer_than("", "3.0.196.0"));
        assert!(!version_newer_than("3.x.1.0", "3.0.196.0"));
    }
}
