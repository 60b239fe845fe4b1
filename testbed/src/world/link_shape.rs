//! One direction of a network path as the testbed shapes it: a fixed latency, a
//! bottleneck rate and jitter (`serve --rtt`, `--relay-rate`, `--jitter`), shared by the
//! MGS relay's data channels and the EC2 Instance Connect Endpoint tunnels, so both can
//! be compared on one link.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// One direction of a path, as a network shapes it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkShape {
    /// Fixed latency (half the configured RTT).
    pub one_way: Duration,
    /// `--relay-rate`: bytes per second the direction carries; frames queue behind each
    /// other at that rate (a bottleneck link). `None`: no limit.
    pub rate: Option<u64>,
    /// `--jitter`: each frame waits up to this much longer (uniformly at random), never
    /// overtaking the one before it: a link that varies its delay but does not reorder.
    pub jitter: Duration,
}

impl LinkShape {
    pub fn is_instant(&self) -> bool {
        self.one_way.is_zero() && self.rate.is_none() && self.jitter.is_zero()
    }
}

/// Forwards items through a link of `shape`, keeping their order: each waits for the
/// frames ahead of it to be serialised at the rate, then the latency and jitter. Items
/// keep whatever they hold (tokens) until they are dropped downstream, so the relay's
/// queue bound covers the link too. `size` gives an item's bytes on the wire.
pub fn delay_line<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
    shape: LinkShape,
    size: fn(&T) -> usize,
) -> mpsc::UnboundedReceiver<T> {
    if shape.is_instant() {
        return rx;
    }
    let (tx, out) = mpsc::unbounded_channel();
    let (stamp_tx, mut stamped) = mpsc::unbounded_channel::<(Instant, T)>();
    tokio::spawn(async move {
        // When the link finishes sending what it has, and when the last frame arrives.
        let mut free_at = Instant::now();
        let mut last_due = Instant::now();
        while let Some(item) = rx.recv().await {
            let now = Instant::now();
            let mut sent = now;
            if let Some(rate) = shape.rate {
                let wire = Duration::from_secs_f64(size(&item) as f64 / rate.max(1) as f64);
                free_at = free_at.max(now) + wire;
                sent = free_at;
            }
            let extra = if shape.jitter.is_zero() {
                Duration::ZERO
            } else {
                shape.jitter.mul_f64(rand::random::<f64>())
            };
            last_due = last_due.max(sent + shape.one_way + extra);
            if stamp_tx.send((last_due, item)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((due, item)) = stamped.recv().await {
            tokio::time::sleep_until(due).await;
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` items of `bytes` each at once and returns when each came out, relative to
    /// the start (virtual time).
    async fn arrivals(shape: LinkShape, n: usize, bytes: usize) -> Vec<Duration> {
        let start = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut out = delay_line(rx, shape, |v| v.len());
        for i in 0..n {
            tx.send(vec![i as u8; bytes]).unwrap();
        }
        let mut got = Vec::new();
        for i in 0..n {
            let item = out.recv().await.unwrap();
            assert_eq!(item[0], i as u8, "order kept");
            got.push(Instant::now() - start);
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_serialises_frames_behind_each_other() {
        let shape = LinkShape {
            one_way: Duration::from_millis(20),
            rate: Some(10_000),
            jitter: Duration::ZERO,
        };
        let t = arrivals(shape, 10, 1_000).await;
        // 1 000 bytes at 10 000 B/s: 100 ms each, then 20 ms of latency.
        for (i, at) in t.iter().enumerate() {
            let ideal = Duration::from_millis(100 * (i as u64 + 1) + 20);
            assert!(at.abs_diff(ideal) < Duration::from_millis(5), "{i}: {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_within_its_bound_and_never_reorders() {
        let shape = LinkShape {
            one_way: Duration::from_millis(10),
            rate: None,
            jitter: Duration::from_millis(5),
        };
        let t = arrivals(shape, 200, 10).await;
        assert!(t.iter().all(|at| *at >= Duration::from_millis(10)));
        assert!(t.iter().all(|at| *at <= Duration::from_millis(16)));
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        // Jitter, not a constant: the arrivals spread.
        assert!(t[0] < t[199] || t.iter().any(|at| *at > Duration::from_millis(11)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_shape_is_a_passthrough() {
        let t = arrivals(LinkShape::default(), 3, 100).await;
        assert!(t.iter().all(|at| at.is_zero()));
    }
}
