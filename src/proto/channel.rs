//! One end of a data channel: sequencing, acknowledgements, the reorder buffer,
//! retransmission and the send window (docs/protocol.md §6). Sans-IO.
//!
//! Call order, for a driver:
//! 1. feed every websocket binary frame to [`Channel::handle_frame`];
//! 2. queue outgoing payloads with [`Channel::send`] (only while [`Channel::window_available`]
//!    is non-zero for bulk data: that is the back-pressure);
//! 3. when the clock reaches [`Channel::poll_timeout`], call [`Channel::handle_timeout`];
//! 4. after each of the above, drain [`Channel::poll_transmit`] (frames to write) and
//!    [`Channel::poll_event`] (in-order payloads and control events).
//!
//! This is the client's end, with the client's sending rules only: loss detection, a
//! probe timeout with backoff ([`super::recovery`]) and a congestion window
//! ([`super::congestion`]). It transmits, new or resent, only while fewer than a window's
//! worth of messages are in flight, and [`Channel::window_available`] tells the driver how
//! much local input to read. Receiving (in-order delivery, the reorder buffer, acks) is
//! the same at both ends and lives in [`super::endpoint`]. The agent's own sending rules
//! (head of line only, one check per 100 ms tick, docs/protocol.md §6.3) exist only as a
//! test peer.
//!
//! Bounds (docs/architecture.md, "Bounded by construction"): unacknowledged messages at most `send_window` (plus the few of
//! one `send_data` call); the reorder buffer at most `reorder_capacity` messages and
//! `reorder_max_bytes` bytes (beyond either, messages are dropped unacknowledged and the
//! peer resends them); queued frames and events are drained by the driver after every
//! call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::congestion::{Congestion, Controller};
use super::endpoint::{Receiver, Stamper};
use super::message::{DecodeError, Message, MessageType};
use super::payload::{Acknowledge, ChannelClosed, PayloadType};
use super::recovery::Recovery;
use super::rtt::RttEstimator;

/// Which end of the channel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends `input_stream_data`, receives `output_stream_data`.
    Client,
    /// Sends `output_stream_data` (SYN on sequence 0), receives `input_stream_data`.
    Agent,
}

impl Role {
    /// The stream message type this end sends.
    pub fn sends(self) -> MessageType {
        match self {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }
    /// The stream message type this end receives.
    pub fn receives(self) -> MessageType {
        match self {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }
}

#[derive(Clone, Debug)]
/// The client channel's settings.
pub struct ChannelConfig {
    /// Largest stream payload [`Channel::send_data`] puts in one message.
    pub max_payload: usize,
    /// Unacknowledged messages beyond which [`Channel::window_available`] is zero.
    pub send_window: usize,
    /// Out-of-order messages held; beyond it they are dropped unacknowledged.
    pub reorder_capacity: usize,
    /// Payload bytes the reorder buffer may hold; beyond it, the same.
    pub reorder_max_bytes: usize,
    /// Give up when unacknowledged data has seen no acknowledgement for this long.
    pub stall_timeout: Option<Duration>,
}

impl ChannelConfig {
    /// Our client: 1 KiB messages as the agent expects, at most 4096 unacknowledged (4 MiB,
    /// well under the agent's 100 000-message buffer) and fewer when the congestion window
    /// says so; 10 000 out-of-order messages or 16 MiB held, whichever comes first.
    pub fn client() -> Self {
        ChannelConfig {
            max_payload: 1024,
            send_window: 4096,
            reorder_capacity: 10_000,
            reorder_max_bytes: 16 << 20,
            stall_timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// A payload delivered in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub payload_type: u32,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChannelEvent {
    Message(Incoming),
    /// MGS ended the session; `output` is its explanation (may be empty).
    Closed(ChannelClosed),
    /// `pause_publication` (true) / `start_publication` (false) from the relay.
    Publication {
        paused: bool,
    },
}

/// The peer broke the protocol or stopped answering.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] DecodeError),
    #[error("malformed acknowledge from the peer: {0}")]
    BadAck(String),
    #[error("peer sent a negative sequence number ({0})")]
    NegativeSequence(i64),
    #[error("peer sent sequence number {got}, impossibly far beyond the expected {expected}")]
    FarSequence { got: i64, expected: i64 },
    #[error("no acknowledgement from the peer for {0:?} while data was waiting")]
    Stalled(Duration),
}

/// Timers, one table: the driver only ever sees the earliest deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// The time threshold of loss detection.
    Loss,
    /// The probe timeout.
    Probe,
    Stall,
}

/// Where an unacknowledged message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Queued behind the congestion window, never transmitted.
    Unsent,
    /// Transmitted; the number identifies the transmission to [`Recovery`].
    InFlight(u64),
    /// Declared lost; waiting for room in the window to go out again.
    Lost,
}

struct Outgoing {
    /// The encoded message; resends share its buffer.
    frame: Bytes,
    first_sent: Instant,
    last_sent: Instant,
    sent_count: u32,
    state: State,
    /// Resent because loss detection declared it lost (not as a probe).
    resent_as_lost: bool,
}

impl Outgoing {
    fn new(frame: Bytes, now: Instant, sent_count: u32, state: State) -> Outgoing {
        Outgoing {
            frame,
            first_sent: now,
            last_sent: now,
            sent_count,
            state,
            resent_as_lost: false,
        }
    }
}

pub struct Channel {
    config: ChannelConfig,
    stamp: Stamper,
    rtt: RttEstimator,
    next_seq: i64,
    unacked: BTreeMap<i64, Outgoing>,
    /// Transmissions in flight, loss detection, probe timeout.
    recovery: Recovery,
    congestion: Box<dyn Controller>,
    /// Sequence numbers declared lost, resent lowest first.
    lost: BTreeSet<i64>,
    /// Sequence numbers not yet transmitted, in order.
    unsent: VecDeque<i64>,
    last_progress: Instant,
    receiver: Receiver,
    transmit: VecDeque<Bytes>,
    events: VecDeque<ChannelEvent>,
    stats: ChannelStats,
    /// The relay asked us to stop publishing (`pause_publication`); like the agent, we
    /// send no new data and no resends until `start_publication`, an ack or stream data.
    paused: bool,
}

/// Counters for diagnostics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Stream messages made ([`Channel::send`] calls).
    pub sent: u64,
    /// Transmissions of a message after its first.
    pub resent: u64,
    /// Messages declared lost by loss detection.
    pub lost: u64,
    /// Probe-timeout expiries.
    pub probes: u64,
    /// Lost messages whose ack arrived before they were resent.
    pub spurious_losses: u64,
    /// Transmissions made while the flight was already at the congestion window (never,
    /// by construction: the property tests check it).
    pub over_window: u64,
    pub received: u64,
    pub duplicates: u64,
    pub dropped_out_of_window: u64,
}

impl Channel {
    /// `now` and `wall_ms` are the same moment on the monotonic and the wall clock;
    /// `seed` makes MessageIds (pass randomness in production, a constant in tests).
    /// Congestion control is the default [`Congestion`].
    pub fn new(config: ChannelConfig, now: Instant, wall_ms: u64, seed: u128) -> Channel {
        let controller = Box::new(Congestion::new(config.send_window));
        Channel::with_controller(config, controller, now, wall_ms, seed)
    }

    /// [`Channel::new`] with another congestion controller. The channel never has more
    /// than `send_window` messages unacknowledged, whatever the controller's window.
    pub fn with_controller(
        config: ChannelConfig,
        controller: Box<dyn Controller>,
        now: Instant,
        wall_ms: u64,
        seed: u128,
    ) -> Channel {
        Channel {
            congestion: controller,
            receiver: Receiver::new(config.reorder_capacity, config.reorder_max_bytes),
            config,
            stamp: Stamper::new(now, wall_ms, seed),
            rtt: RttEstimator::default(),
            next_seq: 0,
            unacked: BTreeMap::new(),
            recovery: Recovery::default(),
            lost: BTreeSet::new(),
            unsent: VecDeque::new(),
            last_progress: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ChannelStats::default(),
            paused: false,
        }
    }

    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    pub fn congestion(&self) -> &dyn Controller {
        self.congestion.as_ref()
    }

    /// Messages that may still be sent before the window is full (none while paused):
    /// within the send window and what the congestion window has room for.
    pub fn window_available(&self) -> usize {
        if self.paused {
            return 0;
        }
        let window = self.config.send_window.saturating_sub(self.unacked.len());
        let queued = self.recovery.in_flight() + self.lost.len() + self.unsent.len();
        window.min(self.congestion.window().saturating_sub(queued))
    }

    /// True between `pause_publication` and whatever lifts it.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Transmissions in flight (neither acked nor declared lost).
    pub fn in_flight(&self) -> usize {
        self.recovery.in_flight()
    }

    /// Payload bytes held in the reorder buffer.
    pub fn reorder_bytes(&self) -> usize {
        self.receiver.bytes()
    }

    /// Sends `data` as Output messages of at most `max_payload` bytes. Empty input sends
    /// nothing (the agent cannot even encode an empty payload, docs/protocol.md §3.6).
    pub fn send_data(&mut self, now: Instant, data: &[u8]) {
        for chunk in data.chunks(self.config.max_payload.max(1)) {
            self.send(now, PayloadType::Output, chunk.to_vec());
        }
    }

    /// Sends one sequenced stream message. It waits for room in the congestion window;
    /// control messages are never refused, so they may wait behind data.
    pub fn send(&mut self, now: Instant, payload_type: PayloadType, payload: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = self.stamp.stream(
            now,
            Role::Client.sends(),
            seq,
            0,
            payload_type as u32,
            payload,
        );
        self.stats.sent += 1;
        if self.unacked.is_empty() {
            // Nothing was outstanding: a quiet period is not a stall.
            self.last_progress = now;
        }
        // Queued; `fill` transmits it when the congestion window has room.
        let out = Outgoing::new(frame, now, 0, State::Unsent);
        self.unacked.insert(seq, out);
        self.unsent.push_back(seq);
        self.fill(now);
    }

    /// Transmits lost messages, then new ones, while the congestion window has
    /// room and the relay has not paused us.
    fn fill(&mut self, now: Instant) {
        while !self.paused && self.recovery.in_flight() < self.congestion.window() {
            let next = match self.lost.pop_first() {
                Some(seq) => seq,
                None => match self.unsent.pop_front() {
                    Some(seq) => seq,
                    None => break,
                },
            };
            self.transmit_now(now, next, false);
        }
    }

    /// Puts one transmission of `seq` on the wire. `probe` transmissions may go
    /// beyond the congestion window.
    fn transmit_now(&mut self, now: Instant, seq: i64, probe: bool) {
        let Some(out) = self.unacked.get_mut(&seq) else {
            return;
        };
        if !probe && self.recovery.in_flight() >= self.congestion.window() {
            self.stats.over_window += 1;
        }
        if let State::InFlight(tx) = out.state {
            self.recovery.forget(tx);
        }
        if out.sent_count == 0 {
            out.first_sent = now;
        } else {
            self.stats.resent += 1;
        }
        out.sent_count = out.sent_count.saturating_add(1);
        out.last_sent = now;
        out.state = State::InFlight(self.recovery.on_sent(now, seq));
        self.transmit.push_back(out.frame.clone());
    }

    /// Handles one websocket binary (or text) frame from the peer.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChannelError> {
        let msg = Message::decode(frame)?;
        match &msg.message_type {
            MessageType::Acknowledge => self.on_ack(now, &msg.payload),
            t if *t == Role::Client.receives() => self.on_stream(now, msg),
            MessageType::ChannelClosed => {
                // Lenient: the text is informative; a malformed one still ends the session.
                let closed = serde_json::from_slice(&msg.payload).unwrap_or_default();
                self.events.push_back(ChannelEvent::Closed(closed));
                Ok(())
            }
            MessageType::PausePublication => {
                self.paused = true;
                self.events
                    .push_back(ChannelEvent::Publication { paused: true });
                Ok(())
            }
            MessageType::StartPublication => {
                self.unpause(now);
                self.events
                    .push_back(ChannelEvent::Publication { paused: false });
                Ok(())
            }
            other => {
                // The plugin logs "Invalid message type" and carries on; so do we.
                tracing::debug!(message_type = other.as_str(), "ignoring message");
                Ok(())
            }
        }
    }

    /// Lifts a pause: the time spent paused was not the peer's silence.
    fn unpause(&mut self, now: Instant) {
        if !self.paused {
            return;
        }
        self.paused = false;
        self.last_progress = now;
        self.recovery.restart_timer(now);
        self.fill(now);
    }

    fn on_ack(&mut self, now: Instant, payload: &[u8]) -> Result<(), ChannelError> {
        let ack: Acknowledge =
            serde_json::from_slice(payload).map_err(|e| ChannelError::BadAck(e.to_string()))?;
        self.unpause(now);
        // Senders match acks by sequence number only (docs/protocol.md §3.8).
        let seq = ack.acknowledged_message_sequence_number;
        let Some(out) = self.unacked.remove(&seq) else {
            return Ok(());
        };
        self.last_progress = now;
        let sample = (out.sent_count == 1).then(|| now.saturating_duration_since(out.first_sent));
        match out.state {
            State::InFlight(tx) => {
                if let Some(r) = sample {
                    self.rtt.on_sample(r);
                }
                // An ack sooner than half the minimum RTT after the resend answers an
                // earlier transmission: the loss was reordering, not a loss.
                let floor = self.congestion.min_rtt().unwrap_or(self.rtt.srtt()) / 2;
                if out.resent_as_lost && now.saturating_duration_since(out.last_sent) < floor {
                    self.stats.spurious_losses += 1;
                    self.recovery.on_spurious_loss(now);
                }
                self.recovery.on_acked(now, tx);
                self.congestion.on_ack(now, out.last_sent, sample);
            }
            State::Lost => {
                // It arrived after all (reordered, or the ack was late): no resend needed.
                self.stats.spurious_losses += 1;
                self.lost.remove(&seq);
                self.recovery.on_spurious_loss(now);
            }
            // A peer acking what it was never sent: ignore (the queue entry goes stale).
            State::Unsent => self.unsent.retain(|s| *s != seq),
        }
        self.detect_lost(now);
        self.fill(now);
        Ok(())
    }

    /// Moves what the acks prove lost to the resend set.
    fn detect_lost(&mut self, now: Instant) {
        for sent in self.recovery.detect_lost(now, &self.rtt) {
            if let Some(out) = self.unacked.get_mut(&sent.seq) {
                out.state = State::Lost;
                out.resent_as_lost = true;
                self.lost.insert(sent.seq);
                self.stats.lost += 1;
                self.congestion.on_loss(now, sent.at);
            }
        }
    }

    fn on_stream(&mut self, now: Instant, msg: Message) -> Result<(), ChannelError> {
        let seq = msg.sequence_number;
        self.receiver.check(seq)?;
        self.stats.received += 1;
        self.unpause(now);
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
        Ok(())
    }

    /// The earliest moment [`Channel::handle_timeout`] has work to do.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [Timer::Loss, Timer::Probe, Timer::Stall]
            .into_iter()
            .filter_map(|t| self.deadline(t))
            .min()
    }

    fn deadline(&self, timer: Timer) -> Option<Instant> {
        if self.unacked.is_empty() {
            return None;
        }
        match timer {
            // While paused nothing may be sent, and the silence is the relay's request.
            _ if self.paused => None,
            Timer::Loss => self.recovery.loss_deadline(),
            Timer::Probe => self.recovery.pto_deadline(&self.rtt),
            Timer::Stall => self.config.stall_timeout.map(|t| self.last_progress + t),
        }
    }

    /// Resends what is due; fails if the peer has stalled past `stall_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelError> {
        if self.paused {
            return Ok(());
        }
        if let Some(limit) = self.config.stall_timeout
            && self.deadline(Timer::Stall).is_some_and(|t| now >= t)
        {
            return Err(ChannelError::Stalled(limit));
        }
        if self.deadline(Timer::Loss).is_some_and(|t| now >= t) {
            self.detect_lost(now);
        }
        if self.deadline(Timer::Probe).is_some_and(|t| now >= t) {
            self.on_probe_timeout(now);
        }
        self.fill(now);
        Ok(())
    }

    /// Nothing acked for a probe timeout. Back off and resend the oldest
    /// unacknowledged message, so the peer (if it is there) answers and loss detection
    /// can take over.
    fn on_probe_timeout(&mut self, now: Instant) {
        self.stats.probes += 1;
        tracing::debug!(
            pto = ?self.recovery.pto(&self.rtt),
            backoff = self.recovery.pto_count(),
            in_flight = self.recovery.in_flight(),
            window = self.congestion.window(),
            unacked = self.unacked.len(),
            stats = ?self.stats,
            "probe timeout"
        );
        if self.recovery.on_pto(now) {
            self.congestion.on_persistent_congestion(now);
        }
        let head = self
            .unacked
            .iter()
            .find(|(_, o)| o.state != State::Unsent)
            .map(|(s, _)| *s);
        if let Some(seq) = head {
            self.lost.remove(&seq);
            self.transmit_now(now, seq, true);
        }
    }

    /// The transport was replaced (websocket resumed): everything in flight may have been
    /// lost with the old connection. It is all counted lost and resent as a fresh
    /// congestion window allows. The stall clock restarts. Sequence state is untouched:
    /// nothing is lost or delivered twice.
    pub fn on_reconnect(&mut self, now: Instant) {
        self.last_progress = now;
        tracing::debug!(
            in_flight = self.recovery.in_flight(),
            window = self.congestion.window(),
            unacked = self.unacked.len(),
            srtt = ?self.rtt.srtt(),
            stats = ?self.stats,
            "resending what was in flight"
        );
        for sent in self.recovery.take_all() {
            if let Some(out) = self.unacked.get_mut(&sent.seq) {
                out.state = State::Lost;
                self.lost.insert(sent.seq);
            }
        }
        self.congestion.on_reconnect(now);
        self.fill(now);
    }

    /// The next frame to write to the websocket.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next in-order payload or control event.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
