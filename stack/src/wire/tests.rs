//! Tests of the wire formats, malformed input first.

use super::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

fn ipv4(payload_len: usize) -> Vec<u8> {
    let mut p = vec![0u8; IPV4_HEADER_LEN + payload_len];
    let h = Ipv4Header {
        src: A,
        dst: B,
        protocol: PROTO_UDP,
        ttl: 64,
        ident: 7,
        dont_fragment: false,
        more_fragments: false,
        fragment_offset: 0,
        header_len: IPV4_HEADER_LEN,
        total_len: p.len(),
    };
    h.write(&mut p);
    p
}

#[test]
fn ipv4_header_round_trips_and_padding_is_trimmed() {
    let mut p = ipv4(4);
    p.extend_from_slice(&[0xee; 10]); // Ethernet padding
    let (h, payload) = Ipv4Header::parse(&p).unwrap();
    assert_eq!(
        (h.src, h.dst, h.protocol, h.ttl, h.ident),
        (A, B, PROTO_UDP, 64, 7)
    );
    assert_eq!(payload.len(), 4);
}

#[test]
fn ipv4_rejects_bad_version_ihl_length_and_checksum() {
    let good = ipv4(8);
    assert_eq!(
        Ipv4Header::parse(&good[..19]).unwrap_err(),
        WireError::Truncated
    );
    let mut v6 = good.clone();
    v6[0] = 0x65;
    assert_eq!(Ipv4Header::parse(&v6).unwrap_err(), WireError::BadVersion);
    let mut ihl = good.clone();
    ihl[0] = 0x44;
    assert_eq!(Ipv4Header::parse(&ihl).unwrap_err(), WireError::BadLength);
    let mut long = good.clone();
    long[3] = 200; // total length beyond the buffer
    assert_eq!(Ipv4Header::parse(&long).unwrap_err(), WireError::Truncated);
    let mut short = good.clone();
    short[2] = 0;
    short[3] = 10; // total length below the header
    assert_eq!(Ipv4Header::parse(&short).unwrap_err(), WireError::BadLength);
    let mut sum = good.clone();
    sum[8] ^= 1; // TTL changed, checksum not
    assert_eq!(Ipv4Header::parse(&sum).unwrap_err(), WireError::BadChecksum);
}

#[test]
fn udp_checksum_is_computed_verified_and_zero_means_none() {
    let (sa, sb) = (SocketAddrV4::new(A, 1000), SocketAddrV4::new(B, 2000));
    let mut seg = vec![0u8; UDP_HEADER_LEN + 5];
    seg[UDP_HEADER_LEN..].copy_from_slice(b"hello");
    UdpHeader::write(sa, sb, &mut seg);
    let (h, payload) = UdpHeader::parse(A, B, &seg).unwrap();
    assert_eq!(
        (h.src_port, h.dst_port, payload),
        (1000, 2000, &b"hello"[..])
    );
    // The pseudo-header covers the addresses: delivered to the wrong IP fails.
    assert_eq!(
        UdpHeader::parse(A, A, &seg).unwrap_err(),
        WireError::BadChecksum
    );
    let mut corrupt = seg.clone();
    corrupt[UDP_HEADER_LEN] ^= 0x20;
    assert_eq!(
        UdpHeader::parse(A, B, &corrupt).unwrap_err(),
        WireError::BadChecksum
    );
    corrupt[6] = 0;
    corrupt[7] = 0;
    assert_eq!(UdpHeader::parse(A, B, &corrupt).unwrap().1, b"Hello");
    let mut long = seg.clone();
    long[5] = 50; // length field beyond the buffer
    assert_eq!(
        UdpHeader::parse(A, B, &long).unwrap_err(),
        WireError::Truncated
    );
    assert_eq!(
        UdpHeader::parse(A, B, &seg[..7]).unwrap_err(),
        WireError::Truncated
    );
}

#[test]
fn udp_checksums_agree_with_smoltcps_for_every_length() {
    // An independent implementation: what smoltcp writes, ours must write and accept.
    let (sa, sb) = (SocketAddrV4::new(A, 40_000), SocketAddrV4::new(B, 7));
    for len in 0..300 {
        let mut ours = vec![0u8; UDP_HEADER_LEN + len];
        for (i, b) in ours[UDP_HEADER_LEN..].iter_mut().enumerate() {
            *b = (i * 31 + len) as u8;
        }
        let mut theirs = ours.clone();
        UdpHeader::write(sa, sb, &mut ours);
        let mut view = UdpPacket::new_unchecked(&mut theirs[..]);
        view.set_src_port(sa.port());
        view.set_dst_port(sb.port());
        view.set_len((UDP_HEADER_LEN + len) as u16);
        view.fill_checksum(&IpAddress::Ipv4(A), &IpAddress::Ipv4(B));
        assert_eq!(ours, theirs, "{len} bytes of payload");
        assert!(UdpHeader::parse(A, B, &theirs).is_ok(), "{len} bytes");
    }
}

#[test]
fn ipv4_header_checksums_agree_with_smoltcps() {
    for (ident, ttl, total_len) in [(0, 1, 20), (7, 64, 1500), (0xffff, 255, 65535)] {
        let h = Ipv4Header {
            src: A,
            dst: Ipv4Addr::new(224, 1, 2, 3),
            protocol: PROTO_UDP,
            ttl,
            ident,
            dont_fragment: ident == 7,
            more_fragments: ident == 0,
            fragment_offset: 8,
            header_len: IPV4_HEADER_LEN,
            total_len,
        };
        let mut ours = [0u8; IPV4_HEADER_LEN];
        h.write(&mut ours);
        let mut theirs = ours;
        Ipv4Packet::new_unchecked(&mut theirs[..]).fill_checksum();
        assert_eq!(ours, theirs, "ident {ident}");
        assert!(Ipv4Packet::new_unchecked(&ours[..]).verify_checksum());
    }
}

#[test]
fn a_udp_checksum_that_sums_to_zero_goes_as_all_ones() {
    let (sa, sb) = (SocketAddrV4::new(A, 1), SocketAddrV4::new(B, 2));
    // Two payload bytes chosen so that the complemented sum is zero.
    let mut seg = vec![0u8; UDP_HEADER_LEN + 2];
    UdpHeader::write(sa, sb, &mut seg);
    let c = u16::from_be_bytes([seg[6], seg[7]]);
    seg[UDP_HEADER_LEN..].copy_from_slice(&c.to_be_bytes());
    UdpHeader::write(sa, sb, &mut seg);
    assert_eq!(&seg[6..8], &[0xff, 0xff]);
    assert!(UdpHeader::parse(A, B, &seg).is_ok());
}

#[test]
fn arp_round_trips_through_a_frame() {
    let msg = ArpMessage {
        op: ArpOp::Request,
        sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        sender_ip: A,
        target_mac: MacAddr([0; 6]),
        target_ip: B,
    };
    let frame = msg.to_frame(MacAddr::BROADCAST);
    let (eth, payload) = EthernetHeader::parse(&frame).unwrap();
    assert_eq!(
        (eth.dst, eth.src, eth.ethertype),
        (MacAddr::BROADCAST, msg.sender_mac, EtherType::Arp)
    );
    assert_eq!(ArpMessage::parse(payload).unwrap(), msg);
    assert_eq!(
        ArpMessage::parse(&payload[..27]).unwrap_err(),
        WireError::Truncated
    );
    let mut ipv6 = payload.to_vec();
    ipv6[2] = 0x86;
    ipv6[3] = 0xdd;
    assert_eq!(
        ArpMessage::parse(&ipv6).unwrap_err(),
        WireError::Unsupported
    );
}

#[test]
fn icmp_echo_round_trips_and_checksum_is_checked() {
    let msg = IcmpMessage::EchoRequest {
        ident: 9,
        seq: 3,
        data: b"ping",
    };
    let mut buf = vec![0u8; msg.len()];
    msg.write(&mut buf);
    assert_eq!(IcmpMessage::parse(&buf).unwrap(), msg);
    buf[9] ^= 1;
    assert_eq!(
        IcmpMessage::parse(&buf).unwrap_err(),
        WireError::BadChecksum
    );
    assert_eq!(
        IcmpMessage::parse(&buf[..7]).unwrap_err(),
        WireError::Truncated
    );
}

#[test]
fn multicast_mac_keeps_low_23_bits() {
    assert_eq!(
        multicast_mac(Ipv4Addr::new(239, 129, 2, 3)).0,
        [1, 0, 0x5e, 1, 2, 3]
    );
}
