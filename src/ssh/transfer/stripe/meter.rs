//! What the scheduler learns from finished pieces: the lanes' rate and what starting a
//! piece costs, from which follow the smallest piece worth taking over and whether one
//! more lane would still pay for its opening.

use std::time::Duration;

use super::Piece;
use super::span::{ALIGN, Sample, Span};

/// The smallest piece taken over before anything is measured.
pub const DEFAULT_MIN_PIECE: u64 = 256 * 1024;

/// Running estimates (each new sample weighs half).
#[derive(Debug, Default, Clone)]
pub struct Meter {
    /// Bytes a second on one lane.
    pub rate: Option<f64>,
    /// From handing a piece over to its first bytes, less their transfer time.
    pub overhead: Option<Duration>,
    /// How long the last opening of a lane took.
    pub open: Option<Duration>,
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

    /// Whether what is left in flight would keep one more lane busy for longer than
    /// opening it takes (yes until both are measured).
    pub fn worth_opening(&self, active: &[(Piece, std::sync::Arc<Span>)]) -> bool {
        let (Some(rate), Some(open)) = (self.rate, self.open) else {
            return true;
        };
        let left = (active.iter()).fold(0u64, |sum, (_, s)| sum.saturating_add(s.unclaimed()));
        let lanes = active.len().max(1) as f64 + 1.0;
        left as f64 / (lanes * rate) > open.as_secs_f64()
    }
}
