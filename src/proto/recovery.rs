//! Loss detection and the probe timeout for the client's sent messages (RFC 9002 §6,
//! RFC 6298 §5; quinn-proto's `recovery` was the model). Sans-IO.
//!
//! The data channel acknowledges every message individually by sequence number
//! (docs/protocol.md §3.8), like a SACK for each one. A resent message keeps its sequence
//! number, so "sent later" is judged by a transmission number given to every send,
//! first or repeated:
//! - a message is **lost** once a message transmitted at least [`PACKET_THRESHOLD`]
//!   transmissions after it is acked, or once a later transmission is acked and it has
//!   waited 9/8 of the RTT since it was sent (the time threshold); only lost messages
//!   are resent, and only as the congestion window allows;
//! - the **probe timeout** covers the tail (nothing later to be acked): it runs from the
//!   last acknowledgement of new data (or from the first send into an empty flight),
//!   is `SRTT + max(4 RTTVAR, 10 ms)` but at least [`MIN_PTO`], doubles on every expiry
//!   up to [`MAX_PTO`] (RFC 6298 §5.5) and is reset by progress. Each expiry resends one
//!   message, so a silent peer gets a few probes, never the window.
//!
//! Reordering is tolerated adaptively, as RACK does (RFC 8985 §6.2): each time a message
//! declared lost is acknowledged after all (a late ack, not a loss), the packet threshold
//! doubles (up to [`MAX_PACKET_THRESHOLD`]) and the time threshold grows by 1/8 RTT (up
//! to 2 RTT), so a path that reorders stops causing spurious resends.
//!
//! RTT samples come only from messages sent once (Karn's rule); with the backoff the
//! timer grows until such samples return, so the estimate cannot get stuck below the
//! real delay.
//!
//! Bounds: the flight holds at most the channel's send window (4096 messages).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::rtt::{CLOCK_GRANULARITY, RttEstimator};

/// Later transmissions acked before a message counts as lost (RFC 9002 §6.1.1).
pub const PACKET_THRESHOLD: u64 = 3;
/// The most the packet threshold grows to on a reordering path.
pub const MAX_PACKET_THRESHOLD: u64 = 256;
/// The time threshold in eighths of an RTT: 9/8 at first, at most 16/8.
const TIME_THRESHOLD_EIGHTHS: (u32, u32) = (9, 16);
/// The probe timeout's floor. The agent's own resend check runs every 100 ms; below this,
/// scheduling noise on a busy machine would cause spurious probes.
pub const MIN_PTO: Duration = Duration::from_millis(200);
/// The probe timeout's cap after backoff: a peer silent for minutes gets a probe every
/// 20 s until the stall timeout gives up.
pub const MAX_PTO: Duration = Duration::from_secs(20);
/// Probe timeouts in a row after which the path counts as persistently congested.
pub const PERSISTENT_CONGESTION_PTOS: u32 = 3;

/// One transmission in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub seq: i64,
    pub at: Instant,
}

#[derive(Clone, Debug, Default)]
pub struct Recovery {
    next_tx: u64,
    /// Transmission number -> what was sent when, in send order.
    flight: BTreeMap<u64, Sent>,
    largest_acked: Option<u64>,
    /// When the oldest unacked transmission before the largest acked one reaches the
    /// time threshold.
    loss_time: Option<Instant>,
    pto_count: u32,
    timer_start: Option<Instant>,
    /// Reordering tolerance, grown by spurious losses (0 means the initial values).
    reordering: u32,
}

impl Recovery {
    /// Records a transmission of `seq`; returns its transmission number.
    pub fn on_sent(&mut self, now: Instant, seq: i64) -> u64 {
        if self.flight.is_empty() {
            self.timer_start = Some(now);
        }
        let tx = self.next_tx;
        self.next_tx += 1;
        self.flight.insert(tx, Sent { seq, at: now });
        tx
    }

    /// Transmissions neither acked nor declared lost.
    pub fn in_flight(&self) -> usize {
        self.flight.len()
    }

    /// Probe timeouts since the last progress.
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// Transmission `tx` was acknowledged (new data: the peer made progress).
    pub fn on_acked(&mut self, now: Instant, tx: u64) -> Option<Sent> {
        let sent = self.flight.remove(&tx)?;
        self.largest_acked = Some(self.largest_acked.map_or(tx, |l| l.max(tx)));
        self.pto_count = 0;
        self.timer_start = Some(now);
        Some(sent)
    }

    /// Takes `tx` out of the flight without an ack (resent as a probe, or after a
    /// spurious loss the peer acknowledged anyway).
    pub fn forget(&mut self, tx: u64) {
        self.flight.remove(&tx);
    }

    /// Everything in flight, oldest first, leaving the flight empty (a new websocket:
    /// what was on the old one may be gone).
    pub fn take_all(&mut self) -> Vec<Sent> {
        self.loss_time = None;
        self.pto_count = 0;
        self.timer_start = None;
        std::mem::take(&mut self.flight).into_values().collect()
    }

    /// Declares lost what the acks so far prove lost, oldest first.
    pub fn detect_lost(&mut self, now: Instant, rtt: &RttEstimator) -> Vec<Sent> {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else {
            return Vec::new();
        };
        let eighths = (TIME_THRESHOLD_EIGHTHS.0 + self.reordering).min(TIME_THRESHOLD_EIGHTHS.1);
        let threshold = (rtt.srtt().max(rtt.latest()) * eighths / 8).max(CLOCK_GRANULARITY);
        let packets = self.packet_threshold();
        let mut lost = Vec::new();
        while let Some((&tx, &sent)) = self.flight.first_key_value() {
            if tx >= largest {
                break;
            }
            if largest - tx >= packets || sent.at + threshold <= now {
                self.flight.remove(&tx);
                lost.push(sent);
            } else {
                // Later transmissions were sent later: this one decides the timer.
                self.loss_time = Some(sent.at + threshold);
                break;
            }
        }
        lost
    }

    /// Later transmissions acked before a message counts as lost, now.
    pub fn packet_threshold(&self) -> u64 {
        (PACKET_THRESHOLD << self.reordering.min(16)).min(MAX_PACKET_THRESHOLD)
    }

    /// A message declared lost was acknowledged after all: the path reorders more than
    /// the thresholds allowed; widen them. The ack is progress too.
    pub fn on_spurious_loss(&mut self, now: Instant) {
        self.reordering = self.reordering.saturating_add(1).min(16);
        self.pto_count = 0;
        self.timer_start = Some(now);
    }

    /// When the time threshold will declare something lost.
    pub fn loss_deadline(&self) -> Option<Instant> {
        self.loss_time
    }

    /// The current probe timeout, backoff included.
    pub fn pto(&self, rtt: &RttEstimator) -> Duration {
        let base = (rtt.srtt() + (rtt.rttvar() * 4).max(CLOCK_GRANULARITY)).max(MIN_PTO);
        let factor = 1u32 << self.pto_count.min(16);
        base.saturating_mul(factor).min(MAX_PTO)
    }

    /// When the probe timeout fires, if anything is in flight.
    pub fn pto_deadline(&self, rtt: &RttEstimator) -> Option<Instant> {
        if self.flight.is_empty() {
            return None;
        }
        self.timer_start.map(|start| start + self.pto(rtt))
    }

    /// The probe timeout fired: back off. True when the path now counts as persistently
    /// congested.
    pub fn on_pto(&mut self, now: Instant) -> bool {
        self.pto_count = self.pto_count.saturating_add(1);
        self.timer_start = Some(now);
        self.pto_count == PERSISTENT_CONGESTION_PTOS
    }

    /// Restarts the timer (the peer may send again: a pause was lifted, a resume).
    pub fn restart_timer(&mut self, now: Instant) {
        self.timer_start = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn rtt_of(ms: u32) -> RttEstimator {
        let mut r = RttEstimator::default();
        for _ in 0..100 {
            r.on_sample(ms * MS);
        }
        r
    }

    #[test]
    fn three_later_acks_make_a_loss() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        let txs: Vec<u64> = (0..5).map(|s| r.on_sent(t0, s)).collect();
        let rtt = rtt_of(50);
        r.on_acked(t0 + 50 * MS, txs[1]);
        r.on_acked(t0 + 50 * MS, txs[2]);
        assert!(r.detect_lost(t0 + 50 * MS, &rtt).is_empty());
        assert!(r.loss_deadline().is_some(), "the time threshold is armed");
        r.on_acked(t0 + 50 * MS, txs[3]);
        let lost = r.detect_lost(t0 + 50 * MS, &rtt);
        assert_eq!(lost.iter().map(|s| s.seq).collect::<Vec<_>>(), [0]);
        assert_eq!(r.in_flight(), 1, "seq 4 is still in flight");
    }

    #[test]
    fn the_time_threshold_catches_a_loss_with_few_later_acks() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        let a = r.on_sent(t0, 0);
        let b = r.on_sent(t0 + MS, 1);
        let rtt = rtt_of(40);
        r.on_acked(t0 + 41 * MS, b);
        assert!(r.detect_lost(t0 + 41 * MS, &rtt).is_empty());
        let deadline = r.loss_deadline().unwrap();
        assert!(
            deadline >= t0 + 45 * MS && deadline < t0 + 46 * MS,
            "9/8 of 40 ms after it was sent: {:?}",
            deadline - t0
        );
        let lost = r.detect_lost(deadline, &rtt);
        assert_eq!(lost, [Sent { seq: 0, at: t0 }]);
        assert!(r.on_acked(deadline, a).is_none(), "no longer in flight");
    }

    #[test]
    fn a_resend_is_judged_by_its_own_transmission() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        let first = r.on_sent(t0, 0);
        let later: Vec<u64> = (1..4).map(|s| r.on_sent(t0, s)).collect();
        r.forget(first);
        let again = r.on_sent(t0 + 10 * MS, 0);
        for tx in later {
            r.on_acked(t0 + 11 * MS, tx);
        }
        let rtt = rtt_of(10);
        assert!(
            r.detect_lost(t0 + 11 * MS, &rtt).is_empty(),
            "acks of older transmissions say nothing about the resend"
        );
        assert!(r.on_acked(t0 + 20 * MS, again).is_some());
    }

    #[test]
    fn spurious_losses_widen_the_thresholds() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        let rtt = rtt_of(40);
        assert_eq!(r.packet_threshold(), 3);
        r.on_spurious_loss(t0);
        r.on_spurious_loss(t0);
        assert_eq!(r.packet_threshold(), 12);
        let txs: Vec<u64> = (0..6).map(|s| r.on_sent(t0, s)).collect();
        for tx in &txs[1..] {
            r.on_acked(t0 + MS, *tx);
        }
        assert!(
            r.detect_lost(t0 + MS, &rtt).is_empty(),
            "five later acks are within a threshold of 12"
        );
        // The time threshold grew from 9/8 to 11/8 of the RTT.
        let deadline = r.loss_deadline().unwrap();
        assert!(
            deadline >= t0 + 55 * MS && deadline < t0 + 56 * MS,
            "{:?}",
            deadline - t0
        );
        for _ in 0..40 {
            r.on_spurious_loss(t0);
        }
        assert_eq!(r.packet_threshold(), MAX_PACKET_THRESHOLD);
    }

    #[test]
    fn probe_timeout_has_a_floor_doubles_and_is_capped() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        let rtt = rtt_of(1);
        r.on_sent(t0, 0);
        assert_eq!(r.pto_deadline(&rtt), Some(t0 + MIN_PTO));
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..12 {
            let next = r.pto_deadline(&rtt).unwrap();
            gaps.push(next - now);
            now = next;
            r.on_pto(now);
        }
        assert_eq!(gaps[0], MIN_PTO);
        assert_eq!(gaps[1], MIN_PTO * 2);
        assert_eq!(gaps[2], MIN_PTO * 4);
        assert_eq!(*gaps.last().unwrap(), MAX_PTO);
        // Progress resets the backoff and restarts the timer from the ack.
        let tx = r.on_sent(now, 1);
        r.on_acked(now + MS, tx);
        assert_eq!(r.pto_deadline(&rtt), Some(now + MS + MIN_PTO));
    }

    #[test]
    fn persistent_congestion_after_three_probe_timeouts() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        r.on_sent(t0, 0);
        assert!(!r.on_pto(t0));
        assert!(!r.on_pto(t0));
        assert!(r.on_pto(t0));
        assert!(!r.on_pto(t0), "reported once");
    }
}
