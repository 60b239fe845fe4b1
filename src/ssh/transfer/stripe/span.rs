//! The part of a piece still to be handed out, shared by the lane moving it and the
//! scheduler, which may take its back end away for an idle lane (work stealing).
//!
//! A lane [`claim`](Span::claim)s a request's worth at a time, just before it sends the
//! request, and reports what arrived with [`moved`](Span::moved). The scheduler only ever
//! takes bytes no lane has claimed yet, so every byte is sent for exactly once (a dead
//! lane's piece is redone from its start up to the span's end, nothing beyond it).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Piece;

/// Stolen ranges start on a multiple of this (one SFTP request).
pub const ALIGN: u64 = 64 * 1024;

#[derive(Debug)]
struct State {
    /// The piece's first byte.
    start: u64,
    /// First byte not yet claimed.
    next: u64,
    /// End of the range (shrinks when the back is stolen).
    end: u64,
    /// Bytes that arrived (or were written) so far.
    done: u64,
    /// When the piece was handed to its lane.
    started: Instant,
    /// When the first bytes arrived, and how many.
    first: Option<(Instant, u64)>,
    /// When the last bytes arrived.
    last: Option<Instant>,
}

/// The unclaimed rest of one piece.
#[derive(Debug)]
pub struct Span {
    state: Mutex<State>,
}

/// What a finished span tells about the lanes: their rate and the cost of starting a piece.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bytes a second, once data flowed.
    pub rate: f64,
    /// From handing the piece over to its first bytes, less their own transfer time.
    pub overhead: Duration,
}

impl Span {
    /// A span covering all of `piece`, started now.
    pub fn new(piece: &Piece) -> Span {
        Span {
            state: Mutex::new(State {
                start: piece.offset,
                next: piece.offset,
                end: piece.offset.saturating_add(piece.len),
                done: 0,
                started: Instant::now(),
                first: None,
                last: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next range of at most `most` bytes to send for: (offset, length); `None` when
    /// everything left is claimed.
    pub fn claim(&self, most: u64) -> Option<(u64, u64)> {
        let mut s = self.lock();
        if s.next >= s.end || most == 0 {
            return None;
        }
        let at = s.next;
        let len = most.min(s.end - at);
        s.next = at + len;
        Some((at, len))
    }

    /// Claims everything left (a lane that cannot stop early); returns the range's end.
    pub fn claim_all(&self) -> u64 {
        let mut s = self.lock();
        s.next = s.end;
        s.end
    }

    /// `n` bytes arrived (or were written).
    pub fn moved(&self, n: u64) {
        let mut s = self.lock();
        let now = Instant::now();
        s.done = s.done.saturating_add(n);
        if s.first.is_none() {
            s.first = Some((now, n));
        }
        s.last = Some(now);
    }

    /// The current end of the range.
    pub fn end(&self) -> u64 {
        self.lock().end
    }

    /// The lane has begun claiming (and claims piecemeal, or there would be nothing left).
    pub fn started(&self) -> bool {
        let s = self.lock();
        s.next > s.start
    }

    /// Bytes not yet claimed.
    pub fn unclaimed(&self) -> u64 {
        let s = self.lock();
        s.end.saturating_sub(s.next)
    }

    /// Takes the back of the unclaimed rest for another lane that needs `overhead_bytes`
    /// worth of time before its first byte arrives: the cut is where both lanes would
    /// finish together, on an [`ALIGN`] boundary. `None` when the part taken would be
    /// smaller than `min` (not worth a new piece's start).
    pub fn steal(&self, min: u64, overhead_bytes: u64) -> Option<(u64, u64)> {
        let mut s = self.lock();
        if s.next >= s.end {
            return None;
        }
        // The victim has (cut - start - done) still to receive, the thief needs
        // (overhead + end - cut): both finish together at the middle of the two. A victim
        // that has received nothing yet has its own start ahead of it too.
        let reached = s.start.saturating_add(s.done);
        let ahead = if s.first.is_none() { 0 } else { overhead_bytes };
        let want = reached.saturating_add(s.end).saturating_add(ahead) / 2;
        let cut = want.max(s.next).div_ceil(ALIGN).saturating_mul(ALIGN);
        if cut >= s.end || s.end - cut < min.max(1) {
            return None;
        }
        let taken = (cut, s.end - cut);
        s.end = cut;
        Some(taken)
    }

    /// The most this lane's rate can be, as seen now (bytes a second): what arrived since
    /// the first answer's time, counting that answer as if the next were arriving now, and
    /// no more than the rate measured between answers. Falls while answers are slow to
    /// come, so a slow lane is known as such before its second answer. `None` before the
    /// first answer, or just at it.
    pub fn rate_bound(&self) -> Option<f64> {
        let s = self.lock();
        let (first_at, _) = s.first?;
        let since = first_at.elapsed().as_secs_f64();
        let bound = s.done as f64 / since;
        if !bound.is_finite() || since <= 0.0 {
            return None;
        }
        drop(s);
        Some(self.sample().map_or(bound, |m| m.rate.min(bound)))
    }

    /// How long ago the piece was handed to its lane.
    pub fn age(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// Rate and start-up cost seen on this span (when enough arrived to tell).
    pub fn sample(&self) -> Option<Sample> {
        let s = self.lock();
        let (first_at, first_len) = s.first?;
        let last = s.last?;
        let span = last.checked_duration_since(first_at)?;
        if span.is_zero() || s.done <= first_len {
            return None;
        }
        let rate = (s.done - first_len) as f64 / span.as_secs_f64();
        let to_first = first_at.checked_duration_since(s.started)?;
        let own = Duration::try_from_secs_f64(first_len as f64 / rate).ok()?;
        Some(Sample {
            rate,
            overhead: to_first.saturating_sub(own),
        })
    }
}
