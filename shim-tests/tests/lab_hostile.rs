//! A hostile sender against a live sluice process (docs/security.md): from the kernel-only
//! host sl-h3, raw IP floods of incomplete fragments, spoofed stream SYNs and datagrams for a
//! socket that never reads, while a stream connection from sl-h1 keeps echoing. The process's
//! resident memory stays under a stated bound, the established connection keeps working, and
//! the stack counts what it refused.
//!
//! Needs root; brings the lab up when it is missing; holds /run/sluice-lab/dpdk-p0.lock. Run with
//! `cargo test --release -p shim-tests --test lab_hostile -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, stat_counters, LabProcess, Stack, H1, H1_DATA, H2,
    H2_DATA, H3,
};
use shim_tests::{python3, rss_kib};
use std::time::{Duration, Instant};

/// The bound on the server's growth in resident memory during the floods. The stack's own
/// bounds add up to less: IP reassembly 4 MiB, a socket's receive queue its SO_RCVBUF, stream
/// buffers 4 MiB each way per connection, and the half-open connections of a listener (twice the
/// backlog, at least 128, each a few KiB before data).
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// `SERVER IP UDP_PORT TCP_PORT`: a UDP socket that never reads, a stream listener with a small
/// backlog that serves one echo connection; prints "ready" once all are set up.
const SERVER: &str = r#"
import socket, sys, threading
ip, uport, tport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((ip, uport))
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((ip, tport))
l.listen(8)
print("ready", flush=True)
l.settimeout(120)
c, _ = l.accept()
while True:
    d = c.recv(4096)
    if not d:
        break
    c.sendall(d)
"#;

/// `CLIENT IP TCP_PORT SECONDS`: one echo round trip every 20 ms for up to SECONDS seconds;
/// prints "echoes N" every 25 round trips, and fails on any mismatch or error.
const CLIENT: &str = r#"
import socket, sys, time
ip, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.create_connection((ip, port), timeout=10)
print("connected", flush=True)
n, end = 0, time.time() + seconds
while time.time() < end:
    msg = b"echo %d" % n
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += c.recv(64)
    assert got == msg, (got, msg)
    n += 1
    if n % 25 == 0:
        print("echoes", n, flush=True)
    time.sleep(0.02)
"#;

/// `FLOOD DST UDP_PORT TCP_PORT COUNT [syn]`: COUNT first fragments of never-completed
/// datagrams, COUNT stream SYNs from spoofed sources in 10.77.0.0/16, COUNT 1000-byte
/// datagrams for the socket that never reads (with `syn`: only the SYNs). Raw IP; every
/// address inside the lab's 10.77.0.0/16.
const FLOOD: &str = r#"
import random, socket, struct, sys, time
dst, uport, tport, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
only_syns = sys.argv[5:] == ["syn"]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(5)
def ip(src, proto, payload, ident, frag=0):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst)) + payload
def spoofed():
    return "10.77.%d.%d" % (rnd.randrange(4, 250), rnd.randrange(1, 255))
sent = 0
for i in range(count):
    # A first fragment (MF set, offset 0) whose rest never comes.
    if not only_syns:
        s.sendto(ip(spoofed(), 17, bytes(1400), rnd.getrandbits(16), 0x2000), (dst, 0))
    # A stream SYN from a spoofed address: type 1, no ids, an MSS option.
    syn = struct.pack("!HBBBBHIIIIIIIHH", 0x51CE, 1, 1, 0, 0, 4, rnd.getrandbits(32) or 1, 0,
        rnd.getrandbits(32), 0, 1 << 20, 0, 0, 0, 0) + bytes([1, 2, 5, 120])
    s.sendto(ip(spoofed(), 17, struct.pack("!HHHH", rnd.randrange(1024, 65535), tport, 8 + len(syn), 0) + syn, i & 0xffff), (dst, 0))
    # A datagram for the socket that never reads.
    if not only_syns:
        s.sendto(ip("10.77.2.3", 17, struct.pack("!HHHH", 40000, uport, 1008, 0) + bytes(1000), i & 0xffff), (dst, 0))
    sent += 1 if only_syns else 3
    if i % 500 == 499:
        time.sleep(0.01)
print("flooded", sent, flush=True)
"#;

#[test]
fn floods_from_a_hostile_host_stay_within_memory_bounds() {
    ensure_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let (uport, tport) = (lab_port(0), lab_port(1));
    let cmd = in_ns(
        H2,
        Some(1),
        &Stack::dpdk(H2_DATA),
        &python,
        &[
            "-c",
            SERVER,
            H2_DATA,
            &uport.to_string(),
            &tport.to_string(),
        ],
    );
    let mut server = LabProcess::start("server under floods", cmd);
    server.wait_printed("ready", Duration::from_secs(30));
    let cmd = in_ns(
        H1,
        Some(0),
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", CLIENT, H2_DATA, &tport.to_string(), "60"],
    );
    let mut client = LabProcess::start("echo client", cmd);
    client.wait_printed("connected", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(server.pid());
    let cmd = in_ns(
        H3,
        None,
        &Stack::Kernel,
        &python,
        &[
            "-c",
            FLOOD,
            H2_DATA,
            &uport.to_string(),
            &tport.to_string(),
            "20000",
        ],
    );
    let flood_start = Instant::now();
    let mut flood = LabProcess::start("hostile flood", cmd);
    let status = flood.wait(Duration::from_secs(30));
    assert!(status.success(), "the flood failed.\n{}", flood.logs());
    let flood_took = flood_start.elapsed();
    std::thread::sleep(Duration::from_millis(600));
    // The echo client is still running (60 s at most): the server is still serving it.
    server.assert_running();
    let after = rss_kib(server.pid());
    let counters = stat_counters(server.pid(), &["streams", "port"]);
    // The established connection echoes on after the floods; then the client is ended.
    let echoes = |c: &LabProcess| {
        c.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("echoes ")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    let at_flood_end = echoes(&client);
    let wait = Instant::now();
    while echoes(&client) < at_flood_end + 50 {
        assert!(
            client.running() && wait.elapsed() < Duration::from_secs(20),
            "the established connection stopped echoing after the floods.\n{}\n{}",
            client.logs(),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    client.kill();
    server.assert_running();
    let growth = after.saturating_sub(before);
    eprintln!(
        "hostile floods (60000 packets in {flood_took:.1?}): server RSS {before} KiB -> {after} KiB (+{growth} KiB); \
         syn_dropped {:?}, rx_drops {:?}, socket_queue_drops {:?}; {} echoes done",
        counters.get("syn_dropped"),
        counters.get("rx_drops"),
        counters.get("socket_queue_drops"),
        echoes(&client)
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "resident memory grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    assert!(
        counters.get("syn_cookies_sent").copied().unwrap_or(0) > 0,
        "the listener's half-open bound was never reached: {counters:?}"
    );
}

/// `ACCEPTOR IP TCP_PORT`: a listener with a small backlog that echoes one message on each
/// connection it accepts, one at a time; prints "ready".
const ACCEPTOR: &str = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(8)
print("ready", flush=True)
l.settimeout(120)
while True:
    c, _ = l.accept()
    c.settimeout(10)
    c.sendall(c.recv(64))
    c.close()
"#;

/// `CONNECTOR IP TCP_PORT COUNT`: COUNT new connections one after the other, each one echo;
/// prints "connections N" once all worked, fails at the first that does not.
const CONNECTOR: &str = r#"
import socket, sys, time
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    c = socket.create_connection((ip, port), timeout=10)
    msg = b"hello %d" % i
    c.sendall(msg)
    assert c.recv(64) == msg
    c.close()
    time.sleep(0.05)
print("connections", count, flush=True)
"#;

#[test]
fn new_clients_get_in_during_a_syn_flood_from_spoofed_sources() {
    ensure_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let tport = lab_port(2).to_string();
    let cmd = in_ns(
        H2,
        Some(1),
        &Stack::dpdk(H2_DATA),
        &python,
        &["-c", ACCEPTOR, H2_DATA, &tport],
    );
    let mut server = LabProcess::start("acceptor under a SYN flood", cmd);
    server.wait_printed("ready", Duration::from_secs(30));
    // 40000 spoofed SYNs: the listener's 128 half-open places are taken within the first
    // milliseconds and stay taken (each lasts the 3 s handshake timeout).
    let uport = lab_port(3).to_string();
    let cmd = in_ns(
        H3,
        None,
        &Stack::Kernel,
        &python,
        &["-c", FLOOD, H2_DATA, &uport, &tport, "40000", "syn"],
    );
    let mut flood = LabProcess::start("SYN flood", cmd);
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile a legitimate client opens 10 connections. Without the stateless handshake its
    // SYNs would be dropped with the spoofed ones, and after 1 s without an answer it would
    // fall back to the kernel's TCP, which the data address refuses.
    let cmd = in_ns(
        H1,
        Some(0),
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", CONNECTOR, H2_DATA, &tport, "10"],
    );
    let mut client = LabProcess::start("new clients", cmd);
    let status = client.wait(Duration::from_secs(60));
    let flood_status = flood.wait(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(600));
    let counters = stat_counters(server.pid(), &["streams"]);
    eprintln!(
        "SYN flood ({}): the client made its 10 connections: {}; server: syn_cookies_sent {:?}, \
         syn_cookies_accepted {:?}, syn_dropped {:?}, accepted {:?}",
        flood.stdout().trim(),
        status.success(),
        counters.get("syn_cookies_sent"),
        counters.get("syn_cookies_accepted"),
        counters.get("syn_dropped"),
        counters.get("accepted"),
    );
    assert!(
        flood_status.success(),
        "the flood failed.\n{}",
        flood.logs()
    );
    assert!(
        status.success() && client.stdout().contains("connections 10"),
        "new connections failed during the flood.\n{}\n{}",
        client.logs(),
        server.logs()
    );
    server.assert_running();
    assert!(
        counters.get("syn_cookies_accepted").copied().unwrap_or(0) > 0,
        "no connection came in by a cookie (was the half-open queue ever full?): {counters:?}"
    );
}
