//! Re-entry and panic containment around hook bodies, and errno bookkeeping.
//!
//! A hook body runs with the thread's `INSIDE` flag set, so every libc call our own code makes
//! meanwhile (logging writes to stderr, reading the environment, later the stack and DPDK's EAL
//! opening sockets) reaches the hooks again and passes straight to the kernel. The flag is a
//! `const`-initialised thread local without destructor: reading it never allocates and works
//! before our first call, in signal handlers and during thread exit.
//!
//! A panic in a body never unwinds into C: `guarded` catches it, reports it once per hook on
//! stderr, and completes the call in the kernel. If the body had already made the kernel call,
//! that call's result is returned instead of repeating it (a `close` or `dup` must not run twice).

use std::any::Any;
use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// The errno a body served without the kernel chose (`fail`), 0 for none.
    static FAILED_WITH: Cell<c_int> = const { Cell::new(0) };
}

/// Ends a call that sluice served itself with `-1` and errno `e` (the guard sets errno
/// last, so the bookkeeping after the body cannot disturb it).
pub fn fail(e: c_int) -> c_int {
    let _ = FAILED_WITH.try_with(|f| f.set(e));
    set_errno(e);
    -1
}

fn take_failure() -> c_int {
    FAILED_WITH.try_with(|f| f.replace(0)).unwrap_or(0)
}

/// Whether this thread is running sluice code right now (so a hooked call must pass through).
#[inline]
pub fn inside() -> bool {
    // A thread local with const init and no destructor is always accessible; treat the
    // impossible failure as "inside", the safe answer.
    INSIDE.try_with(Cell::get).unwrap_or(true)
}

fn set_inside(value: bool) {
    let _ = INSIDE.try_with(|c| c.set(value));
}

#[inline]
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

/// One hook, for reporting its faults once.
pub struct Site {
    name: &'static str,
    faulted: AtomicBool,
}

impl Site {
    pub const fn new(name: &'static str) -> Self {
        Site {
            name,
            faulted: AtomicBool::new(false),
        }
    }

    fn report(&self, payload: &(dyn Any + Send)) {
        if self.faulted.swap(true, Ordering::Relaxed) {
            return;
        }
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        crate::init::stderr_line(&format!(
            "sluice: internal fault in {}(): {}; this and further faulting {} calls go to the kernel",
            self.name, what, self.name
        ));
    }
}

/// The kernel side of one hooked call, as the body sees it.
pub struct Kernel<'a, R> {
    call: &'a dyn Fn() -> R,
    errno_at_entry: c_int,
    done: Cell<Option<(R, c_int)>>,
}

impl<R: Copy> Kernel<'_, R> {
    /// Makes the real call, with the errno the application had when it called us (so a
    /// successful call leaves errno exactly as the kernel path would).
    pub fn call(&self) -> R {
        set_errno(self.errno_at_entry);
        let result = (self.call)();
        self.done.set(Some((result, errno())));
        result
    }
}

/// Runs `body` for a hooked call: straight to `kernel` when re-entered, inside `catch_unwind`
/// otherwise. On return, errno is the one the body gave with `fail`, else the one left by the
/// body's last `Kernel::call`, else the caller's (bookkeeping cannot disturb it).
pub fn guarded<R: Copy>(
    site: &'static Site,
    kernel: impl Fn() -> R,
    body: impl FnOnce(&Kernel<'_, R>) -> R,
) -> R {
    if inside() {
        return kernel();
    }
    let errno_at_entry = errno();
    let k = Kernel {
        call: &kernel,
        errno_at_entry,
        done: Cell::new(None),
    };
    set_inside(true);
    take_failure();
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&k)));
    let failure = take_failure();
    let outcome = match outcome {
        Ok(result) => Ok(result),
        Err(payload) => {
            // Reporting writes to stderr: keep the flag so that write passes through.
            let _ = catch_unwind(AssertUnwindSafe(|| site.report(&*payload)));
            // Dropping the payload runs arbitrary destructors: contain those too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(())
        }
    };
    set_inside(false);
    match (outcome, k.done.get()) {
        // Served by sluice: the errno it failed with, or the caller's on success.
        (Ok(result), _) if failure != 0 => {
            set_errno(failure);
            result
        }
        (Ok(result), Some((_, e))) => {
            set_errno(e);
            result
        }
        (Ok(result), None) => {
            set_errno(errno_at_entry);
            result
        }
        (Err(()), Some((result, e))) => {
            set_errno(e);
            result
        }
        (Err(()), None) => {
            set_errno(errno_at_entry);
            kernel()
        }
    }
}

/// Runs bookkeeping that must happen even in a re-entered call (it takes no lock and calls no
/// hooked function), contained: a fault is reported once and costs only the bookkeeping.
/// errno is left as it was.
pub fn contain(site: &'static Site, f: impl FnOnce()) {
    let saved = errno();
    as_sluice(|| {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            let _ = catch_unwind(AssertUnwindSafe(|| site.report(&*payload)));
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
    });
    set_errno(saved);
}

/// Marks the calling thread as sluice's own for good: the stack's helper threads start with
/// this, so every libc call they make passes straight to the kernel.
pub fn mark_thread_as_sluice() {
    set_inside(true);
}

/// Runs our own code (not a hook body) with the re-entry flag set, e.g. initialisation.
pub fn as_sluice<R>(f: impl FnOnce() -> R) -> R {
    let was = inside();
    set_inside(true);
    let r = f();
    set_inside(was);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_panic_before_the_kernel_call_falls_back_to_it_once() {
        static SITE: Site = Site::new("test_before");
        let calls = AtomicUsize::new(0);
        let kernel = || {
            calls.fetch_add(1, Ordering::SeqCst);
            set_errno(libc::EBADF);
            -1
        };
        let r: c_int = guarded(&SITE, kernel, |_k| panic!("boom"));
        assert_eq!(r, -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!inside(), "the flag is cleared after a fault");
    }

    #[test]
    fn a_panic_after_the_kernel_call_returns_its_result_without_repeating_it() {
        static SITE: Site = Site::new("test_after");
        let calls = AtomicUsize::new(0);
        let kernel = || {
            calls.fetch_add(1, Ordering::SeqCst);
            set_errno(libc::EAGAIN);
            -1isize
        };
        let r = guarded(&SITE, kernel, |k| {
            k.call();
            set_errno(0);
            panic!("bookkeeping failed")
        });
        assert_eq!((r, errno()), (-1, libc::EAGAIN));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn errno_is_the_kernel_call_s_even_if_the_body_touches_it_afterwards() {
        static SITE: Site = Site::new("test_errno");
        set_errno(1234);
        let r = guarded(
            &SITE,
            || 7,
            |k| {
                assert_eq!(errno(), 1234);
                set_errno(99);
                let r = k.call();
                set_errno(5);
                r
            },
        );
        assert_eq!(r, 7);
        assert_eq!(errno(), 1234, "a successful call keeps the caller's errno");
    }

    #[test]
    fn a_call_served_without_the_kernel_sets_errno_only_when_it_fails() {
        static SITE: Site = Site::new("test_served");
        set_errno(1234);
        let r: c_int = guarded(
            &SITE,
            || panic!("the kernel is not called"),
            |_k| {
                set_errno(libc::EAGAIN); // an internal call that failed on the way
                0
            },
        );
        assert_eq!((r, errno()), (0, 1234), "success leaves the caller's errno");
        let r: c_int = guarded(
            &SITE,
            || panic!("the kernel is not called"),
            |_k| {
                let r = fail(libc::ECONNREFUSED);
                set_errno(0); // bookkeeping after the failure
                r
            },
        );
        assert_eq!((r, errno()), (-1, libc::ECONNREFUSED));
        let r: c_int = guarded(&SITE, || 0, |k| k.call());
        assert_eq!(
            (r, errno()),
            (0, libc::ECONNREFUSED),
            "a stale failure does not leak"
        );
    }

    #[test]
    fn re_entered_calls_pass_straight_through() {
        static SITE: Site = Site::new("test_reentry");
        let r = guarded(
            &SITE,
            || 1,
            |_k| {
                assert!(inside());
                guarded(&SITE, || 2, |_k| panic!("an inner body must not run"))
            },
        );
        assert_eq!(r, 2);
        assert!(!inside());
        assert!(as_sluice(inside));
    }

    #[test]
    fn contained_bookkeeping_keeps_errno_and_swallows_faults() {
        static SITE: Site = Site::new("test_contain");
        set_errno(libc::EINTR);
        contain(&SITE, || {
            set_errno(0);
            panic!("table update failed")
        });
        assert_eq!(errno(), libc::EINTR);
        assert!(!inside());
    }
}
