//! The client end of a session: the handshake on top of a [`Channel`], and payload types
//! turned into events a session kind can act on. Sans-IO, same call order as [`Channel`].

use std::collections::VecDeque;
use std::time::Instant;

use super::channel::{Channel, ChannelConfig, ChannelError, ChannelEvent, Incoming};
use super::handshake::{AwaitingComplete, AwaitingRequest, HandshakeError, SessionParams};
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
}

/// Sending before the session is established is a bug in the caller, not the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session is not established yet")]
pub struct NotEstablished;

enum State {
    AwaitingRequest(AwaitingRequest),
    AwaitingComplete(AwaitingComplete),
    Established,
    /// A transition failed; the error was returned and the session is unusable.
    Failed,
}

pub struct ClientSession {
    channel: Channel,
    state: State,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    pub fn new(channel: Channel) -> ClientSession {
        ClientSession {
            channel,
            state: State::AwaitingRequest(AwaitingRequest::default()),
            events: VecDeque::new(),
        }
    }

    /// A client session with our default channel settings.
    pub fn with_defaults(now: Instant, wall_ms: u64, seed: u128) -> ClientSession {
        ClientSession::new(Channel::new(ChannelConfig::client(), now, wall_ms, seed))
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
                let (next, response) = s.on_request(&m.payload)?;
                self.channel
                    .send(now, PayloadType::HandshakeResponse, response);
                self.state = State::AwaitingComplete(next);
            }
            (PayloadType::HandshakeComplete, State::AwaitingComplete(s)) => {
                let done = s.on_complete(&m.payload)?;
                self.events.push_back(ClientEvent::Established {
                    params: done.params,
                    customer_message: done.customer_message,
                });
                self.state = State::Established;
            }
            (PayloadType::EncChallengeRequest, _) => {
                return Err(HandshakeError::KmsUnsupported(String::new()).into());
            }
            (PayloadType::Output, State::AwaitingRequest(_)) => {
                // Shell sessions without KMS have no handshake: the agent just streams
                // output, and the plugin infers Standard_Stream from it (PROTOCOL.md §5.1).
                self.events.push_back(ClientEvent::Established {
                    params: SessionParams {
                        agent_version: String::new(),
                        session_type: "Standard_Stream".to_owned(),
                        properties: serde_json::Value::Null,
                    },
                    customer_message: String::new(),
                });
                self.events.push_back(ClientEvent::Data(m.payload));
                self.state = State::Established;
            }
            (kind, State::Established) => {
                self.state = State::Established;
                self.on_stream_payload(kind, m.payload)?;
            }
            (kind, other) => {
                let expecting = match other {
                    State::AwaitingRequest(_) => "a handshake request",
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

    fn on_stream_payload(
        &mut self,
        kind: PayloadType,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        match kind {
            PayloadType::Output => self.events.push_back(ClientEvent::Data(payload)),
            PayloadType::StdErr => self.events.push_back(ClientEvent::StdErr(payload)),
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

    /// Queues stream bytes (chunked into Output messages).
    pub fn send_data(&mut self, now: Instant, data: &[u8]) -> Result<(), NotEstablished> {
        if !self.is_established() {
            return Err(NotEstablished);
        }
        self.channel.send_data(now, data);
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
        self.channel.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        Ok(self.channel.handle_timeout(now)?)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.channel.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
