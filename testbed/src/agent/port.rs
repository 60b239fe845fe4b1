//! The agent's Port plugin (docs/protocol.md §7): `AWS-StartSSHSession` (no `type`: one
//! stream to `portNumber`, EOF ends the session) and the port-forwarding documents
//! (`type: LocalPortForwarding`), in basic or smux mode by the client's version (§7.1):
//! smux when ClientVersion ≥ 1.1.70, basic otherwise; an instance configured with an
//! agent version up to 3.0.196.0 plays an agent from before smux, basic only.
//!
//! Before dialing a remote host the agent refuses addresses on its deny list (the
//! instance metadata service and friends, §7.5) with "Forwarding to IP address … is
//! forbidden." and ends the session.
//!
//! Basic mode: one TCP connection at a time; client Output is written to it (dialing it
//! first if there is none); DisconnectToPort closes it, and the next Output redials.
//! Client Output payloads are written to TCP before the next client frame is taken, and
//! acknowledged after the write, so a slow destination (or `--instance-write-rate`,
//! [`crate::agent::write_rate`]) back-pressures the channel as it does on the agent.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::channel::AgentEvent;
use crate::agent::payloads::{PayloadFlag, PayloadType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::agent::link::ToClient;
use crate::agent::write_rate::{InstanceRate, write_instance};
use crate::agent::{
    AgentIo, AgentOut, AgentSettings, Replies, Shared, compare_versions, feed_held, finish,
    handshake, lock, new_channel, next_timer, now, on_timer, send_now, sleep_opt,
};
use crate::world::state::SessionRecord;

/// The agent's default deny list (AGT `agent/appconfig/constants.go`). The VPC's
/// reserved addresses, which it also refuses, do not exist here.
pub const DENIED_ADDRESSES: &[&str] = &[
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.169.253",
    "fd00:ec2::253",
    "169.254.169.123",
    "fd00:ec2::123",
    "169.254.169.250",
    "169.254.169.251",
    "fd00:ec2::240",
];

/// The client version from which the agent uses smux (docs/protocol.md §7.1).
const MUX_CLIENT_VERSION: &str = "1.1.70";

/// What a Port session was asked to do, from its document and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// `type: LocalPortForwarding` (else one stream, as for ssh).
    pub forwarding: bool,
    /// `host` (ToRemoteHost only).
    pub host: Option<String>,
    pub port: u16,
    pub local_port: String,
}

impl PortSpec {
    pub fn from_session(session: &SessionRecord) -> PortSpec {
        let param = |k: &str| session.parameters.get(k).and_then(|v| v.first()).cloned();
        let doc = session.document.as_str();
        let forwarding = doc.starts_with("AWS-StartPortForwardingSession");
        let default_port = if forwarding { 80 } else { 22 };
        PortSpec {
            forwarding,
            host: if doc == "AWS-StartPortForwardingSessionToRemoteHost" {
                param("host")
            } else {
                None
            },
            port: param("portNumber")
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port),
            local_port: param("localPortNumber").unwrap_or_else(|| "0".to_owned()),
        }
    }

    /// The document's substituted properties, keys sorted as Go marshals a map.
    pub fn properties(&self) -> serde_json::Value {
        if !self.forwarding {
            // AWS-StartSSHSession's properties: portNumber only, no `type`.
            return json!({ "portNumber": self.port.to_string() });
        }
        let mut p = serde_json::Map::new();
        if let Some(h) = &self.host {
            p.insert("host".into(), json!(h));
        }
        p.insert("localPortNumber".into(), json!(self.local_port));
        p.insert("portNumber".into(), json!(self.port.to_string()));
        p.insert("type".into(), json!("LocalPortForwarding"));
        serde_json::Value::Object(p)
    }

    /// Where to connect: the instance's own "localhost" unless a remote host was given.
    pub fn dial_target(&self, session: &SessionRecord) -> String {
        match self.host.as_deref() {
            None | Some("localhost") => session.instance.dial_target(self.port),
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", self.port),
            Some(h) => format!("{h}:{}", self.port),
        }
    }
}

/// The first address `host` resolves to that the agent refuses to forward to.
pub async fn forbidden_address(host: &str, port: u16) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = tokio::net::lookup_host((host, port)).await.ok()?;
    let denied: Vec<IpAddr> = DENIED_ADDRESSES
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    addrs.map(|a| a.ip()).find(|ip| denied.contains(ip))
}

pub async fn run(
    session: Arc<SessionRecord>,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let ch = new_channel(&settings);
    let spec = PortSpec::from_session(&session);
    let client_version = handshake(
        &ch,
        &mut io,
        &settings,
        &session.instance.agent_version,
        "Port",
        spec.properties(),
        // Port sessions are never encrypted, whatever the instance's KMS setting.
        None,
    )
    .await?;
    if !spec.forwarding {
        return run_stream(ch, &session, &spec, settings, io).await;
    }
    if let Some(host) = &spec.host
        && let Some(ip) = forbidden_address(host, spec.port).await
    {
        let output = format!("Forwarding to IP address {ip} is forbidden.");
        let _ = io.to_client.send(AgentOut::Close { output });
        return Ok(());
    }
    let target = spec.dial_target(&session);
    // Agents up to 3.0.196.0 predate smux (the plugin's own threshold): basic only.
    let agent_has_mux = compare_versions(&session.instance.agent_version, "3.0.196.0").is_gt();
    if agent_has_mux && compare_versions(&client_version, MUX_CLIENT_VERSION).is_ge() {
        crate::agent::port_mux::run(ch, &session, &client_version, target, settings, io).await
    } else {
        run_basic(ch, target, settings, io).await
    }
}

/// One stream to the port, ended by EOF from either side (AWS-StartSSHSession).
async fn run_stream(
    ch: Shared,
    session: &SessionRecord,
    spec: &PortSpec,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let target = spec.dial_target(session);
    let stream = match TcpStream::connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            // What the real agent sends when a basic-mode dial fails is not documented; we
            // send the mux mode's ConnectToPortError flag, then end the session.
            send_now(
                &ch,
                &io.to_client,
                PayloadType::Flag,
                PayloadFlag::ConnectToPortError.encode(),
            );
            let output = format!("Unable to start port session: dial tcp {target}: {e}");
            let _ = io.to_client.send(AgentOut::Close { output });
            return Ok(());
        }
    };
    let _ = stream.set_nodelay(true);
    let (tcp_r, mut tcp_w) = stream.into_split();
    let sent = Arc::new(Notify::new());
    let (eof_tx, mut eof_rx) = mpsc::channel::<u64>(1);
    let pump = tokio::spawn(pump_output(
        tcp_r,
        0,
        ch.clone(),
        io.to_client.clone(),
        settings.clone(),
        sent.clone(),
        eof_tx,
    ));
    let mut remote_eof_at: Option<Instant> = None;
    let rate = InstanceRate::new(settings.instance_write_rate);
    let end = loop {
        let deadline = next_timer(&ch);
        let drained = remote_eof_at.is_some() && lock(&ch).unacked() == 0;
        if drained {
            break String::new();
        }
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { break String::new() };
                let (events, replies) = feed_held(&ch, &frame);
                let to = Instance { w: &mut tcp_w, rate: &rate, ch: &ch, out: &io.to_client };
                if let Some(reason) = write_stream_events(events, replies, to).await {
                    break reason;
                }
            }
            _ = sleep_opt(deadline) => on_timer(&ch, &io.to_client),
            _ = sent.notified() => {}
            _ = eof_rx.recv(), if remote_eof_at.is_none() => {
                remote_eof_at = Some(Instant::now());
            }
            // The agent drains its outgoing buffer for at most 2 s before it ends.
            _ = sleep_opt(remote_eof_at.map(|t| t + Duration::from_secs(2))) => break String::new(),
        }
    };
    pump.abort();
    let _ = tcp_w.shutdown().await;
    let _ = io.to_client.send(AgentOut::Close { output: end });
    Ok(())
}

/// Where client data goes: the instance-side socket, at the session's rate, with the
/// channel's timer kept while a write blocks.
struct Instance<'a> {
    w: &'a mut OwnedWriteHalf,
    rate: &'a InstanceRate,
    ch: &'a Shared,
    out: &'a ToClient,
}

impl Instance<'_> {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        write_instance(self.w, data, self.rate, self.ch, self.out).await
    }
}

/// Writes client data to the destination; returns a reason when the session must end.
/// The acks go out once the first message is handled (none if its write failed).
async fn write_stream_events(
    events: Vec<AgentEvent>,
    replies: Replies,
    mut to: Instance<'_>,
) -> Option<String> {
    let mut replies = Some(replies);
    for ev in events {
        let AgentEvent::Message(m) = ev else {
            continue;
        };
        match PayloadType::from_u32(m.payload_type) {
            Some(PayloadType::Output) if to.write(&m.payload).await.is_err() => {
                return Some(String::new());
            }
            Some(PayloadType::Flag) => match PayloadFlag::decode(&m.payload) {
                Some(PayloadFlag::TerminateSession) | Some(PayloadFlag::DisconnectToPort) => {
                    // SSH (no `type`) sessions end when the local side disconnects.
                    if let Some(r) = replies.take() {
                        r.send(to.out);
                    }
                    return Some(String::new());
                }
                _ => {}
            },
            // Handshake leftovers and Size are meaningless for a port stream.
            _ => {}
        }
        if let Some(r) = replies.take() {
            r.send(to.out);
        }
    }
    if let Some(r) = replies.take() {
        r.send(to.out);
    }
    None
}

/// The basic-mode connection to the destination, if one is up.
struct BasicConn {
    write: OwnedWriteHalf,
    pump: tokio::task::JoinHandle<()>,
    generation: u64,
}

impl BasicConn {
    async fn close(mut self) {
        self.pump.abort();
        let _ = self.write.shutdown().await;
    }
}

/// Basic-mode LocalPortForwarding: one destination connection at a time.
async fn run_basic(
    ch: Shared,
    target: String,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let sent = Arc::new(Notify::new());
    let (eof_tx, mut eof_rx) = mpsc::channel::<u64>(4);
    let mut conn: Option<BasicConn> = None;
    let mut generation = 0u64;
    let rate = InstanceRate::new(settings.instance_write_rate);
    'session: loop {
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { break 'session };
                let (events, replies) = feed_held(&ch, &frame);
                let mut replies = Some(replies);
                for ev in events {
                    let AgentEvent::Message(m) = ev else { continue };
                    match PayloadType::from_u32(m.payload_type) {
                        Some(PayloadType::Output) => {
                            if conn.is_none() {
                                generation += 1;
                                conn = dial_basic(&ch, &io, &target, &settings, &sent, &eof_tx, generation).await;
                            }
                            let Some(c) = conn.as_mut() else { continue };
                            if write_instance(&mut c.write, &m.payload, &rate, &ch, &io.to_client).await.is_err()
                                && let Some(c) = conn.take()
                            {
                                c.close().await;
                            }
                        }
                        Some(PayloadType::Flag) => match PayloadFlag::decode(&m.payload) {
                            Some(PayloadFlag::DisconnectToPort) => {
                                if let Some(c) = conn.take() {
                                    c.close().await;
                                }
                            }
                            Some(PayloadFlag::TerminateSession) => {
                                if let Some(r) = replies.take() {
                                    r.send(&io.to_client);
                                }
                                break 'session;
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                    // The handler is done: acknowledge (docs/protocol.md §6.2).
                    if let Some(r) = replies.take() {
                        r.send(&io.to_client);
                    }
                }
                if let Some(r) = replies.take() {
                    r.send(&io.to_client);
                }
            }
            _ = sleep_opt(next_timer(&ch)) => on_timer(&ch, &io.to_client),
            _ = sent.notified() => {}
            Some(g) = eof_rx.recv() => {
                // The destination closed: drop the connection; the next client data redials.
                if conn.as_ref().is_some_and(|c| c.generation == g)
                    && let Some(c) = conn.take()
                {
                    c.close().await;
                }
            }
        }
    }
    if let Some(c) = conn.take() {
        c.close().await;
    }
    finish(&ch, &mut io, String::new()).await;
    Ok(())
}

/// Dials the destination for basic mode; on failure tells the client with the
/// ConnectToPortError flag (a guess for basic mode: documented only for smux mode).
async fn dial_basic(
    ch: &Shared,
    io: &AgentIo,
    target: &str,
    settings: &AgentSettings,
    sent: &Arc<Notify>,
    eof_tx: &mpsc::Sender<u64>,
    generation: u64,
) -> Option<BasicConn> {
    match TcpStream::connect(target).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            let (r, write) = s.into_split();
            let pump = tokio::spawn(pump_output(
                r,
                generation,
                ch.clone(),
                io.to_client.clone(),
                settings.clone(),
                sent.clone(),
                eof_tx.clone(),
            ));
            Some(BasicConn {
                write,
                pump,
                generation,
            })
        }
        Err(e) => {
            tracing::debug!("agent: dial {target} failed: {e}");
            send_now(
                ch,
                &io.to_client,
                PayloadType::Flag,
                PayloadFlag::ConnectToPortError.encode(),
            );
            None
        }
    }
}

/// Reads the destination socket the way the agent does: at most `chunk_size` bytes per
/// message, one message per `pace`. Sends `generation` on `eof` when the socket ends.
async fn pump_output(
    mut tcp_r: OwnedReadHalf,
    generation: u64,
    ch: Shared,
    out: crate::agent::link::ToClient,
    settings: AgentSettings,
    sent: Arc<Notify>,
    eof: mpsc::Sender<u64>,
) {
    let mut buf = vec![0u8; settings.chunk_size.max(1)];
    let mut pacer = crate::agent::Pacer::new(settings.pace);
    loop {
        // A relay that does not take our output stops the reading (docs/protocol.md §6.4).
        out.ready().await;
        match tcp_r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = eof.send(generation).await;
                return;
            }
            Ok(n) => {
                let mut c = lock(&ch);
                c.send_data(now(), &buf[..n]);
                crate::agent::flush(&mut c, &out);
            }
        }
        sent.notify_one();
        pacer.after_send().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_addresses_are_forbidden_and_loopback_is_not() {
        assert_eq!(
            forbidden_address("169.254.169.254", 80).await,
            Some("169.254.169.254".parse().unwrap())
        );
        assert!(forbidden_address("fd00:ec2::254", 80).await.is_some());
        assert!(forbidden_address("[fd00:ec2::123]", 80).await.is_some());
        assert_eq!(forbidden_address("127.0.0.1", 80).await, None);
        assert_eq!(forbidden_address("::1", 80).await, None);
    }
}
