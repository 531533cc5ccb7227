//! The kernel-UDP transport of mode `udp`: one ordinary, non-blocking kernel
//! UDP socket that carries the stack's own datagrams (the stream protocol,
//! in a later issue) when there is no DPDK port.
//!
//! Unlike a [`super::Link`] it carries UDP payloads, not Ethernet frames: the
//! kernel does Ethernet, ARP and IP. Its socket calls are made by the stack,
//! so the preload must let them through to the kernel (the thread is marked
//! "inside sluice" by the stack's `on_thread_start`, or by the preload around
//! its calls into the stack).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Largest datagram received in one piece.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelUdpCounters {
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
    /// Sends the kernel refused (buffer full, unreachable...).
    pub tx_errors: u64,
}

pub struct KernelUdpLink {
    socket: UdpSocket,
    local: SocketAddrV4,
    buf: Vec<u8>,
    counters: KernelUdpCounters,
}

impl KernelUdpLink {
    /// Binds to `addr` (port 0: ephemeral). With an address the kernel does not
    /// have, falls back to INADDR_ANY with the same port.
    pub fn open(addr: SocketAddrV4) -> io::Result<Self> {
        let socket = match UdpSocket::bind(addr) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, addr.port()))?
            }
            Err(e) => return Err(e),
        };
        socket.set_nonblocking(true)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        };
        Ok(KernelUdpLink {
            socket,
            local,
            buf: vec![0u8; MAX_DATAGRAM],
            counters: KernelUdpCounters::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The kernel fd, for a thread to wait on it instead of polling.
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub fn counters(&self) -> KernelUdpCounters {
        self.counters
    }

    /// Sends one datagram; `Ok(false)` if the kernel's buffer is full.
    pub fn send_to(&mut self, payload: &[u8], dst: SocketAddrV4) -> io::Result<bool> {
        match self.socket.send_to(payload, dst) {
            Ok(_) => {
                self.counters.tx_datagrams += 1;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => {
                self.counters.tx_errors += 1;
                Err(e)
            }
        }
    }

    /// Hands up to `max` waiting datagrams to `on_datagram`, never blocking.
    pub fn recv_datagrams(
        &mut self,
        max: usize,
        on_datagram: &mut dyn FnMut(&[u8], SocketAddrV4),
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, SocketAddr::V4(from))) => {
                    self.counters.rx_datagrams += 1;
                    n += 1;
                    on_datagram(&self.buf[..len], from);
                }
                Ok((_, SocketAddr::V6(_))) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error from an earlier send surfaces here: not fatal to the transport.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_transports_exchange_datagrams_on_loopback() {
        let lo = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let mut a = KernelUdpLink::open(lo).unwrap();
        let mut b = KernelUdpLink::open(lo).unwrap();
        assert_ne!(a.local_addr().port(), 0);
        assert!(a.send_to(b"hello", b.local_addr()).unwrap());
        let mut got = Vec::new();
        for _ in 0..1000 {
            b.recv_datagrams(8, &mut |d, from| got.push((d.to_vec(), from)))
                .unwrap();
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, vec![(b"hello".to_vec(), a.local_addr())]);
        assert_eq!(a.counters().tx_datagrams, 1);
        assert_eq!(b.counters().rx_datagrams, 1);
    }

    #[test]
    fn an_address_the_kernel_lacks_falls_back_to_any() {
        // 10.77.2.1 is a data IP: never configured in the kernel.
        let link = KernelUdpLink::open(SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 1), 0)).unwrap();
        assert!(link.local_addr().ip().is_unspecified());
    }
}
