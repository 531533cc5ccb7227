//! Tests of ICMP echo, errors and their rate limit.

use super::*;
use crate::ipv4::Ipv4Sender;
use IPV4_HEADER_LEN;

const US: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const SECOND: u64 = 1_000_000_000;

fn echo_request(data: &[u8]) -> Vec<u8> {
    let msg = IcmpMessage::EchoRequest {
        ident: 0x1234,
        seq: 9,
        data,
    };
    let mut bytes = vec![0u8; msg.len()];
    msg.write(&mut bytes);
    bytes
}

fn udp_datagram(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> (Ipv4Header, Vec<u8>) {
    let mut segment = vec![0u8; 8 + payload_len];
    UdpHeader::write(
        SocketAddrV4::new(src, 40000),
        SocketAddrV4::new(dst, 9),
        &mut segment,
    );
    let header = Ipv4Sender::new(1500, 5).header(src, dst, PROTO_UDP, 64, segment.len());
    (header, segment)
}

#[test]
fn echo_request_gets_a_reply_of_the_same_size() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    let request = echo_request(b"abcdefgh");
    let IcmpAction::Reply(reply) = icmp.receive(Addressed::Unicast, &request) else {
        panic!("no reply")
    };
    assert_eq!(reply.len(), request.len());
    assert_eq!(
        IcmpMessage::parse(&reply).unwrap(),
        IcmpMessage::EchoReply {
            ident: 0x1234,
            seq: 9,
            data: b"abcdefgh"
        }
    );
}

#[test]
fn broadcast_pings_and_bad_checksums_get_nothing() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    assert_eq!(
        icmp.receive(Addressed::Broadcast, &echo_request(b"x")),
        IcmpAction::None
    );
    let mut corrupt = echo_request(b"x");
    corrupt[8] ^= 0xff;
    assert_eq!(icmp.receive(Addressed::Unicast, &corrupt), IcmpAction::None);
    assert_eq!(
        icmp.receive(Addressed::Unicast, &[8, 0, 0]),
        IcmpAction::None
    );
    assert_eq!(icmp.counters().echo_broadcast_ignored, 1);
    assert_eq!(icmp.counters().malformed, 2);
}

#[test]
fn port_unreachable_quotes_the_datagram_and_round_trips_to_a_report() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    // We (US) sent to PEER:9; PEER answers with this error.
    let (header, segment) = udp_datagram(US, PEER, 20);
    let error = icmp
        .port_unreachable(0, Addressed::Unicast, &header, &segment)
        .unwrap();
    assert_eq!(
        error.len(),
        ICMP_HEADER_LEN + IPV4_HEADER_LEN + segment.len()
    );
    let report = icmp.receive(Addressed::Unicast, &error);
    let expected = Unreachable {
        code: ICMP_PORT_UNREACHABLE,
        local: SocketAddrV4::new(US, 40000),
        remote: SocketAddrV4::new(PEER, 9),
    };
    assert_eq!(report, IcmpAction::Report(expected));
    assert_eq!(expected.errno(), libc::ECONNREFUSED);
}

#[test]
fn port_unreachable_quote_is_capped() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    let (header, segment) = udp_datagram(PEER, US, 4000);
    let error = icmp
        .port_unreachable(0, Addressed::Unicast, &header, &segment)
        .unwrap();
    assert_eq!(error.len() + IPV4_HEADER_LEN, 576);
}

#[test]
fn no_errors_about_broadcast_or_multicast_datagrams() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    let (header, segment) = udp_datagram(PEER, US, 4);
    assert!(icmp
        .port_unreachable(0, Addressed::Broadcast, &header, &segment)
        .is_none());
    assert!(icmp
        .port_unreachable(0, Addressed::Multicast, &header, &segment)
        .is_none());
}

#[test]
fn errors_are_rate_limited_per_peer_like_linux() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    let (header, segment) = udp_datagram(PEER, US, 4);
    let sent = (0..100)
        .filter(|_| {
            icmp.port_unreachable(0, Addressed::Unicast, &header, &segment)
                .is_some()
        })
        .count();
    assert_eq!(sent, 6, "a burst of 6");
    assert_eq!(icmp.counters().unreachable_rate_limited, 94);
    assert!(icmp
        .port_unreachable(SECOND / 2, Addressed::Unicast, &header, &segment)
        .is_none());
    assert!(
        icmp.port_unreachable(SECOND, Addressed::Unicast, &header, &segment)
            .is_some(),
        "one per second after"
    );
    // Another peer has its own budget.
    let (other, segment) = udp_datagram(Ipv4Addr::new(10, 77, 2, 3), US, 4);
    assert!(icmp
        .port_unreachable(SECOND, Addressed::Unicast, &other, &segment)
        .is_some());
}

#[test]
fn the_global_limit_caps_many_peers() {
    let limit = IcmpRateLimit {
        global_burst: 10,
        ..Default::default()
    };
    let mut icmp = Icmp::new(limit);
    let sent = (0..100u8)
        .filter(|i| {
            let (h, s) = udp_datagram(Ipv4Addr::new(10, 77, 4, *i), US, 4);
            icmp.port_unreachable(0, Addressed::Unicast, &h, &s)
                .is_some()
        })
        .count();
    assert_eq!(sent, 10);
}

#[test]
fn unreachable_quoting_garbage_is_counted_not_reported() {
    let mut icmp = Icmp::new(IcmpRateLimit::default());
    let quote = [0x45u8; 24];
    let error = IcmpMessage::DestinationUnreachable {
        code: 3,
        original: &quote,
    };
    let mut bytes = vec![0u8; error.len()];
    error.write(&mut bytes);
    assert_eq!(icmp.receive(Addressed::Unicast, &bytes), IcmpAction::None);
    assert_eq!(icmp.counters().malformed, 1);
}
