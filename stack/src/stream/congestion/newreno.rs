//! NewReno (RFC 5681, RFC 6582): additive increase, halve on loss.

use super::{slow_start, window_limited, Congestion, INITIAL_WINDOW_SEGMENTS};

/// The NewReno controller.
#[derive(Clone, Debug)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged towards the next one-segment increase in
    /// congestion avoidance.
    acked_since_increase: usize,
}

impl NewReno {
    /// A controller at the initial window, no threshold yet.
    pub fn new(mss: usize) -> NewReno {
        let mss = mss.max(1);
        NewReno {
            mss,
            cwnd: INITIAL_WINDOW_SEGMENTS * mss,
            ssthresh: usize::MAX,
            acked_since_increase: 0,
        }
    }
}

impl Congestion for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, _now: u64, acked: usize, _rtt: Option<u64>, in_flight: usize) {
        if self.cwnd < self.ssthresh {
            self.cwnd =
                slow_start(self.cwnd, acked, self.mss, in_flight).min(self.ssthresh.max(self.cwnd));
            return;
        }
        if !window_limited(self.cwnd, in_flight) {
            return;
        }
        // One segment per window's worth of acknowledged bytes.
        self.acked_since_increase += acked;
        if self.acked_since_increase >= self.cwnd {
            self.acked_since_increase -= self.cwnd;
            self.cwnd += self.mss;
        }
    }

    fn on_loss(&mut self, _now: u64, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_since_increase = 0;
    }

    fn on_timeout(&mut self, _now: u64) {
        self.ssthresh = (self.cwnd / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_since_increase = 0;
    }

    fn name(&self) -> &'static str {
        "newreno"
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}
