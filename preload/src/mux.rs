//! Readiness over kernel fds and offloaded sockets together: poll/ppoll/select/pselect and
//! epoll (minimal; the full story is issue 5).
//!
//! Offloaded sockets have no kernel readiness of their own (their shadows are idle), so their
//! readiness comes from `UdpSocket::readiness()`. One real wait covers both kinds: the kernel
//! part of the set plus the stack's wakeup eventfd, which the engine writes when a socket's
//! queue becomes non-empty. A blocking call first spins on the stack for the configured budget,
//! then sleeps in that real wait, in slices (a wakeup drained by another thread's wait is then
//! only late, never lost), and loops until something is ready or the timeout passes.
//!
//! A socket bound to INADDR_ANY also receives through its shadow: the shadow stays in the
//! kernel set for POLLIN (poll, select) or gets a private registration (epoll).
//!
//! epoll keeps offloaded fds in a user-space list per epoll fd (events, data, EPOLLET as
//! "report again once the application has received or sent since", EPOLLONESHOT); the epoll fd
//! gets the wakeup eventfd registered once with a private data value that is filtered out of
//! the results. An fd added to an epoll set while it was still undecided is moved from the
//! kernel's set to the user-space list when it becomes offloaded (`migrate`); only epoll sets
//! it was added to through this process's hooks are known.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::signals::{self, Seen};
use libc::{epoll_event, pollfd, sigset_t, timespec};
use sluice_stack::engine::Stack;

use crate::dgram::{self, Res};
use crate::entry::{Offloaded, SocketEntry};
use crate::init::{sluice, TABLE};
use crate::offload::running;
use crate::real;

/// Longest single sleep of a mixed wait.
const SLEEP_SLICE: Duration = Duration::from_millis(20);
/// epoll data of the wakeup eventfd's registration (filtered out of results).
const WAKEUP_DATA: u64 = 0x5c1c_e000_0000_0001;
/// epoll data of a set's own readiness eventfd (filtered out of results).
const READY_DATA: u64 = 0x5c1c_e000_0000_0002;
/// epoll data tag of a shadow's private registration (low 32 bits: the fd).
const SHADOW_TAG: u64 = 0x5c1c_e001_0000_0000;
const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// When a wait must end.
#[derive(Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
    }
    fn left(&self) -> Option<Duration> {
        self.0
            .map(|d| d.checked_duration_since(Instant::now()).unwrap_or_default())
    }
    fn passed(&self) -> bool {
        self.left().is_some_and(|l| l.is_zero())
    }
    /// The next real sleep, in milliseconds.
    fn slice_ms(&self) -> c_int {
        let slice = self.left().map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE));
        slice.as_millis().max(1) as c_int
    }
}

/// Whether any socket of this process is offloaded (else readiness calls are the kernel's).
#[inline]
pub fn any_offloaded() -> bool {
    running().is_some()
}

fn spin_budget() -> Duration {
    sluice().map_or(Duration::ZERO, |sl| sl.config.spin_budget())
}

/// Spins on the stack until `ready()` or the budget (bounded by the deadline) is spent.
fn spin(stack: &Stack, deadline: Deadline, mut ready: impl FnMut() -> bool) -> bool {
    let budget = spin_budget();
    let start = Instant::now();
    let mut turns = SpinTurns::new(start);
    while start.elapsed() < budget && !deadline.passed() {
        stack.poll();
        if ready() {
            stack.note_spin(start.elapsed());
            return true;
        }
        turns.take();
    }
    stack.note_spin(start.elapsed());
    false
}

/// How long a spin runs before it lets the CPU's other runnable threads have a turn.
const SPIN_TURN: Duration = Duration::from_micros(10);

/// Turns between spinning waits: every `SPIN_TURN` of spinning, sched_yield lets in the other
/// threads runnable on this CPU (another polling process, a stack's helper that has frames to
/// hand over). Without it, a process whose replies come back within its spin keeps the CPU and
/// a process sharing the core gets one round trip per scheduler slice. With nobody else
/// runnable, sched_yield returns at once.
pub struct SpinTurns(Instant);

impl SpinTurns {
    pub fn new(now: Instant) -> SpinTurns {
        SpinTurns(now)
    }

    pub fn take(&mut self) {
        std::hint::spin_loop();
        if self.0.elapsed() >= SPIN_TURN {
            // SAFETY: no arguments; only gives up the CPU.
            unsafe { libc::sched_yield() };
            self.0 = Instant::now();
        }
    }
}

/// The served entries among `fds` (index, entry), empty when none is offloaded.
fn served_of(fds: &[pollfd]) -> Vec<(usize, Arc<SocketEntry>)> {
    fds.iter()
        .enumerate()
        .filter(|(_, p)| TABLE.is_tracked(p.fd))
        .filter_map(|(i, p)| {
            TABLE
                .get(p.fd)
                .filter(|e| e.served_by_stack())
                .map(|e| (i, e))
        })
        .collect()
}

fn off(e: &SocketEntry) -> &Offloaded {
    e.offloaded().expect("served")
}

fn receives_via_shadow(o: &Offloaded) -> bool {
    o.shadow_receives.load(Ordering::Acquire) || o.kernel_peer.load(Ordering::Acquire)
}

/// poll over `fds` when some are offloaded; `None` when none is (the caller makes the real
/// call). `mask` is the signal mask of the real sleep (ppoll/pselect), null for none.
pub fn poll(fds: &mut [pollfd], deadline: Deadline, mask: *const sigset_t) -> Option<Res<c_int>> {
    let served = served_of(fds);
    if served.is_empty() {
        return None;
    }
    let stack = running()?;
    // The kernel's share: offloaded fds leave it (fd -1 is ignored) unless their shadow
    // receives too; the wakeup eventfd joins it.
    let mut kset: Vec<pollfd> = fds.to_vec();
    for (i, e) in &served {
        if receives_via_shadow(off(e)) {
            kset[*i].events &= libc::POLLIN;
        } else {
            kset[*i].fd = -1;
        }
    }
    // The ports' fds wake the wait when a frame arrives (the loop then polls the stack).
    for &fd in stack.wait_fds() {
        kset.push(pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    kset.push(pollfd {
        fd: stack.wakeup_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let wanted: Vec<i16> = served
        .iter()
        .map(|(i, _)| fds[*i].events | libc::POLLERR)
        .collect();
    let served_fds: Vec<c_int> = served.iter().map(|(i, _)| fds[*i].fd).collect();
    let stack_ready = || {
        served
            .iter()
            .zip(&wanted)
            .zip(&served_fds)
            .any(|(((_, e), w), fd)| dgram::poll_bits(*fd, off(e), false) & w != 0)
    };
    let mut sleep_now = false;
    let mark = signals::Mark::now();
    loop {
        let timeout_ms = if sleep_now { deadline.slice_ms() } else { 0 };
        let ts = timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: (timeout_ms % 1000) as libc::c_long * 1_000_000,
        };
        // SAFETY: our own pollfd array; `mask` is the caller's.
        let r = unsafe {
            real::ppoll(
                kset.as_mut_ptr(),
                kset.len() as libc::nfds_t,
                &ts,
                if sleep_now { mask } else { std::ptr::null() },
            )
        };
        if r < 0 {
            return Some(Err(crate::guard::errno()));
        }
        if kset.last().is_some_and(|w| w.revents != 0) {
            drain_wakeup(stack);
        }
        // Frames wait on a port: take them now, even if another thread holds the stack.
        let port_fds = &kset[fds.len()..kset.len() - 1];
        if port_fds.iter().any(|p| p.revents & libc::POLLIN != 0) {
            stack.poll_waiting();
        } else {
            stack.poll();
        }
        let mut count = 0;
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = kset[i].revents;
        }
        for (i, e) in &served {
            let p = &mut fds[*i];
            let shadow = kset[*i].revents & libc::POLLIN != 0;
            p.revents =
                dgram::poll_bits(p.fd, off(e), shadow) & (p.events | libc::POLLERR | libc::POLLHUP);
        }
        count += fds.iter().filter(|p| p.revents != 0).count();
        if count > 0 || deadline.passed() {
            return Some(Ok(count as c_int));
        }
        if !sleep_now && spin(stack, deadline, stack_ready) {
            continue;
        }
        // poll is never restarted after a handler, whatever its SA_RESTART.
        if mark.seen() != Seen::Nothing {
            return Some(Err(libc::EINTR));
        }
        sleep_now = true;
    }
}

/// The epoll registrations of offloaded fds, per epoll fd.
struct Registration {
    fd: c_int,
    entry: Weak<SocketEntry>,
    events: u32,
    data: u64,
    /// EPOLLONESHOT fired: silent until EPOLL_CTL_MOD.
    disarmed: bool,
    /// EPOLLET: the socket's io_epoch when last reported.
    /// EPOLLET: the socket's event epoch and the bits last reported (reported again once the
    /// epoch moves or a new bit appears).
    reported_at: Option<(u32, u32)>,
}

struct EpollSet {
    epfd: c_int,
    regs: Vec<Registration>,
    /// An eventfd in the set's kernel interest list, kept readable while an offloaded member
    /// is ready: the set then looks ready to a poll, select or epoll set that watches it
    /// (nesting), level-triggered as in the kernel, even after another wait drained the
    /// stack's wakeup eventfd. Closed with the real close (our hook would take `SETS`).
    ready: c_int,
}

impl Drop for EpollSet {
    fn drop(&mut self) {
        // SAFETY: our own eventfd, closed once.
        unsafe { real::close(self.ready) };
    }
}

impl EpollSet {
    /// A set for `epfd` with the stack's wakeup and its own readiness eventfd registered.
    /// Registering the wakeup also checks that `epfd` is an epoll fd.
    fn new(epfd: c_int, stack: &Stack) -> Res<EpollSet> {
        let r = kernel_ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            stack.wakeup_fd(),
            libc::EPOLLIN as u32,
            WAKEUP_DATA,
        );
        if r != 0 && crate::guard::errno() != libc::EEXIST {
            return Err(crate::guard::errno());
        }
        // The ports' fds end a sleep in this set when a frame arrives (filtered like the
        // wakeup; the wait then polls the stack).
        for &fd in stack.wait_fds() {
            kernel_ctl(
                epfd,
                libc::EPOLL_CTL_ADD,
                fd,
                libc::EPOLLIN as u32,
                WAKEUP_DATA,
            );
        }
        // SAFETY: plain eventfd creation.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(crate::guard::errno());
        }
        let set = EpollSet {
            epfd,
            regs: Vec::new(),
            ready: fd,
        };
        if kernel_ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            fd,
            libc::EPOLLIN as u32,
            READY_DATA,
        ) != 0
        {
            return Err(crate::guard::errno());
        }
        HAS_SETS.store(true, Ordering::Relaxed);
        Ok(set)
    }

    /// Whether an offloaded member is ready for what it was registered for.
    fn member_ready(&self) -> bool {
        self.regs.iter().any(|reg| {
            !reg.disarmed
                && reg.entry.upgrade().is_some_and(|e| {
                    let interest = reg.events | libc::EPOLLERR as u32 | libc::EPOLLHUP as u32;
                    epoll_bits(reg.fd, off(&e), false) & interest != 0
                })
        })
    }

    fn set_ready(&self) {
        let one = 1u64;
        // SAFETY: 8 bytes from `one` into our own non-blocking eventfd; a full counter
        // (EAGAIN) is readable already.
        unsafe { libc::write(self.ready, (&one as *const u64).cast(), 8) };
    }

    fn clear_ready(&self) {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into `count` from our own non-blocking eventfd.
        unsafe { libc::read(self.ready, (&mut count as *mut u64).cast(), 8) };
    }
}

/// Makes the readiness eventfd of `epfd`'s set match its members: cleared when none is ready
/// (so that watchers of the set stop seeing it ready), set when one is.
fn settle_ready(epfd: c_int) {
    let sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(set) = sets.iter().find(|s| s.epfd == epfd) {
        set.clear_ready();
        if set.member_ready() {
            set.set_ready();
        }
    }
}

/// Drains the stack's wakeup eventfd after a wait it ended. The sets whose epoll fds have it
/// registered looked ready through it; those with a member still ready keep looking ready
/// through their own eventfd.
pub fn drain_wakeup(stack: &Stack) {
    stack.drain_wakeup();
    if !has_sets() {
        return;
    }
    let sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    for set in sets.iter().filter(|s| s.member_ready()) {
        set.set_ready();
    }
}

static SETS: Mutex<Vec<EpollSet>> = Mutex::new(Vec::new());
static HAS_SETS: AtomicBool = AtomicBool::new(false);

/// Whether any epoll fd has offloaded registrations (close checks this before `forget_set`).
#[inline]
pub fn has_sets() -> bool {
    HAS_SETS.load(Ordering::Relaxed)
}

/// An epoll fd was closed (or an fd number that might have been one).
pub fn forget_set(fd: c_int) {
    let mut sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    sets.retain(|s| s.epfd != fd);
    if sets.is_empty() {
        HAS_SETS.store(false, Ordering::Relaxed);
    }
}

fn kernel_ctl(epfd: c_int, op: c_int, fd: c_int, events: u32, data: u64) -> c_int {
    let mut ev = epoll_event { events, u64: data };
    // SAFETY: a valid event.
    unsafe { real::epoll_ctl(epfd, op, fd, &mut ev) }
}

/// Moves the kernel epoll registrations of `fd`, made while it was a kernel socket, to the
/// user-space lists now that it is offloaded.
pub fn migrate(fd: c_int, entry: &Arc<SocketEntry>) {
    let regs = entry.take_epoll_regs();
    if regs.is_empty() {
        return;
    }
    let Some(stack) = running() else {
        return;
    };
    let o = off(entry);
    let mut sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    for (epfd, events, data) in regs {
        kernel_ctl(epfd, libc::EPOLL_CTL_DEL, fd, 0, 0);
        let at = match sets.iter().position(|s| s.epfd == epfd) {
            Some(at) => at,
            None => match EpollSet::new(epfd, stack) {
                Ok(set) => {
                    sets.push(set);
                    sets.len() - 1
                }
                Err(_) => continue, // not an epoll fd any more
            },
        };
        if receives_via_shadow(o) {
            kernel_ctl(
                epfd,
                libc::EPOLL_CTL_ADD,
                fd,
                libc::EPOLLIN as u32,
                SHADOW_TAG | fd as u32 as u64,
            );
        }
        sets[at].regs.push(Registration {
            fd,
            entry: Arc::downgrade(entry),
            events,
            data,
            disarmed: false,
            reported_at: None,
        });
    }
}

/// Remembers a kernel epoll registration of a socket that may become offloaded later.
///
/// # Safety
/// `event` is null or a valid epoll_event.
pub unsafe fn note_kernel_ctl(epfd: c_int, op: c_int, fd: c_int, event: *const epoll_event) {
    let Some(entry) = TABLE.get(fd) else {
        return;
    };
    if !entry.may_become_offloaded() {
        return;
    }
    // SAFETY: per the contract.
    let (events, data) = unsafe { event.as_ref() }.map_or((0, 0), |e| (e.events, e.u64));
    entry.note_epoll(epfd, op, events, data);
}

/// epoll_ctl on an offloaded fd. `None`: not offloaded, the kernel's call.
///
/// # Safety
/// `event` is null or a valid epoll_event.
pub unsafe fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut epoll_event,
) -> Option<Res<()>> {
    if !TABLE.is_tracked(fd) {
        return None;
    }
    let entry = TABLE.get(fd).filter(|e| e.served_by_stack())?;
    let stack = running()?;
    let o = off(&entry);
    if epfd == fd {
        return Some(Err(libc::EINVAL));
    }
    let wanted = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        // SAFETY: per the contract.
        match unsafe { event.as_ref() } {
            Some(ev) => Some((ev.events, ev.u64)),
            None => return Some(Err(libc::EFAULT)),
        }
    };
    let mut sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    let at = sets.iter().position(|s| s.epfd == epfd);
    let same =
        |r: &Registration| r.fd == fd && r.entry.upgrade().is_some_and(|e| Arc::ptr_eq(&e, &entry));
    let existing = at.and_then(|s| sets[s].regs.iter().position(same));
    match op {
        libc::EPOLL_CTL_ADD => {
            if existing.is_some() {
                return Some(Err(libc::EEXIST));
            }
            let at = match at {
                Some(at) => at,
                None => match EpollSet::new(epfd, stack) {
                    Ok(set) => {
                        sets.push(set);
                        sets.len() - 1
                    }
                    Err(e) => return Some(Err(e)),
                },
            };
            let (events, data) = wanted.expect("ADD has an event");
            if receives_via_shadow(o) {
                kernel_ctl(
                    epfd,
                    libc::EPOLL_CTL_ADD,
                    fd,
                    libc::EPOLLIN as u32,
                    SHADOW_TAG | fd as u32 as u64,
                );
            }
            sets[at].regs.push(Registration {
                fd,
                entry: Arc::downgrade(&entry),
                events,
                data,
                disarmed: false,
                reported_at: None,
            });
            if sets[at].member_ready() {
                sets[at].set_ready();
            }
            Some(Ok(()))
        }
        libc::EPOLL_CTL_MOD => {
            let (Some(s), Some(r)) = (at, existing) else {
                return Some(Err(libc::ENOENT));
            };
            let (events, data) = wanted.expect("MOD has an event");
            let reg = &mut sets[s].regs[r];
            reg.events = events;
            reg.data = data;
            reg.disarmed = false;
            reg.reported_at = None;
            if sets[s].member_ready() {
                sets[s].set_ready();
            }
            Some(Ok(()))
        }
        libc::EPOLL_CTL_DEL => {
            let (Some(s), Some(r)) = (at, existing) else {
                return Some(Err(libc::ENOENT));
            };
            sets[s].regs.remove(r);
            kernel_ctl(epfd, libc::EPOLL_CTL_DEL, fd, 0, 0);
            Some(Ok(()))
        }
        _ => Some(Err(libc::EINVAL)),
    }
}

fn epoll_bits(fd: c_int, o: &Offloaded, shadow: bool) -> u32 {
    let bits = dgram::poll_bits(fd, o, shadow);
    let mut ev = 0;
    if bits & libc::POLLIN != 0 {
        ev |= (libc::EPOLLIN | libc::EPOLLRDNORM) as u32;
    }
    if bits & libc::POLLOUT != 0 {
        ev |= (libc::EPOLLOUT | libc::EPOLLWRNORM) as u32;
    }
    if bits & libc::POLLERR != 0 {
        ev |= libc::EPOLLERR as u32;
    }
    if bits & libc::POLLHUP != 0 {
        ev |= libc::EPOLLHUP as u32;
    }
    if bits & libc::POLLRDHUP != 0 {
        ev |= libc::EPOLLRDHUP as u32;
    }
    ev
}

/// Ready registrations of `epfd` into `out` (at most `out.len()`); marks ET/ONESHOT ones.
fn collect(epfd: c_int, out: &mut [epoll_event], consume: bool) -> usize {
    let mut sets = SETS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(set) = sets.iter_mut().find(|s| s.epfd == epfd) else {
        return 0;
    };
    // An fd whose last descriptor closed leaves every epoll set, as in the kernel.
    set.regs.retain(|r| r.entry.strong_count() > 0);
    let mut n = 0;
    for reg in set.regs.iter_mut() {
        if n == out.len() {
            break;
        }
        if reg.disarmed {
            continue;
        }
        let Some(entry) = reg.entry.upgrade() else {
            continue;
        };
        let o = off(&entry);
        let shadow = receives_via_shadow(o) && dgram::shadow_readable(reg.fd, o);
        let ready = epoll_bits(reg.fd, o, shadow)
            & (reg.events | libc::EPOLLERR as u32 | libc::EPOLLHUP as u32);
        if ready == 0 {
            continue;
        }
        let epoch = o.epoch();
        if reg.events & libc::EPOLLET as u32 != 0 {
            if let Some((at, bits)) = reg.reported_at {
                if at == epoch && ready & !bits == 0 {
                    continue;
                }
            }
        }
        if consume {
            if reg.events & libc::EPOLLET as u32 != 0 {
                reg.reported_at = Some((epoch, ready));
            }
            if reg.events & libc::EPOLLONESHOT as u32 != 0 {
                reg.disarmed = true;
            }
        }
        out[n] = epoll_event {
            events: ready,
            u64: reg.data,
        };
        n += 1;
    }
    n
}

/// Drops our private entries (wakeup, readiness, shadows) from real results; returns the kept
/// count and whether the wakeup or the set's readiness eventfd fired.
fn filter_private(events: &mut [epoll_event]) -> (usize, bool) {
    let mut kept = 0;
    let mut woke = false;
    for i in 0..events.len() {
        let data = events[i].u64;
        if data == WAKEUP_DATA || data == READY_DATA {
            woke = true;
            continue;
        }
        if data & TAG_MASK == SHADOW_TAG {
            continue;
        }
        events[kept] = events[i];
        kept += 1;
    }
    (kept, woke)
}

fn has_set(epfd: c_int) -> bool {
    has_sets()
        && SETS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.epfd == epfd)
}

/// epoll_wait over an epoll fd that has offloaded registrations; `None` when it has none.
///
/// # Safety
/// `events` has room for `max` entries.
pub unsafe fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    deadline: Deadline,
    mask: *const sigset_t,
) -> Option<Res<c_int>> {
    if !has_set(epfd) || max <= 0 || events.is_null() {
        return None;
    }
    let stack = running()?;
    // SAFETY: per the contract.
    let out = unsafe { std::slice::from_raw_parts_mut(events, max as usize) };
    let mut sleep_now = false;
    let mark = signals::Mark::now();
    let mut first = true;
    loop {
        // First look: wait for a thread inside the stack to finish, so that frames a port
        // already holds (which may be what made a watcher of this set call) are delivered.
        if std::mem::take(&mut first) {
            stack.poll_waiting();
        } else {
            stack.poll();
        }
        let mut n = collect(epfd, out, true);
        if n == 0 {
            settle_ready(epfd);
        }
        if n < out.len() {
            let timeout = if sleep_now && n == 0 {
                deadline.slice_ms()
            } else {
                0
            };
            let rest = &mut out[n..];
            // SAFETY: `rest` has room for its length.
            let r = unsafe {
                real::epoll_pwait(
                    epfd,
                    rest.as_mut_ptr(),
                    rest.len() as c_int,
                    timeout,
                    if timeout > 0 { mask } else { std::ptr::null() },
                )
            };
            if r < 0 {
                if n > 0 {
                    return Some(Ok(n as c_int));
                }
                return Some(Err(crate::guard::errno()));
            }
            let (kept, woke) = filter_private(&mut rest[..r as usize]);
            if woke {
                drain_wakeup(stack);
            }
            n += kept;
            if n == 0 && (timeout > 0 || woke) {
                // Woken by the stack, a port or a shadow: look again at once (a port's
                // frames even if another thread holds the stack).
                if woke {
                    stack.poll_waiting();
                } else {
                    stack.poll();
                }
                n = collect(epfd, out, true);
            }
        }
        if n > 0 || deadline.passed() {
            return Some(Ok(n as c_int));
        }
        if !sleep_now {
            let mut probe = [epoll_event { events: 0, u64: 0 }];
            if spin(stack, deadline, || collect(epfd, &mut probe, false) > 0) {
                continue;
            }
        }
        // epoll_wait is never restarted after a handler, whatever its SA_RESTART.
        if mark.seen() != Seen::Nothing {
            return Some(Err(libc::EINTR));
        }
        sleep_now = true;
    }
}

/// A poll-style timeout in ms (negative: none) as a duration.
pub fn ms(timeout: c_int) -> Option<Duration> {
    (timeout >= 0).then(|| Duration::from_millis(timeout as u64))
}

/// A timespec timeout (null: none) as a duration; Err(EINVAL) if malformed.
///
/// # Safety
/// `ts` is null or valid.
pub unsafe fn ts(ts: *const timespec) -> Res<Option<Duration>> {
    // SAFETY: per the contract.
    let Some(t) = (unsafe { ts.as_ref() }) else {
        return Ok(None);
    };
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}
