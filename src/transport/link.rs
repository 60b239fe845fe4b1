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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::connect::{ConnectError, DataChannelSocket, connect};

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
    /// True when retrying cannot help (access denied, session unknown).
    pub permanent: bool,
    /// The credentials were refused or expired (the user can fix that).
    pub credentials: bool,
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
    /// A websocket message (binary or text) from the service.
    Frame(Vec<u8>),
    /// The websocket was replaced after a drop; unacknowledged messages must be resent.
    Reconnected { attempt: u32, after: Duration },
    /// The link is over and will not come back.
    Failed(LinkError),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
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
    out: mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

/// Who the link is for.
pub struct LinkTarget {
    pub session_id: String,
    pub client_id: String,
    pub resumer: Option<Arc<dyn Resume>>,
}

impl Link {
    /// Opens the first websocket and starts the link task.
    pub async fn open(
        stream_url: &str,
        token: &str,
        target: LinkTarget,
        opts: LinkOptions,
    ) -> Result<Link, ConnectError> {
        let ws = connect(stream_url, token, &target.client_id).await?;
        Ok(Link::start(ws, target, opts))
    }

    /// Starts the link task over an already open websocket.
    pub fn start(ws: DataChannelSocket, target: LinkTarget, opts: LinkOptions) -> Link {
        let (ev_tx, events) = mpsc::channel(1024);
        let (out, out_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(ws, target, opts, out_rx, ev_tx));
        Link { events, out, task }
    }

    /// Queues a frame. Frames queued while the link is reconnecting are dropped: the
    /// channel resends what matters after [`LinkEvent::Reconnected`].
    pub fn send(&self, frame: Vec<u8>) {
        let _ = self.out.send(frame);
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
}

async fn run(
    mut ws: DataChannelSocket,
    target: LinkTarget,
    opts: LinkOptions,
    mut out_rx: mpsc::UnboundedReceiver<Vec<u8>>,
    ev_tx: mpsc::Sender<LinkEvent>,
) {
    let mut session_over = false;
    loop {
        let cause = match carry(ws, &opts, &mut out_rx, &ev_tx, &mut session_over).await {
            Ended::DriverGone | Ended::EventsClosed => return,
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
        match reconnect(&target, resumer.as_ref(), &opts, &cause, &mut out_rx).await {
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

/// Moves frames both ways over one websocket until it fails or the driver leaves.
///
/// Reading and writing run concurrently: a write blocked on a full socket (say, the
/// window resent after a resume) must never stop us reading, or two peers that both
/// wait for the other to read deadlock.
async fn carry(
    ws: DataChannelSocket,
    opts: &LinkOptions,
    out_rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    ev_tx: &mpsc::Sender<LinkEvent>,
    session_over: &mut bool,
) -> Ended {
    let (mut sink, mut stream) = ws.split();
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
                    if let Err(e) = sink.feed(WsMessage::binary(frame)).await {
                        return Ended::Lost(e.to_string());
                    }
                    // Batch whatever else is queued into one flush.
                    while let Ok(more) = out_rx.try_recv() {
                        if let Err(e) = sink.feed(WsMessage::binary(more)).await {
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
                    if let Err(e) = sink.send(WsMessage::Ping(b"keepalive".to_vec().into())).await {
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
            let bytes = match msg {
                Some(Ok(WsMessage::Binary(b))) => b.to_vec(),
                // The plugin feeds text frames to the same parser.
                Some(Ok(WsMessage::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(WsMessage::Ping(_))) => {
                    pinged.notify_one();
                    continue;
                }
                Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
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
                    return Ended::Lost(what);
                }
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("connection closed".to_owned()),
            };
            if is_channel_closed(&bytes) {
                *session_over = true;
            }
            delivering.store(true, std::sync::atomic::Ordering::SeqCst);
            let delivered = ev_tx.send(LinkEvent::Frame(bytes)).await;
            // The silence clock restarts when we are ready to read again.
            *last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            delivering.store(false, std::sync::atomic::Ordering::SeqCst);
            if delivered.is_err() {
                return Ended::EventsClosed;
            }
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
    ended
}

/// The header's MessageType field says `channel_closed` (PROTOCOL.md §3.1).
fn is_channel_closed(frame: &[u8]) -> bool {
    frame
        .get(4..36)
        .is_some_and(|t| t.starts_with(b"channel_closed"))
}

/// ResumeSession + redial with exponential backoff and jitter inside the budget.
async fn reconnect(
    target: &LinkTarget,
    resumer: &dyn Resume,
    opts: &LinkOptions,
    cause: &str,
    out_rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<(DataChannelSocket, u32, Duration), LinkError> {
    let started = Instant::now();
    let deadline = started + opts.resume_budget;
    let mut delay = Duration::from_millis(100 + jitter_ms(100));
    let mut last = String::from("no attempt made");
    let mut credentials = false;
    for attempt in 1u32.. {
        // Frames queued meanwhile would go to a dead socket; the channel resends them.
        while out_rx.try_recv().is_ok() {}
        match resumer.resume(&target.session_id).await {
            Ok(Some(r)) => match connect(&r.stream_url, &r.token, &target.client_id).await {
                Ok(ws) => return Ok((ws, attempt, started.elapsed())),
                Err(e) => {
                    last = e.to_string();
                    credentials = false;
                }
            },
            Ok(None) => {
                return Err(LinkError::SessionGone {
                    cause: cause.to_owned(),
                });
            }
            Err(e) if e.permanent => {
                return Err(LinkError::ResumeFailed {
                    cause: cause.to_owned(),
                    last: e.message,
                    credentials: e.credentials,
                });
            }
            Err(e) => {
                last = e.message;
                credentials = e.credentials;
            }
        }
        tracing::debug!(attempt, "resume failed: {last}; retrying in {delay:?}");
        if Instant::now() + delay >= deadline {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5)) + Duration::from_millis(jitter_ms(250));
    }
    Err(LinkError::ResumeFailed {
        cause: cause.to_owned(),
        last,
        credentials,
    })
}

/// A few random milliseconds, so many clients do not retry in lockstep.
fn jitter_ms(max: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) % max.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_channel_closed_frames_by_header() {
        let mut frame = vec![0u8; 120];
        frame[4..36].copy_from_slice(format!("{:<32}", "channel_closed").as_bytes());
        assert!(is_channel_closed(&frame));
        frame[4..36].copy_from_slice(format!("{:<32}", "output_stream_data").as_bytes());
        assert!(!is_channel_closed(&frame));
        assert!(!is_channel_closed(&[1, 2, 3]));
    }
}
