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
//! * Except a refused host key ([`ExitCode::HostKey`]): a security event, not a lack
//!   of capacity. It ends the run at once, whatever lanes exist.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::error::{ExitCode, Failure};

/// Smallest and largest piece of a large file.
pub const MIN_PIECE: u64 = 1024 * 1024;
pub const MAX_PIECE: u64 = 8 * 1024 * 1024;

/// After a refused opening, wait this long before the next (doubling each time).
pub const GROWTH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);
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
    Lane(Failure),
    /// The file cannot be copied (refused, vanished, local disk error).
    File(Failure),
}

/// Moves pieces.
pub trait Lane {
    fn run(&mut self, piece: Piece) -> impl Future<Output = Result<(), PieceError>>;
}

/// Makes lanes.
pub trait Opener {
    type Lane: Lane;
    fn open(&self) -> impl Future<Output = Result<Self::Lane, Failure>>;
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
    pub failed: BTreeMap<usize, Failure>,
    /// Pieces redone after their lane died.
    pub redone: u32,
    /// Lanes opened in all (the first included).
    pub opened: u32,
    /// Most lanes in use at once.
    pub peak: usize,
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
}

/// Moves `pieces` over lanes: `first` (already open) and more from `opener`, up to
/// `max_lanes` in all. `Err` when no lane is left and none can be opened.
pub async fn run<O: Opener>(
    opener: &O,
    first: Vec<O::Lane>,
    pieces: Vec<Piece>,
    opts: RunOptions<'_>,
) -> Result<RunReport<O::Lane>, Failure> {
    let max = opts.max_lanes.max(1);
    let mut report = RunReport {
        failed: BTreeMap::new(),
        redone: 0,
        opened: 0,
        peak: 0,
        lanes: Vec::new(),
    };
    let mut queue: VecDeque<Piece> = pieces.into();
    report.opened = first.len() as u32;
    let mut idle: Vec<O::Lane> = first;
    let mut busy = FuturesUnordered::new();
    let mut opening = FuturesUnordered::new();
    // After a refused opening: no new lane before this instant (backing off), and after
    // GROWTH_ATTEMPTS refusals none at all.
    let mut paused_until: Option<tokio::time::Instant> = None;
    let mut refusals = 0u32;
    let mut reopens_left = opts.reopen_budget;
    // Lanes died: the next openings replace them (counted against the budget).
    let mut ever_had_lane = !idle.is_empty();
    loop {
        // Drop queued pieces of failed files.
        queue.retain(|p| !report.failed.contains_key(&p.file));
        while let Some(lane) = idle.pop() {
            match queue.pop_front() {
                Some(piece) => {
                    let mut lane = lane;
                    busy.push(async move {
                        let r = lane.run(piece).await;
                        (lane, piece, r)
                    });
                }
                None => {
                    idle.push(lane);
                    break;
                }
            }
        }
        report.peak = report.peak.max(busy.len());
        // Open more only for work no lane (open or opening) will take.
        let lanes_now = busy.len() + idle.len();
        let paused = refusals >= GROWTH_ATTEMPTS
            || paused_until.is_some_and(|t| tokio::time::Instant::now() < t);
        // After a refusal, one opening at a time.
        while (!paused || lanes_now == 0)
            && (refusals == 0 || opening.is_empty())
            && queue.len() > opening.len()
            && lanes_now + opening.len() < max
        {
            let replacing = ever_had_lane && lanes_now == 0;
            if replacing {
                if reopens_left == 0 {
                    break;
                }
                reopens_left -= 1;
            }
            opening.push(opener.open());
        }
        if busy.is_empty() && opening.is_empty() {
            if queue.is_empty() {
                break;
            }
            return Err(Failure::new(
                ExitCode::Protocol,
                format!(
                    "every session to the instance failed and the reopen budget ({}) is \
                     spent; {} pieces were not copied",
                    opts.reopen_budget,
                    queue.len()
                ),
            ));
        }
        tokio::select! {
            Some((lane, piece, r)) = busy.next(), if !busy.is_empty() => match r {
                Ok(()) => {
                    (opts.progress)(piece.len, busy.len() + 1);
                    idle.push(lane);
                }
                Err(PieceError::File(f)) => {
                    report.failed.entry(piece.file).or_insert(f);
                    idle.push(lane);
                }
                Err(PieceError::Lane(f)) => {
                    drop(lane);
                    report.redone += 1;
                    (opts.notice)(format!(
                        "a session failed ({}); its piece is redone on another",
                        f.message
                    ));
                    queue.push_front(piece);
                }
            },
            // The back-off is over: look again at whether to open more.
            _ = tokio::time::sleep_until(paused_until.unwrap_or_else(tokio::time::Instant::now)),
                if refusals < GROWTH_ATTEMPTS
                    && !queue.is_empty()
                    && paused_until.is_some_and(|t| tokio::time::Instant::now() < t) => {}
            Some(opened) = opening.next(), if !opening.is_empty() => match opened {
                Ok(lane) => {
                    report.opened += 1;
                    ever_had_lane = true;
                    idle.push(lane);
                }
                // Not a capacity problem: the caller ends the copy (and releases what
                // the lanes hold) as on any other fatal error.
                Err(f) if f.code == ExitCode::HostKey => return Err(f),
                Err(f) => {
                    if busy.len() + idle.len() + opening.len() > 0 {
                        if refusals == 0 {
                            (opts.notice)(format!(
                                "could not open another session ({}); continuing with {} \
                                 and trying again later",
                                f.message,
                                busy.len() + idle.len() + opening.len()
                            ));
                        }
                        refusals += 1;
                        paused_until = Some(
                            tokio::time::Instant::now() + GROWTH_BACKOFF * 2u32.pow(refusals - 1),
                        );
                    } else if reopens_left == 0 || !ever_had_lane {
                        return Err(f);
                    }
                }
            },
        }
    }
    report.lanes = idle;
    Ok(report)
}

#[cfg(test)]
#[path = "stripe_tests.rs"]
mod tests;
