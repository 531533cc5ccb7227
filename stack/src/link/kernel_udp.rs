//! The kernel-UDP transport of mode `udp`: ordinary, non-blocking kernel UDP
//! sockets that carry the stack's own datagrams (the stream protocol) when
//! there is no DPDK port: [`KernelCarriers`] holds one per stream port, all
//! watched by one epoll fd (the stack's wait fd in that mode).
//!
//! Unlike a [`super::Link`] it carries UDP payloads, not Ethernet frames: the
//! kernel does Ethernet, ARP and IP. Its socket calls are made by the stack,
//! so the preload must let them through to the kernel (the thread is marked
//! "inside sluice" by the stack's `on_thread_start`, or by the preload around
//! its calls into the stack).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// The kernel UDP sockets carrying streams in mode udp: one per stream port, on the stack's
/// address, all in one epoll set so that a sleeping thread waits on a single fd.
pub struct KernelCarriers {
    ip: Ipv4Addr,
    links: HashMap<u16, KernelUdpLink>,
    epoll: OwnedFd,
    /// Counters of carriers already closed.
    retired: KernelUdpCounters,
}

impl KernelCarriers {
    pub fn new(ip: Ipv4Addr) -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KernelCarriers {
            ip,
            links: HashMap::new(),
            // SAFETY: a fresh fd owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            retired: KernelUdpCounters::default(),
        })
    }

    /// The address the carriers are bound to (the stack's address in mode udp).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Polls readable while a datagram waits on any carrier.
    pub fn wait_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Binds a carrier on `port` (0: an ephemeral one); returns its port.
    pub fn bind(&mut self, port: u16) -> io::Result<u16> {
        let link = KernelUdpLink::open(SocketAddrV4::new(self.ip, port))?;
        let port = link.local_addr().port();
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: u64::from(port),
        };
        // SAFETY: both fds are open; `event` is a valid epoll_event.
        let r = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                link.raw_fd(),
                &mut event,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.links.insert(port, link);
        Ok(port)
    }

    /// Closes the carrier of `port` (closing its socket also leaves the epoll set).
    pub fn close(&mut self, port: u16) {
        if let Some(link) = self.links.remove(&port) {
            let c = link.counters();
            self.retired.rx_datagrams += c.rx_datagrams;
            self.retired.tx_datagrams += c.tx_datagrams;
            self.retired.tx_errors += c.tx_errors;
        }
    }

    /// Sends `payload` from the carrier of `port` (best effort: a full socket buffer drops).
    pub fn send(&mut self, port: u16, to: SocketAddrV4, payload: &[u8]) {
        if let Some(link) = self.links.get_mut(&port) {
            let _ = link.send_to(payload, to);
        }
    }

    /// Up to `max` datagrams from each carrier, as (port, sender, payload).
    pub fn recv(&mut self, max: usize) -> Vec<(u16, SocketAddrV4, Vec<u8>)> {
        let mut out = Vec::new();
        for (&port, link) in self.links.iter_mut() {
            let _ = link.recv_datagrams(max, &mut |d, from| out.push((port, from, d.to_vec())));
        }
        out
    }

    pub fn counters(&self) -> KernelUdpCounters {
        let mut c = self.retired;
        for link in self.links.values() {
            c.rx_datagrams += link.counters().rx_datagrams;
            c.tx_datagrams += link.counters().tx_datagrams;
            c.tx_errors += link.counters().tx_errors;
        }
        c
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
