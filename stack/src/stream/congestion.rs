//! Congestion control: how much a connection may have in flight.
//!
//! The connection reports acknowledgements, losses and timeouts; the
//! controller answers with a congestion window in bytes. Two controllers
//! exist: [`NewReno`] (RFC 5681 / 6582) and [`Cubic`] (RFC 9438), chosen per
//! connection by [`CongestionKind`].

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

/// Initial window in segments (RFC 6928).
pub const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// A congestion controller.
pub trait Congestion: Send {
    /// The congestion window, bytes.
    fn window(&self) -> usize;
    /// `acked` new bytes were acknowledged at `now`; `rtt` is a fresh RTT
    /// sample (ns) if this ACK gave one; `in_flight` is what was in flight
    /// before the ACK.
    fn on_ack(&mut self, now: u64, acked: usize, rtt: Option<u64>, in_flight: usize);
    /// Loss detected by fast retransmit or SACK (called once per recovery episode).
    fn on_loss(&mut self, now: u64, in_flight: usize);
    /// The retransmission timer expired: back to one segment.
    fn on_timeout(&mut self, now: u64);
    /// The controller's name, for statistics.
    fn name(&self) -> &'static str;
    /// The slow-start threshold, bytes (`usize::MAX` while unset).
    fn ssthresh(&self) -> usize {
        usize::MAX
    }
}

/// Which controller a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionKind {
    /// RFC 5681 / 6582.
    NewReno,
    /// RFC 9438 (the default, as on Linux).
    #[default]
    Cubic,
}

/// A fresh controller of `kind` for segments of `mss` bytes.
pub fn new_congestion(kind: CongestionKind, mss: usize) -> Box<dyn Congestion> {
    match kind {
        CongestionKind::NewReno => Box::new(NewReno::new(mss)),
        CongestionKind::Cubic => Box::new(Cubic::new(mss)),
    }
}

/// Slow-start growth shared by both controllers: the window grows by the
/// bytes acknowledged, at most two segments per ACK (RFC 3465, L = 2), and
/// only while the sender is actually using the window.
fn slow_start(cwnd: usize, acked: usize, mss: usize, in_flight: usize) -> usize {
    if !window_limited(cwnd, in_flight) {
        return cwnd;
    }
    cwnd.saturating_add(acked.min(2 * mss))
}

/// Whether the sender was filling the window (growing an unused window
/// would only let a later burst overrun the network).
fn window_limited(cwnd: usize, in_flight: usize) -> bool {
    in_flight.saturating_mul(2) >= cwnd
}

#[cfg(test)]
mod tests;
