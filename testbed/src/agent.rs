//! The agent end of a data channel, modelled on amazon-ssm-agent's Port plugin in basic
//! mode, as `AWS-StartSSHSession` uses it (PROTOCOL.md §5, §6, §7.3, §12):
//!
//! - HandshakeRequest as sequence 0 with the SYN flag, resent until acknowledged, with the
//!   agent's scheduler (one head-of-line check per 100 ms tick, once per RTO);
//! - client stream data other than the handshake response is acknowledged and dropped
//!   until HandshakeComplete has been sent;
//! - after HandshakeComplete, a TCP connection to the instance's port; its bytes are read
//!   at most `chunk_size` at a time, each message followed by a `pace` sleep (1 KiB and
//!   1 ms by default: the agent's StreamDataPayloadSize and `time.Sleep(time.Millisecond)`);
//! - client Output payloads are written to TCP before they are processed further, so a
//!   slow destination back-pressures the channel as it does on the agent;
//! - duplicates are re-acknowledged; no digest check is made on receive;
//! - EOF from the destination ends the session.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sallyport::proto::channel::{Channel, ChannelConfig, ChannelEvent};
use sallyport::proto::payload::{
    HandshakeComplete, HandshakeRequest, HandshakeResponse, PayloadFlag, PayloadType,
    RequestedClientAction, SessionTypeRequest, action_status,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::state::SessionRecord;

/// How the agent behaves; the defaults are the real agent's (PROTOCOL.md §6.6, §14).
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Bytes read from the instance-side socket per message (StreamDataPayloadSize).
    pub chunk_size: usize,
    /// Pause after each data message sent (the agent's `time.Sleep(time.Millisecond)`).
    pub pace: Duration,
    /// How long the agent waits for each handshake step before failing the session.
    pub handshake_timeout: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            chunk_size: 1024,
            pace: Duration::from_millis(1),
            handshake_timeout: Duration::from_secs(15),
        }
    }
}

/// What the agent hands the relay.
#[derive(Debug)]
pub enum AgentOut {
    Frame(Vec<u8>),
    /// The session is over; the relay sends `channel_closed` with this text.
    Close {
        output: String,
    },
}

pub struct AgentIo {
    pub from_client: mpsc::UnboundedReceiver<Vec<u8>>,
    pub to_client: mpsc::UnboundedSender<AgentOut>,
}

/// The channel, shared by the input loop, the output pump and the resend timer.
type Shared = Arc<Mutex<Channel>>;

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn lock(ch: &Shared) -> std::sync::MutexGuard<'_, Channel> {
    ch.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends whatever the channel has queued.
fn flush(ch: &mut Channel, out: &mpsc::UnboundedSender<AgentOut>) {
    while let Some(f) = ch.poll_transmit() {
        let _ = out.send(AgentOut::Frame(f));
    }
}

/// Sends one sequenced message now.
fn send_now(
    ch: &Shared,
    out: &mpsc::UnboundedSender<AgentOut>,
    kind: PayloadType,
    payload: Vec<u8>,
) {
    let mut c = lock(ch);
    c.send(now(), kind, payload);
    flush(&mut c, out);
}

/// Feeds one client frame to the channel (acks go out at once) and returns what it
/// delivered in order. Invalid messages are logged and ignored, as the agent does.
fn feed(ch: &Shared, out: &mpsc::UnboundedSender<AgentOut>, frame: &[u8]) -> Vec<ChannelEvent> {
    let mut c = lock(ch);
    if let Err(e) = c.handle_frame(now(), frame) {
        tracing::debug!("agent ignored a message: {e}");
    }
    flush(&mut c, out);
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Resends what the agent's scheduler would resend by now.
fn on_timer(ch: &Shared, out: &mpsc::UnboundedSender<AgentOut>) {
    let mut c = lock(ch);
    let _ = c.handle_timeout(now());
    flush(&mut c, out);
}

/// Runs one Port session (basic mode, stream to `portNumber`) to its end.
pub async fn run_port_session(
    session: Arc<SessionRecord>,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let mut config = ChannelConfig::agent();
    config.max_payload = settings.chunk_size.max(1);
    let ch: Shared = Arc::new(Mutex::new(Channel::new(
        config,
        now(),
        wall_ms,
        rand::random(),
    )));
    let port = session.port_number().unwrap_or(22);
    let started = Instant::now();
    let request = HandshakeRequest {
        agent_version: session.instance.agent_version.clone(),
        requested_client_actions: vec![RequestedClientAction {
            action_type: "SessionType".to_owned(),
            action_parameters: serde_json::to_value(SessionTypeRequest {
                session_type: "Port".to_owned(),
                // AWS-StartSSHSession's properties: portNumber only, no `type`.
                properties: json!({ "portNumber": port.to_string() }),
            })?,
        }],
    };
    send_now(
        &ch,
        &io.to_client,
        PayloadType::HandshakeRequest,
        serde_json::to_vec(&request)?,
    );
    if let Err(why) = await_handshake(&ch, &mut io, &settings).await {
        let _ = io.to_client.send(AgentOut::Close {
            output: why.clone(),
        });
        anyhow::bail!(why);
    }
    let done = HandshakeComplete {
        handshake_time_to_complete: started.elapsed().as_nanos() as i64,
        customer_message: String::new(),
    };
    send_now(
        &ch,
        &io.to_client,
        PayloadType::HandshakeComplete,
        serde_json::to_vec(&done)?,
    );
    let target = session.instance.dial_target(port);
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
    let (eof_tx, mut eof_rx) = mpsc::channel::<()>(1);
    let pump = tokio::spawn(pump_output(
        tcp_r,
        ch.clone(),
        io.to_client.clone(),
        settings.clone(),
        sent.clone(),
        eof_tx,
    ));
    let mut remote_eof_at: Option<Instant> = None;
    let end = loop {
        let deadline = lock(&ch).poll_timeout().map(Instant::from_std);
        let drained = remote_eof_at.is_some() && lock(&ch).unacked() == 0;
        if drained {
            break String::new();
        }
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { break String::new() };
                let events = feed(&ch, &io.to_client, &frame);
                if let Some(reason) = apply_client_events(events, &mut tcp_w).await {
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

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Waits for a successful HandshakeResponse, acknowledging (and dropping) anything else.
async fn await_handshake(
    ch: &Shared,
    io: &mut AgentIo,
    settings: &AgentSettings,
) -> Result<(), String> {
    let give_up = Instant::now() + settings.handshake_timeout;
    loop {
        let deadline = lock(ch).poll_timeout().map(Instant::from_std);
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { return Err("client went away".into()) };
                for ev in feed(ch, &io.to_client, &frame) {
                    let ChannelEvent::Message(m) = ev else { continue };
                    if m.payload_type != PayloadType::HandshakeResponse as u32 {
                        continue;
                    }
                    let resp: HandshakeResponse = serde_json::from_slice(&m.payload)
                        .map_err(|e| format!("invalid handshake response: {e}"))?;
                    let failed = resp
                        .processed_client_actions
                        .iter()
                        .find(|a| a.action_status != action_status::SUCCESS);
                    if let Some(a) = failed {
                        return Err(format!(
                            "client failed action {}: {}",
                            a.action_type, a.error
                        ));
                    }
                    tracing::debug!(client_version = resp.client_version, "handshake response");
                    return Ok(());
                }
            }
            _ = sleep_opt(deadline) => on_timer(ch, &io.to_client),
            _ = tokio::time::sleep_until(give_up) => {
                return Err("Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".into());
            }
        }
    }
}

/// Writes client data to the destination; returns a reason when the session must end.
async fn apply_client_events(
    events: Vec<ChannelEvent>,
    tcp_w: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Option<String> {
    for ev in events {
        let ChannelEvent::Message(m) = ev else {
            continue;
        };
        match PayloadType::from_u32(m.payload_type) {
            Some(PayloadType::Output) if tcp_w.write_all(&m.payload).await.is_err() => {
                return Some(String::new());
            }
            Some(PayloadType::Flag) => match PayloadFlag::decode(&m.payload) {
                Some(PayloadFlag::TerminateSession) | Some(PayloadFlag::DisconnectToPort) => {
                    // SSH (no `type`) sessions end when the local side disconnects.
                    return Some(String::new());
                }
                _ => {}
            },
            // Handshake leftovers and Size are meaningless for a port stream.
            _ => {}
        }
    }
    None
}

/// Reads the destination socket the way the agent does: at most `chunk_size` bytes per
/// message, then a `pace` sleep.
async fn pump_output(
    mut tcp_r: OwnedReadHalf,
    ch: Shared,
    out: mpsc::UnboundedSender<AgentOut>,
    settings: AgentSettings,
    sent: Arc<Notify>,
    eof: mpsc::Sender<()>,
) {
    let mut buf = vec![0u8; settings.chunk_size.max(1)];
    loop {
        match tcp_r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = eof.send(()).await;
                return;
            }
            Ok(n) => {
                let mut c = lock(&ch);
                c.send_data(now(), &buf[..n]);
                flush(&mut c, &out);
            }
        }
        sent.notify_one();
        if !settings.pace.is_zero() {
            tokio::time::sleep(settings.pace).await;
        }
    }
}
