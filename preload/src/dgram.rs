//! Offloaded datagram sockets: the C ABI of the socket calls translated onto the stack's
//! `UdpSocket`, with the kernel's return values, errno and address formats.
//!
//! Routing inside an offloaded socket:
//! - a destination the policy keeps in the kernel (sendto, or connect) goes through the
//!   kernel shadow, from the shadow's own port;
//! - a socket bound to INADDR_ANY has its shadow bound to the same port on INADDR_ANY, so a
//!   receive takes from the stack's queue or from the shadow, whichever has a datagram, and a
//!   blocking receive waits on both.
//!
//! Functions here return `Err(errno)`; the hooks turn that into -1 and errno.

use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libc::{iovec, msghdr, sockaddr, sockaddr_in, socklen_t};
use sluice_stack::socket::udp::{Received, RecvFlags};

use crate::entry::Offloaded;
use crate::init::sluice;
use crate::offload::{duration, running, sockopt};
use crate::{real, signals};

pub type Res<T> = Result<T, c_int>;

/// Longest single sleep of a blocking receive that also watches the shadow.
const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// The IPv4 address at `addr`, if it is one.
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
pub unsafe fn inet_addr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddrV4> {
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

pub(crate) fn sockaddr_of(a: SocketAddrV4) -> sockaddr_in {
    sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Stores `a` the way the kernel does: at most `*len` bytes of it, and the full length in
/// `*len`. A null `addr` or `len` stores nothing.
///
/// # Safety
/// `addr` is null or has `*len` writable bytes; `len` is null or valid.
pub unsafe fn store_addr(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) -> Res<()> {
    if addr.is_null() || len.is_null() {
        return Ok(());
    }
    if a.ip().is_unspecified() && a.port() == 0 {
        // No sender (a stream receive): the kernel reports an empty address.
        // SAFETY: per the contract.
        unsafe { *len = 0 };
        return Ok(());
    }
    // SAFETY: per the contract.
    let room = unsafe { *len };
    if (room as c_int) < 0 {
        return Err(libc::EINVAL);
    }
    let sin = sockaddr_of(a);
    let n = (room as usize).min(size_of::<sockaddr_in>());
    // SAFETY: `n` bytes fit in the caller's buffer and in `sin`.
    unsafe {
        std::ptr::copy_nonoverlapping((&sin as *const sockaddr_in).cast::<u8>(), addr.cast(), n);
        *len = size_of::<sockaddr_in>() as socklen_t;
    }
    Ok(())
}

/// Stores an int option the way the kernel does (truncated to `*len`, `*len` updated).
///
/// # Safety
/// `value` has `*len` writable bytes; `len` is valid or null (EFAULT).
pub unsafe fn store_int(v: c_int, value: *mut c_void, len: *mut socklen_t) -> Res<()> {
    if len.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: per the contract.
    let room = unsafe { *len } as c_int;
    if room < 0 {
        return Err(libc::EINVAL);
    }
    let n = (room as usize).min(size_of::<c_int>());
    if n > 0 && value.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: `n` bytes fit in both.
    unsafe {
        std::ptr::copy_nonoverlapping((&v as *const c_int).cast::<u8>(), value.cast(), n);
        *len = n as socklen_t;
    }
    Ok(())
}

/// The caller's iovecs as byte slices.
///
/// # Safety
/// `iov` is null (with `count` 0) or holds `count` iovecs describing writable memory that
/// outlives the result and is not aliased.
pub unsafe fn iov_mut<'a>(iov: *const iovec, count: usize) -> Vec<&'a mut [u8]> {
    if iov.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract.
    let iovs = unsafe { std::slice::from_raw_parts(iov, count) };
    iovs.iter()
        .filter(|v| v.iov_len > 0 && !v.iov_base.is_null())
        // SAFETY: per the contract.
        .map(|v| unsafe { std::slice::from_raw_parts_mut(v.iov_base.cast::<u8>(), v.iov_len) })
        .collect()
}

/// # Safety
/// As `iov_mut`, for readable memory.
pub unsafe fn iov_ref<'a>(iov: *const iovec, count: usize) -> Vec<&'a [u8]> {
    if iov.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract.
    let iovs = unsafe { std::slice::from_raw_parts(iov, count) };
    iovs.iter()
        .filter(|v| v.iov_len > 0 && !v.iov_base.is_null())
        // SAFETY: per the contract.
        .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) })
        .collect()
}

/// A checked iovec count (the kernel's UIO_MAXIOV bound).
pub fn iov_count(count: c_int) -> Res<usize> {
    if !(0..=1024).contains(&count) {
        return Err(libc::EINVAL);
    }
    Ok(count as usize)
}

fn policy_offloads(dst: SocketAddrV4) -> bool {
    sluice().is_some_and(|sl| sl.config.policy.offloads(dst))
}

/// Where a send goes.
pub enum SendRoute {
    Stack,
    /// Through the kernel shadow (the caller makes the real call).
    Shadow,
}

/// Whether a send to `dst` (None: the connected peer) is the stack's or the shadow's.
pub fn send_route(o: &Offloaded, dst: Option<SocketAddrV4>) -> SendRoute {
    match dst {
        Some(dst) if !policy_offloads(dst) => SendRoute::Shadow,
        None if o.kernel_peer.load(Ordering::Acquire) => SendRoute::Shadow,
        _ => SendRoute::Stack,
    }
}

/// A send through the stack.
pub fn send(o: &Offloaded, bufs: &[&[u8]], dst: Option<SocketAddrV4>, flags: c_int) -> Res<usize> {
    if let Some(s) = o.stream() {
        // A stream ignores the address (EISCONN only matters on the kernel's side).
        return crate::stream::send(o, s, bufs, flags);
    }
    let udp = udp(o)?;
    // UDP has no out-of-band data: the kernel refuses the flag on a send (and ignores it on a
    // receive).
    if flags & libc::MSG_OOB != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    if o.shut.load(Ordering::Acquire) & SHUT_WR_BIT != 0 {
        return Err(libc::EPIPE);
    }
    o.touch();
    udp.send_to(bufs, dst, flags & libc::MSG_DONTWAIT != 0)
}

/// What one receive produced.
pub struct Got {
    pub copied: usize,
    pub len: usize,
    pub from: SocketAddrV4,
}

impl From<Received> for Got {
    fn from(r: Received) -> Got {
        Got {
            copied: r.copied,
            len: r.len,
            from: r.from,
        }
    }
}

fn recv_flags(flags: c_int, dontwait: bool) -> RecvFlags {
    RecvFlags {
        peek: flags & libc::MSG_PEEK != 0,
        dontwait,
        trunc: flags & libc::MSG_TRUNC != 0,
    }
}

/// One datagram from the shadow without waiting.
fn shadow_recv(fd: c_int, bufs: &mut [&mut [u8]], flags: c_int) -> Res<Got> {
    let mut iov: Vec<iovec> = bufs
        .iter_mut()
        .map(|b| iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero msghdr and sockaddr_in are valid.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut sin: sockaddr_in = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sin as *mut sockaddr_in).cast();
    msg.msg_namelen = size_of::<sockaddr_in>() as socklen_t;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    let kflags = (flags & libc::MSG_PEEK) | libc::MSG_TRUNC | libc::MSG_DONTWAIT;
    // SAFETY: msg describes live buffers.
    let n = unsafe { real::recvmsg(fd, &mut msg, kflags) };
    if n < 0 {
        return Err(crate::guard::errno());
    }
    let len = n as usize;
    let room: usize = bufs.iter().map(|b| b.len()).sum();
    Ok(Got {
        copied: len.min(room),
        len,
        from: SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        ),
    })
}

/// One datagram for the application: from the stack, or for a socket on INADDR_ANY from the
/// stack or the shadow. Blocks unless `flags` has MSG_DONTWAIT or the socket is non-blocking:
/// the wait is ours (not the stack's), so that a signal ends it with EINTR as in the kernel
/// (SA_RESTART is not honoured: the caller sees EINTR), and SO_RCVTIMEO, mirrored on the
/// shadow, bounds it.
pub fn recv(fd: c_int, o: &Offloaded, bufs: &mut [&mut [u8]], flags: c_int) -> Res<Got> {
    if let Some(s) = o.stream() {
        return crate::stream::recv(fd, o, s, bufs, flags);
    }
    let udp = udp(o)?;
    o.touch();
    // Connected to a kernel-kept peer: only the shadow receives.
    let via_stack = !o.kernel_peer.load(Ordering::Acquire);
    let via_shadow = !via_stack || o.shadow_receives.load(Ordering::Acquire);
    let nonblocking = flags & libc::MSG_DONTWAIT != 0 || o.nonblocking.load(Ordering::Acquire);
    // Read (one system call) only once the first attempt found nothing.
    let mut deadline: Option<Option<Instant>> = None;
    // Handlers that run while this call waits end it (EINTR) or restart it, as in the kernel.
    let mut mark = signals::Mark::now();
    loop {
        if via_stack {
            match udp.recv_from(bufs, recv_flags(flags, true)) {
                Err(libc::EAGAIN) => {}
                other => return other.map(Got::from),
            }
        }
        if via_shadow {
            match shadow_recv(fd, bufs, flags) {
                Err(libc::EAGAIN) => {}
                other => return other,
            }
        }
        if nonblocking {
            return Err(libc::EAGAIN);
        }
        // Shut for reading and empty: the end, as the kernel says it (no wait).
        if o.shut.load(Ordering::Acquire) & SHUT_RD_BIT != 0 {
            return Ok(Got {
                copied: 0,
                len: 0,
                from: udp
                    .peer_addr()
                    .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            });
        }
        let deadline = *deadline.get_or_insert_with(|| timeout_deadline(fd, libc::SO_RCVTIMEO));
        let left = time_left(deadline)?;
        let ready = || via_stack && udp.readiness().readable;
        let waited = wait_until(fd, o, left, &ready, via_shadow, &mark);
        match (waited, mark.seen()) {
            (Err(e), _) if e != libc::EINTR => return Err(e),
            (_, signals::Seen::Interrupting) => return Err(libc::EINTR),
            // Not restarted when SO_RCVTIMEO is set.
            (_, signals::Seen::Restartable) if deadline.is_some() => return Err(libc::EINTR),
            // The sleep was interrupted by a handler we do not relay.
            (Err(_), signals::Seen::Nothing) => return Err(libc::EINTR),
            // Restarted: a new mark, so that the next wait sleeps again (not spins).
            (_, signals::Seen::Restartable) => mark = signals::Mark::now(),
            _ => {}
        }
    }
}

/// The socket's SO_RCVTIMEO or SO_SNDTIMEO (mirrored on the shadow) as a deadline from now.
pub fn timeout_deadline(fd: c_int, name: c_int) -> Option<Instant> {
    sockopt::<libc::timeval>(fd, libc::SOL_SOCKET, name)
        .and_then(duration)
        .map(|d| Instant::now() + d)
}

/// What is left until `deadline` (None: no deadline); EAGAIN once it has passed.
pub fn time_left(deadline: Option<Instant>) -> Res<Option<Duration>> {
    match deadline {
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(libc::EAGAIN),
        },
        None => Ok(None),
    }
}

/// Waits until `ready()` (the stack socket is ready) or the shadow may be readable, or `left`
/// passes: spins on the stack for the configured budget, then sleeps in one real poll on the
/// shadow and the stack's wakeup eventfd. Err(EINTR) when a signal interrupts the sleep.
/// Returns at once, without sleeping, when a signal handler ran since `mark`.
pub fn wait_until(
    fd: c_int,
    _o: &Offloaded,
    left: Option<Duration>,
    ready: &dyn Fn() -> bool,
    watch_shadow: bool,
    mark: &signals::Mark,
) -> Res<()> {
    let start = Instant::now();
    let Some(stack) = running() else {
        return Err(libc::EAGAIN);
    };
    let spin = sluice().map_or(Duration::ZERO, |sl| sl.config.spin_budget());
    let mut turns = crate::mux::SpinTurns::new(start);
    while start.elapsed() < spin.min(left.unwrap_or(spin)) {
        stack.poll();
        if ready() {
            stack.note_spin(start.elapsed());
            return Ok(());
        }
        turns.take();
    }
    stack.note_spin(start.elapsed());
    // The shadow, the stack's wakeup, and the ports' fds, which wake this thread when a frame
    // arrives (it then makes progress itself rather than wait for the helper).
    let pollin = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // A negative fd is ignored by poll.
    let mut fds = vec![
        pollin(if watch_shadow { fd } else { -1 }),
        pollin(stack.wakeup_fd()),
    ];
    fds.extend(stack.wait_fds().iter().map(|&fd| pollin(fd)));
    if ready() || mark.seen() != signals::Seen::Nothing {
        return Ok(());
    }
    // In slices: a wakeup drained by another thread's wait makes this one late, not stuck.
    let slice = left.map_or(SLEEP_SLICE, |l| {
        l.saturating_sub(start.elapsed()).min(SLEEP_SLICE)
    });
    let timeout = slice.as_millis().max(1) as c_int;
    // SAFETY: a valid pollfd array of its length.
    let r = unsafe { real::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if r < 0 {
        return Err(crate::guard::errno());
    }
    if fds[1].revents != 0 {
        crate::mux::drain_wakeup(stack);
    }
    if fds[2..].iter().any(|p| p.revents & libc::POLLIN != 0) {
        stack.poll_waiting();
    }
    Ok(())
}

const SHUT_RD_BIT: u8 = 1;
const SHUT_WR_BIT: u8 = 2;

/// shutdown on an offloaded socket served by the stack: like the kernel's for UDP, only a
/// connected socket can be shut; reads then end (0) instead of waiting, writes fail (EPIPE).
pub fn shutdown(o: &Offloaded, how: c_int) -> Res<()> {
    let bits = match how {
        libc::SHUT_RD => SHUT_RD_BIT,
        libc::SHUT_WR => SHUT_WR_BIT,
        libc::SHUT_RDWR => SHUT_RD_BIT | SHUT_WR_BIT,
        _ => return Err(libc::EINVAL),
    };
    if let Some(s) = o.stream() {
        s.shutdown(how)?;
        o.touch();
        return Ok(());
    }
    if udp(o)?.peer_addr().is_none() {
        return Err(libc::ENOTCONN);
    }
    o.shut.fetch_or(bits, Ordering::AcqRel);
    o.touch();
    Ok(())
}

/// bind on an offloaded socket. On INADDR_ANY the shadow is bound first (on the same address,
/// so the kernel's errors and ephemeral port choice are the answer), then the stack socket to
/// the same port.
pub fn bind(fd: c_int, o: &Offloaded, local: SocketAddrV4, kernel: impl Fn() -> c_int) -> Res<()> {
    if let Some(s) = o.stream() {
        return s.bind(local);
    }
    let udp = udp(o)?;
    if local.ip().is_unspecified() {
        if kernel() != 0 {
            return Err(crate::guard::errno());
        }
        let port = sockname(fd).map_or(local.port(), |a| a.port());
        udp.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        o.shadow_receives.store(true, Ordering::Release);
        return Ok(());
    }
    udp.bind(local)
}

/// The shadow's own address.
pub fn sockname(fd: c_int) -> Option<SocketAddrV4> {
    // SAFETY: all-zero sockaddr_in is valid.
    let mut sin: sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sockaddr_in>() as socklen_t;
    // SAFETY: a sockaddr_in-sized buffer.
    let r = unsafe { real::getsockname(fd, (&mut sin as *mut sockaddr_in).cast(), &mut len) };
    // SAFETY: `len` bytes of a sockaddr_in were written.
    (r == 0).then(|| unsafe { inet_addr((&sin as *const sockaddr_in).cast(), len) })?
}

/// connect (or, with `None`, the AF_UNSPEC disconnect) on an offloaded socket. A peer the
/// policy keeps in the kernel is connected on the shadow, which then carries the socket.
pub fn connect(o: &Offloaded, peer: Option<SocketAddrV4>, kernel: impl Fn() -> c_int) -> Res<()> {
    let udp = udp(o)?;
    match peer {
        Some(p) if !policy_offloads(p) => {
            if kernel() != 0 {
                return Err(crate::guard::errno());
            }
            udp.connect(None)?;
            o.kernel_peer.store(true, Ordering::Release);
            Ok(())
        }
        Some(p) => {
            udp.connect(Some(p))?;
            o.kernel_peer.store(false, Ordering::Release);
            Ok(())
        }
        None => {
            // The shadow may be connected too (kernel peer): disconnect both.
            kernel();
            o.kernel_peer.store(false, Ordering::Release);
            udp.connect(None)
        }
    }
}

pub fn local_addr(o: &Offloaded) -> SocketAddrV4 {
    let local = match (o.udp(), o.stream()) {
        (Some(u), _) => u.local_addr(),
        (_, Some(s)) => s.local_addr(),
        _ => None,
    };
    local.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

/// FIONREAD: the size of the next datagram, 0 if none.
pub fn next_datagram_len(fd: c_int, o: &Offloaded) -> c_int {
    if let Some(stack) = running() {
        stack.poll();
    }
    if let Some(s) = o.stream() {
        return s.readable_bytes().min(c_int::MAX as usize) as c_int;
    }
    let Some(udp) = o.udp() else { return 0 };
    let n = udp.next_datagram_len();
    if n > 0 || udp.readiness().readable {
        return n.min(c_int::MAX as usize) as c_int;
    }
    if o.shadow_receives.load(Ordering::Acquire) || o.kernel_peer.load(Ordering::Acquire) {
        let mut n: c_int = 0;
        // SAFETY: FIONREAD writes an int.
        if unsafe { real::ioctl(fd, libc::FIONREAD, (&mut n as *mut c_int) as libc::c_ulong) } == 0
        {
            return n;
        }
    }
    0
}

/// Readiness as poll reports it (POLLIN/POLLOUT/POLLERR bits), for the events asked.
pub fn poll_bits(fd: c_int, o: &Offloaded, shadow_readable: bool) -> i16 {
    let udp = match (o.udp(), o.stream()) {
        (Some(u), _) => u,
        (_, Some(s)) => return crate::stream::poll_bits(fd, o, s, shadow_readable),
        _ => return 0,
    };
    let r = udp.readiness();
    // Connected to a kernel-kept peer, the socket receives through its shadow only.
    let stack_readable = r.readable && !o.kernel_peer.load(Ordering::Acquire);
    let mut bits = 0;
    if stack_readable || shadow_readable {
        bits |= libc::POLLIN | libc::POLLRDNORM;
    }
    if r.writable {
        bits |= libc::POLLOUT | libc::POLLWRNORM;
    }
    if r.error {
        bits |= libc::POLLERR;
    }
    bits
}

/// The datagram socket of `o` (the callers only pass datagram sockets).
fn udp(o: &Offloaded) -> Res<&sluice_stack::socket::udp::UdpSocket> {
    o.udp().map(|u| &**u).ok_or(libc::EOPNOTSUPP)
}

/// Whether the shadow polls readable now (one real poll, no wait).
pub fn shadow_pollin(fd: c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { real::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

/// Whether the shadow of a socket that receives through it has a datagram (one real poll).
pub fn shadow_readable(fd: c_int, o: &Offloaded) -> bool {
    if !o.shadow_receives.load(Ordering::Acquire) && !o.kernel_peer.load(Ordering::Acquire) {
        return false;
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { real::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddrV4 {
        "10.77.2.1:9000".parse().unwrap()
    }

    #[test]
    fn an_address_is_stored_truncated_with_its_full_length() {
        let mut buf = [0xaa_u8; 32];
        let mut len: socklen_t = 32;
        // SAFETY: a 32-byte buffer.
        unsafe { store_addr(addr(), buf.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len, 16);
        // SAFETY: 16 bytes of a sockaddr_in were written.
        let back = unsafe { inet_addr(buf.as_ptr().cast(), len) };
        assert_eq!(back, Some(addr()));
        assert_eq!(buf[16..], [0xaa; 16], "nothing past sizeof(sockaddr_in)");

        let mut short = [0xaa_u8; 8];
        let mut len: socklen_t = 4;
        // SAFETY: 4 writable bytes asked for.
        unsafe { store_addr(addr(), short.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len, 16, "the full length is reported");
        assert_eq!(short[..2], (libc::AF_INET as u16).to_ne_bytes());
        assert_eq!(short[2..4], 9000_u16.to_be_bytes());
        assert_eq!(short[4..], [0xaa; 4], "only `len` bytes are written");

        let mut len: socklen_t = u32::MAX;
        // SAFETY: a negative length is refused before any write.
        let r = unsafe { store_addr(addr(), short.as_mut_ptr().cast(), &mut len) };
        assert_eq!(r, Err(libc::EINVAL));
    }

    #[test]
    fn an_int_option_is_stored_like_the_kernel_does() {
        let mut v: [u8; 8] = [0xaa; 8];
        let mut len: socklen_t = 8;
        // SAFETY: an 8-byte buffer.
        unsafe { store_int(111, v.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len, 4);
        assert_eq!(v[..4], 111_i32.to_ne_bytes());
        let mut len: socklen_t = 1;
        // SAFETY: one byte asked for.
        unsafe { store_int(0x0102, v.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len, 1);
        assert_eq!(v[0], 0x02);
        // SAFETY: a null length is refused.
        let r = unsafe { store_int(1, v.as_mut_ptr().cast(), std::ptr::null_mut()) };
        assert_eq!(r, Err(libc::EFAULT));
    }

    #[test]
    fn iovec_counts_follow_uio_maxiov() {
        assert_eq!(iov_count(0), Ok(0));
        assert_eq!(iov_count(1024), Ok(1024));
        assert_eq!(iov_count(1025), Err(libc::EINVAL));
        assert_eq!(iov_count(-1), Err(libc::EINVAL));
    }

    #[test]
    fn empty_and_null_iovecs_are_skipped() {
        let mut a = [0u8; 4];
        let iov = [
            iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            iovec {
                iov_base: a.as_mut_ptr().cast(),
                iov_len: a.len(),
            },
        ];
        // SAFETY: two iovecs over live memory (or empty).
        let bufs = unsafe { iov_mut(iov.as_ptr(), iov.len()) };
        assert_eq!(bufs.len(), 1);
        assert_eq!(bufs[0].len(), 4);
    }
}
