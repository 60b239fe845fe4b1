//! What the scheduler learns from finished pieces: the lanes' rate and what starting a
//! piece costs, from which follow the smallest piece worth taking over and whether one
//! more lane would still pay for its opening.
//!
//! A lane is opened only when the work left, at the rate measured so far, would keep the
//! lanes there are busy for longer than opening one more takes: a fast lane (an upload a
//! local CPU can keep up with) finishes alone what a new session would arrive too late to
//! share, and its set-up would only take CPU from it, while slow lanes (downloads paced by
//! the agent) open all they may at once, as soon as the first has measured.

use std::time::Duration;

use super::span::{ALIGN, Sample};

/// The smallest piece taken over before anything is measured.
pub const DEFAULT_MIN_PIECE: u64 = 256 * 1024;

/// Running estimates (each new sample weighs half).
#[derive(Debug, Default, Clone)]
pub struct Meter {
    /// Bytes a second on one lane.
    pub rate: Option<f64>,
    /// From handing a piece over to its first bytes, less their transfer time.
    pub overhead: Option<Duration>,
    /// How long the last opening of a lane took (before any: the caller's estimate).
    pub open: Option<Duration>,
    /// From handing a piece over to its end, for pieces too small to give a rate.
    pub piece: Option<Duration>,
    /// The most one lane can move a second, known before anything is measured (a
    /// download through Session Manager: the agent's pacing, docs/protocol.md §6.6).
    pub ceiling: Option<f64>,
}

/// The work not yet handed out, as [`Meter::worth_opening`] weighs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Left {
    /// Bytes no lane has claimed: queued pieces and the unclaimed rest of pieces in flight.
    pub bytes: u64,
    /// Pieces waiting in the queue (each costs a start).
    pub queued: usize,
    /// Pieces in flight.
    pub active: usize,
}

fn blend(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| (o + new) / 2.0)
}

impl Meter {
    pub fn add(&mut self, s: Sample) {
        if !s.rate.is_finite() || s.rate <= 0.0 {
            return;
        }
        self.rate = Some(blend(self.rate, s.rate));
        let o = blend(
            self.overhead.map(|d| d.as_secs_f64()),
            s.overhead.as_secs_f64(),
        );
        self.overhead = Duration::try_from_secs_f64(o).ok();
    }

    /// Bytes one lane moves in the time a piece takes to start.
    pub fn overhead_bytes(&self) -> u64 {
        match (self.rate, self.overhead) {
            (Some(r), Some(o)) => {
                let b = r * o.as_secs_f64();
                if b.is_finite() { b as u64 } else { u64::MAX }
            }
            _ => 0,
        }
    }

    /// The smallest piece worth taking over: one that takes a lane longer to move than to
    /// start, and at least one [`ALIGN`]; [`DEFAULT_MIN_PIECE`] until measured.
    pub fn min_piece(&self) -> u64 {
        if self.rate.is_none() {
            return DEFAULT_MIN_PIECE;
        }
        self.overhead_bytes()
            .max(ALIGN)
            .div_ceil(ALIGN)
            .saturating_mul(ALIGN)
    }

    /// A piece finished `took` after it was handed over.
    pub fn add_piece(&mut self, took: Duration) {
        let t = blend(self.piece.map(|d| d.as_secs_f64()), took.as_secs_f64());
        self.piece = Duration::try_from_secs_f64(t).ok();
    }

    /// Seconds `lanes` lanes would take over `left`: from one lane's rate (measured on
    /// finished pieces, else `live` on pieces in flight) plus each queued piece's start,
    /// else from finished pieces' times, else at the [`ceiling`](Meter::ceiling) (the
    /// least it can take); `None` before anything is measured or known.
    pub fn time_left(&self, left: &Left, live: Option<f64>, lanes: usize) -> Option<f64> {
        let lanes = lanes.max(1) as f64;
        if let Some(rate) = self.rate.or(live).filter(|r| r.is_finite() && *r > 0.0) {
            let starts = self.overhead.map_or(0.0, |o| o.as_secs_f64()) * left.queued as f64;
            return Some((left.bytes as f64 / rate + starts) / lanes);
        }
        let pieces = (left.queued + left.active) as f64;
        if let Some(piece) = self.piece {
            return Some(piece.as_secs_f64() * pieces / lanes);
        }
        let ceiling = self.ceiling.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(left.bytes as f64 / ceiling / lanes)
    }

    /// Whether one more lane pays for its opening: the `lanes` there are (open or
    /// opening) would still be busy with `left` when it opens. Before an opening's cost is
    /// known: yes. Before anything is measured: not yet (the caller looks again).
    pub fn worth_opening(&self, left: &Left, live: Option<f64>, lanes: usize) -> bool {
        let Some(open) = self.open else {
            return true;
        };
        self.time_left(left, live, lanes)
            .is_some_and(|t| t >= open.as_secs_f64())
    }
}
