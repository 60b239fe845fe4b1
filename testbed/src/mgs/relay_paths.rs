//! The relay's client-to-agent path for one websocket, in tasks of its own so that it
//! never waits on the other direction: a reader that takes frames from the client's
//! websocket only while the relay holds fewer than its queue bound for the agent, and a
//! deliverer that hands them to the agent after the delay line (holding them while the
//! agent is stalled). Every frame carries a [`Token`] of the session's `to_agent_held`
//! count until the agent takes it from its inbox.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::agent::link::InboxSender;
use crate::agent::sleep_opt;
use crate::mgs::relay::AgentHandle;
use crate::world::backlog::Token;
use crate::world::faults::Impairer;

/// The faults and delay of the client-to-agent direction.
pub(crate) struct ToAgentPlan {
    pub imp: Impairer,
    pub link: LinkShape,
    /// The relay goes silent (reads nothing) from the first instant to the second.
    pub vanish: Option<(Instant, Instant)>,
    /// The agent freezes: frames that reach it meanwhile wait until the end.
    pub stall: Option<(Instant, Instant)>,
}

/// The running path; dropping it stops its tasks (frames in flight are dropped).
pub(crate) struct ToAgent {
    reader: JoinHandle<anyhow::Result<()>>,
    deliverer: JoinHandle<()>,
}

impl ToAgent {
    /// How the client's side ended: `Ok` for a close frame or the end of the stream.
    pub async fn done(&mut self) -> anyhow::Result<()> {
        match (&mut self.reader).await {
            Ok(r) => r,
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for ToAgent {
    fn drop(&mut self) {
        self.reader.abort();
        self.deliverer.abort();
    }
}

pub(crate) fn spawn_to_agent<S>(
    stream: SplitStream<WebSocketStream<S>>,
    handle: Arc<AgentHandle>,
    plan: ToAgentPlan,
) -> ToAgent
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (delay_tx, delay_rx) = mpsc::unbounded_channel();
    let delayed = delay_line(delay_rx, plan.link, |(f, _): &(Vec<u8>, Token)| f.len());
    let deliverer = tokio::spawn(deliver(delayed, handle.to_agent.clone(), plan.stall));
    let reader = tokio::spawn(read_client(stream, handle, plan.imp, delay_tx, plan.vanish));
    ToAgent { reader, deliverer }
}

/// Reads the client's frames while there is room, counts and impairs them.
async fn read_client<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    handle: Arc<AgentHandle>,
    mut imp: Impairer,
    delay_tx: mpsc::UnboundedSender<(Vec<u8>, Token)>,
    mut vanish: Option<(Instant, Instant)>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let held = handle.stats.to_agent_held.clone();
    loop {
        // A full queue: read nothing more (the client's writes then back up in TCP).
        held.wait_below(handle.queue).await;
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = sleep_opt(vanish.map(|(s, _)| s)) => {
                // A black hole: no reads (so no pongs either) until it ends.
                if let Some((_, end)) = vanish.take() {
                    tokio::time::sleep_until(end).await;
                }
                continue;
            }
        };
        let bytes = match frame {
            Some(Ok(WsMessage::Binary(b))) => {
                if is_client_input(&b) {
                    *handle.last_input.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                }
                handle.stats.client_frame(&b);
                b.to_vec()
            }
            Some(Ok(WsMessage::Text(t))) => {
                let _ = delay_tx.send((t.as_bytes().to_vec(), held.hold(1)));
                continue;
            }
            Some(Ok(WsMessage::Close(_))) | None => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        };
        for (i, f) in imp.apply(bytes).into_iter().enumerate() {
            // The frame read had room; what an impairment adds (a copy, a frame it held
            // back) only if there is room too.
            if i > 0 && held.held() >= handle.queue {
                continue;
            }
            let _ = delay_tx.send((f, held.hold(1)));
        }
    }
}

/// Hands frames to the agent, after a stall if one is on.
async fn deliver(
    mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Token)>,
    to_agent: InboxSender,
    stall: Option<(Instant, Instant)>,
) {
    while let Some((frame, token)) = rx.recv().await {
        if let Some((start, end)) = stall {
            let now = Instant::now();
            if now >= start && now < end {
                tokio::time::sleep_until(end).await;
            }
        }
        if to_agent.send((frame, Some(token))).is_err() {
            return;
        }
    }
}

/// Client stream data (not an acknowledge): what counts as activity for the idle timeout.
fn is_client_input(frame: &[u8]) -> bool {
    frame
        .get(4..36)
        .is_some_and(|t| t.starts_with(b"input_stream_data"))
}

/// One direction of the path between client and agent, as a network shapes it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LinkShape {
    /// Fixed latency (half the configured RTT).
    pub one_way: Duration,
    /// `--relay-rate`: bytes per second the direction carries; frames queue behind each
    /// other at that rate (a bottleneck link). `None`: no limit.
    pub rate: Option<u64>,
    /// `--jitter`: each frame waits up to this much longer (uniformly at random), never
    /// overtaking the one before it: a link that varies its delay but does not reorder.
    pub jitter: Duration,
}

impl LinkShape {
    fn is_instant(&self) -> bool {
        self.one_way.is_zero() && self.rate.is_none() && self.jitter.is_zero()
    }
}

/// Forwards items through a link of `shape`, keeping their order: each waits for the
/// frames ahead of it to be serialised at the rate, then the latency and jitter. Items
/// keep whatever they hold (tokens) until they are dropped downstream, so the relay's
/// queue bound covers the link too. `size` gives an item's bytes on the wire.
pub(crate) fn delay_line<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
    shape: LinkShape,
    size: fn(&T) -> usize,
) -> mpsc::UnboundedReceiver<T> {
    if shape.is_instant() {
        return rx;
    }
    let (tx, out) = mpsc::unbounded_channel();
    let (stamp_tx, mut stamped) = mpsc::unbounded_channel::<(Instant, T)>();
    tokio::spawn(async move {
        // When the link finishes sending what it has, and when the last frame arrives.
        let mut free_at = Instant::now();
        let mut last_due = Instant::now();
        while let Some(item) = rx.recv().await {
            let now = Instant::now();
            let mut sent = now;
            if let Some(rate) = shape.rate {
                let wire = Duration::from_secs_f64(size(&item) as f64 / rate.max(1) as f64);
                free_at = free_at.max(now) + wire;
                sent = free_at;
            }
            let extra = if shape.jitter.is_zero() {
                Duration::ZERO
            } else {
                shape.jitter.mul_f64(rand::random::<f64>())
            };
            last_due = last_due.max(sent + shape.one_way + extra);
            if stamp_tx.send((last_due, item)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((due, item)) = stamped.recv().await {
            tokio::time::sleep_until(due).await;
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` items of `bytes` each at once and returns when each came out, relative to
    /// the start (virtual time).
    async fn arrivals(shape: LinkShape, n: usize, bytes: usize) -> Vec<Duration> {
        let start = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut out = delay_line(rx, shape, |v| v.len());
        for i in 0..n {
            tx.send(vec![i as u8; bytes]).unwrap();
        }
        let mut got = Vec::new();
        for i in 0..n {
            let item = out.recv().await.unwrap();
            assert_eq!(item[0], i as u8, "order kept");
            got.push(Instant::now() - start);
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_serialises_frames_behind_each_other() {
        let shape = LinkShape {
            one_way: Duration::from_millis(20),
            rate: Some(10_000),
            jitter: Duration::ZERO,
        };
        let t = arrivals(shape, 10, 1_000).await;
        // 1 000 bytes at 10 000 B/s: 100 ms each, then 20 ms of latency.
        for (i, at) in t.iter().enumerate() {
            let ideal = Duration::from_millis(100 * (i as u64 + 1) + 20);
            assert!(at.abs_diff(ideal) < Duration::from_millis(5), "{i}: {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_within_its_bound_and_never_reorders() {
        let shape = LinkShape {
            one_way: Duration::from_millis(10),
            rate: None,
            jitter: Duration::from_millis(5),
        };
        let t = arrivals(shape, 200, 10).await;
        assert!(t.iter().all(|at| *at >= Duration::from_millis(10)));
        assert!(t.iter().all(|at| *at <= Duration::from_millis(16)));
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        // Jitter, not a constant: the arrivals spread.
        assert!(t[0] < t[199] || t.iter().any(|at| *at > Duration::from_millis(11)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_shape_is_a_passthrough() {
        let t = arrivals(LinkShape::default(), 3, 100).await;
        assert!(t.iter().all(|at| at.is_zero()));
    }
}
