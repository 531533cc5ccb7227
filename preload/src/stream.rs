//! Offloaded stream sockets: SOCK_STREAM calls translated onto the stack's `StreamSocket`
//! (the reliable protocol over UDP), with the kernel's blocking, errno and signal behaviour.
//!
//! Blocking calls wait the way datagram receives do (`dgram::wait_until`): spin on the stack,
//! then sleep on its wakeup and the ports' fds; a signal handler ends the wait with EINTR.
//!
//! Fall-back: a connect whose peer does not answer in the protocol (ICMP port unreachable,
//! or no answer within the stack's fall-back time) connects the shadow through the kernel's
//! TCP instead, and from then on the fd is the kernel's (`Offloaded::fell_back`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use sluice_stack::socket::stream::StreamSocket;
use sluice_stack::stream::endpoint::ready;

use crate::dgram::{self, Got, Res};
use crate::entry::{Offloaded, Route, SocketEntry};
use crate::init::TABLE;
use crate::offload::sockopt;
use crate::{real, signals};

/// The last close of a stream socket: SO_LINGER 0 resets; SO_LINGER N waits (at most N s)
/// until the peer acknowledged everything, as the kernel's close does; otherwise an orderly
/// close goes on in the background.
pub fn close(s: &StreamSocket) {
    match s.linger() {
        Some(0) => s.close(true),
        Some(secs) if s.is_connection() => {
            let _ = s.shutdown(libc::SHUT_WR);
            if let Some(stack) = crate::offload::running() {
                let limit = std::time::Duration::from_secs(u64::from(secs));
                stack.progress_until(limit, || s.all_acked());
            }
            s.close(false);
        }
        _ => s.close(false),
    }
}

fn nonblocking(o: &Offloaded, flags: c_int) -> bool {
    flags & libc::MSG_DONTWAIT != 0 || o.nonblocking.load(Ordering::Acquire)
}

/// Waits for `bits` (or an error) on `s`; `Err(EINTR)` when a handler ran that ends the call,
/// `Err(EAGAIN)` when `until` passed. After an SA_RESTART handler (and no timeout) it returns
/// `Ok`, and the caller simply tries again.
fn wait_for(
    fd: c_int,
    o: &Offloaded,
    s: &StreamSocket,
    bits: u32,
    until: Option<Instant>,
    watch_shadow: bool,
    mark: &mut signals::Mark,
) -> Res<()> {
    let left = dgram::time_left(until)?;
    let ready = || s.readiness() & (bits | ready::ERROR) != 0;
    let waited = dgram::wait_until(fd, o, left, &ready, watch_shadow, mark);
    match (waited, mark.seen()) {
        (Err(e), _) if e != libc::EINTR => Err(e),
        (_, signals::Seen::Interrupting) => Err(libc::EINTR),
        (_, signals::Seen::Restartable) if until.is_some() => Err(libc::EINTR),
        (Err(_), signals::Seen::Nothing) => Err(libc::EINTR),
        (_, seen) => {
            if seen == signals::Seen::Restartable {
                // Restarted, as the kernel would: later waits sleep again until the next
                // handler (without a new mark every wait would return at once and spin).
                *mark = signals::Mark::now();
            }
            Ok(())
        }
    }
}

/// A connection's handshake fell back: connect the shadow through the kernel (blocking as
/// the application set the fd) and hand the fd to the kernel for good.
fn fall_back(o: &Offloaded, s: &StreamSocket, kernel: &dyn Fn() -> c_int) -> Res<()> {
    s.abandon();
    o.kernel_peer.store(true, Ordering::Release);
    log::debug!(target: "sluice", "sluice: stream peer does not speak sluice: kernel TCP");
    if kernel() != 0 {
        return Err(crate::guard::errno());
    }
    Ok(())
}

/// A pending fall-back discovered by a later call (non-blocking connect): connects the shadow
/// to the peer without waiting. Returns whether the fd is now the kernel's. A kernel connect
/// that fails at once (no route, say) fails the socket with that error instead.
pub fn settle(fd: c_int, o: &Offloaded) -> bool {
    let Some(s) = o.stream() else { return false };
    if s.readiness() & ready::FALL_BACK == 0 || o.fell_back() {
        return o.fell_back();
    }
    let Some(peer) = s.connect_target() else {
        return false;
    };
    let sin = dgram::sockaddr_of(peer);
    let connected = fall_back(o, s, &|| {
        // SAFETY: a valid sockaddr_in of its size.
        unsafe {
            real::connect(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
    });
    match connected {
        Ok(()) | Err(libc::EINPROGRESS) => true,
        Err(e) => {
            o.kernel_peer.store(false, Ordering::Release);
            s.fail(e);
            false
        }
    }
}

/// connect(): the handshake in the protocol; EINPROGRESS for a non-blocking socket, else
/// waits for it to finish (or fall back to the kernel's TCP).
pub fn connect(
    fd: c_int,
    o: &Offloaded,
    s: &StreamSocket,
    peer: SocketAddrV4,
    kernel: &dyn Fn() -> c_int,
) -> Res<()> {
    if s.is_connection() {
        let bits = s.readiness();
        if bits & ready::CONNECTED != 0 {
            // The first connect after a non-blocking one completed returns 0, as in Linux.
            return if s.take_connect_report() {
                Ok(())
            } else {
                Err(libc::EISCONN)
            };
        }
        if s.failed() {
            // A failed connect ends here, and the socket may connect anew; when SO_ERROR took
            // the error already, Linux says ECONNABORTED.
            let e = s.take_error();
            s.disconnect();
            return Err(if e != 0 { e } else { libc::ECONNABORTED });
        }
        if settle(fd, o) {
            // Now the kernel's connect: its answer.
            return if kernel() == 0 {
                Ok(())
            } else {
                Err(crate::guard::errno())
            };
        }
        return Err(libc::EALREADY);
    }
    s.connect(peer, true)?;
    o.touch();
    if o.nonblocking.load(Ordering::Acquire) {
        return Err(libc::EINPROGRESS);
    }
    let mut mark = signals::Mark::now();
    loop {
        let bits = s.readiness();
        if bits & ready::FALL_BACK != 0 {
            return fall_back(o, s, kernel);
        }
        if bits & ready::ERROR != 0 {
            let e = s.take_error();
            s.disconnect();
            return Err(e);
        }
        if bits & ready::CONNECTED != 0 {
            s.take_connect_report();
            return Ok(());
        }
        // An interrupted connect goes on in the background, as in the kernel.
        wait_for(
            fd,
            o,
            s,
            ready::CONNECTED | ready::FALL_BACK,
            None,
            false,
            &mut mark,
        )?;
    }
}

/// listen() of a socket the policy offloads: the stack listens on the shadow's port; a shadow
/// bound to INADDR_ANY listens too, for kernel TCP clients.
pub fn listen(o: &Offloaded, s: &StreamSocket, backlog: c_int) -> Res<()> {
    s.listen(backlog)?;
    o.touch();
    Ok(())
}

/// An accepted connection: a new fd (a fresh kernel socket as its shadow) on the stack's
/// connection, or the kernel's own accept on the shadow.
pub enum Accepted {
    Stack(c_int, SocketAddrV4),
    Kernel(c_int),
}

/// accept()/accept4(): a connection from the stack's queue or, for a listener on
/// INADDR_ANY, the kernel's (a TCP client on a kernel address).
pub fn accept(
    fd: c_int,
    o: &Offloaded,
    s: &StreamSocket,
    flags: c_int,
    kernel: &dyn Fn() -> c_int,
) -> Res<Accepted> {
    let via_shadow = o.shadow_receives.load(Ordering::Acquire);
    let until = dgram::timeout_deadline(fd, libc::SO_RCVTIMEO);
    let mut mark = signals::Mark::now();
    loop {
        match s.accept() {
            Ok(conn) => return adopt(conn, flags),
            Err(libc::EAGAIN) => {}
            Err(e) => return Err(e),
        }
        if via_shadow && dgram::shadow_pollin(fd) {
            let new = kernel();
            if new >= 0 {
                return Ok(Accepted::Kernel(new));
            }
            let e = crate::guard::errno();
            if e != libc::EAGAIN && e != libc::EWOULDBLOCK {
                return Err(e);
            }
        }
        if o.nonblocking.load(Ordering::Acquire) {
            return Err(libc::EAGAIN);
        }
        wait_for(fd, o, s, ready::READABLE, until, via_shadow, &mut mark)?;
    }
}

/// Gives an accepted stack connection its fd: a fresh kernel TCP socket as the shadow.
fn adopt(conn: sluice_stack::socket::stream::Accepted, flags: c_int) -> Res<Accepted> {
    let kind = libc::SOCK_STREAM | (flags & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC));
    // SAFETY: plain socket creation.
    let new = unsafe { real::socket(libc::AF_INET, kind, 0) };
    if new < 0 {
        let e = crate::guard::errno();
        conn.socket.close(true);
        return Err(e);
    }
    let entry = Arc::new(SocketEntry::new(Route::Offload, false));
    let nonblocking = flags & libc::SOCK_NONBLOCK != 0;
    entry.offload_with(|| Some(Offloaded::new_stream(conn.socket, nonblocking)));
    if TABLE.insert(new, entry).is_err() {
        // SAFETY: our own fresh fd.
        unsafe { real::close(new) };
        return Err(libc::EMFILE);
    }
    log::debug!(target: "sluice", "sluice: fd {new} -> offload (accepted from {})", conn.peer);
    Ok(Accepted::Stack(new, conn.peer))
}

/// send()/write() on a connection: a blocking socket queues everything (or fails), a
/// non-blocking one what fits. EPIPE raises SIGPIPE unless MSG_NOSIGNAL.
pub fn send(o: &Offloaded, s: &StreamSocket, bufs: &[&[u8]], flags: c_int) -> Res<usize> {
    if flags & libc::MSG_OOB != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    o.touch();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let nonblocking = nonblocking(o, flags);
    let mut mark = signals::Mark::now();
    let mut sent = 0;
    loop {
        let rest = rest_of(bufs, sent);
        let r = if rest.is_empty() && sent > 0 {
            Ok(0)
        } else {
            s.send(&rest)
        };
        match r {
            Ok(n) => {
                sent += n;
                if sent >= total || nonblocking {
                    return Ok(sent);
                }
            }
            Err(libc::EAGAIN) if sent > 0 && nonblocking => return Ok(sent),
            Err(libc::EAGAIN) if nonblocking => return Err(libc::EAGAIN),
            Err(libc::EAGAIN) => {}
            Err(e) => {
                if sent > 0 {
                    return Ok(sent);
                }
                if e == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                    // SAFETY: signals this thread, as the kernel does for a write on a broken pipe.
                    unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE) };
                }
                return Err(e);
            }
        }
        match wait_for(-1, o, s, ready::WRITABLE, None, false, &mut mark) {
            Ok(()) => {}
            // Interrupted after some bytes went: the count, as the kernel returns it.
            Err(_) if sent > 0 => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
}

/// The unsent tail of `bufs` after `skip` bytes.
fn rest_of<'a>(bufs: &[&'a [u8]], mut skip: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        out.push(&b[skip..]);
        skip = 0;
    }
    out
}

/// recv()/read() on a connection: what is ready (MSG_WAITALL: until the buffers are full),
/// 0 at end of stream; blocks unless non-blocking.
pub fn recv(
    fd: c_int,
    o: &Offloaded,
    s: &StreamSocket,
    bufs: &mut [&mut [u8]],
    flags: c_int,
) -> Res<Got> {
    o.touch();
    let nonblocking = nonblocking(o, flags);
    let peek = flags & libc::MSG_PEEK != 0;
    let wait_all = flags & libc::MSG_WAITALL != 0 && !peek;
    let room: usize = bufs.iter().map(|b| b.len()).sum();
    let mut until: Option<Option<Instant>> = None;
    let mut mark = signals::Mark::now();
    let mut got = 0;
    loop {
        let mut rest = tail_mut(bufs, got);
        match s.recv(&mut rest, peek) {
            Ok(0) => return Ok(no_addr(got)),
            Ok(n) => {
                got += n;
                if !wait_all || got >= room {
                    return Ok(no_addr(got));
                }
            }
            Err(libc::EAGAIN) if got > 0 && (nonblocking || !wait_all) => return Ok(no_addr(got)),
            Err(libc::EAGAIN) if nonblocking => return Err(libc::EAGAIN),
            Err(libc::EAGAIN) => {}
            Err(_) if got > 0 => return Ok(no_addr(got)),
            Err(e) => return Err(e),
        }
        let until = *until.get_or_insert_with(|| dgram::timeout_deadline(fd, libc::SO_RCVTIMEO));
        match wait_for(fd, o, s, ready::READABLE, until, false, &mut mark) {
            Ok(()) => {}
            Err(_) if got > 0 => return Ok(no_addr(got)),
            Err(e) => return Err(e),
        }
    }
}

/// A stream receive names no sender (the kernel leaves the address length 0).
fn no_addr(n: usize) -> Got {
    Got {
        copied: n,
        len: n,
        from: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    }
}

/// The buffers after the first `skip` bytes.
fn tail_mut<'a>(bufs: &'a mut [&mut [u8]], mut skip: usize) -> Vec<&'a mut [u8]> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs.iter_mut() {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        out.push(&mut b[skip..]);
        skip = 0;
    }
    out
}

/// Readiness as poll reports it.
pub fn poll_bits(fd: c_int, o: &Offloaded, s: &StreamSocket, shadow_readable: bool) -> i16 {
    if settle(fd, o) {
        // Now the kernel's socket: what it says, without waiting.
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { real::poll(&mut p, 1, 0) };
        return p.revents;
    }
    let r = s.readiness();
    let mut bits = 0;
    if r & ready::READABLE != 0 || shadow_readable {
        bits |= libc::POLLIN | libc::POLLRDNORM;
    }
    if r & ready::WRITABLE != 0 {
        bits |= libc::POLLOUT | libc::POLLWRNORM;
    }
    if r & ready::ERROR != 0 {
        bits |= libc::POLLERR;
    }
    if r & ready::HUP != 0 {
        bits |= libc::POLLHUP;
    }
    if r & ready::READ_HUP != 0 {
        bits |= libc::POLLRDHUP;
    }
    bits
}

/// SO_ERROR of a stream: the pending error, cleared.
pub fn take_error(fd: c_int, o: &Offloaded, s: &StreamSocket) -> c_int {
    if settle(fd, o) {
        return sockopt::<c_int>(fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0);
    }
    s.take_error()
}
