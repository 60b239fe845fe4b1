//! Test-only: a lossy, duplicating, reordering, delaying link in virtual time, and a tiny
//! deterministic PRNG. Each impairment is one field (quinn's `tests/util.rs` idea). A link
//! can also be a bottleneck: a serialisation rate and a bounded queue in front of it
//! (tail drop when full), and a silent spell during which it drops everything.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// xorshift64*: deterministic and good enough to pick which frames to drop.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One direction of a network path.
pub struct Link {
    pub delay: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_spread` extra delay.
    pub reorder: f64,
    pub reorder_spread: Duration,
    /// Bottleneck: bytes per second the link serialises (whole frames), if limited.
    pub rate: Option<u64>,
    /// Bottleneck: frames waiting for the wire at most; beyond it, tail drop.
    pub queue_limit: usize,
    /// Everything sent in this span of time is dropped.
    pub silent: Option<(Instant, Instant)>,
    rng: Rng,
    in_flight: Vec<(Instant, u64, Bytes)>,
    /// Departure times of frames still waiting for the wire (bottleneck only).
    queue: VecDeque<Instant>,
    order: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Frames dropped because the bottleneck's queue was full.
    pub overflowed: u64,
    /// When frames were sent while silent.
    pub silenced: Vec<Instant>,
    /// The most frames the bottleneck's queue ever held.
    pub max_queued: usize,
}

impl Link {
    pub fn new(seed: u64, delay: Duration) -> Link {
        Link {
            delay,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_spread: delay * 3,
            rate: None,
            queue_limit: usize::MAX,
            silent: None,
            rng: Rng::new(seed),
            in_flight: Vec::new(),
            queue: VecDeque::new(),
            order: 0,
            delivered: 0,
            dropped: 0,
            overflowed: 0,
            silenced: Vec::new(),
            max_queued: 0,
        }
    }

    /// A link that serialises `rate` bytes per second behind a queue of `queue_limit`
    /// frames, then adds `delay`.
    pub fn bottleneck(seed: u64, delay: Duration, rate: u64, queue_limit: usize) -> Link {
        Link {
            rate: Some(rate),
            queue_limit,
            ..Link::new(seed, delay)
        }
    }

    /// When the last queued frame leaves for the wire (`now` when nothing waits).
    fn wire_free(&mut self, now: Instant) -> Instant {
        while self.queue.front().is_some_and(|t| *t <= now) {
            self.queue.pop_front();
        }
        self.queue.back().copied().unwrap_or(now).max(now)
    }

    pub fn impaired(seed: u64, delay: Duration, loss: f64, duplicate: f64, reorder: f64) -> Link {
        Link {
            loss,
            duplicate,
            reorder,
            ..Link::new(seed, delay)
        }
    }

    pub fn send(&mut self, now: Instant, frame: Bytes) {
        if self
            .silent
            .is_some_and(|(from, to)| now >= from && now < to)
        {
            self.silenced.push(now);
            return;
        }
        if self.rng.chance(self.loss) {
            self.dropped += 1;
            return;
        }
        let mut depart = now;
        if let Some(rate) = self.rate {
            let free = self.wire_free(now);
            if self.queue.len() >= self.queue_limit {
                self.overflowed += 1;
                return;
            }
            let serialise = Duration::from_nanos(frame.len() as u64 * 1_000_000_000 / rate.max(1));
            depart = free + serialise;
            self.queue.push_back(depart);
            self.max_queued = self.max_queued.max(self.queue.len());
        }
        let copies = if self.rng.chance(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = depart + self.delay;
            if self.rng.chance(self.reorder) {
                let spread = self.reorder_spread.as_micros().max(1) as u64;
                at += Duration::from_micros(self.rng.below(spread));
            }
            self.order += 1;
            self.in_flight.push((at, self.order, frame.clone()));
        }
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(t, _, _)| *t).min()
    }

    /// Frames due by `now`, in arrival order.
    pub fn take_due(&mut self, now: Instant) -> Vec<Bytes> {
        let mut due: Vec<_> = Vec::new();
        let mut keep = Vec::with_capacity(self.in_flight.len());
        for item in self.in_flight.drain(..) {
            if item.0 <= now {
                due.push(item);
            } else {
                keep.push(item);
            }
        }
        self.in_flight = keep;
        due.sort_by_key(|(t, o, _)| (*t, *o));
        self.delivered += due.len() as u64;
        due.into_iter().map(|(_, _, f)| f).collect()
    }
}
