//! [`StreamSocket`]: an offloaded SOCK_STREAM socket (the reliable protocol over UDP).
//!
//! Every call is non-blocking and takes the engine lock briefly: the connection lives in the
//! engine's [`Streams`](crate::stream::endpoint::Streams). Readiness is published by the
//! engine in [`StreamShared`], which waiters read without the lock. Blocking (spin, then
//! sleep; EINTR) is the caller's business, as for datagram sockets.
//!
//! Errors are positive errno values, as the kernel would return them.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::{Engine, Stack};
use crate::stream::conn::{ConnConfig, ConnStats, Keepalive};
use crate::stream::endpoint::{ready, StreamShared};
use crate::udp::{BindOptions, SocketId};

/// Largest stream payload per datagram on a 1500-byte MTU: IPv4 (20), UDP (8), the stream
/// header (40) and room for four SACK blocks (32).
pub const STREAM_MSS: usize = 1400;
/// How long a handshake in the protocol is retried before ETIMEDOUT (ns).
const STREAM_CONNECT_TIMEOUT: u64 = 10_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Not listening or connected; maybe bound (holding its carrier).
    Fresh,
    Listener,
    Conn(u32),
    Closed,
}

struct Inner {
    role: Role,
    local: Option<SocketAddrV4>,
    peer: Option<SocketAddrV4>,
    config: ConnConfig,
    reuse_addr: bool,
    /// shutdown(SHUT_RD): later receives see end of stream.
    read_shut: bool,
    write_shut: bool,
    /// SO_LINGER: Some(seconds) when on.
    linger: Option<u32>,
}

/// A stream accepted by a listener.
pub struct Accepted {
    pub socket: Arc<StreamSocket>,
    pub peer: SocketAddrV4,
}

pub struct StreamSocket {
    stack: Arc<Stack>,
    inner: Mutex<Inner>,
    shared: Mutex<Arc<StreamShared>>,
    /// A completed non-blocking connect was reported (by a later connect returning 0).
    connect_reported: AtomicBool,
}

impl StreamSocket {
    pub(crate) fn new(stack: Arc<Stack>) -> Self {
        let config = ConnConfig {
            mss: STREAM_MSS,
            // The handshake's own give-up comes after address resolution's (three ARP
            // requests a second apart: EHOSTUNREACH) and long after the fall-back to the
            // kernel's TCP, which has its own, longer, timeout.
            connect_timeout: STREAM_CONNECT_TIMEOUT,
            ..ConnConfig::default()
        };
        StreamSocket {
            stack,
            inner: Mutex::new(Inner {
                role: Role::Fresh,
                local: None,
                peer: None,
                config,
                reuse_addr: false,
                read_shut: false,
                write_shut: false,
                linger: None,
            }),
            shared: Mutex::new(Arc::new(StreamShared::default())),
            connect_reported: AtomicBool::new(false),
        }
    }

    fn shared(&self) -> Arc<StreamShared> {
        self.shared.lock().unwrap().clone()
    }

    /// The readiness bits ([`ready`]) as the engine last published them, with what the
    /// application's own shutdown adds, and ERROR only while the error is pending.
    pub fn readiness(&self) -> u32 {
        let shared = self.shared();
        let mut bits = shared.bits();
        if shared.peek_error() == 0 {
            bits &= !ready::ERROR;
        }
        let inner = self.inner.lock().unwrap();
        match inner.role {
            // A socket neither listening nor connected: writable and hung up, as Linux says.
            Role::Fresh => ready::WRITABLE | ready::HUP,
            Role::Closed => bits | ready::HUP,
            Role::Listener => bits,
            Role::Conn(_) => {
                if inner.read_shut {
                    bits |= ready::READABLE | ready::READ_HUP;
                }
                if inner.write_shut && bits & ready::CONNECTED != 0 {
                    bits |= ready::WRITABLE;
                }
                if inner.read_shut && inner.write_shut {
                    bits |= ready::HUP;
                }
                bits
            }
        }
    }

    /// Changes with every event on the socket (an edge for EPOLLET).
    pub fn generation(&self) -> u32 {
        self.shared().generation()
    }

    /// SO_RCVLOWAT.
    pub fn set_recv_lowat(&self, bytes: usize) {
        self.shared().set_lowat(bytes);
        // The connection's readiness is worked out again at the next poll.
        if let Role::Conn(id) = self.inner.lock().unwrap().role {
            self.stack.lock_engine().streams.touch(id);
        }
    }

    /// A non-blocking connect that completed: true the first time it is asked (connect()
    /// then returns 0 once, EISCONN after, as Linux does).
    pub fn take_connect_report(&self) -> bool {
        !self.connect_reported.swap(true, Ordering::AcqRel)
    }

    /// The socket failed outside the stack (its fall-back connect through the kernel): it
    /// reports `errno` once and is over.
    pub fn fail(&self, errno: i32) {
        let fresh = Arc::new(StreamShared::default());
        fresh.fail(errno);
        *self.shared.lock().unwrap() = fresh;
        self.inner.lock().unwrap().role = Role::Closed;
    }

    /// The pending error, cleared (SO_ERROR).
    pub fn take_error(&self) -> i32 {
        self.shared().take_error()
    }

    pub fn set_reuse_addr(&self, on: bool) {
        self.inner.lock().unwrap().reuse_addr = on;
    }

    pub fn set_nodelay(&self, on: bool) {
        let mut inner = self.inner.lock().unwrap();
        inner.config.nodelay = on;
        if let Role::Conn(id) = inner.role {
            if let Some(c) = self.stack.lock_engine().streams.conn_mut(id) {
                c.set_nodelay(on);
            }
        }
    }

    /// SO_LINGER (None: off).
    pub fn set_linger(&self, seconds: Option<u32>) {
        self.inner.lock().unwrap().linger = seconds;
    }

    /// SO_LINGER: Some(seconds) when on.
    pub fn linger(&self) -> Option<u32> {
        self.inner.lock().unwrap().linger
    }

    pub fn nodelay(&self) -> bool {
        self.inner.lock().unwrap().config.nodelay
    }

    pub fn set_keepalive(&self, k: Option<Keepalive>) {
        let mut inner = self.inner.lock().unwrap();
        inner.config.keepalive = k;
        if let Role::Conn(id) = inner.role {
            if let Some(c) = self.stack.lock_engine().streams.conn_mut(id) {
                c.set_keepalive(k);
            }
        }
    }

    /// SO_RCVBUF / SO_SNDBUF (bytes, as the application asked; taken before connect/listen).
    pub fn set_buffers(&self, recv: Option<usize>, send: Option<usize>) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(r) = recv {
            inner.config.recv_buffer = r.max(4 * STREAM_MSS);
        }
        if let Some(s) = send {
            inner.config.send_buffer = s.max(4 * STREAM_MSS);
        }
    }

    pub fn buffers(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.config.recv_buffer, inner.config.send_buffer)
    }

    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.inner.lock().unwrap().local
    }

    /// The peer, while connected (a reset or failed connection has none, as in Linux).
    pub fn peer_addr(&self) -> Option<SocketAddrV4> {
        let inner = self.inner.lock().unwrap();
        match inner.role {
            Role::Conn(_) if !self.shared().has(ready::ERROR) => inner.peer,
            _ => None,
        }
    }

    /// The peer a connect was started to (for the fall-back to the kernel).
    pub fn connect_target(&self) -> Option<SocketAddrV4> {
        self.inner.lock().unwrap().peer
    }

    pub fn is_listener(&self) -> bool {
        self.inner.lock().unwrap().role == Role::Listener
    }

    pub fn is_connection(&self) -> bool {
        matches!(self.inner.lock().unwrap().role, Role::Conn(_))
    }

    /// bind(): INADDR_ANY or one of the stack's data IPs; port 0 picks an ephemeral port.
    pub fn bind(&self, addr: SocketAddrV4) -> Result<(), i32> {
        let mut inner = self.inner.lock().unwrap();
        if inner.role != Role::Fresh || inner.local.is_some() {
            return Err(libc::EINVAL);
        }
        let mut engine = self.stack.lock_engine();
        if !addr.ip().is_unspecified() && !engine.owns(*addr.ip()) {
            return Err(libc::EADDRNOTAVAIL);
        }
        let port = engine.bind_carrier(addr.port(), inner.reuse_addr)?;
        inner.local = Some(SocketAddrV4::new(*addr.ip(), port));
        Ok(())
    }

    /// listen(): binds an ephemeral port first if needed; again on a listener, changes its
    /// backlog.
    pub fn listen(&self, backlog: i32) -> Result<(), i32> {
        let mut inner = self.inner.lock().unwrap();
        let backlog = backlog.clamp(1, 4096) as usize;
        let mut engine = self.stack.lock_engine();
        let local = match (inner.role, inner.local) {
            (Role::Fresh | Role::Listener, Some(local)) => local,
            (Role::Fresh, None) => {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, engine.bind_carrier(0, false)?)
            }
            _ => return Err(libc::EINVAL),
        };
        engine
            .streams
            .listen(local, backlog, inner.config, self.shared())?;
        inner.local = Some(local);
        inner.role = Role::Listener;
        Ok(())
    }

    /// connect(): starts the handshake and returns at once (the caller waits for
    /// [`ready::CONNECTED`], [`ready::ERROR`] or [`ready::FALL_BACK`]). With `fall_back`, a
    /// peer that does not answer in the protocol soon is reported as FALL_BACK.
    pub fn connect(&self, peer: SocketAddrV4, fall_back: bool) -> Result<(), i32> {
        let mut inner = self.inner.lock().unwrap();
        match inner.role {
            Role::Fresh => {}
            Role::Conn(_) | Role::Listener => return Err(libc::EISCONN),
            Role::Closed => return Err(libc::EINVAL),
        }
        self.connect_reported.store(false, Ordering::Release);
        let now = self.stack.now();
        let mut engine = self.stack.lock_engine();
        let (port, src_ip) = engine.stream_source(*peer.ip());
        let local = match inner.local {
            Some(l) if l.ip().is_unspecified() => SocketAddrV4::new(src_ip, l.port()),
            Some(l) => l,
            None => SocketAddrV4::new(src_ip, engine.bind_carrier(0, false)?),
        };
        // An unconnected socket's shared state was never published to: the connection's.
        let config = inner.config;
        let id = engine
            .streams
            .connect(now, local, peer, port, config, self.shared(), fall_back);
        inner.local = Some(local);
        inner.peer = Some(peer);
        inner.role = Role::Conn(id);
        self.stack.stream_transmit(&mut engine);
        Ok(())
    }

    /// A connect that failed (refused, timed out) was reported: the socket is unconnected
    /// again and may connect anew, as after the kernel's failed connect.
    pub fn disconnect(&self) {
        let mut inner = self.inner.lock().unwrap();
        if let Role::Conn(id) = inner.role {
            self.stack.lock_engine().forget_connection(id);
            inner.role = Role::Fresh;
            inner.local = None;
            inner.peer = None;
        }
        *self.shared.lock().unwrap() = Arc::new(StreamShared::default());
    }

    /// Whether the connection failed (its error reported or not).
    pub fn failed(&self) -> bool {
        self.shared().has(ready::ERROR)
    }

    /// The handshake fell back to the kernel: the stack forgets this connection.
    pub fn abandon(&self) {
        let mut inner = self.inner.lock().unwrap();
        if let Role::Conn(id) = inner.role {
            let mut engine = self.stack.lock_engine();
            engine.streams.note_fall_back();
            engine.forget_connection(id);
        }
        inner.role = Role::Closed;
    }

    /// accept(): the next established connection, or EAGAIN.
    pub fn accept(&self) -> Result<Accepted, i32> {
        let inner = self.inner.lock().unwrap();
        if inner.role != Role::Listener {
            return Err(libc::EINVAL);
        }
        let port = inner.local.map(|l| l.port()).ok_or(libc::EINVAL)?;
        let config = inner.config;
        drop(inner);
        let mut engine = self.stack.lock_engine();
        let (id, local, peer, shared) = engine.streams.accept(port).ok_or(libc::EAGAIN)?;
        // Readiness of the listener changes: publish at the next pass.
        drop(engine);
        let socket = StreamSocket {
            stack: self.stack.clone(),
            inner: Mutex::new(Inner {
                role: Role::Conn(id),
                local: Some(local),
                peer: Some(peer),
                config,
                reuse_addr: false,
                read_shut: false,
                write_shut: false,
                linger: None,
            }),
            shared: Mutex::new(shared),
            connect_reported: AtomicBool::new(true),
        };
        self.stack.poll();
        Ok(Accepted {
            socket: Arc::new(socket),
            peer,
        })
    }

    fn conn_id(&self) -> Result<u32, i32> {
        match self.inner.lock().unwrap().role {
            Role::Conn(id) => Ok(id),
            _ => Err(libc::ENOTCONN),
        }
    }

    /// send(): queues what fits; EAGAIN when nothing does, EPIPE after shutdown(SHUT_WR) or
    /// once the connection is over, the connection's error if it failed.
    pub fn send(&self, bufs: &[&[u8]]) -> Result<usize, i32> {
        let (id, write_shut) = {
            let inner = self.inner.lock().unwrap();
            match inner.role {
                Role::Conn(id) => (id, inner.write_shut),
                // Linux: a listener (or a socket whose connection is over) is a broken pipe.
                Role::Listener | Role::Closed => return Err(libc::EPIPE),
                Role::Fresh => return Err(libc::ENOTCONN),
            }
        };
        if write_shut {
            return Err(libc::EPIPE);
        }
        let shared = self.shared();
        if shared.has(ready::ERROR) {
            let e = shared.take_error();
            return Err(if e != 0 { e } else { libc::EPIPE });
        }
        if !shared.has(ready::CONNECTED) {
            return Err(libc::EAGAIN);
        }
        let mut engine = self.stack.lock_engine();
        let Some(conn) = engine.streams.conn_mut(id) else {
            return Err(libc::EPIPE);
        };
        let mut total = 0;
        for buf in bufs {
            let n = conn.write(buf);
            total += n;
            if n < buf.len() {
                break;
            }
        }
        if total == 0 && bufs.iter().any(|b| !b.is_empty()) {
            if let Some(err) = conn.error() {
                return Err(err.errno());
            }
            if conn.state() == crate::stream::conn::State::Closed {
                return Err(libc::EPIPE);
            }
            return Err(libc::EAGAIN);
        }
        self.stack.stream_transmit(&mut engine);
        Ok(total)
    }

    /// recv(): in-order bytes; Ok(0) at end of stream; EAGAIN when none are ready.
    pub fn recv(&self, bufs: &mut [&mut [u8]], peek: bool) -> Result<usize, i32> {
        let (id, read_shut) = {
            let inner = self.inner.lock().unwrap();
            match inner.role {
                Role::Conn(id) => (id, inner.read_shut),
                _ => return Err(libc::ENOTCONN),
            }
        };
        if read_shut {
            return Ok(0);
        }
        let mut engine = self.stack.lock_engine();
        let Some(conn) = engine.streams.conn_mut(id) else {
            return Ok(0);
        };
        let mut total = 0;
        for buf in bufs.iter_mut() {
            if buf.is_empty() {
                continue;
            }
            let n = if peek {
                // Peeking past the first buffer would need an offset: one buffer's worth.
                if total > 0 {
                    break;
                }
                conn.read(buf, true)
            } else {
                conn.read(buf, false)
            };
            total += n;
            if n < buf.len() {
                break;
            }
        }
        if total > 0 {
            if !peek {
                // The read may have opened the window: tell the peer now.
                self.stack.stream_transmit(&mut engine);
            }
            return Ok(total);
        }
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let Some(conn) = engine.streams.conn(id) else {
            return Ok(0);
        };
        if let Some(err) = conn.error() {
            drop(engine);
            let e = self.shared().take_error();
            // Reported once (through recv or SO_ERROR), as the kernel does; then end of stream.
            let _ = err;
            return if e != 0 { Err(e) } else { Ok(0) };
        }
        if conn.at_eof() {
            return Ok(0);
        }
        Err(libc::EAGAIN)
    }

    /// Bytes ready to read (FIONREAD).
    pub fn readable_bytes(&self) -> usize {
        let Ok(id) = self.conn_id() else { return 0 };
        let engine = self.stack.lock_engine();
        engine.streams.conn(id).map_or(0, |c| c.readable())
    }

    /// shutdown(): SHUT_RD (0), SHUT_WR (1), SHUT_RDWR (2).
    pub fn shutdown(&self, how: i32) -> Result<(), i32> {
        let mut inner = self.inner.lock().unwrap();
        let Role::Conn(id) = inner.role else {
            return Err(libc::ENOTCONN);
        };
        if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
            inner.read_shut = true;
        }
        if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
            inner.write_shut = true;
            let mut engine = self.stack.lock_engine();
            if let Some(c) = engine.streams.conn_mut(id) {
                c.close_write();
            }
            self.stack.stream_transmit(&mut engine);
        }
        drop(inner);
        self.stack.signal_readable();
        Ok(())
    }

    /// Everything sent was acknowledged (SO_LINGER waits for this).
    pub fn all_acked(&self) -> bool {
        let Ok(id) = self.conn_id() else { return true };
        let engine = self.stack.lock_engine();
        engine.streams.conn(id).is_none_or(|c| c.all_acked())
    }

    pub fn stats(&self) -> Option<ConnStats> {
        let id = self.conn_id().ok()?;
        self.stack.lock_engine().streams.stats(id)
    }

    /// close(): a connection ends with FIN after its queued data, or with a reset when unread
    /// data is left or `abort` (SO_LINGER 0); a listener resets its unaccepted connections.
    pub fn close(&self, abort: bool) {
        let mut inner = self.inner.lock().unwrap();
        let role = std::mem::replace(&mut inner.role, Role::Closed);
        let now = self.stack.now();
        let mut engine = self.stack.lock_engine();
        match role {
            Role::Conn(id) => {
                let unread = engine.streams.conn(id).is_some_and(|c| c.readable() > 0);
                engine.streams.close_conn(now, id, abort || unread);
                self.stack.stream_transmit(&mut engine);
            }
            Role::Listener => {
                if let Some(port) = inner.local.map(|l| l.port()) {
                    engine.streams.close_listener(now, port);
                }
                self.stack.stream_transmit(&mut engine);
            }
            Role::Fresh => {
                if let Some(port) = inner.local.map(|l| l.port()) {
                    engine.streams.release(port);
                    engine.close_released_carriers();
                }
            }
            Role::Closed => {}
        }
    }
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        let open = self.inner.lock().is_ok_and(|i| i.role != Role::Closed);
        if open {
            self.close(false);
        }
    }
}

impl Engine {
    /// Binds the carrier for stream port `port` (0: an ephemeral one) on every data port and
    /// takes a reference on it. An existing carrier is shared only with SO_REUSEADDR.
    pub(crate) fn bind_carrier(&mut self, port: u16, reuse_addr: bool) -> Result<u16, i32> {
        if port != 0 && self.streams.has_carrier(port) {
            // SO_REUSEADDR shares a port with lingering connections, never with a listener.
            if !reuse_addr || self.streams.has_listener(port) {
                return Err(libc::EADDRINUSE);
            }
            self.streams.hold(port);
            return Ok(port);
        }
        if let Some(kernel) = self.kernel.as_mut() {
            let chosen = kernel
                .bind(port)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            self.streams.add_carrier(chosen, Vec::new());
            self.streams.hold(chosen);
            return Ok(chosen);
        }
        let mut ids: Vec<SocketId> = Vec::new();
        let mut chosen = port;
        for index in 0..self.ports.len() {
            let udp = self.ports[index].iface.sockets_mut();
            let id = udp.open();
            let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, chosen);
            match udp.bind(id, addr, BindOptions::default()) {
                Ok(bound) => {
                    chosen = bound.port();
                    ids.push(id);
                }
                Err(e) => {
                    udp.close(id);
                    self.close_carrier(chosen, &ids);
                    return Err(e.errno());
                }
            }
        }
        self.streams.add_carrier(chosen, ids);
        self.streams.hold(chosen);
        Ok(chosen)
    }

    /// Forgets connection `id` and closes its carrier if that was the last user.
    fn forget_connection(&mut self, id: u32) {
        self.streams.forget(id);
        self.close_released_carriers();
    }

    /// Closes the UDP sockets of the carriers whose last user went away.
    pub(crate) fn close_released_carriers(&mut self) {
        for (port, ids) in self.streams.take_closed_carriers() {
            self.close_carrier(port, &ids);
        }
    }

    /// Closes a carrier's UDP sockets (its last user is gone).
    fn close_carrier(&mut self, port: u16, ids: &[SocketId]) {
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.close(port);
        }
        for (index, id) in ids.iter().enumerate() {
            if let Some(port) = self.ports.get_mut(index) {
                port.iface.sockets_mut().close(*id);
            }
        }
    }
}
