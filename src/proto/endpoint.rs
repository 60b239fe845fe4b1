//! What both ends of a data channel do alike, whatever their sending rules: stamp the
//! messages they send (CreatedDate, MessageId, docs/protocol.md §3.5) and receive stream
//! data in sequence order through a bounded reorder buffer, acknowledging each message
//! they keep (docs/protocol.md §6.2). Sans-IO.
//!
//! Bounds: the reorder buffer holds at most `capacity` messages and `max_bytes` payload
//! bytes, and only sequence numbers less than `capacity` ahead of the next expected one;
//! beyond any of these a message is dropped unacknowledged and the peer resends it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use super::channel::{ChannelError, ChannelEvent, ChannelStats, Incoming};
use super::message::{Message, MessageType, flags};
use super::payload::{Acknowledge, PayloadType};

/// No real peer can be this far ahead: the agent's whole outgoing buffer is 100 000
/// messages (docs/protocol.md §6.4).
const FAR_SEQUENCE: i64 = 1_000_000;

/// Builds the frames one end sends: wall-clock milliseconds for CreatedDate, derived from
/// the `now` the caller passes, and distinct version-4 MessageIds from one random seed.
pub(crate) struct Stamper {
    origin: Instant,
    origin_ms: u64,
    ids: u128,
}

impl Stamper {
    /// `now` and `wall_ms` are the same moment on the monotonic and the wall clock.
    pub(crate) fn new(now: Instant, wall_ms: u64, seed: u128) -> Stamper {
        Stamper {
            origin: now,
            origin_ms: wall_ms,
            ids: seed,
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_millis();
        self.origin_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
            .max(1)
    }

    fn next_id(&mut self) -> Uuid {
        // Weyl sequence: distinct for 2^128 steps; version/variant bits set by the builder.
        self.ids = self
            .ids
            .wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        uuid::Builder::from_random_bytes(self.ids.to_be_bytes()).into_uuid()
    }

    /// One sequenced stream message, encoded.
    pub(crate) fn stream(
        &mut self,
        now: Instant,
        message_type: MessageType,
        seq: i64,
        flags: u64,
        payload_type: u32,
        payload: Vec<u8>,
    ) -> Bytes {
        let msg = Message {
            message_type,
            schema_version: 1,
            created_date: self.ms(now),
            sequence_number: seq,
            flags,
            message_id: self.next_id(),
            payload_type,
            payload,
        };
        Bytes::from(msg.encode())
    }

    /// The acknowledge of one stream message (docs/protocol.md §3.8), encoded.
    pub(crate) fn ack(
        &mut self,
        now: Instant,
        acked_type: &MessageType,
        id: Uuid,
        seq: i64,
    ) -> Bytes {
        let ack = Acknowledge {
            acknowledged_message_type: acked_type.as_str().to_owned(),
            acknowledged_message_id: id,
            acknowledged_message_sequence_number: seq,
            is_sequential_message: true,
        };
        let payload = serde_json::to_vec(&ack).unwrap_or_default();
        self.stream(
            now,
            MessageType::Acknowledge,
            0,
            flags::ACK,
            PayloadType::Undefined as u32,
            payload,
        )
    }
}

/// The receiving half: in-order delivery through a bounded reorder buffer.
pub(crate) struct Receiver {
    expected: i64,
    reorder: BTreeMap<i64, Incoming>,
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
}

impl Receiver {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Receiver {
        Receiver {
            expected: 0,
            reorder: BTreeMap::new(),
            bytes: 0,
            capacity,
            max_bytes,
        }
    }

    /// Payload bytes held in the reorder buffer.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Refuses sequence numbers no genuine peer sends.
    pub(crate) fn check(&self, seq: i64) -> Result<(), ChannelError> {
        if seq < 0 {
            return Err(ChannelError::NegativeSequence(seq));
        }
        if seq - self.expected > FAR_SEQUENCE {
            return Err(ChannelError::FarSequence {
                got: seq,
                expected: self.expected,
            });
        }
        Ok(())
    }

    /// Takes one stream message (its sequence number already passed [`Receiver::check`]):
    /// what is now in order goes to `events`. True when the message is to be
    /// acknowledged; false when there was no room for it (the peer will resend it).
    pub(crate) fn accept(
        &mut self,
        seq: i64,
        incoming: Incoming,
        stats: &mut ChannelStats,
        events: &mut VecDeque<ChannelEvent>,
    ) -> bool {
        if seq < self.expected {
            // Our ack was lost: acknowledge again so the peer stops resending.
            stats.duplicates += 1;
        } else if seq == self.expected {
            events.push_back(ChannelEvent::Message(incoming));
            self.expected += 1;
            while let Some(next) = self.reorder.remove(&self.expected) {
                self.bytes -= next.payload.len();
                events.push_back(ChannelEvent::Message(next));
                self.expected += 1;
            }
        } else if self.reorder.contains_key(&seq) {
            // Already held: acknowledge again, keep the first copy.
        } else if (seq - self.expected) as u64 <= self.capacity as u64
            && self.reorder.len() < self.capacity
            && self.bytes + incoming.payload.len() <= self.max_bytes
        {
            self.bytes += incoming.payload.len();
            self.reorder.insert(seq, incoming);
        } else {
            // No room: drop without an ack; the sender will retransmit.
            stats.dropped_out_of_window += 1;
            return false;
        }
        true
    }
}
