//! The paths of a connection: one per working pair of a local data port and a peer address.
//!
//! Path 0 is the pair the handshake used; the endpoint adds the others once both sides have
//! announced their addresses. Each path has its own round-trip estimate, congestion window,
//! retransmission timer and loss recovery; the connection's sequence space, send and receive
//! buffers are shared by all of them, and a segment may be resent on any path.
//!
//! A path is *Unverified* until a probe sent on it is answered, *Active* while it carries
//! data, and *Failed* after its local port lost its link or its retransmission timer fired
//! while another path still worked. What a failed path had in flight is resent on the
//! survivors at once. Unverified and failed paths are probed (a PROBE segment, which the peer
//! answers with an ACK on the same path), at first every [`PROBE_MIN`] and backing off to
//! [`PROBE_MAX`]; an answer that echoes a probe makes the path Active again (fail-back).

use super::{seq_diff, ts_of, Connection, Phase, MS};
use crate::stream::congestion::{new_congestion, Congestion};
use crate::stream::rtt::RttEstimator;
use crate::stream::wire::{Header, SegmentType};

pub use super::send::MAX_PATHS;

/// First probe interval of an unverified or failed path, ns.
pub const PROBE_MIN: u64 = 10 * MS;
/// Longest probe interval, ns: a path that answers again carries traffic within this.
pub const PROBE_MAX: u64 = 200 * MS;

/// Where a path is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathState {
    /// Opened after the handshake, not yet answered.
    Unverified,
    /// Carries data.
    Active,
    /// Link down or silent: only probes go there.
    Failed,
}

impl PathState {
    pub fn name(self) -> &'static str {
        match self {
            PathState::Unverified => "unverified",
            PathState::Active => "active",
            PathState::Failed => "failed",
        }
    }
}

/// Why a path failed (for the stats and the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The local port lost its link.
    LinkDown,
    /// Its retransmission timer fired while another path worked.
    Silent,
}

/// A path's counters and estimates, for sluice-stat.
#[derive(Clone, Debug)]
pub struct PathStats {
    pub state: PathState,
    pub srtt_us: u64,
    pub rto_us: u64,
    pub cwnd: usize,
    pub in_flight: u64,
    pub segments_sent: u64,
    pub bytes_sent: u64,
    pub retransmits: u64,
    /// Records sent here that were judged lost.
    pub losses: u64,
    pub failures: u64,
    pub last_failure: Option<FailReason>,
    pub probes: u64,
}

/// One path's transport state.
pub(super) struct Path {
    pub state: PathState,
    pub cc: Box<dyn Congestion>,
    pub rtt: RttEstimator,
    pub rto_deadline: Option<u64>,
    pub in_recovery: bool,
    /// The current recovery began with a timeout.
    pub rto_recovery: bool,
    pub recovery_end: u64,
    /// The latest timestamp received on this path (echoed by segments sent on it).
    pub ts_recent: Option<u32>,
    /// The local port's link is down: the path neither carries data nor probes.
    pub link_down: bool,
    pub probe_deadline: Option<u64>,
    pub probe_backoff: u32,
    /// Timestamp of the latest probe: an echo at or after it is an answer.
    pub probe_ts: u32,
    /// The send buffer's delivery count for this path when last looked at.
    pub deliveries_seen: u64,
    pub segments_sent: u64,
    pub bytes_sent: u64,
    pub retransmits: u64,
    pub failures: u64,
    pub last_failure: Option<FailReason>,
    pub probes: u64,
}

impl Path {
    pub fn new(cc: Box<dyn Congestion>, state: PathState) -> Path {
        Path {
            state,
            cc,
            rtt: RttEstimator::new(),
            rto_deadline: None,
            in_recovery: false,
            rto_recovery: false,
            recovery_end: 0,
            ts_recent: None,
            link_down: false,
            probe_deadline: None,
            probe_backoff: 0,
            probe_ts: 0,
            deliveries_seen: 0,
            segments_sent: 0,
            bytes_sent: 0,
            retransmits: 0,
            failures: 0,
            last_failure: None,
            probes: 0,
        }
    }

    fn probe_interval(&self) -> u64 {
        PROBE_MIN
            .saturating_mul(1 << self.probe_backoff.min(8))
            .min(PROBE_MAX)
    }
}

impl Connection {
    /// Opens paths 1..`count` (path 0 is the handshake's) after the endpoint paired the
    /// addresses both sides announced. They start unverified and are probed once the
    /// connection is synchronised.
    pub fn set_paths(&mut self, count: usize) {
        let count = count.clamp(1, MAX_PATHS);
        while self.paths.len() < count {
            let cc = new_congestion(self.config.congestion, self.mss);
            let mut path = Path::new(cc, PathState::Unverified);
            path.probe_deadline = Some(0);
            self.paths.push(path);
        }
        self.needs_poll = true;
    }

    /// The link of the port under `path` went down or came back. A path on a down link fails
    /// at the next poll when another path carries data (the last one goes on trying: a port
    /// wrongly judged down must not strand the connection); one whose link is back is probed
    /// at once.
    pub fn set_path_link(&mut self, path: usize, up: bool) {
        let Some(p) = self.paths.get_mut(path) else {
            return;
        };
        if p.link_down != up {
            return;
        }
        p.link_down = !up;
        if up {
            p.probe_backoff = 0;
            p.probe_deadline = Some(0);
        }
        self.needs_poll = true;
    }

    /// Each path's state and counters.
    pub fn path_stats(&self) -> Vec<PathStats> {
        self.paths
            .iter()
            .enumerate()
            .map(|(i, p)| PathStats {
                state: p.state,
                srtt_us: p.rtt.srtt() / 1_000,
                rto_us: p.rtt.rto() / 1_000,
                cwnd: p.cc.window(),
                in_flight: self.send.path_pipe(i),
                segments_sent: p.segments_sent,
                bytes_sent: p.bytes_sent,
                retransmits: p.retransmits,
                losses: self.send.losses(i),
                failures: p.failures,
                last_failure: p.last_failure,
                probes: p.probes,
            })
            .collect()
    }

    /// Changes whenever a path changes state (for the endpoint's log).
    pub fn path_epoch(&self) -> u32 {
        self.path_epoch
    }

    pub(super) fn multipath(&self) -> bool {
        self.paths.len() > 1
    }

    /// Whether `path` may carry data now.
    pub(super) fn usable(&self, path: usize) -> bool {
        self.paths[path].state == PathState::Active
    }

    /// Whether some path other than `path` carries data.
    pub(super) fn other_usable(&self, path: usize) -> bool {
        (0..self.paths.len()).any(|i| i != path && self.usable(i))
    }

    /// The path new data and retransmissions go on now: among the usable paths with room in
    /// their congestion window for `len` bytes, the least loaded (bytes in flight relative
    /// to its window), and of equally loaded ones the shortest smoothed RTT. Idle paths are
    /// equally loaded, so a lone message takes the fastest path; a stream of them spreads
    /// over every path in proportion to the windows. None when every usable path's window is
    /// full, or no path is usable.
    pub(super) fn pick_path(&self, len: u64) -> Option<usize> {
        let mut best: Option<((u64, u64), usize)> = None;
        for i in 0..self.paths.len() {
            if !self.usable(i) {
                continue;
            }
            let p = &self.paths[i];
            let window = p.cc.window() as u64;
            let pipe = self.send.path_pipe(i);
            let room = window.saturating_sub(pipe);
            if room == 0 || len > room {
                continue;
            }
            let key = (pipe * 1024 / window.max(1), p.rtt.srtt());
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The usable path with the shortest RTT, else path 0: keepalive and window probes, the
    /// timers that are the connection's and not a path's.
    pub(super) fn primary(&self) -> usize {
        (0..self.paths.len())
            .filter(|&i| self.usable(i))
            .min_by_key(|&i| self.paths[i].rtt.srtt())
            .unwrap_or(0)
    }

    /// The path an acknowledgement goes back on: the one the latest segment came in on, if
    /// it is not known to be broken here.
    pub(super) fn reply_path(&self) -> usize {
        let p = self.ack_path;
        if p < self.paths.len() && !self.paths[p].link_down {
            p
        } else {
            self.primary()
        }
    }

    /// Path `path` failed: what it had in flight is resent on the others.
    pub(super) fn fail_path(&mut self, path: usize, reason: FailReason, now: u64) {
        let mss = self.mss;
        let kind = self.config.congestion;
        let p = &mut self.paths[path];
        if p.state == PathState::Failed {
            return;
        }
        p.state = PathState::Failed;
        p.failures += 1;
        p.last_failure = Some(reason);
        p.rto_deadline = None;
        p.in_recovery = false;
        p.rto_recovery = false;
        p.cc = new_congestion(kind, mss);
        p.rtt.backoff();
        p.probe_backoff = 0;
        p.probe_deadline = Some(now + PROBE_MIN);
        self.path_epoch = self.path_epoch.wrapping_add(1);
        // Called from poll_transmit, which goes on to resend what was marked lost.
        self.send.mark_path_lost(path);
    }

    /// A valid segment arrived on its `path`. Its timestamp is kept for the echo on that path
    /// when `take_ts` (in order, or a probe). An echo of our latest probe there proves the
    /// path works both ways: it becomes Active (fail-back, or first use).
    pub(super) fn heard_on(&mut self, now: u64, h: &Header, take_ts: bool) {
        let path = match h.path as usize {
            p if p < self.paths.len() => p,
            _ => 0,
        };
        self.ack_path = path;
        let p = &mut self.paths[path];
        if take_ts && p.ts_recent.is_none_or(|r| seq_diff(h.ts_val, r) >= 0) {
            p.ts_recent = Some(h.ts_val);
        }
        let answered = h.flags.echo
            && p.state != PathState::Active
            && p.probes > 0
            && seq_diff(h.ts_ecr, p.probe_ts) >= 0
            && !p.link_down;
        if answered {
            p.state = PathState::Active;
            p.probe_deadline = None;
            p.rtt.reset_backoff();
            self.sample_echo(now, h.ts_ecr, path);
            self.path_epoch = self.path_epoch.wrapping_add(1);
            self.needs_poll = true;
        }
    }

    /// Paths whose link went down fail; unverified and failed ones are probed when due.
    pub(super) fn run_path_timers(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        if !self.multipath() || self.phase != Phase::Open {
            return;
        }
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            if p.link_down {
                if self.link_failure_due(i) {
                    self.fail_path(i, FailReason::LinkDown, now);
                }
                continue;
            }
            if p.state == PathState::Active || p.probe_deadline.is_none_or(|d| now < d) {
                continue;
            }
            self.emit_path_probe(i, now, emit);
        }
    }

    fn emit_path_probe(&mut self, path: usize, now: u64, emit: &mut dyn FnMut(&[u8])) {
        let seq = self.snd_seq(self.send.sent_end());
        self.fill_header(SegmentType::Probe, seq, now, path);
        self.emit_header(emit);
        let p = &mut self.paths[path];
        p.probes += 1;
        p.probe_ts = ts_of(now);
        p.segments_sent += 1;
        p.probe_deadline = Some(now + p.probe_interval());
        p.probe_backoff += 1;
    }

    /// The earliest path probe due.
    pub(super) fn path_deadline(&self) -> Option<u64> {
        if !self.multipath() || self.phase != Phase::Open {
            return None;
        }
        self.paths
            .iter()
            .filter(|p| p.state != PathState::Active && !p.link_down)
            .filter_map(|p| p.probe_deadline)
            .min()
    }

    /// Some path's link went down and it is to fail at the next poll.
    pub(super) fn link_failure_pending(&self) -> bool {
        self.multipath() && (0..self.paths.len()).any(|i| self.link_failure_due(i))
    }

    /// Path `path`'s link is down, it has not failed yet, and another path can take its
    /// traffic.
    fn link_failure_due(&self, path: usize) -> bool {
        let p = &self.paths[path];
        p.link_down && p.state != PathState::Failed && self.other_usable(path)
    }
}
