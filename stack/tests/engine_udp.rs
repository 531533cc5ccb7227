//! Two `Stack`s in one process joined by an in-memory wire, exchanging UDP
//! datagrams through the real engine: sockets, progress, helper thread,
//! wakeups, ARP, fragmentation, ICMP.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_stack::engine::{stack_mac, Stack};
use sluice_stack::iface::InterfaceConfig;
use sluice_stack::link::memory::{Impairment, MemoryLink, MemoryWire};
use sluice_stack::link::Link;
use sluice_stack::socket::udp::{RecvFlags, UdpSocket};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
/// Upper bound on any wait of these tests: only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);

fn no_op() {}

fn pair_with(
    spin: Duration,
    tune: impl Fn(&mut InterfaceConfig),
) -> (Arc<Stack>, Arc<Stack>, MemoryWire) {
    let (a, b, wire) = MemoryLink::pair(
        stack_mac(A_IP),
        stack_mac(B_IP),
        Impairment::default(),
        Impairment::default(),
    );
    let mut a_config = InterfaceConfig::new(a.mac(), A_IP, 24);
    let mut b_config = InterfaceConfig::new(b.mac(), B_IP, 24);
    tune(&mut a_config);
    tune(&mut b_config);
    let a = Stack::with_links(vec![(Box::new(a) as _, a_config)], spin, no_op).unwrap();
    let b = Stack::with_links(vec![(Box::new(b) as _, b_config)], spin, no_op).unwrap();
    (a, b, wire)
}

fn pair() -> (Arc<Stack>, Arc<Stack>, MemoryWire) {
    pair_with(Duration::from_micros(50), |_| {})
}

fn bound(stack: &Arc<Stack>, ip: Ipv4Addr, port: u16) -> Arc<UdpSocket> {
    let socket = stack.udp_socket().unwrap();
    socket.bind(SocketAddrV4::new(ip, port)).unwrap();
    socket
}

/// Blocking receive with a generous timeout, so a broken stack fails instead of hanging.
fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddrV4) {
    socket.set_recv_timeout(Some(PATIENCE));
    let mut buf = vec![0u8; 65536];
    let got = socket
        .recv_from(&mut [&mut buf], RecvFlags::default())
        .expect("a datagram within the test's patience");
    buf.truncate(got.copied);
    (buf, got.from)
}

fn dontwait() -> RecvFlags {
    RecvFlags {
        dontwait: true,
        ..Default::default()
    }
}

/// Waits until `done` holds, polling both stacks; panics after PATIENCE.
fn wait_until(what: &str, stacks: &[&Arc<Stack>], done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        for s in stacks {
            s.poll();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn datagrams_cross_both_ways_with_addresses_kept() {
    let (a, b) = {
        let (a, b, _) = pair();
        (a, b)
    };
    let server = bound(&b, Ipv4Addr::UNSPECIFIED, 7000);
    let client = a.udp_socket().unwrap();
    assert_eq!(client.local_addr(), None, "unbound until the first send");
    let to = SocketAddrV4::new(B_IP, 7000);
    assert_eq!(client.send_to(&[b"ping"], Some(to), false), Ok(4));
    let local = client.local_addr().expect("the first send binds");
    assert!(local.port() >= 32768, "ephemeral port, got {local}");
    let (data, from) = recv(&server);
    assert_eq!(data, b"ping");
    assert_eq!(from, SocketAddrV4::new(A_IP, local.port()));
    // Gathered buffers make one datagram.
    server
        .send_to(&[b"po", b"", b"ng"], Some(from), false)
        .unwrap();
    let (data, from) = recv(&client);
    assert_eq!((data.as_slice(), from), (&b"pong"[..], to));
}

#[test]
fn non_blocking_recv_says_eagain_until_data_arrives() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7001);
    let mut buf = [0u8; 64];
    assert_eq!(
        server.recv_from(&mut [&mut buf], dontwait()),
        Err(libc::EAGAIN)
    );
    server.set_nonblocking(true);
    assert_eq!(
        server.recv_from(&mut [&mut buf], RecvFlags::default()),
        Err(libc::EAGAIN)
    );
    assert!(!server.readiness().readable);
    let client = a.udp_socket().unwrap();
    client
        .send_to(&[b"x"], Some(SocketAddrV4::new(B_IP, 7001)), false)
        .unwrap();
    wait_until("readable", &[&a, &b], || server.readiness().readable);
    assert_eq!(server.next_datagram_len(), 1);
    let got = server
        .recv_from(&mut [&mut buf], RecvFlags::default())
        .unwrap();
    assert_eq!((got.copied, &buf[..1]), (1, &b"x"[..]));
}

#[test]
fn blocking_recv_waits_for_a_datagram_sent_later() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7002);
    let receiver = std::thread::spawn(move || recv(&server));
    std::thread::sleep(Duration::from_millis(50));
    let client = a.udp_socket().unwrap();
    client
        .send_to(&[b"late"], Some(SocketAddrV4::new(B_IP, 7002)), false)
        .unwrap();
    assert_eq!(receiver.join().unwrap().0, b"late");
}

#[test]
fn peek_leaves_the_datagram_and_trunc_reports_its_whole_length() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7003);
    let client = a.udp_socket().unwrap();
    let payload: Vec<u8> = (0..100u8).collect();
    client
        .send_to(&[&payload], Some(SocketAddrV4::new(B_IP, 7003)), false)
        .unwrap();
    server.set_recv_timeout(Some(PATIENCE));
    let mut small = [0u8; 10];
    let peek = RecvFlags {
        peek: true,
        trunc: true,
        ..Default::default()
    };
    let got = server.recv_from(&mut [&mut small], peek).unwrap();
    assert_eq!((got.copied, got.len), (10, 100));
    assert_eq!(&small, &payload[..10]);
    assert_eq!(server.next_datagram_len(), 100, "peek left it queued");
    // Scattered over two buffers, then gone.
    let (mut head, mut tail) = ([0u8; 30], [0u8; 100]);
    let got = server
        .recv_from(&mut [&mut head, &mut tail], RecvFlags::default())
        .unwrap();
    assert_eq!((got.copied, got.len), (100, 100));
    assert_eq!(&head[..], &payload[..30]);
    assert_eq!(&tail[..70], &payload[30..]);
    // A datagram larger than the buffer is cut, and the rest is lost (datagram boundaries).
    client
        .send_to(&[&payload], Some(SocketAddrV4::new(B_IP, 7003)), false)
        .unwrap();
    client
        .send_to(&[b"next"], Some(SocketAddrV4::new(B_IP, 7003)), false)
        .unwrap();
    let got = server
        .recv_from(&mut [&mut small], RecvFlags::default())
        .unwrap();
    assert_eq!((got.copied, got.len), (10, 100));
    assert_eq!(recv(&server).0, b"next");
    assert_eq!(server.next_datagram_len(), 0);
}

#[test]
fn receive_timeout_gives_eagain_after_it() {
    let (_a, b, _) = pair();
    let server = bound(&b, B_IP, 7004);
    server.set_recv_timeout(Some(Duration::from_millis(150)));
    let start = Instant::now();
    let mut buf = [0u8; 8];
    assert_eq!(
        server.recv_from(&mut [&mut buf], RecvFlags::default()),
        Err(libc::EAGAIN)
    );
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "returned before SO_RCVTIMEO"
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7005);
    server.set_recv_buffer(4096);
    assert_eq!(server.recv_buffer(), 8192, "Linux doubles SO_RCVBUF");
    let client = a.udp_socket().unwrap();
    let to = SocketAddrV4::new(B_IP, 7005);
    // Resolve ARP first, so that nothing waits in the neighbour queue.
    client.send_to(&[b"warm"], Some(to), false).unwrap();
    assert_eq!(recv(&server).0, b"warm");
    let sent = 40;
    for i in 0..sent {
        client
            .send_to(&[&[i as u8; 1000]], Some(to), false)
            .unwrap();
    }
    wait_until("all datagrams to reach b", &[&a, &b], || {
        b.counters().ports[0].rx_udp_datagrams > sent
    });
    let mut kept = Vec::new();
    let mut buf = [0u8; 2000];
    while let Ok(got) = server.recv_from(&mut [&mut buf], dontwait()) {
        kept.push(buf[0]);
        assert_eq!(got.len, 1000);
    }
    let drops = server.drops() as usize;
    assert!(
        !kept.is_empty() && drops > 0,
        "kept {kept:?}, dropped {drops}"
    );
    assert!(kept.len() * (1000 + 256) <= 8192 + 1256, "queue bounded");
    assert_eq!(kept.len() + drops, sent as usize);
    // The first ones are kept, in order; the overflow is what was lost.
    assert_eq!(kept, (0..kept.len() as u8).collect::<Vec<_>>());
    assert_eq!(b.counters().ports[0].socket_queue_drops as usize, drops);
}

#[test]
fn many_threads_lose_nothing_the_queues_had_room_for() {
    let (a, b, _) = pair();
    const FLOWS: u16 = 4;
    const PER_FLOW: u32 = 300;
    let servers: Vec<_> = (0..FLOWS)
        .map(|i| {
            let s = bound(&b, B_IP, 7100 + i);
            s.set_recv_buffer(1 << 20);
            s
        })
        .collect();
    // Resolve ARP before the burst (the neighbour queue holds only 64 frames).
    let warm = a.udp_socket().unwrap();
    warm.send_to(&[b"w"], Some(SocketAddrV4::new(B_IP, 7100)), false)
        .unwrap();
    assert_eq!(recv(&servers[0]).0, b"w");
    let receivers: Vec<_> = servers
        .into_iter()
        .map(|server| {
            std::thread::spawn(move || {
                (0..PER_FLOW)
                    .map(|_| {
                        let (data, _) = recv(&server);
                        u32::from_be_bytes(data[..4].try_into().unwrap())
                    })
                    .collect::<Vec<u32>>()
            })
        })
        .collect();
    let senders: Vec<_> = (0..FLOWS)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || {
                let socket = a.udp_socket().unwrap();
                let to = SocketAddrV4::new(B_IP, 7100 + i);
                for seq in 0..PER_FLOW {
                    let mut payload = [0u8; 64];
                    payload[..4].copy_from_slice(&seq.to_be_bytes());
                    assert_eq!(socket.send_to(&[&payload], Some(to), false), Ok(64));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    for r in receivers {
        assert_eq!(r.join().unwrap(), (0..PER_FLOW).collect::<Vec<_>>());
    }
    let counters = b.counters();
    assert_eq!(counters.ports[0].socket_queue_drops, 0);
}

#[test]
fn datagrams_wait_for_arp_and_unanswered_arp_reports_host_unreachable() {
    let (a, b, wire) = pair_with(Duration::from_micros(50), |c| {
        c.neighbours.retry_interval_ns = 20_000_000;
    });
    let server = bound(&b, B_IP, 7006);
    let client = a.udp_socket().unwrap();
    let to = SocketAddrV4::new(B_IP, 7006);
    // Nothing is resolved yet: all three wait for the ARP reply, then go.
    for word in [&b"one"[..], b"two", b"three"] {
        client.send_to(&[word], Some(to), false).unwrap();
    }
    for word in [&b"one"[..], b"two", b"three"] {
        assert_eq!(recv(&server).0, word);
    }
    // A peer that never answers: the datagram is dropped and a connected socket hears of it.
    wire.set_cut(true);
    let lost = SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 99), 7006);
    let connected = a.udp_socket().unwrap();
    connected.connect(Some(lost)).unwrap();
    assert_eq!(connected.peer_addr(), Some(lost));
    connected.send_to(&[b"void"], None, false).unwrap();
    connected.set_recv_timeout(Some(PATIENCE));
    let mut buf = [0u8; 8];
    assert_eq!(
        connected.recv_from(&mut [&mut buf], RecvFlags::default()),
        Err(libc::EHOSTUNREACH)
    );
}

#[test]
fn datagrams_of_8000_bytes_are_fragmented_and_reassembled() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7007);
    let client = bound(&a, A_IP, 7008);
    let big: Vec<u8> = (0..8000u32).map(|i| (i * 7 % 251) as u8).collect();
    let frames_before = a.counters().ports[0].tx_frames;
    client
        .send_to(&[&big], Some(SocketAddrV4::new(B_IP, 7007)), false)
        .unwrap();
    let (data, from) = recv(&server);
    assert_eq!(data, big);
    assert_eq!(from, SocketAddrV4::new(A_IP, 7008));
    // 8000 bytes need six 1500-byte frames (plus ARP).
    assert!(a.counters().ports[0].tx_frames - frames_before >= 6);
    server.send_to(&[&big], Some(from), false).unwrap();
    assert_eq!(recv(&client).0, big);
}

#[test]
fn port_unreachable_fails_a_connected_socket_with_econnrefused() {
    let (a, b, _) = pair();
    let client = a.udp_socket().unwrap();
    client.connect(Some(SocketAddrV4::new(B_IP, 9))).unwrap();
    assert_eq!(client.local_addr().map(|l| *l.ip()), Some(A_IP));
    client.send_to(&[b"anyone?"], None, false).unwrap();
    client.set_recv_timeout(Some(PATIENCE));
    let mut buf = [0u8; 8];
    assert_eq!(
        client.recv_from(&mut [&mut buf], RecvFlags::default()),
        Err(libc::ECONNREFUSED)
    );
    assert_eq!(client.take_error(), 0, "reported once");
    // SO_ERROR sees it too, and clears it.
    client.send_to(&[b"again"], None, false).unwrap();
    wait_until("the second refusal", &[&a, &b], || client.readiness().error);
    assert_eq!(client.take_error(), libc::ECONNREFUSED);
    assert_eq!(client.take_error(), 0);
}

#[test]
fn helper_thread_delivers_while_the_app_sleeps_in_recv() {
    let (a, b, _) = pair_with(Duration::ZERO, |_| {});
    let server = bound(&b, B_IP, 7009);
    let progress_before = b.counters().helper_progress;
    let receiver = std::thread::spawn(move || recv(&server));
    // Let the receiver fall asleep (spin budget 0: it polls once, then sleeps).
    std::thread::sleep(Duration::from_millis(100));
    let client = a.udp_socket().unwrap();
    client
        .send_to(&[b"wake up"], Some(SocketAddrV4::new(B_IP, 7009)), false)
        .unwrap();
    assert_eq!(receiver.join().unwrap().0, b"wake up");
    assert!(b.counters().helper_progress > progress_before);
}

#[test]
fn wakeup_fd_becomes_readable_when_a_socket_does() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7010);
    b.drain_wakeup();
    let fd = b.wakeup_fd();
    let readable = |timeout_ms: i32| {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    };
    assert!(!readable(0));
    let client = a.udp_socket().unwrap();
    client
        .send_to(&[b"ring"], Some(SocketAddrV4::new(B_IP, 7010)), false)
        .unwrap();
    // No app thread polls b: its helper thread must notice and write the eventfd.
    assert!(readable(PATIENCE.as_millis() as i32));
    assert!(server.readiness().readable);
    b.drain_wakeup();
    assert!(!readable(0), "drained");
    assert_eq!(recv(&server).0, b"ring");
    // Two readable edges before a drain: the second adds no write (one is pending), the
    // eventfd stays readable, and one drain empties it.
    let to = Some(SocketAddrV4::new(B_IP, 7010));
    client.send_to(&[b"one"], to, false).unwrap();
    assert!(readable(PATIENCE.as_millis() as i32));
    assert_eq!(recv(&server).0, b"one");
    client.send_to(&[b"two"], to, false).unwrap();
    assert_eq!(recv(&server).0, b"two");
    assert!(readable(0), "still pending");
    b.drain_wakeup();
    assert!(!readable(0), "drained once for both");
    // Drained, the next edge writes it again.
    client.send_to(&[b"three"], to, false).unwrap();
    assert!(
        readable(PATIENCE.as_millis() as i32),
        "written again after the drain"
    );
    assert_eq!(recv(&server).0, b"three");
}

#[test]
fn bind_conflicts_and_close_follow_the_kernel() {
    let (_a, b, _) = pair();
    let first = bound(&b, B_IP, 7011);
    let second = b.udp_socket().unwrap();
    assert_eq!(
        second.bind(SocketAddrV4::new(B_IP, 7011)),
        Err(libc::EADDRINUSE)
    );
    assert_eq!(
        second.bind(SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 50), 7011)),
        Err(libc::EADDRNOTAVAIL)
    );
    assert_eq!(
        first.bind(SocketAddrV4::new(B_IP, 7012)),
        Err(libc::EINVAL),
        "already bound"
    );
    first.close();
    let mut buf = [0u8; 4];
    assert_eq!(
        first.recv_from(&mut [&mut buf], RecvFlags::default()),
        Err(libc::EBADF)
    );
    second.bind(SocketAddrV4::new(B_IP, 7011)).unwrap();
    // SO_REUSEADDR on both lets two sockets share a port.
    let third = b.udp_socket().unwrap();
    third.set_reuse_addr(true).unwrap();
    assert_eq!(
        third.bind(SocketAddrV4::new(B_IP, 7011)),
        Err(libc::EADDRINUSE)
    );
    second.set_reuse_addr(true).unwrap();
    third.bind(SocketAddrV4::new(B_IP, 7011)).unwrap();
}

#[test]
fn connect_filters_peers_and_disconnect_forgets() {
    let (a, b, _) = pair();
    let server = bound(&b, B_IP, 7013);
    let one = bound(&a, A_IP, 7014);
    let other = bound(&a, A_IP, 7015);
    server.connect(Some(SocketAddrV4::new(A_IP, 7014))).unwrap();
    other
        .send_to(&[b"not you"], Some(SocketAddrV4::new(B_IP, 7013)), false)
        .unwrap();
    one.send_to(&[b"you"], Some(SocketAddrV4::new(B_IP, 7013)), false)
        .unwrap();
    assert_eq!(recv(&server).0, b"you");
    server.connect(None).unwrap();
    assert_eq!(server.peer_addr(), None);
    assert_eq!(server.local_addr(), Some(SocketAddrV4::new(B_IP, 7013)));
    other
        .send_to(&[b"now you"], Some(SocketAddrV4::new(B_IP, 7013)), false)
        .unwrap();
    assert_eq!(recv(&server).0, b"now you");
    assert_eq!(
        server.send_to(&[b"?"], None, false),
        Err(libc::EDESTADDRREQ)
    );
}

#[test]
fn multicast_reaches_every_member_until_they_leave() {
    let (a, b, _) = pair();
    let group = Ipv4Addr::new(239, 1, 2, 3);
    let members: Vec<_> = (0..2)
        .map(|_| {
            let s = b.udp_socket().unwrap();
            s.set_reuse_addr(true).unwrap();
            s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7200))
                .unwrap();
            s.join_group(group, Ipv4Addr::UNSPECIFIED).unwrap();
            s
        })
        .collect();
    assert_eq!(
        members[0].join_group(group, Ipv4Addr::UNSPECIFIED),
        Err(libc::EADDRINUSE),
        "joined twice"
    );
    let sender = bound(&a, A_IP, 7201);
    sender
        .send_to(&[b"to all"], Some(SocketAddrV4::new(group, 7200)), false)
        .unwrap();
    for member in &members {
        assert_eq!(
            recv(member),
            (b"to all".to_vec(), SocketAddrV4::new(A_IP, 7201))
        );
    }
    for member in &members {
        member.leave_group(group, Ipv4Addr::UNSPECIFIED).unwrap();
    }
    assert_eq!(
        members[0].leave_group(group, Ipv4Addr::UNSPECIFIED),
        Err(libc::EADDRNOTAVAIL)
    );
    // After the group, a unicast marker (it goes to one of the two, Linux's
    // SO_REUSEADDR rule): the marker must be all that arrives.
    sender
        .send_to(&[b"nobody"], Some(SocketAddrV4::new(group, 7200)), false)
        .unwrap();
    sender
        .send_to(&[b"marker"], Some(SocketAddrV4::new(B_IP, 7200)), false)
        .unwrap();
    wait_until("the marker", &[&a, &b], || {
        members.iter().any(|m| m.readiness().readable)
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for member in &members {
        while let Ok(r) = member.recv_from(&mut [&mut buf], dontwait()) {
            got.push(buf[..r.copied].to_vec());
        }
    }
    assert_eq!(got, vec![b"marker".to_vec()]);
}

/// IGMP messages a stack put on the wire, as (type, IP destination, group).
fn igmp_messages(raw: &mut MemoryLink) -> Vec<(u8, Ipv4Addr, Ipv4Addr)> {
    let mut out = Vec::new();
    raw.recv_frames(usize::MAX, &mut |f| {
        if f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 2 {
            let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
            let group = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
            out.push((f[34], dst, group));
        }
    })
    .unwrap();
    out
}

#[test]
fn joining_and_leaving_a_group_sends_igmp_reports_once_per_port() {
    let (stack_end, mut raw, _) = MemoryLink::pair(
        stack_mac(B_IP),
        stack_mac(A_IP),
        Impairment::default(),
        Impairment::default(),
    );
    let config = InterfaceConfig::new(stack_end.mac(), B_IP, 24);
    let b = Stack::with_links(
        vec![(Box::new(stack_end) as _, config)],
        Duration::ZERO,
        no_op,
    )
    .unwrap();
    let group = Ipv4Addr::new(239, 9, 9, 9);
    let first = b.udp_socket().unwrap();
    let second = b.udp_socket().unwrap();
    first.join_group(group, B_IP).unwrap();
    second.join_group(group, Ipv4Addr::UNSPECIFIED).unwrap();
    assert_eq!(igmp_messages(&mut raw), vec![(0x16, group, group)]);
    first.leave_group(group, B_IP).unwrap();
    assert!(igmp_messages(&mut raw).is_empty(), "still one member");
    // Closing the last member leaves the group.
    second.close();
    assert_eq!(
        igmp_messages(&mut raw),
        vec![(0x17, Ipv4Addr::new(224, 0, 0, 2), group)]
    );
    assert_eq!(b.counters().ports[0].igmp_sent, 2);
    assert_eq!(
        first.join_group(Ipv4Addr::new(10, 0, 0, 1), B_IP),
        Err(libc::EINVAL)
    );
}

#[test]
fn a_socket_on_inaddr_any_works_on_every_port_and_sends_by_route() {
    let a_ips = [A_IP, Ipv4Addr::new(10, 77, 3, 1)];
    let b_ips = [B_IP, Ipv4Addr::new(10, 77, 3, 2)];
    let mut a_links = Vec::new();
    let mut b_links = Vec::new();
    for (a_ip, b_ip) in a_ips.iter().zip(&b_ips) {
        let (a, b, _) = MemoryLink::pair(
            stack_mac(*a_ip),
            stack_mac(*b_ip),
            Impairment::default(),
            Impairment::default(),
        );
        let a_config = InterfaceConfig::new(a.mac(), *a_ip, 24);
        let b_config = InterfaceConfig::new(b.mac(), *b_ip, 24);
        a_links.push((Box::new(a) as _, a_config));
        b_links.push((Box::new(b) as _, b_config));
    }
    let spin = Duration::from_micros(50);
    let a = Stack::with_links(a_links, spin, no_op).unwrap();
    let b = Stack::with_links(b_links, spin, no_op).unwrap();
    let server = bound(&b, Ipv4Addr::UNSPECIFIED, 7300);
    let client = a.udp_socket().unwrap();
    for (i, b_ip) in b_ips.iter().enumerate() {
        let before = a.counters().ports[i].tx_udp_datagrams;
        client
            .send_to(&[&[i as u8]], Some(SocketAddrV4::new(*b_ip, 7300)), false)
            .unwrap();
        let (data, from) = recv(&server);
        assert_eq!(data, [i as u8]);
        // The route picks the port on the peer's subnet, and its address is the source.
        assert_eq!(*from.ip(), a_ips[i]);
        assert_eq!(a.counters().ports[i].tx_udp_datagrams, before + 1);
        server.send_to(&[b"back"], Some(from), false).unwrap();
        assert_eq!(
            recv(&client),
            (b"back".to_vec(), SocketAddrV4::new(*b_ip, 7300))
        );
    }
    // A socket bound to one data IP hears that port only.
    let only_second = bound(&b, b_ips[1], 7301);
    assert_eq!(
        only_second.local_addr(),
        Some(SocketAddrV4::new(b_ips[1], 7301))
    );
    client
        .send_to(
            &[b"wrong port"],
            Some(SocketAddrV4::new(b_ips[0], 7301)),
            false,
        )
        .unwrap();
    client
        .send_to(
            &[b"right port"],
            Some(SocketAddrV4::new(b_ips[1], 7301)),
            false,
        )
        .unwrap();
    assert_eq!(recv(&only_second).0, b"right port");
    assert_eq!(only_second.next_datagram_len(), 0);
}

#[test]
fn a_lossy_duplicating_reordering_wire_delivers_only_whole_datagrams() {
    let (a, b, wire) = pair();
    let server = bound(&b, B_IP, 7400);
    server.set_recv_buffer(1 << 20);
    let client = bound(&a, A_IP, 7401);
    let to = SocketAddrV4::new(B_IP, 7400);
    // Resolve ARP on a clean wire, then impair it.
    client.send_to(&[b"warm"], Some(to), false).unwrap();
    assert_eq!(recv(&server).0, b"warm");
    let faults = Impairment {
        seed: 7,
        drop_per_mille: 50,
        duplicate_per_mille: 50,
        reorder_per_mille: 50,
        ..Default::default()
    };
    wire.set_impairment(faults, Impairment::default());
    let sent = 400u32;
    for seq in 0..sent {
        // Every other datagram is fragmented: a lost fragment loses the whole datagram.
        let len = if seq % 2 == 0 { 200 } else { 3000 };
        let mut payload = vec![(seq % 251) as u8; len];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        client.send_to(&[&payload], Some(to), false).unwrap();
    }
    // Past the last: a marker on a clean wire.
    wire.set_impairment(Impairment::default(), Impairment::default());
    client.send_to(&[b"end"], Some(to), false).unwrap();
    let mut got = Vec::new();
    loop {
        let (data, _) = recv(&server);
        if data == b"end" {
            break;
        }
        let seq = u32::from_be_bytes(data[..4].try_into().unwrap());
        let len = if seq % 2 == 0 { 200 } else { 3000 };
        assert_eq!(data.len(), len, "datagram {seq} arrived cut");
        assert!(
            data[4..].iter().all(|b| *b == (seq % 251) as u8),
            "datagram {seq} mixed up"
        );
        got.push(seq);
    }
    let (a_to_b, _) = wire.counters();
    assert!(a_to_b.dropped > 0 && a_to_b.duplicated > 0 && a_to_b.reordered > 0);
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() < sent as usize, "losses show");
    assert!(
        distinct.len() > sent as usize / 2,
        "most arrive: {}",
        distinct.len()
    );
    assert!(
        got.len() > distinct.len(),
        "duplicates are delivered twice, as UDP does"
    );
    assert!(got.windows(2).any(|w| w[0] > w[1]), "reordering shows");
    assert_eq!(server.drops(), 0);
}

#[test]
fn a_full_transmit_path_makes_sends_wait_or_fail_with_eagain() {
    // Nobody reads the far end: the wire fills, then the port's backlog.
    let (stack_end, mut far_end, _) = MemoryLink::pair(
        stack_mac(A_IP),
        stack_mac(B_IP),
        Impairment::default(),
        Impairment::default(),
    );
    let config = InterfaceConfig::new(stack_end.mac(), A_IP, 24);
    let a = Stack::with_links(
        vec![(Box::new(stack_end) as _, config)],
        Duration::ZERO,
        no_op,
    )
    .unwrap();
    let socket = a.udp_socket().unwrap();
    socket.set_nonblocking(true);
    // Subnet broadcast needs no ARP, so every frame heads straight for the wire.
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 255), 9);
    let mut sent = 0;
    let refused = loop {
        match socket.send_to(&[&[0u8; 64]], Some(to), false) {
            Ok(_) => sent += 1,
            Err(errno) => break errno,
        }
        assert!(sent < 100_000, "sends never pushed back");
    };
    assert_eq!(refused, libc::EAGAIN);
    assert!(!socket.readiness().writable);
    // A blocking send waits, then gives up after SO_SNDTIMEO.
    socket.set_nonblocking(false);
    socket.set_send_timeout(Some(Duration::from_millis(50)));
    assert_eq!(
        socket.send_to(&[&[0u8; 64]], Some(to), false),
        Err(libc::EAGAIN)
    );
    // The far end reads: room again.
    let mut drained = 0;
    far_end
        .recv_frames(usize::MAX, &mut |_| drained += 1)
        .unwrap();
    assert!(drained > 0);
    wait_until("writable again", &[&a], || socket.readiness().writable);
    socket.send_to(&[&[0u8; 64]], Some(to), false).unwrap();
    assert_eq!(
        a.counters().ports[0].tx_drops,
        0,
        "nothing dropped: senders waited"
    );
}

#[test]
fn multicast_ttl_and_loop_are_per_socket() {
    let (stack_end, mut far_end, _) = MemoryLink::pair(
        stack_mac(A_IP),
        stack_mac(B_IP),
        Impairment::default(),
        Impairment::default(),
    );
    let config = InterfaceConfig::new(stack_end.mac(), A_IP, 24);
    let a = Stack::with_links(
        vec![(Box::new(stack_end) as _, config)],
        Duration::from_micros(50),
        no_op,
    )
    .unwrap();
    let group = Ipv4Addr::new(239, 4, 4, 4);
    let member = bound(&a, Ipv4Addr::UNSPECIFIED, 7500);
    member.join_group(group, A_IP).unwrap();
    let sender = a.udp_socket().unwrap();
    sender.set_multicast_if(A_IP).unwrap();
    assert_eq!(
        sender.set_multicast_if(Ipv4Addr::new(10, 1, 1, 1)),
        Err(libc::EADDRNOTAVAIL)
    );
    let to = SocketAddrV4::new(group, 7500);
    // UDP frames on the wire, as (TTL, payload): what came by the time the first one did. A
    // send soon after another may wait for the next poll (transmit coalescing, at most 20 us).
    let mut wire_udp = || {
        let mut out = Vec::new();
        let start = Instant::now();
        while out.is_empty() && start.elapsed() < PATIENCE {
            a.poll();
            far_end
                .recv_frames(usize::MAX, &mut |f| {
                    if f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 {
                        out.push((f[22], f[42..].to_vec()));
                    }
                })
                .unwrap();
        }
        out
    };
    // Defaults: TTL 1, looped back to our own member.
    sender.send_to(&[b"default"], Some(to), false).unwrap();
    assert_eq!(recv(&member).0, b"default");
    assert_eq!(wire_udp(), vec![(1, b"default".to_vec())]);
    // TTL 9, loop off: on the wire with TTL 9, and not heard here.
    sender.set_multicast_ttl(9);
    sender.set_multicast_loop(false);
    sender.send_to(&[b"quiet"], Some(to), false).unwrap();
    assert_eq!(wire_udp(), vec![(9, b"quiet".to_vec())]);
    let mut buf = [0u8; 16];
    assert_eq!(
        member.recv_from(&mut [&mut buf], dontwait()),
        Err(libc::EAGAIN)
    );
}
