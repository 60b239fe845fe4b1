//! One forward as a session kind on the engine: local TCP connections on one side, one
//! port session on the other, in smux mode (many connections at once, each a smux stream) or basic mode
//! (one connection at a time, raw bytes, DisconnectToPort when it ends), docs/protocol.md §7.
//!
//! Connections come from an [`Incoming`]: a listener, or a channel fed by the SOCKS
//! server. A ConnectToPortError from the agent closes the one connection it concerns
//! (in smux mode the agent's FIN does that) and is reported once; the forward goes on.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections; local input is read only while the
//! send window has [`WINDOW_RESERVE`] messages free and the link has room, one 16 KiB read
//! at a time through a 64-event queue; remote output for local sockets is bounded by
//! [`BACKLOG_LIMIT`] over all connections (see [`Backlog`]).

use std::collections::HashMap;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::proto::client::{ClientEvent, ClientSession};
use crate::proto::handshake::SessionParams;
use crate::proto::payload::PayloadFlag;
use crate::transport::engine::sleep_opt;
use crate::transport::{Cx, DriveError, Engine, EngineOptions, Kind, Link, Ready};

use super::conn::{Backlog, ConnEvent, LocalConn};
use crate::proto::smux::{KeepAlive, Mux, MuxEvent, Role};
use crate::session::SessionError;
use crate::session::lifecycle::{self, now};

/// Remote bytes waiting for slow local readers (all connections together) beyond which
/// we stop taking frames from the link (xtaci's MaxReceiveBuffer, where the plugin's smux
/// stops reading too). It may be passed by what one frame releases from the core.
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

/// Which way local connections ride the session (docs/protocol.md §7.1).
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

/// Carries one forward's session: waits for the handshake, calls `announce` with the
/// mode the agent's version selects, then carries `incoming` connections until stopped,
/// failed, or out of connections.
pub async fn carry(
    link: &mut Link,
    session: &mut ClientSession,
    options: EngineOptions,
    incoming: Incoming,
    label: &str,
    stop: watch::Receiver<bool>,
    announce: impl FnOnce(&Mode),
) -> Result<Ended, SessionError> {
    let (events_tx, events) = mpsc::channel::<ConnEvent>(64);
    let mut kind = Forward {
        mode: None,
        announce: Some(announce),
        incoming,
        incoming_open: true,
        label,
        stop,
        events_tx,
        events,
        backlog: Backlog::default(),
        conns: HashMap::new(),
        next_basic_id: 0,
    };
    Engine::new(link, session, options)
        .run(&mut kind)
        .await
        .map_err(|e| match e {
            Error::Drive(source) => SessionError::Labelled {
                label: label.to_owned(),
                source: Box::new(SessionError::Drive {
                    source,
                    target: label.to_owned(),
                    port: 0,
                }),
            },
            Error::Session(e) => e,
        })
}

/// The forward session kind.
struct Forward<'l, A> {
    /// Set once the session is established.
    mode: Option<Mode>,
    announce: Option<A>,
    incoming: Incoming,
    incoming_open: bool,
    label: &'l str,
    stop: watch::Receiver<bool>,
    events_tx: mpsc::Sender<ConnEvent>,
    events: mpsc::Receiver<ConnEvent>,
    backlog: Backlog,
    conns: HashMap<u32, LocalConn>,
    next_basic_id: u32,
}

enum Error {
    Drive(DriveError),
    Session(SessionError),
}

impl From<DriveError> for Error {
    fn from(e: DriveError) -> Error {
        Error::Drive(e)
    }
}

enum Local {
    Stop,
    Accepted(Option<(TcpStream, Vec<u8>)>),
    Conn(ConnEvent),
    MuxTimer,
    /// Local connections took enough of the backlog: frames may be taken again.
    BacklogDrained,
}

impl<A: FnOnce(&Mode)> Forward<'_, A> {
    /// The agent's multiplexer broke its protocol.
    fn mux_failure(&self, e: impl std::fmt::Display) -> Error {
        Error::Session(SessionError::Multiplexer {
            label: self.label.to_owned(),
            detail: e.to_string(),
        })
    }

    fn on_data(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        match &mut self.mode {
            Some(Mode::Mux(mux)) => {
                if let Err(e) = mux.handle_input(now(), &bytes) {
                    return Err(self.mux_failure(e));
                }
                while let Some(mev) = mux.poll_event() {
                    match mev {
                        MuxEvent::Data(id, data) => {
                            if let Some(c) = self.conns.get(&id) {
                                c.send(data);
                            }
                        }
                        MuxEvent::Finished(id) => {
                            // smux has no half-close: the stream is over.
                            mux.close(id);
                            self.conns.remove(&id);
                        }
                        // We never accept streams: refuse one the agent opens.
                        MuxEvent::Accepted(id) => mux.close(id),
                    }
                }
            }
            Some(Mode::Basic { current }) => {
                // Output for a connection that already ended is dropped, as the plugin
                // does.
                if let Some(c) = current.and_then(|id| self.conns.get(&id)) {
                    c.send(bytes);
                }
            }
            None => tracing::debug!("dropping output before the handshake"),
        }
        Ok(())
    }

    fn on_accept(&mut self, tcp: TcpStream, greeting: Vec<u8>) {
        let id = match &mut self.mode {
            Some(Mode::Mux(mux)) => mux.open(),
            Some(Mode::Basic { current }) => {
                self.next_basic_id = self.next_basic_id.wrapping_add(1);
                *current = Some(self.next_basic_id);
                self.next_basic_id
            }
            None => return,
        };
        tracing::debug!(id, label = self.label, "local connection accepted");
        let conn = LocalConn::spawn(
            id,
            tcp,
            greeting,
            self.events_tx.clone(),
            self.backlog.clone(),
        );
        self.conns.insert(id, conn);
    }

    fn on_conn_event(&mut self, ev: ConnEvent, cx: &mut Cx<'_, '_>) -> Result<(), Error> {
        match (&mut self.mode, ev) {
            (Some(Mode::Mux(mux)), ConnEvent::Data(id, data)) => {
                let _ = mux.write(id, &data);
            }
            (Some(Mode::Mux(mux)), ConnEvent::Eof(id)) => {
                // Keep the connection for what the remote side still sends before its FIN.
                mux.close(id);
            }
            (Some(Mode::Mux(mux)), ConnEvent::WriteFailed(id)) => {
                mux.close(id);
                self.conns.remove(&id);
            }
            (Some(Mode::Basic { current }), ConnEvent::Data(id, data)) => {
                if *current == Some(id) {
                    cx.send_data(&data)?;
                }
            }
            (Some(Mode::Basic { current }), ConnEvent::Eof(id) | ConnEvent::WriteFailed(id)) => {
                if *current == Some(id) {
                    *current = None;
                    self.conns.remove(&id);
                    cx.send_flag(PayloadFlag::DisconnectToPort)?;
                }
            }
            (None, _) => {}
        }
        Ok(())
    }
}

impl<A: FnOnce(&Mode)> Kind for Forward<'_, A> {
    type Done = Ended;
    type Error = Error;
    type Local = Local;

    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Ended>, Error> {
        match event {
            ClientEvent::Established {
                params,
                customer_message,
            } => {
                if !customer_message.is_empty() {
                    // The agent's words: text, not terminal controls.
                    eprintln!("{}", crate::text::shown(&customer_message));
                }
                let mode = Mode::for_session(&params);
                if let Some(announce) = self.announce.take() {
                    announce(&mode);
                }
                self.mode = Some(mode);
            }
            ClientEvent::Data(bytes) => self.on_data(bytes)?,
            ClientEvent::PortConnectError => {
                eprintln!(
                    "sallyport: {}: the instance could not connect to the destination; \
                     closed that connection",
                    self.label
                );
                if let Some(Mode::Basic { current }) = &mut self.mode
                    && let Some(id) = current.take()
                {
                    self.conns.remove(&id);
                    cx.send_flag(PayloadFlag::DisconnectToPort)?;
                }
            }
            ClientEvent::Closed { output } => {
                let why = if output.is_empty() {
                    "the service ended the session".to_owned()
                } else {
                    crate::text::shown(output.trim()).into_owned()
                };
                return Err(Error::Session(SessionError::Ended(format!(
                    "{}: {why}",
                    self.label
                ))));
            }
            ClientEvent::StdErr(_) | ClientEvent::ExitCode(_) => {}
        }
        Ok(None)
    }

    fn local(&mut self, ready: Ready) -> impl Future<Output = Local> {
        let can_accept = self.incoming_open
            && match &self.mode {
                Some(Mode::Mux(_)) => self.conns.len() < MAX_CONNECTIONS,
                Some(Mode::Basic { current }) => current.is_none(),
                None => false,
            };
        let can_send = ready.can_send && ready.window > WINDOW_RESERVE;
        let mux_timer = match &self.mode {
            Some(Mode::Mux(m)) => m.poll_timeout().map(tokio::time::Instant::from_std),
            _ => None,
        };
        let backlog_full = !self.takes_frames();
        let Forward {
            incoming,
            stop,
            events,
            backlog,
            ..
        } = self;
        async move {
            tokio::select! {
                () = lifecycle::stopped(stop) => Local::Stop,
                next = incoming.next(), if can_accept => Local::Accepted(next),
                Some(ev) = events.recv(), if can_send => Local::Conn(ev),
                () = sleep_opt(mux_timer) => Local::MuxTimer,
                () = backlog.below(BACKLOG_LIMIT), if backlog_full => Local::BacklogDrained,
            }
        }
    }

    fn on_local(&mut self, local: Local, cx: &mut Cx<'_, '_>) -> Result<Option<Ended>, Error> {
        match local {
            Local::Stop => return Ok(Some(Ended::Stopped)),
            Local::Accepted(None) => self.incoming_open = false,
            Local::Accepted(Some((tcp, greeting))) => self.on_accept(tcp, greeting),
            Local::Conn(ev) => self.on_conn_event(ev, cx)?,
            Local::MuxTimer => {
                if let Some(Mode::Mux(mux)) = &mut self.mode
                    && let Err(e) = mux.handle_timeout(now())
                {
                    return Err(self.mux_failure(e));
                }
            }
            Local::BacklogDrained => {}
        }
        Ok(None)
    }

    fn takes_frames(&self) -> bool {
        self.backlog.get() < BACKLOG_LIMIT
    }

    fn turn(&mut self, cx: &mut Cx<'_, '_>) -> Result<Option<Ended>, Error> {
        if let Some(Mode::Mux(mux)) = &mut self.mode {
            while let Some(bytes) = mux.poll_transmit() {
                cx.send_data(&bytes)?;
            }
        }
        if !self.incoming_open && self.conns.is_empty() {
            return Ok(Some(Ended::IncomingClosed));
        }
        Ok(None)
    }
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
