//! Which signal handlers ran on a thread while it waited in one of our blocking calls.
//!
//! The kernel ends a blocking call with EINTR when a handler runs during it, or restarts it
//! when the handler was installed with SA_RESTART (except receives on a socket with a
//! SO_RCVTIMEO, and poll/select/epoll, which always fail with EINTR). Our waits spin in user
//! space and sleep in slices; a handler that runs outside one of the sleeping system calls
//! goes unnoticed by them. So the application's handlers are relayed: `sigaction` and
//! `signal` install `relay`, which counts the handlers run on its thread, with and without
//! SA_RESTART, then calls the application's handler with the same arguments. A wait takes a
//! `Mark` when it starts and asks it what ran since.
//!
//! What the application asks back (the old action) is its own handler and flags, never the
//! relay. Fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) are not relayed:
//! they never end a wait, and runtimes that catch them see the kernel's delivery unchanged.

use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::siginfo_t;

/// One more than the highest signal number (SIGRTMAX is 64 on Linux).
const SIGNALS: usize = 65;

/// The application's handler per signal while `relay` stands in for it.
static HANDLERS: [AtomicUsize; SIGNALS] = [const { AtomicUsize::new(0) }; SIGNALS];
/// The application's sa_flags for that handler (SA_SIGINFO and SA_RESTART as it asked).
static FLAGS: [AtomicI32; SIGNALS] = [const { AtomicI32::new(0) }; SIGNALS];

thread_local! {
    /// Relayed handlers run on this thread: all of them, and those without SA_RESTART.
    static RAN: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// What ran on this thread since a `Mark`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    Nothing,
    /// Only handlers installed with SA_RESTART.
    Restartable,
    /// At least one handler without SA_RESTART.
    Interrupting,
}

/// The thread's handler counts when a wait started.
pub struct Mark((u32, u32));

impl Mark {
    pub fn now() -> Mark {
        Mark(RAN.try_with(Cell::get).unwrap_or_default())
    }

    pub fn seen(&self) -> Seen {
        let (all, interrupting) = RAN.try_with(Cell::get).unwrap_or_default();
        if interrupting != self.0 .1 {
            Seen::Interrupting
        } else if all != self.0 .0 {
            Seen::Restartable
        } else {
            Seen::Nothing
        }
    }
}

fn relay_address() -> usize {
    relay as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as usize
}

/// Stands in for the application's handler of `sig`. Async-signal-safe: two atomic loads,
/// a thread-local counter (constant-initialised, no destructor) and the handler's call.
extern "C" fn relay(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let Some(i) = index(sig) else { return };
    let flags = FLAGS[i].load(Ordering::Acquire);
    let restart = flags & libc::SA_RESTART != 0;
    let _ = RAN.try_with(|r| {
        let (all, interrupting) = r.get();
        r.set((
            all.wrapping_add(1),
            interrupting.wrapping_add(!restart as u32),
        ));
    });
    let handler = HANDLERS[i].load(Ordering::Acquire);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return; // replaced meanwhile by a disposition the kernel now applies itself
    }
    // SAFETY: the application installed `handler` for `sig` with these flags: with
    // SA_SIGINFO it takes (sig, info, context), otherwise (sig).
    unsafe {
        if flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                std::mem::transmute::<usize, _>(handler);
            f(sig, info, context);
        } else {
            let f: extern "C" fn(c_int) = std::mem::transmute::<usize, _>(handler);
            f(sig);
        }
    }
}

fn index(sig: c_int) -> Option<usize> {
    usize::try_from(sig).ok().filter(|&i| i > 0 && i < SIGNALS)
}

fn relayed(sig: c_int) -> bool {
    !matches!(
        sig,
        libc::SIGKILL
            | libc::SIGSTOP
            | libc::SIGSEGV
            | libc::SIGBUS
            | libc::SIGFPE
            | libc::SIGILL
            | libc::SIGTRAP
            | libc::SIGSYS
    ) && index(sig).is_some()
}

/// sigaction with the relay in place of the application's handler; `set` makes the real call.
///
/// # Safety
/// `act` and `old` are null or valid, as for sigaction(2).
pub unsafe fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
    set: impl Fn(*const libc::sigaction, *mut libc::sigaction) -> c_int,
) -> c_int {
    if !relayed(sig) {
        return set(act, old);
    }
    let i = sig as usize;
    let before = (
        HANDLERS[i].load(Ordering::Acquire),
        FLAGS[i].load(Ordering::Acquire),
    );
    // SAFETY: per the contract.
    let wanted = unsafe { act.as_ref() };
    let rc = match wanted {
        Some(a) if a.sa_sigaction != libc::SIG_DFL && a.sa_sigaction != libc::SIG_IGN => {
            let mut ours = *a;
            FLAGS[i].store(a.sa_flags, Ordering::Release);
            HANDLERS[i].store(a.sa_sigaction, Ordering::Release);
            ours.sa_sigaction = relay_address();
            ours.sa_flags |= libc::SA_SIGINFO;
            let rc = set(&ours, old);
            if rc != 0 {
                HANDLERS[i].store(before.0, Ordering::Release);
                FLAGS[i].store(before.1, Ordering::Release);
            }
            rc
        }
        _ => set(act, old),
    };
    // SAFETY: per the contract; the real call filled it.
    if let Some(o) = unsafe { old.as_mut() } {
        if rc == 0 && o.sa_sigaction == relay_address() {
            o.sa_sigaction = before.0;
            o.sa_flags = (o.sa_flags & !libc::SA_SIGINFO) | (before.1 & libc::SA_SIGINFO);
        }
    }
    rc
}
