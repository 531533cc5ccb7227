//! Two `Stack`s joined by an in-memory wire, running stream connections through the real
//! engine: carriers, demultiplexing, the helper thread, readiness. The seeded sweep impairs
//! the wire (loss, reordering, duplication, corruption) and checks byte-exact delivery.

mod common;

use common::{pattern, wait_until};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_stack::engine::{stack_mac, Stack};
use sluice_stack::iface::InterfaceConfig;
use sluice_stack::link::memory::{Impairment, MemoryLink, MemoryWire};
use sluice_stack::link::Link;
use sluice_stack::socket::stream::StreamSocket;
use sluice_stack::stream::endpoint::ready;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

fn no_op() {}

fn pair() -> (Arc<Stack>, Arc<Stack>, MemoryWire) {
    let (a, b, wire) = MemoryLink::pair(
        stack_mac(A_IP),
        stack_mac(B_IP),
        Impairment::default(),
        Impairment::default(),
    );
    let a_config = InterfaceConfig::new(a.mac(), A_IP, 24);
    let b_config = InterfaceConfig::new(b.mac(), B_IP, 24);
    let spin = Duration::from_micros(50);
    let a = Stack::with_links(vec![(Box::new(a) as _, a_config)], spin, no_op).unwrap();
    let b = Stack::with_links(vec![(Box::new(b) as _, b_config)], spin, no_op).unwrap();
    (a, b, wire)
}

fn listener(stack: &Arc<Stack>, port: u16) -> Arc<StreamSocket> {
    let l = stack.stream_socket().unwrap();
    l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .unwrap();
    l.listen(16).unwrap();
    l
}

/// A connected pair (client on `a`, server side on `b`).
fn connected(a: &Arc<Stack>, b: &Arc<Stack>, port: u16) -> (Arc<StreamSocket>, Arc<StreamSocket>) {
    let l = listener(b, port);
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(B_IP, port), false).unwrap();
    let mut accepted = None;
    wait_until("the handshake", &[a, b], || {
        if accepted.is_none() {
            accepted = l.accept().ok();
        }
        accepted.is_some() && c.readiness() & ready::CONNECTED != 0
    });
    let s = accepted.unwrap();
    assert_eq!(s.peer, c.local_addr().unwrap(), "accept names the client");
    (c, s.socket)
}

/// Moves `data` from `tx` to `rx` (both directions polled), returns what `rx` read up to EOF.
fn transfer(stacks: &[&Arc<Stack>], tx: &StreamSocket, rx: &StreamSocket, data: &[u8]) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 65536];
    let mut closed = false;
    wait_until("the transfer", stacks, || {
        if sent < data.len() {
            match tx.send(&[&data[sent..]]) {
                Ok(n) => sent += n,
                Err(libc::EAGAIN) => {}
                Err(e) => panic!("send failed: errno {e}"),
            }
        } else if !closed {
            tx.shutdown(libc::SHUT_WR).unwrap();
            closed = true;
        }
        loop {
            match rx.recv(&mut [&mut buf], false) {
                Ok(0) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(libc::EAGAIN) => return false,
                Err(e) => panic!("recv failed: errno {e}"),
            }
        }
    });
    got
}

#[test]
fn a_connection_moves_bytes_both_ways_and_closes_in_order() {
    let (a, b, _wire) = pair();
    let (c, s) = connected(&a, &b, 7001);
    let up = pattern(300_000, 1);
    let down = pattern(200_000, 2);
    assert_eq!(transfer(&[&a, &b], &c, &s, &up), up);
    assert_ne!(s.readiness() & ready::READ_HUP, 0, "the server saw the FIN");
    assert_eq!(transfer(&[&a, &b], &s, &c, &down), down);
    c.close(false);
    s.close(false);
}

#[test]
fn a_port_without_listener_refuses_the_connection() {
    let (a, b, _wire) = pair();
    // A carrier without a listener: the SYN is answered with a reset, not an ICMP error.
    let other = b.stream_socket().unwrap();
    other
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7002))
        .unwrap();
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(B_IP, 7002), false).unwrap();
    wait_until("the refusal", &[&a, &b], || {
        c.readiness() & ready::ERROR != 0
    });
    assert_eq!(c.take_error(), libc::ECONNREFUSED);
}

#[test]
fn a_sluice_peer_without_the_port_bound_refuses_at_once() {
    let (a, b, _wire) = pair();
    // Nothing on UDP 7003 at b: its stack answers the SYN with a reset in the protocol (an
    // ICMP port unreachable would make the client fall back to the kernel's TCP).
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(B_IP, 7003), true).unwrap();
    wait_until("the refusal", &[&a, &b], || {
        c.readiness() & ready::ERROR != 0
    });
    assert_eq!(c.readiness() & ready::FALL_BACK, 0);
    assert_eq!(c.take_error(), libc::ECONNREFUSED);
}

#[test]
fn a_silent_peer_makes_connect_fall_back() {
    let (a, b, wire) = pair();
    // A first connection resolves b's address; then b goes silent.
    let _first = connected(&a, &b, 7006);
    let _l = listener(&b, 7005);
    wire.set_cut(true);
    let c = a.stream_socket().unwrap();
    let start = Instant::now();
    c.connect(SocketAddrV4::new(B_IP, 7005), true).unwrap();
    wait_until("the fall-back", &[&a, &b], || {
        c.readiness() & ready::FALL_BACK != 0
    });
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "fell back after {waited:?}, before the handshake had its retries"
    );
}

#[test]
fn an_address_nobody_answers_for_fails_with_ehostunreach() {
    let (a, b, _wire) = pair();
    // No host has 10.77.2.9: ARP gives up (three requests a second apart), and with it the
    // handshake, which must not fall back meanwhile (its clock waits for the resolution).
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 9), 7007), true)
        .unwrap();
    wait_until("the failure", &[&a, &b], || {
        c.readiness() & ready::ERROR != 0
    });
    assert_eq!(
        c.readiness() & ready::FALL_BACK,
        0,
        "no fall-back while ARP asks"
    );
    assert_eq!(c.take_error(), libc::EHOSTUNREACH);
}

#[test]
fn a_reset_connection_reports_econnreset() {
    let (a, b, _wire) = pair();
    let (c, s) = connected(&a, &b, 7004);
    c.send(&[b"unread"]).unwrap();
    wait_until("the data", &[&a, &b], || {
        s.readiness() & ready::READABLE != 0
    });
    // Closing with unread data resets, as the kernel does.
    s.close(false);
    wait_until("the reset", &[&a, &b], || c.readiness() & ready::ERROR != 0);
    let mut buf = [0u8; 16];
    assert_eq!(c.recv(&mut [&mut buf], false), Err(libc::ECONNRESET));
}

/// The sweep: every fault the in-memory wire can apply, at several strengths and seeds.
#[test]
fn seeded_sweep_over_an_impaired_wire_delivers_every_byte_exactly_once() {
    let cases: &[(u16, u16, u16, u16)] = &[
        // (loss, duplication, reordering, corruption) per mille
        (0, 0, 0, 0),
        (10, 0, 0, 0),
        (50, 10, 10, 1),
        (100, 0, 50, 0),
        (200, 0, 0, 0),
        (20, 50, 100, 5),
    ];
    for (i, &(loss, dup, reorder, corrupt)) in cases.iter().enumerate() {
        let (a, b, wire) = pair();
        let (c, s) = connected(&a, &b, 7100 + i as u16);
        let imp = |seed| Impairment {
            seed,
            drop_per_mille: loss,
            duplicate_per_mille: dup,
            reorder_per_mille: reorder,
            corrupt_per_mille: corrupt,
        };
        wire.set_impairment(imp(i as u64 * 2 + 1), imp(i as u64 * 2 + 2));
        let data = pattern(if loss >= 100 { 100_000 } else { 400_000 }, i as u64 + 10);
        let got = transfer(&[&a, &b], &c, &s, &data);
        assert!(
            got == data,
            "case {i} (loss {loss}, dup {dup}, reorder {reorder}, corrupt {corrupt}‰): {} of {} bytes, first difference at {:?}",
            got.len(),
            data.len(),
            got.iter().zip(&data).position(|(x, y)| x != y)
        );
        let stats = c.stats().expect("connection stats");
        if loss > 0 {
            assert!(
                stats.retransmits > 0,
                "case {i}: losses were repaired by retransmission"
            );
        }
    }
}

/// Mode udp: the same protocol over kernel UDP sockets (here two stacks on loopback addresses).
#[test]
fn streams_run_over_kernel_udp_in_mode_udp() {
    let start = |ip: &str| {
        let mut config = sluice_stack::config::Config::from_vars([(
            "SLUICE_IFACES".to_string(),
            "lo=10.77.9.1/24".to_string(),
        )])
        .unwrap();
        assert_eq!(config.mode, sluice_stack::config::Mode::Udp);
        // The configuration refuses loopback addresses for data ports; the kernel carriers
        // work on any address the kernel has, and loopback keeps this test on one host.
        config.ports[0].addr = ip.parse().unwrap();
        Stack::start(&config, no_op).expect("mode udp needs nothing")
    };
    let (a, b) = (start("127.0.0.2"), start("127.0.0.3"));
    let l = listener(&b, 7201);
    let c = a.stream_socket().unwrap();
    c.connect("127.0.0.3:7201".parse().unwrap(), false).unwrap();
    let mut accepted = None;
    wait_until("the handshake over kernel UDP", &[&a, &b], || {
        if accepted.is_none() {
            accepted = l.accept().ok();
        }
        accepted.is_some() && c.readiness() & ready::CONNECTED != 0
    });
    let s = accepted.unwrap().socket;
    let data = pattern(300_000, 5);
    assert_eq!(transfer(&[&a, &b], &c, &s, &data), data);
    let counters = a.counters();
    assert!(
        counters.kernel_udp_tx > 100 && counters.kernel_udp_rx > 10,
        "the stream went over the kernel UDP transport: {counters:?}"
    );
}

#[test]
fn a_listener_with_its_half_open_queue_full_answers_with_cookies_and_lets_new_clients_in() {
    let (a, b, wire) = pair();
    let l = listener(&b, 7010);
    // 140 handshakes whose SYN-ACKs are all lost: the listener's half-open bound (128 for a
    // backlog of 16) fills, the SYNs beyond it are answered statelessly.
    let lost = Impairment {
        drop_per_mille: 1000,
        ..Impairment::default()
    };
    wire.set_impairment(Impairment::default(), lost);
    let ghosts: Vec<_> = (0..140)
        .map(|_| {
            let g = a.stream_socket().unwrap();
            g.connect(SocketAddrV4::new(B_IP, 7010), false).unwrap();
            g
        })
        .collect();
    wait_until("the half-open queue to fill", &[&a, &b], || {
        let report = b.describe_streams();
        report.contains("half_open=128") && !report.contains("syn_cookies_sent=0 ")
    });
    // The ghosts go away without a word (nothing to reset in SynSent); their half-open
    // entries stay on the listener until their handshake times out.
    for g in ghosts {
        g.close(true);
    }
    wire.set_impairment(Impairment::default(), Impairment::default());
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(B_IP, 7010), false).unwrap();
    let mut accepted = None;
    wait_until("a new client's handshake", &[&a, &b], || {
        if accepted.is_none() {
            accepted = l.accept().ok();
        }
        accepted.is_some() && c.readiness() & ready::CONNECTED != 0
    });
    let report = b.describe_streams();
    assert!(report.contains("half_open=128"), "still full:\n{report}");
    assert!(
        report.contains("syn_cookies_accepted=1 "),
        "the new client came in by its cookie:\n{report}"
    );
    let s = accepted.unwrap().socket;
    let up = pattern(200_000, 9);
    assert_eq!(transfer(&[&a, &b], &c, &s, &up), up);
    let down = pattern(100_000, 10);
    assert_eq!(transfer(&[&a, &b], &s, &c, &down), down);
    c.close(false);
    s.close(false);
}
