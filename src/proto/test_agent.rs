//! Test-only: the agent's end of a data channel with amazon-ssm-agent's sending rules
//! (docs/protocol.md §6, §12), the peer the client channel's tests, the bottleneck
//! simulations, the engine tests and the property/fuzz harness run against.
//!
//! Its rules, as the agent has them: SYN on sequence 0; one check per 100 ms tick that
//! resends only the oldest unacknowledged message, and only once it is older than the
//! RTO (strictly); at most 100 000 messages kept for resending, beyond which a message is
//! sent once and never stored. It receives through the same [`Receiver`] as the client
//! (100 000 messages, no byte limit: the agent counts messages only). Not modelled:
//! pause/start publication and `channel_closed` (ignored like any other control message)
//! and reconnects.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::channel::{Channel, ChannelError, ChannelEvent, ChannelStats, Incoming, Role};
use super::endpoint::{Receiver, Stamper};
use super::message::{Message, MessageType, flags};
use super::payload::{Acknowledge, PayloadType};
use super::rtt::RttEstimator;

/// The agent's resend tick.
pub const TICK: Duration = Duration::from_millis(100);
/// The agent's outgoing buffer, in messages (docs/protocol.md §6.4).
pub const SEND_WINDOW: usize = 100_000;
/// The agent's incoming buffer, in messages.
pub const REORDER_CAPACITY: usize = 100_000;
/// The agent's chunk size.
pub const MAX_PAYLOAD: usize = 1024;

struct Sent {
    frame: Bytes,
    first_sent: Instant,
    last_sent: Instant,
    sent_count: u32,
}

pub struct AgentChannel {
    stamp: Stamper,
    rtt: RttEstimator,
    send_window: usize,
    next_seq: i64,
    unacked: BTreeMap<i64, Sent>,
    next_tick: Option<Instant>,
    receiver: Receiver,
    transmit: VecDeque<Bytes>,
    events: VecDeque<ChannelEvent>,
    stats: ChannelStats,
}

impl AgentChannel {
    /// `now` and `wall_ms` are the same moment; `seed` makes MessageIds.
    pub fn new(now: Instant, wall_ms: u64, seed: u128) -> AgentChannel {
        AgentChannel {
            stamp: Stamper::new(now, wall_ms, seed),
            rtt: RttEstimator::default(),
            send_window: SEND_WINDOW,
            next_seq: 0,
            unacked: BTreeMap::new(),
            next_tick: None,
            receiver: Receiver::new(REORDER_CAPACITY, usize::MAX),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ChannelStats::default(),
        }
    }

    /// A smaller outgoing buffer, to reach its overflow rule in tests.
    pub fn with_send_window(mut self, messages: usize) -> AgentChannel {
        self.send_window = messages;
        self
    }

    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    /// Messages sent and kept for resending, not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    pub fn reorder_bytes(&self) -> usize {
        self.receiver.bytes()
    }

    /// Sends `data` as Output messages of at most 1 KiB, each at once.
    pub fn send_data(&mut self, now: Instant, data: &[u8]) {
        for chunk in data.chunks(MAX_PAYLOAD) {
            self.send(now, chunk.to_vec());
        }
    }

    fn send(&mut self, now: Instant, payload: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let syn = if seq == 0 { flags::SYN } else { 0 };
        let frame = self.stamp.stream(
            now,
            Role::Agent.sends(),
            seq,
            syn,
            PayloadType::Output as u32,
            payload,
        );
        self.stats.sent += 1;
        self.transmit.push_back(frame.clone());
        if self.unacked.len() >= self.send_window {
            // The agent's rule: beyond its buffer a message is sent once, never stored.
            return;
        }
        let sent = Sent {
            frame,
            first_sent: now,
            last_sent: now,
            sent_count: 1,
        };
        self.unacked.insert(seq, sent);
        self.next_tick.get_or_insert(now + TICK);
    }

    /// Handles one frame from the client (acks and input; everything else is ignored).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChannelError> {
        let msg = Message::decode(frame)?;
        match &msg.message_type {
            MessageType::Acknowledge => {
                let ack: Acknowledge = serde_json::from_slice(&msg.payload)
                    .map_err(|e| ChannelError::BadAck(e.to_string()))?;
                let seq = ack.acknowledged_message_sequence_number;
                if let Some(sent) = self.unacked.remove(&seq)
                    && sent.sent_count == 1
                {
                    self.rtt
                        .on_sample(now.saturating_duration_since(sent.first_sent));
                }
            }
            t if *t == Role::Agent.receives() => {
                let seq = msg.sequence_number;
                self.receiver.check(seq)?;
                self.stats.received += 1;
                let incoming = Incoming {
                    payload_type: msg.payload_type,
                    payload: msg.payload,
                };
                if self
                    .receiver
                    .accept(seq, incoming, &mut self.stats, &mut self.events)
                {
                    let ack = self.stamp.ack(now, &msg.message_type, msg.message_id, seq);
                    self.transmit.push_back(ack);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The next resend tick, while anything is unacknowledged.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick.filter(|_| !self.unacked.is_empty())
    }

    /// Runs the ticks due by `now`: each resends the head of line if it is overdue.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelError> {
        let rto = self.rtt.rto();
        while let Some(t) = self.next_tick.filter(|t| *t <= now) {
            self.next_tick = Some(t + TICK);
            if let Some(head) = self.unacked.values_mut().next()
                && now.saturating_duration_since(head.last_sent) > rto
            {
                head.last_sent = now;
                head.sent_count = head.sent_count.saturating_add(1);
                self.transmit.push_back(head.frame.clone());
                self.stats.resent += 1;
            }
        }
        if self.unacked.is_empty() {
            self.next_tick = None;
        }
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }
}

/// Either end, as the tests and the property harness drive it.
pub trait Peer {
    fn send_data(&mut self, now: Instant, data: &[u8]);
    fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChannelError>;
    fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelError>;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<ChannelEvent>;
    /// Messages this end may send now without going past its window.
    fn window_available(&self) -> usize;
    fn unacked(&self) -> usize;
    fn reorder_bytes(&self) -> usize;
    fn reorder_max_bytes(&self) -> usize;
}

impl Peer for Channel {
    fn send_data(&mut self, now: Instant, data: &[u8]) {
        Channel::send_data(self, now, data);
    }
    fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChannelError> {
        Channel::handle_frame(self, now, frame)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelError> {
        Channel::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        Channel::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<ChannelEvent> {
        Channel::poll_event(self)
    }
    fn window_available(&self) -> usize {
        Channel::window_available(self)
    }
    fn unacked(&self) -> usize {
        Channel::unacked(self)
    }
    fn reorder_bytes(&self) -> usize {
        Channel::reorder_bytes(self)
    }
    fn reorder_max_bytes(&self) -> usize {
        self.config().reorder_max_bytes
    }
}

impl Peer for AgentChannel {
    fn send_data(&mut self, now: Instant, data: &[u8]) {
        AgentChannel::send_data(self, now, data);
    }
    fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChannelError> {
        AgentChannel::handle_frame(self, now, frame)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelError> {
        AgentChannel::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        AgentChannel::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<ChannelEvent> {
        AgentChannel::poll_event(self)
    }
    fn window_available(&self) -> usize {
        self.send_window.saturating_sub(self.unacked.len())
    }
    fn unacked(&self) -> usize {
        AgentChannel::unacked(self)
    }
    fn reorder_bytes(&self) -> usize {
        AgentChannel::reorder_bytes(self)
    }
    fn reorder_max_bytes(&self) -> usize {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u64 = 1_700_000_000_000;

    fn drain(a: &mut AgentChannel) -> Vec<Message> {
        std::iter::from_fn(|| a.poll_transmit())
            .map(|f| Message::decode(&f).unwrap())
            .collect()
    }

    #[test]
    fn agent_policy_resends_only_the_head_per_tick() {
        let t0 = Instant::now();
        let mut a = AgentChannel::new(t0, WALL, 2);
        for i in 0..3u8 {
            a.send_data(t0, &[i]);
        }
        drain(&mut a);
        // Ticks at 100 ms and 200 ms: nothing is overdue yet (RTO 200 ms, strictly greater).
        a.handle_timeout(t0 + Duration::from_millis(200)).unwrap();
        assert!(drain(&mut a).is_empty());
        a.handle_timeout(t0 + Duration::from_millis(300)).unwrap();
        let resent: Vec<_> = drain(&mut a).iter().map(|m| m.sequence_number).collect();
        assert_eq!(resent, [0]);
    }

    #[test]
    fn agent_overflow_sends_but_never_resends() {
        let t0 = Instant::now();
        let mut a = AgentChannel::new(t0, WALL, 3).with_send_window(2);
        for i in 0..3u8 {
            a.send_data(t0, &[i]);
        }
        assert_eq!(drain(&mut a).len(), 3);
        assert_eq!(a.unacked(), 2);
    }
}
