//! How many requests a lane keeps in flight: enough to cover its bandwidth-delay product,
//! no more, because every byte requested is a byte no other lane can take over (see
//! [`Span::steal`](super::Span::steal)). Measured per lane: its rate while requests were
//! queued, and the quickest answer it got (one round trip plus one request's transfer).

use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight before anything is measured.
const START: usize = 4;

/// A lane's in-flight budget.
#[derive(Debug, Clone)]
pub struct Window {
    /// Bytes per request.
    chunk: u64,
    /// Most requests in flight.
    most: usize,
    /// Quickest answer seen (request sent to its answer in).
    quickest: Option<Duration>,
    /// Bytes a second, measured over the current piece.
    rate: Option<f64>,
    /// First answer of the current piece, and the bytes since.
    since: Option<(Instant, u64)>,
}

impl Window {
    pub fn new(chunk: u64, most: usize) -> Window {
        Window {
            chunk: chunk.max(1),
            most: most.max(2),
            quickest: None,
            rate: None,
            since: None,
        }
    }

    /// A new piece starts (its first answer waits for a file to open: not a rate).
    pub fn restart(&mut self) {
        self.since = None;
    }

    /// An answer of `n` bytes came in, to a request sent at `sent`.
    pub fn answered(&mut self, sent: Instant, n: u64) {
        let now = Instant::now();
        let took = now.saturating_duration_since(sent);
        self.quickest = Some(self.quickest.map_or(took, |q| q.min(took)));
        match &mut self.since {
            None => self.since = Some((now, 0)),
            Some((at, bytes)) => {
                *bytes = bytes.saturating_add(n);
                let secs = now.saturating_duration_since(*at).as_secs_f64();
                if secs > 0.0 && *bytes >= 2 * self.chunk {
                    self.rate = Some(*bytes as f64 / secs);
                }
            }
        }
    }

    /// Requests to keep in flight: one request more than twice the bytes a round trip
    /// carries at the measured rate, between 2 and the most.
    pub fn requests(&self) -> usize {
        let (Some(rate), Some(quickest)) = (self.rate, self.quickest) else {
            return START.min(self.most);
        };
        let own = Duration::try_from_secs_f64(self.chunk as f64 / rate).unwrap_or(Duration::MAX);
        let round_trip = quickest.saturating_sub(own).as_secs_f64();
        let bytes = self.chunk as f64 + 2.0 * rate * round_trip;
        let n = (bytes / self.chunk as f64).ceil();
        if n.is_finite() {
            (n as usize).clamp(2, self.most)
        } else {
            self.most
        }
    }
}
