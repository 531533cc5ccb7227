//! Data calls: read/write families, send/recv families, and glibc's fortified variants.
//!
//! An fd the stack serves (an offloaded datagram socket) is translated onto its `UdpSocket`
//! through `crate::dgram`; every other fd goes to the kernel after one table lookup.

#![allow(clippy::missing_safety_doc)]

use std::os::raw::{c_int, c_uint, c_void};

use libc::{iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t, timespec};

use super::{fail, served};
use crate::dgram::{self, Got, SendRoute};
use crate::entry::Offloaded;
use crate::guard::{guarded, Site};
use crate::init::TABLE;
use crate::real;

/// Runs `serve` on the fd's stack socket, or the kernel call when the stack does not serve it.
fn dispatch<R: Copy>(
    site: &'static Site,
    fd: c_int,
    kernel: impl Fn() -> R,
    serve: impl FnOnce(&Offloaded, &dyn Fn() -> R) -> R,
) -> R {
    if !TABLE.is_tracked(fd) {
        return kernel();
    }
    guarded(site, kernel, |k| match served(fd) {
        Some(entry) => serve(entry.offloaded().expect("served"), &|| k.call()),
        None => k.call(),
    })
}

fn len_or_fail(r: dgram::Res<usize>) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => fail(e) as ssize_t,
    }
}

/// What a receive returns: the real length with MSG_TRUNC, else the bytes copied.
fn received(r: dgram::Res<Got>, flags: c_int) -> ssize_t {
    len_or_fail(r.map(|g| {
        if flags & libc::MSG_TRUNC != 0 {
            g.len
        } else {
            g.copied
        }
    }))
}

/// # Safety
/// `buf` has `len` writable bytes (or `len` is 0).
unsafe fn one_buf<'a>(buf: *mut c_void, len: size_t) -> Vec<&'a mut [u8]> {
    if len == 0 || buf.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract.
    vec![unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }]
}

/// # Safety
/// `buf` has `len` readable bytes (or `len` is 0).
unsafe fn one_ref<'a>(buf: *const c_void, len: size_t) -> &'a [u8] {
    if len == 0 || buf.is_null() {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
}

/// A send without address (write, writev, send).
fn send_connected(
    o: &Offloaded,
    bufs: &[&[u8]],
    flags: c_int,
    kernel: &dyn Fn() -> ssize_t,
) -> ssize_t {
    match dgram::send_route(o, None) {
        SendRoute::Shadow => kernel(),
        SendRoute::Stack => len_or_fail(dgram::send(o, bufs, None, flags)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    static SITE: Site = Site::new("read");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::read(fd, buf, count) };
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's buffer.
        let mut bufs = unsafe { one_buf(buf, count) };
        received(dgram::recv(fd, o, &mut bufs, 0), 0)
    })
}

#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buflen: size_t,
) -> ssize_t {
    if count > buflen && TABLE.is_tracked(fd) {
        // SAFETY: glibc's own check fails the same way.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::__read_chk(fd, buf, count, buflen) };
    static SITE: Site = Site::new("__read_chk");
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's buffer.
        let mut bufs = unsafe { one_buf(buf, count) };
        received(dgram::recv(fd, o, &mut bufs, 0), 0)
    })
}

#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    static SITE: Site = Site::new("readv");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::readv(fd, iov, count) };
    dispatch(&SITE, fd, kernel, |o, _| {
        let n = match dgram::iov_count(count) {
            Ok(n) => n,
            Err(e) => return fail(e) as ssize_t,
        };
        // SAFETY: the caller's iovecs.
        let mut bufs = unsafe { dgram::iov_mut(iov, n) };
        received(dgram::recv(fd, o, &mut bufs, 0), 0)
    })
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    static SITE: Site = Site::new("write");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::write(fd, buf, count) };
    // SAFETY: the caller's buffer.
    dispatch(&SITE, fd, kernel, |o, k| {
        send_connected(o, &[unsafe { one_ref(buf, count) }], 0, k)
    })
}

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    static SITE: Site = Site::new("writev");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::writev(fd, iov, count) };
    dispatch(&SITE, fd, kernel, |o, k| {
        let n = match dgram::iov_count(count) {
            Ok(n) => n,
            Err(e) => return fail(e) as ssize_t,
        };
        // SAFETY: the caller's iovecs.
        let bufs = unsafe { dgram::iov_ref(iov, n) };
        send_connected(o, &bufs, 0, k)
    })
}

/// sendfile to an offloaded socket: the file's bytes are read here and sent through the
/// stack (one bounded chunk per call, as a short count the caller loops on); the file offset
/// (`offset`, or the file position) advances by what was sent.
///
/// # Safety
/// `offset` is null or valid.
unsafe fn sendfile_via_stack(
    o: &Offloaded,
    in_fd: c_int,
    offset: *mut i64,
    count: size_t,
    kernel: &dyn Fn() -> ssize_t,
) -> ssize_t {
    const CHUNK: usize = 256 << 10;
    if let SendRoute::Shadow = dgram::send_route(o, None) {
        return kernel();
    }
    let mut buf = vec![0u8; count.min(CHUNK)];
    let n = if offset.is_null() {
        // SAFETY: a buffer of its length.
        unsafe { real::read(in_fd, buf.as_mut_ptr().cast(), buf.len()) }
    } else {
        // SAFETY: `offset` is valid per the contract; a buffer of its length.
        unsafe { libc::pread(in_fd, buf.as_mut_ptr().cast(), buf.len(), *offset) }
    };
    if n <= 0 {
        return n;
    }
    let n = n as usize;
    let sent = match dgram::send(o, &[&buf[..n]], None, 0) {
        Ok(sent) => sent,
        Err(e) => {
            if offset.is_null() {
                // SAFETY: plain lseek on the caller's fd: nothing was sent, give the bytes back.
                unsafe { libc::lseek(in_fd, -(n as i64), libc::SEEK_CUR) };
            }
            return fail(e) as ssize_t;
        }
    };
    if offset.is_null() {
        if sent < n {
            // SAFETY: as above, for the unsent tail.
            unsafe { libc::lseek(in_fd, -((n - sent) as i64), libc::SEEK_CUR) };
        }
    } else {
        // SAFETY: valid per the contract.
        unsafe { *offset += sent as i64 };
    }
    sent as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: size_t,
) -> ssize_t {
    static SITE: Site = Site::new("sendfile");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendfile(out_fd, in_fd, offset, count) };
    // SAFETY: the caller's offset pointer.
    dispatch(&SITE, out_fd, kernel, |o, k| unsafe {
        sendfile_via_stack(o, in_fd, offset, count, k)
    })
}

#[no_mangle]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off64_t,
    count: size_t,
) -> ssize_t {
    static SITE: Site = Site::new("sendfile64");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::sendfile64(out_fd, in_fd, offset, count) };
    // SAFETY: the caller's offset pointer.
    dispatch(&SITE, out_fd, kernel, |o, k| unsafe {
        sendfile_via_stack(o, in_fd, offset, count, k)
    })
}

#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    static SITE: Site = Site::new("send");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::send(fd, buf, len, flags) };
    // SAFETY: the caller's buffer.
    dispatch(&SITE, fd, kernel, |o, k| {
        send_connected(o, &[unsafe { one_ref(buf, len) }], flags, k)
    })
}

#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    static SITE: Site = Site::new("recv");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::recv(fd, buf, len, flags) };
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's buffer.
        let mut bufs = unsafe { one_buf(buf, len) };
        received(dgram::recv(fd, o, &mut bufs, flags), flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen && TABLE.is_tracked(fd) {
        // SAFETY: glibc's own check fails the same way.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::__recv_chk(fd, buf, len, buflen, flags) };
    static SITE: Site = Site::new("__recv_chk");
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's buffer.
        let mut bufs = unsafe { one_buf(buf, len) };
        received(dgram::recv(fd, o, &mut bufs, flags), flags)
    })
}

/// recvfrom served by the stack.
///
/// # Safety
/// The caller's recvfrom arguments.
unsafe fn stack_recvfrom(
    fd: c_int,
    o: &Offloaded,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's buffer.
    let mut bufs = unsafe { one_buf(buf, len) };
    let got = dgram::recv(fd, o, &mut bufs, flags);
    if let Ok(g) = &got {
        // SAFETY: the caller's address buffer.
        if let Err(e) = unsafe { dgram::store_addr(g.from, addr, addrlen) } {
            return fail(e) as ssize_t;
        }
    }
    received(got, flags)
}

#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    static SITE: Site = Site::new("recvfrom");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) };
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's arguments.
        unsafe { stack_recvfrom(fd, o, buf, len, flags, addr, addrlen) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen && TABLE.is_tracked(fd) {
        // SAFETY: glibc's own check fails the same way.
        unsafe { libc::abort() }
    }
    static SITE: Site = Site::new("__recvfrom_chk");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::__recvfrom_chk(fd, buf, len, buflen, flags, addr, addrlen) };
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's arguments.
        unsafe { stack_recvfrom(fd, o, buf, len, flags, addr, addrlen) }
    })
}

/// One msghdr filled by the stack: data, source address, msg_flags (MSG_TRUNC), no control
/// messages. Returns what recvmsg returns.
///
/// # Safety
/// `msg` is a valid msghdr with writable buffers.
unsafe fn stack_recvmsg(
    fd: c_int,
    o: &Offloaded,
    msg: &mut msghdr,
    flags: c_int,
) -> dgram::Res<usize> {
    if msg.msg_iovlen > 1024 {
        return Err(libc::EMSGSIZE);
    }
    // SAFETY: the msghdr's iovecs.
    let mut bufs = unsafe { dgram::iov_mut(msg.msg_iov, msg.msg_iovlen) };
    let g = dgram::recv(fd, o, &mut bufs, flags)?;
    if !msg.msg_name.is_null() {
        // SAFETY: msg_name has msg_namelen writable bytes.
        unsafe { dgram::store_addr(g.from, msg.msg_name.cast(), &mut msg.msg_namelen) }?;
    }
    msg.msg_controllen = 0;
    msg.msg_flags = if g.len > g.copied { libc::MSG_TRUNC } else { 0 };
    Ok(if flags & libc::MSG_TRUNC != 0 {
        g.len
    } else {
        g.copied
    })
}

#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    static SITE: Site = Site::new("recvmsg");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::recvmsg(fd, msg, flags) };
    if msg.is_null() {
        return kernel();
    }
    dispatch(&SITE, fd, kernel, |o, _| {
        // SAFETY: the caller's msghdr.
        len_or_fail(unsafe { stack_recvmsg(fd, o, &mut *msg, flags) })
    })
}

#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    static SITE: Site = Site::new("recvmmsg");
    // SAFETY: the caller's arguments, passed on unchanged.
    let kernel = || unsafe { real::recvmmsg(fd, msgs, count, flags, timeout) };
    if msgs.is_null() || count == 0 {
        return kernel();
    }
    dispatch(&SITE, fd, kernel, |o, _| {
        let count = count.min(1024) as usize;
        let mut done = 0;
        let mut flags_now = flags & !libc::MSG_WAITFORONE;
        while done < count {
            // SAFETY: `msgs` holds `count` entries.
            let m = unsafe { &mut *msgs.add(done) };
            // SAFETY: a valid msghdr.
            match unsafe { stack_recvmsg(fd, o, &mut m.msg_hdr, flags_now) } {
                Ok(n) => {
                    m.msg_len = n as c_uint;
                    done += 1;
                }
                // After one datagram, a later error (EAGAIN included) ends the batch.
                Err(_) if done > 0 => break,
                Err(e) => return fail(e),
            }
            if flags & libc::MSG_WAITFORONE != 0 {
                flags_now |= libc::MSG_DONTWAIT;
            }
        }
        done as c_int
    })
}
