//! The stream endpoint of a stack: which connection or listener each stream datagram is for,
//! the UDP ports that carry them, and the readiness the application threads read without the
//! engine lock.
//!
//! A stream bound to local port P is carried in UDP datagrams on port P (a *carrier*: one UDP
//! socket per data port, shared by the listener on P and every connection it accepted).
//! Datagrams are matched on the receiver's connection id (`dst_conn`) and the sender's address;
//! a SYN (no `dst_conn` yet) goes to the listener on its port. Anything else is answered with a
//! reset (never a reset with a reset), so a peer whose connection this stack forgot fails fast.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::conn::{ConnConfig, ConnStats, Connection, PathState, State, StreamError, MAX_WINDOW};
use super::cookie::SynCookies;
use super::route::{self, Route};
use super::wire::{self, Header, SegmentType};
use crate::udp::SocketId;

/// Longest a closed connection lingers to finish its orderly close before it is dropped.
const ORPHAN_LIFETIME: u64 = 30_000_000_000;
/// How long the port of an actively closed connection stays taken (the kernel's TIME_WAIT is
/// 60 s; ours only keeps a quick rebind from looking different).
const TIME_WAIT: u64 = 10_000_000_000;

/// Readiness bits of a stream socket, published by the engine.
pub mod ready {
    /// Bytes to read, an end of stream, or (listener) a connection to accept.
    pub const READABLE: u32 = 1;
    /// Room in the send buffer of an established connection.
    pub const WRITABLE: u32 = 2;
    /// The peer sent FIN (EPOLLRDHUP).
    pub const READ_HUP: u32 = 4;
    /// Both directions are over (EPOLLHUP): reset, timed out, or closed both ways.
    pub const HUP: u32 = 8;
    /// A connection error is pending (SO_ERROR).
    pub const ERROR: u32 = 16;
    /// The handshake finished (the connection was established at least once).
    pub const CONNECTED: u32 = 32;
    /// The handshake got no answer in the protocol, or an ICMP port unreachable: the
    /// caller connects through the kernel's TCP instead.
    pub const FALL_BACK: u32 = 64;
}

/// What an application thread may read of a stream socket without the engine lock.
#[derive(Debug, Default)]
pub struct StreamShared {
    bits: AtomicU32,
    error: AtomicI32,
    /// Bumped whenever the readiness changes or more bytes arrive: an edge for epoll's
    /// EPOLLET even when the bits stay the same.
    generation: AtomicU32,
    /// SO_RCVLOWAT: readable once this many bytes wait (0 counts as 1).
    lowat: AtomicUsize,
}

impl StreamShared {
    pub fn bits(&self) -> u32 {
        self.bits.load(Ordering::Acquire)
    }

    pub fn has(&self, bit: u32) -> bool {
        self.bits() & bit != 0
    }

    /// The pending error (an errno), cleared (SO_ERROR reads it once).
    pub fn take_error(&self) -> i32 {
        self.error.swap(0, Ordering::AcqRel)
    }

    pub fn peek_error(&self) -> i32 {
        self.error.load(Ordering::Acquire)
    }

    /// Stores `bits`; returns the bits before.
    fn publish(&self, bits: u32) -> u32 {
        self.bits.swap(bits, Ordering::AcqRel)
    }

    /// Changes with every new event on the socket (see `generation`).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// SO_RCVLOWAT.
    pub fn set_lowat(&self, bytes: usize) {
        self.lowat.store(bytes, Ordering::Release);
    }

    pub fn lowat(&self) -> usize {
        self.lowat.load(Ordering::Acquire).max(1)
    }

    fn set_error(&self, errno: i32) {
        self.error.store(errno, Ordering::Release);
    }

    /// Over with `errno`: pending once, and hung up for good.
    pub(crate) fn fail(&self, errno: i32) {
        self.set_error(errno);
        self.publish(
            ready::ERROR | ready::HUP | ready::READABLE | ready::WRITABLE | ready::READ_HUP,
        );
        self.bump();
    }
}

/// Counters of the stream endpoint, for sluice-stat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub datagrams_in: u64,
    pub malformed: u64,
    /// Segments for no live connection (answered with a reset unless they were one).
    pub no_connection: u64,
    /// Segments whose source did not match their connection's peer.
    pub wrong_peer: u64,
    pub resets_sent: u64,
    /// SYNs refused because a listener's accept queue was full.
    pub syn_dropped: u64,
    /// SYNs answered statelessly (half-open connections at their bound) and connections
    /// made from the answers.
    pub syn_cookies_sent: u64,
    pub syn_cookies_accepted: u64,
    pub connections_opened: u64,
    pub connections_accepted: u64,
    pub fallbacks: u64,
    /// Paths opened beyond the handshake's (multipath).
    pub paths_opened: u64,
    /// Paths that failed (link down or silent) and that came back.
    pub path_failures: u64,
    pub path_recoveries: u64,
}

/// One UDP port carrying streams: its UDP socket on each data port.
struct Carrier {
    ids: Vec<SocketId>,
    users: usize,
}

struct Listener {
    local: SocketAddrV4,
    backlog: usize,
    /// Established connections waiting for accept(), by local id.
    ready: VecDeque<u32>,
    half_open: usize,
    config: ConnConfig,
    shared: Arc<StreamShared>,
    /// Queue length at the last publish (a longer queue is an edge for EPOLLET).
    last_ready: usize,
}

impl Listener {
    /// As many established connections wait for accept() as the backlog allows.
    fn accept_queue_full(&self) -> bool {
        self.ready.len() >= self.backlog
    }
}

/// The listener on `local_port` that takes what arrives for our address `to`.
fn listener_for(
    listeners: &mut FxHashMap<u16, Listener>,
    local_port: u16,
    to: Ipv4Addr,
) -> Option<&mut Listener> {
    listeners
        .get_mut(&local_port)
        .filter(|l| l.local.ip().is_unspecified() || *l.local.ip() == to)
}

/// A connection and where it lives.
struct Entry {
    conn: Connection,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    port: usize,
    /// Where each path runs; routes[0] is (port, local, peer), the handshake's.
    routes: Vec<Route>,
    /// Path states at the last look (changes are logged and counted).
    path_states: Vec<PathState>,
    path_epoch: u32,
    shared: Arc<StreamShared>,
    /// The listener's port, until accept() takes it.
    listener: Option<u16>,
    /// The application closed it: dropped once finished (or after ORPHAN_LIFETIME).
    orphan_since: Option<u64>,
    /// Active open: the deadline for an answer in the protocol.
    fall_back_at: Option<u64>,
    /// Passive open: established and in the listener's accept queue.
    queued: bool,
    /// The handshake failed outside the protocol: ECONNREFUSED (an ICMP port unreachable for
    /// a connection that does not fall back) or EHOSTUNREACH (ARP never answered).
    failed: Option<i32>,
    /// In-order bytes waiting at the last publish (more is an edge for EPOLLET).
    last_readable: usize,
    /// The application closed before the peer's FIN: the port waits in TIME_WAIT after.
    closed_first: bool,
    /// The handshake completed at some point.
    opened: bool,
    /// When `poll` must look at it next (0: at once). Anything that changes the connection
    /// sets it to 0 ([`Entry::touch`]); otherwise it sleeps until its next timer, so that a
    /// poll costs the connections that have something to do, not all of them.
    wake_at: u64,
}

impl Entry {
    /// A connection between `local` and `peer` on data port `port`, with one path (the
    /// handshake's); `listener` is the port of the listener that accepted it, if it did.
    fn new(
        conn: Connection,
        (local, peer, port): (SocketAddrV4, SocketAddrV4, usize),
        shared: Arc<StreamShared>,
        listener: Option<u16>,
    ) -> Entry {
        Entry {
            conn,
            local,
            peer,
            port,
            routes: vec![Route {
                port,
                local: *local.ip(),
                remote: *peer.ip(),
            }],
            path_states: vec![PathState::Active],
            path_epoch: 0,
            shared,
            listener,
            orphan_since: None,
            fall_back_at: None,
            queued: false,
            failed: None,
            last_readable: 0,
            closed_first: false,
            opened: false,
            wake_at: 0,
        }
    }

    /// Something changed: poll looks at it next time.
    fn touch(&mut self) -> &mut Entry {
        self.wake_at = 0;
        self
    }

    /// When it has something to do next: a protocol timer, the fall-back deadline, the end of
    /// an orphan's lifetime.
    fn next_wake(&self) -> u64 {
        [
            self.conn.next_deadline(),
            self.fall_back_at,
            self.orphan_since
                .map(|t| t.saturating_add(ORPHAN_LIFETIME + 1)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX)
    }
}

/// A stream socket as the endpoint knows it: a listener (by port) or a connection (by id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKey {
    Listener(u16),
    Conn(u32),
}

/// Where a stream datagram arrived: on data port `port`, from `from`, to our address `to` and
/// the carrier of `local_port`.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub port: usize,
    pub from: SocketAddrV4,
    pub to: Ipv4Addr,
    pub local_port: u16,
}

/// A datagram the endpoint wants sent: from a carrier, on a data port.
pub struct Outgoing<'a> {
    pub port: usize,
    /// The carrier's UDP socket on that data port (None in mode udp: the kernel carrier of
    /// `local_port`).
    pub carrier: Option<SocketId>,
    pub local_port: u16,
    pub to: SocketAddrV4,
    pub datagram: &'a [u8],
}

pub struct Streams {
    carriers: FxHashMap<u16, Carrier>,
    listeners: FxHashMap<u16, Listener>,
    conns: FxHashMap<u32, Entry>,
    /// (peer, peer's id) -> our id: a repeated SYN finds the connection it opened.
    by_peer: HashMap<(SocketAddrV4, u32), u32>,
    counters: StreamCounters,
    scratch: Vec<u8>,
    /// The fall-back deadline of an active open (ns).
    fall_back_after: u64,
    /// Carriers whose last user went away in `poll`: the engine closes their UDP sockets.
    closed_carriers: Vec<(u16, Vec<SocketId>)>,
    /// Ports held after an active close, until when (each holds a carrier reference).
    time_wait: VecDeque<(u64, u16)>,
    /// The data ports' addresses and prefix lengths (announced for multipath when there
    /// are several), by port index.
    local_addrs: Vec<(Ipv4Addr, u8)>,
    /// Data ports whose link is down, by index.
    ports_down: Vec<bool>,
    /// The key of the stateless handshake.
    cookies: SynCookies,
}

impl Streams {
    pub fn new(fall_back_after: std::time::Duration) -> Self {
        Streams {
            carriers: FxHashMap::default(),
            listeners: FxHashMap::default(),
            conns: FxHashMap::default(),
            by_peer: HashMap::new(),
            counters: StreamCounters::default(),
            scratch: Vec::with_capacity(2048),
            fall_back_after: fall_back_after.as_nanos() as u64,
            closed_carriers: Vec::new(),
            time_wait: VecDeque::new(),
            local_addrs: Vec::new(),
            ports_down: Vec::new(),
            cookies: SynCookies::new(),
        }
    }

    /// The data ports' addresses and prefix lengths, in port order. With more than one,
    /// connections announce them all and open a path over every pair that shares a subnet
    /// with the peer's.
    pub fn set_local_addrs(&mut self, addrs: Vec<(Ipv4Addr, u8)>) {
        self.ports_down = vec![false; addrs.len()];
        self.local_addrs = addrs;
    }

    /// What a connection announces: every data address, or nothing with only one.
    fn announced(&self) -> &[(Ipv4Addr, u8)] {
        if self.local_addrs.len() > 1 {
            &self.local_addrs
        } else {
            &[]
        }
    }

    /// The link of data port `port` went down or came back: the paths over it fail at once,
    /// or are probed again.
    pub fn port_state(&mut self, port: usize, up: bool) {
        if let Some(down) = self.ports_down.get_mut(port) {
            *down = !up;
        }
        for e in self.conns.values_mut() {
            let mut touched = false;
            for (i, r) in e.routes.iter().enumerate() {
                if r.port == port {
                    e.conn.set_path_link(i, up);
                    touched = true;
                }
            }
            if touched {
                e.touch();
            }
        }
    }

    /// Opens the paths of connection `id` from the two announcements (after the handshake
    /// on the connecting side, at the SYN on the accepting side).
    fn open_paths(&mut self, id: u32, connecting: bool) {
        let ours = self.announced().to_vec();
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        e.touch();
        let theirs = e.conn.peer_addrs();
        let (local, remote) = (*e.local.ip(), *e.peer.ip());
        let pairs = if connecting {
            route::pair(&ours, theirs, (local, remote))
        } else {
            route::pair(theirs, &ours, (remote, local))
        };
        for (c, a) in pairs.into_iter().skip(1) {
            let (l, r) = if connecting { (c, a) } else { (a, c) };
            let Some(port) = self.local_addrs.iter().position(|(ip, _)| *ip == l) else {
                continue;
            };
            e.routes.push(Route {
                port,
                local: l,
                remote: r,
            });
        }
        if e.routes.len() > 1 {
            e.conn.set_paths(e.routes.len());
            self.counters.paths_opened += e.routes.len() as u64 - 1;
            for (i, r) in e.routes.iter().enumerate() {
                if self.ports_down.get(r.port).copied().unwrap_or(false) {
                    e.conn.set_path_link(i, false);
                }
            }
            e.path_states = e.conn.path_stats().iter().map(|p| p.state).collect();
        }
    }

    /// Whether there is anything to do (any carrier bound).
    pub fn active(&self) -> bool {
        !self.carriers.is_empty()
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Whether a listener holds `port`.
    pub fn has_listener(&self, port: u16) -> bool {
        self.listeners.contains_key(&port)
    }

    /// Whether `port` has a carrier already (bound by a stream socket).
    pub fn has_carrier(&self, port: u16) -> bool {
        self.carriers.contains_key(&port)
    }

    /// Records a carrier bound on every data port (the caller bound the UDP sockets).
    pub fn add_carrier(&mut self, port: u16, ids: Vec<SocketId>) {
        self.carriers.insert(port, Carrier { ids, users: 0 });
    }

    /// Takes a reference on the carrier of `port` (bind; every accepted connection).
    pub fn hold(&mut self, port: u16) {
        if let Some(c) = self.carriers.get_mut(&port) {
            c.users += 1;
        }
    }

    /// Drops a reference; the last one queues the carrier's UDP sockets for the engine to
    /// close ([`Streams::take_closed_carriers`]).
    pub fn release(&mut self, port: u16) {
        let Some(c) = self.carriers.get_mut(&port) else {
            return;
        };
        c.users = c.users.saturating_sub(1);
        if c.users == 0 {
            if let Some(c) = self.carriers.remove(&port) {
                self.closed_carriers.push((port, c.ids));
            }
        }
    }

    /// Carriers nobody uses any more (their UDP sockets are for the engine to close).
    pub fn take_closed_carriers(&mut self) -> Vec<(u16, Vec<SocketId>)> {
        std::mem::take(&mut self.closed_carriers)
    }

    /// Every carrier (port, ids), for the engine to drain.
    pub fn carriers(&self) -> impl Iterator<Item = (u16, &[SocketId])> {
        self.carriers.iter().map(|(p, c)| (*p, c.ids.as_slice()))
    }

    /// listen(): a listener on `local` (its carrier bound already). EADDRINUSE if one exists.
    pub fn listen(
        &mut self,
        local: SocketAddrV4,
        backlog: usize,
        config: ConnConfig,
        shared: Arc<StreamShared>,
    ) -> Result<(), i32> {
        if let Some(l) = self.listeners.get_mut(&local.port()) {
            // listen() again changes the backlog, as in Linux.
            if l.local == local {
                l.backlog = backlog.max(1);
                return Ok(());
            }
            return Err(libc::EADDRINUSE);
        }
        // The bound socket's reference on the carrier passes to the listener.
        self.listeners.insert(
            local.port(),
            Listener {
                local,
                backlog: backlog.max(1),
                ready: VecDeque::new(),
                half_open: 0,
                config,
                shared,
                last_ready: 0,
            },
        );
        Ok(())
    }

    /// connect(): opens a connection from `local` (carrier bound already) to `peer`.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        now: u64,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        port: usize,
        config: ConnConfig,
        shared: Arc<StreamShared>,
        fall_back: bool,
    ) -> u32 {
        let id = self.fresh_id();
        let mut conn = Connection::connect(config, now, id, random_u32());
        conn.announce(self.announced().to_vec());
        // The bound socket's reference on the carrier passes to the connection.
        let mut entry = Entry::new(conn, (local, peer, port), shared, None);
        entry.fall_back_at = fall_back.then_some(now + self.fall_back_after);
        self.conns.insert(id, entry);
        self.counters.connections_opened += 1;
        id
    }

    /// accept(): the next established connection of the listener on `port`.
    pub fn accept(
        &mut self,
        port: u16,
    ) -> Option<(u32, SocketAddrV4, SocketAddrV4, Arc<StreamShared>)> {
        let listener = self.listeners.get_mut(&port)?;
        let id = listener.ready.pop_front()?;
        let entry = self.conns.get_mut(&id)?;
        entry.listener = None;
        self.counters.connections_accepted += 1;
        Some((id, entry.local, entry.peer, entry.shared.clone()))
    }

    /// Something about connection `id` changed outside it (a socket option): the next poll
    /// looks at it.
    pub fn touch(&mut self, id: u32) {
        if let Some(e) = self.conns.get_mut(&id) {
            e.touch();
        }
    }

    /// The connection `id`, for the socket calls.
    pub fn conn_mut(&mut self, id: u32) -> Option<&mut Connection> {
        self.conns.get_mut(&id).map(|e| &mut e.touch().conn)
    }

    pub fn conn(&self, id: u32) -> Option<&Connection> {
        self.conns.get(&id).map(|e| &e.conn)
    }

    pub fn addresses(&self, id: u32) -> Option<(SocketAddrV4, SocketAddrV4)> {
        self.conns.get(&id).map(|e| (e.local, e.peer))
    }

    pub fn stats(&self, id: u32) -> Option<ConnStats> {
        self.conns.get(&id).map(|e| e.conn.stats())
    }

    /// close() of a listener: its unaccepted connections are reset, and its reference on the
    /// carrier released.
    pub fn close_listener(&mut self, now: u64, port: u16) {
        let Some(listener) = self.listeners.remove(&port) else {
            return;
        };
        let pending: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, e)| e.listener == Some(port))
            .map(|(id, _)| *id)
            .collect();
        drop(listener);
        for id in pending {
            if let Some(e) = self.conns.get_mut(&id) {
                e.touch();
                e.listener = None;
                e.conn.abort();
                e.orphan_since = Some(now);
            }
        }
        self.release(port);
    }

    /// close() of a connection: an orderly close (FIN after the queued data), or a reset when
    /// `abort` (unread data, SO_LINGER 0). The endpoint keeps it until it has finished.
    pub fn close_conn(&mut self, now: u64, id: u32, abort: bool) {
        if let Some(e) = self.conns.get_mut(&id) {
            e.touch();
            if abort {
                e.conn.abort();
            } else {
                e.closed_first = !e.conn.fin_received();
                e.conn.close_write();
            }
            e.orphan_since = Some(now);
            e.fall_back_at = None;
        }
    }

    /// The process is exiting: every connection the application left open is closed as the
    /// kernel closes the sockets of an exiting process (FIN after the queued data, or a reset
    /// when unread data is left).
    pub fn close_all(&mut self, now: u64) {
        for e in self.conns.values_mut() {
            if e.orphan_since.is_some() {
                continue;
            }
            e.touch();
            // Not yet accepted (its listener goes with the process), or unread data: reset.
            if e.listener.is_some() || e.conn.readable() > 0 {
                e.conn.abort();
            } else {
                e.closed_first = !e.conn.fin_received();
                e.conn.close_write();
            }
            e.orphan_since = Some(now);
        }
    }

    /// Whether every connection has nothing left to deliver: all it sent acknowledged (its
    /// FIN included), or over (reset, timed out).
    pub fn settled(&self) -> bool {
        self.conns
            .values()
            .all(|e| e.conn.all_acked() || e.conn.error().is_some() || e.conn.is_finished())
    }

    /// A connection's socket went to the kernel's TCP (counted for sluice-stat).
    pub fn note_fall_back(&mut self) {
        self.counters.fallbacks += 1;
    }

    /// Forgets connection `id` at once (its socket fell back to the kernel, or its connect
    /// failed) and releases its carrier.
    pub fn forget(&mut self, id: u32) {
        if let Some(e) = self.remove_conn(id) {
            self.release(e.local.port());
        }
    }

    /// Removes connection `id` from the tables (its carrier reference is the caller's).
    fn remove_conn(&mut self, id: u32) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        self.by_peer.remove(&(e.peer, e.conn.peer_id()));
        Some(e)
    }

    /// One received datagram, where it arrived (`at`).
    pub fn input(
        &mut self,
        now: u64,
        at: Arrival,
        datagram: &[u8],
        out: &mut dyn FnMut(Outgoing<'_>),
    ) {
        let Arrival { from, to, .. } = at;
        self.counters.datagrams_in += 1;
        let (header, payload) = match wire::parse(datagram) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        if header.dst_conn != 0 {
            if let Some(e) = self.conns.get_mut(&header.dst_conn) {
                // Path 0 is the handshake's pair; the others come from both announcements.
                let route_ok = match (header.path, e.routes.get(header.path as usize)) {
                    (0, _) => e.peer == from,
                    (_, Some(r)) => {
                        r.remote == *from.ip() && r.local == to && from.port() == e.peer.port()
                    }
                    (_, None) => false,
                };
                if !route_ok || (e.conn.peer_id() != 0 && e.conn.peer_id() != header.src_conn) {
                    self.counters.wrong_peer += 1;
                    return;
                }
                e.touch();
                let was_syn_sent = e.conn.state() == State::SynSent;
                e.conn.handle(now, &header, payload);
                if e.orphan_since.is_some() && e.conn.readable() > 0 {
                    // Data for a socket the application closed: nobody will read it, and the
                    // sender must learn so (the kernel resets such a connection too).
                    e.conn.abort();
                }
                if was_syn_sent && e.conn.peer_id() != 0 {
                    self.by_peer
                        .insert((from, e.conn.peer_id()), header.dst_conn);
                    self.open_paths(header.dst_conn, true);
                }
                return;
            }
            if self.accept_cookie(now, at, &header, payload) {
                return;
            }
        } else if header.kind == SegmentType::Syn {
            if let Some(&id) = self.by_peer.get(&(from, header.src_conn)) {
                if let Some(e) = self.conns.get_mut(&id) {
                    e.touch().conn.handle(now, &header, payload);
                    return;
                }
            }
            if self.syn(now, at, &header, payload, out) {
                return;
            }
        }
        self.counters.no_connection += 1;
        if let Some(reset) = wire::reset_for(&header, payload.len()) {
            wire::emit(&reset, &[], &mut self.scratch);
            if self.answer(at, out) {
                self.counters.resets_sent += 1;
            }
        }
    }

    /// Sends the segment in `scratch` back to where `at` came from, through the carrier it
    /// arrived on; false when that carrier is gone.
    fn answer(&self, at: Arrival, out: &mut dyn FnMut(Outgoing<'_>)) -> bool {
        let Some(carrier) = self.carriers.get(&at.local_port) else {
            return false;
        };
        out(Outgoing {
            port: at.port,
            carrier: carrier.ids.get(at.port).copied(),
            local_port: at.local_port,
            to: at.from,
            datagram: &self.scratch,
        });
        true
    }

    /// A SYN for the listener on `local_port`; false when no listener takes it.
    fn syn(
        &mut self,
        now: u64,
        at: Arrival,
        header: &Header,
        payload: &[u8],
        out: &mut dyn FnMut(Outgoing<'_>),
    ) -> bool {
        let Arrival {
            port,
            from,
            to,
            local_port,
        } = at;
        let Some(listener) = listener_for(&mut self.listeners, local_port, to) else {
            return false;
        };
        if listener.accept_queue_full() {
            // Full: the peer's SYN retries find room later, as with the kernel's queues.
            self.counters.syn_dropped += 1;
            return true;
        }
        if listener.half_open >= 2 * listener.backlog.max(64) {
            // Half-open connections at their bound (a flood from spoofed sources, say): answer
            // without keeping anything; a peer that answers back gets its connection then.
            let config = listener.config;
            let window = config.recv_buffer.min(MAX_WINDOW as usize) as u32;
            let options = wire::parse_syn_options(payload);
            self.cookies.syn_ack(
                now,
                from,
                SocketAddrV4::new(to, local_port),
                header,
                &options,
                payload.len(),
                (config.mss, window),
                &mut self.scratch,
            );
            if self.answer(at, out) {
                self.counters.syn_cookies_sent += 1;
            }
            return true;
        }
        listener.half_open += 1;
        let config = listener.config;
        let id = self.fresh_id();
        let mut conn = Connection::accept(config, now, id, random_u32(), header, payload);
        if !conn.peer_addrs().is_empty() {
            conn.announce(self.announced().to_vec());
        }
        self.by_peer.insert((from, header.src_conn), id);
        self.hold(local_port);
        let shared = Arc::new(StreamShared::default());
        let entry = Entry::new(
            conn,
            (SocketAddrV4::new(to, local_port), from, port),
            shared,
            Some(local_port),
        );
        self.conns.insert(id, entry);
        self.open_paths(id, false);
        true
    }

    /// A segment for no known connection that answers one of our stateless SYN-ACKs: the
    /// connection is made now, established, and takes the segment. False when it is not one.
    fn accept_cookie(&mut self, now: u64, at: Arrival, header: &Header, payload: &[u8]) -> bool {
        let local = SocketAddrV4::new(at.to, at.local_port);
        let Some(listener) = listener_for(&mut self.listeners, at.local_port, at.to) else {
            return false;
        };
        let Some(peer_mss) = self.cookies.check(now, at.from, local, header) else {
            return false;
        };
        if listener.accept_queue_full() || self.conns.contains_key(&header.dst_conn) {
            // No room to accept it: dropped; the peer's retransmission may find room.
            self.counters.syn_dropped += 1;
            return true;
        }
        // Counted as half-open until poll moves it to the accept queue, like any other.
        listener.half_open += 1;
        let mut conn =
            Connection::accept_cookie(listener.config, now, header.dst_conn, header, peer_mss);
        conn.handle(now, header, payload);
        self.counters.syn_cookies_accepted += 1;
        self.by_peer
            .insert((at.from, header.src_conn), header.dst_conn);
        self.hold(at.local_port);
        let shared = Arc::new(StreamShared::default());
        let entry = Entry::new(conn, (local, at.from, at.port), shared, Some(at.local_port));
        self.conns.insert(header.dst_conn, entry);
        true
    }

    /// Active opens still waiting for their first answer: (data port, peer address).
    pub fn awaiting_answer(&self) -> Vec<(usize, Ipv4Addr)> {
        self.conns
            .values()
            .filter(|e| e.fall_back_at.is_some() && e.conn.state() == State::SynSent)
            .map(|e| (e.port, *e.peer.ip()))
            .collect()
    }

    /// The peer `ip` (on data port `port`) cannot be reached yet (ARP is still asking): the
    /// fall-back clock of the handshakes to it starts over, so that a slow or lossy address
    /// resolution is not taken for a peer without sluice.
    pub fn postpone_fall_back(&mut self, now: u64, port: usize, ip: Ipv4Addr) {
        for e in self.conns.values_mut() {
            if e.port == port && *e.peer.ip() == ip && e.conn.state() == State::SynSent {
                if let Some(at) = e.fall_back_at.as_mut() {
                    *at = (*at).max(now + self.fall_back_after);
                    e.touch();
                }
            }
        }
    }

    /// ARP gave up on `ip`: handshakes to it fail with EHOSTUNREACH, as the kernel's do.
    pub fn host_unreachable(&mut self, ip: Ipv4Addr) {
        for e in self.conns.values_mut() {
            if *e.peer.ip() == ip && e.conn.state() == State::SynSent && e.failed.is_none() {
                e.touch();
                e.failed = Some(libc::EHOSTUNREACH);
                e.fall_back_at = None;
                e.conn.abort();
            }
        }
    }

    /// An ICMP port unreachable for a datagram from `local` to `remote`: a connection still
    /// in its handshake there falls back to the kernel's TCP (or, if it may not, is refused).
    pub fn unreachable(&mut self, local_port: u16, remote: SocketAddrV4) {
        for e in self.conns.values_mut() {
            if e.peer == remote && e.local.port() == local_port && e.conn.state() == State::SynSent
            {
                e.touch();
                if e.fall_back_at.is_some() {
                    e.fall_back_at = Some(0);
                } else if e.failed.is_none() {
                    e.failed = Some(libc::ECONNREFUSED);
                    e.conn.abort();
                }
            }
        }
    }

    /// Timers and transmission for every connection, then readiness. Returns whether some
    /// socket gained readiness (the caller wakes waiters).
    pub fn poll(&mut self, now: u64, out: &mut dyn FnMut(Outgoing<'_>)) -> bool {
        let mut woke = false;
        let mut finished = Vec::new();
        for (&id, e) in self.conns.iter_mut() {
            if e.wake_at > now {
                continue;
            }
            if let Some(carrier) = self.carriers.get(&e.local.port()) {
                let (peer_port, local_port) = (e.peer.port(), e.local.port());
                let Entry { conn, routes, .. } = e;
                conn.poll_transmit(now, &mut |datagram| {
                    // The path a segment goes on is in its header.
                    let path = datagram
                        .get(wire::PATH_AT..wire::PATH_AT + 2)
                        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
                    let r = routes.get(path).unwrap_or(&routes[0]);
                    out(Outgoing {
                        port: r.port,
                        carrier: carrier.ids.get(r.port).copied(),
                        local_port,
                        to: SocketAddrV4::new(r.remote, peer_port),
                        datagram,
                    })
                });
            }
            if e.conn.path_epoch() != e.path_epoch {
                note_path_changes(id, e, &mut self.counters);
            }
            woke |= publish(e, now);
            if let (Some(port), false) = (e.listener, e.queued) {
                if e.conn.state() != State::SynReceived {
                    if let Some(l) = self.listeners.get_mut(&port) {
                        l.half_open = l.half_open.saturating_sub(1);
                        if e.conn.error().is_none() && e.conn.state() != State::Closed {
                            l.ready.push_back(id);
                            e.queued = true;
                        } else {
                            finished.push(id);
                        }
                    }
                }
            }
            if let Some(since) = e.orphan_since {
                if e.conn.is_finished() || now.saturating_sub(since) > ORPHAN_LIFETIME {
                    finished.push(id);
                }
            }
            e.wake_at = e.next_wake();
        }
        for l in self.listeners.values_mut() {
            let bits = if l.ready.is_empty() {
                0
            } else {
                ready::READABLE
            };
            let old = l.shared.publish(bits);
            if bits & !old != 0 || l.ready.len() > l.last_ready {
                l.shared.bump();
            }
            l.last_ready = l.ready.len();
            woke |= bits & !old != 0;
        }
        for id in finished {
            let Some(e) = self.conns.get(&id) else {
                continue;
            };
            let port = e.local.port();
            if e.closed_first && e.conn.error().is_none() {
                // TIME_WAIT: the port stays taken for a while (a bind without SO_REUSEADDR
                // fails), as after the kernel's active close; the connection itself is gone,
                // its carrier reference passes to the TIME_WAIT entry.
                self.remove_conn(id);
                self.time_wait.push_back((now + TIME_WAIT, port));
                continue;
            }
            self.forget(id);
        }
        while let Some(&(until, port)) = self.time_wait.front() {
            if until > now {
                break;
            }
            self.time_wait.pop_front();
            self.release(port);
        }
        woke
    }
}

/// Logs and counts the paths of `e` that changed state since the last look.
fn note_path_changes(id: u32, e: &mut Entry, counters: &mut StreamCounters) {
    e.path_epoch = e.conn.path_epoch();
    let stats = e.conn.path_stats();
    for (i, p) in stats.iter().enumerate() {
        let before = e.path_states.get(i).copied();
        if before == Some(p.state) {
            continue;
        }
        let r = e.routes[i.min(e.routes.len() - 1)];
        match p.state {
            PathState::Failed => {
                counters.path_failures += 1;
                log::info!(
                    "stream {id:08x} path {i} ({} -> {}, port {}) failed: {}; its data moves to the other paths",
                    r.local,
                    r.remote,
                    r.port,
                    match p.last_failure {
                        Some(super::conn::FailReason::LinkDown) => "link down",
                        _ => "no acknowledgement",
                    }
                );
            }
            PathState::Active => {
                if before == Some(PathState::Failed) {
                    counters.path_recoveries += 1;
                }
                log::info!(
                    "stream {id:08x} path {i} ({} -> {}, port {}) active",
                    r.local,
                    r.remote,
                    r.port
                );
            }
            PathState::Unverified => {}
        }
    }
    e.path_states = stats.iter().map(|p| p.state).collect();
}

/// Publishes a connection's readiness; true when a bit appeared.
fn publish(e: &mut Entry, now: u64) -> bool {
    let conn = &e.conn;
    let mut bits = 0;
    let state = conn.state();
    if let Some(at) = e.fall_back_at {
        if state == State::SynSent && now >= at {
            bits |= ready::FALL_BACK;
        } else if state != State::SynSent {
            e.fall_back_at = None;
        }
    }
    let error = match conn.error() {
        _ if e.failed.is_some() => e.failed,
        // A reset after the peer's FIN is a broken pipe, as Linux reports it.
        Some(StreamError::Reset) if conn.fin_received() => Some(libc::EPIPE),
        other => other.map(StreamError::errno),
    };
    if let Some(errno) = error {
        if e.shared.bits() & ready::ERROR == 0 {
            e.shared.set_error(errno);
        }
        bits |= ready::ERROR | ready::HUP | ready::READABLE | ready::WRITABLE | ready::READ_HUP;
    }
    // Connected once the handshake completed (a handshake that failed never was).
    e.opened |= matches!(
        state,
        State::Established | State::FinWait | State::CloseWait | State::Closing
    ) || (state == State::Closed && conn.error().is_none());
    let opened = e.opened;
    if opened {
        bits |= ready::CONNECTED;
    }
    let readable = conn.readable();
    if readable >= e.shared.lowat() || conn.at_eof() {
        bits |= ready::READABLE;
    }
    if conn.fin_received() {
        bits |= ready::READ_HUP;
    }
    // Room to write, or writing is over (a write fails at once): writable, as the kernel says.
    let write_over = matches!(state, State::FinWait | State::Closing | State::Closed);
    if opened && (conn.send_space() > 0 || write_over) {
        bits |= ready::WRITABLE;
    }
    if state == State::Closed || (conn.fin_received() && state == State::Closing) {
        bits |= ready::HUP;
    }
    let old = e.shared.publish(bits);
    // An edge: a bit appeared, or more bytes arrived (reading them is no event).
    if bits & !old != 0 || readable > e.last_readable {
        e.shared.bump();
    }
    e.last_readable = readable;
    bits & !old != 0
}

/// A random non-zero u32 from the kernel's CSPRNG (connection ids and initial sequence
/// numbers must not be guessable by an off-path sender).
pub fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    loop {
        // SAFETY: getrandom writes at most 4 bytes into `bytes`.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 4, 0) };
        if n == 4 {
            let v = u32::from_ne_bytes(bytes);
            if v != 0 {
                return v;
            }
        }
    }
}

impl Streams {
    /// The streams as sluice-stat lines: the endpoint's counters, each listener, each
    /// connection with its protocol state.
    pub fn describe(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = &self.counters;
        let _ = writeln!(
            out,
            "streams carriers={} listeners={} connections={} datagrams_in={} malformed={} \
             no_connection={} wrong_peer={} resets_sent={} syn_dropped={} syn_cookies_sent={} \
             syn_cookies_accepted={} opened={} accepted={} \
             fell_back_to_kernel={} paths_opened={} path_failures={} path_recoveries={}",
            self.carriers.len(),
            self.listeners.len(),
            self.conns.len(),
            c.datagrams_in,
            c.malformed,
            c.no_connection,
            c.wrong_peer,
            c.resets_sent,
            c.syn_dropped,
            c.syn_cookies_sent,
            c.syn_cookies_accepted,
            c.connections_opened,
            c.connections_accepted,
            c.fallbacks,
            c.paths_opened,
            c.path_failures,
            c.path_recoveries,
        );
        let mut ports: Vec<&u16> = self.listeners.keys().collect();
        ports.sort();
        for port in ports {
            let l = &self.listeners[port];
            let _ = writeln!(
                out,
                "listener local={} backlog={} ready={} half_open={}",
                l.local,
                l.backlog,
                l.ready.len(),
                l.half_open
            );
        }
        let mut ids: Vec<&u32> = self.conns.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.conns[id];
            let st = e.conn.stats();
            let state = if e.fall_back_at == Some(0) || e.shared.has(ready::FALL_BACK) {
                "falling-back".to_string()
            } else {
                format!("{:?}", e.conn.state()).to_lowercase()
            };
            let _ = writeln!(
                out,
                "stream id={id:08x} peer_id={:08x} local={} peer={} state={state} closed_by_app={} \
                 srtt_us={} rttvar_us={} rto_us={} cwnd={} ssthresh={} in_flight={} \
                 peer_window={} send_queued={} recv_queued={} bytes_sent={} bytes_received={} \
                 segments_sent={} segments_received={} retransmits={} fast_retransmits={} \
                 timeouts={} dup_segments={} out_of_order={} dropped={}",
                e.conn.peer_id(),
                e.local,
                e.peer,
                u8::from(e.orphan_since.is_some()),
                st.srtt_us,
                st.rttvar_us,
                st.rto_us,
                st.cwnd,
                st.ssthresh,
                st.bytes_in_flight,
                st.peer_window,
                st.send_queued,
                st.recv_queued,
                st.bytes_sent,
                st.bytes_received,
                st.segments_sent,
                st.segments_received,
                st.retransmits,
                st.fast_retransmits,
                st.timeouts,
                st.dup_segments,
                st.out_of_order_segments,
                st.dropped_segments,
            );
            if e.routes.len() < 2 {
                continue;
            }
            for (i, p) in e.conn.path_stats().iter().enumerate() {
                let r = e.routes[i.min(e.routes.len() - 1)];
                let _ = writeln!(
                    out,
                    "path stream={id:08x} index={i} port={} local={} remote={} state={} \
                     srtt_us={} rto_us={} cwnd={} in_flight={} segments_sent={} bytes_sent={} \
                     retransmits={} losses={} failures={} probes={}",
                    r.port,
                    r.local,
                    r.remote,
                    p.state.name(),
                    p.srtt_us,
                    p.rto_us,
                    p.cwnd,
                    p.in_flight,
                    p.segments_sent,
                    p.bytes_sent,
                    p.retransmits,
                    p.losses,
                    p.failures,
                    p.probes,
                );
            }
        }
    }

    fn fresh_id(&self) -> u32 {
        loop {
            let id = random_u32();
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }
}
