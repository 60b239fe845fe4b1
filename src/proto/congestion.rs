//! The client's congestion control, counted in messages (one message carries at most
//! 1 KiB). Sans-IO: the channel reports acks, losses and probe timeouts with `now`.
//!
//! The channel talks to a [`Controller`] (quinn-proto's `congestion::Controller` shape:
//! events in, a window out), so another algorithm can be plugged in with
//! [`Channel::with_controller`](super::channel::Channel::with_controller) and run through
//! the same bottleneck simulations. [`Congestion`], below, is the default.
//!
//! Why a window at all: the data channel has no flow control of its own (docs/protocol.md
//! §6.4). The real agent runs its handlers on the websocket reader, so when its write to
//! the instance-side socket blocks it stops reading and acknowledging, and the Message
//! Gateway's buffering in between is unknown (§13.6). A sender that keeps its whole 4 MiB
//! send window in the air fills whatever queue sits in the path, its RTT estimate falls
//! behind, and resends pile on top. This window makes the sender follow the rate at which
//! acknowledgements actually come back.
//!
//! The model is NewReno's AIMD (RFC 9002 §7, RFC 5681) with two changes:
//! - the multiplicative decrease is CUBIC's β = 0.7 (RFC 9438 §4.6), so a single loss on
//!   a long path costs less;
//! - a delay signal, judged once per round trip on the round's *smallest* RTT sample
//!   (a queue delays every message; scheduling noise or a late ack only some, as LEDBAT
//!   and BBR filter too): when it exceeds the path's minimum RTT by more than the allowed
//!   queueing delay (the larger of that minimum and [`QUEUE_DELAY_TARGET`]), the window is
//!   treated as congested. This is what keeps a bufferbloated path (a relay that buffers
//!   instead of dropping, an agent that stops reading) from being filled: the sender
//!   keeps about two path-BDPs in flight at most (cwnd gain 2, as BBR's), rather than
//!   waiting for a loss that may never come. Slow start exits on the same signal
//!   (HyStart's idea, RFC 9406). While the last round saw less than a quarter of the
//!   allowed queueing delay, congestion avoidance grows the window by one per two acks
//!   instead of one per round trip, so a long fat path refills quickly after a reduction.
//!   (Undoing a reduction when its loss proves spurious, as Linux does, was tried and
//!   dropped: on a noisy, deep path it restored windows into a growing queue, and
//!   recovery's adaptive reordering thresholds already stop the spurious losses.)
//!
//! Resends are counted against the window like new messages: the channel only transmits
//! while `in_flight < window()`, whatever it transmits. Probe timeouts may send one
//! message beyond it (RFC 9002 §6.2.4).
//!
//! Bounds: the window is between [`MIN_WINDOW`] and the channel's send window (4096
//! messages for the client).

use std::time::{Duration, Instant};

/// Messages in flight when a session starts (and after a reconnect): 32 KiB.
pub const INITIAL_WINDOW: usize = 32;
/// Never less than this in flight: a window of one would stall on delayed acks.
pub const MIN_WINDOW: usize = 4;
/// Queueing delay always tolerated above the minimum RTT before the delay signal fires.
/// It keeps scheduling noise on a busy machine (a few ms) from reading as congestion.
pub const QUEUE_DELAY_TARGET: Duration = Duration::from_millis(25);
/// The minimum RTT is forgotten after this long, so a path whose base delay grew (a new
/// route after a resume) is not judged against an old, shorter one.
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// Window after a loss: β = 0.7 (numerator / denominator).
const LOSS_BETA: (usize, usize) = (7, 10);
/// Window after a delay signal: a gentler 0.85, since nothing was lost.
const DELAY_BETA: (usize, usize) = (17, 20);

/// What the channel asks of a congestion controller. Every call passes `now`; none does
/// IO. No pacing hook: the default controller does not pace (the agent's own pacing,
/// docs/protocol.md §6.6, is on the other end), so the channel sends whenever the window
/// has room.
pub trait Controller: Send {
    /// A message first sent at `sent` was acknowledged; `sample` is its RTT when it was
    /// sent only once (Karn's rule).
    fn on_ack(&mut self, now: Instant, sent: Instant, sample: Option<Duration>);

    /// A message last sent at `sent` was declared lost by loss detection.
    fn on_loss(&mut self, now: Instant, sent: Instant);

    /// Probe timeouts in a row: the path may be gone (RFC 9002 §7.6).
    fn on_persistent_congestion(&mut self, now: Instant);

    /// A new websocket: a new path, maybe through another gateway host.
    fn on_reconnect(&mut self, now: Instant);

    /// How many messages may be in flight (resends included).
    fn window(&self) -> usize;

    /// The path's minimum RTT, if the controller tracks one; the channel uses it to tell
    /// a spurious loss from a real one (and falls back to the smoothed RTT without it).
    fn min_rtt(&self) -> Option<Duration> {
        None
    }
}

/// The default controller: AIMD with a delay signal (see the module doc).
#[derive(Clone, Debug)]
pub struct Congestion {
    window: usize,
    ssthresh: usize,
    max: usize,
    /// Acks counted towards the next +1 in congestion avoidance.
    acked_in_avoidance: usize,
    /// Messages sent before this moment cannot start another reduction (one per RTT).
    recovery_start: Option<Instant>,
    min_rtt: WindowedMin,
    /// The current round of RTT samples: when it started and its smallest sample.
    round: Option<(Instant, Duration)>,
    /// The last round saw little queueing delay: grow faster in congestion avoidance.
    headroom: bool,
    /// Counters for diagnostics and tests.
    pub loss_events: u64,
    pub delay_events: u64,
}

impl Congestion {
    /// `max` is the channel's send window: the congestion window never exceeds it.
    pub fn new(max: usize) -> Congestion {
        let max = max.max(MIN_WINDOW);
        Congestion {
            window: INITIAL_WINDOW.min(max),
            ssthresh: usize::MAX,
            max,
            acked_in_avoidance: 0,
            recovery_start: None,
            min_rtt: WindowedMin::default(),
            round: None,
            headroom: false,
            loss_events: 0,
            delay_events: 0,
        }
    }

    pub fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }

    fn reduce(&mut self, now: Instant, (num, den): (usize, usize)) {
        self.window = (self.window * num / den).clamp(MIN_WINDOW, self.max);
        self.ssthresh = self.window;
        self.acked_in_avoidance = 0;
        self.recovery_start = Some(now);
    }

    /// Collects a round trip's samples; at its end, judges the queueing delay by the
    /// round's smallest sample.
    fn on_rtt_sample(&mut self, now: Instant, sent: Instant, rtt: Duration) {
        let (start, least) = match self.round {
            Some((start, least)) => (start, least.min(rtt)),
            None => (now, rtt),
        };
        if now < start + least {
            self.round = Some((start, least));
            return;
        }
        self.round = Some((now, rtt));
        let Some(base) = self.min_rtt.get() else {
            return;
        };
        let allowed = base.max(QUEUE_DELAY_TARGET);
        let queued = least.saturating_sub(base);
        self.headroom = queued < allowed / 4;
        if queued > allowed && !self.in_recovery(sent) {
            self.delay_events += 1;
            self.reduce(now, DELAY_BETA);
        }
    }
}

impl Controller for Congestion {
    fn on_ack(&mut self, now: Instant, sent: Instant, sample: Option<Duration>) {
        if let Some(rtt) = sample {
            self.min_rtt.update(now, rtt);
            self.on_rtt_sample(now, sent, rtt);
        }
        if self.in_recovery(sent) {
            return;
        }
        if self.in_slow_start() {
            self.window += 1;
        } else {
            let acks_per_step = if self.headroom { 2 } else { self.window };
            self.acked_in_avoidance += 1;
            if self.acked_in_avoidance >= acks_per_step {
                self.acked_in_avoidance = 0;
                self.window += 1;
            }
        }
        self.window = self.window.min(self.max);
    }

    fn on_loss(&mut self, now: Instant, sent: Instant) {
        if self.in_recovery(sent) {
            return;
        }
        self.loss_events += 1;
        self.reduce(now, LOSS_BETA);
    }

    /// Starts again from the minimum (RFC 9002 §7.6, persistent congestion).
    fn on_persistent_congestion(&mut self, now: Instant) {
        self.ssthresh = (self.window * LOSS_BETA.0 / LOSS_BETA.1).max(MIN_WINDOW);
        self.window = MIN_WINDOW;
        self.acked_in_avoidance = 0;
        self.recovery_start = Some(now);
    }

    /// Starts slowly again, but remembers how far the old path went.
    fn on_reconnect(&mut self, now: Instant) {
        self.ssthresh = self.window.max(INITIAL_WINDOW);
        self.window = INITIAL_WINDOW.min(self.max);
        self.acked_in_avoidance = 0;
        self.recovery_start = Some(now);
        self.min_rtt = WindowedMin::default();
        self.round = None;
    }

    fn window(&self) -> usize {
        self.window
    }

    /// The smallest RTT seen in the last [`MIN_RTT_WINDOW`] or so.
    fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }
}

/// The minimum of the samples of the current and the previous [`MIN_RTT_WINDOW`].
#[derive(Clone, Debug, Default)]
struct WindowedMin {
    current: Option<(Instant, Duration)>,
    previous: Option<Duration>,
}

impl WindowedMin {
    fn update(&mut self, now: Instant, sample: Duration) {
        match self.current {
            Some((started, min)) if now.saturating_duration_since(started) < MIN_RTT_WINDOW => {
                self.current = Some((started, min.min(sample)));
            }
            Some((_, min)) => {
                self.previous = Some(min);
                self.current = Some((now, sample));
            }
            None => self.current = Some((now, sample)),
        }
    }

    fn get(&self) -> Option<Duration> {
        match (self.current.map(|(_, m)| m), self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slow_start_grows_one_per_ack_then_avoidance_one_per_window() {
        let t0 = Instant::now();
        let mut c = Congestion::new(4096);
        assert_eq!(c.window(), INITIAL_WINDOW);
        for _ in 0..32 {
            c.on_ack(t0, t0, Some(10 * MS));
        }
        assert_eq!(c.window(), 64, "doubles in one round of acks");
        c.on_loss(t0 + 20 * MS, t0 + 15 * MS);
        assert_eq!(c.window(), 44, "0.7 after a loss");
        assert!(!c.in_slow_start());
        // Acks of messages sent before the reduction do not grow the window.
        c.on_ack(t0 + 21 * MS, t0 + 10 * MS, None);
        assert_eq!(c.window(), 44);
        for _ in 0..44 {
            c.on_ack(t0 + 40 * MS, t0 + 30 * MS, None);
        }
        assert_eq!(c.window(), 45, "+1 per window of acks");
        // After a round trip with hardly any queueing delay: +1 per two acks.
        for i in 0..50u32 {
            c.on_ack(t0 + (41 + i) * MS, t0 + (31 + i) * MS, Some(10 * MS));
        }
        assert!(c.window() >= 45 + 20, "{}", c.window());
    }

    #[test]
    fn one_reduction_per_round_trip() {
        let t0 = Instant::now();
        let mut c = Congestion::new(4096);
        c.on_loss(t0 + 10 * MS, t0);
        c.on_loss(t0 + 11 * MS, t0 + MS);
        assert_eq!(c.window(), 22);
        assert_eq!(c.loss_events, 1);
        // A message sent after the first reduction began counts again.
        c.on_loss(t0 + 30 * MS, t0 + 12 * MS);
        assert_eq!(c.window(), 15);
    }

    #[test]
    fn growing_queueing_delay_shrinks_the_window_without_any_loss() {
        let t0 = Instant::now();
        let mut c = Congestion::new(4096);
        let mut now = t0;
        for _ in 0..200 {
            now += MS / 10;
            c.on_ack(now, now, Some(2 * MS));
        }
        let grown = c.window();
        assert!(grown > 200, "{grown}");
        // A whole round of samples 40 ms: queueing beyond max(min RTT, 25 ms).
        for _ in 0..50 {
            now += 2 * MS;
            c.on_ack(now, now, Some(40 * MS));
        }
        // 100 ms of 40 ms rounds: two whole rounds, two reductions.
        assert_eq!(c.delay_events, 2, "one reduction per round");
        assert!(c.window() < grown, "{} of {grown}", c.window());
        assert_eq!(c.loss_events, 0);
    }

    #[test]
    fn a_few_late_samples_are_noise_not_queueing() {
        let t0 = Instant::now();
        let mut c = Congestion::new(4096);
        let mut now = t0;
        for i in 0..2000u32 {
            now += MS / 10;
            // Every tenth ack is late by 80 ms (a busy scheduler), the rest are not.
            let rtt = if i % 10 == 0 { 82 * MS } else { 2 * MS };
            c.on_ack(now, now, Some(rtt));
        }
        assert_eq!(c.delay_events, 0);
        assert!(c.window() > 1000, "{}", c.window());
    }

    #[test]
    fn never_below_the_minimum_nor_above_the_send_window() {
        let t0 = Instant::now();
        let mut c = Congestion::new(40);
        for i in 0..100u32 {
            c.on_ack(t0, t0, Some(MS));
            assert!(c.window() <= 40, "round {i}");
        }
        for i in 0..50u32 {
            c.on_loss(t0 + (i + 1) * 100 * MS, t0 + (i + 1) * 100 * MS);
        }
        assert_eq!(c.window(), MIN_WINDOW);
        c.on_persistent_congestion(t0);
        assert_eq!(c.window(), MIN_WINDOW);
    }

    #[test]
    fn the_minimum_rtt_is_forgotten_after_two_windows() {
        let t0 = Instant::now();
        let mut c = Congestion::new(4096);
        c.on_ack(t0, t0, Some(MS));
        assert_eq!(c.min_rtt(), Some(MS));
        let later = t0 + MIN_RTT_WINDOW;
        c.on_ack(later, later, Some(50 * MS));
        assert_eq!(c.min_rtt(), Some(MS), "still within the previous window");
        let much_later = later + MIN_RTT_WINDOW;
        c.on_ack(much_later, much_later, Some(50 * MS));
        assert_eq!(c.min_rtt(), Some(50 * MS));
    }
}
