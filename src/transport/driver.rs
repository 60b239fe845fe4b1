//! The event loop joining a websocket, a [`ClientSession`] and a local byte stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant as TokioInstant, sleep_until};

use crate::proto::client::{ClientError, ClientEvent, ClientSession};

use super::{DataKeyError, DataKeyProvider, Link, LinkError, LinkEvent, answer_data_key_request};

#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// How long the agent may take to complete the handshake.
    pub handshake_timeout: Duration,
    /// After local input ends, how long at most to wait for the agent to acknowledge what
    /// we sent and for the remote side to finish sending.
    pub drain_timeout: Duration,
    /// After local input ends and all is acknowledged, remote output is still delivered
    /// until the remote side has been quiet this long (there is no half-close on the
    /// channel, so quiet is the only sign that it has flushed).
    pub linger: Duration,
    /// Where data keys come from when the agent demands KMS encryption (None: such
    /// sessions fail with a clear error). Port sessions are never encrypted.
    pub data_keys: Option<Arc<dyn DataKeyProvider>>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            // The agent itself gives up after 15 s per step (PROTOCOL.md §5.2).
            handshake_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(300),
            data_keys: None,
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
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the agent did not complete the session handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("the agent could not connect to the destination port on the instance")]
    PortRefused,
    #[error(
        "the target requires KMS encryption for this session, but no data key could be had: {0}"
    )]
    DataKey(DataKeyError),
    #[error("reading local input failed: {0}")]
    Input(std::io::Error),
    #[error("writing local output failed: {0}")]
    Output(std::io::Error),
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// Largest local read per turn of the loop: 16 messages' worth.
const READ_CHUNK: usize = 16 * 1024;

/// Pipes `input` into the session and the session's output into `output` until one side
/// ends. Never writes anything but remote bytes to `output`.
pub async fn drive_stream<R, W>(
    link: &mut Link,
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
    let mut buf = vec![0u8; READ_CHUNK];
    let mut input_closed_at: Option<TokioInstant> = None;
    let mut last_remote_data = started;
    loop {
        let keyed = answer_data_key_request(session, opts.data_keys.as_deref()).await;
        while let Some(frame) = session.poll_transmit() {
            link.send(frame);
        }
        keyed?;
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
            event = link.recv() => handle_link_event(session, event)?,
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

/// Feeds one link event to the client end: frames to the core, a reconnect as "resend
/// what was in flight". `Err` when the link is over.
pub fn handle_link_event(
    session: &mut ClientSession,
    event: Option<LinkEvent>,
) -> Result<(), DriveError> {
    match event {
        Some(LinkEvent::Frame(bytes)) => session.handle_frame(now(), &bytes)?,
        Some(LinkEvent::Reconnected { attempt, after }) => {
            tracing::debug!(attempt, ?after, "resending what was in flight");
            session.on_reconnect(now());
        }
        Some(LinkEvent::Failed(e)) => return Err(e.into()),
        None => {
            return Err(LinkError::NotResumable {
                cause: "the link task ended".into(),
            }
            .into());
        }
    }
    Ok(())
}

fn local_output_gone(e: std::io::Error) -> Result<Outcome, DriveError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Outcome::OutputClosed)
    } else {
        Err(DriveError::Output(e))
    }
}
