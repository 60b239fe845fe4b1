//! The session engine: the one event loop between a [`Link`] and a [`ClientSession`],
//! for every session kind.
//!
//! The engine runs the `select!` every session needs: link events (frames into the core,
//! a reconnect as "resend what was in flight"), the core's timer, the handshake
//! deadline, KMS data-key requests, frames from the core to the link, and remote output
//! to local writers. A session kind ([`Kind`]) plugs in what is its own: what core events
//! mean to it, and one extra select source (local input, signals, listeners, its own
//! deadlines). Kinds never write to local outputs themselves: they hand bytes to
//! [`Cx::write`], and the engine writes them in its own select branch, so a slow stdout
//! or socket never stalls acks, timers or keep-alives.
//!
//! Bounds (docs/architecture.md, "Bounded by construction"):
//! - local output: at most [`EngineOptions::output_bound`] bytes ([`OUTPUT_BOUND`], 1 MiB,
//!   by default) over all outputs, plus one event's payload (at most one websocket
//!   message, 1 MiB). While above it the engine takes no events from the core and no
//!   frames from the link: the peer is held back by data we have not acknowledged, not
//!   by our memory. (Events the core already decoded wait in the core, whose reorder
//!   buffer is bounded by its own configuration.)
//! - remote bytes the core has delivered while output is full: frames are still taken
//!   until the core holds [`HOLD_BOUND`] (4 MiB) of them, so acks for our own sending
//!   keep arriving through short output stalls (the congestion window needs them); past
//!   it the engine stops reading the link, as above.
//! - link outbound: the link's queue holds [`super::link::OUTBOUND_FRAMES`] frames. When
//!   it is full the engine keeps one frame back, leaves the rest in the core, and reads
//!   no local input ([`Ready::can_send`]) until it has room for [`INPUT_ROOM`] frames.
//! - local input: read only while the channel's send window is open, so the core holds
//!   at most its window (4096 messages) of unacknowledged data.
//!
//! Call order inside one turn: answer a data-key request (if any), flush frames, hand
//! core events to the kind while output has room, [`Kind::turn`], flush frames, then
//! wait for the first ready source in this order: the core's timer, local output, the
//! link (plus up to [`LINK_BATCH`] events already waiting, each handed over at once),
//! the handshake deadline, the kind's source.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, sleep_until};

use crate::proto::client::{ClientEvent, ClientSession};
use crate::proto::payload::{PayloadFlag, SizeData};

use super::link::LinkWake;
use super::{DataKeyProvider, DriveError, Link, LinkError, LinkEvent, answer_data_key_request};

/// Default bound on remote bytes waiting for local outputs (all outputs together).
pub const OUTPUT_BOUND: usize = 1 << 20;

/// While local output is full, frames are still taken from the link (so acks for what
/// we send keep arriving and the congestion window keeps moving) until the core holds
/// this many delivered-but-unwritten payload bytes; only then does the engine stop
/// reading and the peer is held back.
pub const HOLD_BOUND: usize = 4 << 20;

/// Link events taken in one go when they are waiting (no select in between).
const LINK_BATCH: usize = 64;

/// Free places the link's outbound queue must have before local input is read: the
/// frames of one 16 KiB read in 1 KiB messages.
pub const INPUT_ROOM: usize = 16;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How long the agent may take to complete the handshake.
    pub handshake_timeout: Duration,
    /// Where data keys come from when the agent demands KMS encryption (None: such
    /// sessions fail with a clear error).
    pub data_keys: Option<Arc<dyn DataKeyProvider>>,
    /// Remote bytes buffered for local outputs beyond which the engine stops handing
    /// events over.
    pub output_bound: usize,
    /// Delivered-but-unwritten bytes the core may hold while output is full before the
    /// engine stops taking frames ([`HOLD_BOUND`]).
    pub hold_bound: usize,
    /// The command's set-up timeline, for the handshake and first-byte steps.
    pub timeline: crate::timeline::Timeline,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            // The agent itself gives up after 15 s per step (docs/protocol.md §5.2).
            handshake_timeout: Duration::from_secs(30),
            data_keys: None,
            output_bound: OUTPUT_BOUND,
            hold_bound: HOLD_BOUND,
            timeline: crate::timeline::Timeline::default(),
        }
    }
}

/// One local output of a session (stdout, stderr, a pipe), from [`Engine::output`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputId(usize);

/// The engine's state as a kind's local source sees it.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub established: bool,
    /// Messages the channel's send window still takes.
    pub window: usize,
    /// Local input may be read now: established and accepting input (see
    /// [`crate::proto::client::InputGate`]), window open, and room on the link.
    pub can_send: bool,
    /// Messages sent and not yet acknowledged.
    pub unacked: usize,
}

/// A session kind: what it does with core events, and its own select source.
///
/// Handlers are synchronous: anything that takes time belongs in [`Kind::local`], which
/// is polled next to the engine's sources and must be cancel-safe (it is dropped and
/// made again every turn).
pub trait Kind {
    /// What the session ends with.
    type Done;
    /// How it fails; the engine's own failures convert into it.
    type Error: From<DriveError>;
    /// What its extra source yields.
    type Local;

    /// A core event. `Some` ends the session, once buffered output is written.
    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Self::Done>, Self::Error>;

    /// The kind's own select source (local input, signals, listeners, deadlines).
    fn local(&mut self, ready: Ready) -> impl Future<Output = Self::Local>;

    /// What [`Kind::local`] yielded.
    fn on_local(
        &mut self,
        local: Self::Local,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Self::Done>, Self::Error>;

    /// Writing a local output failed; by default that ends the session with an error.
    fn on_output_error(
        &mut self,
        _output: OutputId,
        error: io::Error,
    ) -> Result<Option<Self::Done>, Self::Error> {
        Err(DriveError::Output(error).into())
    }

    /// False while the kind's own buffers are full (the engine then takes no frames).
    fn takes_frames(&self) -> bool {
        true
    }

    /// Called once per turn after core events were handed over.
    fn turn(&mut self, _cx: &mut Cx<'_, '_>) -> Result<Option<Self::Done>, Self::Error> {
        Ok(None)
    }
}

/// What a kind may do from its handlers.
pub struct Cx<'e, 'w> {
    session: &'e mut ClientSession,
    outputs: &'e mut Outputs<'w>,
}

impl Cx<'_, '_> {
    /// Queues remote bytes for a local output (never blocks; the engine bounds it).
    pub fn write(&mut self, output: OutputId, bytes: &[u8]) {
        self.outputs.push(output, bytes);
    }

    /// Sends stream bytes. An error (the session cannot send, or an encrypted session
    /// cannot seal) ends the session: data is never silently dropped.
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<(), DriveError> {
        self.session
            .send_data(now(), bytes)
            .map_err(DriveError::Send)
    }

    /// Sends the terminal size (shell sessions).
    pub fn send_size(&mut self, size: SizeData) -> Result<(), DriveError> {
        self.session
            .send_size(now(), size)
            .map_err(DriveError::Send)
    }

    /// Sends a flag (port sessions).
    pub fn send_flag(&mut self, flag: PayloadFlag) -> Result<(), DriveError> {
        self.session
            .send_flag(now(), flag)
            .map_err(DriveError::Send)
    }

    /// The client end, for flags, sizes and state.
    pub fn session(&mut self) -> &mut ClientSession {
        self.session
    }

    /// Bytes waiting for local outputs.
    pub fn buffered(&self) -> usize {
        self.outputs.buffered
    }
}

/// The engine for one run over a link and a client end (both borrowed: a session kind
/// may run the engine again afterwards, e.g. to end politely).
pub struct Engine<'a> {
    link: &'a mut Link,
    session: &'a mut ClientSession,
    opts: EngineOptions,
    outputs: Outputs<'a>,
    /// A frame the link had no room for; sent before anything else.
    stash: Option<bytes::Bytes>,
}

impl<'a> Engine<'a> {
    pub fn new(link: &'a mut Link, session: &'a mut ClientSession, opts: EngineOptions) -> Self {
        Engine {
            link,
            session,
            opts,
            outputs: Outputs::default(),
            stash: None,
        }
    }

    /// Adds a local output the engine writes remote bytes to.
    pub fn output(&mut self, sink: impl AsyncWrite + Send + 'a) -> OutputId {
        self.outputs.list.push(Output {
            sink: Box::pin(sink),
            buf: VecDeque::new(),
            unflushed: false,
            failed: false,
        });
        OutputId(self.outputs.list.len() - 1)
    }

    /// Runs `kind` until it is done or fails. Output buffered when it is done is written
    /// out first (errors ignored: the session is over).
    pub async fn run<K: Kind>(mut self, kind: &mut K) -> Result<K::Done, K::Error> {
        let handshake_deadline = Instant::now() + self.opts.handshake_timeout;
        loop {
            let keyed = answer_data_key_request(self.session, self.opts.data_keys.as_deref()).await;
            self.flush_transmit();
            keyed?;
            if let Some(done) = self.hand_over(kind)? {
                return Ok(self.finish(done).await);
            }
            self.flush_transmit();
            let established = self.session.is_established();
            // Established, and the agent cannot drop input any more (proto::client::InputGate).
            let accepts = self.session.accepts_input();
            let window = self.session.window_available();
            let input_room = self.link.free() >= INPUT_ROOM;
            let ready = Ready {
                established,
                window,
                can_send: accepts && window > 0 && self.stash.is_none() && input_room,
                unacked: self.session.unacked(),
            };
            // Wake for room: to send the kept frame, or to read input again.
            let room = if self.stash.is_some() {
                1
            } else if accepts && window > 0 && !input_room {
                INPUT_ROOM
            } else {
                0
            };
            let take_frames = self.may_take_frames(kind);
            let timer = self.session.poll_timeout().map(Instant::from_std);
            // Biased: due timers, then output (frees room), then the link (acks make
            // window), and local sources last, as they add work.
            let woke = tokio::select! {
                biased;
                () = sleep_opt(timer) => Woke::Timer,
                wrote = self.outputs.write_some(), if self.outputs.busy() => Woke::Wrote(wrote),
                event = self.link.next(take_frames, room) => Woke::Link(event),
                () = sleep_until(handshake_deadline), if !established => Woke::Handshake,
                local = kind.local(ready) => Woke::Local(local),
            };
            let step = match woke {
                Woke::Link(LinkWake::Event(event)) => {
                    handle_link_event(self.session, event)?;
                    self.take_waiting_frames(kind)?
                }
                Woke::Link(LinkWake::Room) => None,
                Woke::Timer => {
                    self.session
                        .handle_timeout(now())
                        .map_err(DriveError::Protocol)?;
                    None
                }
                Woke::Handshake => {
                    return Err(DriveError::HandshakeTimeout(self.opts.handshake_timeout).into());
                }
                Woke::Wrote(Ok(())) => {
                    self.opts
                        .timeline
                        .since_open(crate::timeline::Step::FirstByte);
                    None
                }
                Woke::Wrote(Err((id, e))) => {
                    self.outputs.fail(id);
                    kind.on_output_error(id, e)?
                }
                Woke::Local(local) => kind.on_local(local, &mut self.cx())?,
            };
            if let Some(done) = step {
                return Ok(self.finish(done).await);
            }
        }
    }

    fn cx(&mut self) -> Cx<'_, 'a> {
        Cx {
            session: self.session,
            outputs: &mut self.outputs,
        }
    }

    /// After one link event, the ones already waiting (up to [`LINK_BATCH`]), each
    /// handed over at once: acks are processed before more local input is read, so the
    /// peer's acks do not queue up behind our own sending.
    /// Frames are taken while output has room, or while the core holds less than the
    /// hold bound of delivered-but-unwritten bytes (see [`HOLD_BOUND`]).
    fn may_take_frames<K: Kind>(&self, kind: &K) -> bool {
        kind.takes_frames()
            && (self.outputs.buffered < self.opts.output_bound
                || self.session.pending_bytes() < self.opts.hold_bound)
    }

    fn take_waiting_frames<K: Kind>(&mut self, kind: &mut K) -> Result<Option<K::Done>, K::Error> {
        for _ in 0..LINK_BATCH {
            if let Some(done) = self.hand_over(kind)? {
                return Ok(Some(done));
            }
            self.flush_transmit();
            if !self.may_take_frames(kind) {
                break;
            }
            let Some(event) = self.link.try_recv() else {
                break;
            };
            handle_link_event(self.session, Some(event))?;
        }
        Ok(None)
    }

    /// Hands core events to the kind while local output has room, then its turn.
    fn hand_over<K: Kind>(&mut self, kind: &mut K) -> Result<Option<K::Done>, K::Error> {
        while self.outputs.buffered < self.opts.output_bound {
            let Some(event) = self.session.poll_event() else {
                break;
            };
            if let ClientEvent::Established { params, .. } = &event {
                self.opts
                    .timeline
                    .since_open(crate::timeline::Step::Handshake);
                tracing::debug!(
                    session_type = params.session_type,
                    agent_version = params.agent_version,
                    "session established"
                );
            }
            if let Some(done) = kind.on_event(event, &mut self.cx())? {
                return Ok(Some(done));
            }
        }
        kind.turn(&mut self.cx())
    }

    /// Moves frames from the core to the link until it is full (one frame then waits in
    /// `stash`, the rest in the core).
    fn flush_transmit(&mut self) {
        loop {
            let Some(frame) = self.stash.take().or_else(|| self.session.poll_transmit()) else {
                return;
            };
            if let Err(frame) = self.link.try_send(frame) {
                self.stash = Some(frame);
                return;
            }
        }
    }

    async fn finish<D>(mut self, done: D) -> D {
        self.flush_transmit();
        self.outputs.drain().await;
        tracing::debug!(
            high_water = self.outputs.high_water,
            "most remote bytes waiting for local output at once"
        );
        done
    }
}

enum Woke<L> {
    Link(LinkWake),
    Timer,
    Handshake,
    Wrote(Result<(), (OutputId, io::Error)>),
    Local(L),
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

/// The monotonic clock as the core wants it (tokio's, so paused time works in tests).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Output<'a> {
    sink: Pin<Box<dyn AsyncWrite + Send + 'a>>,
    buf: VecDeque<u8>,
    /// Written since the last flush.
    unflushed: bool,
    /// Writing failed: what comes for it is dropped.
    failed: bool,
}

/// The local outputs and their bounded buffers.
#[derive(Default)]
struct Outputs<'a> {
    list: Vec<Output<'a>>,
    /// Bytes in all buffers.
    buffered: usize,
    high_water: usize,
}

impl Outputs<'_> {
    fn push(&mut self, id: OutputId, bytes: &[u8]) {
        let Some(out) = self.list.get_mut(id.0) else {
            return;
        };
        if out.failed {
            return;
        }
        out.buf.extend(bytes);
        self.buffered += bytes.len();
        self.high_water = self.high_water.max(self.buffered);
    }

    fn busy(&self) -> bool {
        self.list
            .iter()
            .any(|o| !o.failed && (!o.buf.is_empty() || o.unflushed))
    }

    fn fail(&mut self, id: OutputId) {
        if let Some(out) = self.list.get_mut(id.0) {
            out.failed = true;
            self.buffered -= out.buf.len();
            out.buf = VecDeque::new();
        }
    }

    /// Writes what each output will take now; resolves after any progress (or the
    /// first error). Cancel-safe: bytes leave the buffer only once written.
    async fn write_some(&mut self) -> Result<(), (OutputId, io::Error)> {
        std::future::poll_fn(|cx| self.poll_write_some(cx)).await
    }

    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), (OutputId, io::Error)>> {
        let mut progress = false;
        for (i, out) in self.list.iter_mut().enumerate() {
            if out.failed {
                continue;
            }
            loop {
                if out.buf.is_empty() {
                    if out.unflushed {
                        match out.sink.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => {
                                out.unflushed = false;
                                progress = true;
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err((OutputId(i), e))),
                            Poll::Pending => {}
                        }
                    }
                    break;
                }
                let (front, _) = out.buf.as_slices();
                match out.sink.as_mut().poll_write(cx, front) {
                    Poll::Ready(Ok(0)) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return Poll::Ready(Err((OutputId(i), e)));
                    }
                    Poll::Ready(Ok(n)) => {
                        let n = n.min(out.buf.len());
                        out.buf.drain(..n);
                        self.buffered -= n;
                        out.unflushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((OutputId(i), e))),
                    Poll::Pending => break,
                }
            }
        }
        if progress {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// Writes everything out; an output that fails is given up.
    async fn drain(&mut self) {
        while self.busy() {
            if let Err((id, e)) = self.write_some().await {
                tracing::debug!("local output failed at the end of the session: {e}");
                self.fail(id);
            }
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
