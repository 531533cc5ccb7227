//! One connection's state machine: handshake, data and acknowledgement,
//! loss recovery, flow control, keepalive, orderly close and reset.
//!
//! The send side (queue and retransmission scoreboard) lives in `send`,
//! the receive side (reassembly and SACK blocks) in `recv`; `input`
//! validates and processes arriving segments, `output` runs the timers and
//! emits segments; this file holds the types, the state and the
//! application calls. Nothing here does I/O: segments come in through
//! [`Connection::handle`], go out through [`Connection::poll_transmit`],
//! and time is the `now` the caller passes (ns, monotonic).

mod input;
mod output;
mod path;
mod recv;
mod send;

use std::net::Ipv4Addr;

use path::Path;
use recv::RecvBuffer;
use send::SendBuffer;

pub use path::{FailReason, PathState, PathStats, MAX_PATHS, PROBE_MAX, PROBE_MIN};

use super::congestion::{new_congestion, CongestionKind};
use super::wire::{parse_syn_options, Header, SegmentType, HEADER_LEN, MAX_SACK};

/// A millisecond, ns.
const MS: u64 = 1_000_000;
/// Longest an ACK for in-order data waits for a second segment, ns.
pub const DELAYED_ACK: u64 = MS;
/// First SYN (and SYN-ACK) retransmission timeout, ns; doubles each retry.
pub const SYN_RTO: u64 = 200 * MS;
/// Smallest segment payload we agree to.
pub const MIN_MSS: usize = 64;
/// Largest segment payload (the header's data_len is 16 bits).
pub const MAX_MSS: usize = 65_000;
/// Largest window advertised (and largest recv_buffer used), bytes.
pub const MAX_WINDOW: u64 = 1 << 30;

/// Keepalive settings: probe after `idle` ns of silence, every `interval` ns,
/// give up after `count` unanswered probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe, ns.
    pub idle: u64,
    /// Time between probes, ns.
    pub interval: u64,
    /// Unanswered probes before the connection times out.
    pub count: u32,
}

/// Per-connection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    /// Largest payload we send per segment.
    pub mss: usize,
    /// Bytes the application may queue, unacknowledged plus unsent.
    pub send_buffer: usize,
    /// Bytes received and not yet read (in order plus out of order); the advertised window.
    pub recv_buffer: usize,
    /// The congestion controller.
    pub congestion: CongestionKind,
    /// Send small segments at once (false: hold them while data is unacknowledged).
    pub nodelay: bool,
    /// Keepalive probing, off by default.
    pub keepalive: Option<Keepalive>,
    /// SYN (or SYN-ACK) retries stop after this long, ns.
    pub connect_timeout: u64,
    /// Data unacknowledged this long times the connection out, ns.
    pub user_timeout: u64,
}

/// mss 1408 (a 1500-byte MTU less IPv4, UDP and our header with room for
/// SACK blocks), 4 MiB send and receive buffers, CUBIC, Nagle on, no
/// keepalive, 3 s to connect, 30 s of unacknowledged data before giving up.
impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            mss: 1408,
            send_buffer: 4 << 20,
            recv_buffer: 4 << 20,
            congestion: CongestionKind::Cubic,
            nodelay: false,
            keepalive: None,
            connect_timeout: 3_000 * MS,
            user_timeout: 30_000 * MS,
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out, no answer yet.
    SynSent,
    /// We answered a SYN; waiting for the peer to acknowledge our SYN-ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We sent FIN; the peer may still send.
    FinWait,
    /// The peer sent FIN; we may still send.
    CloseWait,
    /// Both FINs sent, not everything acknowledged yet.
    Closing,
    /// Done (orderly, reset or timed out).
    Closed,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// RST in answer to our SYN.
    Refused,
    /// RST later on.
    Reset,
    /// Handshake, retransmission or keepalive gave up.
    TimedOut,
}

impl StreamError {
    /// The errno a socket call reports for this error.
    pub fn errno(self) -> i32 {
        match self {
            StreamError::Refused => libc::ECONNREFUSED,
            StreamError::Reset => libc::ECONNRESET,
            StreamError::TimedOut => libc::ETIMEDOUT,
        }
    }
}

/// Counters and estimates, for sluice-stat and tests.
#[derive(Clone, Debug, Default)]
pub struct ConnStats {
    /// Smoothed round-trip time, µs.
    pub srtt_us: u64,
    /// Round-trip time variation, µs.
    pub rttvar_us: u64,
    /// Current retransmission timeout (backoff included), µs.
    pub rto_us: u64,
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Slow-start threshold, bytes (`usize::MAX` before the first loss).
    pub ssthresh: usize,
    /// Bytes sent and neither acknowledged, SACKed nor judged lost.
    pub bytes_in_flight: usize,
    /// Segments sent again (fast retransmits, timeouts, SYN retries).
    pub retransmits: u64,
    /// Retransmissions triggered by SACK or duplicate ACKs.
    pub fast_retransmits: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Segments emitted, all types.
    pub segments_sent: u64,
    /// Segments accepted for this connection.
    pub segments_received: u64,
    /// Payload bytes emitted, retransmissions included.
    pub bytes_sent: u64,
    /// New payload bytes received (duplicates not counted).
    pub bytes_received: u64,
    /// Data segments that brought nothing new.
    pub dup_segments: u64,
    /// Data segments that arrived beyond a hole.
    pub out_of_order_segments: u64,
    /// Segments that failed validation (ids, sequence, acknowledgement).
    pub dropped_segments: u64,
    /// The peer's window beyond our first unacknowledged byte, bytes.
    pub peer_window: u32,
    /// Bytes in the send buffer (unacknowledged plus unsent).
    pub send_queued: usize,
    /// Bytes in the receive buffer (ready plus out of order).
    pub recv_queued: usize,
}

/// How far the handshake and close have gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    SynSent,
    SynReceived,
    /// Synchronised: data, FINs, everything but the handshake.
    Open,
    Closed,
}

/// One stream connection, sans IO.
///
/// Feed it received segments with [`handle`](Connection::handle), let it
/// emit with [`poll_transmit`](Connection::poll_transmit) whenever
/// [`next_deadline`](Connection::next_deadline) is due (and after every
/// `handle`, `write`, `read` or `close_write`), and use the byte-stream
/// calls for the application side.
pub struct Connection {
    config: ConnConfig,
    /// Payload bytes per segment we send: min(our mss, the peer's).
    mss: usize,
    local_id: u32,
    peer_id: u32,
    iss: u32,
    irs: u32,
    phase: Phase,
    error: Option<StreamError>,
    aborted: bool,
    opened_at: u64,
    /// The latest `now` seen (what next_deadline reports for "at once").
    last_now: u64,
    /// Something changed since the last poll_transmit.
    needs_poll: bool,

    // Handshake.
    syn_xmits: u32,
    syn_deadline: Option<u64>,
    syn_now: bool,
    /// The SYN-ACK to send answers a SYN just received (so it may echo it).
    syn_echo_fresh: bool,

    // Paths: path 0 is the handshake's; more after both sides announced their addresses.
    paths: Vec<Path>,
    /// The path the latest segment came in on (acknowledgements go back on it).
    ack_path: usize,
    /// Bumped whenever a path changes state.
    path_epoch: u32,
    /// Paths whose probe waits for its answer (bit i: path i), which goes back on that path.
    probe_answers: u8,
    /// Our data addresses and prefix lengths, announced in the SYN or SYN-ACK.
    announce: Vec<(Ipv4Addr, u8)>,
    /// The peer's, from its SYN or SYN-ACK.
    peer_addrs: Vec<(Ipv4Addr, u8)>,

    // Sending.
    send: SendBuffer,
    /// Right edge of the peer's window (offset).
    snd_right: u64,
    peer_max_window: u64,
    /// When unacknowledged data last made progress (user_timeout).
    last_progress: u64,
    dupacks: u32,
    persist_deadline: Option<u64>,
    persist_backoff: u32,
    /// When to probe for a lost tail (2 SRTT after the last send).
    tlp_deadline: Option<u64>,
    /// A tail probe went out and nothing new was acknowledged since.
    tail_probed: bool,

    // Receiving.
    recv: RecvBuffer,
    ack_now: bool,
    delack_deadline: Option<u64>,
    unacked_bytes: usize,
    /// Right edge we last advertised.
    adv_right: u64,
    last_recv: u64,
    keepalive_probes: u32,
    keepalive_probed_at: u64,
    rst_now: bool,

    // Reused for every emitted segment.
    header: Header,
    out: Vec<u8>,
    blocks: Vec<(u64, u64)>,
    stats: ConnStats,
}

/// Microsecond timestamp for the wire (wraps).
pub(crate) fn ts_of(now: u64) -> u32 {
    (now / 1_000) as u32
}

/// `a - b` in sequence space, signed.
fn seq_diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

impl Connection {
    fn new(config: ConnConfig, now: u64, local_id: u32, isn: u32, phase: Phase) -> Connection {
        let mut config = config;
        config.mss = config.mss.clamp(MIN_MSS, MAX_MSS);
        config.recv_buffer = config.recv_buffer.clamp(1, MAX_WINDOW as usize);
        let mss = config.mss;
        Connection {
            config,
            mss,
            local_id,
            peer_id: 0,
            iss: isn,
            irs: 0,
            phase,
            error: None,
            aborted: false,
            opened_at: now,
            last_now: now,
            needs_poll: true,
            syn_xmits: 0,
            syn_deadline: None,
            syn_now: true,
            syn_echo_fresh: false,
            paths: vec![Path::new(
                new_congestion(config.congestion, mss),
                PathState::Active,
            )],
            ack_path: 0,
            path_epoch: 0,
            probe_answers: 0,
            announce: Vec::new(),
            peer_addrs: Vec::new(),
            send: SendBuffer::new(config.send_buffer),
            snd_right: 0,
            peer_max_window: 0,
            last_progress: now,
            dupacks: 0,
            persist_deadline: None,
            persist_backoff: 0,
            tlp_deadline: None,
            tail_probed: false,
            recv: RecvBuffer::new(config.recv_buffer),
            ack_now: false,
            delack_deadline: None,
            unacked_bytes: 0,
            adv_right: config.recv_buffer as u64,
            last_recv: now,
            keepalive_probes: 0,
            keepalive_probed_at: 0,
            rst_now: false,
            header: Header::new(SegmentType::Data, local_id, 0),
            out: Vec::with_capacity(HEADER_LEN + 4 * 8 + mss),
            blocks: Vec::with_capacity(MAX_SACK),
            stats: ConnStats::default(),
        }
    }

    /// Active open: state SynSent; the SYN goes out at the next poll_transmit.
    pub fn connect(config: ConnConfig, now: u64, local_id: u32, isn: u32) -> Connection {
        Connection::new(config, now, local_id, isn, Phase::SynSent)
    }

    /// Passive open from a received SYN (already parsed, dst_conn == 0; the
    /// caller checked it is a SYN with a non-zero src_conn):
    /// state SynReceived, a SYN-ACK goes out at the next poll_transmit;
    /// Established when the peer acknowledges it (any valid segment with
    /// ACK covering our ISN + 1, data included).
    pub fn accept(
        config: ConnConfig,
        now: u64,
        local_id: u32,
        isn: u32,
        syn: &Header,
        syn_payload: &[u8],
    ) -> Connection {
        let mut c = Connection::new(config, now, local_id, isn, Phase::SynReceived);
        c.peer_id = syn.src_conn;
        c.irs = syn.seq;
        c.paths[0].ts_recent = Some(syn.ts_val);
        c.syn_echo_fresh = true;
        c.last_recv = now;
        c.stats.segments_received += 1;
        let options = parse_syn_options(syn_payload);
        c.peer_addrs = options.addrs;
        c.synchronise(syn.window, options.mss);
        c
    }

    /// Passive open from the peer's answer to a stateless SYN-ACK (a SYN cookie, see
    /// `stream::cookie`): `ack` names the peer's id (src_conn), its ISN plus one (seq) and our
    /// ISN plus one (ack); `peer_mss` is what the cookie kept of the peer's MSS. Pass `ack` to
    /// [`handle`](Connection::handle) next: it completes the handshake.
    pub fn accept_cookie(
        config: ConnConfig,
        now: u64,
        local_id: u32,
        ack: &Header,
        peer_mss: usize,
    ) -> Connection {
        let isn = ack.ack.wrapping_sub(1);
        let mut c = Connection::new(config, now, local_id, isn, Phase::SynReceived);
        c.peer_id = ack.src_conn;
        c.irs = ack.seq.wrapping_sub(1);
        c.syn_now = false;
        c.last_recv = now;
        c.synchronise(ack.window, Some(peer_mss.min(u16::MAX as usize) as u16));
        c
    }

    /// The data addresses (and prefix lengths) to announce in our SYN or SYN-ACK, all of
    /// them, the handshake's included: the peer pairs them with its own into paths. Set it
    /// before the first poll_transmit; announce nothing for a single address.
    pub fn announce(&mut self, addrs: Vec<(Ipv4Addr, u8)>) {
        self.announce = addrs;
    }

    /// The addresses the peer announced (empty: it has one).
    pub fn peer_addrs(&self) -> &[(Ipv4Addr, u8)] {
        &self.peer_addrs
    }

    /// Takes the peer's first window and MSS (from its SYN or SYN-ACK).
    fn synchronise(&mut self, window: u32, peer_mss: Option<u16>) {
        let peer_mss = peer_mss.map_or(self.config.mss, |m| (m as usize).max(MIN_MSS));
        let mss = self.config.mss.min(peer_mss);
        if mss != self.mss {
            self.mss = mss;
            for p in &mut self.paths {
                p.cc = new_congestion(self.config.congestion, mss);
            }
        }
        self.snd_right = window as u64;
        self.peer_max_window = window as u64;
    }

    /// This side's connection id.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    /// The peer's connection id (0 until known, in SynSent).
    pub fn peer_id(&self) -> u32 {
        self.peer_id
    }

    /// Sequence number of send offset `off` (offset 0 is ISN + 1).
    fn snd_seq(&self, off: u64) -> u32 {
        self.iss.wrapping_add(1).wrapping_add(off as u32)
    }

    /// Sequence number of receive offset `off`.
    fn rcv_seq(&self, off: u64) -> u32 {
        self.irs.wrapping_add(1).wrapping_add(off as u32)
    }

    /// Receive offset of `seq` (relative to the in-order point; may be negative).
    fn rcv_off(&self, seq: u32) -> i64 {
        self.recv.nxt() as i64 + seq_diff(seq, self.rcv_seq(self.recv.nxt()))
    }

    /// Send offset of an acknowledgement number (may be negative or beyond what was sent).
    fn ack_off(&self, ack: u32) -> i64 {
        self.send.una() as i64 + seq_diff(ack, self.snd_seq(self.send.una()))
    }

    /// The acknowledgement number we send.
    fn rcv_ack(&self) -> u32 {
        self.rcv_seq(self.recv.nxt() + self.recv.fin_received() as u64)
    }

    fn fail(&mut self, error: StreamError) {
        self.error = Some(error);
        self.close_now();
    }

    fn close_now(&mut self) {
        self.phase = Phase::Closed;
        self.syn_deadline = None;
        for p in &mut self.paths {
            p.rto_deadline = None;
            p.probe_deadline = None;
        }
        self.delack_deadline = None;
        self.persist_deadline = None;
        self.tlp_deadline = None;
        if self.error.is_some() || self.aborted {
            self.send.clear();
            self.recv.clear();
        }
    }

    fn drop_segment(&mut self) {
        self.stats.dropped_segments += 1;
    }

    fn can_write(&self) -> bool {
        self.error.is_none()
            && !self.aborted
            && self.phase != Phase::Closed
            && !self.send.fin_queued()
    }

    /// Queues application bytes; returns how many were taken (0 when the
    /// send buffer is full). After close_write or an error: returns 0 (the
    /// caller reports EPIPE / the error).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if !self.can_write() {
            return 0;
        }
        let n = self.send.write(data);
        if n > 0 {
            self.needs_poll = true;
        }
        n
    }

    /// Copies in-order bytes out (consumes them unless peek). Returns 0
    /// when none are ready (the caller distinguishes EOF with at_eof()).
    /// Reading opens the window: a window update is sent when it grows by
    /// at least 2 mss or half the buffer (silly-window avoidance).
    pub fn read(&mut self, buf: &mut [u8], peek: bool) -> usize {
        if self.error.is_some() || self.aborted {
            return 0;
        }
        let n = self.recv.read(buf, peek);
        if n > 0 && !peek && self.phase == Phase::Open && !self.recv.fin_received() {
            let threshold = (2 * self.mss).min(self.config.recv_buffer / 2).max(1) as u64;
            if self.recv.right_edge() - self.adv_right >= threshold {
                self.ack_now = true;
                self.needs_poll = true;
            }
        }
        n
    }

    /// In-order bytes ready to read.
    pub fn readable(&self) -> usize {
        if self.error.is_some() || self.aborted {
            return 0;
        }
        self.recv.readable()
    }

    /// Bytes write() would take now.
    pub fn send_space(&self) -> usize {
        if !self.can_write() {
            return 0;
        }
        self.send.space()
    }

    /// The peer's FIN was received and every byte before it read.
    pub fn at_eof(&self) -> bool {
        self.recv.fin_received() && self.recv.readable() == 0
    }

    /// The peer's FIN arrived (maybe with data still unread before it): EPOLLRDHUP.
    pub fn fin_received(&self) -> bool {
        self.recv.fin_received()
    }

    /// SHUT_WR: a FIN follows the queued data. Idempotent.
    pub fn close_write(&mut self) {
        if self.error.is_some() || self.aborted || self.send.fin_queued() {
            return;
        }
        if self.phase == Phase::Closed {
            return;
        }
        self.send.queue_fin();
        self.needs_poll = true;
    }

    /// SHUT_RD is the caller's business (it drops later data); close with
    /// unread data, SO_LINGER 0: sends an RST (at the next poll_transmit)
    /// and goes to Closed.
    pub fn abort(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        // In SynSent the peer's id is unknown: there is no one to reset.
        self.rst_now = self.phase != Phase::SynSent;
        self.aborted = true;
        self.ack_now = false;
        self.close_now();
        self.needs_poll = true;
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::SynSent => State::SynSent,
            Phase::SynReceived => State::SynReceived,
            Phase::Closed => State::Closed,
            Phase::Open => match (self.send.fin_queued(), self.recv.fin_received()) {
                (false, false) => State::Established,
                (true, false) => State::FinWait,
                (false, true) => State::CloseWait,
                (true, true) => State::Closing,
            },
        }
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<StreamError> {
        self.error
    }

    /// Nothing more to send or receive: both FINs exchanged and
    /// acknowledged (or reset, or timed out). The caller may drop it (it
    /// keeps a short quiet period of its own for stray segments).
    ///
    /// After an orderly close the connection still answers the peer's
    /// retransmitted data or FIN with the final ACK (that ACK may have been
    /// lost), so routing stray segments to it during the quiet period, and
    /// polling it, is better than answering them with an RST.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed && !self.rst_now && !self.ack_now
    }

    /// Everything written was acknowledged (for SO_LINGER and orderly close waits).
    pub fn all_acked(&self) -> bool {
        self.send.all_acked()
    }

    /// Counters and estimates.
    pub fn stats(&self) -> ConnStats {
        let mut s = self.stats.clone();
        let p = &self.paths[self.primary()];
        s.srtt_us = p.rtt.srtt() / 1_000;
        s.rttvar_us = p.rtt.rttvar() / 1_000;
        s.rto_us = p.rtt.rto() / 1_000;
        s.cwnd = self.paths.iter().map(|p| p.cc.window()).sum();
        s.ssthresh = p.cc.ssthresh();
        s.bytes_in_flight = self.send.pipe() as usize;
        s.peer_window = self
            .snd_right
            .saturating_sub(self.send.una())
            .min(MAX_WINDOW) as u32;
        s.send_queued = self.send.queued();
        s.recv_queued = self.recv.buffered();
        s
    }

    /// Name of the congestion controller in use.
    pub fn congestion_name(&self) -> &'static str {
        self.paths[0].cc.name()
    }

    /// TCP_NODELAY: send small segments at once.
    pub fn set_nodelay(&mut self, on: bool) {
        self.config.nodelay = on;
        self.needs_poll = true;
    }

    /// SO_KEEPALIVE with its TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT.
    pub fn set_keepalive(&mut self, k: Option<Keepalive>) {
        self.config.keepalive = k;
        self.keepalive_probes = 0;
        self.needs_poll = true;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
impl Connection {
    /// Internal state, for debugging tests.
    pub(crate) fn debug_state(&self) -> String {
        format!(
            "phase {:?} una {} nxt {} sent_end {} unsent {} right {} pipe {} lost {} cwnd {} rto {:?} persist {:?} delack {:?} ack_now {} rcv_nxt {} rcv_right {} fin_rcvd {} recovery {} rto_rec {} backoff {}",
            self.phase, self.send.una(), self.send.nxt(), self.send.sent_end(), self.send.unsent(),
            self.snd_right, self.send.pipe(), self.send.lost_count(), self.paths[0].cc.window(),
            self.paths[0].rto_deadline, self.persist_deadline, self.delack_deadline, self.ack_now,
            self.recv.nxt(), self.recv.right_edge(), self.recv.fin_received(),
            self.paths[0].in_recovery, self.paths[0].rto_recovery,
            self.paths[0].rtt.backoff_count(),
        ) + &self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    " | path {i} {:?} link_down {} rto {:?} probe {:?} pipe {} outstanding {}",
                    p.state,
                    p.link_down,
                    p.rto_deadline,
                    p.probe_deadline,
                    self.send.path_pipe(i),
                    self.send.path_outstanding(i)
                )
            })
            .collect::<String>()
            + &format!(" tlp {:?} probe_answers {}", self.tlp_deadline, self.probe_answers)
    }
}
