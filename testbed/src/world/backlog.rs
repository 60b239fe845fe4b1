//! A count of what a queue holds, for bounding queues whose items travel through several
//! channels and tasks (the relay's delay line, the agent's inbox): each item carries a
//! [`Token`] worth some units (messages or bytes) and gives them back when it is dropped,
//! wherever that happens. The producer waits for room with [`Backlog::wait_below`] before
//! it takes more from its source, which is how a full queue becomes back-pressure.
//!
//! The count also keeps its high-water mark, so tests and benchmarks can check a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Backlog {
    held: AtomicUsize,
    peak: AtomicUsize,
    changed: Notify,
}

/// Units held in a [`Backlog`] until this is dropped.
#[derive(Debug)]
pub struct Token {
    backlog: Arc<Backlog>,
    units: usize,
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.units > 0 {
            self.backlog.held.fetch_sub(self.units, Ordering::AcqRel);
            self.backlog.changed.notify_waiters();
        }
    }
}

impl Backlog {
    pub fn new() -> Arc<Backlog> {
        Arc::new(Backlog::default())
    }

    /// Counts `units` more until the returned token is dropped. Never refuses: callers
    /// that must stay under a bound wait with [`Backlog::wait_below`] first.
    pub fn hold(self: &Arc<Self>, units: usize) -> Token {
        let now = self.held.fetch_add(units, Ordering::AcqRel) + units;
        self.peak.fetch_max(now, Ordering::AcqRel);
        self.changed.notify_waiters();
        Token {
            backlog: self.clone(),
            units,
        }
    }

    /// What is held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// The most ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    /// Returns once fewer than `limit` units are held.
    pub async fn wait_below(&self, limit: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a drop between check and await still wakes us.
            changed.as_mut().enable();
            if self.held() < limit {
                return;
            }
            changed.await;
        }
    }

    /// Returns once exactly `units` are held (for tests: "the queue filled up to here").
    pub async fn wait_for(&self, units: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.held() == units {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_give_back_what_they_hold_and_wake_waiters() {
        let b = Backlog::new();
        let one = b.hold(1);
        let three = b.hold(3);
        assert_eq!((b.held(), b.peak()), (4, 4));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait_below(2).await })
        };
        drop(three);
        assert_eq!(b.held(), 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
        drop(one);
        assert_eq!((b.held(), b.peak()), (0, 4));
        b.wait_below(1).await;
    }
}
