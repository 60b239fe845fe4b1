//! `--instance-write-rate`: a slow instance. The agent's writes of client data to the
//! instance side (the TCP connection of a port session, the pty of a shell) go no faster
//! than a set number of bytes per second, after a burst of [`BURST`] bytes.
//!
//! The limit is scheduled, not slept: each write is booked against a virtual finishing
//! time (`epoch + bytes booked / rate`, the GCRA form of a token bucket), so late wake-ups
//! do not add up to drift, and an idle writer gets at most one burst of credit back.
//!
//! The point is back-pressure on the data channel. The real agent runs its handlers on the
//! websocket reader (docs/protocol.md §6.4): while a write to the instance blocks, it reads no
//! further client messages and acknowledges none. The port and shell input loops do the
//! same here: they await the write (keeping only the resend timer going, as the agent's
//! resend goroutine does) before they take the next frame, and send the acknowledgement of
//! the message being written after the write.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::agent::link::ToClient;
use crate::agent::{Shared, next_timer, on_timer, sleep_opt};

/// Bytes that may be written at once, and the most an idle writer may save up: about what
/// a socket's buffers let a writer put down before a slow reader stops it.
pub const BURST: u64 = 16 * 1024;

/// A byte-rate schedule (see the module doc).
#[derive(Clone, Debug)]
pub struct WriteRate {
    bytes_per_sec: u64,
    burst: u64,
    epoch: Instant,
    booked: u64,
}

impl WriteRate {
    /// `bytes_per_sec` is at least 1.
    pub fn new(bytes_per_sec: u64, burst: u64, now: Instant) -> WriteRate {
        WriteRate {
            bytes_per_sec: bytes_per_sec.max(1),
            burst,
            epoch: now,
            booked: 0,
        }
    }

    /// Books `bytes` (at most the burst, for the schedule to hold) and returns when they
    /// may be written: now, or later if the writer is ahead of the rate.
    pub fn book(&mut self, now: Instant, bytes: u64) -> Instant {
        if self.paid_off() <= now {
            // Idle (or exactly on time): start a new schedule; credit is one burst at most.
            self.epoch = now;
            self.booked = 0;
        }
        self.booked = self.booked.saturating_add(bytes);
        let allowed = self.paid_off().checked_sub(self.time_for(self.burst));
        allowed.map_or(now, |t| t.max(now))
    }

    /// When everything booked so far has been paid for at the rate.
    fn paid_off(&self) -> Instant {
        self.epoch + self.time_for(self.booked)
    }

    fn time_for(&self, bytes: u64) -> Duration {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.bytes_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A session's limit on writes to the instance side: none, or one schedule shared by all
/// of the session's instance-side sockets (a slow instance, not a slow connection).
#[derive(Clone, Debug, Default)]
pub struct InstanceRate(Option<Arc<Mutex<WriteRate>>>);

impl InstanceRate {
    pub fn new(bytes_per_sec: Option<u64>) -> InstanceRate {
        InstanceRate(
            bytes_per_sec.map(|r| Arc::new(Mutex::new(WriteRate::new(r, BURST, Instant::now())))),
        )
    }

    /// Largest piece to book at once.
    fn piece(&self) -> usize {
        match self.0 {
            Some(_) => BURST as usize,
            None => usize::MAX,
        }
    }

    /// When `bytes` may be written; `None` when now (or there is no limit). Never a
    /// sleep to the present: the timer rounds up to its next millisecond tick, which would
    /// cap the rate at one write per millisecond.
    fn due(&self, bytes: usize) -> Option<Instant> {
        let rate = self.0.as_ref()?;
        let mut r = rate.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        Some(r.book(now, bytes as u64)).filter(|due| *due > now)
    }
}

/// Writes client data to the instance side at the session's rate, on the agent's input
/// path: the caller takes no further frame until this returns. The resend timer keeps
/// running meanwhile.
pub(crate) async fn write_instance<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    rate: &InstanceRate,
    ch: &Shared,
    out: &ToClient,
) -> io::Result<()> {
    for piece in data.chunks(rate.piece()) {
        if let Some(due) = rate.due(piece.len()) {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    _ = sleep_opt(next_timer(ch)) => on_timer(ch, out),
                }
            }
        }
        let mut rest = piece;
        while !rest.is_empty() {
            tokio::select! {
                // `write` is cancel-safe: a write the timer interrupts wrote nothing.
                n = w.write(rest) => match n? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => rest = rest.get(n..).unwrap_or_default(),
                },
                _ = sleep_opt(next_timer(ch)) => on_timer(ch, out),
            }
        }
    }
    Ok(())
}

/// [`write_instance`] for a writer of its own (the smux mode's per-stream copy tasks),
/// with no channel timer to keep.
pub(crate) async fn write_rated<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    rate: &InstanceRate,
) -> io::Result<()> {
    for piece in data.chunks(rate.piece()) {
        if let Some(due) = rate.due(piece.len()) {
            tokio::time::sleep_until(due).await;
        }
        w.write_all(piece).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_goes_at_once_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut r = WriteRate::new(1000, 100, t0);
        assert_eq!(r.book(t0, 100), t0);
        assert_eq!(r.book(t0, 100), t0 + 100 * MS);
        assert_eq!(r.book(t0, 50), t0 + 150 * MS);
        // A writer that wakes late may write at once, and the next booking keeps to the
        // schedule (260 ms less the burst), not to its wake-up time: no drift.
        assert_eq!(r.book(t0 + 170 * MS, 10), t0 + 170 * MS);
        assert_eq!(r.book(t0 + 170 * MS, 100), t0 + 260 * MS);
    }

    #[test]
    fn the_schedule_does_not_drift_over_many_late_writes() {
        let t0 = Instant::now();
        let mut r = WriteRate::new(2_000_000, BURST, t0);
        let mut now = t0;
        for _ in 0..10_000 {
            let due = r.book(now, 1024);
            // Each wake-up comes 37 µs late.
            now = due.max(now) + Duration::from_micros(37);
        }
        // 10 000 KiB at 2 MB/s less the 16 KiB burst: 5.12 s - 8.192 ms, plus one lateness.
        let want = t0 + Duration::from_nanos(5_120_000_000 - 8_192_000);
        let last_due = now - Duration::from_micros(37);
        assert_eq!(last_due, want);
    }

    #[test]
    fn an_idle_writer_saves_up_one_burst_only() {
        let t0 = Instant::now();
        let mut r = WriteRate::new(1000, 100, t0);
        assert_eq!(r.book(t0, 100), t0);
        // Ten seconds idle: one burst at once again, not ten seconds' worth.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(r.book(t1, 100), t1);
        assert_eq!(r.book(t1, 100), t1 + 100 * MS);
    }

    #[test]
    fn tiny_rates_and_huge_bookings_do_not_overflow() {
        let t0 = Instant::now();
        let mut r = WriteRate::new(1, BURST, t0);
        assert_eq!(r.book(t0, BURST), t0);
        assert_eq!(r.book(t0, 1), t0 + Duration::from_secs(1));
        let mut zero = WriteRate::new(0, 0, t0);
        assert_eq!(zero.book(t0, 3), t0 + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn instance_writes_keep_the_rate() {
        let rate = InstanceRate::new(Some(10 * 1024));
        let (mut w, mut r) = tokio::io::duplex(1 << 20);
        let t0 = Instant::now();
        // 16 KiB burst, then 10 KiB/s: 36 KiB take 2 s.
        write_rated(&mut w, &[7u8; 36 * 1024], &rate).await.unwrap();
        let took = Instant::now() - t0;
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2005),
            "{took:?}"
        );
        drop(w);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got)
            .await
            .unwrap();
        assert_eq!(got.len(), 36 * 1024);
    }
}
