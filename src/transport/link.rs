//! A data-channel link that survives websocket loss: a background task owns the
//! websocket, answers pings, sends keep-alives, and on a drop or a service recycle calls
//! `ResumeSession` (through [`Resume`]) and redials, without the session noticing beyond
//! a [`LinkEvent::Reconnected`]. Drivers talk to it through cancel-safe channel methods,
//! so they can `select!` on [`Link::recv`] next to their timers and local IO.
//!
//! Sequence numbers, the reorder buffer and unacknowledged messages live in the
//! [`ClientSession`](crate::proto::client::ClientSession), not here, so nothing is lost
//! or repeated across a reconnect: the driver calls `on_reconnect` and the channel
//! resends what was in flight.
//!
//! Bounds (docs/architecture.md, "Bounded by construction"):
//! - outbound: at most [`OUTBOUND_FRAMES`] frames wait for the websocket; when full,
//!   [`Link::try_send`] hands the frame back and the driver keeps it (and the rest) in
//!   the core until [`Link::next`] reports room. While reconnecting, queued frames are
//!   dropped (the channel resends after [`LinkEvent::Reconnected`]).
//! - inbound: at most [`INBOUND_EVENTS`] events wait for the driver, each a websocket
//!   message of at most 1 MiB (`connect::MAX_MESSAGE_SIZE`; the service's are ~1.2 KB).
//!   When full, the reader stops reading the websocket: back-pressure on the peer.
//!
//! Peer violations end the link, they are never a reason to resume: a message over the
//! size limit is [`LinkError::PeerViolation`]. Reconnects are rate-limited: a websocket
//! that dies within [`STABLE_AFTER`] of opening without delivering a single frame does not
//! restart the resume budget or the backoff, so a peer that kills every new websocket at
//! once exhausts `resume_budget` instead of looping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use super::connect::{ConnectError, DataChannelSocket, Dialer, connect};
use crate::proto::message::is_channel_closed;

/// Fresh connection details from `ResumeSession`.
#[derive(Clone)]
pub struct Resumed {
    pub token: String,
    pub stream_url: String,
}

/// Why a resume attempt failed.
#[derive(Debug, Clone)]
pub struct ResumeError {
    pub message: String,
    pub kind: ResumeErrorKind,
}

/// Whether retrying a failed resume can help, and whose move it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeErrorKind {
    /// Worth another try (throttling, a network blip, a service error).
    Transient,
    /// Retrying cannot help: access denied, the target or session unknown.
    Refused,
    /// The credentials were refused or expired: retrying cannot help, the user can.
    Credentials,
}

impl ResumeError {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        self.kind != ResumeErrorKind::Transient
    }
}

/// Calls `ResumeSession`. `Ok(None)` means the service says the session is gone.
pub trait Resume: Send + Sync + 'static {
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Resumed>, ResumeError>> + Send + 'a>>;
}

#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// Websocket ping interval.
    pub ping_interval: Duration,
    /// With nothing received (not even a pong) for this long, the connection is dead.
    pub dead_after: Duration,
    /// How long to keep trying to resume after a drop before giving up.
    pub resume_budget: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            // The agent pings every 54 s and expects a pong within 60 s; the plugin every
            // 5 min. 20 s keeps NAT state fresh and finds a dead path within ~a minute.
            ping_interval: Duration::from_secs(20),
            dead_after: Duration::from_secs(50),
            resume_budget: Duration::from_secs(300),
        }
    }
}

#[derive(Debug)]
pub enum LinkEvent {
    /// A websocket message (binary or text) from the service, as tungstenite read it.
    Frame(Bytes),
    /// The websocket was replaced after a drop; unacknowledged messages must be resent.
    Reconnected { attempt: u32, after: Duration },
    /// The link is over and will not come back.
    Failed(LinkError),
}

/// Frames the driver may queue for the websocket before [`Link::try_send`] pushes back:
/// 512 frames, about 600 KB of 1 KiB messages (a quarter of the channel's send window).
pub const OUTBOUND_FRAMES: usize = 512;
/// Events the link task may queue for the driver before it stops reading the websocket.
pub const INBOUND_EVENTS: usize = 256;
/// A websocket that lived this long, or delivered a frame, was a working connection: the
/// next drop starts a fresh resume budget. One that died sooner without a frame is a
/// failed resume, counted against the budget of the outage it was meant to end.
pub const STABLE_AFTER: Duration = Duration::from_secs(3);
/// The first wait between resume attempts; it doubles (plus jitter) up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// No two redials start closer together than this, whatever the websockets did.
const MIN_REDIAL_GAP: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The service broke the websocket protocol (e.g. a message over the size limit):
    /// its fault, and resuming would only get the same again.
    #[error("the data channel broke the protocol ({detail}); the session was ended")]
    PeerViolation { detail: String },
    #[error("the data channel was lost ({cause}) and the session could not be resumed: {last}")]
    ResumeFailed {
        cause: String,
        last: String,
        /// The last failure was a refused or expired credential.
        credentials: bool,
    },
    #[error("the data channel was lost ({cause}) and this session kind cannot be resumed")]
    NotResumable { cause: String },
    #[error("the data channel was lost ({cause}) and the service says the session has ended")]
    SessionGone { cause: String },
    #[error("the data channel closed after the session ended{0}")]
    ClosedAfterEnd(String),
}

/// The driver's end of a link. Dropping it closes the websocket.
pub struct Link {
    events: mpsc::Receiver<LinkEvent>,
    out: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

/// What [`Link::next`] woke for.
#[derive(Debug)]
pub enum LinkWake {
    /// A link event; `None` once the link task has ended.
    Event(Option<LinkEvent>),
    /// The outbound queue has room again (or the link is over).
    Room,
}

/// Who the link is for.
pub struct LinkTarget {
    pub session_id: String,
    pub client_id: String,
    pub resumer: Option<Arc<dyn Resume>>,
    /// Signs (and routes) every dial, the first and each resume redial.
    pub dialer: Dialer,
}

impl Link {
    /// Opens the first websocket and starts the link task.
    pub async fn open(
        stream_url: &str,
        token: &str,
        target: LinkTarget,
        opts: LinkOptions,
    ) -> Result<Link, ConnectError> {
        let ws = connect(stream_url, token, &target.client_id, &target.dialer).await?;
        Ok(Link::start(ws, target, opts))
    }

    /// Starts the link task over an already open websocket.
    pub fn start(ws: DataChannelSocket, target: LinkTarget, opts: LinkOptions) -> Link {
        let (ev_tx, events) = mpsc::channel(INBOUND_EVENTS);
        let (out, out_rx) = mpsc::channel(OUTBOUND_FRAMES);
        let task = tokio::spawn(run(ws, target, opts, out_rx, ev_tx));
        Link { events, out, task }
    }

    /// A link whose task is the caller: the far ends of its two queues. For tests of
    /// drivers, without a websocket.
    #[cfg(test)]
    pub(crate) fn detached() -> (Link, mpsc::Sender<LinkEvent>, mpsc::Receiver<Bytes>) {
        let (ev_tx, events) = mpsc::channel(INBOUND_EVENTS);
        let (out, out_rx) = mpsc::channel(OUTBOUND_FRAMES);
        let task = tokio::spawn(async {});
        (Link { events, out, task }, ev_tx, out_rx)
    }

    /// Queues a frame, or hands it back when [`OUTBOUND_FRAMES`] are already queued (keep
    /// it, and wait for room with [`Link::next`]). Frames queued while the link is
    /// reconnecting are dropped: the channel resends what matters after
    /// [`LinkEvent::Reconnected`]. Once the link is over, frames are dropped too; its
    /// last event says why.
    pub fn try_send(&self, frame: Bytes) -> Result<(), Bytes> {
        match self.out.try_send(frame) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => Err(frame),
        }
    }

    /// Free places in the outbound queue.
    pub fn free(&self) -> usize {
        self.out.capacity()
    }

    /// The next link event (only if `frames`) or `room` free places in the outbound
    /// queue (only if `room > 0`), whichever comes first; pending forever if neither is
    /// wanted. Once the link is over, its last event. Cancel-safe.
    pub async fn next(&mut self, frames: bool, room: usize) -> LinkWake {
        let room = room.min(OUTBOUND_FRAMES);
        tokio::select! {
            biased;
            event = self.events.recv(), if frames => LinkWake::Event(event),
            free = self.out.reserve_many(room), if room > 0 => match free {
                Ok(_) => LinkWake::Room,
                // The link task is gone: what it said last is the news.
                Err(_) => LinkWake::Event(self.events.recv().await),
            },
            else => std::future::pending().await,
        }
    }

    /// An event that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<LinkEvent> {
        self.events.try_recv().ok()
    }

    /// The next event; `None` once the link task has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// Closes the websocket politely and waits (briefly) for the task to end.
    pub async fn close(self) {
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Why one websocket stopped carrying the session.
enum Ended {
    /// The driver dropped its end: close and stop.
    DriverGone,
    /// The driver is gone or the session ended: nothing to resume.
    EventsClosed,
    Lost(String),
    /// The service broke the websocket protocol: end the session, do not resume.
    Violation(String),
}

async fn run(
    mut ws: DataChannelSocket,
    target: LinkTarget,
    opts: LinkOptions,
    mut out_rx: mpsc::Receiver<Bytes>,
    ev_tx: mpsc::Sender<LinkEvent>,
) {
    let mut session_over = false;
    let mut outage: Option<Outage> = None;
    loop {
        let opened = Instant::now();
        let carried = carry(ws, &opts, &mut out_rx, &ev_tx, &mut session_over).await;
        let cause = match carried.ended {
            Ended::DriverGone | Ended::EventsClosed => return,
            Ended::Violation(detail) => {
                tracing::debug!("the service broke the websocket protocol: {detail}");
                let _ = ev_tx
                    .send(LinkEvent::Failed(LinkError::PeerViolation { detail }))
                    .await;
                return;
            }
            Ended::Lost(cause) => cause,
        };
        if session_over {
            let _ = ev_tx
                .send(LinkEvent::Failed(LinkError::ClosedAfterEnd(String::new())))
                .await;
            return;
        }
        tracing::info!(
            session_id = target.session_id,
            "data channel lost: {cause}; resuming"
        );
        let Some(resumer) = target.resumer.clone() else {
            let _ = ev_tx
                .send(LinkEvent::Failed(LinkError::NotResumable { cause }))
                .await;
            return;
        };
        // A websocket that worked ends the outage it was opened for; one that died at
        // once is that outage going on.
        let worked = carried.delivered > 0 || opened.elapsed() >= STABLE_AFTER;
        let outage = match &mut outage {
            Some(o) if !worked => {
                o.failed_redial(&cause);
                o
            }
            slot => {
                let last_dial = slot.as_ref().and_then(|o| o.last_dial);
                slot.insert(Outage::new(Instant::now(), opts.resume_budget, last_dial))
            }
        };
        // Frames queued meanwhile would go to a dead socket; the channel resends them.
        let attempt = tokio::select! {
            r = reconnect(&target, resumer.as_ref(), &cause, outage) => r,
            () = discard(&mut out_rx) => return,
        };
        match attempt {
            Ok((new_ws, attempt, after)) => {
                ws = new_ws;
                tracing::info!(attempt, ?after, "data channel resumed");
                if ev_tx
                    .send(LinkEvent::Reconnected { attempt, after })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = ev_tx.send(LinkEvent::Failed(e)).await;
                return;
            }
        }
    }
}

/// Drops whatever the driver queues until it goes away.
async fn discard(out_rx: &mut mpsc::Receiver<Bytes>) {
    while out_rx.recv().await.is_some() {}
}

/// One stretch without a working websocket: the resume budget runs from its start, and
/// the backoff grows until a websocket works again.
struct Outage {
    began: Instant,
    deadline: Instant,
    /// The wait before the next attempt; `None` for "at once" (the first one).
    next_wait: Option<Duration>,
    last_dial: Option<Instant>,
    attempts: u32,
    /// The last failure, for the error when the budget runs out.
    last: String,
    credentials: bool,
}

impl Outage {
    /// `last_dial`: when the previous outage last dialled (the redial rate limit spans
    /// outages).
    fn new(now: Instant, budget: Duration, last_dial: Option<Instant>) -> Outage {
        Outage {
            began: now,
            deadline: now + budget,
            next_wait: None,
            last_dial,
            attempts: 0,
            last: String::from("no attempt made"),
            credentials: false,
        }
    }

    /// The websocket a resume gave us died at once: that resume failed.
    fn failed_redial(&mut self, cause: &str) {
        self.last = format!("the resumed data channel failed at once ({cause})");
        self.credentials = false;
        if self.next_wait.is_none() {
            self.next_wait = Some(INITIAL_BACKOFF + Duration::from_millis(jitter_ms(100)));
        }
    }

    /// Waits before the next attempt (the backoff, and never two dials closer than
    /// [`MIN_REDIAL_GAP`]); `false` when that would pass the budget.
    async fn wait_turn(&mut self) -> bool {
        let mut at = Instant::now();
        if let Some(wait) = self.next_wait {
            at += wait;
            self.next_wait =
                Some((wait * 2).min(MAX_BACKOFF) + Duration::from_millis(jitter_ms(250)));
        } else {
            self.next_wait = Some(INITIAL_BACKOFF + Duration::from_millis(jitter_ms(100)));
        }
        if let Some(last) = self.last_dial {
            at = at.max(last + MIN_REDIAL_GAP);
        }
        if at >= self.deadline {
            return false;
        }
        tokio::time::sleep_until(at).await;
        self.last_dial = Some(Instant::now());
        true
    }
}

/// Moves frames both ways over one websocket until it fails or the driver leaves.
///
/// Reading and writing run concurrently: a write blocked on a full socket (say, the
/// window resent after a resume) must never stop us reading, or two peers that both
/// wait for the other to read deadlock.
async fn carry(
    ws: DataChannelSocket,
    opts: &LinkOptions,
    out_rx: &mut mpsc::Receiver<Bytes>,
    ev_tx: &mpsc::Sender<LinkEvent>,
    session_over: &mut bool,
) -> Carried {
    let (mut sink, mut stream) = ws.split();
    let mut delivered = 0u64;
    let last_heard = std::sync::Mutex::new(Instant::now());
    let heard = || *last_heard.lock().unwrap_or_else(|e| e.into_inner());
    // While the reader waits for the driver to take a frame (a slow local consumer: a
    // paused pipe, a busy disk), it reads nothing: that is our back-pressure, not the
    // service's silence, and must not count towards `dead_after`.
    let delivering = std::sync::atomic::AtomicBool::new(false);
    // A ping from the service: the pong tungstenite queued goes out on the next flush.
    let pinged = tokio::sync::Notify::new();
    let writer = async {
        let mut ping =
            tokio::time::interval_at(Instant::now() + opts.ping_interval, opts.ping_interval);
        loop {
            tokio::select! {
                biased;
                frame = out_rx.recv() => {
                    let Some(frame) = frame else { return Ended::DriverGone };
                    if let Err(e) = sink.feed(WsMessage::Binary(frame)).await {
                        return Ended::Lost(e.to_string());
                    }
                    // Batch whatever else is queued into one flush.
                    while let Ok(more) = out_rx.try_recv() {
                        if let Err(e) = sink.feed(WsMessage::Binary(more)).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    if let Err(e) = sink.flush().await {
                        return Ended::Lost(e.to_string());
                    }
                }
                _ = pinged.notified() => {
                    if let Err(e) = sink.flush().await {
                        return Ended::Lost(e.to_string());
                    }
                }
                _ = ping.tick() => {
                    let waiting_on_us = delivering.load(std::sync::atomic::Ordering::SeqCst);
                    if !waiting_on_us && heard().elapsed() >= opts.dead_after {
                        return Ended::Lost(format!("nothing received for {:?}", opts.dead_after));
                    }
                    if let Err(e) = sink.send(WsMessage::Ping(Bytes::from_static(b"keepalive"))).await {
                        return Ended::Lost(e.to_string());
                    }
                }
            }
        }
    };
    let reader = async {
        loop {
            let msg = stream.next().await;
            *last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            let bytes = match read(msg) {
                Read::Frame(bytes) => bytes,
                Read::Pinged => {
                    pinged.notify_one();
                    continue;
                }
                Read::Nothing => continue,
                Read::End(ended) => return ended,
            };
            if is_channel_closed(&bytes) {
                *session_over = true;
            }
            delivering.store(true, std::sync::atomic::Ordering::SeqCst);
            let sent = ev_tx.send(LinkEvent::Frame(bytes)).await;
            // The silence clock restarts when we are ready to read again.
            *last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            delivering.store(false, std::sync::atomic::Ordering::SeqCst);
            if sent.is_err() {
                return Ended::EventsClosed;
            }
            delivered += 1;
        }
    };
    let ended = tokio::select! {
        e = writer => e,
        e = reader => e,
    };
    if matches!(ended, Ended::DriverGone | Ended::EventsClosed)
        && let Ok(mut ws) = sink.reunite(stream)
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    Carried { ended, delivered }
}

/// What one read from the websocket means to the link.
enum Read {
    /// A message for the core.
    Frame(Bytes),
    /// A ping: tungstenite queued the pong, which goes out on the next flush.
    Pinged,
    /// Nothing for anyone (a pong).
    Nothing,
    End(Ended),
}

fn read(msg: Option<Result<WsMessage, tungstenite::Error>>) -> Read {
    match msg {
        // Tungstenite's buffer itself: no copy on the way to the core.
        Some(Ok(WsMessage::Binary(b))) => Read::Frame(b),
        // The plugin feeds text frames to the same parser.
        Some(Ok(WsMessage::Text(t))) => Read::Frame(Bytes::from(t)),
        Some(Ok(WsMessage::Ping(_))) => Read::Pinged,
        Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => Read::Nothing,
        Some(Ok(WsMessage::Close(frame))) => {
            let what = match frame {
                Some(f) => format!(
                    "closed by the service, code {}{}",
                    u16::from(f.code),
                    if f.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", f.reason)
                    }
                ),
                None => "closed by the service".to_owned(),
            };
            Read::End(Ended::Lost(what))
        }
        // A message or frame over the size limit: no genuine peer sends one.
        Some(Err(e @ tungstenite::Error::Capacity(_))) => {
            Read::End(Ended::Violation(e.to_string()))
        }
        Some(Err(e)) => Read::End(Ended::Lost(e.to_string())),
        None => Read::End(Ended::Lost("connection closed".to_owned())),
    }
}

/// How one websocket ended, and how many frames it delivered to the driver.
struct Carried {
    ended: Ended,
    delivered: u64,
}

/// ResumeSession + redial with exponential backoff and jitter inside the outage's budget.
async fn reconnect(
    target: &LinkTarget,
    resumer: &dyn Resume,
    cause: &str,
    outage: &mut Outage,
) -> Result<(DataChannelSocket, u32, Duration), LinkError> {
    while outage.wait_turn().await {
        outage.attempts += 1;
        let attempt = outage.attempts;
        match resumer.resume(&target.session_id).await {
            Ok(Some(r)) => {
                match connect(&r.stream_url, &r.token, &target.client_id, &target.dialer).await {
                    Ok(ws) => return Ok((ws, attempt, outage.began.elapsed())),
                    Err(e) => {
                        outage.credentials = matches!(e, ConnectError::Credentials(_));
                        outage.last = e.to_string();
                    }
                }
            }
            Ok(None) => {
                return Err(LinkError::SessionGone {
                    cause: cause.to_owned(),
                });
            }
            Err(e) if e.is_permanent() => {
                return Err(LinkError::ResumeFailed {
                    cause: cause.to_owned(),
                    last: e.message,
                    credentials: e.kind == ResumeErrorKind::Credentials,
                });
            }
            Err(e) => {
                outage.last = e.message;
                outage.credentials = e.kind == ResumeErrorKind::Credentials;
            }
        }
        tracing::debug!(attempt, "resume failed: {}; retrying", outage.last);
    }
    Err(LinkError::ResumeFailed {
        cause: cause.to_owned(),
        last: outage.last.clone(),
        credentials: outage.credentials,
    })
}

/// A few random milliseconds, so many clients do not retry in lockstep.
fn jitter_ms(max: u64) -> u64 {
    rand::random_range(0..max.max(1))
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
