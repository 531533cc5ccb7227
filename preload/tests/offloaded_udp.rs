//! Offloaded datagram sockets in the lab: a python3 program under libsluice.so in sl-h1 (DPDK
//! mode, data port p0=10.77.2.1/24) talks to a plain kernel python3 peer in sl-h3
//! (10.77.2.3). The program (tests/lab/udp_app.py) checks the kernel's semantics call by call
//! and prints one `ok` line per check; this side checks that it finished, that every check
//! ran, and that the sockets really were offloaded (the decision log line, and the program
//! itself checks that libsluice_dpdk.so is mapped).
//!
//! Needs root, the lab (`tools/sluice-lab up`, run here when sl-h1/sl-h3 are missing),
//! python3 and flock; fails with a message saying which is missing. DPDK use of p0 is
//! serialised with the other suites through /run/sluice-lab/dpdk-p0.lock.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const H1: &str = "sl-h1";
const H3: &str = "sl-h3";
const H1_DATA: &str = "10.77.2.1";
const H3_DATA: &str = "10.77.2.3";
/// sl-h3's management address: the policy keeps it in the kernel.
const H3_MGMT: &str = "10.77.1.3";
const P0_LOCK: &str = "/run/sluice-lab/dpdk-p0.lock";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>/libsluice.so and libsluice_dpdk.so beside it, (re)built first: cargo does
/// not build cdylibs for the integration tests of a package.
fn library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("current_exe");
            let dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("test binary lives in target/<profile>/deps");
            if let Some(cargo) = std::env::var_os("CARGO") {
                let mut build = Command::new(cargo);
                build.args([
                    "build",
                    "-j1",
                    "-q",
                    "-p",
                    "sluice-preload",
                    "-p",
                    "sluice-dpdk",
                ]);
                build
                    .arg("--manifest-path")
                    .arg(manifest_dir().join("Cargo.toml"));
                if dir.ends_with("release") {
                    build.arg("--release");
                }
                let status = build.status().expect("cannot run cargo build");
                assert!(
                    status.success(),
                    "cargo build of libsluice.so/libsluice_dpdk.so failed"
                );
            }
            for lib in ["libsluice.so", "libsluice_dpdk.so"] {
                assert!(
                    dir.join(lib).exists(),
                    "{} not found: build it first (cargo build -p sluice-preload -p sluice-dpdk)",
                    dir.join(lib).display()
                );
            }
            dir.join("libsluice.so")
        })
        .clone()
}

fn has_port(ns: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "p0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Root and the lab, brought up if missing.
fn ensure_lab() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, AF_PACKET, DPDK): run it as root"
    );
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        if has_port(H1) && has_port(H3) {
            return;
        }
        let script = manifest_dir().join("../tools/sluice-lab");
        let status = Command::new(&script).arg("up").status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the lab is not up and `{} up` failed: {status:?}",
            script.display()
        );
        assert!(
            has_port(H1) && has_port(H3),
            "sluice-lab up did not create p0 in {H1} and {H3}"
        );
    });
    std::fs::create_dir_all("/run/sluice-lab").expect("cannot create /run/sluice-lab");
    for tool in ["python3", "flock"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is needed by this test and is not installed");
    }
}

/// The kernel echo peer in sl-h3, killed (by PID) and reaped on drop.
struct Peer(Child);

impl Peer {
    fn start(port: u16) -> Peer {
        let script = manifest_dir().join("tests/lab/udp_peer.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", H3, "python3"])
            .arg(&script)
            .args([&port.to_string(), "120"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the kernel peer in sl-h3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the peer's first line");
        assert_eq!(line.trim(), "peer ready", "the kernel peer did not start");
        Peer(child)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Runs udp_app.py in `what` mode under sluice in sl-h1 against a fresh peer.
fn run_app(what: &str, peer_port: u16) -> Output {
    run_app_with(what, peer_port, &[])
}

/// As `run_app`, with more environment (`NAME=value`) for the application.
fn run_app_with(what: &str, peer_port: u16, env: &[&str]) -> Output {
    ensure_lab();
    let lib = library();
    let _peer = Peer::start(peer_port);
    let app = manifest_dir().join("tests/lab/udp_app.py");
    let mut cmd = Command::new("flock");
    cmd.args([P0_LOCK, "ip", "netns", "exec", H1, "env"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLUICE_") || name == "LD_PRELOAD" {
            cmd.env_remove(name);
        }
    }
    cmd.arg(format!("LD_PRELOAD={}", lib.display()))
        .args([
            "SLUICE_MODE=dpdk",
            &format!("SLUICE_IFACES=p0={H1_DATA}/24"),
            "SLUICE_HUGEPAGES=off",
            "SLUICE_LOG=sluice=debug",
        ])
        .args(env)
        .args(["timeout", "120", "python3"])
        .arg(&app)
        .args([
            H3_DATA,
            &peer_port.to_string(),
            &(peer_port + 1).to_string(),
            H1_DATA,
            what,
            H3_MGMT,
        ]);
    let out = cmd.output().expect("cannot run the application in sl-h1");
    std::thread::sleep(Duration::from_millis(10));
    out
}

fn check(out: &Output, expected: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "the application failed\n{report}");
    assert!(
        stdout.contains("all done"),
        "the application stopped early\n{report}"
    );
    for ok in expected {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok ") && l.contains(ok)),
            "check `{ok}` did not pass\n{report}"
        );
    }
    assert!(
        stderr.contains(&format!("-> offload (bind {H1_DATA}:0)")),
        "no offload decision was logged\n{report}"
    );
    assert!(
        stderr.contains("stack started (dpdk mode)"),
        "the stack did not start in DPDK mode\n{report}"
    );
}

/// A peer port per test process, so that concurrent runs (other checkouts) do not collide.
fn peer_port(offset: u16) -> u16 {
    40000 + (std::process::id() % 3000) as u16 * 8 + offset
}

#[test]
fn offloaded_udp_sockets_behave_like_the_kernel_s() {
    let out = run_app("semantics", peer_port(0));
    check(
        &out,
        &[
            "explicit bind, getsockname",
            "options carried over",
            "sendto/recvfrom",
            "MSG_DONTWAIT -> EAGAIN",
            "FIONREAD",
            "MSG_PEEK",
            "MSG_TRUNC (msg_flags and return value)",
            "connect, send/recv, write/read, getpeername",
            "connect(AF_UNSPEC) disconnects",
            "sendmmsg, recvmmsg with MSG_WAITFORONE",
            "SO_ERROR ECONNREFUSED",
            "select with a pipe",
            "poll with a pipe",
            "epoll with a pipe",
            "a signal interrupts a blocking recv",
            "epoll registration made before the offload follows it",
            "asyncio datagram endpoint",
            "O_NONBLOCK carried over",
            "settimeout (poll-based wait)",
            "INADDR_ANY receives from the stack and from the kernel",
            "INADDR_ANY blocking recv wakes for either path",
            "sendto a kernel-kept destination goes through the shadow",
            "connect to a kernel-kept peer is served by the shadow",
            "INADDR_ANY in epoll",
            "multicast membership (ip_mreq, ip_mreqn; EADDRINUSE, EADDRNOTAVAIL)",
            "fork: a child closing inherited offloaded sockets leaves the parent's intact",
            "fork: a child using inherited offloaded sockets gets their kernel sockets",
            "libsluice_dpdk.so mapped",
        ],
    );
}

/// A forked child exiting through exit() runs the exit hooks it inherited; over af_xdp,
/// closing the port there would detach the parent's XDP program.
#[test]
fn a_forked_child_exiting_leaves_the_parent_port_working() {
    let out = run_app_with("fork-exit", peer_port(3), &["SLUICE_DPDK_BACKEND=af_xdp"]);
    check(
        &out,
        &["a forked child's exit leaves the parent's port working"],
    );
}

/// SLUICE_PCAP captures the stack's traffic both ways, fragments and ARP included, in a file
/// tshark reads.
#[test]
fn sluice_pcap_captures_what_tcpdump_cannot_see() {
    let dir = std::env::temp_dir().join(format!("sluice-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the capture directory");
    let pattern = dir.join("cap-%p.pcap");
    let out = run_app_with(
        "fragments",
        peer_port(7),
        &[&format!("SLUICE_PCAP={}", pattern.display())],
    );
    check(&out, &["1473-byte datagram", "61332-byte datagram"]);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read the capture directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "one capture file (cap-PID.pcap): {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("cap-")
            && name.ends_with(".pcap")
            && name[4..name.len() - 5].parse::<u32>().is_ok(),
        "%p was not replaced by a process id: {name}"
    );
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&files[0])
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "frame.protocols", "-e", "ip.src", "-e", "ip.flags.mf"])
        .args(["-e", "frame.len"])
        .output()
        .expect("tshark is installed (make deps)");
    let text = String::from_utf8_lossy(&tshark.stdout).into_owned();
    assert!(
        tshark.status.success(),
        "tshark cannot read the capture: {}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let from = |ip: &str| lines.iter().filter(|f| f.get(1) == Some(&ip)).count();
    let fragments_from = |ip: &str| {
        lines
            .iter()
            .filter(|f| f.get(1) == Some(&ip) && f.get(2) == Some(&"1"))
            .count()
    };
    let bytes_from = |ip: &str| -> usize {
        lines
            .iter()
            .filter(|f| f.get(1) == Some(&ip))
            .filter_map(|f| f.get(3)?.parse::<usize>().ok())
            .sum()
    };
    let arp = lines.iter().filter(|f| f[0].contains("arp")).count();
    assert!(
        from(H1_DATA) > 0 && from(H3_DATA) > 0,
        "the capture does not have both directions:\n{text}"
    );
    assert!(
        fragments_from(H1_DATA) > 0,
        "the capture has no IP fragments sent:\n{text}"
    );
    // The echoes come back as fragments (af_xdp, PCI) or already reassembled by the kernel's
    // packet fanout (af_packet): either way every byte is in the capture.
    let payload: usize = [1473, 2000, 4000, 9000, 30000, 61332].iter().sum();
    assert!(
        bytes_from(H3_DATA) >= payload,
        "the capture holds {} bytes from the peer, less than the {payload} echoed:\n{text}",
        bytes_from(H3_DATA)
    );
    assert!(arp > 0, "the capture has no ARP:\n{text}");
    std::fs::remove_dir_all(&dir).expect("remove the capture directory");
}

/// Event loops over offloaded sockets: several and nested epoll sets, closed and duplicated
/// fds, threads, asyncio with every selector.
#[test]
fn event_loops_dups_and_threads_over_offloaded_sockets() {
    let out = run_app("events", peer_port(5));
    check(
        &out,
        &[
            "one fd in two epoll sets",
            "an epoll set inside an epoll set and a poll set",
            "a nested set reports data another wait saw first",
            "an fd closed while registered; EPOLLEXCLUSIVE accepted",
            "dup, F_DUPFD, F_DUPFD_CLOEXEC, dup2 over an offloaded fd",
            "8 threads with a socket each, 200 round trips each",
            "asyncio with SelectSelector",
            "asyncio with PollSelector",
            "asyncio with EpollSelector",
        ],
    );
}

/// Several sockets of one process and another process under sluice (its own stack and data
/// IP on the same port) are members of one group: one datagram from a kernel sender reaches
/// them all.
#[test]
fn multicast_reaches_sockets_and_processes_on_one_group() {
    let out = run_app("mcast-procs", peer_port(4));
    check(
        &out,
        &[
            "a second process with its own stack joined the group",
            "reached two sockets here and the other process",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stacks = stderr
        .lines()
        .filter(|l| l.contains("stack started (dpdk mode)"))
        .count();
    assert_eq!(stacks, 2, "not one DPDK stack per process:\n{stderr}");
    assert!(
        stderr.contains("-> offload (bind 0.0.0.0:"),
        "the group sockets were not offloaded:\n{stderr}"
    );
}

/// Two sluice processes on one interface (own MACs and IPs) never get each other's traffic,
/// even bound to the same UDP port.
#[test]
fn processes_sharing_an_interface_are_isolated() {
    let out = run_app("isolation", peer_port(1));
    check(
        &out,
        &["a process sharing the interface received none of the other's 20 datagrams"],
    );
}

/// A signal ends every blocking wait on an offloaded socket with EINTR, whenever it arrives,
/// and a receive restarts under SA_RESTART as the kernel's does.
/// A 5 ms spin budget puts a quarter of each 20 ms sleep slice's cycle in user space, where
/// a handler that ran unnoticed would leave the wait asleep until SO_RCVTIMEO.
#[test]
fn signals_interrupt_blocking_waits_at_any_moment() {
    let out = run_app_with("signals", peer_port(6), &["SLUICE_SPIN_US=5000"]);
    check(
        &out,
        &[
            "interrupt a blocking recv",
            "interrupt a blocking poll",
            "interrupt a blocking epoll",
            "interrupt a blocking select",
            "SA_RESTART restarts a blocking recv",
            "SA_RESTART does not restart recv with SO_RCVTIMEO, nor poll",
        ],
    );
}

/// Over DPDK's af_packet port, the kernel's packet fanout (PACKET_FANOUT_FLAG_DEFRAG, set by
/// the PMD) reassembles incoming fragments before the stack sees them, so the received side
/// arrives as one frame longer than the MTU: this checks that path too, up to the
/// largest datagram an af_packet ring frame holds (61332 bytes of payload).
#[test]
fn datagrams_larger_than_the_mtu_cross_in_fragments() {
    let out = run_app("fragments", peer_port(2));
    check(
        &out,
        &[
            "1473-byte datagram",
            "2000-byte datagram",
            "4000-byte datagram",
            "9000-byte datagram",
            "30000-byte datagram",
            "61332-byte datagram",
        ],
    );
}
