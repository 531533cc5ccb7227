//! Socket lifecycle and the offload decision: socket, bind, connect, accept, sendto/sendmsg,
//! plus the socket calls that only need the fd check.
//!
//! socket() always creates the kernel socket (the shadow) and, for IPv4 TCP/UDP, a table
//! entry. The offload decision is taken when an address is known: bind, connect, or the first
//! sendto/sendmsg/sendmmsg with an address. It is logged at debug level as
//! `sluice: fd N -> offload (dst A.B.C.D:P)` or `... -> kernel (...)`.

#![allow(clippy::missing_safety_doc)]

use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::Arc;

use libc::{mmsghdr, msghdr, size_t, sockaddr, sockaddr_in, socklen_t, ssize_t};

use super::fd_hooks;
use crate::entry::{decision_line, Cause, Route, SocketEntry};
use crate::guard::{guarded, Site};
use crate::init::{sluice, Sluice, TABLE};
use crate::real;

/// Type bits of socket()'s `type` argument (the rest are SOCK_NONBLOCK / SOCK_CLOEXEC).
const SOCK_TYPE_MASK: c_int = 0xf;

/// The IPv4 TCP and UDP sockets sluice may offload.
fn offloadable(kind: c_int, protocol: c_int) -> bool {
    match kind {
        libc::SOCK_STREAM => protocol == 0 || protocol == libc::IPPROTO_TCP,
        libc::SOCK_DGRAM => protocol == 0 || protocol == libc::IPPROTO_UDP,
        _ => false,
    }
}

/// The IPv4 address at `addr`, if it is one.
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
unsafe fn inet_addr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddrV4> {
    if addr.is_null() || (len as usize) < size_of::<sockaddr_in>() {
        return None;
    }
    // SAFETY: at least sizeof(sockaddr_in) readable bytes; callers' buffers may be unaligned.
    let sin = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in>()) };
    (sin.sin_family == libc::AF_INET as libc::sa_family_t).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        )
    })
}

fn sockopt_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: an int-sized option into an int.
    let r =
        unsafe { real::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    (r == 0).then_some(value)
}

/// The entry of `fd`, adopting IPv4 TCP/UDP sockets that socket() did not see (inherited
/// across exec, or created while another thread was initialising sluice).
fn entry_or_adopt(fd: c_int) -> Option<Arc<SocketEntry>> {
    if let Some(entry) = TABLE.get(fd) {
        return Some(entry);
    }
    let domain = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if domain != libc::AF_INET || !offloadable(kind, protocol) {
        return None;
    }
    let entry = Arc::new(SocketEntry::new(Route::Undecided));
    TABLE.insert(fd, Arc::clone(&entry)).ok()?;
    Some(entry)
}

fn decide(sl: &Sluice, fd: c_int, entry: &SocketEntry, cause: Cause, addr: SocketAddrV4) {
    let offload = sl.config.policy.offloads(addr);
    if entry.decide(cause, offload) {
        log::debug!(target: "sluice", "{}", decision_line(fd, entry.route(), cause, addr));
    }
}

#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::socket(domain, ty, protocol) };
    let kind = ty & SOCK_TYPE_MASK;
    if domain != libc::AF_INET || !offloadable(kind, protocol) {
        return kernel();
    }
    static SITE: Site = Site::new("socket");
    guarded(&SITE, kernel, |k| {
        let fd = k.call();
        if fd >= 0 && sluice().is_some() {
            let _ = TABLE.insert(fd, Arc::new(SocketEntry::new(Route::Undecided)));
        }
        fd
    })
}

#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::bind(fd, addr, len) };
    // SAFETY: the caller promises `len` readable bytes at `addr`.
    let Some(local) = (unsafe { inet_addr(addr, len) }) else {
        return kernel();
    };
    static SITE: Site = Site::new("bind");
    guarded(&SITE, kernel, |k| {
        if let Some(sl) = sluice() {
            if let Some(entry) = entry_or_adopt(fd) {
                decide(sl, fd, &entry, Cause::Bind, local);
            }
        }
        k.call()
    })
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::connect(fd, addr, len) };
    // SAFETY: the caller promises `len` readable bytes at `addr`.
    let Some(peer) = (unsafe { inet_addr(addr, len) }) else {
        return kernel();
    };
    static SITE: Site = Site::new("connect");
    guarded(&SITE, kernel, |k| {
        if let Some(sl) = sluice() {
            if let Some(entry) = entry_or_adopt(fd) {
                decide(sl, fd, &entry, Cause::Connect, peer);
            }
        }
        k.call()
    })
}

/// A connection accepted through the kernel shadow is a kernel connection.
fn track_accepted(listener: c_int, fd: c_int) {
    if fd < 0 || !TABLE.is_tracked(listener) {
        return;
    }
    let _ = TABLE.insert(fd, Arc::new(SocketEntry::new(Route::Kernel)));
    log::debug!(target: "sluice", "sluice: fd {fd} -> kernel (accepted on fd {listener})");
}

#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::accept(fd, addr, len) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("accept");
    guarded(&SITE, kernel, |k| {
        let new = k.call();
        track_accepted(fd, new);
        new
    })
}

#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::accept4(fd, addr, len, flags) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("accept4");
    guarded(&SITE, kernel, |k| {
        let new = k.call();
        track_accepted(fd, new);
        new
    })
}

/// Decides a still undecided socket at its first send with an address.
fn decide_at_send(fd: c_int, dst: Option<SocketAddrV4>) {
    let Some(dst) = dst else {
        return;
    };
    TABLE.with(fd, |entry| {
        if entry.route() != Route::Undecided {
            return;
        }
        if let Some(sl) = sluice() {
            decide(sl, fd, entry, Cause::SendTo, dst);
        }
    });
}

#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("sendto");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller promises `addrlen` readable bytes at `addr`.
        decide_at_send(fd, unsafe { inet_addr(addr, addrlen) });
        k.call()
    })
}

/// The destination named by a msghdr, if any.
///
/// # Safety
/// `msg` is null or a valid msghdr.
unsafe fn msg_dst(msg: *const msghdr) -> Option<SocketAddrV4> {
    // SAFETY: see above.
    let msg = unsafe { msg.as_ref() }?;
    // SAFETY: msg_name/msg_namelen describe the caller's address buffer.
    unsafe { inet_addr(msg.msg_name.cast(), msg.msg_namelen) }
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendmsg(fd, msg, flags) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("sendmsg");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller passes a valid msghdr (the kernel will read it too).
        decide_at_send(fd, unsafe { msg_dst(msg) });
        k.call()
    })
}

#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendmmsg(fd, msgs, count, flags) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("sendmmsg");
    guarded(&SITE, kernel, |k| {
        if count > 0 && !msgs.is_null() {
            // SAFETY: `msgs` holds `count` > 0 valid entries.
            decide_at_send(fd, unsafe { msg_dst(&(*msgs).msg_hdr) });
        }
        k.call()
    })
}

fd_hooks! {
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void,
                  len: *mut socklen_t) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void,
                  len: socklen_t) -> c_int;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
}
