//! The agent end of a data channel, modelled on amazon-ssm-agent's session plugins
//! (docs/protocol.md §5-§8, §12). Imports `world` and, of `mgs`, only [`crate::mgs::frames`].
//! This file holds what every session kind shares and picks the kind by session document:
//!
//! - `AWS-StartSSHSession` and the port-forwarding documents: the Port plugin
//!   ([`crate::agent::port`]), basic or smux mode;
//! - `AWS-StartNonInteractiveCommand`: NonInteractiveCommands ([`crate::agent::exec`]);
//! - `SSM-SessionManagerRunShell` and `AWS-StartInteractiveCommand`: a shell or command
//!   on a pty ([`crate::agent::shell`]).
//!
//! Shared rules, as on the agent:
//! - a HandshakeRequest as sequence 0 with the SYN flag when the plugin needs one, resent
//!   with the agent's scheduler (one head-of-line check per 100 ms tick, once per RTO);
//! - client stream data other than the handshake response is acknowledged and dropped
//!   until HandshakeComplete has been sent (and for `handshake_complete_lag` after it);
//! - output is read at most `chunk_size` bytes at a time, and each message sent is
//!   followed by a `pace` sleep, as the agent reads StreamDataPayloadSize bytes, sends
//!   them and calls `time.Sleep(time.Millisecond)`; the [`Pacer`] sleeps with
//!   sub-millisecond precision, and its default is calibrated against the official agent
//!   code (see [`crate::agent::pace`]);
//! - duplicates are re-acknowledged; no digest check is made on receive;
//! - client input is handled one frame at a time on the input path: a port or shell
//!   session writes the data to the instance before it takes the next frame, and acks an
//!   in-order message once that write is done (`feed_held`; out-of-order messages are
//!   acked on arrival), so a slow instance (`--instance-write-rate`) holds back the acks;
//!   no frame is taken while the output queue to the relay is full ([`crate::agent::link`]);
//! - at the end, the outgoing buffer is drained for at most 2 s before the session ends.

pub mod channel;
pub(crate) mod child;
pub mod cipher;
pub mod exec;
pub mod kms;
pub mod link;
pub(crate) mod pace;
pub mod payloads;
pub mod port;
pub mod port_mux;
pub mod shell;
pub mod write_rate;

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::payloads::{
    HandshakeComplete, HandshakeRequest, PayloadType, RequestedClientAction, SessionTypeRequest,
};
use serde_json::Value;
use tokio::time::Instant;

pub(crate) use crate::agent::pace::Pacer;

use crate::agent::channel::{AgentDataChannel, AgentEvent};
use crate::agent::cipher::{AgentCipher, agent_encrypts, client_encrypts};
use crate::agent::link::{AgentInbox, ToClient};
use crate::world::kms_keys::KmsState;
use crate::world::state::SessionRecord;

/// The agent's settings live with the rest of the configuration ([`crate::world::config`]).
pub use crate::world::config::AgentSettings;

/// What the agent hands the relay.
#[derive(Debug)]
pub enum AgentOut {
    Frame(Vec<u8>),
    /// The session is over; the relay sends `channel_closed` with this text.
    Close {
        output: String,
    },
}

/// The agent's queues to and from the relay (see [`crate::agent::link`]).
pub struct AgentIo {
    pub from_client: AgentInbox,
    pub to_client: ToClient,
    /// The testbed's KMS, for instances with a `kms_key_id` (docs/protocol.md §5.4).
    pub kms: Option<Arc<KmsState>>,
}

/// The agent's channel and, once a KMS handshake succeeded, its session cipher: stream
/// payloads of the encrypted types are sealed on the way out and opened on the way in.
pub struct AgentChannel {
    channel: AgentDataChannel,
    cipher: Option<AgentCipher>,
}

impl std::ops::Deref for AgentChannel {
    type Target = AgentDataChannel;
    fn deref(&self) -> &AgentDataChannel {
        &self.channel
    }
}

impl std::ops::DerefMut for AgentChannel {
    fn deref_mut(&mut self) -> &mut AgentDataChannel {
        &mut self.channel
    }
}

impl AgentChannel {
    /// Sends one payload, sealed if the agent encrypts its type.
    pub(crate) fn send_payload(&mut self, kind: PayloadType, payload: Vec<u8>) {
        let payload = match &mut self.cipher {
            Some(c) if agent_encrypts(kind as u32) => match c.seal(&payload) {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::debug!("agent could not seal a payload: {e}");
                    return;
                }
            },
            _ => payload,
        };
        self.channel.send(now(), kind as u32, payload);
    }

    /// Opens the client's encrypted payloads; ones that do not open are dropped.
    fn open_events(&self, events: Vec<AgentEvent>) -> Vec<AgentEvent> {
        let Some(cipher) = &self.cipher else {
            return events;
        };
        events
            .into_iter()
            .filter_map(|ev| match ev {
                AgentEvent::Message(mut m) if client_encrypts(m.payload_type) => {
                    match cipher.open(&m.payload) {
                        Ok(plain) => {
                            m.payload = plain;
                            Some(AgentEvent::Message(m))
                        }
                        Err(e) => {
                            tracing::debug!("agent dropped a payload that did not decrypt: {e}");
                            None
                        }
                    }
                }
                other => Some(other),
            })
            .collect()
    }
}

/// The channel, shared by the input loop, the output pumps and the resend timer.
pub type Shared = Arc<Mutex<AgentChannel>>;

pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

pub(crate) fn lock(ch: &Shared) -> std::sync::MutexGuard<'_, AgentChannel> {
    ch.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh agent-side channel with the agent's rules and `settings.chunk_size` messages.
pub(crate) fn new_channel(settings: &AgentSettings) -> Shared {
    Arc::new(Mutex::new(AgentChannel {
        channel: AgentDataChannel::new(settings.chunk_size, now()),
        cipher: None,
    }))
}

/// Sends whatever the channel has queued.
pub(crate) fn flush(ch: &mut AgentDataChannel, out: &ToClient) {
    while let Some(f) = ch.poll_transmit() {
        let _ = out.send(AgentOut::Frame(f));
    }
}

/// Sends one sequenced message now.
pub(crate) fn send_now(ch: &Shared, out: &ToClient, kind: PayloadType, payload: Vec<u8>) {
    let mut c = lock(ch);
    c.send_payload(kind, payload);
    flush(&mut c, out);
}

/// Sends stream bytes as Output messages of at most the chunk size, now.
pub(crate) fn send_data_now(ch: &Shared, out: &ToClient, data: &[u8]) {
    let mut c = lock(ch);
    if c.cipher.is_some() {
        // The agent encrypts each chunk it read (docs/protocol.md §5.4).
        for chunk in data.chunks(c.max_payload()) {
            c.send_payload(PayloadType::Output, chunk.to_vec());
        }
    } else {
        c.send_data(now(), data);
    }
    flush(&mut c, out);
}

/// Feeds one client frame to the channel (acks go out at once) and returns what it
/// delivered in order. Invalid messages are logged and ignored, as the agent does.
pub(crate) fn feed(ch: &Shared, out: &ToClient, frame: &[u8]) -> Vec<AgentEvent> {
    let (events, replies) = feed_held(ch, frame);
    replies.send(out);
    events
}

/// What the channel answered to a client frame (its acks), held back until the handler
/// of the message is done.
#[must_use = "the acks must be sent"]
pub(crate) struct Replies(Vec<Vec<u8>>);

impl Replies {
    pub(crate) fn send(self, out: &ToClient) {
        for f in self.0 {
            let _ = out.send(AgentOut::Frame(f));
        }
    }
}

/// [`feed`], holding the acks back. The agent acknowledges an in-order message only after
/// its handler succeeded (docs/protocol.md §6.2): a caller whose handler writes to the instance
/// sends the replies once the first delivered message is written. (Messages delivered
/// after it came from the reorder buffer and were acknowledged when they arrived.)
pub(crate) fn feed_held(ch: &Shared, frame: &[u8]) -> (Vec<AgentEvent>, Replies) {
    let mut c = lock(ch);
    if let Err(e) = c.handle_frame(now(), frame) {
        tracing::debug!("agent ignored a message: {e}");
    }
    let replies = Replies(std::iter::from_fn(|| c.poll_transmit()).collect());
    let events = std::iter::from_fn(|| c.poll_event()).collect();
    (c.open_events(events), replies)
}

/// Resends what the agent's scheduler would resend by now.
pub(crate) fn on_timer(ch: &Shared, out: &ToClient) {
    let mut c = lock(ch);
    c.handle_timeout(now());
    flush(&mut c, out);
}

/// The channel's next resend check.
pub(crate) fn next_timer(ch: &Shared) -> Option<Instant> {
    lock(ch).poll_timeout().map(Instant::from_std)
}

pub(crate) async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Drains the outgoing buffer for at most 2 s (resending as the agent does), then ends
/// the session with `output` as the channel_closed text.
pub(crate) async fn finish(ch: &Shared, io: &mut AgentIo, output: String) {
    let give_up = Instant::now() + Duration::from_secs(2);
    while lock(ch).unacked() > 0 {
        tokio::select! {
            frame = io.from_client.recv() => match frame {
                Some(frame) => { feed(ch, &io.to_client, &frame); }
                None => break,
            },
            _ = sleep_opt(next_timer(ch)) => on_timer(ch, &io.to_client),
            _ = tokio::time::sleep_until(give_up) => break,
        }
    }
    let _ = io.to_client.send(AgentOut::Close { output });
}

/// Runs the agent end of one session, by session document, to its end.
pub async fn run(
    session: Arc<SessionRecord>,
    settings: AgentSettings,
    io: AgentIo,
) -> anyhow::Result<()> {
    match session.document.as_str() {
        "SSM-SessionManagerRunShell" | "AWS-StartInteractiveCommand" => {
            crate::agent::shell::run(session, settings, io).await
        }
        "AWS-StartSSHSession"
        | "AWS-StartPortForwardingSession"
        | "AWS-StartPortForwardingSessionToRemoteHost" => {
            crate::agent::port::run(session, settings, io).await
        }
        // AWS-StartNonInteractiveCommand and the account's own command documents
        // (`TestbedConfig::command_documents`), the only others StartSession lets through.
        _ => crate::agent::exec::run(session, settings, io).await,
    }
}

/// What an encrypted session needs to know (docs/protocol.md §5.4).
pub(crate) struct KmsRequest {
    pub state: Arc<KmsState>,
    pub key_id: String,
    pub session_id: String,
    pub target: String,
}

/// KMS for this session: when its instance has a `kms_key_id` and the testbed has a KMS.
/// (Callers skip it for Port sessions, which the agent never encrypts.)
pub(crate) fn kms_request(session: &SessionRecord, io: &AgentIo) -> Option<KmsRequest> {
    Some(KmsRequest {
        state: io.kms.clone()?,
        key_id: session.instance.kms_key_id.clone()?,
        session_id: session.session_id.clone(),
        target: session.instance.id.clone(),
    })
}

/// The handshake (docs/protocol.md §5.2): HandshakeRequest for `session_type` with
/// `properties` (plus the KMSEncryption action when `kms` is given), the client's
/// response, the encryption challenge when encrypting, HandshakeComplete. Returns the
/// client's version. On failure the session is closed with the agent's text.
pub(crate) async fn handshake(
    ch: &Shared,
    io: &mut AgentIo,
    settings: &AgentSettings,
    agent_version: &str,
    session_type: &str,
    properties: Value,
    kms: Option<KmsRequest>,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut actions = vec![RequestedClientAction {
        action_type: "SessionType".to_owned(),
        action_parameters: serde_json::to_value(SessionTypeRequest {
            session_type: session_type.to_owned(),
            properties,
        })?,
    }];
    if let Some(k) = &kms {
        let challenge: [u8; 16] = rand::random();
        actions.push(crate::agent::kms::kms_action(&k.key_id, &challenge));
    }
    let request = HandshakeRequest {
        agent_version: agent_version.to_owned(),
        requested_client_actions: actions,
    };
    send_now(
        ch,
        &io.to_client,
        PayloadType::HandshakeRequest,
        serde_json::to_vec(&request)?,
    );
    let outcome = async {
        let payload = await_payload(ch, io, settings, PayloadType::HandshakeResponse).await?;
        let resp = crate::agent::kms::parse_handshake_response(&payload)?;
        tracing::debug!(client_version = resp.client_version, "handshake response");
        let mut message = String::new();
        if let Some(k) = &kms {
            let mut cipher = crate::agent::kms::accept_data_key(
                &k.state,
                &k.key_id,
                &resp,
                &k.session_id,
                &k.target,
                rand::random(),
            )?;
            let (challenge, request) = crate::agent::kms::Challenge::new(&mut cipher)?;
            send_now(ch, &io.to_client, PayloadType::EncChallengeRequest, request);
            let answer = await_payload(ch, io, settings, PayloadType::EncChallengeResponse).await?;
            challenge.verify(&cipher, &answer)?;
            lock(ch).cipher = Some(cipher);
            message = crate::agent::kms::KMS_NOTICE.to_owned();
        }
        Ok::<_, String>((resp.client_version, message))
    }
    .await;
    let (client_version, customer_message) = match outcome {
        Ok(v) => v,
        Err(why) => {
            let _ = io.to_client.send(AgentOut::Close {
                output: why.clone(),
            });
            anyhow::bail!(why);
        }
    };
    let done = HandshakeComplete {
        handshake_time_to_complete: started.elapsed().as_nanos() as i64,
        customer_message,
    };
    send_now(
        ch,
        &io.to_client,
        PayloadType::HandshakeComplete,
        serde_json::to_vec(&done)?,
    );
    if !settings.handshake_complete_lag.is_zero() {
        drop_input_for(ch, io, settings.handshake_complete_lag).await?;
    }
    Ok(client_version)
}

/// The stalled goroutine of [`AgentSettings::handshake_complete_lag`]: for `lag`, client
/// stream data is acknowledged and dropped, as before HandshakeComplete.
async fn drop_input_for(ch: &Shared, io: &mut AgentIo, lag: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + lag;
    loop {
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { anyhow::bail!("client went away") };
                for ev in feed(ch, &io.to_client, &frame) {
                    if let AgentEvent::Message(m) = ev {
                        tracing::info!(
                            payload_type = m.payload_type,
                            bytes = m.payload.len(),
                            "handshake not yet marked complete: input acknowledged and dropped"
                        );
                    }
                }
            }
            _ = sleep_opt(next_timer(ch)) => on_timer(ch, &io.to_client),
            _ = tokio::time::sleep_until(until) => return Ok(()),
        }
    }
}

/// Waits for the client's next payload of `kind`, acknowledging (and dropping) anything
/// else, as the agent does until the handshake is complete (each step: 15 s).
async fn await_payload(
    ch: &Shared,
    io: &mut AgentIo,
    settings: &AgentSettings,
    kind: PayloadType,
) -> Result<Vec<u8>, String> {
    let give_up = Instant::now() + settings.handshake_timeout;
    loop {
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { return Err("client went away".into()) };
                for ev in feed(ch, &io.to_client, &frame) {
                    if let AgentEvent::Message(m) = ev
                        && m.payload_type == kind as u32
                    {
                        return Ok(m.payload);
                    }
                }
            }
            _ = sleep_opt(next_timer(ch)) => on_timer(ch, &io.to_client),
            _ = tokio::time::sleep_until(give_up) => {
                return Err(match kind {
                    PayloadType::EncChallengeResponse => "Timed out waiting for encryption challenge.".into(),
                    _ => "Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".into(),
                });
            }
        }
    }
}

/// Compares dotted version numbers part by part, missing parts as 0, as the agent's
/// feature gates do. An empty or malformed version is lower than any valid one.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> Option<Vec<u64>> {
        if v.trim().is_empty() {
            return None;
        }
        v.trim().split('.').map(|p| p.parse().ok()).collect()
    }
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => {
            let n = x.len().max(y.len());
            let get = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
            (0..n)
                .map(|i| get(&x, i).cmp(&get(&y, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_the_agent() {
        assert_eq!(compare_versions("1.2.707.0", "1.1.70"), Ordering::Greater);
        assert_eq!(compare_versions("1.1.70", "1.1.70.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.1.69.9", "1.1.70"), Ordering::Less);
        assert_eq!(compare_versions("", "1.1.70"), Ordering::Less);
        assert_eq!(compare_versions("x.y", "0.0.1"), Ordering::Less);
    }
}
