use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::aws::{AwsError, AwsErrorKind};

/// A throttled StartSession, as a lane's opening sees it.
fn throttled() -> SshError {
    let e = AwsError::new(
        AwsErrorKind::Throttled,
        "ThrottlingException: Rate exceeded",
    );
    SshError::aws(e, "i-0abc")
}

#[test]
fn pieces_cover_every_byte_once() {
    let sizes = [0, 10_000, 20_000_000, MAX_PIECE * 5 + 3];
    let pieces = split(&sizes, 4);
    for (file, &size) in sizes.iter().enumerate() {
        let mine: Vec<_> = pieces.iter().filter(|p| p.file == file).collect();
        let mut next = 0;
        for p in &mine {
            assert_eq!(p.offset, next, "contiguous");
            assert!(p.len <= MAX_PIECE);
            assert_eq!(p.whole, mine.len() == 1);
            next += p.len;
        }
        assert_eq!(next, size);
    }
    // Small files are one piece; a 20 MB file at 4 lanes gives about two pieces a lane.
    assert_eq!(pieces.iter().filter(|p| p.file == 1).count(), 1);
    assert_eq!(pieces.iter().filter(|p| p.file == 2).count(), 8);
    assert_eq!(piece_len(1, 8), MIN_PIECE);
    assert_eq!(piece_len(u64::MAX / 4, 8), MAX_PIECE);
}

/// The pieces of each file are contiguous and cover it exactly.
fn assert_covers(sizes: &[u64], pieces: &[Piece]) {
    let mut next = vec![0u64; sizes.len()];
    for p in pieces {
        assert_eq!(p.offset, next[p.file], "contiguous");
        next[p.file] += p.len;
    }
    assert_eq!(next, sizes);
}

#[test]
fn a_claimed_size_of_2_pow_63_gives_a_bounded_split() {
    // A lying server's claim: without the cap this is 2^40 pieces of 8 MiB (tens of GB).
    let sizes = [i64::MAX as u64];
    let pieces = split(&sizes, 4);
    assert!(
        pieces.len() as u64 <= MAX_PIECES_PER_FILE,
        "{}",
        pieces.len()
    );
    assert!(pieces.capacity() as u64 <= 2 * MAX_PIECES_PER_FILE);
    assert_covers(&sizes, &pieces);
    let sizes = [u64::MAX, 0, 5, u64::MAX - 1];
    let pieces = split(&sizes, 64);
    assert!(pieces.len() as u64 <= 2 * MAX_PIECES_PER_FILE + 2);
    assert_covers(&sizes, &pieces);
}

#[test]
fn many_huge_claims_stay_within_the_total_bound() {
    // 5000 files each claiming 2^63: the per-file cap alone would allow 20 M pieces.
    let sizes = vec![i64::MAX as u64; 5000];
    let pieces = split(&sizes, 8);
    assert!(pieces.len() <= MAX_PIECES, "{}", pieces.len());
    assert!(pieces.capacity() <= 2 * MAX_PIECES);
    assert_covers(&sizes, &pieces);
    // Ordinary sizes keep their ordinary pieces.
    assert_eq!(split(&[20_000_000], 4).len(), 8);
}

/// A fake instance: the "remote" file bytes are copied into `dest` piece by piece.
struct World {
    source: Vec<u8>,
    dest: Vec<u8>,
    opens: u32,
    /// The lane opened as number N (1-based) dies on its K-th piece.
    die: Option<(u32, u32)>,
    /// Openings after this many fail.
    open_limit: Option<u32>,
    /// These opening attempts (1-based, counting failures) fail.
    fail_attempts: Vec<u32>,
    /// Those attempts fail with a refused host key (else a throttled StartSession).
    fail_host_key: bool,
    attempts: u32,
    /// Pieces of this file fail with a file error.
    bad_file: Option<usize>,
    /// (lane, piece offset) in completion order.
    log: Vec<(u32, u64)>,
    /// How long (ms) each lane (by id) takes per piece.
    yields: Vec<u32>,
}

struct FakeLane {
    id: u32,
    done: u32,
    world: Rc<RefCell<World>>,
}

impl Lane for FakeLane {
    async fn run(&mut self, piece: Piece) -> Result<(), PieceError> {
        let spins = {
            let w = self.world.borrow();
            w.yields.get(self.id as usize).copied().unwrap_or(0)
        };
        // Paused clock: "takes this many ms" without real waiting.
        tokio::time::sleep(std::time::Duration::from_millis(spins.into())).await;
        self.done += 1;
        let mut w = self.world.borrow_mut();
        if w.die == Some((self.id, self.done)) {
            // Half-written, then gone: the redo must overwrite it.
            let end = (piece.offset + piece.len / 2) as usize;
            let start = piece.offset as usize;
            for b in &mut w.dest[start..end] {
                *b = 0xEE;
            }
            return Err(PieceError::Lane(SshError::Connection("gone".to_owned())));
        }
        if w.bad_file == Some(piece.file) {
            return Err(PieceError::File(SshError::RemoteFile("refused".to_owned())));
        }
        let (s, e) = (piece.offset as usize, (piece.offset + piece.len) as usize);
        let chunk = w.source[s..e].to_vec();
        w.dest[s..e].copy_from_slice(&chunk);
        w.log.push((self.id, piece.offset));
        Ok(())
    }
}

struct FakeOpener(Rc<RefCell<World>>);

impl Opener for FakeOpener {
    type Lane = FakeLane;
    async fn open(&self) -> Result<FakeLane, SshError> {
        tokio::task::yield_now().await;
        let mut w = self.0.borrow_mut();
        w.attempts += 1;
        if w.fail_attempts.contains(&w.attempts) {
            return Err(if w.fail_host_key {
                SshError::HostKey("host key refused".to_owned())
            } else {
                throttled()
            });
        }
        if w.open_limit.is_some_and(|l| w.opens >= l) {
            return Err(throttled());
        }
        w.opens += 1;
        Ok(FakeLane {
            id: w.opens,
            done: 0,
            world: self.0.clone(),
        })
    }
}

fn world(len: usize) -> Rc<RefCell<World>> {
    let source: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    Rc::new(RefCell::new(World {
        dest: vec![0; len],
        source,
        opens: 0,
        die: None,
        open_limit: None,
        fail_attempts: Vec::new(),
        fail_host_key: false,
        attempts: 0,
        bad_file: None,
        log: Vec::new(),
        yields: Vec::new(),
    }))
}

async fn go(
    w: &Rc<RefCell<World>>,
    pieces: Vec<Piece>,
    max: usize,
) -> (Result<RunReport<FakeLane>, SshError>, Vec<String>) {
    let opener = FakeOpener(w.clone());
    let first = opener.open().await.into_iter().collect();
    let mut notes = Vec::new();
    let mut moved = 0;
    let r = run(
        &opener,
        first,
        pieces,
        RunOptions {
            max_lanes: max,
            reopen_budget: 2,
            progress: &mut |n, _| moved += n,
            notice: &mut |s| notes.push(s),
            open_cost: None,
            ceiling: None,
        },
    )
    .await;
    (r, notes)
}

/// A runtime whose clock jumps to the next timer when all tasks wait (no real sleeps).
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn one_file(len: u64, lanes: usize) -> Vec<Piece> {
    split(&[len], lanes)
}

#[test]
fn a_small_file_opens_one_lane() {
    rt().block_on(async {
        let w = world(10_000);
        let (r, _) = go(&w, one_file(10_000, 4), 4).await;
        let r = r.unwrap();
        assert_eq!(r.opened, 1);
        assert_eq!(w.borrow().opens, 1);
        assert_eq!(w.borrow().dest, w.borrow().source);
    });
}

#[test]
fn a_big_file_opens_up_to_n_lanes_and_is_identical_out_of_order() {
    rt().block_on(async {
        let len = 20 * 1024 * 1024;
        let w = world(len);
        // Lane 1 is slowest, lane 4 fastest: pieces finish out of order.
        w.borrow_mut().yields = vec![0, 40, 30, 20, 10];
        let (r, _) = go(&w, one_file(len as u64, 4), 4).await;
        let r = r.unwrap();
        assert_eq!(r.opened, 4);
        assert_eq!(r.peak, 4);
        let w = w.borrow();
        assert_eq!(w.dest, w.source);
        let offsets: Vec<u64> = w.log.iter().map(|(_, o)| *o).collect();
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_ne!(offsets, sorted, "the pieces finished out of order");
    });
}

#[test]
fn never_more_lanes_than_pieces_or_n() {
    rt().block_on(async {
        let len = 3 * 1024 * 1024;
        let w = world(len);
        let (r, _) = go(&w, split(&[len as u64], 8), 8).await;
        // 3 MiB at 8 lanes: 3 pieces of 1 MiB, so 3 lanes.
        assert_eq!(r.unwrap().opened, 3);
        let w2 = world(40 * 1024 * 1024);
        let (r, _) = go(&w2, one_file(40 * 1024 * 1024, 2), 2).await;
        assert_eq!(r.unwrap().opened, 2);
    });
}

#[test]
fn a_dead_lanes_piece_is_redone_elsewhere() {
    rt().block_on(async {
        let len = 20 * 1024 * 1024;
        let w = world(len);
        w.borrow_mut().die = Some((2, 1));
        w.borrow_mut().yields = vec![0, 5, 5, 5, 5];
        let (r, notes) = go(&w, one_file(len as u64, 4), 4).await;
        let r = r.unwrap();
        assert_eq!(r.redone, 1);
        assert!(r.failed.is_empty());
        assert!(notes.iter().any(|n| n.contains("redone")), "{notes:?}");
        let w = w.borrow();
        assert_eq!(w.dest, w.source);
        assert!(w.log.iter().all(|(lane, _)| *lane != 2));
    });
}

#[test]
fn when_every_lane_dies_new_ones_are_opened_within_the_budget() {
    rt().block_on(async {
        let len = 2 * 1024 * 1024;
        let w = world(len);
        w.borrow_mut().die = Some((1, 1));
        // One lane at a time: lane 1 dies, lane 2 replaces it.
        let (r, _) = go(&w, one_file(len as u64, 1), 1).await;
        let r = r.unwrap();
        assert_eq!(r.redone, 1);
        assert_eq!(w.borrow().opens, 2);
        assert_eq!(w.borrow().dest, w.borrow().source);
    });
}

#[test]
fn out_of_budget_is_an_error_not_a_hang() {
    rt().block_on(async {
        let len = 2 * 1024 * 1024;
        let w = world(len);
        w.borrow_mut().die = Some((1, 1));
        w.borrow_mut().open_limit = Some(1);
        let (r, _) = go(&w, one_file(len as u64, 1), 1).await;
        let e = r.err().expect("no lane can be opened");
        assert!(e.to_string().contains("Rate exceeded"), "{e}");
    });
}

#[test]
fn refused_openings_keep_the_lanes_we_have() {
    rt().block_on(async {
        let len = 20 * 1024 * 1024;
        let w = world(len);
        w.borrow_mut().open_limit = Some(2);
        w.borrow_mut().yields = vec![0, 3000, 3000];
        let (r, notes) = go(&w, one_file(len as u64, 4), 4).await;
        let r = r.unwrap();
        assert_eq!(r.opened, 2);
        assert_eq!(notes.len(), 1, "said once: {notes:?}");
        assert_eq!(
            w.borrow().attempts,
            2 + GROWTH_ATTEMPTS,
            "tried again, a bounded number of times"
        );
        assert!(notes[0].contains("continuing with"), "{notes:?}");
        assert_eq!(w.borrow().dest, w.borrow().source);
    });
}

#[test]
fn a_file_error_fails_that_file_only() {
    rt().block_on(async {
        let w = world(3 * 1024 * 1024);
        w.borrow_mut().bad_file = Some(1);
        let pieces = split(&[1024 * 1024, 1024 * 1024, 1024 * 1024], 1);
        // The three "files" are consecutive ranges of the world; re-base them.
        let pieces: Vec<Piece> = pieces
            .into_iter()
            .map(|p| Piece {
                offset: p.file as u64 * 1024 * 1024 + p.offset,
                ..p
            })
            .collect();
        let (r, _) = go(&w, pieces, 2).await;
        let r = r.unwrap();
        assert_eq!(r.failed.keys().copied().collect::<Vec<_>>(), vec![1]);
        let w = w.borrow();
        let mb = 1024 * 1024;
        assert_eq!(w.dest[..mb], w.source[..mb]);
        assert_eq!(w.dest[2 * mb..], w.source[2 * mb..]);
    });
}

#[test]
fn after_a_refusal_growth_resumes_after_the_back_off() {
    rt().block_on(async {
        let len = 40 * 1024 * 1024;
        let w = world(len);
        // Opening attempt 2 is throttled; the next try (after the back-off) succeeds.
        w.borrow_mut().fail_attempts = vec![2];
        // Slow lanes: the copy is still going when the back-off ends.
        w.borrow_mut().yields = vec![0, 1000, 1000, 1000, 1000, 1000];
        let started = tokio::time::Instant::now();
        let (r, notes) = go(&w, one_file(len as u64, 4), 4).await;
        let r = r.unwrap();
        assert!(notes[0].contains("trying again later"), "{notes:?}");
        assert_eq!(r.opened, 4, "grew to 4 after backing off");
        assert!(started.elapsed() >= GROWTH_BACKOFF);
        assert_eq!(w.borrow().dest, w.borrow().source);
    });
}

#[test]
fn a_host_key_refusal_on_another_lane_ends_the_run() {
    rt().block_on(async {
        let len = 40 * 1024 * 1024;
        let w = world(len);
        // The second session's host key is refused: a security event, not a lack of
        // capacity, so no "continuing with fewer", no retry, no more pieces.
        w.borrow_mut().fail_attempts = vec![2];
        w.borrow_mut().fail_host_key = true;
        w.borrow_mut().yields = vec![0, 1000, 1000, 1000, 1000, 1000];
        let (r, notes) = go(&w, one_file(len as u64, 4), 4).await;
        let f = r.err().expect("the run ends with the refusal");
        assert!(f.is_host_key(), "{f}");
        assert!(notes.is_empty(), "{notes:?}");
        assert!(
            w.borrow().log.len() < 8,
            "stopped early: {:?}",
            w.borrow().log
        );
        assert!(
            w.borrow().attempts <= 4,
            "no retry: {}",
            w.borrow().attempts
        );
    });
}
