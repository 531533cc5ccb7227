//! What sluice knows about one tracked socket (one entry shared by all fds dup'd from it).

use std::mem::ManuallyDrop;
use std::net::SocketAddrV4;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sluice_stack::socket::stream::StreamSocket;
use sluice_stack::socket::udp::UdpSocket;

/// Where the socket's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Route {
    /// No address seen yet (socket() alone decides nothing).
    Undecided = 0,
    Kernel = 1,
    /// The policy says offload. Datagram sockets then get their `Offloaded` state; stream
    /// sockets still move their data through the kernel shadow (later issue).
    Offload = 2,
}

impl Route {
    fn from_u8(v: u8) -> Route {
        match v {
            1 => Route::Kernel,
            2 => Route::Offload,
            _ => Route::Undecided,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Undecided => "undecided",
            Route::Kernel => "kernel",
            Route::Offload => "offload",
        }
    }
}

/// Why a decision was taken, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Bind,
    Connect,
    SendTo,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::Bind => "bind",
            Cause::Connect | Cause::SendTo => "dst",
        }
    }
}

/// The stack's socket behind an fd.
pub enum Sock {
    Datagram(Arc<UdpSocket>),
    Stream(Arc<StreamSocket>),
}

/// A socket served by the stack. The kernel socket of the same fd (the shadow) stays
/// open: it keeps the fd number, carries kernel-only destinations, and, for a socket bound to
/// INADDR_ANY, receives what arrives through the kernel on the same port (a stream listener:
/// accepts kernel TCP clients).
pub struct Offloaded {
    /// Dropped only in the process that started the stack (see `Drop`).
    sock: ManuallyDrop<Sock>,
    /// The shadow is bound to the stack socket's port on INADDR_ANY: receive from both.
    pub shadow_receives: AtomicBool,
    /// Connected to a destination the policy keeps in the kernel, or (a stream) its handshake
    /// fell back to the kernel's TCP: the shadow carries it all.
    pub kernel_peer: AtomicBool,
    /// O_NONBLOCK as the application set it (also set on the shadow).
    pub nonblocking: AtomicBool,
    /// Bumped by every receive and send, so an edge-triggered epoll registration reports
    /// readiness again after the application has touched the socket.
    pub io_epoch: AtomicU32,
    /// shutdown(2) as the application called it: SHUT_RD (1) and SHUT_WR (2) bits.
    pub shut: AtomicU8,
}

impl Offloaded {
    pub fn new(udp: Arc<UdpSocket>, nonblocking: bool) -> Offloaded {
        Self::with(Sock::Datagram(udp), nonblocking)
    }

    pub fn new_stream(stream: Arc<StreamSocket>, nonblocking: bool) -> Offloaded {
        Self::with(Sock::Stream(stream), nonblocking)
    }

    fn with(sock: Sock, nonblocking: bool) -> Offloaded {
        Offloaded {
            sock: ManuallyDrop::new(sock),
            shadow_receives: AtomicBool::new(false),
            kernel_peer: AtomicBool::new(false),
            nonblocking: AtomicBool::new(nonblocking),
            io_epoch: AtomicU32::new(0),
            shut: AtomicU8::new(0),
        }
    }

    pub fn touch(&self) {
        self.io_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// EPOLLET's edges: for a stream, every event the stack sees on it (data, FIN, reset,
    /// room to write); for a datagram socket, every call the application makes on it.
    pub fn epoch(&self) -> u32 {
        match self.stream() {
            Some(s) => s.generation(),
            None => self.io_epoch.load(Ordering::Relaxed),
        }
    }

    /// The datagram socket, if this is one.
    #[inline]
    pub fn udp(&self) -> Option<&Arc<UdpSocket>> {
        match &*self.sock {
            Sock::Datagram(u) => Some(u),
            Sock::Stream(_) => None,
        }
    }

    /// The stream socket, if this is one.
    #[inline]
    pub fn stream(&self) -> Option<&Arc<StreamSocket>> {
        match &*self.sock {
            Sock::Stream(s) => Some(s),
            Sock::Datagram(_) => None,
        }
    }

    /// A stream whose handshake fell back to the kernel's TCP: the fd is the kernel's now.
    #[inline]
    pub fn fell_back(&self) -> bool {
        matches!(&*self.sock, Sock::Stream(_)) && self.kernel_peer.load(Ordering::Acquire)
    }

    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Release);
        if let Some(u) = self.udp() {
            u.set_nonblocking(on);
        }
    }
}

impl Drop for Offloaded {
    /// The last fd of the socket is gone (entries are shared by dup'd fds). A forked child
    /// leaves the stack alone: its copy of the engine may be locked forever (a lock held by a
    /// parent thread at fork time), and closing inherited sockets, or exiting, is the common
    /// thing such a child does (daemons, subprocess with close_fds).
    fn drop(&mut self) {
        if !crate::offload::owns_stack() {
            return;
        }
        match &*self.sock {
            Sock::Datagram(u) => u.close(),
            Sock::Stream(s) => crate::stream::close(s),
        }
        // SAFETY: dropped once, here; `self` is never used again.
        unsafe { ManuallyDrop::drop(&mut self.sock) };
    }
}

pub struct SocketEntry {
    route: AtomicU8,
    /// SOCK_DGRAM (else SOCK_STREAM).
    datagram: bool,
    offloaded: OnceLock<Offloaded>,
    /// Kernel epoll registrations (epfd, events, data) made while the socket could still
    /// become offloaded: moved to user space when it does.
    epoll_regs: Mutex<Vec<(c_int, u32, u64)>>,
}

impl std::fmt::Debug for SocketEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketEntry")
            .field("route", &self.route())
            .field("datagram", &self.datagram)
            .field("offloaded", &self.offloaded.get().is_some())
            .finish()
    }
}

impl SocketEntry {
    pub fn new(route: Route, datagram: bool) -> SocketEntry {
        SocketEntry {
            route: AtomicU8::new(route as u8),
            datagram,
            offloaded: OnceLock::new(),
            epoll_regs: Mutex::new(Vec::new()),
        }
    }

    /// Whether epoll registrations must be remembered for a later offload.
    pub fn may_become_offloaded(&self) -> bool {
        self.datagram && self.offloaded.get().is_none() && self.route() != Route::Kernel
    }

    /// Follows a successful kernel epoll_ctl on this (not yet offloaded) socket.
    pub fn note_epoll(&self, epfd: c_int, op: c_int, events: u32, data: u64) {
        let mut regs = self.epoll_regs.lock().unwrap_or_else(|p| p.into_inner());
        regs.retain(|r| r.0 != epfd);
        if op != libc::EPOLL_CTL_DEL {
            regs.push((epfd, events, data));
        }
    }

    /// The remembered registrations, emptied.
    pub fn take_epoll_regs(&self) -> Vec<(c_int, u32, u64)> {
        std::mem::take(&mut *self.epoll_regs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_datagram(&self) -> bool {
        self.datagram
    }

    /// The stack's side of this socket, once it has one.
    #[inline]
    pub fn offloaded(&self) -> Option<&Offloaded> {
        self.offloaded.get()
    }

    /// Whether the stack serves this socket now (offloaded, and not a stream that fell back
    /// to the kernel's TCP).
    #[inline]
    pub fn served_by_stack(&self) -> bool {
        self.offloaded.get().is_some_and(|o| !o.fell_back())
    }

    /// Attaches the stack socket made by `make` unless one is attached already; returns the
    /// attached one.
    pub fn offload_with(&self, make: impl FnOnce() -> Option<Offloaded>) -> Option<&Offloaded> {
        if let Some(o) = self.offloaded.get() {
            return Some(o);
        }
        let fresh = make()?;
        // A racing thread may have attached its own: keep the first, close ours.
        let _ = self.offloaded.set(fresh);
        self.offloaded.get()
    }

    /// The stack could not take the socket: it stays in the kernel.
    pub fn fall_back_to_kernel(&self) {
        self.route.store(Route::Kernel as u8, Ordering::Release);
    }

    pub fn route(&self) -> Route {
        Route::from_u8(self.route.load(Ordering::Acquire))
    }

    /// Records the policy's answer for `addr`. A connect always decides (it names the peer);
    /// bind and sendto only decide a socket that is still undecided. Returns whether the
    /// decision was recorded.
    pub fn decide(&self, cause: Cause, offload: bool) -> bool {
        let route = if offload {
            Route::Offload
        } else {
            Route::Kernel
        } as u8;
        match cause {
            Cause::Connect => {
                self.route.store(route, Ordering::Release);
                true
            }
            Cause::Bind | Cause::SendTo => self
                .route
                .compare_exchange(
                    Route::Undecided as u8,
                    route,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
        }
    }
}

/// The debug line naming a decision: `sluice: fd 5 -> offload (dst 10.77.2.2:9000)`.
pub fn decision_line(fd: c_int, route: Route, cause: Cause, addr: SocketAddrV4) -> String {
    format!(
        "sluice: fd {fd} -> {} ({} {addr})",
        route.as_str(),
        cause.label()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_overrides_and_sendto_only_fills_in() {
        let e = SocketEntry::new(Route::Undecided, true);
        assert!(e.decide(Cause::SendTo, true));
        assert_eq!(e.route(), Route::Offload);
        assert!(!e.decide(Cause::SendTo, false), "first sendto decides");
        assert_eq!(e.route(), Route::Offload);
        assert!(e.decide(Cause::Connect, false));
        assert_eq!(e.route(), Route::Kernel);
        assert!(!e.decide(Cause::Bind, true));
    }

    #[test]
    fn decision_line_reads_as_documented() {
        let addr = "10.77.2.2:9000".parse().unwrap();
        assert_eq!(
            decision_line(5, Route::Offload, Cause::Connect, addr),
            "sluice: fd 5 -> offload (dst 10.77.2.2:9000)"
        );
        assert_eq!(
            decision_line(6, Route::Kernel, Cause::Bind, addr),
            "sluice: fd 6 -> kernel (bind 10.77.2.2:9000)"
        );
    }
}
