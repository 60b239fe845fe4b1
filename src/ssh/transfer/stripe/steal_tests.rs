//! Work stealing on a paused clock: lanes that move a request's worth at a paced rate, as
//! a session through the agent does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// Bytes a lane asks for at a time.
const REQ: u64 = 64 * 1024;
/// One session's paced rate (bytes a second) and the round trip.
const RATE: u64 = 512 * 1024;
const RTT: Duration = Duration::from_millis(40);

struct Paced {
    source: Vec<u8>,
    dest: Vec<u8>,
    /// How many times each byte was written by a request that completed.
    writes: Vec<u8>,
    /// Each lane's (by id, 1-based) end of its last piece.
    finished: Vec<Option<Instant>>,
    /// Pieces run: (lane, offset, length at the start).
    log: Vec<(u32, u64, u64)>,
    opens: u32,
    /// This lane dies once it has moved this many bytes.
    die: Option<(u32, u64)>,
    open_time: Duration,
    /// One lane's rate (bytes a second).
    rate: u64,
    /// What the run is told a lane moves at most ([`RunOptions::ceiling`]).
    ceiling: Option<f64>,
    /// When each opening began.
    open_began: Vec<Instant>,
}

struct PacedLane {
    id: u32,
    moved: u64,
    world: Rc<RefCell<Paced>>,
}

fn sleep_for(bytes: u64, rate: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64))
}

impl Lane for PacedLane {
    async fn run(&mut self, piece: Piece) -> Result<(), PieceError> {
        self.run_span(piece, &Span::new(&piece)).await
    }

    async fn run_span(&mut self, piece: Piece, span: &Span) -> Result<(), PieceError> {
        self.world
            .borrow_mut()
            .log
            .push((self.id, piece.offset, span.end() - piece.offset));
        // The file opens in a round trip; two requests in flight from then on.
        tokio::time::sleep(RTT).await;
        let mut sent: VecDeque<(u64, u64)> = VecDeque::new();
        loop {
            while sent.len() < 2 {
                let Some(r) = span.claim(REQ) else { break };
                sent.push_back(r);
            }
            let Some((off, len)) = sent.pop_front() else {
                break;
            };
            let rate = self.world.borrow().rate;
            sleep_for(len, rate).await;
            let (s, e) = (off as usize, (off + len) as usize);
            let mut w = self.world.borrow_mut();
            if w.die
                .is_some_and(|(id, after)| id == self.id && self.moved >= after)
            {
                w.dest[s..e].fill(0xEE);
                return Err(PieceError::Lane(SshError::Connection("gone".to_owned())));
            }
            let chunk = w.source[s..e].to_vec();
            w.dest[s..e].copy_from_slice(&chunk);
            w.writes[s..e].iter_mut().for_each(|c| *c += 1);
            self.moved += len;
            drop(w);
            span.moved(len);
        }
        self.world.borrow_mut().finished[self.id as usize] = Some(Instant::now());
        Ok(())
    }
}

struct PacedOpener(Rc<RefCell<Paced>>);

impl Opener for PacedOpener {
    type Lane = PacedLane;
    async fn open(&self) -> Result<PacedLane, SshError> {
        let took = self.0.borrow().open_time;
        self.0.borrow_mut().open_began.push(Instant::now());
        tokio::time::sleep(took).await;
        let mut w = self.0.borrow_mut();
        w.opens += 1;
        Ok(PacedLane {
            id: w.opens,
            moved: 0,
            world: self.0.clone(),
        })
    }
}

fn paced(len: usize) -> Rc<RefCell<Paced>> {
    Rc::new(RefCell::new(Paced {
        source: (0..len).map(|i| (i * 31 % 251) as u8).collect(),
        dest: vec![0; len],
        writes: vec![0; len],
        finished: vec![None; 64],
        log: Vec::new(),
        opens: 0,
        die: None,
        open_time: Duration::from_millis(300),
        rate: RATE,
        ceiling: None,
        open_began: Vec::new(),
    }))
}

async fn go(w: &Rc<RefCell<Paced>>, pieces: Vec<Piece>, max: usize) -> RunReport<PacedLane> {
    let opener = PacedOpener(w.clone());
    let (open_cost, ceiling) = (Some(w.borrow().open_time), w.borrow().ceiling);
    let first = vec![opener.open().await.unwrap()];
    run(
        &opener,
        first,
        pieces,
        RunOptions {
            max_lanes: max,
            reopen_budget: 2,
            progress: &mut |_, _| {},
            notice: &mut |_| {},
            open_cost,
            ceiling,
        },
    )
    .await
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The time one lane takes to move `bytes`.
fn time_of(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / RATE as f64)
}

/// The file arrived intact, every byte once, over 8 lanes that all worked and ended
/// within one small piece of each other.
fn eight_lanes_ended_together(w: &Paced, r: &RunReport<PacedLane>) {
    assert_eq!(w.dest, w.source, "intact");
    assert!(w.writes.iter().all(|&c| c == 1), "every byte moved once");
    assert_eq!(r.opened, 8);
    let ends: Vec<Instant> = w.finished.iter().flatten().copied().collect();
    assert_eq!(ends.len(), 8, "every lane worked");
    let spread = *ends.iter().max().unwrap() - *ends.iter().min().unwrap();
    // The smallest piece here is one request (the rate times the start-up cost is
    // less); a lane may also be one request ahead in its window.
    let small = time_of(2 * ALIGN);
    assert!(
        spread <= small,
        "lanes finished {spread:?} apart (> {small:?})"
    );
}

#[test]
fn eight_lanes_finish_within_one_small_piece_of_each_other() {
    rt().block_on(async {
        let len = 12 * 1024 * 1024;
        let w = paced(len);
        let started = Instant::now();
        let r = go(&w, split(&[len as u64], 8), 8).await;
        let took = started.elapsed();
        let w = w.borrow();
        eight_lanes_ended_together(&w, &r);
        assert!(r.stolen > 0);
        // 12 MiB over 8 lanes at 0.5 MiB/s: 3 s of transfer, plus the openings.
        assert!(took < Duration::from_millis(4000), "took {took:?}");
    });
}

/// One piece of 4 MiB over 2 lanes: the second lane, once open, takes the back of the
/// first's piece; then lane `dies` dies.
fn stolen_then_dead(dies: u32) {
    rt().block_on(async {
        let len = 4 * 1024 * 1024;
        let w = paced(len);
        w.borrow_mut().die = Some((dies, 512 * 1024));
        let piece = Piece {
            file: 0,
            offset: 0,
            len: len as u64,
            whole: false,
        };
        let r = go(&w, vec![piece], 2).await;
        assert_eq!(r.redone, 1);
        assert!(r.stolen >= 1);
        let w = w.borrow();
        assert_eq!(w.dest, w.source, "intact");
        // The stolen range went to lane 2 whole, and only lane `dies`'s own range was
        // run again: no byte beyond a redone piece was written twice.
        let (_, cut, stolen_len) = *w.log.iter().find(|(id, _, _)| *id == 2).unwrap();
        assert_eq!(cut + stolen_len, len as u64);
        let redo = w
            .log
            .iter()
            .filter(|(id, _, _)| *id > 2)
            .collect::<Vec<_>>();
        assert_eq!(redo.len(), 1, "{:?}", w.log);
        let (_, ro, rl) = *redo[0];
        let (dead_from, dead_to) = if dies == 1 {
            (0, cut)
        } else {
            (cut, len as u64)
        };
        assert!(
            ro >= dead_from && ro + rl <= dead_to,
            "redo {ro}+{rl} within the dead lane's range"
        );
        let outside = |i: usize| (i as u64) < ro || (i as u64) >= ro + rl;
        assert!(
            w.writes
                .iter()
                .enumerate()
                .filter(|(i, _)| outside(*i))
                .all(|(_, &c)| c == 1),
            "bytes outside the redone piece were moved once"
        );
    });
}

#[test]
fn a_dead_victims_stolen_range_is_done_once() {
    stolen_then_dead(1);
}

#[test]
fn a_dead_thiefs_range_is_done_once() {
    stolen_then_dead(2);
}

#[test]
fn a_steal_cuts_where_both_lanes_finish_together() {
    let s = Span::new(&Piece {
        file: 0,
        offset: 0,
        len: 100 * ALIGN,
        whole: false,
    });
    assert_eq!(s.claim(ALIGN), Some((0, ALIGN)));
    // Nothing arrived yet, no start-up cost: the back half.
    assert_eq!(s.steal(ALIGN, 0), Some((50 * ALIGN, 50 * ALIGN)));
    // One request arrived; a thief that needs 10 requests' time to start takes about 5
    // less than half: the victim has 30 to go, the thief 10 + 19.
    s.moved(ALIGN);
    assert_eq!(s.steal(ALIGN, 10 * ALIGN), Some((31 * ALIGN, 19 * ALIGN)));
    // Never a claimed byte, and never less than the smallest piece.
    while s.claim(ALIGN).is_some_and(|(at, _)| at < 28 * ALIGN) {}
    assert_eq!(s.steal(3 * ALIGN, 0), None);
    assert_eq!(s.end(), 31 * ALIGN);
}

#[test]
fn a_lane_keeps_its_bandwidth_delay_product_in_flight() {
    rt().block_on(async {
        // Paced: a request's transfer (128 ms) is longer than the round trip (40 ms), so
        // two in flight keep it busy, and no more is held back from other lanes.
        let mut w = Window::new(REQ, 32);
        assert_eq!(w.requests(), 4, "before anything is measured");
        let t0 = Instant::now();
        for i in 1..=8u32 {
            tokio::time::sleep_until(t0 + RTT + time_of(REQ) * i).await;
            w.answered(t0.max(Instant::now() - RTT - time_of(REQ)), REQ);
        }
        assert_eq!(w.requests(), 2);
        // 32 MiB/s over 40 ms: 1.3 MB a round trip, about 21 requests; capped at the most.
        let fast = 32 * 1024 * 1024;
        let mut w = Window::new(REQ, 32);
        let t0 = Instant::now();
        let each = Duration::from_secs_f64(REQ as f64 / fast as f64);
        for i in 1..=8u32 {
            tokio::time::sleep_until(t0 + RTT + each * i).await;
            w.answered(Instant::now() - RTT - each, REQ);
        }
        assert!((20..=32).contains(&w.requests()), "{}", w.requests());
    });
}

/// 12 MiB in the pieces of `-j 8` over up to `max` lanes of `rate` bytes a second, each
/// taking a second to open: how long it took and how many lanes were opened.
fn costly_openings(rate: u64, max: usize) -> (Duration, u32) {
    rt().block_on(async {
        let len = 12 * 1024 * 1024;
        let w = paced(len);
        w.borrow_mut().rate = rate;
        w.borrow_mut().open_time = Duration::from_secs(1);
        // The first lane's opening included, as in both cases.
        let started = Instant::now();
        let r = go(&w, split(&[len as u64], 8), max).await;
        let took = started.elapsed();
        let w = w.borrow();
        assert_eq!(w.dest, w.source, "intact");
        assert!(w.writes.iter().all(|&c| c == 1), "every byte moved once");
        (took, r.opened)
    })
}

#[test]
fn a_fast_lane_opens_no_lane_that_would_arrive_after_the_work() {
    // 32 MiB/s: one lane moves the 12 pieces in well under the second an opening takes.
    let fast = 32 * 1024 * 1024;
    let (alone, _) = costly_openings(fast, 1);
    let (striped, opened) = costly_openings(fast, 8);
    assert_eq!(opened, 1, "no lane opened besides the first");
    assert!(
        striped <= alone,
        "-j 8 took {striped:?}, one lane {alone:?}"
    );
}

#[test]
fn openings_follow_the_measured_rate() {
    // Paced at half a MiB a second, 12 MiB keeps 8 lanes busy for 3 s: all are opened.
    let (slow, opened) = costly_openings(RATE, 8);
    assert_eq!(opened, 8);
    let (alone, _) = costly_openings(RATE, 1);
    assert!(slow * 4 < alone, "-j 8 took {slow:?}, one lane {alone:?}");
    // At 8 MiB/s the work (1.5 s and a round trip a piece) outlasts one opening but
    // not two: few lanes, and sooner done than one lane.
    let fast = 8 * 1024 * 1024;
    let (striped, opened) = costly_openings(fast, 8);
    let (alone, _) = costly_openings(fast, 1);
    assert!((1..=3).contains(&opened), "{opened} lanes opened");
    assert!(
        striped <= alone,
        "-j 8 took {striped:?}, one lane {alone:?}"
    );
}

/// 12 MiB at -j 8 over lanes paced at [`RATE`], the run told `ceiling`: when each opening
/// after the first began (from the run's start), and how long the run took.
fn openings_with(ceiling: Option<f64>) -> (Vec<Duration>, Duration) {
    rt().block_on(async {
        let len = 12 * 1024 * 1024;
        let w = paced(len);
        w.borrow_mut().ceiling = ceiling;
        let r = go(&w, split(&[len as u64], 8), 8).await;
        let w = w.borrow();
        assert_eq!(w.dest, w.source, "intact");
        assert!(w.writes.iter().all(|&c| c == 1), "every byte moved once");
        assert_eq!(r.opened, 8);
        // The first opening is the test's own (the caller's first lane).
        let start = w.open_began[0] + w.open_time;
        let began = w.open_began[1..].iter().map(|t| *t - start).collect();
        let end = w.finished.iter().flatten().max().copied().unwrap();
        (began, end - start)
    })
}

#[test]
fn a_known_ceiling_opens_the_lanes_before_anything_is_measured() {
    // Even at twice the pace a lane keeps, 12 MiB keeps 8 lanes busy for 1.5 s, far
    // longer than an opening (300 ms): all open at the start.
    let (began, with) = openings_with(Some(2.0 * RATE as f64));
    assert_eq!(began, vec![Duration::ZERO; 7], "every lane opened at once");
    // Unknown: the first lane measures before any other opens, and the copy ends later.
    let (began, without) = openings_with(None);
    assert!(began.iter().all(|b| *b >= RTT), "{began:?}");
    assert!(
        with < without,
        "with the ceiling {with:?}, without {without:?}"
    );
}

#[test]
fn a_ceiling_that_leaves_the_work_short_opens_nothing_early() {
    // At 32 MiB/s, 12 MiB over 2 lanes is done (in theory) in 0.19 s, well before an
    // opening (1 s) would be: no lane opens before the first has measured, and then none.
    rt().block_on(async {
        let len = 12 * 1024 * 1024;
        let w = paced(len);
        let fast = 32 * 1024 * 1024;
        w.borrow_mut().rate = fast;
        w.borrow_mut().ceiling = Some(fast as f64);
        w.borrow_mut().open_time = Duration::from_secs(1);
        let r = go(&w, split(&[len as u64], 8), 8).await;
        assert_eq!(r.opened, 1, "no lane opened besides the first");
        let w = w.borrow();
        assert_eq!(w.dest, w.source, "intact");
    });
}

#[test]
fn lanes_idle_at_once_split_the_pieces_not_yet_begun() {
    // With the ceiling, lanes 2-8 open together and finish their first pieces together:
    // eight lanes go idle with four pieces left, before any of those has begun. They
    // cut them rather than wait; all end within a small piece of each other.
    rt().block_on(async {
        let len = 12 * 1024 * 1024;
        let w = paced(len);
        w.borrow_mut().ceiling = Some(2.0 * RATE as f64);
        let r = go(&w, split(&[len as u64], 8), 8).await;
        let w = w.borrow();
        eight_lanes_ended_together(&w, &r);
        // Each idle lane cut a piece in two once; waiting for the pieces to begin made
        // them take slivers of the one piece under way, one after another.
        assert!(r.stolen <= 8, "{} steals: {:?}", r.stolen, w.log);
    });
}
