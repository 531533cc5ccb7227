//! Two connections over a simulated lossy network: the harness shared by
//! the stream tests, and the end-to-end tests and sweep.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::congestion::CongestionKind;
use super::conn::{ConnConfig, Connection, State};
use super::wire::{self, Header, SegmentType};

pub(crate) const US: u64 = 1_000;
pub(crate) const MS: u64 = 1_000_000;
pub(crate) const SEC: u64 = 1_000_000_000;

/// xorshift64*: small, seeded, good enough for fault injection.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 < per_mille as u64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The byte at offset `off` of the stream sent by side `side`.
pub(crate) fn pattern(side: usize, off: u64) -> u8 {
    ((off.wrapping_add(side as u64 * 7919)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Faults and timing of the simulated network (both directions).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetConfig {
    pub loss_per_mille: u32,
    pub dup_per_mille: u32,
    /// Chance a datagram is held back by up to `reorder_delay`.
    pub reorder_per_mille: u32,
    pub reorder_delay: u64,
    /// One-way propagation delay, plus up to `jitter`.
    pub delay: u64,
    pub jitter: u64,
    /// Link rate, bytes per microsecond (serialisation delay), per direction.
    pub bytes_per_us: u64,
    /// Datagrams queued behind the link beyond this backlog (ns) are dropped.
    pub max_backlog: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            loss_per_mille: 0,
            dup_per_mille: 0,
            reorder_per_mille: 0,
            reorder_delay: 200 * US,
            delay: 50 * US,
            jitter: 10 * US,
            bytes_per_us: 1_250, // 10 Gbit/s
            max_backlog: 2 * MS,
        }
    }
}

/// A datagram on its way: (arrival, serial, receiving side, bytes).
type InFlight = Reverse<(u64, u64, usize, Vec<u8>)>;

/// Looks at every datagram before delivery (receiving side, header,
/// payload); false drops it.
pub(crate) type Filter = Box<dyn FnMut(usize, &Header, &[u8]) -> bool>;

/// In-flight datagrams, ordered by arrival time.
pub(crate) struct Net {
    pub config: NetConfig,
    pub rng: Rng,
    queue: BinaryHeap<InFlight>,
    serial: u64,
    /// When each direction's link is free again (index: receiving side).
    link_free: [u64; 2],
    /// Latest in-order arrival per direction (the link is FIFO unless a
    /// datagram is deliberately held back).
    last_arrival: [u64; 2],
    /// Side 0 -> side 1 and side 1 -> side 0 can be cut.
    pub cut: [bool; 2],
    pub delivered: u64,
    pub dropped: u64,
}

impl Net {
    pub fn new(config: NetConfig, seed: u64) -> Net {
        Net {
            config,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            serial: 0,
            link_free: [0; 2],
            last_arrival: [0; 2],
            cut: [false; 2],
            delivered: 0,
            dropped: 0,
        }
    }

    /// A datagram leaves for side `to` at `now`.
    pub fn send(&mut self, now: u64, to: usize, bytes: &[u8]) {
        let c = self.config;
        if self.cut[to] || self.rng.chance(c.loss_per_mille) {
            self.dropped += 1;
            return;
        }
        let start = self.link_free[to].max(now);
        if start - now > c.max_backlog {
            self.dropped += 1;
            return;
        }
        let done = start + (bytes.len() as u64 * 1_000).div_ceil(c.bytes_per_us.max(1));
        self.link_free[to] = done;
        let copies = if self.rng.chance(c.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = done + c.delay + self.rng.below(c.jitter + 1);
            if self.rng.chance(c.reorder_per_mille) {
                at += self.rng.below(c.reorder_delay + 1);
            } else {
                at = at.max(self.last_arrival[to]);
                self.last_arrival[to] = at;
            }
            self.serial += 1;
            self.queue
                .push(Reverse((at, self.serial, to, bytes.to_vec())));
        }
    }

    pub fn next_arrival(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, ..))| *at)
    }

    /// The next datagram due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(usize, Vec<u8>)> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((_, _, to, bytes)) = self.queue.pop()?;
        self.delivered += 1;
        Some((to, bytes))
    }
}

/// Side 0 connects to side 1, which accepts the first SYN it sees.
pub(crate) struct Pair {
    pub now: u64,
    pub net: Net,
    pub conns: [Option<Connection>; 2],
    pub server_config: ConnConfig,
    /// Every datagram side 1 received before it had a connection.
    pub unrouted: Vec<Vec<u8>>,
    pub filter: Option<Filter>,
    /// No emitted datagram may be longer (the header plus the larger mss).
    pub max_datagram: usize,
}

pub(crate) const CLIENT_ID: u32 = 0x1111_0001;
pub(crate) const SERVER_ID: u32 = 0x2222_0002;

impl Pair {
    pub fn new(client: ConnConfig, server: ConnConfig, net: NetConfig, seed: u64) -> Pair {
        let now = 1_000 * SEC; // not zero: catches "0 means unset" mistakes
        let mut rng = Rng::new(seed ^ 0xA5A5);
        let isn = rng.next() as u32;
        Pair {
            now,
            net: Net::new(net, seed),
            conns: [Some(Connection::connect(client, now, CLIENT_ID, isn)), None],
            server_config: server,
            unrouted: Vec::new(),
            filter: None,
            max_datagram: wire::HEADER_LEN + client.mss.max(server.mss),
        }
    }

    pub fn client(&mut self) -> &mut Connection {
        self.conns[0].as_mut().unwrap()
    }

    pub fn server(&mut self) -> &mut Connection {
        self.conns[1]
            .as_mut()
            .expect("server side not accepted yet")
    }

    /// Polls both sides and delivers everything due now.
    pub fn step(&mut self) {
        let now = self.now;
        for side in 0..2 {
            let Some(conn) = self.conns[side].as_mut() else {
                continue;
            };
            let net = &mut self.net;
            let max = self.max_datagram;
            conn.poll_transmit(now, &mut |d| {
                assert!(d.len() <= max, "a {} byte datagram", d.len());
                net.send(now, 1 - side, d)
            });
            // Whatever was due has been done: asking again now would spin.
            if let Some(due) = conn.next_deadline() {
                assert!(
                    due > now,
                    "side {side} due again at once: {}",
                    conn.debug_state()
                );
            }
        }
        while let Some((to, bytes)) = self.net.pop_due(now) {
            let Ok((header, payload)) = wire::parse(&bytes) else {
                panic!("a connection emitted an unparsable datagram");
            };
            if let Some(filter) = self.filter.as_mut() {
                if !filter(to, &header, payload) {
                    continue;
                }
            }
            match self.conns[to].as_mut() {
                Some(conn) => conn.handle(now, &header, payload),
                None if header.kind == SegmentType::Syn => {
                    let isn = self.net.rng.next() as u32;
                    self.conns[to] = Some(Connection::accept(
                        self.server_config,
                        now,
                        SERVER_ID,
                        isn,
                        &header,
                        payload,
                    ));
                }
                None => self.unrouted.push(bytes),
            }
        }
    }

    /// The next time anything happens (connections' deadlines, arrivals,
    /// `extra`), never before now.
    pub fn next_event(&self, extra: Option<u64>) -> Option<u64> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.next_deadline())
            .chain(self.net.next_arrival())
            .chain(extra)
            .min()
            .map(|t| t.max(self.now))
    }

    /// Steps until `done` holds or `limit` ns of simulated time pass.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, limit: u64, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + limit;
        let mut idle_steps = 0;
        loop {
            self.step();
            if done(self) {
                return true;
            }
            let Some(next) = self.next_event(None) else {
                return false;
            };
            if next > end {
                self.now = end;
                return done(self);
            }
            if next == self.now {
                idle_steps += 1;
                assert!(idle_steps < 10_000, "no progress at {}", self.now);
            } else {
                idle_steps = 0;
            }
            self.now = next;
        }
    }

    /// Completes the handshake on a clean network.
    pub fn establish(&mut self) {
        assert!(self.run_until(SEC, |p| {
            p.conns[1].is_some()
                && p.client().state() == State::Established
                && p.server().state() == State::Established
        }));
    }
}

/// A one-direction transfer's application ends.
struct Flow {
    from: usize,
    total: u64,
    written: u64,
    read: u64,
    buf: Vec<u8>,
}

impl Flow {
    fn new(from: usize, total: u64) -> Flow {
        Flow {
            from,
            total,
            written: 0,
            read: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Writes what fits; closes when everything was taken.
    fn write(&mut self, conn: &mut Connection) {
        while self.written < self.total {
            let n = (conn.send_space() as u64)
                .min(self.total - self.written)
                .min(64 * 1024);
            if n == 0 {
                return;
            }
            let chunk: Vec<u8> = (self.written..self.written + n)
                .map(|o| pattern(self.from, o))
                .collect();
            let took = conn.write(&chunk);
            assert_eq!(took as u64, n, "write took less than send_space promised");
            self.written += n;
        }
        conn.close_write();
    }

    /// Reads everything ready and checks it byte for byte.
    fn read(&mut self, conn: &mut Connection) {
        loop {
            let n = conn.read(&mut self.buf, false);
            if n == 0 {
                return;
            }
            for (i, &b) in self.buf[..n].iter().enumerate() {
                let off = self.read + i as u64;
                assert_eq!(b, pattern(self.from, off), "wrong byte at offset {off}");
            }
            self.read += n as u64;
            assert!(self.read <= self.total, "more bytes than were sent");
        }
    }
}

/// One sweep case.
#[derive(Clone, Copy, Debug)]
struct Case {
    seed: u64,
    net: NetConfig,
    recv_buffer: usize,
    send_buffer: usize,
    congestion: CongestionKind,
    bytes: [u64; 2],
    nodelay: bool,
    /// The readers read only this often (0: whenever data is ready).
    read_every: u64,
    time_limit: u64,
}

struct Outcome {
    elapsed: u64,
    stats: [super::conn::ConnStats; 2],
}

fn transfer(case: Case) -> Outcome {
    let config = ConnConfig {
        recv_buffer: case.recv_buffer,
        send_buffer: case.send_buffer,
        congestion: case.congestion,
        nodelay: case.nodelay,
        connect_timeout: 30 * SEC,
        user_timeout: 60 * SEC,
        ..ConnConfig::default()
    };
    let mut pair = Pair::new(config, config, case.net, case.seed);
    let start = pair.now;
    let mut flows = [Flow::new(0, case.bytes[0]), Flow::new(1, case.bytes[1])];
    let mut next_read = start;
    let limit = start + case.time_limit;
    let mut idle_steps = 0;
    loop {
        pair.step();
        let read_now = pair.now >= next_read;
        if read_now {
            next_read = pair.now + case.read_every;
        }
        for side in 0..2 {
            let Some(conn) = pair.conns[side].as_mut() else {
                continue;
            };
            assert_eq!(conn.error(), None, "side {side} failed: {case:?}");
            if conn.state() != State::SynSent && conn.state() != State::SynReceived {
                flows[side].write(conn);
            }
            if read_now {
                flows[1 - side].read(conn);
            }
            let stats = conn.stats();
            assert!(
                stats.recv_queued <= case.recv_buffer,
                "receive buffer overrun"
            );
            assert!(stats.send_queued <= case.send_buffer, "send buffer overrun");
        }
        let finished = pair
            .conns
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| c.is_finished()));
        if finished {
            break;
        }
        let wake = (case.read_every > 0).then_some(next_read);
        let next = pair.next_event(wake).expect("stalled: nothing pending");
        if std::env::var("STREAM_TRACE").is_ok() && next > pair.now + 2 * MS {
            for c in pair.conns.iter().flatten() {
                eprintln!("t={} {}", (pair.now - start) / US, c.debug_state());
            }
        }
        assert!(next <= limit, "not done within the time limit: {case:?}");
        if next == pair.now {
            idle_steps += 1;
            assert!(idle_steps < 10_000, "no progress at {}", pair.now);
        } else {
            idle_steps = 0;
        }
        pair.now = next;
    }
    for side in 0..2 {
        let conn = pair.conns[side].as_mut().unwrap();
        flows[1 - side].read(conn);
        assert_eq!(flows[1 - side].read, case.bytes[1 - side], "short stream");
        assert!(conn.at_eof());
        assert!(conn.all_acked());
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.error(), None);
    }
    Outcome {
        elapsed: pair.now - start,
        stats: [
            pair.conns[0].as_ref().unwrap().stats(),
            pair.conns[1].as_ref().unwrap().stats(),
        ],
    }
}

fn lossy(loss_per_mille: u32) -> NetConfig {
    NetConfig {
        loss_per_mille,
        dup_per_mille: loss_per_mille / 4,
        reorder_per_mille: 20 + loss_per_mille,
        ..NetConfig::default()
    }
}

#[test]
fn clean_transfer_is_fast_and_needs_no_retransmission() {
    let out = transfer(Case {
        seed: 1,
        net: NetConfig {
            max_backlog: SEC,
            ..NetConfig::default()
        },
        recv_buffer: 4 << 20,
        send_buffer: 4 << 20,
        congestion: CongestionKind::Cubic,
        bytes: [4 << 20, 0],
        nodelay: false,
        read_every: 0,
        time_limit: 10 * SEC,
    });
    assert_eq!(out.stats[0].retransmits, 0, "{:?}", out.stats[0]);
    assert!(out.elapsed < 100 * MS, "took {} us", out.elapsed / US);
}

/// Loss 0 to 20 % (with duplication and reordering growing alongside),
/// 16 KiB and 4 MiB receive buffers, one way and both ways at once, two
/// seeds each; the seed also varies the controller, the send buffer, Nagle
/// and whether the readers are slow.
///
/// To look at one case: `STREAM_SEED=<seed> cargo test ... sweep --
/// --nocapture`; `STREAM_TRACE=1` also prints both connections whenever
/// nothing happens for 2 ms.
#[test]
fn sweep_loss_buffers_and_directions() {
    let only: Option<u64> = std::env::var("STREAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut seed = 100;
    let mut worst = 0;
    for loss in [0, 10, 50, 100, 200] {
        for recv_buffer in [16 << 10, 4 << 20] {
            for both_ways in [false, true] {
                for _ in 0..2 {
                    seed += 1;
                    if only.is_some_and(|o| o != seed) {
                        continue;
                    }
                    let case = Case {
                        seed,
                        net: lossy(loss),
                        recv_buffer,
                        send_buffer: if seed % 3 == 0 { 64 << 10 } else { 1 << 20 },
                        congestion: if seed % 2 == 0 {
                            CongestionKind::NewReno
                        } else {
                            CongestionKind::Cubic
                        },
                        bytes: if both_ways {
                            [2 << 20, 2 << 20]
                        } else {
                            [4 << 20, 0]
                        },
                        nodelay: seed % 4 == 0,
                        read_every: if seed % 5 == 0 { 300 * US } else { 0 },
                        time_limit: 10 * SEC,
                    };
                    let out = transfer(case);
                    worst = worst.max(out.elapsed);
                    eprintln!(
                        "seed {seed} loss {loss:>3}‰ rcvbuf {recv_buffer:>7} both {both_ways:<5} {:?}: {:>7} us, rexmit {} fast {} rto {}",
                        case.congestion,
                        out.elapsed / US,
                        out.stats[0].retransmits + out.stats[1].retransmits,
                        out.stats[0].fast_retransmits + out.stats[1].fast_retransmits,
                        out.stats[0].timeouts + out.stats[1].timeouts,
                    );
                }
            }
        }
    }
    eprintln!("slowest case: {} ms of simulated time", worst / MS);
}
