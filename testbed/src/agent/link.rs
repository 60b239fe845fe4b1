//! The two queues between the relay and the agent, bounded by [`Backlog`] counts.
//!
//! - Into the agent ([`AgentInbox`]): each client frame carries the relay's token, so the
//!   relay's count of what it holds for the agent (delay line and this queue) drops only
//!   when the agent takes the frame. The agent takes a frame only when it is done with
//!   the previous one (see [`crate::agent::write_rate`]), so a blocked agent fills the relay,
//!   and the relay then stops reading the client's websocket (`--relay-queue`).
//! - Out of the agent ([`ToClient`]): frames the relay has not yet taken. Sending never
//!   blocks (acks and resends are made under the channel lock, from sync code). Instead,
//!   while `limit` messages wait, the output pumps read nothing more from the instance
//!   ([`ToClient::ready`]) and the inbox hands the agent no further client frame, as the
//!   agent's goroutines block on a websocket that does not drain. Bound: `limit` plus the
//!   acks of one client frame and the resends of the wait (one per 100 ms tick).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::agent::AgentOut;
use crate::world::backlog::{Backlog, Token};

/// A client frame on its way to the agent, with what it holds of the relay's count.
pub type Inbound = (Vec<u8>, Option<Token>);

/// The relay's end of the agent's inbox.
pub type InboxSender = mpsc::UnboundedSender<Inbound>;

/// Client frames for the agent. Taking one gives back its place in the relay's count.
pub struct AgentInbox {
    rx: mpsc::UnboundedReceiver<Inbound>,
    /// The agent's output queue: no frame is handed out while it is full.
    out: ToClient,
}

/// An inbox for the agent whose output goes to `out`, and the sender for it. Unbounded
/// as a channel: the relay bounds it by waiting on its [`Backlog`] before it reads from
/// the client.
pub fn inbox(out: &ToClient) -> (InboxSender, AgentInbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let out = out.clone();
    (tx, AgentInbox { rx, out })
}

impl AgentInbox {
    /// The next client frame, once the agent's output queue has room for its acks.
    /// Cancel-safe (for `select!`): nothing is taken before the frame is returned.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.out.ready().await;
        self.rx.recv().await.map(|(frame, _token)| frame)
    }

    /// Frames waiting (for tests).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// The agent's output queue to the relay.
#[derive(Clone)]
pub struct ToClient {
    tx: mpsc::UnboundedSender<(AgentOut, Token)>,
    queued: Arc<Backlog>,
    limit: usize,
}

/// The relay's end of [`ToClient`].
pub struct FromAgent {
    rx: mpsc::UnboundedReceiver<(AgentOut, Token)>,
}

/// An output queue whose pumps wait once `limit` messages are queued.
pub fn outbox(limit: usize) -> (ToClient, FromAgent) {
    let (tx, rx) = mpsc::unbounded_channel();
    let to = ToClient {
        tx,
        queued: Backlog::new(),
        limit: limit.max(1),
    };
    (to, FromAgent { rx })
}

impl ToClient {
    /// Queues `out` for the relay, never blocking.
    pub fn send(&self, out: AgentOut) -> Result<(), mpsc::error::SendError<AgentOut>> {
        let token = self.queued.hold(1);
        self.tx
            .send((out, token))
            .map_err(|mpsc::error::SendError((out, _))| mpsc::error::SendError(out))
    }

    /// Returns once the relay has taken enough for a producer to read more data.
    pub async fn ready(&self) {
        self.queued.wait_below(self.limit).await;
    }

    /// Messages the relay has not taken yet.
    pub fn queued(&self) -> usize {
        self.queued.held()
    }
}

impl FromAgent {
    pub async fn recv(&mut self) -> Option<AgentOut> {
        self.rx.recv().await.map(|(out, _token)| out)
    }
}
