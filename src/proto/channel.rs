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
//! The same type plays either end ([`Role`]); the resend rules are a setting so that the
//! testbed can reproduce the real agent's (head of line only, one check per 100 ms tick)
//! while our client runs loss detection, a probe timeout with backoff
//! ([`super::recovery`]) and a congestion window ([`super::congestion`]): it transmits,
//! new or resent, only while fewer than a window's worth of messages are in flight, and
//! [`Channel::window_available`] tells the driver how much local input to read.
//!
//! Bounds (docs/architecture.md, "Bounded by construction"): unacknowledged messages at most `send_window` (plus the few of
//! one `send_data` call); the reorder buffer at most `reorder_capacity` messages and
//! `reorder_max_bytes` bytes (beyond either, messages are dropped unacknowledged and the
//! peer resends them); queued frames and events are drained by the driver after every
//! call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::congestion::Congestion;
use super::message::{DecodeError, Message, MessageType, flags};
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
    fn sends(self) -> MessageType {
        match self {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }
    fn receives(self) -> MessageType {
        match self {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }
}

/// When unacknowledged messages are sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResendPolicy {
    /// Our client's: loss detection from later acks, a backed-off probe timeout for the
    /// tail, and a congestion window over everything it transmits.
    Recovery,
    /// The real peers' scheduler: every `tick`, only the oldest unacked message, if overdue.
    HeadOfLine { tick: Duration },
}

/// What happens to a message sent while `send_window` messages are unacknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Keep it (the driver is expected to respect [`Channel::window_available`]).
    Keep,
    /// The agent's rule: send it once, never store it for retransmission.
    SendUnstored,
}

#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub role: Role,
    /// Largest stream payload [`Channel::send_data`] puts in one message.
    pub max_payload: usize,
    /// Unacknowledged messages beyond which [`Channel::window_available`] is zero.
    pub send_window: usize,
    pub overflow: Overflow,
    /// Out-of-order messages held; beyond it they are dropped unacknowledged.
    pub reorder_capacity: usize,
    /// Payload bytes the reorder buffer may hold; beyond it, the same.
    pub reorder_max_bytes: usize,
    pub resend: ResendPolicy,
    /// Give up when unacknowledged data has seen no acknowledgement for this long.
    pub stall_timeout: Option<Duration>,
}

impl ChannelConfig {
    /// Our client: 1 KiB messages as the agent expects, at most 4096 unacknowledged (4 MiB,
    /// well under the agent's 100 000-message buffer) and fewer when the congestion window
    /// says so; 10 000 out-of-order messages or 16 MiB held, whichever comes first.
    pub fn client() -> Self {
        ChannelConfig {
            role: Role::Client,
            max_payload: 1024,
            send_window: 4096,
            overflow: Overflow::Keep,
            reorder_capacity: 10_000,
            reorder_max_bytes: 16 << 20,
            resend: ResendPolicy::Recovery,
            stall_timeout: Some(Duration::from_secs(300)),
        }
    }

    /// amazon-ssm-agent's constants and rules (docs/protocol.md §6, §12).
    pub fn agent() -> Self {
        ChannelConfig {
            role: Role::Agent,
            max_payload: 1024,
            send_window: 100_000,
            overflow: Overflow::SendUnstored,
            reorder_capacity: 100_000,
            // The agent counts messages only; at its 1 KiB chunks that is ~100 MB.
            reorder_max_bytes: usize::MAX,
            resend: ResendPolicy::HeadOfLine {
                tick: Duration::from_millis(100),
            },
            stall_timeout: None,
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

/// No real peer can be this far ahead: the agent's whole outgoing buffer is 100 000
/// messages (docs/protocol.md §6.4).
const FAR_SEQUENCE: i64 = 1_000_000;

/// Timers, one table: the driver only ever sees the earliest deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Agent policy: the next 100 ms resend tick.
    Tick,
    /// Client: the time threshold of loss detection.
    Loss,
    /// Client: the probe timeout.
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

/// Wall-clock milliseconds for CreatedDate, derived from the `now` the caller passes.
struct WallClock {
    origin: Instant,
    origin_ms: u64,
}

impl WallClock {
    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_millis();
        self.origin_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
            .max(1)
    }
}

/// Distinct version-4 MessageIds from one random seed.
struct IdGen {
    state: u128,
}

impl IdGen {
    fn next(&mut self) -> Uuid {
        // Weyl sequence: distinct for 2^128 steps; version/variant bits set by the builder.
        self.state = self
            .state
            .wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        uuid::Builder::from_random_bytes(self.state.to_be_bytes()).into_uuid()
    }
}

pub struct Channel {
    config: ChannelConfig,
    clock: WallClock,
    ids: IdGen,
    rtt: RttEstimator,
    next_seq: i64,
    unacked: BTreeMap<i64, Outgoing>,
    /// Client: transmissions in flight, loss detection, probe timeout.
    recovery: Recovery,
    congestion: Congestion,
    /// Client: sequence numbers declared lost, resent lowest first.
    lost: BTreeSet<i64>,
    /// Client: sequence numbers not yet transmitted, in order.
    unsent: VecDeque<i64>,
    /// Agent: the next resend tick.
    next_tick: Option<Instant>,
    last_progress: Instant,
    expected: i64,
    reorder: BTreeMap<i64, Incoming>,
    reorder_bytes: usize,
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
    /// Messages declared lost by loss detection (client).
    pub lost: u64,
    /// Probe-timeout expiries (client).
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
    pub fn new(config: ChannelConfig, now: Instant, wall_ms: u64, seed: u128) -> Channel {
        Channel {
            congestion: Congestion::new(config.send_window),
            config,
            clock: WallClock {
                origin: now,
                origin_ms: wall_ms,
            },
            ids: IdGen { state: seed },
            rtt: RttEstimator::default(),
            next_seq: 0,
            unacked: BTreeMap::new(),
            recovery: Recovery::default(),
            lost: BTreeSet::new(),
            unsent: VecDeque::new(),
            next_tick: None,
            last_progress: now,
            expected: 0,
            reorder: BTreeMap::new(),
            reorder_bytes: 0,
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

    pub fn congestion(&self) -> &Congestion {
        &self.congestion
    }

    fn controlled(&self) -> bool {
        self.config.resend == ResendPolicy::Recovery
    }

    /// Messages that may still be sent before the window is full (none while paused).
    /// For the client this is also what the congestion window has room for.
    pub fn window_available(&self) -> usize {
        if self.paused {
            return 0;
        }
        let window = self.config.send_window.saturating_sub(self.unacked.len());
        if !self.controlled() {
            return window;
        }
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

    /// Client: transmissions in flight (neither acked nor declared lost).
    pub fn in_flight(&self) -> usize {
        self.recovery.in_flight()
    }

    /// Payload bytes held in the reorder buffer.
    pub fn reorder_bytes(&self) -> usize {
        self.reorder_bytes
    }

    /// Sends `data` as Output messages of at most `max_payload` bytes. Empty input sends
    /// nothing (the agent cannot even encode an empty payload, docs/protocol.md §3.6).
    pub fn send_data(&mut self, now: Instant, data: &[u8]) {
        for chunk in data.chunks(self.config.max_payload.max(1)) {
            self.send(now, PayloadType::Output, chunk.to_vec());
        }
    }

    /// Sends one sequenced stream message (the client's waits for room in the congestion
    /// window; control messages are never refused, so they may wait behind data).
    pub fn send(&mut self, now: Instant, payload_type: PayloadType, payload: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg = Message {
            message_type: self.config.role.sends(),
            schema_version: 1,
            created_date: self.clock.ms(now),
            sequence_number: seq,
            flags: if seq == 0 && self.config.role == Role::Agent {
                flags::SYN
            } else {
                0
            },
            message_id: self.ids.next(),
            payload_type: payload_type as u32,
            payload,
        };
        let frame = Bytes::from(msg.encode());
        self.stats.sent += 1;
        if self.unacked.len() >= self.config.send_window
            && self.config.overflow == Overflow::SendUnstored
        {
            self.transmit.push_back(frame);
            return;
        }
        if self.unacked.is_empty() {
            // Nothing was outstanding: a quiet period is not a stall.
            self.last_progress = now;
        }
        if self.controlled() {
            // Queued; `fill` transmits it when the congestion window has room.
            let out = Outgoing::new(frame, now, 0, State::Unsent);
            self.unacked.insert(seq, out);
            self.unsent.push_back(seq);
            self.fill(now);
            return;
        }
        self.transmit.push_back(frame.clone());
        let out = Outgoing::new(frame, now, 1, State::InFlight(0));
        self.unacked.insert(seq, out);
        if self.next_tick.is_none()
            && let ResendPolicy::HeadOfLine { tick } = self.config.resend
        {
            self.next_tick = Some(now + tick);
        }
    }

    /// Client: transmits lost messages, then new ones, while the congestion window has
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

    /// Client: puts one transmission of `seq` on the wire. `probe` transmissions may go
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
            t if *t == self.config.role.receives() => self.on_stream(now, msg),
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
        if self.controlled() {
            self.recovery.restart_timer(now);
            self.fill(now);
        }
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
        if !self.controlled() {
            if let Some(r) = sample {
                self.rtt.on_sample(r);
            }
            return Ok(());
        }
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

    /// Client: moves what the acks prove lost to the resend set.
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
        if seq < 0 {
            return Err(ChannelError::NegativeSequence(seq));
        }
        if seq - self.expected > FAR_SEQUENCE {
            return Err(ChannelError::FarSequence {
                got: seq,
                expected: self.expected,
            });
        }
        self.stats.received += 1;
        self.unpause(now);
        let incoming = Incoming {
            payload_type: msg.payload_type,
            payload: msg.payload,
        };
        if seq < self.expected {
            // Our ack was lost: acknowledge again so the peer stops resending.
            self.stats.duplicates += 1;
            self.queue_ack(now, &msg.message_type, msg.message_id, seq);
        } else if seq == self.expected {
            self.queue_ack(now, &msg.message_type, msg.message_id, seq);
            self.events.push_back(ChannelEvent::Message(incoming));
            self.expected += 1;
            while let Some(next) = self.reorder.remove(&self.expected) {
                self.reorder_bytes -= next.payload.len();
                self.events.push_back(ChannelEvent::Message(next));
                self.expected += 1;
            }
        } else if self.reorder.contains_key(&seq) {
            self.queue_ack(now, &msg.message_type, msg.message_id, seq);
        } else if (seq - self.expected) as u64 <= self.config.reorder_capacity as u64
            && self.reorder.len() < self.config.reorder_capacity
            && self.reorder_bytes + incoming.payload.len() <= self.config.reorder_max_bytes
        {
            self.queue_ack(now, &msg.message_type, msg.message_id, seq);
            self.reorder_bytes += incoming.payload.len();
            self.reorder.insert(seq, incoming);
        } else {
            // No room: drop without an ack; the sender will retransmit.
            self.stats.dropped_out_of_window += 1;
        }
        Ok(())
    }

    fn queue_ack(&mut self, now: Instant, acked_type: &MessageType, id: Uuid, seq: i64) {
        let ack = Acknowledge {
            acknowledged_message_type: acked_type.as_str().to_owned(),
            acknowledged_message_id: id,
            acknowledged_message_sequence_number: seq,
            is_sequential_message: true,
        };
        let msg = Message {
            message_type: MessageType::Acknowledge,
            schema_version: 1,
            created_date: self.clock.ms(now),
            sequence_number: 0,
            flags: flags::ACK,
            message_id: self.ids.next(),
            payload_type: PayloadType::Undefined as u32,
            payload: serde_json::to_vec(&ack).unwrap_or_default(),
        };
        self.transmit.push_back(Bytes::from(msg.encode()));
    }

    /// The earliest moment [`Channel::handle_timeout`] has work to do.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [Timer::Tick, Timer::Loss, Timer::Probe, Timer::Stall]
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
            Timer::Tick => self.next_tick,
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
        match self.config.resend {
            ResendPolicy::Recovery => {
                if self.deadline(Timer::Loss).is_some_and(|t| now >= t) {
                    self.detect_lost(now);
                }
                if self.deadline(Timer::Probe).is_some_and(|t| now >= t) {
                    self.on_probe_timeout(now);
                }
                self.fill(now);
            }
            ResendPolicy::HeadOfLine { tick } => {
                let rto = self.rtt.rto();
                while let Some(t) = self.next_tick.filter(|t| *t <= now) {
                    self.next_tick = Some(t + tick);
                    let head = self.unacked.iter().next().map(|(s, o)| (*s, o.last_sent));
                    if let Some((seq, last)) = head
                        && now.saturating_duration_since(last) > rto
                    {
                        self.resend_head(now, seq);
                    }
                }
                if self.unacked.is_empty() {
                    self.next_tick = None;
                }
            }
        }
        Ok(())
    }

    /// Client: nothing acked for a probe timeout. Back off and resend the oldest
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

    /// Agent policy: one more transmission of the head of line.
    fn resend_head(&mut self, now: Instant, seq: i64) {
        if let Some(out) = self.unacked.get_mut(&seq) {
            out.last_sent = now;
            out.sent_count = out.sent_count.saturating_add(1);
            self.transmit.push_back(out.frame.clone());
            self.stats.resent += 1;
        }
    }

    /// The transport was replaced (websocket resumed): everything in flight may have been
    /// lost with the old connection. The client counts it all lost and resends it as a
    /// fresh congestion window allows; the agent policy sends it all again now. The stall
    /// clock restarts. Sequence state is untouched: nothing is lost or delivered twice.
    pub fn on_reconnect(&mut self, now: Instant) {
        self.last_progress = now;
        if self.controlled() {
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
            return;
        }
        let seqs: Vec<i64> = self.unacked.keys().copied().collect();
        for seq in seqs {
            self.resend_head(now, seq);
        }
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
