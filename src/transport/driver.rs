//! The event loop joining a websocket, a [`ClientSession`] and a local byte stream.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::proto::client::{ClientError, ClientEvent, ClientSession};

use super::DataChannelSocket;

#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// Websocket ping interval (the plugin's is 5 min; a shorter one keeps NAT state fresh).
    pub ping_interval: Duration,
    /// How long the agent may take to complete the handshake.
    pub handshake_timeout: Duration,
    /// After local input ends, how long at most to wait for the agent to acknowledge what
    /// we sent and for the remote side to finish sending.
    pub drain_timeout: Duration,
    /// After local input ends and all is acknowledged, remote output is still delivered
    /// until the remote side has been quiet this long (there is no half-close on the
    /// channel, so quiet is the only sign that it has flushed).
    pub linger: Duration,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            ping_interval: Duration::from_secs(60),
            // The agent itself gives up after 15 s per step (PROTOCOL.md §5.2).
            handshake_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(300),
        }
    }
}

/// How a session ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Local input ended and everything we sent was acknowledged.
    InputClosed,
    /// Local input ended but the agent did not acknowledge everything in time.
    InputClosedUnacked { unacked: usize },
    /// Whoever reads our output went away (e.g. ssh exited).
    OutputClosed,
    /// The service ended the session (`channel_closed`); `output` says why, maybe empty.
    ClosedByService { output: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Protocol(#[from] ClientError),
    #[error("the data channel failed: {0}")]
    Socket(#[from] tungstenite::Error),
    #[error("the data channel closed unexpectedly{}", close_text(.code, .reason))]
    UnexpectedClose { code: Option<u16>, reason: String },
    #[error("the agent did not complete the session handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("the agent could not connect to the destination port on the instance")]
    PortRefused,
    #[error("reading local input failed: {0}")]
    Input(std::io::Error),
    #[error("writing local output failed: {0}")]
    Output(std::io::Error),
}

fn close_text(code: &Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), true) => format!(" (close code {c})"),
        (Some(c), false) => format!(" (close code {c}: {reason})"),
        (None, _) => String::new(),
    }
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// Largest local read per turn of the loop: 16 messages' worth.
const READ_CHUNK: usize = 16 * 1024;

/// Pipes `input` into the session and the session's output into `output` until one side
/// ends. Never writes anything but remote bytes to `output`.
pub async fn drive_stream<R, W>(
    ws: &mut DataChannelSocket,
    session: &mut ClientSession,
    mut input: R,
    mut output: W,
    opts: &DriveOptions,
) -> Result<Outcome, DriveError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = TokioInstant::now();
    let handshake_deadline = started + opts.handshake_timeout;
    let mut ping = tokio::time::interval_at(started + opts.ping_interval, opts.ping_interval);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut input_closed_at: Option<TokioInstant> = None;
    let mut last_remote_data = started;
    loop {
        let mut wrote = false;
        while let Some(frame) = session.poll_transmit() {
            ws.feed(WsMessage::binary(frame)).await?;
            wrote = true;
        }
        if wrote {
            ws.flush().await?;
        }
        let mut delivered = false;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Data(bytes) => {
                    if let Err(e) = output.write_all(&bytes).await {
                        return local_output_gone(e);
                    }
                    delivered = true;
                }
                ClientEvent::Established {
                    params,
                    customer_message,
                } => {
                    tracing::debug!(
                        session_type = params.session_type,
                        agent_version = params.agent_version,
                        "session established"
                    );
                    if !customer_message.is_empty() {
                        tracing::info!("{customer_message}");
                    }
                }
                ClientEvent::Closed { output: text } => {
                    let _ = output.flush().await;
                    return Ok(Outcome::ClosedByService { output: text });
                }
                ClientEvent::PortConnectError => return Err(DriveError::PortRefused),
                ClientEvent::StdErr(_) | ClientEvent::ExitCode(_) => {
                    tracing::debug!("ignoring command output in a stream session");
                }
            }
        }
        if delivered {
            last_remote_data = TokioInstant::now();
            if let Err(e) = output.flush().await {
                return local_output_gone(e);
            }
        }
        // Input over and acknowledged: leave once the remote side has been quiet a while.
        let linger_until = input_closed_at
            .filter(|_| session.unacked() == 0)
            .map(|closed| closed.max(last_remote_data) + opts.linger);
        if linger_until.is_some_and(|t| t <= TokioInstant::now()) {
            return Ok(Outcome::InputClosed);
        }
        let timer = session.poll_timeout().map(TokioInstant::from_std);
        let can_read =
            input_closed_at.is_none() && session.is_established() && session.window_available() > 0;
        let read_len = session
            .window_available()
            .saturating_mul(1024)
            .min(buf.len());
        let drain_deadline = input_closed_at.map(|t| t + opts.drain_timeout);
        tokio::select! {
            biased;
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Binary(bytes))) => session.handle_frame(now(), &bytes)?,
                // The plugin feeds text frames to the same parser.
                Some(Ok(WsMessage::Text(text))) => session.handle_frame(now(), text.as_bytes())?,
                Some(Ok(WsMessage::Ping(_))) => ws.flush().await?,
                Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(DriveError::UnexpectedClose {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(DriveError::UnexpectedClose { code: None, reason: String::new() }),
            },
            _ = sleep_until(timer.unwrap_or(started)), if timer.is_some() => {
                session.handle_timeout(now())?;
            }
            read = input.read(&mut buf[..read_len]), if can_read => match read {
                Ok(0) => input_closed_at = Some(TokioInstant::now()),
                Ok(n) => session
                    .send_data(now(), &buf[..n])
                    .map_err(|e| DriveError::Input(std::io::Error::other(e)))?,
                Err(e) => return Err(DriveError::Input(e)),
            },
            _ = ping.tick() => {
                ws.send(WsMessage::Ping(b"keepalive".to_vec().into())).await?;
            }
            _ = sleep_until(handshake_deadline), if !session.is_established() => {
                return Err(DriveError::HandshakeTimeout(opts.handshake_timeout));
            }
            _ = sleep_until(linger_until.unwrap_or(started)), if linger_until.is_some() => {}
            _ = sleep_until(drain_deadline.unwrap_or(started)), if drain_deadline.is_some() => {
                return Ok(match session.unacked() {
                    0 => Outcome::InputClosed,
                    unacked => Outcome::InputClosedUnacked { unacked },
                });
            }
        }
    }
}

fn local_output_gone(e: std::io::Error) -> Result<Outcome, DriveError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Outcome::OutputClosed)
    } else {
        Err(DriveError::Output(e))
    }
}
