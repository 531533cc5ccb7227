//! setsockopt on an offloaded socket.
//!
//! The shadow gets every option first (except the multicast ones naming data-port addresses,
//! which the kernel does not have): its answer is the kernel's validation and errno, and its
//! stored value is what getsockopt reads back. The stack then gets the value the kernel kept
//! (halved for the buffer sizes, which both the kernel and the stack double).

use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::raw::{c_int, c_void};

use libc::socklen_t;

use sluice_stack::socket::stream::StreamSocket;

use crate::dgram::Res;
use crate::entry::Offloaded;
use crate::offload::{duration, sockopt};

/// # Safety
/// `value` is null or has `len` readable bytes.
pub unsafe fn set(
    fd: c_int,
    o: &Offloaded,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
    kernel: impl Fn() -> c_int,
) -> Res<()> {
    if let Some(s) = o.stream() {
        return set_stream(fd, s, level, name, kernel);
    }
    let Some(udp) = o.udp() else {
        return Err(libc::EOPNOTSUPP);
    };
    if level == libc::IPPROTO_IP {
        match name {
            libc::IP_ADD_MEMBERSHIP | libc::IP_DROP_MEMBERSHIP => {
                // SAFETY: per the contract.
                let (group, iface) = unsafe { membership(value, len) }?;
                return if name == libc::IP_ADD_MEMBERSHIP {
                    udp.join_group(group, iface)
                } else {
                    udp.leave_group(group, iface)
                };
            }
            libc::IP_MULTICAST_IF => {
                // SAFETY: per the contract.
                let iface = unsafe { multicast_if(value, len) }?;
                return udp.set_multicast_if(iface);
            }
            _ => {}
        }
    }
    if kernel() != 0 {
        return Err(crate::guard::errno());
    }
    let int = |level, name| sockopt::<c_int>(fd, level, name).unwrap_or(0);
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => udp.set_reuse_addr(int(level, name) != 0)?,
        (libc::SOL_SOCKET, libc::SO_REUSEPORT) => udp.set_reuse_port(int(level, name) != 0)?,
        (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_RCVBUFFORCE) => {
            udp.set_recv_buffer(int(level, libc::SO_RCVBUF).max(0) as usize / 2)
        }
        (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_SNDBUFFORCE) => {
            udp.set_send_buffer(int(level, libc::SO_SNDBUF).max(0) as usize / 2)
        }
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => {
            let tv = sockopt::<libc::timeval>(fd, level, name);
            udp.set_recv_timeout(tv.and_then(duration));
        }
        (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => {
            let tv = sockopt::<libc::timeval>(fd, level, name);
            udp.set_send_timeout(tv.and_then(duration));
        }
        (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => {
            udp.set_multicast_ttl(int(level, name).clamp(0, 255) as u8)
        }
        (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => {
            udp.set_multicast_loop(int(level, name) != 0)
        }
        // Options the stack has no use for live on the shadow alone.
        _ => {}
    }
    Ok(())
}

/// setsockopt on an offloaded stream: the shadow validates and keeps the value; the stack
/// takes what it uses (the kernel's value, read back).
fn set_stream(
    fd: c_int,
    s: &StreamSocket,
    level: c_int,
    name: c_int,
    kernel: impl Fn() -> c_int,
) -> Res<()> {
    if kernel() != 0 {
        return Err(crate::guard::errno());
    }
    let int = |level, name| sockopt::<c_int>(fd, level, name).unwrap_or(0);
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.set_reuse_addr(int(level, name) != 0),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => s.set_nodelay(int(level, name) != 0),
        (libc::SOL_SOCKET, libc::SO_RCVLOWAT) => s.set_recv_lowat(int(level, name).max(1) as usize),
        (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_RCVBUFFORCE) => {
            s.set_buffers(Some(int(level, libc::SO_RCVBUF).max(0) as usize / 2), None)
        }
        (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_SNDBUFFORCE) => {
            s.set_buffers(None, Some(int(level, libc::SO_SNDBUF).max(0) as usize / 2))
        }
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE | libc::SO_LINGER)
        | (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT) => {
            crate::offload::carry_over_stream(fd, s)
        }
        _ => {}
    }
    Ok(())
}

fn in_addr_at(value: *const c_void, offset: usize) -> Ipv4Addr {
    // SAFETY: callers checked that offset + 4 bytes are readable.
    let raw = unsafe { std::ptr::read_unaligned(value.cast::<u8>().add(offset).cast::<u32>()) };
    Ipv4Addr::from(u32::from_be(raw))
}

/// (group, interface address) of an ip_mreq or ip_mreqn.
///
/// # Safety
/// `value` is null or has `len` readable bytes.
unsafe fn membership(value: *const c_void, len: socklen_t) -> Res<(Ipv4Addr, Ipv4Addr)> {
    if (len as usize) < size_of::<libc::ip_mreq>() {
        return Err(libc::EINVAL);
    }
    if value.is_null() {
        return Err(libc::EFAULT);
    }
    let group = in_addr_at(value, 0);
    if !group.is_multicast() {
        return Err(libc::EINVAL);
    }
    // ip_mreq's imr_interface and ip_mreqn's imr_address are both at offset 4; an ip_mreqn
    // naming only an interface index is not mapped (the address picks the data port).
    Ok((group, in_addr_at(value, 4)))
}

/// The interface address of IP_MULTICAST_IF (in_addr, ip_mreq or ip_mreqn, as the kernel
/// reads them).
///
/// # Safety
/// `value` is null or has `len` readable bytes.
unsafe fn multicast_if(value: *const c_void, len: socklen_t) -> Res<Ipv4Addr> {
    let len = len as usize;
    if len < size_of::<libc::in_addr>() {
        return Err(libc::EINVAL);
    }
    if value.is_null() {
        return Err(libc::EFAULT);
    }
    Ok(if len >= size_of::<libc::ip_mreq>() {
        in_addr_at(value, 4)
    } else {
        in_addr_at(value, 0)
    })
}
