//! Tests of the UDP demultiplexing table.

use super::*;
use crate::wire::ICMP_PORT_UNREACHABLE;

const US: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const US2: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const REUSE_ADDR: BindOptions = BindOptions {
    reuse_addr: true,
    reuse_port: false,
};
const REUSE_PORT: BindOptions = BindOptions {
    reuse_addr: false,
    reuse_port: true,
};

fn table() -> UdpSockets {
    UdpSockets::new(&[US, US2], 0)
}

fn at(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn bound(t: &mut UdpSockets, addr: SocketAddrV4, options: BindOptions) -> SocketId {
    let id = t.open();
    t.bind(id, addr, options).unwrap();
    id
}

fn deliver(t: &mut UdpSockets, from: SocketAddrV4, to: SocketAddrV4, data: &[u8]) -> usize {
    t.deliver(from, to, Addressed::Unicast, data).queued()
}

#[test]
fn binding_the_same_address_twice_is_eaddrinuse() {
    let mut t = table();
    bound(&mut t, at(US, 5000), BindOptions::default());
    let second = t.open();
    assert_eq!(
        t.bind(second, at(US, 5000), BindOptions::default()),
        Err(UdpError::AddrInUse)
    );
    assert_eq!(UdpError::AddrInUse.errno(), libc::EADDRINUSE);
    // INADDR_ANY overlaps every address, in both orders.
    assert_eq!(
        t.bind(second, at(ANY, 5000), BindOptions::default()),
        Err(UdpError::AddrInUse)
    );
    let mut t = table();
    bound(&mut t, at(ANY, 5000), BindOptions::default());
    let other = t.open();
    assert_eq!(
        t.bind(other, at(US, 5000), BindOptions::default()),
        Err(UdpError::AddrInUse)
    );
    // Different addresses on the same port do not conflict.
    let mut t = table();
    bound(&mut t, at(US, 5000), BindOptions::default());
    bound(&mut t, at(US2, 5000), BindOptions::default());
}

#[test]
fn sharing_needs_the_option_on_both_sockets() {
    let mut t = table();
    bound(&mut t, at(US, 5000), REUSE_ADDR);
    bound(&mut t, at(US, 5000), REUSE_ADDR);
    let late = t.open();
    assert_eq!(
        t.bind(late, at(US, 5000), BindOptions::default()),
        Err(UdpError::AddrInUse)
    );
    assert_eq!(
        t.bind(late, at(US, 5000), REUSE_PORT),
        Err(UdpError::AddrInUse)
    );
    let mut t = table();
    bound(&mut t, at(ANY, 6000), REUSE_PORT);
    bound(&mut t, at(ANY, 6000), REUSE_PORT);
    let late = t.open();
    assert_eq!(
        t.bind(late, at(ANY, 6000), REUSE_ADDR),
        Err(UdpError::AddrInUse)
    );
}

#[test]
fn bind_checks_the_address_and_binds_once() {
    let mut t = table();
    let id = t.open();
    assert_eq!(
        t.bind(id, at(PEER, 5000), BindOptions::default()),
        Err(UdpError::AddrNotAvailable)
    );
    assert_eq!(
        t.bind(id, at(US, 5000), BindOptions::default()),
        Ok(at(US, 5000))
    );
    assert_eq!(
        t.bind(id, at(US, 5001), BindOptions::default()),
        Err(UdpError::AlreadyBound)
    );
    assert_eq!(UdpError::AlreadyBound.errno(), libc::EINVAL);
    let group = t.open();
    assert!(t
        .bind(
            group,
            at(Ipv4Addr::new(239, 1, 1, 1), 5000),
            BindOptions::default()
        )
        .is_ok());
}

#[test]
fn ephemeral_ports_are_in_the_kernel_range_and_never_collide() {
    let mut t = UdpSockets::new(&[US], 12345);
    let fixed = bound(&mut t, at(ANY, 45113), BindOptions::default());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let id = t.open();
        let local = t.bind(id, at(ANY, 0), BindOptions::default()).unwrap();
        assert!(EPHEMERAL_PORTS.contains(&local.port()));
        assert!(
            seen.insert(local.port()),
            "port {} handed out twice",
            local.port()
        );
        assert_ne!(local.port(), 45113, "explicitly bound port reused");
    }
    assert_eq!(t.local_addr(fixed).unwrap(), Some(at(ANY, 45113)));
}

#[test]
fn running_out_of_ephemeral_ports_is_eagain() {
    let mut t = table();
    let span = (EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start() + 1) as usize;
    for _ in 0..span {
        let id = t.open();
        t.ensure_bound(id).unwrap();
    }
    let last = t.open();
    assert_eq!(t.ensure_bound(last), Err(UdpError::NoPortsLeft));
    assert_eq!(UdpError::NoPortsLeft.errno(), libc::EAGAIN);
}

#[test]
fn the_most_specific_socket_wins() {
    let mut t = table();
    let any = bound(&mut t, at(ANY, 7000), REUSE_ADDR);
    let specific = bound(&mut t, at(US, 7000), REUSE_ADDR);
    let connected = bound(&mut t, at(US, 7000), REUSE_ADDR);
    t.connect(connected, at(PEER, 9), US).unwrap();
    assert_eq!(
        t.lookup(at(PEER, 9), at(US, 7000), Addressed::Unicast),
        vec![connected]
    );
    assert_eq!(
        t.lookup(at(PEER, 10), at(US, 7000), Addressed::Unicast),
        vec![specific]
    );
    assert_eq!(
        t.lookup(at(PEER, 10), at(US2, 7000), Addressed::Unicast),
        vec![any]
    );
    assert!(t
        .lookup(at(PEER, 10), at(US, 7001), Addressed::Unicast)
        .is_empty());
}

#[test]
fn equal_reuseaddr_sockets_go_to_the_latest_bound() {
    let mut t = table();
    bound(&mut t, at(US, 7000), REUSE_ADDR);
    let second = bound(&mut t, at(US, 7000), REUSE_ADDR);
    assert_eq!(
        t.lookup(at(PEER, 9), at(US, 7000), Addressed::Unicast),
        vec![second]
    );
}

#[test]
fn reuseport_spreads_flows_and_keeps_each_flow_on_one_socket() {
    let mut t = table();
    let group: Vec<_> = (0..4)
        .map(|_| bound(&mut t, at(ANY, 8000), REUSE_PORT))
        .collect();
    let mut hits = std::collections::HashMap::new();
    for port in 1000..1400 {
        let first = t.lookup(at(PEER, port), at(US, 8000), Addressed::Unicast);
        assert_eq!(
            first,
            t.lookup(at(PEER, port), at(US, 8000), Addressed::Unicast)
        );
        *hits.entry(first[0]).or_insert(0) += 1;
    }
    for id in group {
        assert!(
            hits.get(&id).copied().unwrap_or(0) > 20,
            "{id:?} got {:?}",
            hits.get(&id)
        );
    }
}

#[test]
fn broadcast_and_multicast_reach_every_matching_socket() {
    let mut t = table();
    let a = bound(&mut t, at(ANY, 9000), REUSE_ADDR);
    let b = bound(&mut t, at(ANY, 9000), REUSE_ADDR);
    let unicast_only = bound(&mut t, at(US, 9000), REUSE_ADDR);
    let group = Ipv4Addr::new(239, 1, 2, 3);
    let in_group = bound(&mut t, at(group, 9000), REUSE_ADDR);
    let mut hit = t.lookup(
        at(PEER, 1),
        at(Ipv4Addr::new(10, 77, 2, 255), 9000),
        Addressed::Broadcast,
    );
    hit.sort();
    assert_eq!(hit, vec![a, b]);
    let mut hit = t.lookup(at(PEER, 1), at(group, 9000), Addressed::Multicast);
    hit.sort();
    assert_eq!(hit, vec![a, b, in_group]);
    assert!(!hit.contains(&unicast_only));
    assert_eq!(
        t.deliver(at(PEER, 1), at(group, 9000), Addressed::Multicast, b"m"),
        Delivery::Queued(3)
    );
}

#[test]
fn datagram_boundaries_are_kept() {
    let mut t = table();
    let id = bound(&mut t, at(US, 5000), BindOptions::default());
    for len in [0usize, 1, 1472, 9000] {
        assert_eq!(
            deliver(&mut t, at(PEER, 1), at(US, 5000), &vec![len as u8; len]),
            1
        );
    }
    for len in [0usize, 1, 1472, 9000] {
        let d = t.recv(id).unwrap().unwrap();
        assert_eq!((d.data.len(), d.from, d.to), (len, at(PEER, 1), US));
    }
    assert_eq!(t.recv(id).unwrap(), None);
}

#[test]
fn a_full_queue_drops_and_counts_and_recv_makes_room() {
    let mut t = table();
    let id = bound(&mut t, at(US, 5000), BindOptions::default());
    t.set_rcvbuf(id, 4 * (1000 + DATAGRAM_OVERHEAD)).unwrap();
    let taken = (0..10)
        .map(|_| deliver(&mut t, at(PEER, 1), at(US, 5000), &[0; 1000]))
        .sum::<usize>();
    assert_eq!(taken, 4);
    assert_eq!(t.drops(id).unwrap(), 6);
    assert_eq!(t.counters().queue_full_drops, 6);
    t.recv(id).unwrap().unwrap();
    assert_eq!(deliver(&mut t, at(PEER, 1), at(US, 5000), &[0; 1000]), 1);
    // Empty datagrams cost something too: the queue cannot grow without bound.
    t.set_rcvbuf(id, 1).unwrap();
    let before = t.queued(id).unwrap();
    assert_eq!(
        t.deliver(at(PEER, 1), at(US, 5000), Addressed::Unicast, &[]),
        Delivery::QueueFull
    );
    assert_eq!(t.queued(id).unwrap(), before);
}

#[test]
fn peek_leaves_the_datagram() {
    let mut t = table();
    let id = bound(&mut t, at(US, 5000), BindOptions::default());
    deliver(&mut t, at(PEER, 1), at(US, 5000), b"one");
    assert_eq!(t.peek(id).unwrap().unwrap().data, b"one");
    assert_eq!(t.recv(id).unwrap().unwrap().data, b"one");
}

#[test]
fn a_connected_socket_hears_only_its_peer() {
    let mut t = table();
    let id = t.open();
    let local = t.connect(id, at(PEER, 53), US).unwrap();
    assert_eq!(*local.ip(), US, "connect fixes the source address");
    assert_eq!(t.peer_addr(id).unwrap(), Some(at(PEER, 53)));
    assert_eq!(
        t.deliver(at(PEER, 54), local, Addressed::Unicast, b"stranger"),
        Delivery::NoSocket
    );
    assert_eq!(t.counters().no_socket, 1);
    assert_eq!(deliver(&mut t, at(PEER, 53), local, b"peer"), 1);
}

#[test]
fn disconnect_undoes_what_connect_chose() {
    let mut t = table();
    let auto = t.open();
    let local = t.connect(auto, at(PEER, 53), US).unwrap();
    t.disconnect(auto).unwrap();
    assert_eq!(t.local_addr(auto).unwrap(), None, "autobound port released");
    assert_eq!(t.peer_addr(auto).unwrap(), None);
    let taker = t.open();
    t.bind(taker, local, BindOptions::default()).unwrap();

    let explicit = t.open();
    t.bind(explicit, at(ANY, 5353), BindOptions::default())
        .unwrap();
    t.connect(explicit, at(PEER, 53), US).unwrap();
    assert_eq!(t.local_addr(explicit).unwrap(), Some(at(US, 5353)));
    t.disconnect(explicit).unwrap();
    assert_eq!(
        t.local_addr(explicit).unwrap(),
        Some(at(ANY, 5353)),
        "bound port kept, address back to ANY"
    );
}

#[test]
fn port_unreachable_reaches_only_the_connected_socket_once() {
    let mut t = table();
    let connected = t.open();
    let local = t.connect(connected, at(PEER, 9), US).unwrap();
    let unconnected = bound(&mut t, at(ANY, 7777), BindOptions::default());
    let report = Unreachable {
        code: ICMP_PORT_UNREACHABLE,
        local,
        remote: at(PEER, 9),
    };
    assert_eq!(t.report_unreachable(&report), Some(connected));
    assert_eq!(t.take_error(connected).unwrap(), Some(libc::ECONNREFUSED));
    assert_eq!(t.take_error(connected).unwrap(), None, "reported once");
    let about_unconnected = Unreachable {
        local: at(US, 7777),
        ..report
    };
    assert_eq!(t.report_unreachable(&about_unconnected), None);
    assert_eq!(t.take_error(unconnected).unwrap(), None);
}

#[test]
fn host_unreachable_marks_connected_sockets_to_that_peer() {
    let mut t = table();
    let a = t.open();
    t.connect(a, at(PEER, 9), US).unwrap();
    let b = t.open();
    t.connect(b, at(Ipv4Addr::new(10, 77, 2, 3), 9), US)
        .unwrap();
    assert_eq!(t.report_host_unreachable(PEER), vec![a]);
    assert_eq!(t.take_error(a).unwrap(), Some(libc::EHOSTUNREACH));
    assert_eq!(t.take_error(b).unwrap(), None);
}

#[test]
fn close_frees_the_port() {
    let mut t = table();
    let id = bound(&mut t, at(US, 5000), BindOptions::default());
    t.close(id);
    assert!(t
        .lookup(at(PEER, 1), at(US, 5000), Addressed::Unicast)
        .is_empty());
    bound(&mut t, at(US, 5000), BindOptions::default());
    assert_eq!(t.recv(id), Err(UdpError::NoSuchSocket));
}

#[test]
fn options_set_before_an_implicit_bind_apply_to_it() {
    let mut t = table();
    let a = t.open();
    t.set_bind_options(a, REUSE_PORT).unwrap();
    let local = t.ensure_bound(a).unwrap();
    let b = t.open();
    assert_eq!(t.bind(b, local, REUSE_PORT), Ok(local));
    let c = t.open();
    assert_eq!(
        t.bind(c, local, BindOptions::default()),
        Err(UdpError::AddrInUse)
    );
}
