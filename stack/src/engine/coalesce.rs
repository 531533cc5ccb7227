//! Transmit coalescing for datagram sends: an application that sends datagrams back to back
//! hands them to the device a burst at a time (one af_packet system call per burst, not per
//! datagram), while a lone datagram, or the first after a pause, goes at once.
//!
//! A send is *back to back* when it comes within [`BACK_TO_BACK_NS`] of the end of the previous
//! one (a send that handed frames to the device ends when that system call returns: on a veth
//! it forwards the frames through the kernel and takes longer than the gap itself). Such
//! sends wait until [`BURST`] frames are pending or the oldest has waited [`LONGEST_WAIT_NS`];
//! whatever is still pending when the application stops sending goes with the next poll of the
//! stack: the application's next call that waits or polls, or the helper thread's pass (it naps
//! 20 us at a time while traffic flows). A ping-pong, whose sends are a round trip apart, never
//! waits.

/// Sends closer together than this are back to back, ns.
pub(crate) const BACK_TO_BACK_NS: u64 = 5_000;
/// The longest a back-to-back datagram waits for the rest of its burst, ns.
pub(crate) const LONGEST_WAIT_NS: u64 = 20_000;
/// Frames handed to the device at once.
pub(crate) const BURST: usize = super::TX_BURST;

/// The coalescing state of one port.
#[derive(Debug, Default)]
pub(crate) struct Coalesce {
    last_send: Option<u64>,
    pending: usize,
    oldest: u64,
}

impl Coalesce {
    /// A datagram was queued at `now`: true when the port's frames should go to the device
    /// now (the caller flushes and calls [`Coalesce::flushed`]).
    pub(crate) fn on_send(&mut self, now: u64) -> bool {
        let back_to_back = self
            .last_send
            .is_some_and(|t| now.saturating_sub(t) <= BACK_TO_BACK_NS);
        self.last_send = Some(now);
        if self.pending == 0 {
            self.oldest = now;
        }
        self.pending += 1;
        !back_to_back || self.pending >= BURST || now.saturating_sub(self.oldest) >= LONGEST_WAIT_NS
    }

    /// The port's frames went to the device.
    pub(crate) fn flushed(&mut self) {
        self.pending = 0;
    }

    /// The send that flushed returned at `now`: the next one is back to back if it comes
    /// soon after this, however long the device took.
    pub(crate) fn returned(&mut self, now: u64) {
        self.last_send = Some(now);
    }

    /// Datagrams waiting for the rest of their burst.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_datagram_and_a_ping_pong_go_at_once() {
        let mut c = Coalesce::default();
        assert!(c.on_send(1_000_000), "the first datagram");
        c.flushed();
        // A round trip later (10 us): not back to back.
        assert!(c.on_send(1_010_000));
        c.flushed();
        assert!(c.on_send(1_020_000));
    }

    #[test]
    fn back_to_back_datagrams_go_a_burst_at_a_time() {
        let mut c = Coalesce::default();
        let mut t = 1_000_000;
        assert!(c.on_send(t));
        c.flushed();
        let mut flushes = Vec::new();
        for i in 1..=100 {
            t += 300; // 0.3 us apart: 32 of them take under 10 us
            if c.on_send(t) {
                flushes.push(i);
                c.flushed();
            }
        }
        assert_eq!(flushes, vec![32, 64, 96]);
        assert_eq!(c.pending(), 4, "the tail waits for the next poll");
    }

    #[test]
    fn a_sender_whose_flushes_take_longer_than_the_gap_still_gets_bursts() {
        let mut c = Coalesce::default();
        let mut t = 1_000_000;
        let mut flushes = 0;
        for _ in 0..320 {
            if c.on_send(t) {
                flushes += 1;
                c.flushed();
                t += 6_000; // the device's system call: longer than BACK_TO_BACK_NS
                c.returned(t);
            }
            t += 500; // the application's own work between two sends
        }
        assert!(flushes <= 11, "{flushes} flushes for 320 datagrams");
    }

    #[test]
    fn a_slow_stream_of_back_to_back_sends_waits_at_most_the_longest_wait() {
        let mut c = Coalesce::default();
        let mut t = 1_000_000;
        assert!(c.on_send(t));
        c.flushed();
        let mut last_flush = t;
        for _ in 0..1000 {
            t += 4_000; // back to back, but only 5 fit in the longest wait
            if c.on_send(t) {
                assert!(t - last_flush <= LONGEST_WAIT_NS + 4_000);
                last_flush = t;
                c.flushed();
            }
        }
        assert!(c.pending() < 6);
    }
}
