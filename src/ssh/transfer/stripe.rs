//! The striping scheduler: pieces of files (byte ranges) spread over up to N lanes (one
//! SFTP channel each, on its own session), opened lazily. It knows nothing about SSH:
//! a [`Lane`] moves one piece, an [`Opener`] makes one more lane.
//!
//! * Lazy: a new lane is opened only while pieces wait that no open (or opening) lane
//!   will take: a file of one piece never opens a second session.
//! * A lane whose piece fails with [`PieceError::Lane`] (its connection died) is dropped
//!   and the piece goes back to the front of the queue for another lane; when no lane is
//!   left, new ones are opened, at most `reopen_budget` times over the whole run.
//! * A piece that fails with [`PieceError::File`] fails its file: the file's other
//!   pieces are dropped, the others go on.
//! * An opener failure while lanes exist (StartSession refused or throttled) is not an
//!   error: the run continues with the lanes it has (saying so once through `notice`) and
//!   tries again after [`GROWTH_BACKOFF`], doubling, [`GROWTH_ATTEMPTS`] times in all.
//! * Except a refused host key ([`SshError::is_host_key`]): a security event, not a lack
//!   of capacity. It ends the run at once, whatever lanes exist.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tokio::time::Instant;

use crate::ssh::SshError;

mod meter;
mod span;
mod window;
use meter::{Left, Meter};
pub use span::{ALIGN, Span};
pub use window::Window;

/// Smallest and largest piece of a large file.
pub const MIN_PIECE: u64 = 1024 * 1024;
pub const MAX_PIECE: u64 = 8 * 1024 * 1024;

/// After a refused opening, wait this long before the next (doubling each time).
pub const GROWTH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a run looks whether the pieces in flight are worth one more lane.
pub const GROWTH_LOOK: Duration = Duration::from_millis(50);
/// Refused openings after which a run stops trying to grow.
pub const GROWTH_ATTEMPTS: u32 = 3;

/// One byte range of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the file in the caller's list.
    pub file: usize,
    pub offset: u64,
    pub len: u64,
    /// The file's only piece (the lane may create and truncate it in one go).
    pub whole: bool,
}

/// Why a piece was not moved.
#[derive(Debug)]
pub enum PieceError {
    /// The lane is gone (its connection died): redo the piece elsewhere.
    Lane(SshError),
    /// The file cannot be copied (refused, vanished, local disk error).
    File(SshError),
}

/// Moves pieces.
pub trait Lane {
    /// Moves all of `piece`.
    fn run(&mut self, piece: Piece) -> impl Future<Output = Result<(), PieceError>>;

    /// Moves what `span` hands out of `piece`, [`Span::claim`]ing each request just
    /// before sending it and reporting arrivals with [`Span::moved`], so that an idle lane
    /// can take over the back of the piece. A lane that cannot stop early keeps this
    /// default: it claims the rest at once (nothing of it can be taken).
    fn run_span(
        &mut self,
        piece: Piece,
        span: &Span,
    ) -> impl Future<Output = Result<(), PieceError>> {
        let end = span.claim_all();
        self.run(Piece {
            len: end.saturating_sub(piece.offset),
            ..piece
        })
    }
}

/// Makes lanes.
pub trait Opener {
    type Lane: Lane;
    fn open(&self) -> impl Future<Output = Result<Self::Lane, SshError>>;
}

/// The piece length for a file of `size` bytes copied over up to `lanes` lanes: about two
/// pieces per lane, between [`MIN_PIECE`] and [`MAX_PIECE`], a multiple of 64 KiB.
pub fn piece_len(size: u64, lanes: usize) -> u64 {
    let want = size.div_ceil(2 * lanes.max(1) as u64);
    let clamped = want.clamp(MIN_PIECE, MAX_PIECE);
    clamped.div_ceil(64 * 1024) * 64 * 1024
}

/// Most pieces one file is split into, whatever size it claims: a larger file gets longer
/// pieces. Sizes come from the peer (a download's SFTP attributes), so what [`split`]
/// holds must not follow them.
pub const MAX_PIECES_PER_FILE: u64 = 4096;

/// Most pieces one [`split`] returns (about 40 bytes each: 80 MiB). When the files would
/// need more, each file's cap is halved until they fit; every file keeps at least one
/// piece, so callers plan fewer files than this (a striped copy plans at most a million).
pub const MAX_PIECES: usize = 1 << 21;

/// The piece length for a file of `size` bytes split into at most `cap` pieces.
fn capped_len(size: u64, lanes: usize, cap: u64) -> u64 {
    let floor = size
        .div_ceil(cap.max(1))
        .div_ceil(64 * 1024)
        .saturating_mul(64 * 1024);
    piece_len(size, lanes).max(floor)
}

/// How many pieces a file of `size` bytes gets at a piece length of `len`.
fn count(size: u64, len: u64) -> u64 {
    size.div_ceil(len).max(1)
}

/// Splits files (by size) into pieces, in file order; an empty file is one empty piece.
/// At most [`MAX_PIECES_PER_FILE`] pieces per file and [`MAX_PIECES`] in all (for at most
/// that many files), whatever the sizes: nothing here grows with a claimed size.
pub fn split(sizes: &[u64], lanes: usize) -> Vec<Piece> {
    let mut cap = MAX_PIECES_PER_FILE;
    while cap > 1 {
        let total = sizes.iter().fold(0u64, |sum, &size| {
            sum.saturating_add(count(size, capped_len(size, lanes, cap)))
        });
        if total <= MAX_PIECES as u64 {
            break;
        }
        cap /= 2;
    }
    let mut pieces = Vec::new();
    for (file, &size) in sizes.iter().enumerate() {
        let step = capped_len(size, lanes, cap);
        let whole = size <= step;
        let mut offset = 0;
        loop {
            let len = step.min(size - offset);
            pieces.push(Piece {
                file,
                offset,
                len,
                whole,
            });
            offset += len;
            if offset >= size {
                break;
            }
        }
    }
    pieces
}

/// How a run went.
#[derive(Debug, Default)]
pub struct RunReport<L> {
    /// Files that failed, with the first failure of each.
    pub failed: BTreeMap<usize, SshError>,
    /// Pieces redone after their lane died.
    pub redone: u32,
    /// Lanes opened in all (the first included).
    pub opened: u32,
    /// Most lanes in use at once.
    pub peak: usize,
    /// Pieces taken over from a busy lane by an idle one.
    pub stolen: u32,
    /// The lanes still alive at the end (for the caller's finishing touches).
    pub lanes: Vec<L>,
}

/// Limits and reporting for [`run`].
pub struct RunOptions<'a> {
    /// Most lanes at once (N of `-j N`).
    pub max_lanes: usize,
    /// Lanes that may be opened to replace dead ones when none is left.
    pub reopen_budget: u32,
    /// Called after each piece that moved (bytes), for a progress bar.
    pub progress: &'a mut dyn FnMut(u64, usize),
    /// One line for the user (growth stopped, a lane died).
    pub notice: &'a mut dyn FnMut(String),
    /// What opening a lane costs, until an opening is timed (e.g. the first lane's); `None`
    /// opens a lane for every piece waiting, up to `max_lanes`, without measuring first.
    pub open_cost: Option<Duration>,
    /// The most one lane can move a second, when known in advance ([`Meter::ceiling`]):
    /// lanes the work would keep busy even at that rate open before anything is measured.
    pub ceiling: Option<f64>,
}

/// A lane at work: the lane back, with its piece, span and result.
async fn work<L: Lane>(
    mut lane: L,
    piece: Piece,
    span: Arc<Span>,
) -> (L, Piece, Arc<Span>, Result<(), PieceError>) {
    let r = lane.run_span(piece, &span).await;
    (lane, piece, span, r)
}

/// An opening, with how long it took.
async fn timed<F: Future>(f: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// Moves `pieces` over lanes: `first` (already open) and more from `opener`, up to
/// `max_lanes` in all. `Err` when no lane is left and none can be opened.
pub async fn run<O: Opener>(
    opener: &O,
    first: Vec<O::Lane>,
    pieces: Vec<Piece>,
    mut opts: RunOptions<'_>,
) -> Result<RunReport<O::Lane>, SshError> {
    let mut st = Sched::new(first, pieces, &opts);
    let mut busy = FuturesUnordered::new();
    let mut opening = FuturesUnordered::new();
    loop {
        while let Some((lane, piece, span)) = st.next_work() {
            busy.push(work(lane, piece, span));
        }
        st.report.peak = st.report.peak.max(busy.len());
        let more = st.openings(busy.len(), opening.len());
        if more > 0 {
            tracing::debug!(more, busy = busy.len(), opening = opening.len(), meter = ?st.meter, "opening lanes");
        }
        for _ in 0..more {
            opening.push(timed(opener.open()));
        }
        if busy.is_empty() && opening.is_empty() {
            return st.end(&opts);
        }
        let paused_until = st.paused_until;
        tokio::select! {
            Some((lane, piece, span, r)) = busy.next(), if !busy.is_empty() => {
                st.piece_done(lane, piece, &span, r, busy.len() + 1, &mut opts);
            }
            // The back-off is over: look again at whether to open more.
            _ = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)),
                if st.backing_off() => {}
            // Pieces in flight may have grown worth sharing with one more lane.
            _ = tokio::time::sleep(GROWTH_LOOK), if st.may_share(busy.len(), opening.len()) => {}
            Some((opened, took)) = opening.next(), if !opening.is_empty() => {
                let lanes = busy.len() + opening.len();
                st.opened(opened, took, lanes, &mut opts)?;
            }
        }
    }
}

/// The scheduler's state between events (the futures stay in [`run`]).
struct Sched<L> {
    report: RunReport<L>,
    queue: VecDeque<Piece>,
    /// The bytes of the queued pieces (kept as they come and go: the queue may be long).
    queued_bytes: u64,
    idle: Vec<L>,
    /// The pieces being moved, with their spans (what an idle lane may steal from).
    active: Vec<(Piece, Arc<Span>)>,
    meter: Meter,
    /// After a refused opening: no new lane before this instant (backing off), and after
    /// GROWTH_ATTEMPTS refusals none at all.
    paused_until: Option<Instant>,
    refusals: u32,
    reopens_left: u32,
    max: usize,
    /// Lanes died: the next openings replace them (counted against the budget).
    ever_had_lane: bool,
}

impl<L: Lane> Sched<L> {
    fn new(first: Vec<L>, pieces: Vec<Piece>, opts: &RunOptions<'_>) -> Sched<L> {
        Sched {
            report: RunReport {
                failed: BTreeMap::new(),
                redone: 0,
                opened: first.len() as u32,
                peak: 0,
                stolen: 0,
                lanes: Vec::new(),
            },
            queued_bytes: (pieces.iter()).fold(0u64, |t, p| t.saturating_add(p.len)),
            queue: pieces.into(),
            ever_had_lane: !first.is_empty(),
            idle: first,
            active: Vec::new(),
            meter: Meter {
                open: opts.open_cost,
                ceiling: opts.ceiling,
                ..Meter::default()
            },
            paused_until: None,
            refusals: 0,
            reopens_left: opts.reopen_budget,
            max: opts.max_lanes.max(1),
        }
    }

    /// An idle lane and what it should move: the next queued piece, or else the back of
    /// the largest piece in flight.
    fn next_work(&mut self) -> Option<(L, Piece, Arc<Span>)> {
        // Drop queued pieces of failed files.
        let failed = &self.report.failed;
        if !failed.is_empty() {
            let mut dropped = 0u64;
            self.queue.retain(|p| {
                let keep = !failed.contains_key(&p.file);
                if !keep {
                    dropped = dropped.saturating_add(p.len);
                }
                keep
            });
            self.queued_bytes = self.queued_bytes.saturating_sub(dropped);
        }
        if self.idle.is_empty() {
            return None;
        }
        let piece = match self.queue.pop_front() {
            Some(p) => {
                self.queued_bytes = self.queued_bytes.saturating_sub(p.len);
                p
            }
            None => self.steal()?,
        };
        let lane = self.idle.pop()?;
        let span = Arc::new(Span::new(&piece));
        self.active.push((piece, span.clone()));
        Some((lane, piece, span))
    }

    /// The spans an idle lane may take from: a piece of several, of a file still going.
    /// A piece whose lane has not begun may be cut too (when lanes outnumber the pieces
    /// left): a lane that cannot stop early claims what is left when it begins.
    fn stealable(&self) -> impl Iterator<Item = &(Piece, Arc<Span>)> {
        self.active
            .iter()
            .filter(|(p, _)| !p.whole && !self.report.failed.contains_key(&p.file))
    }

    /// The back of the largest piece in flight, when it is worth a new start.
    fn steal(&mut self) -> Option<Piece> {
        let (min, overhead) = (self.meter.min_piece(), self.meter.overhead_bytes());
        let (victim, span) = self.stealable().max_by_key(|(_, s)| s.unclaimed())?;
        let file = victim.file;
        let (offset, len) = span.steal(min, overhead)?;
        self.report.stolen += 1;
        Some(Piece {
            file,
            offset,
            len,
            whole: false,
        })
    }

    /// How many lanes to start opening now: for queued pieces no lane (open or opening)
    /// will take, and for pieces in flight large enough to share, while the work left
    /// would keep the lanes there are busy for longer than an opening takes
    /// ([`Meter::worth_opening`]).
    fn openings(&mut self, busy: usize, opening: usize) -> usize {
        let lanes_now = busy + self.idle.len();
        let paused = self.refusals >= GROWTH_ATTEMPTS
            || self.paused_until.is_some_and(|t| Instant::now() < t);
        let min = self.meter.min_piece();
        // Only a lane that has begun claiming shows it claims piecemeal (one that cannot
        // stop early claims all at once): no lane is opened for the others.
        let shareable = if self.idle.is_empty() {
            self.stealable()
                .filter(|(_, s)| s.started() && s.unclaimed() >= 2 * min)
                .count()
        } else {
            0
        };
        let (left, live) = (self.left(), self.live_rate());
        let mut n = 0;
        // After a refusal, one opening at a time.
        while (!paused || lanes_now == 0)
            && (self.refusals == 0 || opening + n == 0)
            && self.queue.len() + shareable > opening + n
            && lanes_now + opening + n < self.max
        {
            let lanes = lanes_now + opening + n;
            if lanes > 0 && !self.meter.worth_opening(&left, live, lanes) {
                break;
            }
            if self.ever_had_lane && lanes_now == 0 {
                if self.reopens_left == 0 {
                    break;
                }
                self.reopens_left -= 1;
            }
            n += 1;
        }
        n
    }

    /// The work not yet handed out.
    fn left(&self) -> Left {
        let queued = self.queued_bytes;
        let flying = (self.active.iter()).fold(0u64, |t, (_, s)| t.saturating_add(s.unclaimed()));
        Left {
            bytes: queued.saturating_add(flying),
            queued: self.queue.len(),
            active: self.active.len(),
        }
    }

    /// One lane's rate, as seen so far on the pieces in flight (the mean of the most
    /// each can be: [`Span::rate_bound`]).
    fn live_rate(&self) -> Option<f64> {
        let rates: Vec<f64> = (self.active.iter())
            .filter_map(|(_, s)| s.rate_bound())
            .filter(|r| r.is_finite() && *r > 0.0)
            .collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }

    /// Whether a lane more could take queued pieces or part of the pieces in flight,
    /// once measured to be worth it (looked at again every [`GROWTH_LOOK`]).
    fn may_share(&self, busy: usize, opening: usize) -> bool {
        self.idle.is_empty()
            && busy + opening < self.max
            && self.refusals < GROWTH_ATTEMPTS
            && (!self.queue.is_empty()
                || (self.active.iter()).any(|(p, s)| !p.whole && s.unclaimed() > 0))
    }

    fn backing_off(&self) -> bool {
        self.refusals < GROWTH_ATTEMPTS
            && !self.queue.is_empty()
            && self.paused_until.is_some_and(|t| Instant::now() < t)
    }

    /// Nothing moves and nothing opens: done, or out of lanes.
    fn end(self, opts: &RunOptions<'_>) -> Result<RunReport<L>, SshError> {
        if !self.queue.is_empty() {
            return Err(SshError::Connection(format!(
                "every session to the instance failed and the reopen budget ({}) is \
                     spent; {} pieces were not copied",
                opts.reopen_budget,
                self.queue.len()
            )));
        }
        let mut report = self.report;
        report.lanes = self.idle;
        Ok(report)
    }

    fn piece_done(
        &mut self,
        lane: L,
        piece: Piece,
        span: &Arc<Span>,
        r: Result<(), PieceError>,
        lanes: usize,
        opts: &mut RunOptions<'_>,
    ) {
        self.active.retain(|(_, s)| !Arc::ptr_eq(s, span));
        // What this lane was left with after any steals.
        let moved = Piece {
            len: span.end().saturating_sub(piece.offset),
            ..piece
        };
        tracing::debug!(
            file = piece.file,
            offset = moved.offset,
            len = moved.len,
            took = ?span.age(),
            ok = r.is_ok(),
            lanes,
            "piece done"
        );
        match r {
            Ok(()) => {
                if let Some(sample) = span.sample() {
                    self.meter.add(sample);
                }
                self.meter.add_piece(span.age());
                tracing::debug!(meter = ?self.meter, min_piece = self.meter.min_piece(), "measured");
                (opts.progress)(moved.len, lanes);
                self.idle.push(lane);
            }
            Err(PieceError::File(f)) => {
                self.report.failed.entry(piece.file).or_insert(f);
                self.idle.push(lane);
            }
            Err(PieceError::Lane(e)) => {
                drop(lane);
                self.report.redone += 1;
                (opts.notice)(format!(
                    "a session failed ({}); its piece is redone on another",
                    crate::error::Failure::from(e).message
                ));
                self.queued_bytes = self.queued_bytes.saturating_add(moved.len);
                self.queue.push_front(moved);
            }
        }
    }

    /// An opening finished; `lanes` were busy or still opening besides it.
    fn opened(
        &mut self,
        opened: Result<L, SshError>,
        took: Duration,
        lanes: usize,
        opts: &mut RunOptions<'_>,
    ) -> Result<(), SshError> {
        let f = match opened {
            Ok(lane) => {
                tracing::debug!(?took, "lane opened");
                self.report.opened += 1;
                self.ever_had_lane = true;
                self.meter.open = Some(took);
                self.idle.push(lane);
                return Ok(());
            }
            // Not a capacity problem: the caller ends the copy (and releases what the
            // lanes hold) as on any other fatal error.
            Err(e) if e.is_host_key() => return Err(e),
            Err(f) => f,
        };
        let have = lanes + self.idle.len();
        if have > 0 {
            if self.refusals == 0 {
                (opts.notice)(format!(
                    "could not open another session ({}); continuing with {have} and trying \
                     again later",
                    crate::error::Failure::from(f).message
                ));
            }
            self.refusals += 1;
            self.paused_until = Some(Instant::now() + GROWTH_BACKOFF * 2u32.pow(self.refusals - 1));
            Ok(())
        } else if self.reopens_left == 0 || !self.ever_had_lane {
            Err(f)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "stripe_tests.rs"]
mod tests;

#[cfg(test)]
mod steal_tests;
