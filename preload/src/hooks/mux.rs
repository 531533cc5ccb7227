//! Readiness: poll, select, epoll.
//!
//! All of these go to the kernel for now: the shadow sockets carry the data, so the kernel's
//! readiness is the truth. When the stack serves offloaded fds (later issue) their readiness is
//! tracked in user space and a per-stack eventfd joins the kernel's sets.

#![allow(clippy::missing_safety_doc)]

use std::os::raw::c_int;

use libc::{epoll_event, fd_set, nfds_t, pollfd, sigset_t, size_t, timespec, timeval};

use crate::real;

#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged (same for every hook below).
    unsafe { real::poll(fds, nfds, timeout) }
}

#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    unsafe { real::__poll_chk(fds, nfds, timeout, fdslen) }
}

#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    unsafe { real::ppoll(fds, nfds, timeout, mask) }
}

#[no_mangle]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
    fdslen: size_t,
) -> c_int {
    unsafe { real::__ppoll_chk(fds, nfds, timeout, mask, fdslen) }
}

#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    unsafe { real::select(nfds, r, w, e, timeout) }
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
    unsafe { real::pselect(nfds, r, w, e, timeout, mask) }
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
    unsafe { real::epoll_ctl(epfd, op, fd, event) }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    unsafe { real::epoll_wait(epfd, events, max, timeout) }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    unsafe { real::epoll_pwait(epfd, events, max, timeout, mask) }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    unsafe { real::epoll_pwait2(epfd, events, max, timeout, mask) }
}
