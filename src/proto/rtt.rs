//! Retransmission timeout estimator, with the constants both AWS peers use (docs/protocol.md §6.3).
//!
//! RFC 6298 arithmetic: `RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|`, `SRTT = 7/8 SRTT + 1/8 R`,
//! `RTO = SRTT + max(G, 4 RTTVAR)` with G = 10 ms and a 1 s cap. Unlike the plugin, callers
//! feed only samples from messages sent once (Karn's rule), so a retransmission that is
//! acked late cannot inflate or shrink the estimate. The 1 s cap is the agent's; our
//! client's probe timeout ([`super::recovery`]) is computed from SRTT and RTTVAR with its
//! own floor, cap and backoff, so samples can never get stuck behind a too-short timer.

use std::time::Duration;

pub const INITIAL_SRTT: Duration = Duration::from_millis(100);
pub const INITIAL_RTO: Duration = Duration::from_millis(200);
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);
pub const MAX_RTO: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
    latest: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            srtt: INITIAL_SRTT,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            latest: INITIAL_SRTT,
        }
    }
}

impl RttEstimator {
    pub fn on_sample(&mut self, r: Duration) {
        self.latest = r;
        let diff = self.srtt.abs_diff(r);
        self.rttvar = self.rttvar * 3 / 4 + diff / 4;
        self.srtt = self.srtt * 7 / 8 + r / 8;
        self.rto = (self.srtt + CLOCK_GRANULARITY.max(self.rttvar * 4)).min(MAX_RTO);
    }

    pub fn rto(&self) -> Duration {
        self.rto
    }

    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The most recent sample (SRTT's initial value before the first).
    pub fn latest(&self) -> Duration {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_agents_constants() {
        let e = RttEstimator::default();
        assert_eq!(e.rto(), Duration::from_millis(200));
        assert_eq!(e.srtt(), Duration::from_millis(100));
    }

    #[test]
    fn converges_on_a_steady_rtt() {
        let mut e = RttEstimator::default();
        for _ in 0..200 {
            e.on_sample(Duration::from_millis(40));
        }
        let srtt = e.srtt().as_secs_f64() * 1000.0;
        assert!((srtt - 40.0).abs() < 0.5, "srtt {srtt}");
        // rttvar decays to ~0, so RTO = SRTT + 10 ms granularity.
        let rto = e.rto().as_secs_f64() * 1000.0;
        assert!((rto - 50.0).abs() < 1.0, "rto {rto}");
    }

    #[test]
    fn one_step_matches_hand_computation() {
        let mut e = RttEstimator::default();
        e.on_sample(Duration::from_millis(300));
        // rttvar = 0 + |100-300|/4 = 50; srtt = 87.5 + 37.5 = 125; rto = 125 + 200 = 325.
        assert_eq!(e.srtt(), Duration::from_micros(125_000));
        assert_eq!(e.rto(), Duration::from_millis(325));
    }

    #[test]
    fn capped_at_one_second() {
        let mut e = RttEstimator::default();
        for _ in 0..50 {
            e.on_sample(Duration::from_secs(5));
        }
        assert_eq!(e.rto(), MAX_RTO);
    }
}
