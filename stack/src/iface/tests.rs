//! Interface tests: two interfaces joined by an in-memory wire that can
//! drop, duplicate and reorder frames, plus malformed and random input.

use super::*;
use crate::udp::BindOptions;
use crate::wire::{ArpOp, TcpFlags, IPV4_HEADER_LEN};

const SECOND: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

/// xorshift64*: a seeded generator, so every run sees the same "random" wire.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }
}

/// Two interfaces on one segment. Impairments apply to every frame in both directions.
struct Wire {
    a: Interface,
    b: Interface,
    rng: Rng,
    drop_per_mille: u64,
    dup_per_mille: u64,
    reorder: bool,
    now: u64,
    /// Every frame that crossed, for replay into the never-panics test.
    seen: Vec<Vec<u8>>,
}

impl Wire {
    fn new() -> Wire {
        Wire::with(
            InterfaceConfig::new(A_MAC, A_IP, 24),
            InterfaceConfig::new(B_MAC, B_IP, 24),
        )
    }

    fn with(a: InterfaceConfig, b: InterfaceConfig) -> Wire {
        Wire {
            a: Interface::new(a),
            b: Interface::new(b),
            rng: Rng(0x5eed_1234_abcd_0001),
            drop_per_mille: 0,
            dup_per_mille: 0,
            reorder: false,
            now: 0,
            seen: Vec::new(),
        }
    }

    fn impair(&mut self, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for frame in frames {
            self.seen.push(frame.clone());
            if self.rng.per_mille(self.drop_per_mille) {
                continue;
            }
            if self.rng.per_mille(self.dup_per_mille) {
                out.push(frame.clone());
            }
            out.push(frame);
        }
        if self.reorder {
            for i in (1..out.len()).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                out.swap(i, j);
            }
        }
        out
    }

    /// Carries frames both ways until none are left, advancing time 1 ms per
    /// round and running timers, for at most `rounds` rounds.
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.now += MS;
            self.a.poll(self.now);
            self.b.poll(self.now);
            let to_b = self.a.take_frames();
            let to_a = self.b.take_frames();
            if to_a.is_empty() && to_b.is_empty() {
                return;
            }
            for frame in self.impair(to_b) {
                self.b.receive(self.now, &frame);
            }
            for frame in self.impair(to_a) {
                self.a.receive(self.now, &frame);
            }
        }
    }

    /// Lets `seconds` of timers run (ARP retries, reassembly timeouts).
    fn wait(&mut self, seconds: u64) {
        for _ in 0..seconds * 10 {
            self.now += 100 * MS;
            self.a.poll(self.now);
            self.b.poll(self.now);
            self.run(10);
        }
    }
}

fn bind(iface: &mut Interface, port: u16) -> SocketId {
    let id = iface.sockets_mut().open();
    iface
        .sockets_mut()
        .bind(
            id,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            BindOptions::default(),
        )
        .unwrap();
    id
}

fn received(iface: &mut Interface, id: SocketId) -> Vec<Datagram> {
    std::iter::from_fn(|| iface.recv_udp(id).unwrap()).collect()
}

/// A payload that says which datagram it is and can be checked for damage.
fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8)
        .collect();
    if len >= 4 {
        p[..4].copy_from_slice(&seq.to_be_bytes());
    }
    p
}

#[test]
fn arp_resolves_then_udp_flows_both_ways() {
    let mut w = Wire::new();
    let b_sock = bind(&mut w.b, 7);
    let a_sock = w.a.sockets_mut().open();
    w.a.send_udp(0, a_sock, Some(SocketAddrV4::new(B_IP, 7)), b"hello")
        .unwrap();
    let first = w.a.take_frames();
    assert_eq!(first.len(), 1);
    let (eth, arp) = EthernetHeader::parse(&first[0]).unwrap();
    assert_eq!(
        (eth.dst, eth.ethertype),
        (MacAddr::BROADCAST, EtherType::Arp)
    );
    assert_eq!(ArpMessage::parse(arp).unwrap().op, ArpOp::Request);
    for frame in first {
        w.b.receive(0, &frame);
    }
    w.run(10);
    let got = received(&mut w.b, b_sock);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].data.as_slice(), *got[0].from.ip(), got[0].to),
        (&b"hello"[..], A_IP, B_IP)
    );
    let reply_to = got[0].from;
    w.b.send_udp(w.now, b_sock, Some(reply_to), b"world")
        .unwrap();
    let frames = w.b.take_frames();
    assert_eq!(
        frames.len(),
        1,
        "B learned A's MAC from its request: no ARP needed"
    );
    for frame in frames {
        w.a.receive(w.now, &frame);
    }
    assert_eq!(received(&mut w.a, a_sock)[0].data, b"world");
    assert_eq!(
        w.a.counters().total_dropped() + w.b.counters().total_dropped(),
        0
    );
}

#[test]
fn large_datagrams_are_fragmented_and_reassembled_end_to_end() {
    let mut w = Wire::new();
    let b_sock = bind(&mut w.b, 7);
    let a_sock = w.a.sockets_mut().open();
    for (seq, len) in [
        (1u32, 1472usize),
        (2, 1473),
        (3, 4000),
        (4, UDP_MAX_PAYLOAD),
    ] {
        w.a.send_udp(
            w.now,
            a_sock,
            Some(SocketAddrV4::new(B_IP, 7)),
            &payload(seq, len),
        )
        .unwrap();
    }
    w.run(20);
    let got = received(&mut w.b, b_sock);
    let lens: Vec<_> = got.iter().map(|d| d.data.len()).collect();
    assert_eq!(lens, vec![1472, 1473, 4000, UDP_MAX_PAYLOAD]);
    for (d, seq) in got.iter().zip(1..) {
        assert_eq!(d.data, payload(seq, d.data.len()));
    }
    assert_eq!(w.b.reassembler().counters().reassembled, 3);
    assert_eq!(
        w.a.send_udp(
            w.now,
            a_sock,
            Some(SocketAddrV4::new(B_IP, 7)),
            &vec![0; UDP_MAX_PAYLOAD + 1]
        ),
        Err(SendError::MessageTooLong)
    );
}

#[test]
fn datagrams_survive_loss_duplication_and_reordering_intact() {
    let mut w = Wire::new();
    w.drop_per_mille = 100;
    w.dup_per_mille = 100;
    w.reorder = true;
    let b_sock = bind(&mut w.b, 7);
    let a_sock = w.a.sockets_mut().open();
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    for seq in 0..300u32 {
        let len = 4 + w.rng.below(6000) as usize;
        sizes.push(len);
        w.a.send_udp(
            w.now,
            a_sock,
            Some(SocketAddrV4::new(B_IP, 7)),
            &payload(seq, len),
        )
        .unwrap();
        w.run(5);
        got.extend(received(&mut w.b, b_sock));
    }
    w.wait(31); // past the reassembly timeout
    got.extend(received(&mut w.b, b_sock));
    assert_eq!(w.b.counters().dropped(DropReason::SocketQueueFull), 0);
    let mut seqs = std::collections::HashSet::new();
    for d in &got {
        let seq = u32::from_be_bytes(d.data[..4].try_into().unwrap());
        assert!(seq < 300);
        assert_eq!(
            d.data,
            payload(seq, sizes[seq as usize]),
            "datagram {seq} damaged"
        );
        seqs.insert(seq);
    }
    // 10% frame loss costs a multi-fragment datagram more than a small one; most still arrive.
    assert!(seqs.len() > 150, "only {} of 300 arrived", seqs.len());
    assert!(seqs.len() < 300, "the wire was meant to lose some");
    assert!(
        w.b.reassembler().counters().duplicates > 0,
        "and to duplicate some fragments"
    );
    let (in_progress, _) = w.b.reassembler().in_progress();
    assert_eq!(in_progress, 0, "incomplete datagrams timed out");
    assert!(w.b.reassembler().counters().timed_out > 0);
}

#[test]
fn ping_is_answered_with_an_echo_reply() {
    let mut w = Wire::new();
    w.b.ping(0, A_IP, 77, 1, b"abcdefghijklmnop").unwrap();
    w.run(10);
    assert_eq!(w.a.icmp().counters().echo_replies_sent, 1);
    assert_eq!(w.b.icmp().counters().other, 1, "the reply came back");
}

#[test]
fn a_closed_port_refuses_and_the_connected_sender_hears_econnrefused() {
    let mut w = Wire::new();
    let a_sock = w.a.sockets_mut().open();
    w.a.connect_udp(a_sock, SocketAddrV4::new(B_IP, 9)).unwrap();
    w.a.send_udp(0, a_sock, None, b"anyone?").unwrap();
    w.run(10);
    assert_eq!(w.b.counters().dropped(DropReason::NoSocket), 1);
    assert_eq!(w.b.icmp().counters().unreachable_sent, 1);
    let Some(Event::Unreachable(report)) = w.a.next_event() else {
        panic!("no unreachable event")
    };
    assert_eq!(report.remote, SocketAddrV4::new(B_IP, 9));
    assert_eq!(
        w.a.recv_udp(a_sock).unwrap_err().errno(),
        libc::ECONNREFUSED
    );
    assert!(
        w.a.send_udp(w.now, a_sock, None, b"again").is_ok(),
        "the error is reported once"
    );
}

#[test]
fn off_subnet_goes_through_the_gateway_and_no_route_is_enetunreach() {
    let far = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 9), 7);
    let a = InterfaceConfig {
        gateway: Some(B_IP),
        ..InterfaceConfig::new(A_MAC, A_IP, 24)
    };
    let mut w = Wire::with(a, InterfaceConfig::new(B_MAC, B_IP, 24));
    let a_sock = w.a.sockets_mut().open();
    w.a.send_udp(0, a_sock, Some(far), b"via gw").unwrap();
    let frames = w.a.take_frames();
    let (_, arp) = EthernetHeader::parse(&frames[0]).unwrap();
    assert_eq!(
        ArpMessage::parse(arp).unwrap().target_ip,
        B_IP,
        "resolves the gateway, not the peer"
    );
    for f in frames {
        w.b.receive(w.now, &f);
    }
    for f in w.b.take_frames() {
        w.a.receive(w.now, &f);
    }
    let out = w.a.take_frames();
    let (eth, ip) = EthernetHeader::parse(&out[0]).unwrap();
    assert_eq!(eth.dst, B_MAC);
    assert_eq!(Ipv4Header::parse(ip).unwrap().0.dst, *far.ip());

    let mut no_gw = Wire::new();
    let id = no_gw.a.sockets_mut().open();
    let err = no_gw.a.send_udp(0, id, Some(far), b"x").unwrap_err();
    assert_eq!(err.errno(), libc::ENETUNREACH);
    assert_eq!(
        no_gw.a.connect_udp(id, far).unwrap_err().errno(),
        libc::ENETUNREACH
    );
}

#[test]
fn a_silent_next_hop_becomes_ehostunreach() {
    let mut w = Wire::new();
    let ghost = SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 50), 7);
    let id = w.a.sockets_mut().open();
    w.a.connect_udp(id, ghost).unwrap();
    w.a.send_udp(0, id, None, b"hello?").unwrap();
    w.wait(5);
    assert_eq!(w.a.next_event(), Some(Event::HostUnreachable(*ghost.ip())));
    assert_eq!(w.a.counters().dropped(DropReason::Unresolved), 1);
    assert_eq!(w.a.neighbours().counters().requests_sent, 3);
    assert_eq!(
        w.a.send_udp(w.now, id, None, b"x").unwrap_err().errno(),
        libc::EHOSTUNREACH
    );
}

#[test]
fn up_announces_with_gratuitous_arp() {
    let mut w = Wire::new();
    w.a.up();
    let frames = w.a.take_frames();
    let (eth, arp) = EthernetHeader::parse(&frames[0]).unwrap();
    let msg = ArpMessage::parse(arp).unwrap();
    assert_eq!(
        (eth.dst, msg.sender_ip, msg.target_ip, msg.sender_mac),
        (MacAddr::BROADCAST, A_IP, A_IP, A_MAC)
    );
}

#[test]
fn broadcast_and_joined_multicast_are_received() {
    let mut w = Wire::new();
    let b_sock = bind(&mut w.b, 9);
    let a_sock = w.a.sockets_mut().open();
    w.a.send_udp(
        0,
        a_sock,
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 255), 9)),
        b"all",
    )
    .unwrap();
    let group = Ipv4Addr::new(239, 7, 7, 7);
    w.a.send_udp(0, a_sock, Some(SocketAddrV4::new(group, 9)), b"not joined")
        .unwrap();
    w.run(5);
    w.b.join_group(group);
    w.a.send_udp(0, a_sock, Some(SocketAddrV4::new(group, 9)), b"group")
        .unwrap();
    assert_eq!(
        w.a.neighbours().counters().requests_sent,
        0,
        "no ARP for broadcast or multicast"
    );
    w.run(5);
    let got: Vec<_> = received(&mut w.b, b_sock)
        .into_iter()
        .map(|d| (d.data, d.to))
        .collect();
    assert_eq!(
        got,
        vec![
            (b"all".to_vec(), Ipv4Addr::new(10, 77, 2, 255)),
            (b"group".to_vec(), group)
        ]
    );
    assert_eq!(w.b.counters().dropped(DropReason::NotForUs), 1);
}

#[test]
fn datagrams_to_our_own_address_are_looped_back() {
    let mut w = Wire::new();
    let sock = bind(&mut w.a, 7);
    w.a.send_udp(0, sock, Some(SocketAddrV4::new(A_IP, 7)), b"me")
        .unwrap();
    assert!(w.a.take_frames().is_empty());
    assert_eq!(received(&mut w.a, sock)[0].data, b"me");
}

/// A UDP frame from B to A:7 carrying `data`, as B would send it.
fn udp_frame(data: &[u8]) -> Vec<u8> {
    let mut w = Wire::new();
    bind(&mut w.a, 7);
    let b_sock = w.b.sockets_mut().open();
    w.b.send_udp(0, b_sock, Some(SocketAddrV4::new(A_IP, 7)), data)
        .unwrap();
    w.run(10);
    w.seen.pop().unwrap()
}

#[test]
fn malformed_frames_are_counted_by_reason_and_never_delivered() {
    let good = udp_frame(b"payload!");
    let ip = ETHERNET_HEADER_LEN;
    let udp = ip + IPV4_HEADER_LEN;
    let mut w = Wire::new();
    let sock = bind(&mut w.a, 7);
    let mut cases: Vec<(Vec<u8>, DropReason)> = Vec::new();
    cases.push((good[..10].to_vec(), DropReason::Truncated));
    cases.push((good[..udp + 4].to_vec(), DropReason::Truncated));
    let mut f = good.clone();
    f[ip + 8] ^= 1; // TTL: IP checksum now wrong
    cases.push((f, DropReason::BadChecksum));
    let mut f = good.clone();
    f[udp + 8] ^= 1; // payload: UDP checksum now wrong
    cases.push((f, DropReason::BadChecksum));
    let mut f = good.clone();
    f[ip] = 0x65; // IP version 6 in an IPv4 frame
    cases.push((f, DropReason::Malformed));
    let mut f = good.clone();
    f[..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]); // someone else's MAC
    cases.push((f, DropReason::NotForUs));
    let mut f = good.clone();
    f[12] = 0x86;
    f[13] = 0xdd; // IPv6
    cases.push((f, DropReason::Unsupported));
    let mut other_ip = ArpMessage {
        op: ArpOp::Request,
        sender_mac: B_MAC,
        sender_ip: B_IP,
        target_mac: MacAddr([0; 6]),
        target_ip: Ipv4Addr::new(10, 77, 2, 99),
    }
    .to_frame(MacAddr::BROADCAST);
    cases.push((other_ip.clone(), DropReason::ArpNotForUs));
    other_ip.truncate(30);
    cases.push((other_ip, DropReason::Truncated));
    for (frame, reason) in &cases {
        let before = w.a.counters().dropped(*reason);
        w.a.receive(0, frame);
        assert_eq!(w.a.counters().dropped(*reason), before + 1, "{reason:?}");
    }
    assert!(
        w.a.take_frames().is_empty(),
        "no reply to anything malformed"
    );
    assert_eq!(w.a.recv_udp(sock).unwrap(), None);
    assert_eq!(w.a.neighbours().lookup(B_IP), None);
    // The same frame, undamaged, is delivered; with its checksum zeroed, too.
    w.a.receive(0, &good);
    let mut unchecked = good.clone();
    unchecked[udp + 6] = 0;
    unchecked[udp + 7] = 0;
    w.a.receive(0, &unchecked);
    assert_eq!(received(&mut w.a, sock).len(), 2);
}

#[test]
fn a_flood_of_never_completing_fragments_stays_within_the_memory_bound() {
    let config = InterfaceConfig {
        reassembly: ReassemblyConfig {
            max_bytes: 256 * 1024,
            max_datagrams: 64,
            timeout_ns: 30 * SECOND,
        },
        ..InterfaceConfig::new(A_MAC, A_IP, 24)
    };
    let mut a = Interface::new(config);
    let mut sender = Ipv4Sender::new(DEFAULT_MTU, 0);
    for i in 0..5000u32 {
        let header = Ipv4Header {
            more_fragments: true,
            ..sender.header(B_IP, A_IP, PROTO_UDP, 64, 1480)
        };
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 1480];
        EthernetHeader {
            dst: A_MAC,
            src: B_MAC,
            ethertype: EtherType::Ipv4,
        }
        .write(&mut frame);
        header.write(&mut frame[ETHERNET_HEADER_LEN..]);
        a.receive(i as u64, &frame);
        let (count, bytes) = a.reassembler().in_progress();
        assert!(count <= 64 && bytes <= 256 * 1024);
    }
    a.poll(31 * SECOND);
    assert_eq!(a.reassembler().in_progress(), (0, 0));
}

#[test]
fn random_and_mutated_frames_never_panic_and_the_stack_keeps_working() {
    let mut corpus = Wire::new();
    let b_sock = bind(&mut corpus.b, 7);
    let a_sock = corpus.a.sockets_mut().open();
    corpus
        .a
        .send_udp(
            0,
            a_sock,
            Some(SocketAddrV4::new(B_IP, 7)),
            &payload(1, 3000),
        )
        .unwrap();
    corpus
        .a
        .connect_udp(a_sock, SocketAddrV4::new(B_IP, 9))
        .unwrap();
    corpus.a.send_udp(0, a_sock, None, b"closed").unwrap();
    corpus.a.ping(0, B_IP, 1, 1, b"ping").unwrap();
    corpus.run(10);
    assert!(received(&mut corpus.b, b_sock).len() == 1 && corpus.seen.len() >= 6);
    let seeds = corpus.seen;

    let mut w = Wire::new();
    let target = bind(&mut w.b, 7);
    let mut rng = Rng(0xfeed_f00d_dead_beef);
    const FRAMES: u32 = 20_000;
    for i in 0..FRAMES {
        let mut frame = seeds[rng.below(seeds.len() as u64) as usize].clone();
        match rng.below(4) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(frame.len() as u64) as usize;
                    frame[at] = rng.next() as u8;
                }
            }
            1 => frame.truncate(rng.below(frame.len() as u64 + 1) as usize),
            2 => frame.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ => frame = (0..rng.below(1600)).map(|_| rng.next() as u8).collect(),
        }
        if rng.below(2) == 0 {
            let n = frame.len().min(6);
            frame[..n].copy_from_slice(&B_MAC.0[..n]);
        }
        w.b.receive(i as u64 * MS, &frame);
        if i % 1000 == 0 {
            w.b.poll(i as u64 * MS);
        }
    }
    assert_eq!(w.b.counters().rx_frames, FRAMES as u64);
    w.now = FRAMES as u64 * MS;
    let _ = received(&mut w.b, target);
    let _ = w.b.take_frames();
    while w.b.next_event().is_some() {}
    let a_sock = w.a.sockets_mut().open();
    w.a.send_udp(
        w.now,
        a_sock,
        Some(SocketAddrV4::new(B_IP, 7)),
        &payload(9, 2500),
    )
    .unwrap();
    w.run(10);
    assert!(
        received(&mut w.b, target)
            .iter()
            .any(|d| d.data == payload(9, 2500)),
        "still works after the garbage"
    );
}

#[test]
fn configuration_comes_from_sluice_ifaces_and_gateway() {
    let vars = [
        ("SLUICE_MODE", "dpdk"),
        ("SLUICE_IFACES", "p0=10.77.2.1/24"),
        ("SLUICE_GATEWAY", "10.77.2.254"),
    ];
    let config =
        crate::config::Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap();
    let iface = InterfaceConfig::for_port(&config.ports[0], config.gateway, A_MAC);
    assert_eq!(
        (iface.addr, iface.prefix_len, iface.gateway),
        (A_IP, 24, Some(Ipv4Addr::new(10, 77, 2, 254)))
    );
    assert_eq!(
        (iface.mtu, iface.ttl, iface.mac),
        (DEFAULT_MTU, DEFAULT_TTL, A_MAC)
    );
}

// TCP: nothing listens for it on a data address, so a segment is refused with a reset.

const B_TCP_PORT: u16 = 40_000;
const A_TCP_PORT: u16 = 5201;

/// Two interfaces that know each other's MAC (B pinged A), so that A's resets go out at once.
fn acquainted() -> Wire {
    let mut w = Wire::new();
    w.b.ping(0, A_IP, 1, 1, b"hi").unwrap();
    w.run(10);
    assert!(w.a.neighbours().lookup(B_IP).is_some());
    w
}

fn segment(seq: u32, ack: u32, flags: TcpFlags) -> TcpHeader {
    TcpHeader {
        src_port: B_TCP_PORT,
        dst_port: A_TCP_PORT,
        seq,
        ack,
        flags,
        window: 64_240,
    }
}

const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};

/// An Ethernet frame from B carrying `tcp` + `payload` from B_IP to `dst`.
fn tcp_frame(dst: Ipv4Addr, dst_mac: MacAddr, tcp: &TcpHeader, payload: &[u8]) -> Vec<u8> {
    let ip = ETHERNET_HEADER_LEN;
    let at = ip + IPV4_HEADER_LEN;
    let mut frame = vec![0u8; at + TCP_HEADER_LEN + payload.len()];
    EthernetHeader {
        dst: dst_mac,
        src: B_MAC,
        ethertype: EtherType::Ipv4,
    }
    .write(&mut frame);
    Ipv4Header {
        src: B_IP,
        dst,
        protocol: PROTO_TCP,
        ttl: 64,
        ident: 7,
        dont_fragment: true,
        more_fragments: false,
        fragment_offset: 0,
        header_len: IPV4_HEADER_LEN,
        total_len: frame.len() - ip,
    }
    .write(&mut frame[ip..at]);
    frame[at + TCP_HEADER_LEN..].copy_from_slice(payload);
    tcp.write(B_IP, dst, &mut frame[at..]);
    frame
}

/// The Internet checksum (RFC 1071) of `chunks` laid end to end, each of even length
/// except perhaps the last: written here rather than taken from the code under test.
fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The one frame A sent, checked down to the bytes: to B's MAC, a 20-byte IPv4
/// header from A to B with a right checksum, a 20-byte TCP header with a right
/// checksum over the pseudo-header. Returns the TCP header.
fn the_reset(frames: Vec<Vec<u8>>) -> TcpHeader {
    assert_eq!(frames.len(), 1, "exactly one frame: the reset");
    let frame = &frames[0];
    let (eth, packet) = EthernetHeader::parse(frame).unwrap();
    assert_eq!((eth.dst, eth.src), (B_MAC, A_MAC));
    assert_eq!(eth.ethertype, EtherType::Ipv4);
    assert_eq!(packet.len(), IPV4_HEADER_LEN + TCP_HEADER_LEN);
    assert_eq!(
        internet_checksum(&[&packet[..IPV4_HEADER_LEN]]),
        0,
        "IPv4 checksum"
    );
    let (ip, tcp) = Ipv4Header::parse(packet).unwrap();
    assert_eq!((ip.src, ip.dst, ip.protocol), (A_IP, B_IP, PROTO_TCP));
    let pseudo = [
        &A_IP.octets()[..],
        &B_IP.octets()[..],
        &[0, PROTO_TCP, 0, TCP_HEADER_LEN as u8][..],
    ]
    .concat();
    assert_eq!(internet_checksum(&[&pseudo, tcp]), 0, "TCP checksum");
    assert_eq!(tcp[12] >> 4, 5, "data offset: 5 words, no options");
    let (header, payload) = TcpHeader::parse(A_IP, B_IP, tcp).unwrap();
    assert!(payload.is_empty());
    assert_eq!(
        (header.src_port, header.dst_port, header.window),
        (A_TCP_PORT, B_TCP_PORT, 0)
    );
    header
}

#[test]
fn a_syn_to_our_address_is_answered_with_rst_ack() {
    let mut w = acquainted();
    w.a.receive(
        w.now,
        &tcp_frame(A_IP, A_MAC, &segment(0xffff_fff0, 0, SYN), b""),
    );
    let reset = the_reset(w.a.take_frames());
    assert_eq!(
        reset.flags,
        TcpFlags {
            rst: true,
            ack: true,
            ..TcpFlags::default()
        }
    );
    assert_eq!(
        (reset.seq, reset.ack),
        (0, 0xffff_fff1),
        "ack = seq + 1 for the SYN"
    );
    assert_eq!(w.a.counters().tcp_resets_sent, 1);
    assert_eq!(w.a.counters().total_dropped(), 0);

    // Data and FIN without ACK: ack covers the payload, the SYN and the FIN (and wraps).
    let syn_fin = TcpFlags { fin: true, ..SYN };
    let frame = tcp_frame(A_IP, A_MAC, &segment(u32::MAX - 2, 0, syn_fin), b"hello");
    w.a.receive(w.now, &frame);
    let reset = the_reset(w.a.take_frames());
    assert_eq!(
        (reset.seq, reset.ack),
        (0, 4),
        "(2^32 - 3) + 5 + 1 + 1 wraps to 4"
    );
    assert!(reset.flags.rst && reset.flags.ack && !reset.flags.syn && !reset.flags.fin);
    assert_eq!(w.a.counters().tcp_resets_sent, 2);
}

#[test]
fn a_segment_with_ack_is_answered_with_rst_whose_seq_is_its_ack() {
    let mut w = acquainted();
    let ack = TcpFlags {
        ack: true,
        ..TcpFlags::default()
    };
    w.a.receive(
        w.now,
        &tcp_frame(A_IP, A_MAC, &segment(1000, 0xdead_beef, ack), b"data"),
    );
    let reset = the_reset(w.a.take_frames());
    assert_eq!(
        reset.flags,
        TcpFlags {
            rst: true,
            ..TcpFlags::default()
        },
        "RST alone, no ACK"
    );
    assert_eq!((reset.seq, reset.ack), (0xdead_beef, 0));
    // A SYN-ACK too (an answer to a SYN we never sent).
    let syn_ack = TcpFlags { ack: true, ..SYN };
    w.a.receive(
        w.now,
        &tcp_frame(A_IP, A_MAC, &segment(5, 77, syn_ack), b""),
    );
    assert_eq!(the_reset(w.a.take_frames()).seq, 77);
}

#[test]
fn resets_bad_checksums_and_broadcasts_are_never_answered() {
    let mut w = acquainted();
    let rst = TcpFlags {
        rst: true,
        ..TcpFlags::default()
    };
    let rst_ack = TcpFlags { ack: true, ..rst };
    for flags in [rst, rst_ack] {
        w.a.receive(w.now, &tcp_frame(A_IP, A_MAC, &segment(1, 2, flags), b""));
    }
    assert!(w.a.take_frames().is_empty(), "a reset is never answered");
    assert_eq!(w.a.counters().dropped(DropReason::NoSocket), 2);

    let mut bad = tcp_frame(A_IP, A_MAC, &segment(1, 0, SYN), b"x");
    *bad.last_mut().unwrap() ^= 0x40; // payload: TCP checksum now wrong, IP's still right
    w.a.receive(w.now, &bad);
    let mut bad = tcp_frame(A_IP, A_MAC, &segment(1, 0, SYN), b"");
    bad[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 16] ^= 1; // the checksum field itself
    w.a.receive(w.now, &bad);
    assert!(
        w.a.take_frames().is_empty(),
        "no answer to a damaged segment"
    );
    assert_eq!(w.a.counters().dropped(DropReason::BadChecksum), 2);

    let subnet_broadcast = Ipv4Addr::new(10, 77, 2, 255);
    let frame = tcp_frame(
        subnet_broadcast,
        MacAddr::BROADCAST,
        &segment(1, 0, SYN),
        b"",
    );
    w.a.receive(w.now, &frame);
    let frame = tcp_frame(
        Ipv4Addr::BROADCAST,
        MacAddr::BROADCAST,
        &segment(1, 0, SYN),
        b"",
    );
    w.a.receive(w.now, &frame);
    let group = Ipv4Addr::new(239, 7, 7, 7);
    w.a.join_group(group);
    let frame = tcp_frame(group, multicast_mac(group), &segment(1, 0, SYN), b"");
    w.a.receive(w.now, &frame);
    assert!(
        w.a.take_frames().is_empty(),
        "no answer to broadcast or multicast"
    );
    assert_eq!(w.a.counters().dropped(DropReason::NoSocket), 5);
    assert_eq!(w.a.counters().tcp_resets_sent, 0);

    // Another host's address: not ours to refuse.
    let frame = tcp_frame(Ipv4Addr::new(10, 77, 2, 9), A_MAC, &segment(1, 0, SYN), b"");
    w.a.receive(w.now, &frame);
    assert!(w.a.take_frames().is_empty());
    assert_eq!(w.a.counters().dropped(DropReason::NotForUs), 1);
}

#[test]
fn resets_are_rate_limited_per_interface() {
    let mut w = acquainted();
    let limit = TcpResetLimit::default();
    assert_eq!(limit.interval_ns, 1_000_000, "1000 resets a second");
    let frame = tcp_frame(A_IP, A_MAC, &segment(1, 0, SYN), b"");
    let start = w.now;
    // A burst at one instant: the bucket's depth and no more.
    for _ in 0..500 {
        w.a.receive(start, &frame);
    }
    assert_eq!(w.a.take_frames().len(), limit.burst as usize);
    assert_eq!(w.a.counters().tcp_resets_sent, limit.burst as u64);
    assert_eq!(
        w.a.counters().dropped(DropReason::TcpRateLimited),
        500 - limit.burst as u64
    );
    // A flood of 10 000 segments a second for 2 s: at most 1000 resets a second get out.
    let before = w.a.counters().tcp_resets_sent;
    for i in 1..=20_000u64 {
        w.a.receive(start + i * 100_000, &frame);
    }
    let sent = w.a.counters().tcp_resets_sent - before;
    assert_eq!(w.a.take_frames().len() as u64, sent);
    assert!((1990..=2000).contains(&sent), "{sent} resets in 2 s");
    // Quiet for a while: the bucket is full again, but no deeper than its burst.
    let later = start + 20_000 * 100_000 + 10 * SECOND;
    let before = w.a.counters().tcp_resets_sent;
    for _ in 0..500 {
        w.a.receive(later, &frame);
    }
    assert_eq!(w.a.counters().tcp_resets_sent - before, limit.burst as u64);
}
