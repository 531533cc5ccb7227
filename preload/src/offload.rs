//! The stack, started lazily at the first socket the policy offloads, and the hand-over of a
//! datagram socket from its kernel shadow to a stack socket.
//!
//! Nothing here runs before the first offload decision: a process that never offloads maps no
//! DPDK library and starts no thread. `Stack::start` runs with the re-entry flag set (DPDK's
//! EAL opens files and sockets from inside), and the stack's threads are marked as sluice's own
//! from their first instruction. If the stack cannot start, one error line is logged and this
//! socket and every later one stay in the kernel.

use std::ffi::OsStr;
use std::mem::size_of;
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libc::socklen_t;
use sluice_stack::engine::Stack;

use crate::entry::{Offloaded, SocketEntry};
use crate::guard::{as_sluice, mark_thread_as_sluice};
use crate::init::sluice;
use crate::real;

const UNSTARTED: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
const FAILED: u8 = 3;
/// A forked child of a process with a stack: it keeps the kernel for everything new.
const CHILD: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(UNSTARTED);
/// The process that is starting the stack: a child forked meanwhile must not wait for it.
static STARTER: AtomicU32 = AtomicU32::new(0);
static STACK: OnceLock<Arc<Stack>> = OnceLock::new();

/// In a forked child: the parent's stack is not ours (no threads, maybe locks held forever).
/// Later offload decisions in the child stay in the kernel; readiness calls see no stack.
pub fn forked_child() {
    if STATE.load(Ordering::Acquire) != UNSTARTED {
        STATE.store(CHILD, Ordering::Release);
    }
}

/// Whether `fd`, an offloaded socket, must be left to its kernel shadow because this is a
/// forked child of a process with a stack: the socket lives in the parent's stack, which the
/// child must not touch (its copy has no threads, may hold locks forever, and shares the
/// ports' rings with the parent). The first time, one warning line says why.
pub fn inherited_in_child(fd: c_int) -> bool {
    if STATE.load(Ordering::Acquire) != CHILD {
        return false;
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        log::warn!(
            target: "sluice",
            "sluice: process {} is a fork of a process with a sluice stack; the offloaded \
             sockets it inherited (fd {fd} first) belong to the parent's stack, so here they \
             are plain kernel sockets; open sockets after fork to offload them",
            std::process::id()
        );
    });
    true
}

/// Whether this process started the stack (false in a forked child, whose copy of it has no
/// threads and may hold locks forever).
pub fn owns_stack() -> bool {
    STARTER.load(Ordering::Acquire) == std::process::id()
}

/// The running stack, if it was started already (never starts it).
#[inline]
pub fn running() -> Option<&'static Arc<Stack>> {
    (STATE.load(Ordering::Acquire) == STARTED)
        .then(|| STACK.get())
        .flatten()
}

/// The stack, started now if this is the first offloaded socket. `None`: keep it in the kernel.
pub fn stack() -> Option<&'static Arc<Stack>> {
    loop {
        match STATE.load(Ordering::Acquire) {
            STARTED => return STACK.get(),
            FAILED | CHILD => return None,
            STARTING => {
                if STARTER.load(Ordering::Acquire) != std::process::id() {
                    return None;
                }
                // Another thread of this process is starting it: starting takes a moment.
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => {
                if STATE
                    .compare_exchange(UNSTARTED, STARTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    STARTER.store(std::process::id(), Ordering::Release);
                    return start();
                }
            }
        }
    }
}

#[cold]
fn start() -> Option<&'static Arc<Stack>> {
    let Some(sl) = sluice() else {
        STATE.store(FAILED, Ordering::Release);
        return None;
    };
    let mut config = sl.config.clone();
    if config.dpdk_lib.is_none() {
        config.dpdk_lib = default_dpdk_lib();
    }
    let started = as_sluice(|| Stack::start(&config, mark_thread_as_sluice));
    match started {
        Ok(stack) => {
            log::debug!(
                target: "sluice",
                "sluice: stack started ({} mode)",
                stack.mode().as_str()
            );
            let _ = STACK.set(stack);
            STATE.store(STARTED, Ordering::Release);
            // SAFETY: registers a plain extern "C" function; atexit has no other precondition.
            unsafe { libc::atexit(finish_streams_at_exit) };
            STACK.get()
        }
        Err(e) => {
            log::error!(
                target: "sluice",
                "sluice: the stack did not start ({e}); offloaded sockets stay in the kernel"
            );
            STATE.store(FAILED, Ordering::Release);
            None
        }
    }
}

/// How long an exiting process waits for its streams' last bytes to be acknowledged.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// At exit (of the process that started the stack, not of a forked child): the streams the
/// application left open are closed and their last bytes delivered, within `EXIT_LINGER`.
extern "C" fn finish_streams_at_exit() {
    if !owns_stack() {
        return;
    }
    if let Some(stack) = running() {
        let _ = std::panic::catch_unwind(|| as_sluice(|| stack.finish_streams(EXIT_LINGER)));
    }
}

/// libsluice_dpdk.so in the directory libsluice.so was loaded from.
fn default_dpdk_lib() -> Option<PathBuf> {
    let ours = crate::exec_env::our_library()?;
    let ours = PathBuf::from(OsStr::from_bytes(ours.to_bytes()));
    Some(ours.parent()?.join("libsluice_dpdk.so"))
}

/// Gives `entry` (fd `fd`, a datagram socket the policy offloads) its stack socket, carrying
/// over what the application set on the shadow so far. `None`: the stack cannot take it, and
/// the entry is turned back to the kernel.
pub fn attach(fd: c_int, entry: &SocketEntry) -> Option<&Offloaded> {
    let attached = entry.offload_with(|| {
        // Kernel-UDP mode: datagram sockets stay in the kernel (nothing to gain), so they
        // start no stack either.
        if sluice()?.config.mode == sluice_stack::config::Mode::Udp {
            return None;
        }
        let stack = stack()?;
        let udp = match stack.udp_socket() {
            Ok(udp) => udp,
            // Mode udp: datagram sockets stay in the kernel by design.
            Err(libc::EOPNOTSUPP) => return None,
            Err(e) => {
                log::warn!(
                    target: "sluice",
                    "sluice: fd {fd}: no stack socket ({}); it stays in the kernel",
                    std::io::Error::from_raw_os_error(e)
                );
                return None;
            }
        };
        carry_over(fd, &udp);
        // SAFETY: F_GETFL takes no argument.
        let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
        let nonblocking = flags >= 0 && flags & libc::O_NONBLOCK != 0;
        udp.set_nonblocking(nonblocking);
        Some(Offloaded::new(udp, nonblocking))
    });
    if attached.is_none() {
        entry.fall_back_to_kernel();
    }
    attached
}

/// Gives `entry` (fd `fd`, a stream socket the policy offloads) its stack socket, carrying over
/// the options set on the shadow so far. `None`: the stack cannot take it (the kernel keeps it).
pub fn attach_stream(fd: c_int, entry: &SocketEntry) -> Option<&Offloaded> {
    let attached = entry.offload_with(|| {
        let stack = stack()?;
        let stream = match stack.stream_socket() {
            Ok(s) => s,
            Err(e) => {
                log::debug!(
                    target: "sluice",
                    "sluice: fd {fd}: no stack stream socket ({}); it stays in the kernel",
                    std::io::Error::from_raw_os_error(e)
                );
                return None;
            }
        };
        carry_over_stream(fd, &stream);
        // SAFETY: F_GETFL takes no argument.
        let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
        let nonblocking = flags >= 0 && flags & libc::O_NONBLOCK != 0;
        Some(Offloaded::new_stream(stream, nonblocking))
    });
    if attached.is_none() {
        entry.fall_back_to_kernel();
    }
    attached
}

/// Stream options set on the shadow (before the decision, or mirrored since), read back from it.
pub fn carry_over_stream(fd: c_int, s: &sluice_stack::socket::stream::StreamSocket) {
    let int = |level, name| sockopt::<c_int>(fd, level, name);
    if let Some(v) = int(libc::SOL_SOCKET, libc::SO_REUSEADDR) {
        s.set_reuse_addr(v != 0);
    }
    if let Some(v) = int(libc::IPPROTO_TCP, libc::TCP_NODELAY) {
        s.set_nodelay(v != 0);
    }
    // Buffer sizes are not carried over: the shadow cannot tell the kernel's defaults (far
    // smaller than the stack's) from a size the application chose. setsockopt after the
    // offload reaches the stack.
    if int(libc::SOL_SOCKET, libc::SO_KEEPALIVE).is_some_and(|v| v != 0) {
        let secs = |name| u64::from(int(libc::IPPROTO_TCP, name).unwrap_or(1).max(1) as u32);
        s.set_keepalive(Some(sluice_stack::stream::conn::Keepalive {
            idle: secs(libc::TCP_KEEPIDLE) * 1_000_000_000,
            interval: secs(libc::TCP_KEEPINTVL) * 1_000_000_000,
            count: int(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)
                .unwrap_or(9)
                .max(1) as u32,
        }));
    }
    if let Some(l) = sockopt::<libc::linger>(fd, libc::SOL_SOCKET, libc::SO_LINGER) {
        s.set_linger((l.l_onoff != 0).then_some(l.l_linger.max(0) as u32));
    }
}

/// Options set on the shadow before the decision, read back with the real getsockopt (so the
/// kernel's normalisation, e.g. the doubled buffer sizes, is what the stack gets).
fn carry_over(fd: c_int, udp: &sluice_stack::socket::udp::UdpSocket) {
    let int = |level, name| sockopt::<c_int>(fd, level, name);
    if let Some(v) = int(libc::SOL_SOCKET, libc::SO_REUSEADDR) {
        let _ = udp.set_reuse_addr(v != 0);
    }
    if let Some(v) = int(libc::SOL_SOCKET, libc::SO_REUSEPORT) {
        let _ = udp.set_reuse_port(v != 0);
    }
    // The kernel reports twice what was asked, and the stack doubles what it is given.
    if let Some(v) = int(libc::SOL_SOCKET, libc::SO_RCVBUF) {
        udp.set_recv_buffer(v.max(0) as usize / 2);
    }
    if let Some(v) = int(libc::SOL_SOCKET, libc::SO_SNDBUF) {
        udp.set_send_buffer(v.max(0) as usize / 2);
    }
    if let Some(tv) = sockopt::<libc::timeval>(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO) {
        udp.set_recv_timeout(duration(tv));
    }
    if let Some(tv) = sockopt::<libc::timeval>(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO) {
        udp.set_send_timeout(duration(tv));
    }
    if let Some(v) = int(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) {
        udp.set_multicast_ttl(v.clamp(0, 255) as u8);
    }
    if let Some(v) = int(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) {
        udp.set_multicast_loop(v != 0);
    }
}

/// A socket timeout as the stack takes it: zero means none.
pub fn duration(tv: libc::timeval) -> Option<Duration> {
    let d = Duration::from_secs(tv.tv_sec.max(0) as u64)
        + Duration::from_micros(tv.tv_usec.max(0) as u64);
    (!d.is_zero()).then_some(d)
}

/// A fixed-size option read from the kernel shadow.
pub fn sockopt<T: Copy>(fd: c_int, level: c_int, name: c_int) -> Option<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as socklen_t;
    // SAFETY: a buffer of `len` bytes; the kernel writes at most that many.
    let r = unsafe { real::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    // SAFETY: zero-initialised plain data, partly or wholly overwritten by the kernel.
    (r == 0).then(|| unsafe { value.assume_init() })
}
