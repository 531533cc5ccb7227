//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! The estimator keeps the smoothed RTT and its variation from samples
//! (timestamp echoes, or Karn-filtered timings of segments sent once) and
//! derives the retransmission timeout, clamped to [`MIN_RTO`, `MAX_RTO`].
//! Each expiry doubles the timeout until a new sample (or an ACK of new
//! data) clears the backoff.

/// Smallest retransmission timeout, ns. The networks sluice targets have
/// sub-millisecond RTTs, so RFC 6298's one second would stall a stream for
/// thousands of round trips; 5 ms still leaves room for a delayed ACK (1 ms)
/// and scheduling noise on the peer.
pub const MIN_RTO: u64 = 5_000_000;
/// Largest retransmission timeout, ns, backoff included.
pub const MAX_RTO: u64 = 2_000_000_000;
/// Timeout before the first sample, ns.
pub const INITIAL_RTO: u64 = 200_000_000;
/// Clock granularity G of RFC 6298, ns (our clock is fine-grained: 1 µs).
const GRANULARITY: u64 = 1_000;
/// Largest backoff shift (2^10 is far beyond MAX_RTO already).
const MAX_BACKOFF: u32 = 10;

/// RFC 6298 estimator: SRTT, RTTVAR and the backed-off RTO.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: u64,
    rttvar: u64,
    has_sample: bool,
    backoff: u32,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new()
    }
}

impl RttEstimator {
    /// An estimator with no samples (RTO = [`INITIAL_RTO`]).
    pub fn new() -> RttEstimator {
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            has_sample: false,
            backoff: 0,
        }
    }

    /// Folds in one RTT measurement, ns.
    pub fn sample(&mut self, rtt_ns: u64) {
        let rtt = rtt_ns.min(MAX_RTO * 4);
        if self.has_sample {
            // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
            let delta = self.srtt.abs_diff(rtt);
            self.rttvar = (3 * self.rttvar + delta) / 4;
            self.srtt = (7 * self.srtt + rtt) / 8;
        } else {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.has_sample = true;
        }
    }

    /// Whether any sample has been taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// Smoothed RTT, ns (0 before the first sample).
    pub fn srtt(&self) -> u64 {
        self.srtt
    }

    /// RTT variation, ns.
    pub fn rttvar(&self) -> u64 {
        self.rttvar
    }

    /// The retransmission timeout, ns, including backoff, in [`MIN_RTO`, `MAX_RTO`].
    pub fn rto(&self) -> u64 {
        let base = if self.has_sample {
            self.srtt + (4 * self.rttvar).max(GRANULARITY)
        } else {
            INITIAL_RTO
        };
        base.clamp(MIN_RTO, MAX_RTO)
            .saturating_mul(1 << self.backoff)
            .min(MAX_RTO)
    }

    /// A timeout expired: double the RTO (up to [`MAX_RTO`]).
    pub fn backoff(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
    }

    /// New data was acknowledged: forget the backoff.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Number of doublings currently applied.
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_at_the_initial_timeout() {
        let r = RttEstimator::new();
        assert!(!r.has_sample());
        assert_eq!(r.rto(), INITIAL_RTO);
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variation() {
        let mut r = RttEstimator::new();
        r.sample(10 * MS);
        assert_eq!(r.srtt(), 10 * MS);
        assert_eq!(r.rttvar(), 5 * MS);
        assert_eq!(r.rto(), 30 * MS);
    }

    #[test]
    fn steady_samples_converge_and_clamp_at_the_minimum() {
        let mut r = RttEstimator::new();
        for _ in 0..100 {
            r.sample(100_000);
        }
        assert!(r.srtt().abs_diff(100_000) < 1_000);
        assert_eq!(r.rto(), MIN_RTO);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut r = RttEstimator::new();
        r.sample(10 * MS);
        r.backoff();
        assert_eq!(r.rto(), 60 * MS);
        for _ in 0..20 {
            r.backoff();
        }
        assert_eq!(r.rto(), MAX_RTO);
        r.reset_backoff();
        assert_eq!(r.rto(), 30 * MS);
    }

    #[test]
    fn huge_samples_do_not_overflow() {
        let mut r = RttEstimator::new();
        r.sample(u64::MAX);
        r.sample(u64::MAX);
        assert_eq!(r.rto(), MAX_RTO);
    }
}
