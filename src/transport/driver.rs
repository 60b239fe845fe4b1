//! A local byte stream (stdin/stdout, an in-memory pipe) as a session kind on the
//! [`Engine`]: input goes to the session while the window allows, remote output to the
//! engine's bounded output buffer, and the session ends when input has ended and the
//! remote side has gone quiet, or when either side goes away.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use crate::proto::client::{ClientError, ClientEvent, ClientSession, NotEstablished};

use super::engine::{Cx, Engine, EngineOptions, Kind, OutputId, Ready, sleep_opt};
use super::{DataKeyError, DataKeyProvider, Link, LinkError};

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
    /// The command's set-up timeline, for the handshake and first-byte steps.
    pub timeline: crate::timeline::Timeline,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            handshake_timeout: EngineOptions::default().handshake_timeout,
            drain_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(300),
            data_keys: None,
            timeline: crate::timeline::Timeline::default(),
        }
    }
}

impl DriveOptions {
    fn engine(&self) -> EngineOptions {
        EngineOptions {
            handshake_timeout: self.handshake_timeout,
            data_keys: self.data_keys.clone(),
            timeline: self.timeline.clone(),
            ..EngineOptions::default()
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
    /// The client end refused bytes to send (e.g. an encrypted session could not seal
    /// them): the session ends rather than lose them.
    #[error("could not send on the data channel ({0}); ended the session rather than lose data")]
    Send(#[source] NotEstablished),
}

/// Largest local read per turn: 16 messages' worth.
const READ_CHUNK: usize = 16 * 1024;

/// Pipes `input` into the session and the session's output into `output` until one side
/// ends. Never writes anything but remote bytes to `output`.
pub async fn drive_stream<R, W>(
    link: &mut Link,
    session: &mut ClientSession,
    input: R,
    output: W,
    opts: &DriveOptions,
) -> Result<Outcome, DriveError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let mut engine = Engine::new(link, session, opts.engine());
    let out = engine.output(output);
    let mut kind = Stream {
        input,
        out,
        buf: vec![0u8; READ_CHUNK],
        input_closed_at: None,
        last_remote_data: Instant::now(),
        drain_timeout: opts.drain_timeout,
        linger: opts.linger,
    };
    engine.run(&mut kind).await
}

/// The byte-stream session kind.
struct Stream<R> {
    input: R,
    out: OutputId,
    buf: Vec<u8>,
    input_closed_at: Option<Instant>,
    last_remote_data: Instant,
    drain_timeout: Duration,
    linger: Duration,
}

enum StreamLocal {
    Read(std::io::Result<usize>),
    /// Input over, all acknowledged, and the remote side quiet for `linger`.
    Lingered,
    /// Input over and `drain_timeout` passed.
    Drained,
}

impl<R: AsyncRead + Unpin> Kind for Stream<R> {
    type Done = Outcome;
    type Error = DriveError;
    type Local = StreamLocal;

    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Outcome>, DriveError> {
        match event {
            ClientEvent::Data(bytes) => {
                cx.write(self.out, &bytes);
                self.last_remote_data = Instant::now();
            }
            ClientEvent::Established {
                customer_message, ..
            } => {
                if !customer_message.is_empty() {
                    tracing::info!("{}", crate::text::shown(&customer_message));
                }
            }
            ClientEvent::Closed { output } => {
                return Ok(Some(Outcome::ClosedByService { output }));
            }
            ClientEvent::PortConnectError => return Err(DriveError::PortRefused),
            ClientEvent::StdErr(_) | ClientEvent::ExitCode(_) => {
                tracing::debug!("ignoring command output in a stream session");
            }
        }
        Ok(None)
    }

    fn local(&mut self, ready: Ready) -> impl Future<Output = StreamLocal> {
        // Input over and acknowledged: leave once the remote side has been quiet a while.
        let linger_until = self
            .input_closed_at
            .filter(|_| ready.unacked == 0)
            .map(|closed| closed.max(self.last_remote_data) + self.linger);
        let drain_deadline = self.input_closed_at.map(|t| t + self.drain_timeout);
        let can_read = self.input_closed_at.is_none() && ready.can_send;
        let len = ready.window.saturating_mul(1024).min(self.buf.len());
        let input = &mut self.input;
        let buf = &mut self.buf[..len];
        async move {
            tokio::select! {
                read = input.read(buf), if can_read => StreamLocal::Read(read),
                () = sleep_opt(linger_until) => StreamLocal::Lingered,
                () = sleep_opt(drain_deadline) => StreamLocal::Drained,
            }
        }
    }

    fn on_local(
        &mut self,
        local: StreamLocal,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Outcome>, DriveError> {
        match local {
            StreamLocal::Read(Ok(0)) => self.input_closed_at = Some(Instant::now()),
            StreamLocal::Read(Ok(n)) => cx.send_data(self.buf.get(..n).unwrap_or_default())?,
            StreamLocal::Read(Err(e)) => return Err(DriveError::Input(e)),
            StreamLocal::Lingered => return Ok(Some(Outcome::InputClosed)),
            StreamLocal::Drained => {
                return Ok(Some(match cx.session().unacked() {
                    0 => Outcome::InputClosed,
                    unacked => Outcome::InputClosedUnacked { unacked },
                }));
            }
        }
        Ok(None)
    }

    fn on_output_error(
        &mut self,
        _output: OutputId,
        e: std::io::Error,
    ) -> Result<Option<Outcome>, DriveError> {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(Some(Outcome::OutputClosed))
        } else {
            Err(DriveError::Output(e))
        }
    }
}
