//! Wire formats: Ethernet II, ARP, IPv4, ICMPv4, UDP and the TCP header
//! (for resets only), parsed and emitted.
//!
//! The byte-level work is done by `smoltcp::wire` (bounds-checked views over
//! untrusted buffers), except the IPv4 and UDP checksums, which are summed
//! eight bytes at a time by [`Sum`] (smoltcp's go two bytes at a time); this
//! module turns those views into the stack's own domain types so no other
//! module names smoltcp. Every parser here returns
//! an error rather than panicking, whatever the input.
//!
//! Outbound frames are built as one `Vec<u8>` with room for the Ethernet
//! header in front ([`ETHERNET_HEADER_LEN`] bytes), which the neighbour
//! layer fills in once the next hop's MAC is known: no copy per layer.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet,
    TcpPacket, TcpSeqNumber, UdpPacket,
};

pub use crate::link::MacAddr;
pub use checksum::Sum;

mod checksum;

pub const ETHERNET_HEADER_LEN: usize = 14;
pub const ARP_LEN: usize = 28;
pub const IPV4_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
pub const ICMP_HEADER_LEN: usize = 8;
/// A TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Largest IPv4 datagram (the total-length field is 16 bits).
pub const IPV4_MAX_LEN: usize = 65535;
/// Largest UDP payload that fits one IPv4 datagram without options.
pub const UDP_MAX_PAYLOAD: usize = IPV4_MAX_LEN - IPV4_HEADER_LEN - UDP_HEADER_LEN;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IGMP: u8 = 2;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Why bytes from the wire were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than its header, or than the length its header claims.
    Truncated,
    /// A length field that contradicts itself (e.g. IPv4 total length below IHL).
    BadLength,
    /// IPv4 version other than 4.
    BadVersion,
    BadChecksum,
    /// Well-formed but not something this stack speaks (e.g. ARP for IPv6).
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::BadLength => "bad length field",
            WireError::BadVersion => "not IPv4",
            WireError::BadChecksum => "bad checksum",
            WireError::Unsupported => "unsupported",
        })
    }
}

fn to_mac(addr: EthernetAddress) -> MacAddr {
    MacAddr(addr.0)
}

fn from_mac(mac: MacAddr) -> EthernetAddress {
    EthernetAddress(mac.0)
}

/// The Ethernet multicast MAC an IPv4 group maps to (RFC 1112: 01:00:5e + low 23 bits).
pub fn multicast_mac(group: Ipv4Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    Other(u16),
}

impl EtherType {
    fn to_smoltcp(self) -> EthernetProtocol {
        match self {
            EtherType::Ipv4 => EthernetProtocol::Ipv4,
            EtherType::Arp => EthernetProtocol::Arp,
            EtherType::Other(v) => EthernetProtocol::from(v),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetHeader {
    /// Splits a received frame into its header and payload (which may carry
    /// padding up to the 60-byte minimum: upper layers trim by their own lengths).
    pub fn parse(frame: &[u8]) -> Result<(EthernetHeader, &[u8]), WireError> {
        let view = EthernetFrame::new_checked(frame).map_err(|_| WireError::Truncated)?;
        let ethertype = match view.ethertype() {
            EthernetProtocol::Ipv4 => EtherType::Ipv4,
            EthernetProtocol::Arp => EtherType::Arp,
            other => EtherType::Other(other.into()),
        };
        let header = EthernetHeader {
            dst: to_mac(view.dst_addr()),
            src: to_mac(view.src_addr()),
            ethertype,
        };
        Ok((header, &frame[ETHERNET_HEADER_LEN..]))
    }

    /// Writes this header over the first [`ETHERNET_HEADER_LEN`] bytes of `frame`.
    pub fn write(&self, frame: &mut [u8]) {
        let mut view = EthernetFrame::new_unchecked(&mut frame[..ETHERNET_HEADER_LEN]);
        view.set_dst_addr(from_mac(self.dst));
        view.set_src_addr(from_mac(self.src));
        view.set_ethertype(self.ethertype.to_smoltcp());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
}

/// An ARP message for IPv4 over Ethernet (the only kind the stack speaks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpMessage {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpMessage {
    pub fn parse(bytes: &[u8]) -> Result<ArpMessage, WireError> {
        let view = ArpPacket::new_checked(bytes).map_err(|_| WireError::Truncated)?;
        let repr = ArpRepr::parse(&view).map_err(|_| WireError::Unsupported)?;
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } = repr
        else {
            return Err(WireError::Unsupported);
        };
        let op = match operation {
            ArpOperation::Request => ArpOp::Request,
            ArpOperation::Reply => ArpOp::Reply,
            _ => return Err(WireError::Unsupported),
        };
        Ok(ArpMessage {
            op,
            sender_mac: to_mac(source_hardware_addr),
            sender_ip: source_protocol_addr,
            target_mac: to_mac(target_hardware_addr),
            target_ip: target_protocol_addr,
        })
    }

    /// A whole Ethernet frame carrying this message from `self.sender_mac` to `dst`.
    pub fn to_frame(&self, dst: MacAddr) -> Vec<u8> {
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + ARP_LEN];
        EthernetHeader {
            dst,
            src: self.sender_mac,
            ethertype: EtherType::Arp,
        }
        .write(&mut frame);
        let repr = ArpRepr::EthernetIpv4 {
            operation: match self.op {
                ArpOp::Request => ArpOperation::Request,
                ArpOp::Reply => ArpOperation::Reply,
            },
            source_hardware_addr: from_mac(self.sender_mac),
            source_protocol_addr: self.sender_ip,
            target_hardware_addr: from_mac(self.target_mac),
            target_protocol_addr: self.target_ip,
        };
        repr.emit(&mut ArpPacket::new_unchecked(
            &mut frame[ETHERNET_HEADER_LEN..],
        ));
        frame
    }
}

/// The fields of an IPv4 header the stack acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Offset of this fragment's payload in the original datagram, in bytes.
    pub fragment_offset: usize,
    pub header_len: usize,
    pub total_len: usize,
}

impl Ipv4Header {
    /// Checks version, IHL, total length against the buffer and the header
    /// checksum; returns the header and the payload (link padding removed).
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), WireError> {
        if packet.len() < IPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let view = Ipv4Packet::new_unchecked(packet);
        if view.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = view.header_len() as usize;
        let total_len = view.total_len() as usize;
        if header_len < IPV4_HEADER_LEN || total_len < header_len {
            return Err(WireError::BadLength);
        }
        if packet.len() < total_len {
            return Err(WireError::Truncated);
        }
        // new_checked repeats the checks above; it is what makes the
        // accessors below panic-free, so keep it rather than trust our own.
        let view = Ipv4Packet::new_checked(packet).map_err(|_| WireError::BadLength)?;
        if !Sum::default().add_bytes(&packet[..header_len]).verifies() {
            return Err(WireError::BadChecksum);
        }
        let header = Ipv4Header {
            src: view.src_addr(),
            dst: view.dst_addr(),
            protocol: view.next_header().into(),
            ttl: view.hop_limit(),
            ident: view.ident(),
            dont_fragment: view.dont_frag(),
            more_fragments: view.more_frags(),
            fragment_offset: view.frag_offset() as usize,
            header_len,
            total_len,
        };
        Ok((header, &packet[header_len..total_len]))
    }

    /// Parses the start of a datagram quoted in an ICMP error: the header
    /// must be whole and its checksum right, but the payload is cut short
    /// (usually to 8 bytes), so the total length is not checked against it.
    pub fn parse_quoted(quoted: &[u8]) -> Result<(Ipv4Header, &[u8]), WireError> {
        if quoted.len() < IPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let view = Ipv4Packet::new_unchecked(quoted);
        if view.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = view.header_len() as usize;
        if header_len < IPV4_HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if quoted.len() < header_len {
            return Err(WireError::Truncated);
        }
        // Only the header's own bytes are summed, so a cut payload is fine.
        if !Sum::default().add_bytes(&quoted[..header_len]).verifies() {
            return Err(WireError::BadChecksum);
        }
        let header = Ipv4Header {
            src: view.src_addr(),
            dst: view.dst_addr(),
            protocol: view.next_header().into(),
            ttl: view.hop_limit(),
            ident: view.ident(),
            dont_fragment: view.dont_frag(),
            more_fragments: view.more_frags(),
            fragment_offset: view.frag_offset() as usize,
            header_len,
            total_len: view.total_len() as usize,
        };
        Ok((header, &quoted[header_len..]))
    }

    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.fragment_offset != 0
    }

    /// Writes a 20-byte header (no options) with this header's fields and
    /// its checksum into `buf[..20]`; `total_len` must already be right.
    pub fn write(&self, buf: &mut [u8]) {
        let mut view = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER_LEN]);
        view.set_version(4);
        view.set_header_len(IPV4_HEADER_LEN as u8);
        view.set_dscp(0);
        view.set_ecn(0);
        view.set_total_len(self.total_len as u16);
        view.set_ident(self.ident);
        view.clear_flags();
        view.set_dont_frag(self.dont_fragment);
        view.set_more_frags(self.more_fragments);
        view.set_frag_offset(self.fragment_offset as u16);
        view.set_hop_limit(self.ttl);
        view.set_next_header(IpProtocol::from(self.protocol));
        view.set_src_addr(self.src);
        view.set_dst_addr(self.dst);
        view.set_checksum(0);
        let checksum = Sum::default().add_bytes(&buf[..IPV4_HEADER_LEN]).checksum();
        buf[10..12].copy_from_slice(&checksum.to_be_bytes());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpHeader {
    /// Parses a UDP segment carried from `src` to `dst`: the length field
    /// must fit the buffer (bytes beyond it are ignored) and the checksum
    /// must verify unless it is zero ("not computed", allowed over IPv4).
    pub fn parse(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        segment: &[u8],
    ) -> Result<(UdpHeader, &[u8]), WireError> {
        let view = UdpPacket::new_checked(segment).map_err(|_| WireError::Truncated)?;
        let len = view.len();
        if view.checksum() != 0
            && !Sum::default()
                .pseudo_header(src, dst, PROTO_UDP, len)
                .add_bytes(&segment[..len as usize])
                .verifies()
        {
            return Err(WireError::BadChecksum);
        }
        let header = UdpHeader {
            src_port: view.src_port(),
            dst_port: view.dst_port(),
        };
        Ok((header, &segment[UDP_HEADER_LEN..view.len() as usize]))
    }

    /// The ports of a UDP header quoted in an ICMP error (8 bytes needed).
    pub fn parse_quoted(quoted: &[u8]) -> Result<UdpHeader, WireError> {
        if quoted.len() < UDP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let view = UdpPacket::new_unchecked(quoted);
        Ok(UdpHeader {
            src_port: view.src_port(),
            dst_port: view.dst_port(),
        })
    }

    /// Writes header and checksum into `segment`, whose payload is already in place.
    pub fn write(src: SocketAddrV4, dst: SocketAddrV4, segment: &mut [u8]) {
        let len = segment.len() as u16;
        let mut view = UdpPacket::new_unchecked(&mut *segment);
        view.set_src_port(src.port());
        view.set_dst_port(dst.port());
        view.set_len(len);
        view.set_checksum(0);
        let sum = Sum::default()
            .pseudo_header(*src.ip(), *dst.ip(), PROTO_UDP, len)
            .add_bytes(segment);
        // A computed zero goes as all ones: zero means "no checksum" (RFC 768).
        let checksum = match sum.checksum() {
            0 => 0xffff,
            c => c,
        };
        segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// The control bits of a TCP header the stack acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The fields of a TCP header the stack reads (to refuse a segment) and writes
/// (a reset: no options, no payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
}

impl TcpHeader {
    /// Parses a TCP segment carried from `src` to `dst`: the data offset must
    /// fit the buffer and the checksum over the pseudo-header must verify
    /// (TCP has no "not computed" value). Returns the header and the payload.
    pub fn parse(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        segment: &[u8],
    ) -> Result<(TcpHeader, &[u8]), WireError> {
        let view = TcpPacket::new_checked(segment).map_err(|_| WireError::Truncated)?;
        if !view.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
            return Err(WireError::BadChecksum);
        }
        let header = TcpHeader {
            src_port: view.src_port(),
            dst_port: view.dst_port(),
            seq: view.seq_number().0 as u32,
            ack: view.ack_number().0 as u32,
            flags: TcpFlags {
                syn: view.syn(),
                ack: view.ack(),
                fin: view.fin(),
                rst: view.rst(),
            },
            window: view.window_len(),
        };
        Ok((header, &segment[view.header_len() as usize..]))
    }

    /// Writes a 20-byte header (no options) and the checksum into `segment`,
    /// whose payload (after [`TCP_HEADER_LEN`] bytes) is already in place.
    pub fn write(&self, src: Ipv4Addr, dst: Ipv4Addr, segment: &mut [u8]) {
        segment[..TCP_HEADER_LEN].fill(0);
        let mut view = TcpPacket::new_unchecked(segment);
        view.set_src_port(self.src_port);
        view.set_dst_port(self.dst_port);
        view.set_seq_number(TcpSeqNumber(self.seq as i32));
        view.set_ack_number(TcpSeqNumber(self.ack as i32));
        view.set_header_len(TCP_HEADER_LEN as u8);
        view.set_syn(self.flags.syn);
        view.set_ack(self.flags.ack);
        view.set_fin(self.flags.fin);
        view.set_rst(self.flags.rst);
        view.set_window_len(self.window);
        view.set_urgent_at(0);
        view.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    }
}

/// The ICMP messages the stack acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpMessage<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// `original` is the start of the datagram that could not be delivered
    /// (its IP header and at least 8 bytes of its payload).
    DestinationUnreachable {
        code: u8,
        original: &'a [u8],
    },
    Other {
        kind: u8,
        code: u8,
    },
}

/// ICMP destination-unreachable code for "port unreachable".
pub const ICMP_PORT_UNREACHABLE: u8 = 3;

impl<'a> IcmpMessage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<IcmpMessage<'a>, WireError> {
        let view = Icmpv4Packet::new_checked(bytes).map_err(|_| WireError::Truncated)?;
        if !view.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let data = &bytes[ICMP_HEADER_LEN..];
        Ok(match view.msg_type() {
            Icmpv4Message::EchoRequest => IcmpMessage::EchoRequest {
                ident: view.echo_ident(),
                seq: view.echo_seq_no(),
                data,
            },
            Icmpv4Message::EchoReply => IcmpMessage::EchoReply {
                ident: view.echo_ident(),
                seq: view.echo_seq_no(),
                data,
            },
            Icmpv4Message::DstUnreachable => IcmpMessage::DestinationUnreachable {
                code: view.msg_code(),
                original: data,
            },
            other => IcmpMessage::Other {
                kind: other.into(),
                code: view.msg_code(),
            },
        })
    }

    /// Length of this message on the wire.
    pub fn len(&self) -> usize {
        ICMP_HEADER_LEN
            + match self {
                IcmpMessage::EchoRequest { data, .. } | IcmpMessage::EchoReply { data, .. } => {
                    data.len()
                }
                IcmpMessage::DestinationUnreachable { original, .. } => original.len(),
                IcmpMessage::Other { .. } => 0,
            }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message with its checksum into `buf[..self.len()]`.
    pub fn write(&self, buf: &mut [u8]) {
        let buf = &mut buf[..self.len()];
        buf[..ICMP_HEADER_LEN].fill(0);
        let mut view = Icmpv4Packet::new_unchecked(&mut *buf);
        match *self {
            IcmpMessage::EchoRequest { ident, seq, data }
            | IcmpMessage::EchoReply { ident, seq, data } => {
                let kind = if matches!(self, IcmpMessage::EchoRequest { .. }) {
                    Icmpv4Message::EchoRequest
                } else {
                    Icmpv4Message::EchoReply
                };
                view.set_msg_type(kind);
                view.set_msg_code(0);
                view.set_echo_ident(ident);
                view.set_echo_seq_no(seq);
                view.data_mut()[..data.len()].copy_from_slice(data);
            }
            IcmpMessage::DestinationUnreachable { code, original } => {
                view.set_msg_type(Icmpv4Message::DstUnreachable);
                view.set_msg_code(Icmpv4DstUnreachable::from(code).into());
                view.data_mut()[..original.len()].copy_from_slice(original);
            }
            IcmpMessage::Other { kind, code } => {
                view.set_msg_type(Icmpv4Message::from(kind));
                view.set_msg_code(code);
            }
        }
        view.fill_checksum();
    }
}

#[cfg(test)]
mod tests;
