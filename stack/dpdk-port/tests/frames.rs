//! Lab tests of the DPDK port: real Ethernet frames through the veths
//! between namespaces sl-h1 and sl-h2 (both on switch sl-sw0), in both
//! directions, checked byte for byte by `sluice-dpdk-frames`.
//!
//! Needs root (namespaces, AF_PACKET, DPDK). Brings the lab up with
//! `tools/sluice-lab up` when it is not. The scenarios that drive p0 run one
//! after another inside one test function, so they never share the veth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

const H1: &str = "sl-h1";
const H2: &str = "sl-h2";
const MAC1: &str = "02:00:00:77:02:01";
const MAC2: &str = "02:00:00:77:02:02";
const COUNT: u32 = 1000;
/// A hang guard, not a speed check: a run takes well under a second.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Taken by every test here that opens a DPDK port on the lab's p0.
static P0: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Exclusive use of the lab's p0 ports for DPDK: the threads of this test
/// binary (a mutex) and other test binaries that take the same file lock
/// (`flock` on /run/sluice-lab/dpdk-p0.lock), released on drop.
struct P0Lock {
    _thread: std::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

fn lock_p0() -> P0Lock {
    use std::os::fd::AsRawFd;
    let thread = P0.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all("/run/sluice-lab").expect("create /run/sluice-lab");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/sluice-lab/dpdk-p0.lock")
        .expect("open /run/sluice-lab/dpdk-p0.lock");
    // SAFETY: flock on an fd we own; blocks until the other holder is done.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock /run/sluice-lab/dpdk-p0.lock: {}",
        std::io::Error::last_os_error()
    );
    P0Lock {
        _thread: thread,
        _file: file,
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice-dpdk-frames")
}

/// libsluice_dpdk.so next to the binary: target/<profile>/.
fn dpdk_lib() -> PathBuf {
    let lib = Path::new(bin()).with_file_name("libsluice_dpdk.so");
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p sluice-dpdk`",
        lib.display()
    );
    lib
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the DPDK lab tests need root (network namespaces, AF_PACKET, DPDK): \
         run `sudo -E cargo test -p sluice-dpdk --test frames`"
    );
}

fn has_port(ns: &str, port: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_lab() {
    require_root();
    static LAB: Once = Once::new();
    LAB.call_once(|| {
        if has_port(H1, "p0") && has_port(H2, "p0") {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/sluice-lab");
        let status = Command::new(&script).arg("up").status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the lab is not up and `{} up` failed: {status:?}",
            script.display()
        );
        assert!(
            has_port(H1, "p0") && has_port(H2, "p0"),
            "sluice-lab up did not create p0 in {H1} and {H2}"
        );
    });
}

struct Outcome {
    label: String,
    /// Also the EAL's `--file-prefix` (`sluice-<pid>`): `ip netns exec` execs.
    pid: u32,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn show(&self) -> String {
        format!(
            "{}: exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.label, self.code, self.stdout, self.stderr
        )
    }

    fn assert_exchanged(&self, count: u32) {
        assert_eq!(self.code, Some(0), "{}", self.show());
        let want = format!("sent={count} received={count}");
        assert!(
            self.stdout.contains(&want),
            "expected `{want}` in\n{}",
            self.show()
        );
        // A DPDK end also counts at least the data frames in its port.
        for key in ["rx_frames=", "tx_frames="] {
            if let Some(at) = self.stdout.find(key) {
                let n: u64 = self.stdout[at + key.len()..]
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                assert!(
                    n >= count as u64,
                    "port counter {key}{n} < {count}:\n{}",
                    self.show()
                );
            }
        }
    }
}

fn spawn(ns: &str, args: &[String]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, bin()])
        .args(args)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ip netns exec")
}

/// Waits for `child`, killing it (by its own pid) if it outlives the guard.
fn finish(label: &str, mut child: Child) -> Outcome {
    let pid = child.id();
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait for child") {
            Some(_) => break,
            None if start.elapsed() > CHILD_LIMIT => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect killed child");
                panic!(
                    "{label}: still running after {CHILD_LIMIT:?} (hung?), killed\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = child.wait_with_output().expect("collect child output");
    Outcome {
        label: label.to_string(),
        pid,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Arguments of one end: `side` on p0 with id 1 (h1) or 2 (h2).
fn end_args(side: &str, host: u8, count: u32, extra: &[&str]) -> Vec<String> {
    let (mac, peer_mac, peer) = if host == 1 {
        (MAC1, MAC2, 2)
    } else {
        (MAC2, MAC1, 1)
    };
    let mut args: Vec<String> = vec![side.into()];
    for (k, v) in [
        ("--iface", "p0".to_string()),
        ("--mac", mac.to_string()),
        ("--peer-mac", peer_mac.to_string()),
        ("--id", host.to_string()),
        ("--peer-id", peer.to_string()),
        ("--count", count.to_string()),
        ("--timeout-ms", "20000".to_string()),
    ] {
        args.push(k.into());
        args.push(v);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs one exchange between h1 and h2 and checks both ends saw every frame.
fn exchange(label: &str, h1: Vec<String>, h2: Vec<String>, count: u32) -> (Outcome, Outcome) {
    let c2 = spawn(H2, &h2);
    let c1 = spawn(H1, &h1);
    let o1 = finish(&format!("{label} [h1 {}]", h1.join(" ")), c1);
    let o2 = finish(&format!("{label} [h2 {}]", h2.join(" ")), c2);
    o1.assert_exchanged(count);
    o2.assert_exchanged(count);
    assert_port_restored(H1);
    assert_port_restored(H2);
    (o1, o2)
}

/// After a DPDK run, p0 carries no XDP program and is not promiscuous.
fn assert_port_restored(ns: &str) {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "p0"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(" xdp"),
        "{ns} p0 still has an XDP program:\n{text}"
    );
    assert!(
        !text.contains("PROMISC") && text.contains("promiscuity 0"),
        "{ns} p0 left promiscuous:\n{text}"
    );
}

/// Nothing of these runs may remain: hugepage files, EAL runtime
/// directories, processes (the tool starts none of its own).
fn assert_nothing_left(pids: &[u32]) {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let hugepage_files = names("/dev/hugepages");
    let runtime_dirs = names("/var/run/dpdk");
    for pid in pids {
        let prefix = format!("sluice-{pid}");
        let files: Vec<_> = hugepage_files
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(
            files.is_empty(),
            "hugepage files left in /dev/hugepages: {files:?}"
        );
        assert!(
            !runtime_dirs.contains(&prefix),
            "EAL runtime directory /var/run/dpdk/{prefix} left behind"
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still exists"
        );
    }
}

#[test]
fn frames_cross_the_veth_byte_for_byte() {
    ensure_lab();
    let _p0 = lock_p0();
    let lib = dpdk_lib();
    let lib = lib.to_str().unwrap();
    let mut runs = Vec::new();

    // 1. af_packet port against the kernel, without hugepages; first a
    //    device that does not exist, then open-close-open (EAL reused).
    let first = exchange(
        "af_packet port <-> kernel AF_PACKET",
        end_args(
            "dpdk",
            1,
            COUNT,
            &[
                "--backend",
                "af_packet",
                "--hugepages",
                "off",
                "--bad-device",
                "nosuch0",
                "--reopen",
            ],
        ),
        end_args("raw", 2, COUNT, &[]),
        COUNT,
    );
    assert!(
        first
            .0
            .stdout
            .contains(r#"bad-device error: no network interface "nosuch0""#),
        "a missing interface must be a clear error:\n{}",
        first.0.show()
    );
    assert!(
        first.0.stdout.contains("hugepages=false"),
        "--hugepages off must mean --no-huge:\n{}",
        first.0.show()
    );
    runs.push(first);

    // 2. af_xdp port against the kernel, with hugepages (the lab has them).
    let second = exchange(
        "af_xdp port <-> kernel AF_PACKET",
        end_args(
            "dpdk",
            1,
            COUNT,
            &["--backend", "af_xdp", "--hugepages", "on"],
        ),
        end_args("raw", 2, COUNT, &[]),
        COUNT,
    );
    assert!(
        second.0.stdout.contains("hugepages=true"),
        "--hugepages on must use hugepages:\n{}",
        second.0.show()
    );
    runs.push(second);

    // 3. DPDK on both ends: h1 through dlopen(libsluice_dpdk.so) and the C
    //    ABI, h2 a Port it never closes (the exit hook must clean up).
    runs.push(exchange(
        "DpdkLink af_packet <-> af_xdp port",
        end_args(
            "link",
            1,
            COUNT,
            &[
                "--lib",
                lib,
                "--backend",
                "af_packet",
                "--hugepages",
                "auto",
            ],
        ),
        end_args("dpdk", 2, COUNT, &["--backend", "af_xdp", "--leak"]),
        COUNT,
    ));

    // 4. dlopen path over af_xdp, kernel on the other end.
    runs.push(exchange(
        "DpdkLink af_xdp <-> kernel AF_PACKET",
        end_args("link", 1, COUNT, &["--lib", lib, "--backend", "af_xdp"]),
        end_args("raw", 2, COUNT, &[]),
        COUNT,
    ));

    let pids: Vec<u32> = runs.iter().flat_map(|(a, b)| [a.pid, b.pid]).collect();
    assert_nothing_left(&pids);

    // 5. A port killed with SIGKILL runs no cleanup at all: the kernel must
    //    still take p0 out of promiscuous mode (a socket membership, not the
    //    interface flag).
    let mut killed = spawn(
        H1,
        &end_args("dpdk", 1, 1, &["--backend", "af_packet", "--watch-link"]),
    );
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(killed.stdout.take().unwrap()));
    assert_eq!(
        lines.next().map(|l| l.unwrap()).unwrap_or_default(),
        "link up=true"
    );
    let promiscuity = ip_details(H1);
    assert!(
        promiscuity.contains("promiscuity 1"),
        "p0 not promiscuous while the port is open:\n{promiscuity}"
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    // EAL's runtime directory is what a SIGKILL leaves; it is empty.
    let _ = std::fs::remove_dir(format!("/var/run/dpdk/sluice-{}", killed.id()));
    assert_port_restored(H1);
}

/// exit() while another thread polls the port: the exit hook closes the port
/// between two polls or leaves it to the kernel, but never crashes or hangs.
#[test]
fn exit_while_another_thread_polls() {
    ensure_lab();
    let _p0 = lock_p0();
    for backend in ["af_packet", "af_xdp"] {
        for round in 0..3 {
            let args = end_args(
                "dpdk",
                1,
                1,
                &["--backend", backend, "--exit-while-polling"],
            );
            let o = finish(
                &format!("exit while polling, {backend} round {round}"),
                spawn(H1, &args),
            );
            assert_eq!(o.code, Some(0), "{}", o.show());
            assert!(o.stdout.contains("exiting while polling"), "{}", o.show());
            assert_port_restored(H1);
            assert_nothing_left(&[o.pid]);
        }
    }
}

fn ip_details(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "p0"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Opening a device that is not there fails with a message naming it, both
/// through the Rust API and across the C ABI; nothing is sent.
#[test]
fn bad_devices_are_clear_errors() {
    ensure_lab();
    let lib = dpdk_lib();
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "dpdk",
            vec!["--iface", "nosuch0"],
            r#"no network interface "nosuch0" in this network namespace"#,
        ),
        (
            "link",
            vec!["--iface", "nosuch0", "--lib", lib.to_str().unwrap()],
            r#"cannot open port: no network interface "nosuch0""#,
        ),
        (
            "dpdk",
            vec!["--iface", "0000:00:1f.7"],
            "DPDK could not probe 0000:00:1f.7: no such PCI device",
        ),
        ("dpdk", vec!["--iface", "bad/name"], "bad DPDK device"),
    ];
    for (side, args, want) in cases {
        let mut all = vec![side.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(
            [
                "--mac",
                MAC1,
                "--peer-mac",
                MAC2,
                "--id",
                "1",
                "--peer-id",
                "2",
            ]
            .map(String::from),
        );
        let o = finish(&format!("bad device [{}]", all.join(" ")), spawn(H1, &all));
        assert_eq!(o.code, Some(2), "{}", o.show());
        assert!(
            o.stderr.contains(want),
            "expected {want:?} in\n{}",
            o.show()
        );
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "one line, not a DPDK log:\n{}",
            o.show()
        );
    }
}

/// Two namespaces joined by a veth with two receive queues, removed on drop.
struct MultiQueueVeth;

const MQ_A: &str = "sl-dpdk-mqa";
const MQ_B: &str = "sl-dpdk-mqb";

impl MultiQueueVeth {
    fn new() -> Self {
        let guard = MultiQueueVeth; // removes whatever part gets made
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .expect("run setup command");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ns in [MQ_A, MQ_B] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            run(&["ip", "netns", "add", ns]);
        }
        run(&[
            "ip",
            "link",
            "add",
            "mq0",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "netns",
            MQ_A,
            "type",
            "veth",
            "peer",
            "name",
            "mq0",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "netns",
            MQ_B,
        ]);
        // A second, plain pair for a second port in one process.
        run(&[
            "ip", "link", "add", "mq1", "netns", MQ_A, "type", "veth", "peer", "name", "mq1",
            "netns", MQ_B,
        ]);
        for ns in [MQ_A, MQ_B] {
            run(&["ip", "-n", ns, "link", "set", "mq1", "up"]);
            run(&["ip", "-n", ns, "link", "set", "mq0", "up"]);
            run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", "mq0", "tx", "off", "rx", "off",
            ]);
            run(&[
                "ip", "netns", "exec", ns, "ethtool", "-L", "mq0", "rx", "2", "tx", "2",
            ]);
        }
        guard
    }
}

impl Drop for MultiQueueVeth {
    fn drop(&mut self) {
        for ns in [MQ_A, MQ_B] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// On a veth with two receive queues (and, like every veth, no combined
/// channels) af_xdp could bind queue 0 only and would silently lose what
/// lands on queue 1: the port refuses with advice instead. af_packet sees
/// every queue and works. Then the carrier: when the far end of the veth goes
/// down and up, the port (through the C ABI) reports it. Last, frames
/// corrupted on the wire are caught by the byte-for-byte check.
#[test]
fn own_veth_two_queues_and_carrier() {
    require_root();
    let _veth = MultiQueueVeth::new();
    let args = |side: &str, me: u8, extra: &[&str]| -> Vec<String> {
        end_args(side, me, 200, extra)
            .into_iter()
            .map(|a| if a == "p0" { "mq0".into() } else { a })
            .collect()
    };
    let o = finish(
        "af_xdp on mq0",
        spawn(MQ_A, &args("dpdk", 1, &["--backend", "af_xdp"])),
    );
    assert_eq!(o.code, Some(2), "{}", o.show());
    assert!(
        o.stderr.contains("mq0: it has 2 receive queues")
            && o.stderr.contains("ethtool -L mq0 rx 1 tx 1"),
        "{}",
        o.show()
    );

    // af_packet, with a second port (mq1) opened and closed meanwhile in the
    // same process: the EAL is shared, the ports are not.
    let b = spawn(MQ_B, &args("raw", 2, &[]));
    let a = spawn(
        MQ_A,
        &args(
            "dpdk",
            1,
            &["--backend", "af_packet", "--second-port", "mq1"],
        ),
    );
    let o = finish("af_packet on mq0 (+ mq1)", a);
    o.assert_exchanged(200);
    assert!(o.stdout.contains("second port ok"), "{}", o.show());
    finish("raw on mq0", b).assert_exchanged(200);

    let lib = dpdk_lib();
    let mut watch = spawn(
        MQ_A,
        &args("link", 1, &["--lib", lib.to_str().unwrap(), "--watch-link"]),
    );
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut next_line = || lines.next().map(|l| l.unwrap()).unwrap_or_default();
    assert_eq!(next_line(), "link up=true");
    set_link(MQ_B, "down");
    assert_eq!(next_line(), "link up=false", "carrier loss not reported");
    set_link(MQ_B, "up");
    assert_eq!(next_line(), "link up=true", "carrier return not reported");
    let o = finish("watch link on mq0", watch);
    assert_eq!(o.code, Some(0), "{}", o.show());

    // The byte-for-byte check can fail: corrupt byte 50 of our frames on
    // their way into MQ_B (nftables, netdev ingress) and the kernel end must
    // reject them.
    let mut nft = Command::new("ip")
        .args(["netns", "exec", MQ_B, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    std::io::Write::write_all(
        nft.stdin.as_mut().unwrap(),
        b"table netdev sluice_corrupt {
            chain in {
                type filter hook ingress device \"mq0\" priority 0;
                ether type 0x88b5 @ll,400,8 set 0x55
            }
        }\n",
    )
    .unwrap();
    drop(nft.stdin.take());
    assert!(
        nft.wait().unwrap().success(),
        "nft could not add the corrupting rule"
    );
    let b = spawn(MQ_B, &args("raw", 2, &["--timeout-ms", "5000"]));
    let a = spawn(
        MQ_A,
        &args(
            "dpdk",
            1,
            &["--backend", "af_packet", "--timeout-ms", "5000"],
        ),
    );
    let _ = finish("dpdk on mq0, corrupted towards b", a);
    let o = finish("raw on mq0, receiving corrupted frames", b);
    assert_eq!(o.code, Some(1), "corruption went unnoticed:\n{}", o.show());
    assert!(
        o.stderr.contains("first difference at Some(50)"),
        "{}",
        o.show()
    );
}

fn set_link(ns: &str, state: &str) {
    let ok = Command::new("ip")
        .args(["-n", ns, "link", "set", "mq0", state])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip -n {ns} link set mq0 {state} failed");
}
