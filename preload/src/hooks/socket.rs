//! Socket lifecycle and the offload decision: socket, bind, connect, accept, sendto/sendmsg,
//! plus the socket calls that only need the fd check.
//!
//! socket() always creates the kernel socket (the shadow) and, for IPv4 TCP/UDP, a table
//! entry. The offload decision is taken when an address is known: bind, connect, or the first
//! sendto/sendmsg/sendmmsg with an address. It is logged at debug level as
//! `sluice: fd N -> offload (dst A.B.C.D:P)` or `... -> kernel (...)`.

#![allow(clippy::missing_safety_doc)]

use std::mem::size_of;
use std::net::SocketAddrV4;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::Arc;

use libc::{mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::{fail, served};
use crate::dgram::{self, inet_addr, SendRoute};
use crate::entry::{decision_line, Cause, Offloaded, Route, SocketEntry};
use crate::guard::{guarded, Site};
use crate::init::{sluice, Sluice, TABLE};
use crate::offload::attach;
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
    let entry = Arc::new(SocketEntry::new(Route::Undecided, kind == libc::SOCK_DGRAM));
    TABLE.insert(fd, Arc::clone(&entry)).ok()?;
    Some(entry)
}

fn decide(sl: &Sluice, fd: c_int, entry: &SocketEntry, cause: Cause, addr: SocketAddrV4) {
    let offload = sl.config.policy.offloads(addr);
    if entry.decide(cause, offload) {
        log::debug!(target: "sluice", "{}", decision_line(fd, entry.route(), cause, addr));
    }
}

/// The stack socket of a datagram socket the policy offloads (made now if needed).
fn offloaded_datagram(fd: c_int, entry: &Arc<SocketEntry>) -> Option<&Offloaded> {
    if let Some(o) = entry.offloaded() {
        return (!crate::offload::inherited_in_child(fd)).then_some(o);
    }
    if entry.route() != Route::Offload || !entry.is_datagram() {
        return None;
    }
    let o = attach(fd, entry)?;
    crate::mux::migrate(fd, entry);
    Some(o)
}

/// The stack socket of a stream socket the policy offloads (made now if needed).
fn offloaded_stream(fd: c_int, entry: &Arc<SocketEntry>) -> Option<&Offloaded> {
    if let Some(o) = entry.offloaded() {
        return (!crate::offload::inherited_in_child(fd) && !o.fell_back()).then_some(o);
    }
    if entry.route() != Route::Offload || entry.is_datagram() {
        return None;
    }
    let o = crate::offload::attach_stream(fd, entry)?;
    crate::mux::migrate(fd, entry);
    Some(o)
}

/// The result of a call served by the stack, as C returns it.
fn status(r: dgram::Res<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
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
            let entry = SocketEntry::new(Route::Undecided, kind == libc::SOCK_DGRAM);
            let _ = TABLE.insert(fd, Arc::new(entry));
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
        let Some(sl) = sluice() else {
            return k.call();
        };
        let Some(entry) = entry_or_adopt(fd) else {
            return k.call();
        };
        decide(sl, fd, &entry, Cause::Bind, local);
        if !entry.is_datagram() {
            // A stream bound to a data IP lives on the stack (the kernel lacks the address);
            // on INADDR_ANY the shadow binds, and listen or connect decide the rest.
            if local.ip().is_unspecified() || entry.route() != Route::Offload {
                return k.call();
            }
            return match offloaded_stream(fd, &entry) {
                Some(o) => status(dgram::bind(fd, o, local, || k.call())),
                None => k.call(),
            };
        }
        match offloaded_datagram(fd, &entry) {
            Some(o) => status(dgram::bind(fd, o, local, || k.call())),
            None => k.call(),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::connect(fd, addr, len) };
    // SAFETY: the caller promises `len` readable bytes at `addr`.
    let Some(peer) = (unsafe { inet_addr(addr, len) }) else {
        // AF_UNSPEC dissolves the association of an offloaded datagram socket.
        // SAFETY: the family is the first field of every sockaddr.
        let unspec = !addr.is_null()
            && len as usize >= size_of::<libc::sa_family_t>()
            && unsafe { (*addr).sa_family } == libc::AF_UNSPEC as libc::sa_family_t;
        if !unspec || !TABLE.is_tracked(fd) {
            return kernel();
        }
        static SITE: Site = Site::new("connect");
        return guarded(&SITE, kernel, |k| match served(fd) {
            Some(entry) => status(dgram::connect(
                entry.offloaded().expect("served"),
                None,
                || k.call(),
            )),
            None => k.call(),
        });
    };
    static SITE: Site = Site::new("connect");
    guarded(&SITE, kernel, |k| {
        let Some(sl) = sluice() else {
            return k.call();
        };
        let Some(entry) = entry_or_adopt(fd) else {
            return k.call();
        };
        if let Some(o) = entry.offloaded() {
            if crate::offload::inherited_in_child(fd) || o.fell_back() {
                return k.call();
            }
            if let Some(s) = o.stream() {
                if !sl.config.policy.offloads(peer) {
                    return fail(libc::EADDRNOTAVAIL);
                }
                return status(crate::stream::connect(fd, o, s, peer, &|| k.call()));
            }
            // Once served by the stack, a socket stays there; a kernel-kept peer is reached
            // through its shadow.
            return status(dgram::connect(o, Some(peer), || k.call()));
        }
        decide(sl, fd, &entry, Cause::Connect, peer);
        if !entry.is_datagram() {
            if entry.route() != Route::Offload {
                return k.call();
            }
            let Some(o) = offloaded_stream(fd, &entry) else {
                return k.call();
            };
            let s = o.stream().expect("a stream");
            // A port bound on the shadow (INADDR_ANY) is the connection's local port too.
            if let Some(local) = crate::dgram::sockname(fd).filter(|a| a.port() != 0) {
                if s.local_addr().is_none() {
                    if let Err(e) = s.bind(local) {
                        return fail(e);
                    }
                }
            }
            return status(crate::stream::connect(fd, o, s, peer, &|| k.call()));
        }
        match offloaded_datagram(fd, &entry) {
            Some(o) => status(dgram::connect(o, Some(peer), || k.call())),
            None => k.call(),
        }
    })
}

/// A connection accepted through the kernel shadow is a kernel connection.
fn track_accepted(listener: c_int, fd: c_int) {
    if fd < 0 || !TABLE.is_tracked(listener) {
        return;
    }
    let _ = TABLE.insert(fd, Arc::new(SocketEntry::new(Route::Kernel, false)));
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
    // SAFETY: the caller's arguments.
    guarded(&SITE, kernel, |k| unsafe {
        accept_on(fd, addr, len, 0, &|| k.call())
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
    // SAFETY: the caller's arguments.
    guarded(&SITE, kernel, |k| unsafe {
        accept_on(fd, addr, len, flags, &|| k.call())
    })
}

/// accept on a tracked listener: the stack's connections and, on the shadow, the kernel's.
///
/// # Safety
/// `addr` and `len` as accept(2) takes them.
unsafe fn accept_on(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
    kernel: &dyn Fn() -> c_int,
) -> c_int {
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return fail(libc::EINVAL);
    }
    let stream = served(fd).filter(|e| e.offloaded().is_some_and(|o| o.stream().is_some()));
    let Some(entry) = stream else {
        let new = kernel();
        track_accepted(fd, new);
        return new;
    };
    let o = entry.offloaded().expect("served");
    let s = o.stream().expect("a stream");
    if !s.is_listener() {
        return fail(libc::EINVAL);
    }
    match crate::stream::accept(fd, o, s, flags, kernel) {
        Ok(crate::stream::Accepted::Stack(new, peer)) => {
            // SAFETY: the caller's buffer of `*len` bytes.
            let _ = unsafe { dgram::store_addr(peer, addr, len) };
            new
        }
        Ok(crate::stream::Accepted::Kernel(new)) => {
            track_accepted(fd, new);
            new
        }
        Err(e) => fail(e),
    }
}

/// Decides a still undecided socket at its first send with an address.
fn decide_at_send(fd: c_int, entry: &SocketEntry, dst: Option<SocketAddrV4>) {
    let Some(dst) = dst else {
        return;
    };
    // A stream is decided by connect, bind or listen (an address on its sends is ignored).
    if !entry.is_datagram() {
        return;
    }
    if entry.route() != Route::Undecided {
        return;
    }
    if let Some(sl) = sluice() {
        decide(sl, fd, entry, Cause::SendTo, dst);
    }
}

fn sent(r: dgram::Res<usize>) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => fail(e) as ssize_t,
    }
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
        let dst = unsafe { inet_addr(addr, addrlen) };
        let Some(entry) = TABLE.get(fd) else {
            return k.call();
        };
        decide_at_send(fd, &entry, dst);
        let Some(o) = offloaded_datagram(fd, &entry) else {
            return k.call();
        };
        let data: &[u8] = if len == 0 || buf.is_null() {
            &[]
        } else {
            // SAFETY: the caller promises `len` readable bytes at `buf`.
            unsafe { std::slice::from_raw_parts(buf.cast(), len) }
        };
        // A connected stream ignores the address, as Linux's TCP does.
        if o.stream().is_some() {
            return sent(dgram::send(o, &[data], None, flags));
        }
        // An address that is not IPv4: the kernel's answer (its errno) is the one to give.
        if !addr.is_null() && dst.is_none() {
            return k.call();
        }
        match dgram::send_route(o, dst) {
            SendRoute::Shadow => k.call(),
            SendRoute::Stack => sent(dgram::send(o, &[data], dst, flags)),
        }
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

/// One msghdr sent by the stack, or `None` when the kernel shadow must send it.
///
/// # Safety
/// `msg` is a valid msghdr.
unsafe fn stack_sendmsg(o: &Offloaded, msg: &msghdr, flags: c_int) -> Option<dgram::Res<usize>> {
    // SAFETY: per the contract.
    let mut dst = unsafe { inet_addr(msg.msg_name.cast(), msg.msg_namelen) };
    if o.stream().is_some() {
        // A connected stream ignores the address, as Linux's TCP does.
        dst = None;
    } else {
        if !msg.msg_name.is_null() && dst.is_none() {
            return None;
        }
        if let SendRoute::Shadow = dgram::send_route(o, dst) {
            return None;
        }
    }
    if msg.msg_iovlen > 1024 {
        return Some(Err(libc::EMSGSIZE));
    }
    // SAFETY: the msghdr's iovecs describe readable memory.
    let bufs = unsafe { dgram::iov_ref(msg.msg_iov, msg.msg_iovlen) };
    Some(dgram::send(o, &bufs, dst, flags))
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendmsg(fd, msg, flags) };
    if !TABLE.is_tracked(fd) || msg.is_null() {
        return kernel();
    }
    static SITE: Site = Site::new("sendmsg");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = TABLE.get(fd) else {
            return k.call();
        };
        // SAFETY: the caller passes a valid msghdr (the kernel would read it too).
        decide_at_send(fd, &entry, unsafe { msg_dst(msg) });
        let Some(o) = offloaded_datagram(fd, &entry) else {
            return k.call();
        };
        // SAFETY: as above.
        match unsafe { stack_sendmsg(o, &*msg, flags) } {
            Some(r) => sent(r),
            None => k.call(),
        }
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
    if !TABLE.is_tracked(fd) || msgs.is_null() || count == 0 {
        return kernel();
    }
    static SITE: Site = Site::new("sendmmsg");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = TABLE.get(fd) else {
            return k.call();
        };
        // SAFETY: `msgs` holds `count` > 0 valid entries.
        decide_at_send(fd, &entry, unsafe { msg_dst(&(*msgs).msg_hdr) });
        let Some(o) = offloaded_datagram(fd, &entry) else {
            return k.call();
        };
        // The kernel caps a batch at UIO_MAXIOV messages.
        let count = count.min(1024) as usize;
        let mut done = 0;
        while done < count {
            // SAFETY: `msgs` holds `count` valid entries.
            let m = unsafe { &mut *msgs.add(done) };
            // SAFETY: a valid msghdr.
            let r = match unsafe { stack_sendmsg(o, &m.msg_hdr, flags) } {
                Some(r) => r,
                None => {
                    // SAFETY: the caller's msghdr, sent by the shadow.
                    let n = unsafe { real::sendmsg(fd, &m.msg_hdr, flags) };
                    if n < 0 {
                        Err(crate::guard::errno())
                    } else {
                        Ok(n as usize)
                    }
                }
            };
            match r {
                Ok(n) => {
                    m.msg_len = n as c_uint;
                    done += 1;
                }
                // As the kernel: an error after the first message ends the batch quietly.
                Err(_) if done > 0 => break,
                Err(e) => return fail(e),
            }
        }
        done as c_int
    })
}

#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::getsockname(fd, addr, len) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("getsockname");
    guarded(&SITE, kernel, |k| match served(fd) {
        Some(entry) => {
            let o = entry.offloaded().expect("served");
            if o.kernel_peer.load(std::sync::atomic::Ordering::Acquire) {
                return k.call();
            }
            if len.is_null() || addr.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: the caller's buffer of `*len` bytes.
            status(unsafe { dgram::store_addr(dgram::local_addr(o), addr, len) })
        }
        None => k.call(),
    })
}

#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::getpeername(fd, addr, len) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("getpeername");
    guarded(&SITE, kernel, |k| match served(fd) {
        Some(entry) => {
            let o = entry.offloaded().expect("served");
            if o.kernel_peer.load(std::sync::atomic::Ordering::Acquire) {
                return k.call();
            }
            let peer = match (o.udp(), o.stream()) {
                (Some(u), _) => u.peer_addr(),
                (_, Some(s)) => s.peer_addr(),
                _ => None,
            };
            let Some(peer) = peer else {
                return fail(libc::ENOTCONN);
            };
            if len.is_null() || addr.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: the caller's buffer of `*len` bytes.
            status(unsafe { dgram::store_addr(peer, addr, len) })
        }
        None => k.call(),
    })
}

#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::getsockopt(fd, level, name, value, len) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("getsockopt");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = served(fd) else {
            return k.call();
        };
        let o = entry.offloaded().expect("served");
        if let Some(s) = o.stream() {
            let v = match (level, name) {
                (libc::SOL_SOCKET, libc::SO_ERROR) => crate::stream::take_error(fd, o, s),
                (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => c_int::from(s.is_listener()),
                _ => return k.call(),
            };
            // SAFETY: the caller's buffer of `*len` bytes.
            return status(unsafe { dgram::store_int(v, value, len) });
        }
        let Some(udp) = o.udp() else {
            return k.call();
        };
        let v = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => match udp.take_error() {
                // Nothing pending in the stack: the shadow's own (kernel paths).
                0 => return k.call(),
                e => e,
            },
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                udp.recv_buffer().min(c_int::MAX as usize) as c_int
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                udp.send_buffer().min(c_int::MAX as usize) as c_int
            }
            // Everything else is mirrored on the shadow by setsockopt (see there).
            _ => return k.call(),
        };
        // SAFETY: the caller's buffer of `*len` bytes.
        status(unsafe { dgram::store_int(v, value, len) })
    })
}

#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::setsockopt(fd, level, name, value, len) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("setsockopt");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = served(fd) else {
            return k.call();
        };
        let o = entry.offloaded().expect("served");
        // SAFETY: the caller promises `len` readable bytes at `value`.
        match unsafe { super::sockopt::set(fd, o, level, name, value, len, || k.call()) } {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::listen(fd, backlog) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("listen");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = TABLE.get(fd) else {
            return k.call();
        };
        if entry.is_datagram() || entry.route() != Route::Offload {
            return k.call();
        }
        if let Some(o) = entry.offloaded() {
            if crate::offload::inherited_in_child(fd) || o.fell_back() {
                return k.call();
            }
            // Bound to a data IP: the stack alone listens.
            if let Some(s) = o.stream() {
                return status(crate::stream::listen(o, s, backlog));
            }
            return k.call();
        }
        // Bound on INADDR_ANY: the kernel listens for its own addresses' clients, the stack
        // on the same port for sluice peers.
        let r = k.call();
        if r != 0 {
            return r;
        }
        let Some(local) = crate::dgram::sockname(fd) else {
            return r;
        };
        let Some(o) = offloaded_stream(fd, &entry) else {
            return r;
        };
        let s = o.stream().expect("a stream");
        let attached = s
            .bind(SocketAddrV4::new(
                std::net::Ipv4Addr::UNSPECIFIED,
                local.port(),
            ))
            .and_then(|()| crate::stream::listen(o, s, backlog));
        match attached {
            Ok(()) => {
                o.shadow_receives
                    .store(true, std::sync::atomic::Ordering::Release);
                log::debug!(target: "sluice", "sluice: fd {fd} listens on the stack and the kernel ({local})");
            }
            Err(e) => {
                // The kernel listener still works: kernel clients only.
                log::warn!(
                    target: "sluice",
                    "sluice: fd {fd}: the stack cannot listen on port {} ({}); kernel clients only",
                    local.port(),
                    std::io::Error::from_raw_os_error(e)
                );
                o.kernel_peer
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::shutdown(fd, how) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("shutdown");
    guarded(&SITE, kernel, |k| match served(fd) {
        // A socket connected to a kernel-kept peer lives on its shadow.
        Some(entry)
            if !entry
                .offloaded()
                .expect("served")
                .kernel_peer
                .load(std::sync::atomic::Ordering::Acquire) =>
        {
            status(dgram::shutdown(entry.offloaded().expect("served"), how))
        }
        _ => k.call(),
    })
}
