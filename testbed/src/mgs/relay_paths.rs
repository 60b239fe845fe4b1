//! The relay's client-to-agent path for one websocket, in tasks of its own so that it
//! never waits on the other direction: a reader that takes frames from the client's
//! websocket only while the relay holds fewer than its queue bound for the agent, and a
//! deliverer that hands them to the agent after the delay line (holding them while the
//! agent is stalled). Every frame carries a [`Token`] of the session's `to_agent_held`
//! count until the agent takes it from its inbox.

use std::sync::Arc;

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
pub(crate) use crate::world::link_shape::{LinkShape, delay_line};

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
