//! The connection state machine (skeleton: API only).

use super::congestion::CongestionKind;
use super::wire::Header;

/// A nanosecond.
const MS: u64 = 1_000_000;

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
    pub srtt_us: u64,
    pub rttvar_us: u64,
    pub rto_us: u64,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub bytes_in_flight: usize,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub timeouts: u64,
    pub segments_sent: u64,
    pub segments_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub dup_segments: u64,
    pub out_of_order_segments: u64,
    pub dropped_segments: u64,
    pub peer_window: u32,
    pub send_queued: usize,
    pub recv_queued: usize,
}

/// One stream connection, sans IO.
pub struct Connection {
    config: ConnConfig,
}

impl Connection {
    /// Active open: state SynSent; the SYN goes out at the next poll_transmit.
    pub fn connect(config: ConnConfig, now: u64, local_id: u32, isn: u32) -> Connection {
        let _ = (now, local_id, isn);
        Connection { config }
    }

    /// Passive open from a received SYN (already parsed, dst_conn == 0).
    pub fn accept(
        config: ConnConfig,
        now: u64,
        local_id: u32,
        isn: u32,
        syn: &Header,
        syn_payload: &[u8],
    ) -> Connection {
        let _ = (now, local_id, isn, syn, syn_payload);
        Connection { config }
    }

    /// This side's connection id.
    pub fn local_id(&self) -> u32 {
        todo!()
    }

    /// The peer's connection id (0 until known).
    pub fn peer_id(&self) -> u32 {
        todo!()
    }

    /// A segment for this connection.
    pub fn handle(&mut self, now: u64, header: &Header, payload: &[u8]) {
        let _ = (now, header, payload);
        todo!()
    }

    /// Runs due timers and emits every datagram that should go out now.
    pub fn poll_transmit(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        let _ = (now, emit);
        todo!()
    }

    /// The earliest time poll_transmit has timer work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        todo!()
    }

    /// Queues application bytes; returns how many were taken.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let _ = data;
        todo!()
    }

    /// Copies in-order bytes out (consumes them unless peek).
    pub fn read(&mut self, buf: &mut [u8], peek: bool) -> usize {
        let _ = (buf, peek);
        todo!()
    }

    /// In-order bytes ready to read.
    pub fn readable(&self) -> usize {
        todo!()
    }

    /// Bytes write() would take now.
    pub fn send_space(&self) -> usize {
        todo!()
    }

    /// Peer's FIN received and every byte before it read.
    pub fn at_eof(&self) -> bool {
        todo!()
    }

    /// SHUT_WR: a FIN follows the queued data. Idempotent.
    pub fn close_write(&mut self) {
        todo!()
    }

    /// Sends an RST at the next poll_transmit and goes to Closed.
    pub fn abort(&mut self) {
        todo!()
    }

    /// The current state.
    pub fn state(&self) -> State {
        todo!()
    }

    /// The error that ended the connection, if any.
    pub fn error(&self) -> Option<StreamError> {
        todo!()
    }

    /// Nothing more to send or receive.
    pub fn is_finished(&self) -> bool {
        todo!()
    }

    /// Everything written was acknowledged.
    pub fn all_acked(&self) -> bool {
        todo!()
    }

    /// Counters and estimates.
    pub fn stats(&self) -> ConnStats {
        todo!()
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&mut self, on: bool) {
        self.config.nodelay = on;
    }

    /// SO_KEEPALIVE and its TCP_KEEP* settings.
    pub fn set_keepalive(&mut self, k: Option<Keepalive>) {
        self.config.keepalive = k;
    }
}
