//! TCP as a closed port answers it. sluice carries streams inside UDP, so a
//! TCP segment that reaches a data address (a kernel TCP client connecting to
//! it) finds nothing there: it is refused with a reset at once, as RFC 9293
//! (3.10.7.1) prescribes for a CLOSED connection, instead of leaving the
//! client to retry its SYN for minutes. Resets are rate limited per interface
//! so that the stack cannot be used as a reflector.

use crate::wire::{TcpFlags, TcpHeader};

/// How many resets an interface may send: one per `interval_ns` on average,
/// at most `burst` back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpResetLimit {
    pub interval_ns: u64,
    pub burst: u32,
}

impl Default for TcpResetLimit {
    /// 1000 resets per second, 50 back to back (Linux's global ICMP limits).
    fn default() -> Self {
        TcpResetLimit {
            interval_ns: 1_000_000,
            burst: 50,
        }
    }
}

/// A token bucket kept as nanoseconds of credit; it starts full.
#[derive(Clone, Copy, Debug)]
pub struct ResetLimiter {
    limit: TcpResetLimit,
    credit_ns: u64,
    last: u64,
}

impl ResetLimiter {
    pub fn new(limit: TcpResetLimit) -> Self {
        ResetLimiter {
            limit,
            credit_ns: limit.interval_ns.saturating_mul(limit.burst as u64),
            last: 0,
        }
    }

    /// True (and one reset's credit spent) if a reset may go out at `now`.
    pub fn allow(&mut self, now: u64) -> bool {
        let cap = self
            .limit
            .interval_ns
            .saturating_mul(self.limit.burst as u64);
        self.credit_ns = self
            .credit_ns
            .saturating_add(now.saturating_sub(self.last))
            .min(cap);
        self.last = self.last.max(now);
        if self.credit_ns >= self.limit.interval_ns {
            self.credit_ns -= self.limit.interval_ns;
            true
        } else {
            false
        }
    }
}

/// The reset that answers `segment` (with `payload_len` bytes of data) sent to
/// a port where nothing listens; None when `segment` is itself a reset (a reset
/// is never answered). Ports are swapped, the window is 0, and:
/// - the segment has ACK: `<SEQ=SEG.ACK><CTL=RST>`;
/// - otherwise: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, where SEG.LEN counts
///   the payload plus one for SYN and one for FIN.
pub fn reset_for(segment: &TcpHeader, payload_len: usize) -> Option<TcpHeader> {
    if segment.flags.rst {
        return None;
    }
    let (seq, ack, flags) = if segment.flags.ack {
        (
            segment.ack,
            0,
            TcpFlags {
                rst: true,
                ..TcpFlags::default()
            },
        )
    } else {
        let len = payload_len as u32 + segment.flags.syn as u32 + segment.flags.fin as u32;
        (
            0,
            segment.seq.wrapping_add(len),
            TcpFlags {
                rst: true,
                ack: true,
                ..TcpFlags::default()
            },
        )
    };
    Some(TcpHeader {
        src_port: segment.dst_port,
        dst_port: segment.src_port,
        seq,
        ack,
        flags,
        window: 0,
    })
}
