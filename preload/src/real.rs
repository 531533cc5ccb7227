//! The real (next) definitions of the hooked functions, resolved lazily.
//!
//! Each function keeps its address in an atomic, filled by `dlsym(RTLD_NEXT)` on first use. No
//! lock is taken: two threads racing on the first call both resolve and store the same address.
//! dlsym can itself call back into hooked functions (an application malloc reading /proc, say);
//! while a thread is inside dlsym, its calls take the direct system call instead, as they also
//! do if the symbol cannot be found.

#![allow(clippy::missing_safety_doc)]

use std::cell::Cell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    epoll_event, fd_set, iovec, mmsghdr, msghdr, nfds_t, pid_t, pollfd, posix_spawn_file_actions_t,
    posix_spawnattr_t, sigset_t, size_t, sockaddr, socklen_t, ssize_t, timespec, timeval,
};

use crate::guard::{errno, set_errno};

const UNAVAILABLE: usize = usize::MAX;

thread_local! {
    static RESOLVING: Cell<bool> = const { Cell::new(false) };
}

/// The next definition of `name`, or 0 when the caller must use its fallback.
#[cold]
fn resolve(name: &CStr, slot: &AtomicUsize) -> usize {
    if RESOLVING.try_with(Cell::get).unwrap_or(true) {
        return 0;
    }
    let _ = RESOLVING.try_with(|r| r.set(true));
    let saved = errno();
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT searches the objects after ours.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    set_errno(saved);
    let _ = RESOLVING.try_with(|r| r.set(false));
    let address = if address == 0 { UNAVAILABLE } else { address };
    slot.store(address, Ordering::Release);
    address
}

#[inline]
fn lookup(name: &CStr, slot: &AtomicUsize) -> Option<usize> {
    let mut address = slot.load(Ordering::Acquire);
    if address == 0 {
        address = resolve(name, slot);
    }
    (address != 0 && address != UNAVAILABLE).then_some(address)
}

macro_rules! next {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $fallback:expr; )*) => {$(
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> $ret {
            static SLOT: AtomicUsize = AtomicUsize::new(0);
            const NAME: &CStr = c_name(concat!(stringify!($name), "\0"));
            match lookup(NAME, &SLOT) {
                Some(address) => {
                    // SAFETY: the next definition of a libc function with this C prototype.
                    let f: unsafe extern "C" fn($($ty),*) -> $ret =
                        unsafe { std::mem::transmute::<usize, _>(address) };
                    unsafe { f($($arg),*) }
                }
                #[allow(unused_unsafe)]
                None => unsafe { $fallback },
            }
        }
    )*};
}

/// Variadic libc functions, called with their variadic prototype.
macro_rules! next_variadic {
    ($( fn $name:ident($($arg:ident: $ty:ty),*; $va:ident: $vty:ty) -> $ret:ty = $fallback:expr; )*) => {$(
        #[inline]
        pub unsafe fn $name($($arg: $ty,)* $va: $vty) -> $ret {
            static SLOT: AtomicUsize = AtomicUsize::new(0);
            const NAME: &CStr = c_name(concat!(stringify!($name), "\0"));
            match lookup(NAME, &SLOT) {
                Some(address) => {
                    // SAFETY: the next definition of a variadic libc function.
                    let f: unsafe extern "C" fn($($ty,)* ...) -> $ret =
                        unsafe { std::mem::transmute::<usize, _>(address) };
                    unsafe { f($($arg,)* $va) }
                }
                None => unsafe { $fallback },
            }
        }
    )*};
}

const fn c_name(with_nul: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("symbol names are NUL-terminated"),
    }
}

/// `syscall(2)` with every argument widened to a register.
macro_rules! sys {
    ($nr:expr $(, $a:expr)*) => {
        libc::syscall($nr $(, $a as c_long)*)
    };
}

/// The kernel's sigset size, as ppoll/pselect6/epoll_pwait take it.
const KERNEL_SIGSET: c_long = 8;

fn no_such_function<T: From<i8>>() -> T {
    set_errno(libc::ENOSYS);
    T::from(-1)
}

next! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int =
        sys!(libc::SYS_socket, domain, ty, protocol) as c_int;
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int =
        sys!(libc::SYS_bind, fd, addr, len) as c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int = sys!(libc::SYS_listen, fd, backlog) as c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys!(libc::SYS_accept, fd, addr, len) as c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int =
        sys!(libc::SYS_accept4, fd, addr, len, flags) as c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int =
        sys!(libc::SYS_connect, fd, addr, len) as c_int;
    fn shutdown(fd: c_int, how: c_int) -> c_int = sys!(libc::SYS_shutdown, fd, how) as c_int;
    fn close(fd: c_int) -> c_int = sys!(libc::SYS_close, fd) as c_int;
    fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t =
        sys!(libc::SYS_read, fd, buf, count) as ssize_t;
    fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t =
        sys!(libc::SYS_readv, fd, iov, count) as ssize_t;
    fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t =
        sys!(libc::SYS_write, fd, buf, count) as ssize_t;
    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t =
        sys!(libc::SYS_writev, fd, iov, count) as ssize_t;
    fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut libc::off_t, count: size_t) -> ssize_t =
        sys!(libc::SYS_sendfile, out_fd, in_fd, offset, count) as ssize_t;
    fn sendfile64(out_fd: c_int, in_fd: c_int, offset: *mut libc::off64_t, count: size_t) -> ssize_t =
        sys!(libc::SYS_sendfile, out_fd, in_fd, offset, count) as ssize_t;
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t =
        sys!(libc::SYS_sendto, fd, buf, len, flags, 0, 0) as ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int,
              addr: *const sockaddr, addrlen: socklen_t) -> ssize_t =
        sys!(libc::SYS_sendto, fd, buf, len, flags, addr, addrlen) as ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t =
        sys!(libc::SYS_sendmsg, fd, msg, flags) as ssize_t;
    fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, count: c_uint, flags: c_int) -> c_int =
        sys!(libc::SYS_sendmmsg, fd, msgs, count, flags) as c_int;
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t =
        sys!(libc::SYS_recvfrom, fd, buf, len, flags, 0, 0) as ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int,
                addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t =
        sys!(libc::SYS_recvfrom, fd, buf, len, flags, addr, addrlen) as ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t =
        sys!(libc::SYS_recvmsg, fd, msg, flags) as ssize_t;
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, count: c_uint, flags: c_int,
                timeout: *mut timespec) -> c_int =
        sys!(libc::SYS_recvmmsg, fd, msgs, count, flags, timeout) as c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void,
                  len: *mut socklen_t) -> c_int =
        sys!(libc::SYS_getsockopt, fd, level, name, value, len) as c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void,
                  len: socklen_t) -> c_int =
        sys!(libc::SYS_setsockopt, fd, level, name, value, len) as c_int;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys!(libc::SYS_getsockname, fd, addr, len) as c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys!(libc::SYS_getpeername, fd, addr, len) as c_int;
    fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int =
        sys!(libc::SYS_poll, fds, nfds, timeout) as c_int;
    fn ppoll(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec,
             mask: *const sigset_t) -> c_int =
        sys!(libc::SYS_ppoll, fds, nfds, timeout, mask, KERNEL_SIGSET) as c_int;
    fn select(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set,
              timeout: *mut timeval) -> c_int =
        sys!(libc::SYS_select, nfds, r, w, e, timeout) as c_int;
    fn pselect(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set,
               timeout: *const timespec, mask: *const sigset_t) -> c_int = {
        // pselect6 takes the mask as {pointer, size}; it may update the timeout, which
        // pselect(3) must not, hence the copy.
        let mut t = if timeout.is_null() { None } else { Some(*timeout) };
        let t_ptr = t.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut timespec);
        let mask_arg: [c_long; 2] = [mask as c_long, KERNEL_SIGSET];
        sys!(libc::SYS_pselect6, nfds, r, w, e, t_ptr, mask_arg.as_ptr()) as c_int
    };
    fn epoll_create(size: c_int) -> c_int = sys!(libc::SYS_epoll_create, size) as c_int;
    fn epoll_create1(flags: c_int) -> c_int = sys!(libc::SYS_epoll_create1, flags) as c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int =
        sys!(libc::SYS_epoll_ctl, epfd, op, fd, event) as c_int;
    fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int =
        sys!(libc::SYS_epoll_wait, epfd, events, max, timeout) as c_int;
    fn epoll_pwait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int,
                   mask: *const sigset_t) -> c_int =
        sys!(libc::SYS_epoll_pwait, epfd, events, max, timeout, mask, KERNEL_SIGSET) as c_int;
    fn epoll_pwait2(epfd: c_int, events: *mut epoll_event, max: c_int,
                    timeout: *const timespec, mask: *const sigset_t) -> c_int =
        sys!(libc::SYS_epoll_pwait2, epfd, events, max, timeout, mask, KERNEL_SIGSET) as c_int;
    // The raw system call needs glibc's restorer: without libc's sigaction there is none.
    fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int =
        no_such_function();
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int =
        sys!(libc::SYS_close_range, first, last, flags) as c_int;
    fn closefrom(low: c_int) -> () = {
        sys!(libc::SYS_close_range, low, c_uint::MAX, 0);
    };
    fn dup(fd: c_int) -> c_int = sys!(libc::SYS_dup, fd) as c_int;
    fn dup2(old: c_int, new: c_int) -> c_int = sys!(libc::SYS_dup2, old, new) as c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int =
        sys!(libc::SYS_dup3, old, new, flags) as c_int;
    // The raw fork skips glibc's atfork handlers: only used if libc has no fork at all.
    fn fork() -> pid_t = sys!(libc::SYS_fork) as pid_t;
    fn execve(path: *const c_char, argv: *const *const c_char,
              envp: *const *const c_char) -> c_int =
        sys!(libc::SYS_execve, path, argv, envp) as c_int;
    fn execvpe(file: *const c_char, argv: *const *const c_char,
               envp: *const *const c_char) -> c_int = no_such_function();
    fn posix_spawn(pid: *mut pid_t, path: *const c_char,
                   actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t,
                   argv: *const *const c_char, envp: *const *const c_char) -> c_int = libc::ENOSYS;
    fn posix_spawnp(pid: *mut pid_t, file: *const c_char,
                    actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t,
                    argv: *const *const c_char, envp: *const *const c_char) -> c_int = libc::ENOSYS;
    fn __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t = {
        if count > buflen { libc::abort() }
        read(fd, buf, count)
    };
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t,
                  flags: c_int) -> ssize_t = {
        if len > buflen { libc::abort() }
        recv(fd, buf, len, flags)
    };
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int,
                      addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t = {
        if len > buflen { libc::abort() }
        recvfrom(fd, buf, len, flags, addr, addrlen)
    };
    fn __poll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: c_int, fdslen: size_t) -> c_int = {
        if fdslen / std::mem::size_of::<pollfd>() < nfds as size_t { libc::abort() }
        poll(fds, nfds, timeout)
    };
    fn __ppoll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec,
                   mask: *const sigset_t, fdslen: size_t) -> c_int = {
        if fdslen / std::mem::size_of::<pollfd>() < nfds as size_t { libc::abort() }
        ppoll(fds, nfds, timeout, mask)
    };
}

next_variadic! {
    fn fcntl(fd: c_int, cmd: c_int; arg: c_ulong) -> c_int =
        sys!(libc::SYS_fcntl, fd, cmd, arg) as c_int;
    fn fcntl64(fd: c_int, cmd: c_int; arg: c_ulong) -> c_int =
        sys!(libc::SYS_fcntl, fd, cmd, arg) as c_int;
    fn ioctl(fd: c_int, request: c_ulong; arg: c_ulong) -> c_int =
        sys!(libc::SYS_ioctl, fd, request, arg) as c_int;
}
