//! Readiness hooks: poll, select, epoll. Sets without offloaded fds go straight to the
//! kernel; the others are served by `crate::mux`.

#![allow(clippy::missing_safety_doc)]

use std::os::raw::c_int;
use std::time::{Duration, Instant};

use libc::{epoll_event, fd_set, nfds_t, pollfd, sigset_t, size_t, timespec, timeval};

use super::fail;
use crate::guard::{guarded, Site};
use crate::mux::{self, Deadline};
use crate::real;

fn count_or_fail(r: crate::dgram::Res<c_int>) -> c_int {
    match r {
        Ok(n) => n,
        Err(e) => fail(e),
    }
}

/// poll/ppoll with offloaded fds, or `None` for the kernel.
///
/// # Safety
/// `fds` holds `nfds` pollfds.
unsafe fn mixed_poll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: Result<Option<Duration>, c_int>,
    mask: *const sigset_t,
) -> Option<c_int> {
    if !mux::any_offloaded() || fds.is_null() || nfds == 0 || nfds > 1 << 20 {
        return None;
    }
    // SAFETY: per the contract.
    let set = unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) };
    let timeout = match timeout {
        Ok(t) => t,
        Err(_) => return None,
    };
    mux::poll(set, Deadline::after(timeout), mask).map(count_or_fail)
}

#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged (same for every hook below).
    let kernel = || unsafe { real::poll(fds, nfds, timeout) };
    if !mux::any_offloaded() {
        return kernel();
    }
    static SITE: Site = Site::new("poll");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's pollfds.
        unsafe { mixed_poll(fds, nfds, Ok(mux::ms(timeout)), std::ptr::null()) }
            .unwrap_or_else(|| k.call())
    })
}

#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if fdslen / std::mem::size_of::<pollfd>() < nfds as size_t {
        // SAFETY: glibc's own check fails the same way.
        unsafe { libc::abort() }
    }
    // SAFETY: checked like glibc does.
    unsafe { poll(fds, nfds, timeout) }
}

#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let kernel = || unsafe { real::ppoll(fds, nfds, timeout, mask) };
    if !mux::any_offloaded() {
        return kernel();
    }
    static SITE: Site = Site::new("ppoll");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's arguments.
        unsafe { mixed_poll(fds, nfds, mux::ts(timeout), mask) }.unwrap_or_else(|| k.call())
    })
}

#[no_mangle]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
    fdslen: size_t,
) -> c_int {
    if fdslen / std::mem::size_of::<pollfd>() < nfds as size_t {
        // SAFETY: glibc's own check fails the same way.
        unsafe { libc::abort() }
    }
    // SAFETY: checked like glibc does.
    unsafe { ppoll(fds, nfds, timeout, mask) }
}

/// select/pselect with offloaded fds (through poll), or `None` for the kernel.
///
/// # Safety
/// The sets are null or valid fd_sets covering `nfds`.
unsafe fn mixed_select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: Option<Duration>,
    mask: *const sigset_t,
) -> Option<c_int> {
    if !mux::any_offloaded() || !(1..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return None;
    }
    // SAFETY: null or valid sets (same below).
    let has = |set: *mut fd_set, fd| !set.is_null() && unsafe { libc::FD_ISSET(fd, set) };
    let mut fds: Vec<pollfd> = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if has(r, fd) {
            events |= libc::POLLIN;
        }
        if has(w, fd) {
            events |= libc::POLLOUT;
        }
        if has(e, fd) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            fds.push(pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }
    let n = match mux::poll(&mut fds, Deadline::after(timeout), mask)? {
        Ok(n) => n,
        Err(err) => return Some(fail(err)),
    };
    let _ = n;
    if fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        return Some(fail(libc::EBADF));
    }
    for set in [r, w, e] {
        if !set.is_null() {
            // SAFETY: a valid set.
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    for p in &fds {
        let mark = |set: *mut fd_set, bits: i16| {
            if p.events & bits != 0 && p.revents & (bits | libc::POLLHUP | libc::POLLERR) != 0 {
                // SAFETY: a valid set and an fd below nfds.
                unsafe { libc::FD_SET(p.fd, set) };
                1
            } else {
                0
            }
        };
        if p.events & libc::POLLIN != 0 {
            count += mark(r, libc::POLLIN);
        }
        if p.events & libc::POLLOUT != 0 && p.revents & (libc::POLLOUT | libc::POLLERR) != 0 {
            // SAFETY: as above.
            unsafe { libc::FD_SET(p.fd, w) };
            count += 1;
        }
        if p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0 {
            // SAFETY: as above.
            unsafe { libc::FD_SET(p.fd, e) };
            count += 1;
        }
    }
    Some(count)
}

#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    let kernel = || unsafe { real::select(nfds, r, w, e, timeout) };
    if !mux::any_offloaded() {
        return kernel();
    }
    static SITE: Site = Site::new("select");
    guarded(&SITE, kernel, |k| {
        // SAFETY: null or the caller's timeval.
        let t = match unsafe { timeout.as_ref() } {
            None => None,
            Some(tv) if tv.tv_sec < 0 || !(0..1_000_000).contains(&tv.tv_usec) => {
                return k.call();
            }
            Some(tv) => Some(
                Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64),
            ),
        };
        let start = Instant::now();
        // SAFETY: the caller's sets.
        let Some(n) = (unsafe { mixed_select(nfds, r, w, e, t, std::ptr::null()) }) else {
            return k.call();
        };
        // Linux's select leaves the time not slept in the timeval.
        if let (Some(t), Some(tv)) = (t, unsafe { timeout.as_mut() }) {
            let left = t.saturating_sub(start.elapsed());
            tv.tv_sec = left.as_secs() as libc::time_t;
            tv.tv_usec = left.subsec_micros() as libc::suseconds_t;
        }
        n
    })
}

#[no_mangle]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let kernel = || unsafe { real::pselect(nfds, r, w, e, timeout, mask) };
    if !mux::any_offloaded() {
        return kernel();
    }
    static SITE: Site = Site::new("pselect");
    guarded(&SITE, kernel, |k| {
        // SAFETY: null or the caller's timespec.
        let Ok(t) = (unsafe { mux::ts(timeout) }) else {
            return k.call();
        };
        // SAFETY: the caller's sets.
        unsafe { mixed_select(nfds, r, w, e, t, mask) }.unwrap_or_else(|| k.call())
    })
}

#[no_mangle]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    unsafe { real::epoll_create(size) }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    unsafe { real::epoll_create1(flags) }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut epoll_event,
) -> c_int {
    let kernel = || unsafe { real::epoll_ctl(epfd, op, fd, event) };
    if !crate::init::TABLE.is_tracked(fd) {
        return kernel();
    }
    static SITE: Site = Site::new("epoll_ctl");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's event.
        match unsafe { mux::epoll_ctl(epfd, op, fd, event) } {
            Some(Ok(())) => 0,
            Some(Err(e)) => fail(e),
            None => {
                let r = k.call();
                if r == 0 {
                    // SAFETY: the caller's event, just read by the kernel.
                    unsafe { mux::note_kernel_ctl(epfd, op, fd, event) };
                }
                r
            }
        }
    })
}

/// epoll_wait and its variants with offloaded registrations, or `None` for the kernel.
///
/// # Safety
/// `events` has room for `max` entries.
unsafe fn mixed_epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: Option<Duration>,
    mask: *const sigset_t,
) -> Option<c_int> {
    if !mux::has_sets() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { mux::epoll_wait(epfd, events, max, Deadline::after(timeout), mask) }.map(count_or_fail)
}

#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    let kernel = || unsafe { real::epoll_wait(epfd, events, max, timeout) };
    if !mux::has_sets() {
        return kernel();
    }
    static SITE: Site = Site::new("epoll_wait");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's arguments.
        unsafe { mixed_epoll_wait(epfd, events, max, mux::ms(timeout), std::ptr::null()) }
            .unwrap_or_else(|| k.call())
    })
}

#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    let kernel = || unsafe { real::epoll_pwait(epfd, events, max, timeout, mask) };
    if !mux::has_sets() {
        return kernel();
    }
    static SITE: Site = Site::new("epoll_pwait");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's arguments.
        unsafe { mixed_epoll_wait(epfd, events, max, mux::ms(timeout), mask) }
            .unwrap_or_else(|| k.call())
    })
}

#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let kernel = || unsafe { real::epoll_pwait2(epfd, events, max, timeout, mask) };
    if !mux::has_sets() {
        return kernel();
    }
    static SITE: Site = Site::new("epoll_pwait2");
    guarded(&SITE, kernel, |k| {
        // SAFETY: the caller's timespec.
        let Ok(t) = (unsafe { mux::ts(timeout) }) else {
            return k.call();
        };
        // SAFETY: the caller's arguments.
        unsafe { mixed_epoll_wait(epfd, events, max, t, mask) }.unwrap_or_else(|| k.call())
    })
}
