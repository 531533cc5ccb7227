//! A stack with two data ports over in-memory wires, and a hand-driven peer on both wires (one
//! L2 domain, as two switches joined by a link): a failed port's address moves to the other
//! port with gratuitous ARP, datagram sockets bound to it keep working, and it moves back.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_stack::engine::{stack_mac, PortCounters, Stack};
use sluice_stack::iface::InterfaceConfig;
use sluice_stack::link::memory::{Impairment, MemoryLink, MemoryWire};
use sluice_stack::link::{Link, MacAddr};
use sluice_stack::socket::udp::{RecvFlags, UdpSocket};
use sluice_stack::wire::{
    ArpMessage, ArpOp, EtherType, EthernetHeader, Ipv4Header, UdpHeader, ETHERNET_HEADER_LEN,
    IPV4_HEADER_LEN, PROTO_UDP, UDP_HEADER_LEN,
};

const P0_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const P1_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 3);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);
/// The MAC of the peer's other port, where its address lives while its own port 0 is down.
const PEER_OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x13]);
const APP_PORT: u16 = 5000;
const PEER_PORT: u16 = 7000;
/// Upper bound on any wait: only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);

fn no_op() {}

/// What the peer saw on one wire.
#[derive(Default)]
struct Heard {
    /// Gratuitous ARPs: (announced address, MAC in the ARP, Ethernet source).
    garps: Vec<(Ipv4Addr, MacAddr, MacAddr)>,
    /// UDP payloads to the peer: (source IP, Ethernet source, payload).
    datagrams: Vec<(Ipv4Addr, MacAddr, Vec<u8>)>,
    /// ARP replies to the peer's requests: (address, MAC).
    answers: Vec<(Ipv4Addr, MacAddr)>,
}

/// A kernel-like host on both wires: answers ARP (probes from 0.0.0.0 included), and sends
/// datagrams to the MAC it last learned for an address, on the wire where that MAC lives.
struct Peer {
    ends: [MemoryLink; 2],
    heard: [Heard; 2],
    /// The peer's neighbour entry for P0_IP: MAC (updated by gratuitous ARP, like Linux).
    p0_mac: Option<MacAddr>,
}

impl Peer {
    fn pump(&mut self) {
        for wire in 0..2 {
            let mut frames = Vec::new();
            self.ends[wire]
                .recv_frames(256, &mut |f| frames.push(f.to_vec()))
                .unwrap();
            for frame in frames {
                self.hear(wire, &frame);
            }
        }
    }

    fn hear(&mut self, wire: usize, frame: &[u8]) {
        let (eth, payload) = EthernetHeader::parse(frame).unwrap();
        match eth.ethertype {
            EtherType::Arp => {
                let m = ArpMessage::parse(payload).unwrap();
                if m.op == ArpOp::Request && m.sender_ip == m.target_ip {
                    self.heard[wire]
                        .garps
                        .push((m.sender_ip, m.sender_mac, eth.src));
                    if m.sender_ip == P0_IP && self.p0_mac.is_some() {
                        self.p0_mac = Some(m.sender_mac);
                    }
                } else if m.op == ArpOp::Request && m.target_ip == PEER_IP {
                    let reply = ArpMessage {
                        op: ArpOp::Reply,
                        sender_mac: PEER_MAC,
                        sender_ip: PEER_IP,
                        target_mac: m.sender_mac,
                        target_ip: m.sender_ip,
                    };
                    self.ends[wire]
                        .send_frame(&reply.to_frame(m.sender_mac))
                        .unwrap();
                } else if m.op == ArpOp::Reply && m.target_ip == PEER_IP {
                    self.heard[wire].answers.push((m.sender_ip, m.sender_mac));
                    if m.sender_ip == P0_IP {
                        self.p0_mac = Some(m.sender_mac);
                    }
                }
            }
            EtherType::Ipv4 => {
                let (ip, rest) = Ipv4Header::parse(payload).unwrap();
                if ip.protocol == PROTO_UDP && ip.dst == PEER_IP {
                    let (_, data) = UdpHeader::parse(ip.src, ip.dst, rest).unwrap();
                    self.heard[wire]
                        .datagrams
                        .push((ip.src, eth.src, data.to_vec()));
                }
            }
            EtherType::Other(_) => {}
        }
    }

    /// Asks for P0_IP's MAC on `wire` (broadcast, as a host whose entry expired).
    fn ask(&mut self, wire: usize) {
        let request = ArpMessage {
            op: ArpOp::Request,
            sender_mac: PEER_MAC,
            sender_ip: PEER_IP,
            target_mac: MacAddr([0; 6]),
            target_ip: P0_IP,
        };
        self.ends[wire]
            .send_frame(&request.to_frame(MacAddr::BROADCAST))
            .unwrap();
    }

    /// A gratuitous ARP on `wire`: PEER_IP is at `mac` (the peer moved its address).
    fn announce(&mut self, wire: usize, mac: MacAddr) {
        let garp = ArpMessage {
            op: ArpOp::Request,
            sender_mac: mac,
            sender_ip: PEER_IP,
            target_mac: MacAddr([0; 6]),
            target_ip: PEER_IP,
        };
        self.ends[wire]
            .send_frame(&garp.to_frame(MacAddr::BROADCAST))
            .unwrap();
    }

    /// A datagram to P0_IP, to the MAC the peer knows for it, on that MAC's wire.
    fn send(&mut self, payload: &[u8]) {
        let mac = self.p0_mac.expect("the peer knows P0_IP's MAC");
        let wire = usize::from(mac == stack_mac(P1_IP));
        let udp_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
        let mut frame = vec![0u8; udp_at + UDP_HEADER_LEN + payload.len()];
        frame[udp_at + UDP_HEADER_LEN..].copy_from_slice(payload);
        UdpHeader::write(
            SocketAddrV4::new(PEER_IP, PEER_PORT),
            SocketAddrV4::new(P0_IP, APP_PORT),
            &mut frame[udp_at..],
        );
        Ipv4Header {
            src: PEER_IP,
            dst: P0_IP,
            protocol: PROTO_UDP,
            ttl: 64,
            ident: 1,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            header_len: IPV4_HEADER_LEN,
            total_len: IPV4_HEADER_LEN + UDP_HEADER_LEN + payload.len(),
        }
        .write(&mut frame[ETHERNET_HEADER_LEN..udp_at]);
        EthernetHeader {
            dst: mac,
            src: PEER_MAC,
            ethertype: EtherType::Ipv4,
        }
        .write(&mut frame);
        self.ends[wire].send_frame(&frame).unwrap();
    }
}

/// A two-port stack (p0 10.77.2.1/24, p1 10.77.3.1/24), its peer, and the two wires.
fn two_ports() -> (Arc<Stack>, Peer, [MemoryWire; 2]) {
    let none = Impairment::default();
    let (a0, b0, w0) = MemoryLink::pair(stack_mac(P0_IP), PEER_MAC, none, none);
    let (a1, b1, w1) = MemoryLink::pair(stack_mac(P1_IP), PEER_MAC, none, none);
    let c0 = InterfaceConfig::new(a0.mac(), P0_IP, 24);
    let c1 = InterfaceConfig::new(a1.mac(), P1_IP, 24);
    let links: Vec<(Box<dyn Link + Send>, InterfaceConfig)> =
        vec![(Box::new(a0), c0), (Box::new(a1), c1)];
    let stack = Stack::with_links(links, Duration::from_micros(50), no_op).unwrap();
    let peer = Peer {
        ends: [b0, b1],
        heard: Default::default(),
        p0_mac: None,
    };
    (stack, peer, [w0, w1])
}

fn ports(stack: &Stack) -> Vec<PortCounters> {
    stack.counters().ports
}

/// Pumps the peer and polls the stack until `done` holds; panics after PATIENCE.
fn wait_until(what: &str, stack: &Stack, peer: &mut Peer, mut done: impl FnMut(&mut Peer) -> bool) {
    let start = Instant::now();
    loop {
        stack.poll();
        peer.pump();
        if done(peer) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn recv(socket: &UdpSocket) -> Vec<u8> {
    socket.set_recv_timeout(Some(PATIENCE));
    let mut buf = vec![0u8; 2048];
    let got = socket
        .recv_from(&mut [&mut buf], RecvFlags::default())
        .expect("a datagram within the test's patience");
    assert_eq!(got.from, SocketAddrV4::new(PEER_IP, PEER_PORT));
    buf.truncate(got.copied);
    buf
}

/// Peer -> socket and socket -> peer once; the wire the reply came back on.
fn exchange(stack: &Stack, peer: &mut Peer, socket: &UdpSocket, tag: &str) -> usize {
    peer.send(tag.as_bytes());
    stack.poll();
    assert_eq!(recv(socket), tag.as_bytes());
    let reply = format!("re {tag}");
    let to = SocketAddrV4::new(PEER_IP, PEER_PORT);
    socket
        .send_to(&[reply.as_bytes()], Some(to), false)
        .unwrap();
    let mut wire = None;
    wait_until("the reply at the peer", stack, peer, |p| {
        wire = (0..2).find(|&w| p.heard[w].datagrams.iter().any(|d| d.2 == reply.as_bytes()));
        wire.is_some()
    });
    let wire = wire.unwrap();
    let (src, eth_src, _) = peer.heard[wire].datagrams.last().unwrap().clone();
    assert_eq!(src, P0_IP, "the source address stays p0's");
    assert_eq!(eth_src, [stack_mac(P0_IP), stack_mac(P1_IP)][wire]);
    wire
}

/// Both ports up, the peer knows P0_IP at p0's MAC, the socket talks with the peer over p0.
fn established() -> (Arc<Stack>, Peer, [MemoryWire; 2], Arc<UdpSocket>) {
    let (stack, mut peer, wires) = two_ports();
    let socket = stack.udp_socket().unwrap();
    socket.bind(SocketAddrV4::new(P0_IP, APP_PORT)).unwrap();
    peer.ask(0);
    wait_until("p0's ARP answer", &stack, &mut peer, |p| p.p0_mac.is_some());
    assert_eq!(peer.p0_mac, Some(stack_mac(P0_IP)));
    assert_eq!(exchange(&stack, &mut peer, &socket, "before"), 0);
    assert!(ports(&stack).iter().all(|p| p.up && p.changes == 0));
    (stack, peer, wires, socket)
}

/// Waits for port 0's address to be served by p1, and checks the announcement.
fn moved_to_p1(stack: &Stack, peer: &mut Peer, reason: &str) {
    wait_until("p0 down and its address on p1", stack, peer, |_| {
        let p = ports(stack);
        !p[0].up && p[1].serves.contains(&P0_IP)
    });
    let p = ports(stack);
    assert!(
        p[0].last_change.as_deref().unwrap().starts_with(reason),
        "{:?}",
        p[0].last_change
    );
    assert_eq!(p[0].serves, Vec::<Ipv4Addr>::new());
    assert_eq!(p[1].serves, [P1_IP, P0_IP]);
    assert_eq!(p[0].moves, 1);
    let for_p0 = |p: &Peer| p.heard[1].garps.iter().find(|g| g.0 == P0_IP).copied();
    wait_until(
        "a gratuitous ARP for p0's address on wire 1",
        stack,
        peer,
        |p| for_p0(p).is_some(),
    );
    let (_, mac, eth_src) = for_p0(peer).unwrap();
    assert_eq!((mac, eth_src), (stack_mac(P1_IP), stack_mac(P1_IP)));
    assert_eq!(
        peer.p0_mac,
        Some(stack_mac(P1_IP)),
        "the peer follows the GARP"
    );
    assert!(ports(stack)[1].garps_sent >= 1);
}

/// Waits for port 0 to be up again with its address home, announced from p0.
fn moved_back(stack: &Stack, peer: &mut Peer) {
    let garps_before = peer.heard[0].garps.len();
    wait_until("p0 up and its address back", stack, peer, |p| {
        let c = ports(stack);
        c[0].up && c[0].serves == [P0_IP] && p.heard[0].garps.len() > garps_before
    });
    let (ip, mac, eth_src) = peer.heard[0].garps[garps_before];
    assert_eq!(
        (ip, mac, eth_src),
        (P0_IP, stack_mac(P0_IP), stack_mac(P0_IP))
    );
    assert_eq!(peer.p0_mac, Some(stack_mac(P0_IP)));
    let p = ports(stack);
    assert_eq!(p[0].changes, 2);
    assert_eq!(p[0].moves, 2);
    assert_eq!(p[1].serves, [P1_IP]);
}

#[test]
fn a_cut_port_moves_its_address_to_the_other_port_and_back() {
    let (stack, mut peer, wires, socket) = established();
    wires[0].set_cut(true);
    moved_to_p1(&stack, &mut peer, "carrier_lost");
    // ARP for the moved address is answered on p1, with p1's MAC.
    peer.ask(1);
    wait_until("p1's answer for P0_IP", &stack, &mut peer, |p| {
        p.heard[1].answers.contains(&(P0_IP, stack_mac(P1_IP)))
    });
    let carried = ports(&stack)[1].carried_rx_frames;
    for i in 0..5 {
        assert_eq!(
            exchange(&stack, &mut peer, &socket, &format!("moved {i}")),
            1
        );
    }
    let p = ports(&stack);
    assert!(p[1].carried_rx_frames >= carried + 5 && p[1].carried_tx_frames >= 5);

    wires[0].set_cut(false);
    moved_back(&stack, &mut peer);
    assert_eq!(
        ports(&stack)[0].last_change.as_deref(),
        Some("probe_answered")
    );
    assert_eq!(exchange(&stack, &mut peer, &socket, "after"), 0);
}

#[test]
fn a_silent_port_is_found_by_its_probes_and_recovers() {
    let (stack, mut peer, wires, socket) = established();
    silence_port_0(&stack, &mut peer, &wires, &socket);
    moved_to_p1(&stack, &mut peer, "silent_");
    assert!(ports(&stack)[0].probes_sent >= 3);
    assert_eq!(exchange(&stack, &mut peer, &socket, "moved"), 1);

    wires[0].set_impairment(Impairment::default(), Impairment::default());
    moved_back(&stack, &mut peer);
    assert_eq!(exchange(&stack, &mut peer, &socket, "after"), 0);
}

/// Wire 0 drops everything both ways (its carrier stays up); datagrams sent into the silence
/// make port 0 suspect, until it is down.
fn silence_port_0(stack: &Stack, peer: &mut Peer, wires: &[MemoryWire; 2], socket: &UdpSocket) {
    let drop_all = Impairment {
        drop_per_mille: 1000,
        ..Default::default()
    };
    wires[0].set_impairment(drop_all, drop_all);
    assert!(ports(stack)[0].up, "the carrier stays up");
    let to = SocketAddrV4::new(PEER_IP, PEER_PORT);
    let start = Instant::now();
    while ports(stack)[0].up {
        assert!(
            start.elapsed() < PATIENCE,
            "the silent port was never found"
        );
        socket
            .send_to(&[b"into the void"], Some(to), false)
            .unwrap();
        stack.poll();
        peer.pump();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn with_every_port_down_nothing_moves() {
    let (stack, mut peer, wires, _socket) = established();
    wires[0].set_cut(true);
    wires[1].set_cut(true);
    wait_until("both ports down", &stack, &mut peer, |_| {
        ports(&stack).iter().all(|p| !p.up)
    });
    // Whichever went down first may have moved to the other before it failed too; nothing
    // moves once both are down.
    let moves: u64 = ports(&stack).iter().map(|p| p.moves).sum();
    std::thread::sleep(Duration::from_millis(100));
    stack.poll();
    assert_eq!(ports(&stack).iter().map(|p| p.moves).sum::<u64>(), moves);
    assert!(ports(&stack)[1].serves.contains(&P1_IP));
}

/// What sl-h1 and sl-h2 went through when the switch of both their ports 0 dropped everything:
/// the peer's port 0 failed first and its address moved to its other port, which our port 0
/// heard just before it went silent too; the peer's move back was lost in the silence. Once
/// the switch works again, port 0 must find the peer where its address is now (its health
/// probes to the MAC it last learned go nowhere), and send to it there.
#[test]
fn a_silent_port_finds_a_neighbour_that_moved_while_it_was_down() {
    let (stack, mut peer, wires, socket) = established();
    peer.announce(0, PEER_OTHER_MAC);
    for _ in 0..5 {
        stack.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    silence_port_0(&stack, &mut peer, &wires, &socket);
    moved_to_p1(&stack, &mut peer, "silent_");
    // The peer's address goes home; the announcement is lost.
    peer.announce(0, PEER_MAC);
    for _ in 0..20 {
        stack.poll();
        peer.pump();
        std::thread::sleep(Duration::from_millis(5));
    }

    wires[0].set_impairment(Impairment::default(), Impairment::default());
    let restored = Instant::now();
    moved_back(&stack, &mut peer);
    let took = restored.elapsed();
    // Down ports probe every 50 ms; the bound leaves room for a busy machine.
    assert!(took < Duration::from_millis(500), "back after {took:?}");
    assert_eq!(exchange(&stack, &mut peer, &socket, "after"), 0);
}

/// A port that sends once and hears nothing back but the answer to its probe has merely gone
/// quiet: one probe settles it (its own probes are not traffic that calls for another).
#[test]
fn an_answered_probe_leaves_a_quiet_port_alone() {
    let (stack, mut peer, _wires, socket) = established();
    let to = SocketAddrV4::new(PEER_IP, PEER_PORT);
    socket.send_to(&[b"one way"], Some(to), false).unwrap();
    let before = ports(&stack)[0].probes_sent;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        stack.poll();
        peer.pump();
        std::thread::sleep(Duration::from_millis(1));
    }
    let p = &ports(&stack)[0];
    assert!(p.up);
    let probes = p.probes_sent - before;
    assert!((1..=2).contains(&probes), "{probes} probes in 300 ms");
}
