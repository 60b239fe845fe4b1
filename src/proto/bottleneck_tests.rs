//! The client's loss recovery and congestion control against simulated bottlenecks, in
//! virtual time: a rate-limited link with a bounded queue (tail drop), a deep queue that
//! never drops (a buffering relay), and a peer that goes silent. The agent end runs the
//! agent's own rules ([`AgentChannel`]). The client runs the default controller unless a
//! test gives it another ([`upload_with`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelConfig, ChannelEvent};
use super::congestion::Controller;
use super::message::Message;
use super::sim::{Link, Rng};
use super::test_agent::AgentChannel;

const WALL: u64 = 1_700_000_000_000;
const MS: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Report {
    elapsed: Duration,
    /// Bytes of first transmissions (whole frames), and of resends.
    new_bytes: u64,
    resent_bytes: u64,
    probes: u64,
    /// When the client first heard from the agent after the path's silence, and how many
    /// payload bytes the agent still had to receive then.
    first_heard_after_silence: Option<(Duration, usize)>,
}

/// Uploads `size` random bytes from a client with the default congestion controller to
/// an agent over `c2a` (acks return over `a2c`) and reports how it went.
fn upload(size: usize, c2a: Link, a2c: Link, seed: u64) -> (Report, Link) {
    let t0 = Instant::now();
    upload_with(
        Channel::new(ChannelConfig::client(), t0, WALL, 1),
        size,
        c2a,
        a2c,
        seed,
    )
}

/// [`upload`] from the client channel `c`, whatever controller it runs.
fn upload_with(
    mut c: Channel,
    size: usize,
    mut c2a: Link,
    mut a2c: Link,
    seed: u64,
) -> (Report, Link) {
    let t0 = Instant::now();
    let data = Rng::new(seed).bytes(size);
    let mut a = AgentChannel::new(t0, WALL, 2);
    let mut seen = HashSet::new();
    let (mut new_bytes, mut resent_bytes) = (0u64, 0u64);
    let mut sent = 0;
    let mut got = Vec::with_capacity(size);
    let mut first_heard = None;
    let silence_end = c2a.silent.map(|(_, end)| end);
    let mut now = t0;
    for step in 0u64.. {
        assert!(step < 5_000_000, "simulation did not converge");
        while sent < size && c.window_available() > 0 {
            let end = (sent + 1024).min(size);
            c.send_data(now, &data[sent..end]);
            sent = end;
        }
        while let Some(f) = c.poll_transmit() {
            let seq = Message::decode(&f).unwrap().sequence_number;
            if seen.insert(seq) {
                new_bytes += f.len() as u64;
            } else {
                resent_bytes += f.len() as u64;
            }
            c2a.send(now, f);
        }
        while let Some(f) = a.poll_transmit() {
            a2c.send(now, f);
        }
        for f in a2c.take_due(now) {
            if first_heard.is_none() && silence_end.is_some_and(|end| now >= end) {
                first_heard = Some((now - t0, size - got.len()));
            }
            c.handle_frame(now, &f).unwrap();
        }
        for f in c2a.take_due(now) {
            a.handle_frame(now, &f).unwrap();
        }
        while let Some(ev) = a.poll_event() {
            if let ChannelEvent::Message(m) = ev {
                got.extend(m.payload);
            }
        }
        c.handle_timeout(now).unwrap();
        a.handle_timeout(now).unwrap();
        if got.len() == size && c.unacked() == 0 {
            break;
        }
        let next = [
            c.poll_timeout(),
            a.poll_timeout(),
            c2a.next_arrival(),
            a2c.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min();
        let can_send = sent < size && c.window_available() > 0;
        now = match next {
            Some(t) if !can_send => t.max(now + Duration::from_micros(1)),
            _ => now + Duration::from_micros(100),
        };
    }
    assert!(got == data, "bytes differ");
    let report = Report {
        elapsed: now - t0,
        new_bytes,
        resent_bytes,
        probes: c.stats().probes,
        first_heard_after_silence: first_heard,
    };
    (report, c2a)
}

fn goodput_ratio(r: &Report, rate: u64) -> f64 {
    r.new_bytes as f64 / r.elapsed.as_secs_f64() / rate as f64
}

#[test]
fn a_clean_bottleneck_is_filled_without_needless_resends() {
    const RATE: u64 = 1_000_000;
    for (seed, queue) in [(1, 64), (2, 32), (3, 200)] {
        let c2a = Link::bottleneck(seed, 20 * MS, RATE, queue);
        let a2c = Link::new(seed ^ 9, 20 * MS);
        let (r, link) = upload(4 << 20, c2a, a2c, seed);
        let ratio = goodput_ratio(&r, RATE);
        eprintln!(
            "queue {queue}: goodput {ratio:.3}, {r:?}, overflowed {}",
            link.overflowed
        );
        assert!(
            ratio >= 0.9,
            "queue {queue}: goodput {ratio:.3} of the bottleneck ({r:?})"
        );
        assert!(
            r.resent_bytes * 20 <= r.new_bytes,
            "queue {queue}: resent {} of {} bytes ({} overflowed)",
            r.resent_bytes,
            r.new_bytes,
            link.overflowed
        );
    }
}

#[test]
fn a_buffering_relay_is_not_flooded() {
    // A queue that never drops (a relay or gateway that buffers): only the delay signal
    // can tell the sender to slow down. The queue stays within a few tens of ms of data
    // instead of the whole 4 MiB send window.
    const RATE: u64 = 2_000_000;
    let c2a = Link::bottleneck(5, 10 * MS, RATE, usize::MAX);
    let a2c = Link::new(6, 10 * MS);
    let (r, link) = upload(8 << 20, c2a, a2c, 5);
    let ratio = goodput_ratio(&r, RATE);
    eprintln!(
        "deep queue: goodput {ratio:.3}, max queued {}, {r:?}",
        link.max_queued
    );
    assert!(ratio >= 0.9, "{r:?}");
    assert_eq!(r.resent_bytes, 0, "{r:?}");
    // 2 MB/s for max(min RTT, 25 ms) of queueing is ~44 frames; slow start's last round
    // overshoots it (the delay signal is judged once per round trip). Without the window
    // the queue would take the whole 4096-message send window.
    assert!(
        link.max_queued <= 512,
        "queue reached {} frames",
        link.max_queued
    );
}

#[test]
fn a_silent_peer_gets_a_few_probes_then_full_speed_again() {
    const RATE: u64 = 1_000_000;
    let t0 = Instant::now();
    let silence = (t0 + 500 * MS, t0 + 10_500 * MS);
    let mut c2a = Link::bottleneck(7, 20 * MS, RATE, 64);
    let mut a2c = Link::new(8, 20 * MS);
    c2a.silent = Some(silence);
    a2c.silent = Some(silence);
    // `upload` starts its own clock a moment later than t0; the silence is absolute.
    let (r, link) = upload(3 << 20, c2a, a2c, 7);
    // The window's worth already on its way when acks stopped is sent within the first
    // round trip; after that only probes, backing off.
    let later = link
        .silenced
        .iter()
        .filter(|t| **t >= silence.0 + 200 * MS)
        .count();
    assert!(
        later <= 8,
        "{later} transmissions into the silence after its first 200 ms ({} in all)",
        link.silenced.len()
    );
    assert!(link.silenced.len() <= 100, "{}", link.silenced.len());
    assert!(r.probes <= 12, "{r:?}");
    eprintln!("silence: {} sent into it, {r:?}", link.silenced.len());
    let (heard, remaining) = r.first_heard_after_silence.expect("the peer came back");
    // From the first ack after the silence, the rest goes at the bottleneck's rate
    // after a few round trips of slow start.
    let after = r.elapsed - heard;
    let at_full_rate = Duration::from_secs_f64(remaining as f64 * 1.12 / RATE as f64);
    assert!(
        after <= at_full_rate + 400 * MS,
        "{after:?} for the last {remaining} bytes ({r:?})"
    );
}

#[test]
fn loss_duplication_and_reordering_through_a_bottleneck_arrive_intact() {
    for seed in [21, 22, 23] {
        let mut c2a = Link::bottleneck(seed, 15 * MS, 2_000_000, 100);
        c2a.loss = 0.05;
        c2a.duplicate = 0.05;
        c2a.reorder = 0.05;
        let a2c = Link::impaired(seed ^ 3, 15 * MS, 0.05, 0.05, 0.05);
        upload(1 << 20, c2a, a2c, seed);
    }
}

#[test]
fn scheduling_noise_does_not_starve_a_long_fat_path() {
    // 4 MB/s behind 40 ms of RTT (a BDP of ~140 messages), and 2 % of acks held up to
    // 80 ms, as a busy machine's scheduler does: the delay signal fires now and then,
    // and the window must grow back quickly after each reduction.
    const RATE: u64 = 4_000_000;
    for seed in [31, 32, 33] {
        let c2a = Link::bottleneck(seed, 20 * MS, RATE, usize::MAX);
        let mut a2c = Link::new(seed ^ 5, 20 * MS);
        a2c.reorder = 0.02;
        a2c.reorder_spread = 80 * MS;
        let (r, link) = upload(16 << 20, c2a, a2c, seed);
        let ratio = goodput_ratio(&r, RATE);
        eprintln!(
            "noisy long path: goodput {ratio:.3}, max queued {}, {r:?}",
            link.max_queued
        );
        assert!(ratio >= 0.8, "goodput {ratio:.3} ({r:?})");
        assert!(r.resent_bytes * 10 <= r.new_bytes, "{r:?}");
    }
}

/// A controller that never changes its window: the simplest other algorithm.
struct FixedWindow(usize);

impl Controller for FixedWindow {
    fn on_ack(&mut self, _now: Instant, _sent: Instant, _sample: Option<Duration>) {}
    fn on_loss(&mut self, _now: Instant, _sent: Instant) {}
    fn on_persistent_congestion(&mut self, _now: Instant) {}
    fn on_reconnect(&mut self, _now: Instant) {}
    fn window(&self) -> usize {
        self.0
    }
}

fn fixed_window_client(window: usize) -> Channel {
    let config = ChannelConfig::client();
    Channel::with_controller(
        config,
        Box::new(FixedWindow(window)),
        Instant::now(),
        WALL,
        1,
    )
}

#[test]
fn the_simulations_run_any_controller() {
    const RATE: u64 = 1_000_000;
    // 16 messages per round trip of ~41 ms (40 ms of delay, one frame's serialisation):
    // ~0.41 of the bottleneck, never a queue longer than the window, nothing lost. The
    // default controller fills the same path (the first test above).
    let c2a = Link::bottleneck(41, 20 * MS, RATE, 64);
    let a2c = Link::new(42, 20 * MS);
    let (r, link) = upload_with(fixed_window_client(16), 1 << 20, c2a, a2c, 41);
    let ratio = goodput_ratio(&r, RATE);
    eprintln!(
        "fixed window 16: goodput {ratio:.3}, max queued {}, {r:?}",
        link.max_queued
    );
    assert!((0.3..=0.5).contains(&ratio), "goodput {ratio:.3} ({r:?})");
    assert!(link.max_queued <= 16, "queue reached {}", link.max_queued);
    assert_eq!(r.resent_bytes, 0, "{r:?}");
    // A fixed window of 300 over a path that holds ~40 in flight and 64 queued: it never
    // backs off, so the queue overflows and the channel's loss recovery resends, yet every
    // byte arrives (upload_with checks them).
    let c2a = Link::bottleneck(43, 20 * MS, RATE, 64);
    let a2c = Link::new(44, 20 * MS);
    let (r, link) = upload_with(fixed_window_client(300), 1 << 20, c2a, a2c, 43);
    eprintln!("fixed window 300: overflowed {}, {r:?}", link.overflowed);
    assert!(link.overflowed > 0, "{r:?}");
    assert!(r.resent_bytes > 0, "{r:?}");
}
