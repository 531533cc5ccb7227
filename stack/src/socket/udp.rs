//! [`UdpSocket`]: an offloaded datagram socket with the kernel's semantics.
//!
//! Received datagrams wait in the socket's own queue ([`SocketShared`]),
//! filled by whichever thread runs the engine and read by application
//! threads under a small per-socket mutex, never the engine lock. Everything
//! else (bind, connect, send, options) takes the engine lock briefly.
//!
//! Errors are positive errno values, as the kernel would return them.
//! Blocking calls are not interrupted by signals (no EINTR yet): a blocked
//! recv sleeps in short slices, so a signal handler runs promptly, but the
//! call itself carries on until data, its timeout, or close.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::{Engine, Stack};
use crate::iface::MulticastSend;
use crate::udp::{BindOptions, Datagram, DATAGRAM_OVERHEAD, DEFAULT_RCVBUF};

/// Longest single sleep of a blocked call: it re-checks its deadline and the
/// socket's state at least this often.
const SLEEP_SLICE: Duration = Duration::from_millis(10);
/// Linux's smallest buffers (SOCK_MIN_RCVBUF / SOCK_MIN_SNDBUF on x86_64).
const MIN_RCVBUF: usize = 2304;
const MIN_SNDBUF: usize = 4608;
/// Linux's default send buffer (net.core.wmem_default).
const DEFAULT_SNDBUF: usize = 212_992;

/// MSG_* flags of a receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvFlags {
    /// MSG_PEEK: leave the datagram queued.
    pub peek: bool,
    /// MSG_DONTWAIT: EAGAIN instead of blocking.
    pub dontwait: bool,
    /// MSG_TRUNC: the caller wants the whole length (it is always in `Received::len`).
    pub trunc: bool,
}

/// One received datagram, as far as it fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffers.
    pub copied: usize,
    /// Length of the whole datagram (larger than `copied`: MSG_TRUNC in msg_flags).
    pub len: usize,
    pub from: SocketAddrV4,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub error: bool,
}

struct RxQueue {
    datagrams: VecDeque<Datagram>,
    bytes: usize,
    rcvbuf: usize,
    drops: u64,
}

/// The part of a socket the engine fills: its receive queue and pending error.
pub struct SocketShared {
    rx: Mutex<RxQueue>,
    error: AtomicI32,
}

impl Default for SocketShared {
    fn default() -> Self {
        SocketShared {
            rx: Mutex::new(RxQueue {
                datagrams: VecDeque::new(),
                bytes: 0,
                rcvbuf: DEFAULT_RCVBUF,
                drops: 0,
            }),
            error: AtomicI32::new(0),
        }
    }
}

impl SocketShared {
    /// Queues a datagram: `Some(was_empty)`, or None when the queue is full
    /// (dropped and counted). Like Linux, an empty queue takes any one datagram.
    pub(crate) fn push(&self, datagram: Datagram) -> Option<bool> {
        let mut rx = self.rx.lock().unwrap();
        let cost = datagram.data.len() + DATAGRAM_OVERHEAD;
        if rx.bytes > 0 && rx.bytes + cost > rx.rcvbuf {
            rx.drops += 1;
            return None;
        }
        rx.bytes += cost;
        let was_empty = rx.datagrams.is_empty();
        rx.datagrams.push_back(datagram);
        Some(was_empty)
    }

    pub(crate) fn set_error(&self, errno: i32) {
        self.error.store(errno, Ordering::Release);
    }

    fn readable(&self) -> bool {
        !self.rx.lock().unwrap().datagrams.is_empty() || self.error.load(Ordering::Acquire) != 0
    }

    /// Queued datagrams, their bytes (with overhead), and drops so far (for statistics).
    pub(crate) fn depth(&self) -> (usize, usize, u64) {
        let rx = self.rx.lock().unwrap();
        (rx.datagrams.len(), rx.bytes, rx.drops)
    }

    fn try_recv(&self, bufs: &mut [&mut [u8]], peek: bool) -> Option<Received> {
        let mut rx = self.rx.lock().unwrap();
        let datagram = rx.datagrams.front()?;
        let received = Received {
            copied: scatter(&datagram.data, bufs),
            len: datagram.data.len(),
            from: datagram.from,
        };
        if !peek {
            rx.datagrams.pop_front();
            rx.bytes -= received.len + DATAGRAM_OVERHEAD;
        }
        Some(received)
    }
}

/// Copies `data` into `bufs` in order; returns how many bytes fitted.
fn scatter(data: &[u8], bufs: &mut [&mut [u8]]) -> usize {
    let mut copied = 0;
    for buf in bufs.iter_mut() {
        let n = buf.len().min(data.len() - copied);
        buf[..n].copy_from_slice(&data[copied..copied + n]);
        copied += n;
        if copied == data.len() {
            break;
        }
    }
    copied
}

#[derive(Clone, Debug)]
struct Options {
    nonblocking: bool,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    send_buffer: usize,
    bind: BindOptions,
    multicast_if: Option<Ipv4Addr>,
    multicast_ttl: u8,
    multicast_loop: bool,
    /// Groups joined, with the local address given (INADDR_ANY: the first port).
    groups: Vec<(Ipv4Addr, usize)>,
}

pub struct UdpSocket {
    stack: Arc<Stack>,
    key: u64,
    shared: Arc<SocketShared>,
    options: Mutex<Options>,
    closed: AtomicBool,
}

impl UdpSocket {
    pub(crate) fn new(stack: Arc<Stack>, key: u64, shared: Arc<SocketShared>) -> Self {
        UdpSocket {
            stack,
            key,
            shared,
            options: Mutex::new(Options {
                nonblocking: false,
                recv_timeout: None,
                send_timeout: None,
                send_buffer: DEFAULT_SNDBUF,
                bind: BindOptions::default(),
                multicast_if: None,
                multicast_ttl: 1,
                multicast_loop: true,
                groups: Vec::new(),
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<(), i32> {
        if self.closed.load(Ordering::Acquire) {
            Err(libc::EBADF)
        } else {
            Ok(())
        }
    }

    /// Runs `f` with the engine and this socket's ids (one per port).
    fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut Engine, &[crate::udp::SocketId]) -> Result<T, i32>,
    ) -> Result<T, i32> {
        self.check_open()?;
        let mut engine = self.stack.lock_engine();
        let ids = match engine.sockets.get(&self.key) {
            Some(entry) => entry.ids.clone(),
            None => return Err(libc::EBADF),
        };
        f(&mut engine, &ids)
    }

    /// bind(): INADDR_ANY (or a group) binds on every port with one port
    /// number; a data IP binds on its own port only.
    pub fn bind(&self, addr: SocketAddrV4) -> Result<(), i32> {
        let options = self.options.lock().unwrap().bind;
        self.with_engine(|engine, ids| {
            if ids.is_empty() {
                return Err(libc::EADDRNOTAVAIL);
            }
            let ip = *addr.ip();
            if ip.is_unspecified() || ip.is_multicast() {
                bind_everywhere(engine, ids, addr, options)
            } else {
                let port = engine.port_of(ip).ok_or(libc::EADDRNOTAVAIL)?;
                engine.ports[port]
                    .iface
                    .sockets_mut()
                    .bind(ids[port], addr, options)
                    .map(|_| ())
                    .map_err(|e| e.errno())
            }
        })
    }

    /// connect(): `None` (AF_UNSPEC) disconnects.
    pub fn connect(&self, peer: Option<SocketAddrV4>) -> Result<(), i32> {
        let (options, multicast_if) = {
            let o = self.options.lock().unwrap();
            (o.bind, o.multicast_if)
        };
        self.with_engine(|engine, ids| {
            let Some(peer) = peer else {
                for (port, id) in engine.ports.iter_mut().zip(ids) {
                    let _ = port.iface.sockets_mut().disconnect(*id);
                }
                return Ok(());
            };
            let route = sending_port(engine, ids, *peer.ip(), multicast_if);
            ensure_bound_everywhere(engine, ids, options)?;
            engine.ports[route]
                .iface
                .connect_udp(ids[route], peer)
                .map_err(|e| e.errno())?;
            for (index, port) in engine.ports.iter_mut().enumerate() {
                if index != route {
                    let own = port.iface.config().addr;
                    let _ = port.iface.sockets_mut().connect(ids[index], peer, own);
                }
            }
            Ok(())
        })?;
        self.shared.error.store(0, Ordering::Release);
        Ok(())
    }

    /// getsockname(): None while unbound.
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.with_engine(|engine, ids| {
            Ok(primary(engine, ids).and_then(|p| {
                engine.ports[p]
                    .iface
                    .sockets()
                    .local_addr(ids[p])
                    .ok()
                    .flatten()
            }))
        })
        .ok()
        .flatten()
    }

    /// getpeername(): None unless connected.
    pub fn peer_addr(&self) -> Option<SocketAddrV4> {
        self.with_engine(|engine, ids| {
            Ok(primary(engine, ids).and_then(|p| {
                engine.ports[p]
                    .iface
                    .sockets()
                    .peer_addr(ids[p])
                    .ok()
                    .flatten()
            }))
        })
        .ok()
        .flatten()
    }

    /// send/sendto/sendmsg: the buffers make one datagram; `dst` None sends
    /// to the connected peer. A full transmit backlog blocks (up to
    /// SO_SNDTIMEO) or, non-blocking, fails with EAGAIN.
    pub fn send_to(
        &self,
        bufs: &[&[u8]],
        dst: Option<SocketAddrV4>,
        dontwait: bool,
    ) -> Result<usize, i32> {
        self.check_open()?;
        let pending = self.shared.error.swap(0, Ordering::AcqRel);
        if pending != 0 {
            return Err(pending);
        }
        let gathered;
        let data: &[u8] = match bufs {
            [one] => one,
            _ => {
                gathered = bufs.concat();
                &gathered
            }
        };
        let (nonblocking, timeout, options, multicast_if, multicast) = {
            let o = self.options.lock().unwrap();
            (
                o.nonblocking || dontwait,
                o.send_timeout,
                o.bind,
                o.multicast_if,
                MulticastSend {
                    ttl: o.multicast_ttl,
                    loop_back: o.multicast_loop,
                },
            )
        };
        // The first attempt reads the clock once; a full backlog's retries keep the deadline.
        let mut start = None;
        loop {
            let mut now = 0;
            let sent = self.with_engine(|engine, ids| {
                let target = match dst {
                    Some(d) => *d.ip(),
                    None => primary(engine, ids)
                        .and_then(|p| engine.ports[p].iface.sockets().peer_addr(ids[p]).ok()?)
                        .map(|peer| *peer.ip())
                        .ok_or(libc::EDESTADDRREQ)?,
                };
                let port = sending_port(engine, ids, target, multicast_if);
                if engine.ports[port].backlog_full() {
                    return Ok(None);
                }
                ensure_bound_everywhere(engine, ids, options)?;
                now = self.stack.now();
                let n = engine.ports[port]
                    .iface
                    .send_udp_with(now, ids[port], dst, data, Some(multicast))
                    .map_err(|e| e.errno())?;
                if engine.flush_port_soon(port, now) {
                    // Back to back counts from the end of the device's system call.
                    engine.ports[port].coalesce.returned(self.stack.now());
                }
                self.stack.note_tx_state(engine);
                // Our own address or a multicast loop may have queued datagrams here.
                self.stack.deliver(engine);
                Ok(Some(n))
            })?;
            if let Some(n) = sent {
                self.stack.note_traffic_at(now);
                return Ok(n);
            }
            let start = *start.get_or_insert_with(Instant::now);
            if nonblocking || timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(libc::EAGAIN);
            }
            self.stack.poll();
            std::thread::yield_now();
        }
    }

    /// recv/recvfrom/recvmsg: one datagram (boundaries kept). Blocking: polls
    /// for the stack's spin budget, then sleeps until woken by the engine;
    /// EAGAIN after SO_RCVTIMEO. With nothing queued, a pending ICMP error
    /// (ECONNREFUSED on a connected socket) is returned and cleared.
    pub fn recv_from(&self, bufs: &mut [&mut [u8]], flags: RecvFlags) -> Result<Received, i32> {
        self.check_open()?;
        let (nonblocking, timeout) = {
            let o = self.options.lock().unwrap();
            (o.nonblocking || flags.dontwait, o.recv_timeout)
        };
        let start = Instant::now();
        let spin = self.stack.spin_budget();
        let mut polled_once = false;
        loop {
            if let Some(received) = self.shared.try_recv(bufs, flags.peek) {
                return Ok(received);
            }
            let pending = self.shared.error.swap(0, Ordering::AcqRel);
            if pending != 0 {
                return Err(pending);
            }
            self.check_open()?;
            if !polled_once || start.elapsed() < spin {
                // Make progress ourselves: cheaper than a wakeup when data is close.
                polled_once = true;
                self.stack.poll();
                if self.shared.readable() {
                    continue;
                }
                if nonblocking {
                    return Err(libc::EAGAIN);
                }
                std::hint::spin_loop();
                continue;
            }
            if nonblocking {
                return Err(libc::EAGAIN);
            }
            let slice = match timeout {
                Some(t) => {
                    let elapsed = start.elapsed();
                    if elapsed >= t {
                        return Err(libc::EAGAIN);
                    }
                    (t - elapsed).min(SLEEP_SLICE)
                }
                None => SLEEP_SLICE,
            };
            // The helper thread polls meanwhile and wakes us on arrival.
            self.stack.wait_readable(slice, || {
                self.shared.readable() || self.closed.load(Ordering::Acquire)
            });
        }
    }

    pub fn readiness(&self) -> Readiness {
        let closed = self.closed.load(Ordering::Acquire);
        let error = self.shared.error.load(Ordering::Acquire) != 0;
        Readiness {
            readable: self.shared.readable() || closed,
            writable: !closed && !self.stack.tx_congested(),
            error,
        }
    }

    /// FIONREAD: length of the next datagram, 0 if none.
    pub fn next_datagram_len(&self) -> usize {
        let rx = self.shared.rx.lock().unwrap();
        rx.datagrams.front().map(|d| d.data.len()).unwrap_or(0)
    }

    /// SO_ERROR: the pending error (0 if none), cleared.
    pub fn take_error(&self) -> i32 {
        self.shared.error.swap(0, Ordering::AcqRel)
    }

    /// Datagrams this socket dropped because its receive queue was full.
    pub fn drops(&self) -> u64 {
        self.shared.rx.lock().unwrap().drops
    }

    pub fn set_nonblocking(&self, on: bool) {
        self.options.lock().unwrap().nonblocking = on;
    }

    pub fn set_recv_timeout(&self, t: Option<Duration>) {
        self.options.lock().unwrap().recv_timeout = t.filter(|t| !t.is_zero());
    }

    pub fn set_send_timeout(&self, t: Option<Duration>) {
        self.options.lock().unwrap().send_timeout = t.filter(|t| !t.is_zero());
    }

    /// SO_RCVBUF, as Linux: twice the value asked, bounded by
    /// net.core.rmem_max and SOCK_MIN_RCVBUF. The queue drops beyond it.
    pub fn set_recv_buffer(&self, bytes: usize) {
        let effective = (bytes.min(sysctl_max("rmem_max")) * 2).max(MIN_RCVBUF);
        self.shared.rx.lock().unwrap().rcvbuf = effective;
    }

    pub fn recv_buffer(&self) -> usize {
        self.shared.rx.lock().unwrap().rcvbuf
    }

    /// SO_SNDBUF, as Linux (doubled, bounded). Recorded and reported; sends
    /// are bounded by the port's transmit backlog instead.
    pub fn set_send_buffer(&self, bytes: usize) {
        self.options.lock().unwrap().send_buffer =
            (bytes.min(sysctl_max("wmem_max")) * 2).max(MIN_SNDBUF);
    }

    pub fn send_buffer(&self) -> usize {
        self.options.lock().unwrap().send_buffer
    }

    pub fn set_reuse_addr(&self, on: bool) -> Result<(), i32> {
        self.update_bind_options(|o| o.reuse_addr = on)
    }

    pub fn set_reuse_port(&self, on: bool) -> Result<(), i32> {
        self.update_bind_options(|o| o.reuse_port = on)
    }

    fn update_bind_options(&self, change: impl FnOnce(&mut BindOptions)) -> Result<(), i32> {
        let options = {
            let mut o = self.options.lock().unwrap();
            change(&mut o.bind);
            o.bind
        };
        self.with_engine(|engine, ids| {
            for (port, id) in engine.ports.iter_mut().zip(ids) {
                port.iface
                    .sockets_mut()
                    .set_bind_options(*id, options)
                    .map_err(|e| e.errno())?;
            }
            Ok(())
        })
    }

    /// IP_ADD_MEMBERSHIP: `iface` INADDR_ANY means the first data port.
    pub fn join_group(&self, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), i32> {
        if !group.is_multicast() {
            return Err(libc::EINVAL);
        }
        let port = self.with_engine(|engine, _| group_port(engine, iface))?;
        let mut options = self.options.lock().unwrap();
        if options.groups.contains(&(group, port)) {
            return Err(libc::EADDRINUSE);
        }
        options.groups.push((group, port));
        drop(options);
        self.with_engine(|engine, _| {
            engine.join(port, group);
            Ok(())
        })
    }

    /// IP_DROP_MEMBERSHIP.
    pub fn leave_group(&self, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), i32> {
        let port = self.with_engine(|engine, _| group_port(engine, iface))?;
        let mut options = self.options.lock().unwrap();
        let Some(at) = options.groups.iter().position(|g| *g == (group, port)) else {
            return Err(libc::EADDRNOTAVAIL);
        };
        options.groups.remove(at);
        drop(options);
        self.with_engine(|engine, _| {
            engine.leave(port, group);
            Ok(())
        })
    }

    /// IP_MULTICAST_IF: the data IP whose port sends this socket's multicast.
    pub fn set_multicast_if(&self, a: Ipv4Addr) -> Result<(), i32> {
        if !a.is_unspecified() {
            self.with_engine(|engine, _| engine.port_of(a).ok_or(libc::EADDRNOTAVAIL))?;
        }
        self.options.lock().unwrap().multicast_if = Some(a).filter(|a| !a.is_unspecified());
        Ok(())
    }

    /// IP_MULTICAST_TTL of this socket's multicast datagrams (default 1).
    pub fn set_multicast_ttl(&self, t: u8) {
        self.options.lock().unwrap().multicast_ttl = t;
    }

    /// IP_MULTICAST_LOOP: whether this host's own members of a group hear
    /// this socket's multicast (default on).
    pub fn set_multicast_loop(&self, on: bool) {
        self.options.lock().unwrap().multicast_loop = on;
    }

    /// close(): frees the port numbers and leaves the groups; later calls fail with EBADF.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let groups = std::mem::take(&mut self.options.lock().unwrap().groups);
        let mut engine = self.stack.lock_engine();
        for (group, port) in groups {
            engine.leave(port, group);
        }
        if let Some(entry) = engine.sockets.remove(&self.key) {
            for (port, &id) in engine.ports.iter_mut().zip(entry.ids.iter()) {
                port.iface.sockets_mut().close(id);
            }
        }
        drop(engine);
        // Wake anyone blocked in recv on this socket.
        self.stack.signal_readable();
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.close();
    }
}

impl Engine {
    /// Counts memberships per port so that the group is left with the last one.
    fn join(&mut self, port: usize, group: Ipv4Addr) {
        let count = self.memberships.entry((port, group)).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.ports[port].iface.join_group(group);
            self.ports[port].send_igmp(group, true);
        }
    }

    fn leave(&mut self, port: usize, group: Ipv4Addr) {
        if let Some(count) = self.memberships.get_mut(&(port, group)) {
            *count -= 1;
            if *count == 0 {
                self.memberships.remove(&(port, group));
                self.ports[port].iface.leave_group(group);
                self.ports[port].send_igmp(group, false);
            }
        }
    }
}

fn group_port(engine: &Engine, iface: Ipv4Addr) -> Result<usize, i32> {
    if engine.ports.is_empty() {
        return Err(libc::ENODEV);
    }
    if iface.is_unspecified() {
        Ok(0)
    } else {
        engine.port_of(iface).ok_or(libc::ENODEV)
    }
}

/// The first port where the socket is bound (its address is what getsockname shows).
fn primary(engine: &Engine, ids: &[crate::udp::SocketId]) -> Option<usize> {
    (0..ids.len()).find(|&p| {
        matches!(
            engine.ports[p].iface.sockets().local_addr(ids[p]),
            Ok(Some(_))
        )
    })
}

/// The port a datagram to `dst` leaves by: the port of a socket bound to a
/// data IP, else the route's.
fn sending_port(
    engine: &Engine,
    ids: &[crate::udp::SocketId],
    dst: Ipv4Addr,
    multicast_if: Option<Ipv4Addr>,
) -> usize {
    if let Some(port) = multicast_if
        .filter(|_| dst.is_multicast())
        .and_then(|a| engine.port_of(a))
    {
        return port;
    }
    let bound = primary(engine, ids).and_then(|p| {
        let local = engine.ports[p].iface.sockets().local_addr(ids[p]).ok()??;
        (!local.ip().is_unspecified() && !local.ip().is_multicast()).then_some(p)
    });
    bound.unwrap_or_else(|| engine.route_port(dst))
}

/// Binds on every port with one port number (the first port picks an
/// ephemeral one). Only the first port's bind can fail the call: a later
/// port where the number is taken just does not receive for this socket.
fn bind_everywhere(
    engine: &mut Engine,
    ids: &[crate::udp::SocketId],
    addr: SocketAddrV4,
    options: BindOptions,
) -> Result<(), i32> {
    let first = engine.ports[0]
        .iface
        .sockets_mut()
        .bind(ids[0], addr, options)
        .map_err(|e| e.errno())?;
    for (index, id) in ids.iter().enumerate().skip(1) {
        let same = SocketAddrV4::new(*addr.ip(), first.port());
        if let Err(e) = engine.ports[index]
            .iface
            .sockets_mut()
            .bind(*id, same, options)
        {
            log::debug!("bind {same} on data port {index}: {e:?}");
        }
    }
    Ok(())
}

/// The implicit bind of a first send or connect: INADDR_ANY, ephemeral port, every port.
fn ensure_bound_everywhere(
    engine: &mut Engine,
    ids: &[crate::udp::SocketId],
    options: BindOptions,
) -> Result<(), i32> {
    if primary(engine, ids).is_some() {
        return Ok(());
    }
    let local = engine.ports[0]
        .iface
        .sockets_mut()
        .ensure_bound(ids[0])
        .map_err(|e| e.errno())?;
    for (index, id) in ids.iter().enumerate().skip(1) {
        let same = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port());
        let _ = engine.ports[index]
            .iface
            .sockets_mut()
            .bind(*id, same, options);
    }
    Ok(())
}

/// net.core.rmem_max / wmem_max (Linux's default when unreadable).
fn sysctl_max(name: &'static str) -> usize {
    static RMEM: OnceLock<usize> = OnceLock::new();
    static WMEM: OnceLock<usize> = OnceLock::new();
    let cell = if name == "rmem_max" { &RMEM } else { &WMEM };
    *cell.get_or_init(|| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(212_992)
    })
}
