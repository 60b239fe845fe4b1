//! Counts of EC2 Instance Connect Endpoint tunnels (`/openTunnel`), for tests and
//! benchmarks: opened, refused, open now, bytes each way; and the per-endpoint count of
//! open tunnels that its `max_connections` is checked against. Read with
//! `Testbed::tunnel_stats` or under `eice_tunnels` at `GET /testbed/stats`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A snapshot of the counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TunnelCounts {
    /// Tunnels that passed every check and were upgraded.
    pub opened: u64,
    /// Upgrades refused (signature, endpoint, address, port, connection limit, dial).
    pub refused: u64,
    /// Tunnels open now.
    pub active: u64,
    /// Bytes from the client written to the instance.
    pub bytes_to_instance: u64,
    /// Bytes from the instance sent to the client.
    pub bytes_to_client: u64,
}

/// The live counters, shared by every tunnel.
#[derive(Default)]
pub struct TunnelStats {
    opened: AtomicU64,
    refused: AtomicU64,
    bytes_to_instance: AtomicU64,
    bytes_to_client: AtomicU64,
    /// Endpoint ID -> tunnels open through it now.
    open: Mutex<HashMap<String, u32>>,
}

/// One open tunnel's place in its endpoint's count; dropping it gives the place back.
pub struct TunnelSlot {
    stats: Arc<TunnelStats>,
    endpoint: String,
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        let mut open = self.stats.open_map();
        if let Some(n) = open.get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.endpoint);
            }
        }
    }
}

impl TunnelStats {
    /// Takes a place among `endpoint`'s open tunnels, or None when `limit` are open.
    pub fn try_open(self: &Arc<Self>, endpoint: &str, limit: u32) -> Option<TunnelSlot> {
        let mut open = self.open_map();
        let n = open.entry(endpoint.to_owned()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(TunnelSlot {
            stats: self.clone(),
            endpoint: endpoint.to_owned(),
        })
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_to_instance(&self, n: usize) {
        self.bytes_to_instance
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_to_client(&self, n: usize) {
        self.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TunnelCounts {
        TunnelCounts {
            opened: self.opened.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            active: self.open_map().values().map(|&n| u64::from(n)).sum(),
            bytes_to_instance: self.bytes_to_instance.load(Ordering::Relaxed),
            bytes_to_client: self.bytes_to_client.load(Ordering::Relaxed),
        }
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let stats = Arc::new(TunnelStats::default());
        let a = stats.try_open("eice-1", 2).unwrap();
        let _b = stats.try_open("eice-1", 2).unwrap();
        assert!(stats.try_open("eice-1", 2).is_none(), "third refused");
        let _other = stats.try_open("eice-2", 2).unwrap();
        assert_eq!(stats.snapshot().active, 3);
        drop(a);
        assert!(stats.try_open("eice-1", 2).is_some(), "a place came back");
        assert_eq!(stats.snapshot().opened, 4);
    }
}
