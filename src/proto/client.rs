//! The client end of a session: the handshake on top of a [`Channel`], and payload types
//! turned into events a session kind can act on. Sans-IO, same call order as [`Channel`].
//!
//! KMS-encrypted sessions (docs/protocol.md §5.4) add one step for the driver: after feeding
//! frames, check [`ClientSession::poll_data_key_request`]; when it yields a request, call
//! KMS `GenerateDataKey` and hand the result to [`ClientSession::provide_data_key`] (or
//! report the failure with [`ClientSession::kms_failed`]). From then on the session seals
//! the Output it sends before it enters the channel (so retransmissions resend identical
//! bytes) and opens the agent's Output, StdErr and ExitCode after reordering.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelConfig, ChannelError, ChannelEvent, Incoming, Role};
use super::crypto::{CryptoError, SessionCipher, is_encrypted};
use super::handshake::{
    AwaitingChallenge, AwaitingComplete, AwaitingDataKey, AwaitingRequest, HandshakeError,
    Requested, SessionParams,
};
use super::payload::{PayloadFlag, PayloadType, SizeData};

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Handshake over (or, for shell sessions without one, the first output arrived).
    Established {
        params: SessionParams,
        customer_message: String,
    },
    /// Bytes from the remote side (Output payloads).
    Data(Vec<u8>),
    /// A command's standard error (NonInteractiveCommands with separate streams).
    StdErr(Vec<u8>),
    /// A command's exit code.
    ExitCode(i32),
    /// The agent could not connect to the destination port (Flag 3).
    PortConnectError,
    /// The service ended the session; the text explains why (may be empty).
    Closed { output: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("the agent broke the protocol: {0}")]
    Protocol(String),
    #[error("a {kind:?} payload from the agent could not be decrypted: {source}")]
    Decrypt {
        kind: PayloadType,
        #[source]
        source: CryptoError,
    },
}

/// The agent wants this session encrypted: get a data key from KMS (`GenerateDataKey`,
/// `NumberOfBytes` 64, encryption context `aws:ssm:SessionId` and `aws:ssm:TargetId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRequest {
    /// The key ID or ARN the agent named.
    pub key_id: String,
}

/// [`ClientSession::provide_data_key`] without a pending request: a bug in the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session is not waiting for a KMS data key")]
pub struct NotAwaitingDataKey;

/// Why [`ClientSession::provide_data_key`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvideKeyError {
    #[error(transparent)]
    NotAwaiting(NotAwaitingDataKey),
    /// The key was unusable; the agent has been told and the session cannot go on.
    #[error(transparent)]
    Failed(ClientError),
}

/// When local input may follow the handshake.
///
/// The agent sends HandshakeComplete and only then marks its handshake done; client input
/// that reaches it in between is acknowledged and dropped (amazon-ssm-agent
/// `datachannel.go`: `PerformHandshake` sets `handshake.complete` after
/// `sendHandshakeComplete` returns, on another goroutine than the reader that drops
/// stream data while it is unset). The gap is microseconds unless that goroutine stalls
/// for longer than a round trip (a busy instance), and an acknowledged loss is never
/// resent. The session plugin starts (and dials the instance port) only after the flag
/// is set, so the first payload the agent sends after HandshakeComplete proves that
/// input is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputGate {
    /// Input may go as soon as HandshakeComplete arrives (the plugin's behaviour).
    AtHandshake,
    /// Input waits for the agent's first stream payload after HandshakeComplete, or
    /// `fallback` after it, whichever comes first. For destinations that speak first
    /// (sshd sends its banner at once); elsewhere it would only delay the first input
    /// by `fallback`.
    AfterFirstOutput { fallback: Duration },
}

/// Sending before the session is established is a bug in the caller, not the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session is not established yet")]
pub struct NotEstablished;

enum State {
    AwaitingRequest(AwaitingRequest),
    AwaitingDataKey(AwaitingDataKey),
    AwaitingChallenge(AwaitingChallenge),
    AwaitingComplete(AwaitingComplete),
    Established,
    /// A transition failed; the error was returned and the session is unusable.
    Failed,
}

pub struct ClientSession {
    channel: Channel,
    state: State,
    events: VecDeque<ClientEvent>,
    /// Payload bytes of the Data and StdErr events waiting in `events`.
    pending_bytes: usize,
    /// Set once an encrypted session is established.
    cipher: Option<SessionCipher>,
    /// A data-key request not yet taken by the driver.
    key_request: Option<DataKeyRequest>,
    /// Starts the nonce counter of an encrypted session.
    nonce_seed: u128,
    /// When input may follow the handshake (see [`InputGate`]).
    gate: InputGate,
    /// Established, but input is held until the agent's first payload or this instant.
    held_until: Option<Instant>,
    /// When the hold began (HandshakeComplete), for the log line that says how long it was.
    held_since: Option<Instant>,
}

impl ClientSession {
    pub fn new(channel: Channel) -> ClientSession {
        ClientSession {
            channel,
            state: State::AwaitingRequest(AwaitingRequest::default()),
            events: VecDeque::new(),
            pending_bytes: 0,
            cipher: None,
            key_request: None,
            nonce_seed: 0,
            gate: InputGate::AtHandshake,
            held_until: None,
            held_since: None,
        }
    }

    /// Chooses when input may follow the handshake (default [`InputGate::AtHandshake`]).
    /// Set it before the handshake completes.
    pub fn with_input_gate(mut self, gate: InputGate) -> ClientSession {
        self.gate = gate;
        self
    }

    /// See [`ClientSession::with_input_gate`].
    pub fn set_input_gate(&mut self, gate: InputGate) {
        self.gate = gate;
    }

    /// True once the session is established and input may be sent (see [`InputGate`]):
    /// drivers read local input only while this holds.
    pub fn accepts_input(&self) -> bool {
        self.is_established() && self.held_until.is_none()
    }

    fn release_input(&mut self, now: Instant, why: &'static str) {
        if self.held_until.take().is_some() {
            let held = self
                .held_since
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            let held_ms = format!("{:.3}", held * 1000.0);
            tracing::debug!(held_ms, "input released: {why}");
        }
    }

    /// Where the nonce counter starts if the session turns out to be encrypted. Pass fresh
    /// randomness in production (a nonce must never repeat under one key).
    pub fn with_nonce_seed(mut self, seed: u128) -> ClientSession {
        self.nonce_seed = seed;
        self
    }

    /// A client session with our default channel settings.
    /// `seed` also seeds the nonce counter of an encrypted session (mixed, so nonces and
    /// MessageIds do not share bits).
    pub fn with_defaults(now: Instant, wall_ms: u64, seed: u128) -> ClientSession {
        ClientSession::new(Channel::new(ChannelConfig::client(), now, wall_ms, seed))
            .with_nonce_seed(seed.rotate_left(64) ^ 0x6b6d_735f_6e6f_6e63_655f_7365_6564_0001)
    }

    /// True once the session is established with KMS encryption.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// True while the handshake waits for [`ClientSession::provide_data_key`].
    pub fn is_waiting_for_data_key(&self) -> bool {
        matches!(self.state, State::AwaitingDataKey(_))
    }

    /// The agent asked for KMS encryption: yields the request once. The handshake waits
    /// until [`ClientSession::provide_data_key`] or [`ClientSession::kms_failed`].
    pub fn poll_data_key_request(&mut self) -> Option<DataKeyRequest> {
        self.key_request.take()
    }

    /// KMS answered: sends the HandshakeResponse carrying `ciphertext_blob`; the
    /// 64-byte `plaintext_key` keys the session. A key of the wrong size fails the
    /// handshake (and tells the agent).
    pub fn provide_data_key(
        &mut self,
        now: Instant,
        ciphertext_blob: &[u8],
        plaintext_key: &[u8],
    ) -> Result<(), ProvideKeyError> {
        let waiting = match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingDataKey(w) => w,
            other => {
                self.state = other;
                return Err(ProvideKeyError::NotAwaiting(NotAwaitingDataKey));
            }
        };
        self.key_request = None;
        match waiting.on_data_key(ciphertext_blob, plaintext_key, self.nonce_seed) {
            Ok((next, response)) => {
                self.channel
                    .send(now, PayloadType::HandshakeResponse, response);
                self.state = State::AwaitingChallenge(next);
                Ok(())
            }
            Err(refusal) => {
                self.channel
                    .send(now, PayloadType::HandshakeResponse, refusal.response);
                Err(ProvideKeyError::Failed(refusal.error.into()))
            }
        }
    }

    /// KMS could not provide a key: tells the agent the KMS action failed with `reason`
    /// and returns the error that ends the session.
    pub fn kms_failed(&mut self, now: Instant, reason: &str) -> ClientError {
        self.key_request = None;
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingDataKey(w) => {
                let refusal = w.refuse(reason.to_owned());
                self.channel
                    .send(now, PayloadType::HandshakeResponse, refusal.response);
                refusal.error.into()
            }
            other => {
                self.state = other;
                HandshakeError::Kms(reason.to_owned()).into()
            }
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ClientError> {
        self.channel.handle_frame(now, frame)?;
        while let Some(ev) = self.channel.poll_event() {
            match ev {
                ChannelEvent::Message(m) => self.on_message(now, m)?,
                ChannelEvent::Closed(c) => self
                    .events
                    .push_back(ClientEvent::Closed { output: c.output }),
                ChannelEvent::Publication { paused } => {
                    // The plugin ignores these too; the agent-side meaning is "stop sending".
                    tracing::debug!(paused, "publication notice from the relay");
                }
            }
        }
        Ok(())
    }

    fn on_message(&mut self, now: Instant, m: Incoming) -> Result<(), ClientError> {
        let Some(kind) = PayloadType::from_u32(m.payload_type) else {
            tracing::debug!(
                payload_type = m.payload_type,
                "ignoring unknown payload type"
            );
            return Ok(());
        };
        match (kind, std::mem::replace(&mut self.state, State::Failed)) {
            (PayloadType::HandshakeRequest, State::AwaitingRequest(s)) => {
                match s.on_request(&m.payload)? {
                    Requested::Respond(next, response) => {
                        self.channel
                            .send(now, PayloadType::HandshakeResponse, response);
                        self.state = State::AwaitingComplete(next);
                    }
                    Requested::NeedDataKey(waiting) => {
                        self.key_request = Some(DataKeyRequest {
                            key_id: waiting.key_id().to_owned(),
                        });
                        self.state = State::AwaitingDataKey(waiting);
                    }
                }
            }
            (PayloadType::EncChallengeRequest, State::AwaitingChallenge(s)) => {
                let (next, response) = s.on_challenge(&m.payload)?;
                self.channel
                    .send(now, PayloadType::EncChallengeResponse, response);
                self.state = State::AwaitingComplete(next);
            }
            (PayloadType::HandshakeComplete, State::AwaitingChallenge(s)) => {
                // An agent that skips the challenge still encrypts: keep the key.
                tracing::debug!("the agent completed the handshake without a challenge");
                self.complete(now, s.into_awaiting_complete(), &m.payload)?;
            }
            (PayloadType::HandshakeComplete, State::AwaitingComplete(s)) => {
                self.complete(now, s, &m.payload)?;
            }
            (PayloadType::Output, State::AwaitingRequest(_)) => {
                // Shell sessions without KMS have no handshake: the agent just streams
                // output, and the plugin infers Standard_Stream from it (docs/protocol.md §5.1).
                self.events.push_back(ClientEvent::Established {
                    params: SessionParams {
                        agent_version: String::new(),
                        session_type: "Standard_Stream".to_owned(),
                        properties: serde_json::Value::Null,
                    },
                    customer_message: String::new(),
                });
                self.pending_bytes += m.payload.len();
                self.events.push_back(ClientEvent::Data(m.payload));
                self.state = State::Established;
            }
            (kind, State::Established) => {
                self.state = State::Established;
                self.release_input(now, "the agent has started the session plugin");
                self.on_stream_payload(kind, m.payload)?;
            }
            (kind, other) => {
                let expecting = match other {
                    State::AwaitingRequest(_) => "a handshake request",
                    State::AwaitingDataKey(_) => "a KMS data key",
                    State::AwaitingChallenge(_) => "an encryption challenge",
                    State::AwaitingComplete(_) => "the handshake to complete",
                    _ => "nothing",
                };
                return Err(ClientError::Protocol(format!(
                    "got a {kind:?} payload while waiting for {expecting}"
                )));
            }
        }
        Ok(())
    }

    fn complete(
        &mut self,
        now: Instant,
        s: AwaitingComplete,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let done = s.on_complete(payload)?;
        if let InputGate::AfterFirstOutput { fallback } = self.gate {
            self.held_until = Some(now + fallback);
            self.held_since = Some(now);
        }
        self.cipher = done.cipher;
        self.events.push_back(ClientEvent::Established {
            params: done.params,
            customer_message: done.customer_message,
        });
        self.state = State::Established;
        Ok(())
    }

    fn on_stream_payload(
        &mut self,
        kind: PayloadType,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        let payload = match &self.cipher {
            Some(c) if is_encrypted(Role::Agent, kind) => c
                .open(&payload)
                .map_err(|source| ClientError::Decrypt { kind, source })?,
            _ => payload,
        };
        match kind {
            PayloadType::Output => {
                self.pending_bytes += payload.len();
                self.events.push_back(ClientEvent::Data(payload))
            }
            PayloadType::StdErr => {
                self.pending_bytes += payload.len();
                self.events.push_back(ClientEvent::StdErr(payload))
            }
            PayloadType::ExitCode => {
                let text = String::from_utf8_lossy(&payload);
                let code = text
                    .trim()
                    .trim_start_matches("EXIT_CODE:")
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| {
                        ClientError::Protocol(format!("bad exit code payload {text:?}"))
                    })?;
                self.events.push_back(ClientEvent::ExitCode(code));
            }
            PayloadType::Flag => match PayloadFlag::decode(&payload) {
                Some(PayloadFlag::ConnectToPortError) => {
                    self.events.push_back(ClientEvent::PortConnectError)
                }
                other => tracing::debug!(?other, "ignoring flag from the agent"),
            },
            other => tracing::debug!(?other, "ignoring payload type after the handshake"),
        }
        Ok(())
    }

    /// Queues stream bytes (chunked into Output messages; each chunk sealed first in an
    /// encrypted session, so it grows by [`crate::proto::crypto::OVERHEAD`] bytes, as the
    /// plugin's do).
    pub fn send_data(&mut self, now: Instant, data: &[u8]) -> Result<(), NotEstablished> {
        if !self.is_established() {
            return Err(NotEstablished);
        }
        match &mut self.cipher {
            None => self.channel.send_data(now, data),
            Some(cipher) => {
                let max = self.channel.config().max_payload.max(1);
                for chunk in data.chunks(max) {
                    match cipher.seal(chunk) {
                        Ok(sealed) => self.channel.send(now, PayloadType::Output, sealed),
                        // Only for inputs of tens of gigabytes; never from a chunk.
                        Err(e) => tracing::error!("dropping data that could not be encrypted: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    pub fn send_flag(&mut self, now: Instant, flag: PayloadFlag) -> Result<(), NotEstablished> {
        if !self.is_established() {
            return Err(NotEstablished);
        }
        self.channel.send(now, PayloadType::Flag, flag.encode());
        Ok(())
    }

    pub fn send_size(&mut self, now: Instant, size: SizeData) -> Result<(), NotEstablished> {
        if !self.is_established() {
            return Err(NotEstablished);
        }
        let json = serde_json::to_vec(&size).unwrap_or_default();
        self.channel.send(now, PayloadType::Size, json);
        Ok(())
    }

    pub fn window_available(&self) -> usize {
        self.channel.window_available()
    }

    /// Messages sent and not yet acknowledged by the agent.
    pub fn unacked(&self) -> usize {
        self.channel.unacked()
    }

    /// See [`Channel::on_reconnect`].
    pub fn on_reconnect(&mut self, now: Instant) {
        self.channel.on_reconnect(now);
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let channel = self.channel.poll_timeout();
        match (channel, self.held_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.held_until.is_some_and(|t| now >= t) {
            self.release_input(
                now,
                "no output from the agent since the handshake; sending anyway",
            );
        }
        Ok(self.channel.handle_timeout(now)?)
    }

    pub fn poll_transmit(&mut self) -> Option<bytes::Bytes> {
        self.channel.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if let ClientEvent::Data(b) | ClientEvent::StdErr(b) = &event {
            self.pending_bytes -= b.len();
        }
        Some(event)
    }

    /// Payload bytes delivered in order and not yet taken with [`Self::poll_event`]: a
    /// driver whose local output is full may keep feeding frames (so acks for what it
    /// sends keep arriving) while this stays under a bound of its choosing.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
