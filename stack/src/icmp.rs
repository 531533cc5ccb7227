//! ICMPv4: echo replies for our addresses, port-unreachable errors for UDP
//! datagrams to closed ports (rate limited like Linux), and received
//! port-unreachable errors turned into [`Unreachable`] reports so a
//! connected socket can fail its next call with ECONNREFUSED.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ipv4::Addressed;
use crate::wire::{
    IcmpMessage, Ipv4Header, UdpHeader, ICMP_HEADER_LEN, ICMP_PORT_UNREACHABLE, IPV4_HEADER_LEN,
    PROTO_ICMP, PROTO_UDP,
};

/// How much of an undeliverable datagram an error quotes: Linux fills the
/// error up to 576 bytes (the minimum every host accepts) minus IP and ICMP headers.
pub const MAX_QUOTE: usize = 576 - 20 - ICMP_HEADER_LEN;

/// Limits on the errors we send, per destination and overall (Linux:
/// net.ipv4.icmp_ratelimit = 1 s per destination with a burst of 6,
/// icmp_msgs_per_sec = 1000 with icmp_msgs_burst = 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpRateLimit {
    pub per_peer_interval_ns: u64,
    pub per_peer_burst: u32,
    pub global_interval_ns: u64,
    pub global_burst: u32,
    /// Destinations tracked; the least recently limited one makes room.
    pub max_peers: usize,
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        IcmpRateLimit {
            per_peer_interval_ns: 1_000_000_000,
            per_peer_burst: 6,
            global_interval_ns: 1_000_000,
            global_burst: 50,
            max_peers: 1024,
        }
    }
}

/// A token bucket kept as nanoseconds of credit (Linux's xrlim_allow).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    credit_ns: u64,
    last: u64,
}

impl Bucket {
    fn full(now: u64, interval: u64, burst: u32) -> Bucket {
        Bucket {
            credit_ns: interval.saturating_mul(burst as u64),
            last: now,
        }
    }

    fn allow(&mut self, now: u64, interval: u64, burst: u32) -> bool {
        let cap = interval.saturating_mul(burst as u64);
        self.credit_ns = self
            .credit_ns
            .saturating_add(now.saturating_sub(self.last))
            .min(cap);
        self.last = now;
        if self.credit_ns >= interval {
            self.credit_ns -= interval;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IcmpCounters {
    pub echo_requests: u64,
    pub echo_replies_sent: u64,
    /// Echo requests to broadcast or multicast, ignored like Linux does by default.
    pub echo_broadcast_ignored: u64,
    pub unreachable_sent: u64,
    pub unreachable_rate_limited: u64,
    pub unreachable_received: u64,
    pub malformed: u64,
    pub other: u64,
}

/// A received "destination unreachable" for a UDP datagram we sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// ICMP code (3 = port unreachable).
    pub code: u8,
    /// Our end of the datagram (its source).
    pub local: SocketAddrV4,
    /// The peer that refused it (its destination).
    pub remote: SocketAddrV4,
}

impl Unreachable {
    /// The errno a connected socket reports for it (as Linux's icmp_err_convert).
    pub fn errno(&self) -> i32 {
        match self.code {
            0 | 6 | 7 | 11 | 12 => libc::ENETUNREACH,
            2 => libc::ENOPROTOOPT,
            ICMP_PORT_UNREACHABLE => libc::ECONNREFUSED,
            4 => libc::EMSGSIZE,
            9 | 10 | 13 => libc::EACCES,
            _ => libc::EHOSTUNREACH,
        }
    }
}

/// What a received ICMP message calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IcmpAction {
    /// Send this ICMP message back to the sender.
    Reply(Vec<u8>),
    /// Report to the socket that sent the quoted datagram.
    Report(Unreachable),
    None,
}

pub struct Icmp {
    limit: IcmpRateLimit,
    global: Bucket,
    peers: HashMap<Ipv4Addr, Bucket>,
    counters: IcmpCounters,
}

impl Icmp {
    pub fn new(limit: IcmpRateLimit) -> Self {
        Icmp {
            limit,
            global: Bucket::full(0, limit.global_interval_ns, limit.global_burst),
            peers: HashMap::new(),
            counters: IcmpCounters::default(),
        }
    }

    pub fn counters(&self) -> &IcmpCounters {
        &self.counters
    }

    /// Handles one ICMP message (the payload of an IPv4 datagram to us).
    pub fn receive(&mut self, addressed: Addressed, message: &[u8]) -> IcmpAction {
        let Ok(parsed) = IcmpMessage::parse(message) else {
            self.counters.malformed += 1;
            return IcmpAction::None;
        };
        match parsed {
            IcmpMessage::EchoRequest { ident, seq, data } => {
                self.counters.echo_requests += 1;
                if addressed != Addressed::Unicast {
                    self.counters.echo_broadcast_ignored += 1;
                    return IcmpAction::None;
                }
                // Same identifier, sequence and data: the reply is exactly the request's size.
                let reply = IcmpMessage::EchoReply { ident, seq, data };
                let mut bytes = vec![0u8; reply.len()];
                reply.write(&mut bytes);
                self.counters.echo_replies_sent += 1;
                IcmpAction::Reply(bytes)
            }
            IcmpMessage::DestinationUnreachable { code, original } => match quoted_udp(original) {
                Some((local, remote)) => {
                    self.counters.unreachable_received += 1;
                    IcmpAction::Report(Unreachable {
                        code,
                        local,
                        remote,
                    })
                }
                None => {
                    self.counters.malformed += 1;
                    IcmpAction::None
                }
            },
            IcmpMessage::EchoReply { .. } | IcmpMessage::Other { .. } => {
                self.counters.other += 1;
                IcmpAction::None
            }
        }
    }

    /// The port-unreachable error for a UDP datagram (`header`, `payload`)
    /// that no socket wanted, or `None` when none may be sent: never for
    /// broadcast or multicast, nor about ICMP, nor beyond the rate limit.
    pub fn port_unreachable(
        &mut self,
        now: u64,
        addressed: Addressed,
        header: &Ipv4Header,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        if addressed != Addressed::Unicast || header.protocol == PROTO_ICMP {
            return None;
        }
        if !self.allow(now, header.src) {
            self.counters.unreachable_rate_limited += 1;
            return None;
        }
        let quoted_payload = &payload[..payload.len().min(MAX_QUOTE - IPV4_HEADER_LEN)];
        let mut quote = vec![0u8; IPV4_HEADER_LEN + quoted_payload.len()];
        // The quoted header is rebuilt from the parsed one (options are not
        // kept; a reassembled datagram is quoted as its first fragment was).
        let original = Ipv4Header {
            header_len: IPV4_HEADER_LEN,
            more_fragments: false,
            fragment_offset: 0,
            total_len: IPV4_HEADER_LEN + payload.len(),
            ..*header
        };
        original.write(&mut quote);
        quote[IPV4_HEADER_LEN..].copy_from_slice(quoted_payload);
        let error = IcmpMessage::DestinationUnreachable {
            code: ICMP_PORT_UNREACHABLE,
            original: &quote,
        };
        let mut bytes = vec![0u8; error.len()];
        error.write(&mut bytes);
        self.counters.unreachable_sent += 1;
        Some(bytes)
    }

    fn allow(&mut self, now: u64, peer: Ipv4Addr) -> bool {
        let l = self.limit;
        if !self.peers.contains_key(&peer) && self.peers.len() >= l.max_peers {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(ip, _)| *ip)
            {
                self.peers.remove(&oldest);
            }
        }
        let bucket = self
            .peers
            .entry(peer)
            .or_insert_with(|| Bucket::full(now, l.per_peer_interval_ns, l.per_peer_burst));
        // Both limits must agree; the global one is only charged when the peer's allows.
        bucket.allow(now, l.per_peer_interval_ns, l.per_peer_burst)
            && self.global.allow(now, l.global_interval_ns, l.global_burst)
    }
}

/// (our address, their address) from a UDP datagram quoted in an ICMP error.
fn quoted_udp(original: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4)> {
    let (header, rest) = Ipv4Header::parse_quoted(original).ok()?;
    if header.protocol != PROTO_UDP || header.fragment_offset != 0 {
        return None;
    }
    let udp = UdpHeader::parse_quoted(rest).ok()?;
    Some((
        SocketAddrV4::new(header.src, udp.src_port),
        SocketAddrV4::new(header.dst, udp.dst_port),
    ))
}

#[cfg(test)]
mod tests;
