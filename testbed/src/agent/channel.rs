//! The agent's end of the data channel, written from amazon-ssm-agent's rules
//! (`agent/session/datachannel/datachannel.go`, docs/protocol.md §3.5, §3.8, §6) and from nothing
//! in the client: it shares only the golden-tested header codec
//! (`sallyport::proto::message`) with sallyport, so a sequencing, ack or resend mistake made
//! in the client's `proto::channel` is not repeated here, and a test through the testbed
//! can catch it.
//!
//! The agent's rules, as implemented:
//! - **Sequencing**: every `output_stream_data` message takes the next number from 0;
//!   sequence 0 carries the SYN flag, the rest no flag. Acks carry sequence 0 and flags
//!   SYN|FIN, payload type 0, and the JSON of §3.8 in Go's field order.
//! - **Receive** (`handleStreamDataMessage`): the expected message is delivered and the
//!   caller acknowledges it after its handler ran (the acks wait in the transmit queue;
//!   the caller sends them when its write to the instance is done); a later one is acked
//!   and stored while fewer than [`INCOMING_CAPACITY`] are stored, else dropped silently;
//!   an earlier one (a duplicate) is acked again and dropped. Stored messages are
//!   delivered as soon as the gap closes. Any `input_stream_data` or `acknowledge` lifts a
//!   pause.
//! - **Send buffer**: up to [`OUTGOING_CAPACITY`] unacked messages are kept for resending;
//!   beyond that a new message is sent once and never stored (the agent's overflow rule).
//! - **Resend**: a scheduler tick every [`RESEND_TICK`] looks at the oldest unacked message
//!   only and resends it if it was last sent more than an RTO ago (so at most one resend per
//!   tick). The RTO estimator takes a sample from every ack, resent message or not (no Karn
//!   rule): `RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|`, `SRTT = 7/8·SRTT + 1/8·R`,
//!   `RTO = SRTT + max(10 ms, 4·RTTVAR)` capped at 1 s; initially SRTT 100 ms, RTTVAR 0,
//!   RTO 200 ms.
//! - **Pause** (`pause_publication` from MGS): nothing is resent while paused. The real
//!   agent also stops reading its sources; here a message sent while paused is stored but
//!   put on the wire only when the pause lifts (`start_publication`, input or an ack), which
//!   is what reading the source after the pause would give. Unverified: whether the agent
//!   sends a message it had already read when the pause arrived.
//!
//! Validation is the codec's (stricter than the agent, which does not check the digest):
//! an invalid frame is ignored, as the agent logs and ignores it.
//!
//! Bounds: the send buffer holds at most [`OUTGOING_CAPACITY`] messages, the receive
//! buffer [`INCOMING_CAPACITY`] (the agent's 100 000 each); the transmit and event queues
//! are drained by the caller after each call.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sallyport::proto::message::{Message, MessageType, flags};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The agent's outgoing buffer (`OutgoingMessageBufferCapacity`).
pub const OUTGOING_CAPACITY: usize = 100_000;
/// The agent's incoming buffer (`IncomingMessageBufferCapacity`).
pub const INCOMING_CAPACITY: usize = 100_000;
/// The agent's resend scheduler period (`ResendSleepInterval`).
pub const RESEND_TICK: Duration = Duration::from_millis(100);
const INITIAL_SRTT: Duration = Duration::from_millis(100);
const INITIAL_RTO: Duration = Duration::from_millis(200);
const MAX_RTO: Duration = Duration::from_secs(1);
const MIN_RTTVAR_TERM: Duration = Duration::from_millis(10);

/// Payload type of an acknowledge (docs/protocol.md §3.5).
const ACK_PAYLOAD_TYPE: u32 = 0;

/// A payload delivered in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub payload_type: u32,
    pub payload: Vec<u8>,
}

/// What the channel hands its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// The next client payload in sequence order.
    Message(Incoming),
    /// MGS paused (true) or resumed (false) publication.
    Publication { paused: bool },
}

/// The acknowledge payload, fields in the agent's declaration order (docs/protocol.md §3.8).
#[derive(Debug, Serialize, Deserialize)]
struct AckPayload {
    #[serde(rename = "AcknowledgedMessageType")]
    message_type: String,
    #[serde(rename = "AcknowledgedMessageId")]
    message_id: String,
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    sequence_number: i64,
    #[serde(rename = "IsSequentialMessage")]
    is_sequential: bool,
}

/// One stored outgoing message (the agent's `StreamingMessage`).
struct Stored {
    frame: Vec<u8>,
    last_sent: Instant,
    /// Sent while paused: goes on the wire when the pause lifts.
    held: bool,
}

/// The agent's RTO estimator (`calculateRetransmissionTimeout`).
#[derive(Debug, Clone, Copy)]
struct Rto {
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
}

impl Rto {
    fn new() -> Rto {
        Rto {
            srtt: INITIAL_SRTT,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
        }
    }

    fn sample(&mut self, r: Duration) {
        let diff = self.srtt.abs_diff(r);
        self.rttvar = self.rttvar * 3 / 4 + diff / 4;
        self.srtt = self.srtt * 7 / 8 + r / 8;
        self.rto = (self.srtt + (self.rttvar * 4).max(MIN_RTTVAR_TERM)).min(MAX_RTO);
    }
}

/// The agent's data channel: see the module doc for its rules. Input through
/// [`handle_frame`](Self::handle_frame) and [`handle_timeout`](Self::handle_timeout),
/// sends through [`send`](Self::send); after each call, drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event).
pub struct AgentDataChannel {
    max_payload: usize,
    next_seq: i64,
    /// Unacked messages by sequence number; the first is the head of line.
    outgoing: BTreeMap<i64, Stored>,
    rto: Rto,
    /// The scheduler's phase: ticks fall on `epoch + k·RESEND_TICK`.
    epoch: Instant,
    /// Ticks up to here were looked at (or concerned an earlier head of line).
    checked_until: Instant,
    expected: i64,
    incoming: BTreeMap<i64, Incoming>,
    paused: bool,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<AgentEvent>,
    resent: u64,
}

impl AgentDataChannel {
    /// A channel that splits stream data into messages of at most `max_payload` bytes.
    pub fn new(max_payload: usize, now: Instant) -> AgentDataChannel {
        AgentDataChannel {
            max_payload: max_payload.max(1),
            next_seq: 0,
            outgoing: BTreeMap::new(),
            rto: Rto::new(),
            epoch: now,
            checked_until: now,
            expected: 0,
            incoming: BTreeMap::new(),
            paused: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            resent: 0,
        }
    }

    /// Largest stream payload [`send_data`](Self::send_data) puts in one message.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Messages sent and not yet acknowledged (stored ones only).
    pub fn unacked(&self) -> usize {
        self.outgoing.len()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Head-of-line resends so far.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto.rto
    }

    /// Sends stream bytes as Output (payload type 1) messages.
    pub fn send_data(&mut self, now: Instant, data: &[u8]) {
        for chunk in data.chunks(self.max_payload) {
            self.send(now, 1, chunk.to_vec());
        }
    }

    /// Sends one sequenced `output_stream_data` message.
    pub fn send(&mut self, now: Instant, payload_type: u32, payload: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = Message {
            message_type: MessageType::OutputStreamData,
            schema_version: 1,
            created_date: wall_ms(),
            sequence_number: seq,
            flags: if seq == 0 { flags::SYN } else { 0 },
            message_id: Uuid::new_v4(),
            payload_type,
            payload,
        }
        .encode();
        if self.outgoing.len() >= OUTGOING_CAPACITY {
            // The agent's overflow rule: sent once, never stored, never resent.
            self.transmit.push_back(frame);
            return;
        }
        if self.outgoing.is_empty() {
            // The scheduler runs all the time with a phase of its own; move its epoch up
            // (by whole ticks) so the tick arithmetic stays small.
            let elapsed = now.saturating_duration_since(self.epoch);
            let ticks = elapsed.as_nanos() / RESEND_TICK.as_nanos();
            self.epoch += RESEND_TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
        }
        if !self.paused {
            self.transmit.push_back(frame.clone());
        }
        self.outgoing.insert(
            seq,
            Stored {
                frame,
                last_sent: now,
                held: self.paused,
            },
        );
    }

    /// Handles one frame from MGS. An invalid frame is ignored and reported.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), String> {
        let msg = Message::decode(frame).map_err(|e| e.to_string())?;
        match msg.message_type {
            MessageType::InputStreamData => {
                self.unpause(now);
                self.on_input(msg);
                Ok(())
            }
            MessageType::Acknowledge => {
                self.unpause(now);
                self.on_ack(now, &msg.payload)
            }
            MessageType::PausePublication => {
                self.paused = true;
                self.events
                    .push_back(AgentEvent::Publication { paused: true });
                Ok(())
            }
            MessageType::StartPublication => {
                self.unpause(now);
                self.events
                    .push_back(AgentEvent::Publication { paused: false });
                Ok(())
            }
            other => Err(format!("unexpected message type {:?}", other.as_str())),
        }
    }

    fn unpause(&mut self, now: Instant) {
        if !self.paused {
            return;
        }
        self.paused = false;
        for stored in self.outgoing.values_mut().filter(|s| s.held) {
            stored.held = false;
            stored.last_sent = now;
            self.transmit.push_back(stored.frame.clone());
        }
    }

    fn on_input(&mut self, msg: Message) {
        let seq = msg.sequence_number;
        let ack = ack_frame(&msg);
        let incoming = Incoming {
            payload_type: msg.payload_type,
            payload: msg.payload,
        };
        if seq < self.expected {
            // A duplicate: the client missed our ack. Ack it again, drop it.
            self.transmit.push_back(ack);
        } else if seq == self.expected {
            // Acked after the handler: the caller holds this ack until its write is done.
            self.transmit.push_back(ack);
            self.events.push_back(AgentEvent::Message(incoming));
            self.expected += 1;
            while let Some(next) = self.incoming.remove(&self.expected) {
                self.events.push_back(AgentEvent::Message(next));
                self.expected += 1;
            }
        } else if self.incoming.len() < INCOMING_CAPACITY {
            self.transmit.push_back(ack);
            self.incoming.insert(seq, incoming);
        }
        // Else: the buffer is full; dropped without an ack (the client resends).
    }

    fn on_ack(&mut self, now: Instant, payload: &[u8]) -> Result<(), String> {
        let ack: AckPayload = serde_json::from_slice(payload)
            .map_err(|e| format!("acknowledge payload is not valid: {e}"))?;
        // Matched by sequence number only, as the agent does.
        if let Some(stored) = self.outgoing.remove(&ack.sequence_number) {
            self.rto
                .sample(now.saturating_duration_since(stored.last_sent));
            // Earlier ticks looked at the old head of line, not at the new one.
            self.checked_until = self.checked_until.max(now);
        }
        Ok(())
    }

    /// The first scheduler tick at which the head of line is older than the RTO.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.paused {
            return None;
        }
        let head = self.outgoing.values().next()?;
        Some(self.next_tick_after((head.last_sent + self.rto.rto).max(self.checked_until)))
    }

    /// The first tick strictly after `t`.
    fn next_tick_after(&self, t: Instant) -> Instant {
        let elapsed = t.saturating_duration_since(self.epoch);
        let ticks = elapsed.as_nanos() / RESEND_TICK.as_nanos() + 1;
        self.epoch + RESEND_TICK * u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Runs the resend scheduler up to `now`: at each tick where the head of line was last
    /// sent more than an RTO ago, it is sent again (one message per tick at most).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(tick) = self.poll_timeout().filter(|t| *t <= now) {
            let Some(head) = self.outgoing.values_mut().next() else {
                return;
            };
            head.last_sent = tick;
            self.transmit.push_back(head.frame.clone());
            self.resent += 1;
        }
        self.checked_until = self.checked_until.max(now);
    }

    /// The next frame to put on the websocket.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next in-order payload or publication change.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }
}

/// The acknowledge for `msg` (docs/protocol.md §3.5, §3.8).
fn ack_frame(msg: &Message) -> Vec<u8> {
    let payload = AckPayload {
        message_type: msg.message_type.as_str().to_owned(),
        message_id: msg.message_id.hyphenated().to_string(),
        sequence_number: msg.sequence_number,
        is_sequential: true,
    };
    Message {
        message_type: MessageType::Acknowledge,
        schema_version: 1,
        created_date: wall_ms(),
        sequence_number: 0,
        flags: flags::SYN | flags::FIN,
        message_id: Uuid::new_v4(),
        payload_type: ACK_PAYLOAD_TYPE,
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
    }
    .encode()
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
