//! CUBIC (RFC 9438): after a loss the window follows a cubic curve that
//! plateaus at the window where the loss happened, then probes beyond it;
//! a Reno-equivalent estimate keeps it no slower than NewReno on short RTTs.

use super::{slow_start, window_limited, Congestion, INITIAL_WINDOW_SEGMENTS};

/// The cubic scaling constant C, segments / s^3.
const C: f64 = 0.4;
/// Multiplicative decrease factor.
const BETA: f64 = 0.7;
/// Reno-friendly additive increase per RTT, segments: 3 (1 - β) / (1 + β).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
const NS_PER_S: f64 = 1e9;

/// The CUBIC controller.
#[derive(Clone, Debug)]
pub struct Cubic {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Window before the last reduction, segments.
    w_max: f64,
    /// Time to climb back to `w_max`, seconds.
    k: f64,
    /// Start of the current congestion-avoidance epoch, ns.
    epoch_start: Option<u64>,
    /// The Reno-friendly window estimate, segments.
    w_est: f64,
    /// The latest RTT sample, ns.
    rtt: u64,
}

impl Cubic {
    /// A controller at the initial window, no threshold yet.
    pub fn new(mss: usize) -> Cubic {
        let mss = mss.max(1);
        Cubic {
            mss,
            cwnd: INITIAL_WINDOW_SEGMENTS * mss,
            ssthresh: usize::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch_start: None,
            w_est: 0.0,
            rtt: 0,
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }

    fn reduce(&mut self) {
        let cwnd = self.segments();
        // Fast convergence: a flow losing below its last maximum yields.
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.ssthresh = ((self.cwnd as f64 * BETA) as usize).max(2 * self.mss);
        self.epoch_start = None;
    }

    fn avoid_congestion(&mut self, now: u64, acked: usize) {
        let cwnd = self.segments();
        let start = match self.epoch_start {
            Some(start) => start,
            None => {
                self.epoch_start = Some(now);
                self.k = if cwnd < self.w_max {
                    ((self.w_max - cwnd) / C).cbrt()
                } else {
                    self.w_max = cwnd;
                    0.0
                };
                self.w_est = cwnd;
                now
            }
        };
        let t = (now.saturating_sub(start) + self.rtt) as f64 / NS_PER_S;
        let cubic = C * (t - self.k).powi(3) + self.w_max;
        let acked_segments = acked as f64 / self.mss as f64;
        self.w_est += ALPHA * acked_segments / cwnd;
        let target = if self.w_est > cubic {
            self.w_est
        } else {
            cubic.clamp(cwnd, 1.5 * cwnd)
        };
        if target > cwnd {
            let grow = (target - cwnd) / cwnd * acked_segments;
            let grow_bytes = (grow * self.mss as f64) as usize;
            self.cwnd = self.cwnd.saturating_add(grow_bytes.min(acked));
        }
    }
}

impl Congestion for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, now: u64, acked: usize, rtt: Option<u64>, in_flight: usize) {
        if let Some(rtt) = rtt {
            self.rtt = rtt;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd =
                slow_start(self.cwnd, acked, self.mss, in_flight).min(self.ssthresh.max(self.cwnd));
            return;
        }
        if window_limited(self.cwnd, in_flight) {
            self.avoid_congestion(now, acked);
        }
    }

    fn on_loss(&mut self, _now: u64, _in_flight: usize) {
        self.reduce();
        self.cwnd = self.ssthresh;
    }

    fn on_timeout(&mut self, _now: u64) {
        self.reduce();
        self.cwnd = self.mss;
    }

    fn name(&self) -> &'static str {
        "cubic"
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}
