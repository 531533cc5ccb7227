//! fd bookkeeping: close, close_range, closefrom, dup, dup2, dup3, fcntl (F_DUPFD*), ioctl.
//!
//! The table follows the kernel's fd numbers: dup'd fds share one entry, closing one keeps the
//! other, dup2/dup3 over a tracked fd drops its entry. These updates are lock-free and also run
//! when the call is re-entered (a close from a signal handler must not leave a stale entry);
//! they are contained with `guard::contain`, so a fault costs the bookkeeping, not the call.

#![allow(clippy::missing_safety_doc)]

use std::os::raw::{c_int, c_uint, c_ulong};

use super::served;
use crate::guard::{contain, guarded, Site};
use crate::init::TABLE;
use crate::real;

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if TABLE.is_tracked(fd) {
        static SITE: Site = Site::new("close");
        // Unmapped before the kernel close: once closed, the number can be handed to another
        // thread's socket() at once, and its new entry must survive.
        contain(&SITE, || drop(TABLE.remove(fd)));
    }
    if crate::mux::has_sets() {
        static SET_SITE: Site = Site::new("close");
        contain(&SET_SITE, || crate::mux::forget_set(fd));
    }
    // SAFETY: the caller's argument, passed on unchanged.
    unsafe { real::close(fd) }
}

/// Bounds of close_range as fds (the kernel takes unsigned ints).
fn as_fd(n: c_uint) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // With CLOSE_RANGE_CLOEXEC nothing is closed now.
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 && first <= last {
        static SITE: Site = Site::new("close_range");
        contain(&SITE, || TABLE.remove_range(as_fd(first), as_fd(last)));
    }
    // SAFETY: the caller's arguments, passed on unchanged.
    unsafe { real::close_range(first, last, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn closefrom(low: c_int) {
    static SITE: Site = Site::new("closefrom");
    contain(&SITE, || TABLE.remove_range(low, c_int::MAX));
    // SAFETY: the caller's argument, passed on unchanged.
    unsafe { real::closefrom(low) }
}

/// After a dup-like call returned `new` for `old`.
fn follow_dup(site: &'static Site, old: c_int, new: c_int) {
    if new >= 0 && new != old && (TABLE.is_tracked(old) || TABLE.is_tracked(new)) {
        contain(site, || TABLE.duplicate(old, new));
    }
}

#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: the caller's argument, passed on unchanged.
    let new = unsafe { real::dup(fd) };
    static SITE: Site = Site::new("dup");
    follow_dup(&SITE, fd, new);
    new
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::dup2(old, new) };
    static SITE: Site = Site::new("dup2");
    follow_dup(&SITE, old, r);
    r
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::dup3(old, new, flags) };
    static SITE: Site = Site::new("dup3");
    follow_dup(&SITE, old, r);
    r
}

fn is_dup(cmd: c_int) -> bool {
    cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC
}

// fcntl and ioctl are variadic in C. Their optional argument is an int or a pointer, which the
// x86_64 calling convention passes in the same register as a fixed `unsigned long` parameter:
// declaring it fixed is ABI-correct for every command that takes an argument, and a junk value
// for those that take none is ignored by the real function just as it would be.

/// After a successful F_SETFL or FIONBIO on `fd`: the stack socket follows O_NONBLOCK (the
/// shadow, which got the call, keeps the flags that F_GETFL reads back).
fn follow_nonblocking(site: &'static Site, fd: c_int, nonblocking: bool) {
    if !TABLE.is_tracked(fd) {
        return;
    }
    contain(site, || {
        if let Some(entry) = served(fd) {
            entry
                .offloaded()
                .expect("served")
                .set_nonblocking(nonblocking);
        }
    });
}

#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::fcntl(fd, cmd, arg) };
    static SITE: Site = Site::new("fcntl");
    if is_dup(cmd) {
        follow_dup(&SITE, fd, r);
    } else if cmd == libc::F_SETFL && r == 0 {
        follow_nonblocking(&SITE, fd, arg as c_int & libc::O_NONBLOCK != 0);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::fcntl64(fd, cmd, arg) };
    static SITE: Site = Site::new("fcntl64");
    if is_dup(cmd) {
        follow_dup(&SITE, fd, r);
    } else if cmd == libc::F_SETFL && r == 0 {
        follow_nonblocking(&SITE, fd, arg as c_int & libc::O_NONBLOCK != 0);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::ioctl(fd, request, arg) };
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("ioctl");
    guarded(&SITE, kernel, |k| {
        let Some(entry) = served(fd) else {
            return k.call();
        };
        let o = entry.offloaded().expect("served");
        match request {
            libc::FIONREAD => {
                if arg == 0 {
                    return super::fail(libc::EFAULT);
                }
                let n = crate::dgram::next_datagram_len(fd, o);
                // SAFETY: FIONREAD's argument is an int pointer.
                unsafe { (arg as *mut c_int).write_unaligned(n) };
                0
            }
            libc::FIONBIO => {
                let r = k.call();
                if r == 0 {
                    // SAFETY: FIONBIO's argument is an int pointer (the kernel just read it).
                    let on = unsafe { (arg as *const c_int).read_unaligned() } != 0;
                    o.set_nonblocking(on);
                }
                r
            }
            _ => k.call(),
        }
    })
}
