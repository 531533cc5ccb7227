//! UDP demultiplexing: the table of bound sockets and their receive queues.
//!
//! Binding follows Linux: an (address, port) pair is taken unless both
//! sockets set SO_REUSEADDR or both set SO_REUSEPORT, where INADDR_ANY
//! overlaps every address. A datagram goes to the most specific match
//! (connected 4-tuple over bound address over INADDR_ANY); ties go to the
//! most recently bound socket, or are spread by flow hash over a
//! SO_REUSEPORT group. Broadcast and multicast go to every match. Each
//! socket's queue is bounded in bytes like SO_RCVBUF: a full queue drops and
//! counts, and datagram boundaries are kept.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use rustc_hash::FxHashMap;

use crate::icmp::Unreachable;
use crate::ipv4::Addressed;

/// Linux's default ephemeral range (net.ipv4.ip_local_port_range).
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 32768..=60999;
/// Linux's default receive buffer (net.core.rmem_default).
pub const DEFAULT_RCVBUF: usize = 212_992;
/// What each queued datagram costs beyond its payload, so that empty
/// datagrams also fill a queue (Linux charges the buffer's true size).
pub const DATAGRAM_OVERHEAD: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    pub reuse_addr: bool,
    pub reuse_port: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    AddrInUse,
    /// Not one of our addresses (nor INADDR_ANY, nor multicast).
    AddrNotAvailable,
    /// bind() on a socket that is already bound.
    AlreadyBound,
    /// Every ephemeral port is taken.
    NoPortsLeft,
    NoSuchSocket,
}

impl UdpError {
    pub fn errno(&self) -> i32 {
        match self {
            UdpError::AddrInUse => libc::EADDRINUSE,
            UdpError::AddrNotAvailable => libc::EADDRNOTAVAIL,
            UdpError::AlreadyBound => libc::EINVAL,
            UdpError::NoPortsLeft => libc::EAGAIN,
            UdpError::NoSuchSocket => libc::EBADF,
        }
    }
}

/// One received datagram, boundaries intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddrV4,
    /// The address it was sent to (ours, a broadcast or a group).
    pub to: Ipv4Addr,
    pub data: Vec<u8>,
}

/// What became of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued on this many sockets (more than one for broadcast and multicast).
    Queued(usize),
    /// Sockets matched, but every one's queue was full.
    QueueFull,
    /// No socket is bound to receive it (the sender gets port unreachable).
    NoSocket,
}

impl Delivery {
    pub fn queued(&self) -> usize {
        match self {
            Delivery::Queued(n) => *n,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub delivered: u64,
    /// Datagrams no socket was bound to receive.
    pub no_socket: u64,
    pub queue_full_drops: u64,
}

#[derive(Debug)]
struct UdpSocket {
    local: Option<SocketAddrV4>,
    remote: Option<SocketAddrV4>,
    options: BindOptions,
    /// bind() fixed the address / the port (connect's choices are undone by disconnect).
    addr_locked: bool,
    port_locked: bool,
    bound_seq: u64,
    queue: VecDeque<Datagram>,
    queued_bytes: usize,
    rcvbuf: usize,
    drops: u64,
    pending_error: Option<i32>,
}

impl UdpSocket {
    /// How well this socket matches a datagram from `src` to `dst`; None if it does not.
    fn score(&self, src: SocketAddrV4, dst: SocketAddrV4) -> Option<u8> {
        let local = self.local?;
        if local.port() != dst.port() {
            return None;
        }
        let mut score = 1;
        if !local.ip().is_unspecified() {
            if local.ip() != dst.ip() {
                return None;
            }
            score += 4;
        }
        if let Some(remote) = self.remote {
            if remote != src {
                return None;
            }
            score += 8;
        }
        Some(score)
    }

    fn cost(data_len: usize) -> usize {
        data_len + DATAGRAM_OVERHEAD
    }
}

pub struct UdpSockets {
    sockets: FxHashMap<SocketId, UdpSocket>,
    /// Bound sockets by local port, in bind order: demultiplexing looks at one port's sockets only.
    by_port: FxHashMap<u16, Vec<SocketId>>,
    local_addrs: Vec<Ipv4Addr>,
    next_id: u32,
    bind_seq: u64,
    ephemeral_cursor: u16,
    counters: UdpCounters,
}

impl UdpSockets {
    /// `local_addrs` are the addresses sockets may bind to; `ephemeral_seed`
    /// picks where the search for free ephemeral ports starts.
    pub fn new(local_addrs: &[Ipv4Addr], ephemeral_seed: u16) -> Self {
        let span = EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start() + 1;
        UdpSockets {
            sockets: FxHashMap::default(),
            by_port: FxHashMap::default(),
            local_addrs: local_addrs.to_vec(),
            next_id: 1,
            bind_seq: 0,
            ephemeral_cursor: EPHEMERAL_PORTS.start() + ephemeral_seed % span,
            counters: UdpCounters::default(),
        }
    }

    pub fn counters(&self) -> &UdpCounters {
        &self.counters
    }

    pub fn add_local_addr(&mut self, ip: Ipv4Addr) {
        if !self.local_addrs.contains(&ip) {
            self.local_addrs.push(ip);
        }
    }

    /// A new, unbound socket.
    pub fn open(&mut self) -> SocketId {
        let id = SocketId(self.next_id);
        self.next_id += 1;
        let socket = UdpSocket {
            local: None,
            remote: None,
            options: BindOptions::default(),
            addr_locked: false,
            port_locked: false,
            bound_seq: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            rcvbuf: DEFAULT_RCVBUF,
            drops: 0,
            pending_error: None,
        };
        self.sockets.insert(id, socket);
        id
    }

    pub fn close(&mut self, id: SocketId) {
        self.unbind(id);
        self.sockets.remove(&id);
    }

    fn unbind(&mut self, id: SocketId) {
        let Some(local) = self.sockets.get_mut(&id).and_then(|s| s.local.take()) else {
            return;
        };
        if let Some(ids) = self.by_port.get_mut(&local.port()) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_port.remove(&local.port());
            }
        }
    }

    fn socket(&self, id: SocketId) -> Result<&UdpSocket, UdpError> {
        self.sockets.get(&id).ok_or(UdpError::NoSuchSocket)
    }

    fn socket_mut(&mut self, id: SocketId) -> Result<&mut UdpSocket, UdpError> {
        self.sockets.get_mut(&id).ok_or(UdpError::NoSuchSocket)
    }

    /// Whether `id` may take `addr` with `options` alongside the sockets already bound.
    fn conflicts(&self, id: SocketId, addr: SocketAddrV4, options: BindOptions) -> bool {
        let Some(on_port) = self.by_port.get(&addr.port()) else {
            return false;
        };
        on_port.iter().any(|other_id| {
            let other = &self.sockets[other_id];
            let Some(local) = other.local else {
                return false;
            };
            *other_id != id
                && (local.ip() == addr.ip()
                    || local.ip().is_unspecified()
                    || addr.ip().is_unspecified())
                && !(options.reuse_addr && other.options.reuse_addr)
                && !(options.reuse_port && other.options.reuse_port)
        })
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// A port no socket uses, searching on from the last one handed out.
    fn ephemeral_port(&mut self) -> Result<u16, UdpError> {
        let span = EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start() + 1;
        for _ in 0..span {
            let port = self.ephemeral_cursor;
            self.ephemeral_cursor = if port == *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            if !self.port_in_use(port) {
                return Ok(port);
            }
        }
        Err(UdpError::NoPortsLeft)
    }

    /// bind(): port 0 picks an ephemeral port. Returns the bound address.
    pub fn bind(
        &mut self,
        id: SocketId,
        addr: SocketAddrV4,
        options: BindOptions,
    ) -> Result<SocketAddrV4, UdpError> {
        if self.socket(id)?.local.is_some() {
            return Err(UdpError::AlreadyBound);
        }
        let ip = *addr.ip();
        if !(ip.is_unspecified() || ip.is_multicast() || self.local_addrs.contains(&ip)) {
            return Err(UdpError::AddrNotAvailable);
        }
        let port = if addr.port() == 0 {
            self.ephemeral_port()?
        } else {
            addr.port()
        };
        let local = SocketAddrV4::new(ip, port);
        if self.conflicts(id, local, options) {
            return Err(UdpError::AddrInUse);
        }
        self.bind_seq += 1;
        let seq = self.bind_seq;
        let socket = self.socket_mut(id)?;
        socket.local = Some(local);
        socket.options = options;
        socket.addr_locked = !ip.is_unspecified();
        socket.port_locked = addr.port() != 0;
        socket.bound_seq = seq;
        self.by_port.entry(port).or_default().push(id);
        Ok(local)
    }

    /// Records SO_REUSEADDR / SO_REUSEPORT as set now (they may change after
    /// bind, as in Linux, and apply to the implicit bind of a first sendto).
    pub fn set_bind_options(&mut self, id: SocketId, options: BindOptions) -> Result<(), UdpError> {
        self.socket_mut(id)?.options = options;
        Ok(())
    }

    /// Binds an unbound socket to INADDR_ANY and an ephemeral port (what a
    /// first sendto or connect does); returns the local address either way.
    pub fn ensure_bound(&mut self, id: SocketId) -> Result<SocketAddrV4, UdpError> {
        if let Some(local) = self.socket(id)?.local {
            return Ok(local);
        }
        let options = self.socket(id)?.options;
        let local = self.bind(id, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), options)?;
        self.socket_mut(id)?.port_locked = false;
        Ok(local)
    }

    /// connect(): only datagrams from `remote` are received from now on.
    /// `source` is the address the route uses, taken as local address if none was bound.
    pub fn connect(
        &mut self,
        id: SocketId,
        remote: SocketAddrV4,
        source: Ipv4Addr,
    ) -> Result<SocketAddrV4, UdpError> {
        let local = self.ensure_bound(id)?;
        let socket = self.socket_mut(id)?;
        let local = if local.ip().is_unspecified() {
            SocketAddrV4::new(source, local.port())
        } else {
            local
        };
        socket.local = Some(local);
        socket.remote = Some(remote);
        socket.pending_error = None;
        Ok(local)
    }

    /// connect(AF_UNSPEC): forget the peer, and whatever connect chose
    /// (the address, and the port if bind did not set it), like Linux.
    pub fn disconnect(&mut self, id: SocketId) -> Result<(), UdpError> {
        let socket = self.socket_mut(id)?;
        socket.remote = None;
        if let Some(local) = socket.local {
            if !socket.port_locked {
                self.unbind(id);
            } else if !socket.addr_locked {
                socket.local = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port()));
            }
        }
        Ok(())
    }

    pub fn local_addr(&self, id: SocketId) -> Result<Option<SocketAddrV4>, UdpError> {
        Ok(self.socket(id)?.local)
    }

    pub fn peer_addr(&self, id: SocketId) -> Result<Option<SocketAddrV4>, UdpError> {
        Ok(self.socket(id)?.remote)
    }

    /// Sets the receive queue's byte bound (the effective SO_RCVBUF).
    pub fn set_rcvbuf(&mut self, id: SocketId, bytes: usize) -> Result<(), UdpError> {
        self.socket_mut(id)?.rcvbuf = bytes;
        Ok(())
    }

    /// Datagrams this socket dropped because its queue was full.
    pub fn drops(&self, id: SocketId) -> Result<u64, UdpError> {
        Ok(self.socket(id)?.drops)
    }

    /// Hands a received datagram to its socket(s).
    pub fn deliver(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        addressed: Addressed,
        data: &[u8],
    ) -> Delivery {
        let targets = self.lookup(src, dst, addressed);
        if targets.is_empty() {
            self.counters.no_socket += 1;
            return Delivery::NoSocket;
        }
        let mut queued = 0;
        for id in targets {
            let socket = self
                .sockets
                .get_mut(&id)
                .expect("lookup returns live sockets");
            let cost = UdpSocket::cost(data.len());
            if socket.queued_bytes > 0 && socket.queued_bytes + cost > socket.rcvbuf {
                socket.drops += 1;
                self.counters.queue_full_drops += 1;
                continue;
            }
            socket.queued_bytes += cost;
            socket.queue.push_back(Datagram {
                from: src,
                to: *dst.ip(),
                data: data.to_vec(),
            });
            self.counters.delivered += 1;
            queued += 1;
        }
        if queued == 0 {
            Delivery::QueueFull
        } else {
            Delivery::Queued(queued)
        }
    }

    /// The sockets a datagram from `src` to `dst` is for.
    pub fn lookup(
        &self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        addressed: Addressed,
    ) -> Vec<SocketId> {
        let Some(on_port) = self.by_port.get(&dst.port()) else {
            return Vec::new();
        };
        let mut matches: Vec<(SocketId, u8, &UdpSocket)> = on_port
            .iter()
            .filter_map(|id| {
                let s = &self.sockets[id];
                s.score(src, dst).map(|score| (*id, score, s))
            })
            .collect();
        if addressed != Addressed::Unicast {
            // Broadcast and multicast reach every socket that matches (bound
            // to INADDR_ANY, or to that very broadcast or group address).
            return matches.into_iter().map(|(id, _, _)| id).collect();
        }
        let Some(best) = matches.iter().map(|(_, score, _)| *score).max() else {
            return Vec::new();
        };
        matches.retain(|(_, score, _)| *score == best);
        if matches.len() > 1 && matches.iter().all(|(_, _, s)| s.options.reuse_port) {
            // The same flow always lands on the same member of the group.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (src, dst).hash(&mut hasher);
            let pick = (hasher.finish() % matches.len() as u64) as usize;
            return vec![matches[pick].0];
        }
        let newest = matches
            .iter()
            .max_by_key(|(_, _, s)| s.bound_seq)
            .expect("best exists");
        vec![newest.0]
    }

    /// Takes the next datagram, if any.
    pub fn recv(&mut self, id: SocketId) -> Result<Option<Datagram>, UdpError> {
        let socket = self.socket_mut(id)?;
        let datagram = socket.queue.pop_front();
        if let Some(d) = &datagram {
            socket.queued_bytes -= UdpSocket::cost(d.data.len());
        }
        Ok(datagram)
    }

    /// The next datagram, left in the queue (MSG_PEEK).
    pub fn peek(&self, id: SocketId) -> Result<Option<&Datagram>, UdpError> {
        Ok(self.socket(id)?.queue.front())
    }

    /// Datagrams waiting.
    pub fn queued(&self, id: SocketId) -> Result<usize, UdpError> {
        Ok(self.socket(id)?.queue.len())
    }

    /// Records an ICMP error against the connected socket it concerns (as
    /// Linux does without IP_RECVERR: unconnected sockets never see it).
    pub fn report_unreachable(&mut self, report: &Unreachable) -> Option<SocketId> {
        let (id, socket) = self.sockets.iter_mut().find(|(_, s)| {
            s.remote == Some(report.remote)
                && s.local.is_some_and(|l| {
                    l.port() == report.local.port()
                        && (l.ip() == report.local.ip() || l.ip().is_unspecified())
                })
        })?;
        socket.pending_error = Some(report.errno());
        Some(*id)
    }

    /// Records EHOSTUNREACH on the connected sockets whose peer's next hop did not answer ARP.
    pub fn report_host_unreachable(&mut self, peer: Ipv4Addr) -> Vec<SocketId> {
        let mut hit = Vec::new();
        for (id, socket) in self.sockets.iter_mut() {
            if socket.remote.is_some_and(|r| *r.ip() == peer) {
                socket.pending_error = Some(libc::EHOSTUNREACH);
                hit.push(*id);
            }
        }
        hit.sort();
        hit
    }

    /// The pending error (SO_ERROR, or what the next call fails with), cleared.
    pub fn take_error(&mut self, id: SocketId) -> Result<Option<i32>, UdpError> {
        Ok(self.socket_mut(id)?.pending_error.take())
    }
}

#[cfg(test)]
mod tests;
