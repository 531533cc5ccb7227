//! Real, unmodified UDP applications offloaded in the lab (docs/lab.md):
//! sockperf ping-pong and throughput with both ends under sluice over DPDK
//! (sl-h1 10.77.2.1 <-> sl-h2 10.77.2.2; ping-pong over af_packet and
//! af_xdp), with one end a plain kernel process on sl-h3 (10.77.2.3), ping
//! from a kernel host to a data IP, and malformed frames flooded into a live
//! stack while a sluice UDP echo keeps answering.
//!
//! Needs root; brings the lab up when it is missing. Every test holds
//! /run/sluice-lab/dpdk-p0.lock while it uses DPDK on p0. Run with
//! `cargo test --release -p shim-tests --test lab_udp_apps -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, number_after, udp_counters, udp_datagrams_since,
    wait_kernel_udp_bound, wait_stack_answers, LabProcess, Stack, H1, H1_DATA, H2, H2_DATA, H3,
    H3_DATA,
};
use shim_tests::{python3, require_tool};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Hang guards, not speed checks.
const READY: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_secs(60);
/// Kernel UDP datagrams a namespace may see during an offloaded run (anything
/// else on the host, e.g. a stray probe); sockperf moves tens of thousands.
const HANDFUL: u64 = 50;
const DPDK_LIB: &str = "/libsluice_dpdk.so";

/// CPUs as the benchmark pins them: server on 1, client on 0.
const SERVER_CPU: Option<u32> = Some(1);
const CLIENT_CPU: Option<u32> = Some(0);

fn sockperf() -> String {
    require_tool("sockperf", "sockperf").display().to_string()
}

/// A sockperf UDP server on `ip:port` in `ns`; waits until it can be reached.
fn sockperf_server(ns: &str, stack: &Stack, ip: &str, port: u16) -> LabProcess {
    let port_s = port.to_string();
    let cmd = in_ns(
        ns,
        SERVER_CPU,
        stack,
        &sockperf(),
        &["server", "-i", ip, "-p", &port_s],
    );
    let mut server = LabProcess::start(&format!("sockperf server {ns} {ip}:{port}"), cmd);
    match stack {
        Stack::Kernel | Stack::KernelUdp { .. } => wait_kernel_udp_bound(&mut server, ns, ip, port),
        Stack::Dpdk { .. } => {
            wait_stack_answers(&mut server, ip, READY);
            assert!(
                server.maps(DPDK_LIB),
                "sockperf server on {ip} answers ping without libsluice_dpdk.so mapped: \
                 not offloaded.\n{}",
                server.logs()
            );
        }
    }
    server
}

/// What a sockperf client run left behind.
struct ClientRun {
    text: String,
    /// libsluice_dpdk.so was seen mapped while it ran.
    dpdk_mapped: bool,
}

/// Runs a sockperf client (`mode` = ping-pong or throughput) to completion,
/// watching its maps while it runs.
fn sockperf_client(
    ns: &str,
    stack: &Stack,
    mode: &str,
    ip: &str,
    port: u16,
    size: u32,
) -> ClientRun {
    let (port_s, size_s) = (port.to_string(), size.to_string());
    let cmd = in_ns(
        ns,
        CLIENT_CPU,
        stack,
        &sockperf(),
        &[mode, "-i", ip, "-p", &port_s, "-t", "3", "-m", &size_s],
    );
    let mut client = LabProcess::start(&format!("sockperf {mode} {ns} -> {ip}:{port}"), cmd);
    let deadline = Instant::now() + RUN;
    let mut dpdk_mapped = false;
    while client.running() {
        dpdk_mapped |= client.maps(DPDK_LIB);
        assert!(
            Instant::now() < deadline,
            "sockperf {mode} did not finish within {RUN:?}.\n{}",
            client.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = client.wait(Duration::ZERO);
    let text = format!("{}\n{}", client.stdout(), client.stderr());
    assert!(
        status.success(),
        "sockperf {mode} failed ({status}).\n{}",
        client.logs()
    );
    assert!(
        !text.contains("ERROR"),
        "sockperf {mode} reported an error.\n{}",
        client.logs()
    );
    ClientRun { text, dpdk_mapped }
}

/// The ping-pong summary: a latency, messages back, none dropped. Returns the
/// latency in microseconds and the messages received back.
fn assert_ping_pong(run: &ClientRun, server: &LabProcess) -> (f64, u64) {
    let context = || format!("client output:\n{}\n{}", run.text, server.logs());
    let latency = number_after(&run.text, "Summary: Latency is")
        .unwrap_or_else(|| panic!("no latency summary.\n{}", context()));
    assert!(
        latency > 0.0,
        "latency summary is {latency}.\n{}",
        context()
    );
    let valid = &run.text[run
        .text
        .find("[Valid Duration]")
        .unwrap_or_else(|| panic!("no [Valid Duration] line.\n{}", context()))..];
    let received = number_after(valid, "ReceivedMessages=")
        .unwrap_or_else(|| panic!("no ReceivedMessages.\n{}", context()));
    assert!(received > 0.0, "no message came back.\n{}", context());
    assert_eq!(
        number_after(&run.text, "# dropped messages ="),
        Some(0.0),
        "messages were dropped.\n{}",
        context()
    );
    (latency, received as u64)
}

/// Stops a sockperf server with SIGINT and returns how many messages it
/// says it received.
fn server_received(server: &mut LabProcess) -> f64 {
    server.assert_running();
    // Whether it also exits by itself is sockperf_server_exits_on_sigint's concern.
    server.interrupt(Duration::from_secs(5), &["messages received"]);
    let text = format!("{}\n{}", server.stdout(), server.stderr());
    number_after(&text, "Total")
        .filter(|_| text.contains("messages received"))
        .unwrap_or_else(|| panic!("the server printed no received total.\n{}", server.logs()))
}

/// The kernel's UDP counters in `ns` barely moved while `messages` went
/// through the application: through the kernel, In + Out would have moved by
/// at least twice that. Other suites may use kernel UDP in the same lab
/// namespace meanwhile, so the bound is a handful or a tenth of the messages.
fn assert_offloaded(
    ns: &str,
    before: &HashMap<String, u64>,
    messages: u64,
    what: &str,
    logs: &str,
) {
    let moved = udp_datagrams_since(ns, before);
    let bound = HANDFUL.max(messages / 10);
    assert!(
        moved <= bound,
        "{what}: the kernel's UDP counters in {ns} moved by {moved} datagrams \
         (bound {bound}, {messages} messages): the traffic went through the kernel, \
         not the stack.\n{logs}"
    );
}

/// sockperf ping-pong, 64 B, both ends under sluice over `backend`.
fn ping_pong_sluice_to_sluice(backend: &str, port: u16) {
    ensure_lab();
    let _p0 = lock_p0();
    let over = |ip: &str| Stack::Dpdk {
        iface: format!("p0={ip}/24"),
        backend: backend.to_string(),
    };
    let (c1, c2) = (udp_counters(H1), udp_counters(H2));
    let server = sockperf_server(H2, &over(H2_DATA), H2_DATA, port);
    let run = sockperf_client(H1, &over(H1_DATA), "ping-pong", H2_DATA, port, 64);
    let (latency, messages) = assert_ping_pong(&run, &server);
    assert!(
        run.dpdk_mapped && server.maps(DPDK_LIB),
        "libsluice_dpdk.so mapped: client {}, server {}.\n{}\n{}",
        run.dpdk_mapped,
        server.maps(DPDK_LIB),
        run.text,
        server.logs()
    );
    assert_offloaded(H1, &c1, messages, "ping-pong client", &run.text);
    assert_offloaded(H2, &c2, messages, "ping-pong server", &server.logs());
    eprintln!("sluice <-> sluice ({backend}) UDP ping-pong 64 B: latency {latency} us");
}

#[test]
fn sockperf_ping_pong_sluice_to_sluice() {
    ping_pong_sluice_to_sluice("af_packet", lab_port(0));
}

#[test]
fn sockperf_ping_pong_sluice_to_sluice_af_xdp() {
    ping_pong_sluice_to_sluice("af_xdp", lab_port(7));
}

/// An offloaded process that has gone quiet costs under 2% of a core: the stack's helper and
/// DPDK's threads sleep (CPU time from /proc/PID/task/*/schedstat, so other load on the
/// machine does not count).
#[test]
fn an_idle_offloaded_process_uses_under_2_percent_of_a_core() {
    ensure_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let app = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.sendto(b"one datagram, then silence", (sys.argv[2], 9))
print("quiet", flush=True)
time.sleep(30)
"#;
    let cmd = in_ns(
        H1,
        None,
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", app, H1_DATA, H3_DATA],
    );
    let mut quiet = LabProcess::start("idle sluice process", cmd);
    let start = Instant::now();
    while !quiet.stdout().contains("quiet") {
        assert!(
            start.elapsed() < READY,
            "the application did not start.\n{}",
            quiet.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(quiet.maps(DPDK_LIB), "not offloaded.\n{}", quiet.logs());
    let cpu_ns = |pid: u32| -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the process's tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    // Past the helper's busy and doze periods.
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_ns(quiet.pid());
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let used = cpu_ns(quiet.pid()) - before;
    let share = used as f64 / window.as_nanos() as f64 * 100.0;
    eprintln!("idle offloaded process: {share:.2}% of a core");
    quiet.assert_running();
    assert!(
        share < 2.0,
        "an idle offloaded process used {share:.2}% of a core (the bound is 2%).\n{}",
        quiet.logs()
    );
}

/// Two busy ping-pong pairs under sluice at once, each end of both pairs on the same core as
/// its counterpart of the other pair (four polling processes on two cores): both pairs keep
/// going, and neither gets less than a fifth of the other's round trips.
#[test]
fn two_busy_processes_share_the_cores() {
    ensure_lab();
    let _p0 = lock_p0();
    let pairs = [
        (H1_DATA, H2_DATA, lab_port(3)),
        ("10.77.2.11", "10.77.2.12", lab_port(4)),
    ];
    let servers: Vec<LabProcess> = pairs
        .iter()
        .map(|(_, server_ip, port)| sockperf_server(H2, &Stack::dpdk(server_ip), server_ip, *port))
        .collect();
    let clients: Vec<_> = pairs
        .iter()
        .map(|&(client_ip, server_ip, port)| {
            std::thread::spawn(move || {
                sockperf_client(
                    H1,
                    &Stack::dpdk(client_ip),
                    "ping-pong",
                    server_ip,
                    port,
                    64,
                )
            })
        })
        .collect();
    let runs: Vec<ClientRun> = clients
        .into_iter()
        .map(|c| c.join().expect("a client run failed"))
        .collect();
    let messages: Vec<u64> = runs
        .iter()
        .zip(&servers)
        .map(|(run, server)| assert_ping_pong(run, server).1)
        .collect();
    let (low, high) = (messages[0].min(messages[1]), messages[0].max(messages[1]));
    assert!(
        low * 5 >= high,
        "one pair starved the other: {messages:?} round trips in 3 s.\n{}\n{}",
        runs[0].text,
        runs[1].text
    );
    eprintln!("two busy sluice ping-pong pairs at once: {messages:?} round trips in 3 s");
}

#[test]
fn sockperf_throughput_sluice_to_sluice() {
    ensure_lab();
    let _p0 = lock_p0();
    for (i, size) in [64u32, 1472].into_iter().enumerate() {
        let port = lab_port(1 + i as u16);
        let (c1, c2) = (udp_counters(H1), udp_counters(H2));
        let mut server = sockperf_server(H2, &Stack::dpdk(H2_DATA), H2_DATA, port);
        let run = sockperf_client(H1, &Stack::dpdk(H1_DATA), "throughput", H2_DATA, port, size);
        let sent = number_after(&run.text, "Total of")
            .unwrap_or_else(|| panic!("no sent total from the client.\n{}", run.text));
        let received = server_received(&mut server);
        assert!(
            sent > 0.0 && received > 0.0,
            "{size} B: client sent {sent}, server received {received}.\n{}\n{}",
            run.text,
            server.logs()
        );
        assert_offloaded(H1, &c1, sent as u64, "throughput client", &run.text);
        assert_offloaded(
            H2,
            &c2,
            received as u64,
            "throughput server",
            &server.logs(),
        );
        eprintln!("sluice -> sluice UDP throughput {size} B: sent {sent}, received {received}");
    }
}

#[test]
fn sockperf_sluice_client_kernel_server() {
    ensure_lab();
    let _p0 = lock_p0();
    let port = lab_port(3);
    let (c1, c3) = (udp_counters(H1), udp_counters(H3));
    let server = sockperf_server(H3, &Stack::Kernel, H3_DATA, port);
    let run = sockperf_client(H1, &Stack::dpdk(H1_DATA), "ping-pong", H3_DATA, port, 64);
    let (latency, messages) = assert_ping_pong(&run, &server);
    assert!(
        run.dpdk_mapped,
        "the client never mapped libsluice_dpdk.so: not offloaded.\n{}",
        run.text
    );
    assert_offloaded(H1, &c1, messages, "sluice client", &run.text);
    // The kernel peer really took part: its own counters moved.
    let kernel_side = udp_datagrams_since(H3, &c3);
    assert!(
        kernel_side > 100,
        "the kernel server's UDP counters moved by only {kernel_side}.\n{}",
        server.logs()
    );
    eprintln!("sluice client -> kernel server UDP ping-pong 64 B: latency {latency} us");
}

#[test]
fn sockperf_kernel_client_sluice_server() {
    ensure_lab();
    let _p0 = lock_p0();
    let port = lab_port(4);
    let (c1, c3) = (udp_counters(H1), udp_counters(H3));
    let server = sockperf_server(H1, &Stack::dpdk(H1_DATA), H1_DATA, port);
    let run = sockperf_client(H3, &Stack::Kernel, "ping-pong", H1_DATA, port, 64);
    let (latency, messages) = assert_ping_pong(&run, &server);
    assert_offloaded(H1, &c1, messages, "sluice server", &server.logs());
    let kernel_side = udp_datagrams_since(H3, &c3);
    assert!(
        kernel_side > 100,
        "the kernel client's UDP counters moved by only {kernel_side}.\n{}",
        run.text
    );
    eprintln!("kernel client -> sluice server UDP ping-pong 64 B: latency {latency} us");
}

#[test]
fn ping_data_ip_from_kernel_host() {
    ensure_lab();
    let _p0 = lock_p0();
    let port = lab_port(5);
    let mut server = sockperf_server(H1, &Stack::dpdk(H1_DATA), H1_DATA, port);
    let out = Command::new("ip")
        .args(["netns", "exec", H3, "ping", "-c", "3", "-W", "2", H1_DATA])
        .output()
        .expect("run ping in sl-h3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("3 packets transmitted, 3 received"),
        "ping {H1_DATA} from {H3}: not 3 replies.\n{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    server.assert_running();
}

/// Ctrl-C ends a sockperf server under sluice as it ends a kernel one: the
/// handler's flag is seen because the blocking recvfrom returns EINTR.
#[test]
fn sockperf_server_exits_on_sigint() {
    ensure_lab();
    let _p0 = lock_p0();
    let port = lab_port(2);
    let mut server = sockperf_server(H1, &Stack::dpdk(H1_DATA), H1_DATA, port);
    let exited = server.interrupt(Duration::from_secs(10), &[]);
    assert!(
        exited,
        "sockperf server under sluice did not exit within 10 s of SIGINT (a kernel one \
         exits at once): a blocking recvfrom on an offloaded socket was not interrupted \
         by the signal (EINTR).\n{}",
        server.logs()
    );
    assert!(
        format!("{}{}", server.stdout(), server.stderr()).contains("interrupted by user"),
        "sockperf did not see the SIGINT.\n{}",
        server.logs()
    );
}

/// A UDP echo: what arrives goes back to its sender, byte for byte.
const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("echo bound", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"#;

/// Kernel client of the echo: sends numbered datagrams of several sizes from
/// a fixed port and wants each one back byte for byte (a lost one is sent
/// again, up to 5 times). Anything else arriving (e.g. a malformed frame the
/// stack should have dropped, echoed back) is a failure. It keeps going until
/// the flood is over (the marker file exists) and at least `count` were sent.
const ECHO_CLIENT: &str = r#"
import os, socket, sys, time
src, sport, dst, dport, count, marker = sys.argv[1:7]
sport, dport, count = int(sport), int(dport), int(count)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, sport))
s.settimeout(0.5)
sizes = [1, 18, 64, 200, 512, 1000, 1472, 2000]
answered = retries = 0
unexpected = []
missing = None
done = set()
deadline = time.time() + 45
while (answered < count or not os.path.exists(marker)) and time.time() < deadline:
    tag = b"sluice-echo %07d " % answered
    size = max(sizes[answered % len(sizes)], len(tag))
    payload = (tag * (size // len(tag) + 1))[:size]
    got = False
    for attempt in range(5):
        if attempt:
            retries += 1
        s.sendto(payload, (dst, dport))
        while True:
            try:
                data, peer = s.recvfrom(65535)
            except socket.timeout:
                break
            if data == payload and peer == (dst, dport):
                got = True
                break
            if data[:12] == b"sluice-echo " and data[12:19] in done:
                continue  # a late answer to an earlier retry
            unexpected.append((peer, data[:40]))
        if got:
            break
    if not got:
        missing = "no answer to datagram %d (%d B) after 5 tries" % (answered, size)
        break
    done.add(b"%07d" % answered)
    answered += 1
print("answered %d datagrams byte for byte, %d retries, %d unexpected datagrams" % (answered, retries, len(unexpected)))
for u in unexpected[:10]:
    print("unexpected", u)
if missing:
    print(missing)
if not os.path.exists(marker):
    print("the flood never finished")
sys.exit(0 if not missing and not unexpected and os.path.exists(marker) else 1)
"#;

/// Malformed and unwanted frames into a stack, from sl-h3 with an AF_PACKET
/// socket, cycled through a bounded burst; writes the marker file when done.
const FLOOD: &str = r#"
import socket, struct, sys
iface, dmac, dst, src, dport, sport, total, marker = sys.argv[1:9]
dport, sport, total = int(dport), int(sport), int(total)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
smac = s.getsockname()[4]
dmac = bytes.fromhex(dmac.replace(":", ""))
BCAST = b"\xff" * 6
D, S = socket.inet_aton(dst), socket.inet_aton(src)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF

def eth(payload, etype=0x0800, to=None):
    return (to or dmac) + smac + struct.pack("!H", etype) + payload

def ip(payload, proto=17, ident=0x5100, frag=0, ihl=5, total=None, good=True, ver=4):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, total, ident, frag, 64, proto, 0, S, D)
    c = csum(h)
    if not good:
        c ^= 0x5A5A
    return h[:10] + struct.pack("!H", c) + h[12:] + payload

def udp(data, length=None, good=True, port=None):
    length = 8 + len(data) if length is None else length
    h = struct.pack("!HHHH", sport, port or dport, length, 0)
    pseudo = S + D + struct.pack("!BBH", 0, 17, 8 + len(data))
    c = csum(pseudo + h + data) or 0xFFFF
    if not good:
        c ^= 0x1234
    return h[:6] + struct.pack("!H", c) + data

def arp(op, target, sender=S, hlen=6, cut=None):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, hlen, 4, op, smac, sender, b"\0" * 6, socket.inet_aton(target))
    return body[:cut] if cut else body

def icmp_echo(good=True):
    h = struct.pack("!BBHHH", 8, 0, 0, 0x77, 1) + b"MALFORMED-ping"
    c = csum(h) ^ (0 if good else 0x0F0F)
    return h[:2] + struct.pack("!H", c) + h[4:]

BAD = b"MALFORMED-" * 8
frames = [
    ("ethernet header only", dmac + smac + b"\x08\x00"),
    ("ipv4 header cut short", eth(ip(udp(BAD))[:12])),
    ("ihl below 5", eth(ip(udp(BAD), ihl=3))),
    ("ihl beyond packet", eth(ip(b"", ihl=15))),
    ("version 6 in an ipv4 frame", eth(ip(udp(BAD), ver=6))),
    ("bad ip checksum", eth(ip(udp(BAD), good=False))),
    ("total length beyond frame", eth(ip(udp(BAD), total=1400))),
    ("total length below header", eth(ip(udp(BAD), total=12))),
    ("udp length beyond payload", eth(ip(udp(BAD, length=600)))),
    ("udp length below 8", eth(ip(udp(BAD, length=4)))),
    ("bad udp checksum", eth(ip(udp(BAD, good=False)))),
    ("udp header cut short", eth(ip(udp(BAD)[:5]))),
    ("to a closed port", eth(ip(udp(BAD, port=9)))),
    ("icmp echo cut short", eth(ip(icmp_echo()[:5], proto=1))),
    ("icmp echo bad checksum", eth(ip(icmp_echo(good=False), proto=1))),
    ("unknown ip protocol", eth(ip(BAD, proto=253))),
    ("arp request for another address", eth(arp(1, "10.77.2.99"), 0x0806, BCAST)),
    ("arp reply about another address", eth(arp(2, "10.77.2.98", sender=socket.inet_aton("10.77.2.97")), 0x0806)),
    ("arp cut short", eth(arp(1, dst, cut=12), 0x0806, BCAST)),
    ("arp with bad hardware length", eth(arp(1, dst, hlen=9), 0x0806, BCAST)),
    ("unknown ethertype", eth(BAD, 0x88B5)),
]
# Fragments of one datagram that overlap: the second rewrites bytes of the
# first. The kernel (RFC 5722) drops such a datagram; so must the stack.
whole = udp(BAD * 2)
frames.append(("overlapping fragment 1", eth(ip(whole[:48], frag=0x2000, ident=0x6200))))
frames.append(("overlapping fragment 2", eth(ip(whole[24:], frag=3, ident=0x6200))))
# Fragment past 64 KiB: offset 8184 * 8 plus 200 bytes.
frames.append(("fragment beyond 64 KiB", eth(ip(BAD * 3, frag=0x2000 | 8184, ident=0x6300))))
# First fragments that never complete, each of a new datagram: the
# reassembly table must stay bounded and expire them.
frames.append(("fragment never completed", None))
count = errors = 0
while count < total:
    name, frame = frames[count % len(frames)]
    if frame is None:
        frame = eth(ip(whole[:32], frag=0x2000, ident=(0x7000 + count) & 0xFFFF))
    try:
        s.send(frame)
    except OSError:
        errors += 1
    count += 1
print("sent %d frames of %d kinds, %d refused by the kernel" % (count, len(frames), errors), flush=True)
open(marker, "w").write("done\n")
"#;

/// The MAC the stack answered ARP with, as sl-h3's neighbour table learnt it.
fn stack_mac(ip: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", H3, "neigh", "show", ip])
        .output()
        .expect("ip neigh in sl-h3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "lladdr")
        .and_then(|_| words.next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("sl-h3 has no neighbour entry for {ip}: {text}"))
}

#[test]
fn malformed_frames_while_echo_answers() {
    ensure_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let port = lab_port(6);
    // Ports are per test process and tests run one at a time under the lock.
    let client_port = lab_port(0);
    let scratch = shim_tests::Scratch::new("flood");
    let marker = scratch.path().join("flood-done").display().to_string();
    let port_s = port.to_string();
    let client_port_s = client_port.to_string();

    let echo_cmd = in_ns(
        H1,
        SERVER_CPU,
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", ECHO_SERVER, H1_DATA, &port_s],
    );
    let mut echo = LabProcess::start("sluice UDP echo (python3)", echo_cmd);
    wait_stack_answers(&mut echo, H1_DATA, READY);
    assert!(
        echo.maps(DPDK_LIB),
        "the echo answers ping without libsluice_dpdk.so mapped.\n{}",
        echo.logs()
    );
    let mac = stack_mac(H1_DATA);

    // Without the flood first, so that a datagram the stack never answers is
    // told apart from one the flood made it lose.
    let baseline_marker = scratch.path().join("no-flood");
    std::fs::write(&baseline_marker, "no flood\n").expect("write marker");
    let baseline_marker = baseline_marker.display().to_string();
    let baseline_cmd = in_ns(
        H3,
        CLIENT_CPU,
        &Stack::Kernel,
        &python,
        &[
            "-c",
            ECHO_CLIENT,
            H3_DATA,
            &client_port_s,
            H1_DATA,
            &port_s,
            "16",
            &baseline_marker,
        ],
    );
    let mut baseline = LabProcess::start("kernel echo client, no flood (python3)", baseline_cmd);
    let baseline_status = baseline.wait(RUN);
    assert!(
        baseline_status.success(),
        "the sluice echo does not answer every size byte for byte even without the flood.\n{}\n{}",
        baseline.logs(),
        echo.logs()
    );
    drop(baseline);

    let c1 = udp_counters(H1);
    let client_cmd = in_ns(
        H3,
        CLIENT_CPU,
        &Stack::Kernel,
        &python,
        &[
            "-c",
            ECHO_CLIENT,
            H3_DATA,
            &client_port_s,
            H1_DATA,
            &port_s,
            "2000",
            &marker,
        ],
    );
    let mut client = LabProcess::start("kernel echo client (python3)", client_cmd);
    let flood_cmd = in_ns(
        H3,
        None,
        &Stack::Kernel,
        &python,
        &[
            "-c",
            FLOOD,
            "p0",
            &mac,
            H1_DATA,
            H3_DATA,
            &port_s,
            &client_port_s,
            "20000",
            &marker,
        ],
    );
    let mut flood = LabProcess::start("malformed frame flood (python3)", flood_cmd);
    let flood_status = flood.wait(RUN);
    let client_status = client.wait(RUN);
    let report = format!("{}\n{}\n{}", flood.logs(), client.logs(), echo.logs());
    assert!(
        flood_status.success() && flood.stdout().contains("sent 20000 frames"),
        "the flood did not run.\n{report}"
    );
    assert!(
        client_status.success(),
        "the echo did not answer every datagram byte for byte during the flood.\n{report}"
    );
    echo.assert_running();
    assert_offloaded(H1, &c1, 2000, "sluice echo", &report);
    // Still alive and answering after the burst.
    wait_stack_answers(&mut echo, H1_DATA, Duration::from_secs(5));
    eprintln!("{}", client.stdout().trim());
    eprintln!("{}", flood.stdout().trim());
}
