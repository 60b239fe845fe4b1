//! Per-session counts of stream data messages as the relay sees them, for tests and
//! benchmarks that measure retransmission: every `input_stream_data` the client sent
//! (counted as the relay reads it, before any injected fault) and every
//! `output_stream_data` the agent sent (as the relay takes it from the agent).
//!
//! Duplicates are told by sequence number, with the message codec's header table only
//! (independently of the channel code under test): a watermark below which every number has been seen, and a
//! set of the numbers seen above it. The set holds at most [`MAX_AHEAD`] numbers; beyond
//! that, new numbers far ahead count as distinct but are not remembered (a later copy of
//! one would count as distinct again). Frames whose header does not add up, or with a negative
//! sequence number, are not counted.
//!
//! Read them with `Testbed::data_stats`, over HTTP at `GET /testbed/stats`, or in the one
//! line the relay prints on stderr when a session ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sallyport::proto::message::{HEADER_LENGTH, HEADER_SIZE, MessageType, layout};
use serde::Serialize;
use tokio::sync::Notify;

use crate::world::backlog::Backlog;

/// Sequence numbers above the watermark remembered at most (the agent's own incoming
/// buffer size, docs/protocol.md §6.4).
pub const MAX_AHEAD: usize = 100_000;

/// What was seen of one session's stream data so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DataStats {
    /// Client `input_stream_data` messages, copies included.
    pub client_messages: u64,
    /// Distinct client sequence numbers.
    pub client_distinct: u64,
    /// Client payload bytes, copies included.
    pub client_bytes: u64,
    /// Client messages whose sequence number had been seen before (retransmissions).
    pub client_dup_messages: u64,
    pub client_dup_bytes: u64,
    /// The same for the agent's `output_stream_data`.
    pub agent_messages: u64,
    pub agent_distinct: u64,
    pub agent_bytes: u64,
    pub agent_dup_messages: u64,
    pub agent_dup_bytes: u64,
    /// Most messages the relay held at once for the agent (delay line and agent inbox),
    /// and for the client (delay line and websocket writes): at most `--relay-queue`.
    pub relay_peak_to_agent: u64,
    pub relay_peak_to_client: u64,
    /// What the relay holds now, each way.
    pub relay_held_to_agent: u64,
    pub relay_held_to_client: u64,
}

/// Sequence numbers seen, in bounded memory.
#[derive(Debug, Default)]
pub struct SeqSeen {
    /// Every number below this has been seen.
    below: i64,
    ahead: BTreeSet<i64>,
}

impl SeqSeen {
    /// Records `seq`; true if it is new.
    pub fn insert(&mut self, seq: i64) -> bool {
        if seq < self.below || self.ahead.contains(&seq) {
            return false;
        }
        if seq == self.below {
            self.below += 1;
            while self.ahead.remove(&self.below) {
                self.below += 1;
            }
        } else if self.ahead.len() < MAX_AHEAD {
            self.ahead.insert(seq);
        }
        true
    }
}

#[derive(Debug, Default)]
struct Direction {
    seen: SeqSeen,
    messages: u64,
    distinct: u64,
    bytes: u64,
    dup_messages: u64,
    dup_bytes: u64,
}

impl Direction {
    fn count(&mut self, seq: i64, bytes: usize) {
        let bytes = bytes as u64;
        self.messages += 1;
        self.bytes += bytes;
        if self.seen.insert(seq) {
            self.distinct += 1;
        } else {
            self.dup_messages += 1;
            self.dup_bytes += bytes;
        }
    }
}

/// One session's counters, shared by the relay's tasks.
#[derive(Debug)]
pub struct SessionStats {
    client: Mutex<Direction>,
    agent: Mutex<Direction>,
    pub to_agent_held: Arc<Backlog>,
    pub to_client_held: Arc<Backlog>,
    ended: AtomicBool,
    ended_changed: Notify,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            client: Mutex::default(),
            agent: Mutex::default(),
            to_agent_held: Backlog::new(),
            to_client_held: Backlog::new(),
            ended: AtomicBool::new(false),
            ended_changed: Notify::new(),
        }
    }
}

/// The sequence number and payload size of a stream data message of `kind`. Reads the
/// header through the codec's offset table only: a full decode checks the payload digest,
/// a SHA-256 per message that would slow the relay (and, in debug builds, enough to change
/// what a client under test sees). Frames whose header or length fields are inconsistent
/// are not counted.
fn stream_data(frame: &[u8], kind: &MessageType) -> Option<(i64, usize)> {
    let field = |r: std::ops::Range<usize>| frame.get(r);
    let name = field(layout::MESSAGE_TYPE)?;
    let name = name.split(|b| *b == 0).next().unwrap_or_default();
    if name.trim_ascii() != kind.as_str().as_bytes() {
        return None;
    }
    let be = |r| -> Option<u64> {
        let b = field(r)?;
        Some(b.iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x)))
    };
    let payload = frame.len().checked_sub(HEADER_SIZE)?;
    let consistent = be(layout::HEADER_LENGTH)? == u64::from(HEADER_LENGTH)
        && be(layout::PAYLOAD_LENGTH)? == payload as u64;
    let seq = be(layout::SEQUENCE_NUMBER)? as i64;
    (consistent && seq >= 0).then_some((seq, payload))
}

impl SessionStats {
    /// Counts a frame the client sent, if it is stream data.
    pub fn client_frame(&self, frame: &[u8]) {
        if let Some((seq, n)) = stream_data(frame, &MessageType::InputStreamData) {
            lock(&self.client).count(seq, n);
        }
    }

    /// Counts a frame the agent sent, if it is stream data.
    pub fn agent_frame(&self, frame: &[u8]) {
        if let Some((seq, n)) = stream_data(frame, &MessageType::OutputStreamData) {
            lock(&self.agent).count(seq, n);
        }
    }

    /// Whether the session has ended (its counts are final).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Returns once the session has ended.
    pub async fn wait_ended(&self) {
        loop {
            let changed = self.ended_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_ended() {
                return;
            }
            changed.await;
        }
    }

    fn set_ended(&self, ended: bool) -> bool {
        let was = self.ended.swap(ended, Ordering::AcqRel);
        self.ended_changed.notify_waiters();
        was
    }

    pub fn snapshot(&self) -> DataStats {
        let c = lock(&self.client);
        let a = lock(&self.agent);
        DataStats {
            client_messages: c.messages,
            client_distinct: c.distinct,
            client_bytes: c.bytes,
            client_dup_messages: c.dup_messages,
            client_dup_bytes: c.dup_bytes,
            agent_messages: a.messages,
            agent_distinct: a.distinct,
            agent_bytes: a.bytes,
            agent_dup_messages: a.dup_messages,
            agent_dup_bytes: a.dup_bytes,
            relay_peak_to_agent: self.to_agent_held.peak() as u64,
            relay_peak_to_client: self.to_client_held.peak() as u64,
            relay_held_to_agent: self.to_agent_held.held() as u64,
            relay_held_to_client: self.to_client_held.held() as u64,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stderr line for a session that ended.
pub fn ended_line(session_id: &str, s: &DataStats) -> String {
    format!(
        "session {session_id} ended: client messages {} (distinct {}, duplicates {} = {} bytes), \
         {} bytes; agent messages {} (distinct {}, duplicates {} = {} bytes), {} bytes",
        s.client_messages,
        s.client_distinct,
        s.client_dup_messages,
        s.client_dup_bytes,
        s.client_bytes,
        s.agent_messages,
        s.agent_distinct,
        s.agent_dup_messages,
        s.agent_dup_bytes,
        s.agent_bytes,
    )
}

/// Every session's counters, kept after the session ends (one small entry per session
/// the testbed ever served).
#[derive(Debug, Default)]
pub struct StatsBook {
    sessions: Mutex<BTreeMap<String, Arc<SessionStats>>>,
}

/// One session in [`StatsBook::all`] and in `GET /testbed/stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionEntry {
    pub session_id: String,
    pub ended: bool,
    #[serde(flatten)]
    pub stats: DataStats,
}

impl StatsBook {
    /// The counters of a session whose agent starts now (live again if an agent of the
    /// same session ran before).
    pub fn session(&self, session_id: &str) -> Arc<SessionStats> {
        let stats = self.live(session_id);
        stats.set_ended(false);
        stats
    }

    /// Marks the session ended; returns its final counts the first time only.
    pub fn end(&self, session_id: &str) -> Option<DataStats> {
        let stats = lock(&self.sessions).get(session_id)?.clone();
        (!stats.set_ended(true)).then(|| stats.snapshot())
    }

    /// The live counters of `session_id`, made now if it has not been served yet (so a
    /// test can wait on them before it connects).
    pub fn live(&self, session_id: &str) -> Arc<SessionStats> {
        lock(&self.sessions)
            .entry(session_id.to_owned())
            .or_default()
            .clone()
    }

    pub fn get(&self, session_id: &str) -> Option<DataStats> {
        lock(&self.sessions).get(session_id).map(|s| s.snapshot())
    }

    /// All sessions, by session ID.
    pub fn all(&self) -> Vec<SessionEntry> {
        lock(&self.sessions)
            .iter()
            .map(|(id, s)| SessionEntry {
                session_id: id.clone(),
                ended: s.is_ended(),
                stats: s.snapshot(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sallyport::proto::message::Message;

    fn frame(kind: MessageType, seq: i64, payload: &[u8]) -> Vec<u8> {
        Message {
            message_type: kind,
            schema_version: 1,
            created_date: 1,
            sequence_number: seq,
            flags: 0,
            message_id: uuid::Uuid::new_v4(),
            payload_type: 1,
            payload: payload.to_vec(),
        }
        .encode()
    }

    #[test]
    fn a_duplicated_message_counts_once_as_duplicate() {
        let s = SessionStats::default();
        for (seq, len) in [(0, 10), (1, 20), (2, 30), (1, 20), (3, 40)] {
            s.client_frame(&frame(MessageType::InputStreamData, seq, &vec![0; len]));
        }
        // Acks, agent output and garbage are not client stream data.
        s.client_frame(&frame(MessageType::Acknowledge, 0, b"{}"));
        s.client_frame(&frame(MessageType::OutputStreamData, 9, b"x"));
        s.client_frame(b"input_stream_data but not a frame");
        // A frame whose length fields do not add up is not counted.
        let mut short = frame(MessageType::InputStreamData, 7, b"xyz");
        short.pop();
        s.client_frame(&short);
        s.agent_frame(&frame(MessageType::OutputStreamData, 0, b"abc"));
        // No digest check (a SHA-256 per message would slow the relay): a copy with a
        // damaged digest still counts.
        let mut damaged = frame(MessageType::OutputStreamData, 0, b"abc");
        damaged[layout::PAYLOAD_DIGEST.start] ^= 0xff;
        s.agent_frame(&damaged);
        let got = s.snapshot();
        let want = DataStats {
            client_messages: 5,
            client_distinct: 4,
            client_bytes: 120,
            client_dup_messages: 1,
            client_dup_bytes: 20,
            agent_messages: 2,
            agent_distinct: 1,
            agent_bytes: 6,
            agent_dup_messages: 1,
            agent_dup_bytes: 3,
            ..DataStats::default()
        };
        assert_eq!(got, want);
        assert_eq!(
            ended_line("s-1", &got),
            "session s-1 ended: client messages 5 (distinct 4, duplicates 1 = 20 bytes), \
             120 bytes; agent messages 2 (distinct 1, duplicates 1 = 3 bytes), 6 bytes"
        );
    }

    #[test]
    fn seen_numbers_stay_bounded_and_out_of_order_is_not_duplicate() {
        let mut seen = SeqSeen::default();
        assert!(seen.insert(2));
        assert!(seen.insert(0));
        assert!(!seen.insert(2));
        assert!(seen.insert(1));
        assert_eq!((seen.below, seen.ahead.len()), (3, 0));
        for s in 0..200_000 {
            seen.insert(10 + 2 * s);
        }
        assert_eq!(seen.ahead.len(), MAX_AHEAD);
        assert!(!seen.insert(1));
    }

    #[test]
    fn the_book_reports_an_end_once() {
        let book = StatsBook::default();
        book.session("s-1")
            .client_frame(&frame(MessageType::InputStreamData, 0, b"x"));
        assert_eq!(book.get("s-1").unwrap().client_messages, 1);
        assert!(book.end("s-1").is_some());
        assert!(book.end("s-1").is_none());
        assert!(book.end("s-2").is_none());
        let all = book.all();
        assert_eq!(all.len(), 1);
        assert!(all[0].ended);
        let json = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(json["session_id"], "s-1");
        assert_eq!(json["client_messages"], 1);
    }
}
