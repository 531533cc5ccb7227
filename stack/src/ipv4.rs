//! IPv4: routing of one data port, acceptance of received datagrams, and
//! building (and fragmenting) datagrams to send. Reassembly is in
//! [`reassembly`].

pub mod reassembly;

use std::fmt;
use std::net::Ipv4Addr;

use crate::policy::Subnet;
use crate::wire::{Ipv4Header, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, IPV4_MAX_LEN};

/// Linux's default TTL (net.ipv4.ip_default_ttl).
pub const DEFAULT_TTL: u8 = 64;
/// Ethernet's MTU, and the default of every data port.
pub const DEFAULT_MTU: usize = 1500;
/// The smallest MTU IPv4 allows a link (RFC 791: every host takes 576-byte datagrams; links carry at least 68).
pub const MIN_MTU: usize = 68;

/// Why a destination cannot be reached, with the errno the kernel reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// Off-subnet and no gateway (or a gateway that is not on the subnet).
    NetworkUnreachable,
    /// The next hop did not answer ARP.
    HostUnreachable,
}

impl RouteError {
    pub fn errno(&self) -> i32 {
        match self {
            RouteError::NetworkUnreachable => libc::ENETUNREACH,
            RouteError::HostUnreachable => libc::EHOSTUNREACH,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteError::NetworkUnreachable => "network is unreachable",
            RouteError::HostUnreachable => "no route to host",
        })
    }
}

/// Where a datagram goes on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// A neighbour on the subnet (the destination itself, or the gateway).
    Neighbour(Ipv4Addr),
    Broadcast,
    Multicast(Ipv4Addr),
    /// One of our own addresses: looped back, never put on the wire.
    Local,
}

/// How a received datagram is addressed to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressed {
    Unicast,
    Broadcast,
    Multicast,
}

/// Routing of one data port: its address, subnet and gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    addr: Ipv4Addr,
    subnet: Subnet,
    gateway: Option<Ipv4Addr>,
}

impl Routes {
    pub fn new(addr: Ipv4Addr, prefix_len: u8, gateway: Option<Ipv4Addr>) -> Self {
        Routes {
            addr,
            subnet: Subnet::containing(addr, prefix_len),
            gateway,
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The subnet's directed broadcast address (none for /31 and /32).
    pub fn subnet_broadcast(&self) -> Option<Ipv4Addr> {
        if self.subnet.prefix_len() >= 31 {
            return None;
        }
        Some(Ipv4Addr::from(
            u32::from(self.subnet.network()) | !u32::from(self.subnet.netmask()),
        ))
    }

    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || Some(ip) == self.subnet_broadcast()
    }

    pub fn next_hop(&self, dst: Ipv4Addr) -> Result<NextHop, RouteError> {
        if dst == self.addr {
            Ok(NextHop::Local)
        } else if self.is_broadcast(dst) {
            Ok(NextHop::Broadcast)
        } else if dst.is_multicast() {
            Ok(NextHop::Multicast(dst))
        } else if dst.is_unspecified() {
            Err(RouteError::NetworkUnreachable)
        } else if self.subnet.contains(dst) {
            Ok(NextHop::Neighbour(dst))
        } else {
            match self.gateway {
                Some(gw) if self.subnet.contains(gw) && gw != self.addr => {
                    Ok(NextHop::Neighbour(gw))
                }
                _ => Err(RouteError::NetworkUnreachable),
            }
        }
    }

    /// Whether a received datagram is for this port: our address, a
    /// broadcast, or a multicast group in `groups`. Datagrams claiming to
    /// come from a broadcast or multicast address (martians) are not.
    pub fn accepts(&self, header: &Ipv4Header, groups: &[Ipv4Addr]) -> Option<Addressed> {
        if header.src.is_multicast() || self.is_broadcast(header.src) {
            return None;
        }
        if header.dst == self.addr {
            Some(Addressed::Unicast)
        } else if self.is_broadcast(header.dst) {
            Some(Addressed::Broadcast)
        } else if header.dst.is_multicast() && groups.contains(&header.dst) {
            Some(Addressed::Multicast)
        } else {
            None
        }
    }
}

/// Builds outgoing datagrams: identification, TTL, fragmentation to the MTU.
pub struct Ipv4Sender {
    mtu: usize,
    next_ident: u16,
}

impl Ipv4Sender {
    /// `ident_seed` picks the first identification (vary it per process so
    /// that a restarted sender does not reuse its predecessor's fresh ids).
    pub fn new(mtu: usize, ident_seed: u16) -> Self {
        Ipv4Sender {
            mtu: mtu.clamp(MIN_MTU, IPV4_MAX_LEN),
            next_ident: ident_seed,
        }
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether `payload_len` bytes fit one unfragmented datagram.
    pub fn fits(&self, payload_len: usize) -> bool {
        IPV4_HEADER_LEN + payload_len <= self.mtu
    }

    /// A header for a new datagram of `payload_len` bytes, with a fresh identification.
    pub fn header(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        ttl: u8,
        payload_len: usize,
    ) -> Ipv4Header {
        let ident = self.next_ident;
        self.next_ident = self.next_ident.wrapping_add(1);
        Ipv4Header {
            src,
            dst,
            protocol,
            ttl,
            ident,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            header_len: IPV4_HEADER_LEN,
            total_len: IPV4_HEADER_LEN + payload_len,
        }
    }

    /// The datagram `header` + `payload` as frames (Ethernet header left
    /// blank for the neighbour layer), fragmented if it exceeds the MTU.
    /// Every fragment but the last carries a multiple of 8 payload bytes.
    pub fn frames(&self, header: &Ipv4Header, payload: &[u8]) -> Vec<Vec<u8>> {
        let chunk = if self.fits(payload.len()) {
            payload.len().max(1)
        } else {
            (self.mtu - IPV4_HEADER_LEN) / 8 * 8
        };
        let mut frames = Vec::with_capacity(payload.len().div_ceil(chunk).max(1));
        let mut offset = 0;
        loop {
            let end = (offset + chunk).min(payload.len());
            let piece = &payload[offset..end];
            let mut frame = vec![0u8; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + piece.len()];
            let fragment = Ipv4Header {
                more_fragments: end < payload.len(),
                fragment_offset: offset,
                total_len: IPV4_HEADER_LEN + piece.len(),
                ..*header
            };
            fragment.write(&mut frame[ETHERNET_HEADER_LEN..]);
            frame[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..].copy_from_slice(piece);
            frames.push(frame);
            offset = end;
            if offset >= payload.len() {
                return frames;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4::reassembly::{Reassembler, ReassemblyConfig};
    use crate::wire::PROTO_UDP;

    const US: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 254);
    const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    #[test]
    fn routes_on_subnet_directly_and_off_subnet_through_the_gateway() {
        let routes = Routes::new(US, 24, Some(GW));
        assert_eq!(routes.next_hop(PEER), Ok(NextHop::Neighbour(PEER)));
        assert_eq!(routes.next_hop(FAR), Ok(NextHop::Neighbour(GW)));
        assert_eq!(routes.next_hop(US), Ok(NextHop::Local));
        assert_eq!(
            routes.next_hop(Ipv4Addr::new(10, 77, 2, 255)),
            Ok(NextHop::Broadcast)
        );
        assert_eq!(routes.next_hop(Ipv4Addr::BROADCAST), Ok(NextHop::Broadcast));
        let group = Ipv4Addr::new(239, 1, 2, 3);
        assert_eq!(routes.next_hop(group), Ok(NextHop::Multicast(group)));
    }

    #[test]
    fn no_route_is_enetunreach_like_the_kernel() {
        let routes = Routes::new(US, 24, None);
        assert_eq!(routes.next_hop(FAR), Err(RouteError::NetworkUnreachable));
        assert_eq!(RouteError::NetworkUnreachable.errno(), libc::ENETUNREACH);
        assert_eq!(RouteError::HostUnreachable.errno(), libc::EHOSTUNREACH);
        let off_subnet_gateway = Routes::new(US, 24, Some(Ipv4Addr::new(10, 77, 9, 1)));
        assert_eq!(
            off_subnet_gateway.next_hop(FAR),
            Err(RouteError::NetworkUnreachable)
        );
        assert_eq!(
            routes.next_hop(Ipv4Addr::UNSPECIFIED),
            Err(RouteError::NetworkUnreachable)
        );
    }

    fn header_to(dst: Ipv4Addr, src: Ipv4Addr) -> Ipv4Header {
        Ipv4Sender::new(DEFAULT_MTU, 0).header(src, dst, PROTO_UDP, 64, 0)
    }

    #[test]
    fn accepts_our_address_broadcast_and_joined_groups_only() {
        let routes = Routes::new(US, 24, None);
        let joined = Ipv4Addr::new(239, 1, 1, 1);
        let groups = [joined];
        assert_eq!(
            routes.accepts(&header_to(US, PEER), &groups),
            Some(Addressed::Unicast)
        );
        assert_eq!(
            routes.accepts(&header_to(Ipv4Addr::new(10, 77, 2, 255), PEER), &groups),
            Some(Addressed::Broadcast)
        );
        assert_eq!(
            routes.accepts(&header_to(joined, PEER), &groups),
            Some(Addressed::Multicast)
        );
        assert_eq!(
            routes.accepts(&header_to(Ipv4Addr::new(239, 9, 9, 9), PEER), &groups),
            None
        );
        assert_eq!(
            routes.accepts(&header_to(PEER, US), &groups),
            None,
            "someone else's address"
        );
        assert_eq!(
            routes.accepts(&header_to(US, joined), &groups),
            None,
            "martian source"
        );
    }

    #[test]
    fn identification_advances_and_ttl_is_set() {
        let mut tx = Ipv4Sender::new(DEFAULT_MTU, 65535);
        let a = tx.header(US, PEER, PROTO_UDP, DEFAULT_TTL, 10);
        let b = tx.header(US, PEER, PROTO_UDP, DEFAULT_TTL, 10);
        assert_eq!((a.ident, b.ident), (65535, 0));
        let frames = tx.frames(&a, &[0; 10]);
        let (parsed, _) = Ipv4Header::parse(&frames[0][ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(
            (parsed.ttl, parsed.ident, parsed.is_fragment()),
            (64, 65535, false)
        );
    }

    #[test]
    fn large_datagrams_are_fragmented_to_the_mtu_and_reassemble() {
        let mut tx = Ipv4Sender::new(DEFAULT_MTU, 1);
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let header = tx.header(US, PEER, PROTO_UDP, DEFAULT_TTL, payload.len());
        let frames = tx.frames(&header, &payload);
        assert_eq!(frames.len(), 3);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut whole = None;
        for (i, frame) in frames.iter().enumerate() {
            let ip = &frame[ETHERNET_HEADER_LEN..];
            assert!(ip.len() <= DEFAULT_MTU);
            let (h, piece) = Ipv4Header::parse(ip).unwrap();
            assert_eq!((h.fragment_offset, h.more_fragments), (i * 1480, i < 2));
            whole = r.add(0, &h, piece).or(whole);
        }
        assert_eq!(whole.unwrap(), payload);
    }

    #[test]
    fn a_datagram_exactly_the_mtu_is_not_fragmented() {
        let mut tx = Ipv4Sender::new(DEFAULT_MTU, 1);
        let header = tx.header(US, PEER, PROTO_UDP, DEFAULT_TTL, 1480);
        assert_eq!(tx.frames(&header, &[7; 1480]).len(), 1);
        let header = tx.header(US, PEER, PROTO_UDP, DEFAULT_TTL, 1481);
        assert_eq!(tx.frames(&header, &[7; 1481]).len(), 2);
    }
}
