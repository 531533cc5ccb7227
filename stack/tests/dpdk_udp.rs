//! Lab test: a sluice Stack with a DPDK port on sl-h1's p0 (data IP
//! 10.77.2.1) exchanges UDP with the kernel-only host sl-h3 (10.77.2.3) both
//! ways, and answers `ping` from it.
//!
//! Needs root, the namespaces lab (`tools/sluice-lab up`, brought up here
//! when missing) and `libsluice_dpdk.so` built next to the test binaries
//! (`cargo build -p sluice-dpdk`). Takes /run/sluice-lab/dpdk-p0.lock like
//! the DPDK port's own tests, so suites that drive p0 never overlap.
//!
//! The stack side is `sluice-udp-probe` run with `ip netns exec sl-h1`; the
//! kernel side is python3 in sl-h3.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const H1: &str = "sl-h1";
const H3: &str = "sl-h3";
/// Hang guards only: every exchange here takes well under a second.
const READY_LIMIT: Duration = Duration::from_secs(60);
const PROBE_SECONDS: &str = "40";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this lab test needs root (network namespaces, AF_PACKET, DPDK): \
         run `sudo -E cargo test -p sluice-stack --test dpdk_udp`"
    );
}

fn has_port(ns: &str, port: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_lab() {
    require_root();
    if has_port(H1, "p0") && has_port(H3, "p0") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/sluice-lab");
    let status = Command::new(&script).arg("up").status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the lab is not up and `{} up` failed: {status:?}",
        script.display()
    );
    assert!(
        has_port(H1, "p0") && has_port(H3, "p0"),
        "sluice-lab up did not create p0 in {H1} and {H3}"
    );
}

/// Exclusive DPDK use of the lab's p0 (the file lock the DPDK port's tests take).
fn lock_p0() -> std::fs::File {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all("/run/sluice-lab").expect("create /run/sluice-lab");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/sluice-lab/dpdk-p0.lock")
        .expect("open /run/sluice-lab/dpdk-p0.lock");
    // SAFETY: flock on an fd we own; blocks until the other holder is done.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

fn probe_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice-udp-probe")
}

fn dpdk_lib() -> PathBuf {
    let lib = Path::new(probe_bin()).with_file_name("libsluice_dpdk.so");
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p sluice-dpdk`",
        lib.display()
    );
    lib
}

/// The probe on sl-h1 with a DPDK stack on p0, stdout lines streamed to a channel.
struct Probe {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Probe {
    /// SLUICE_DPDK_LIB stays unset: the stack finds the library next to the probe.
    fn start(backend: &str, args: &[&str]) -> Probe {
        dpdk_lib();
        let mut child = Command::new("ip")
            .args(["netns", "exec", H1, probe_bin()])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SLUICE_MODE", "dpdk")
            .env("SLUICE_IFACES", "p0=10.77.2.1/24")
            .env("SLUICE_DPDK_BACKEND", backend)
            .env("SLUICE_HUGEPAGES", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice-udp-probe");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Probe {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_ready(&mut self) {
        loop {
            match self.lines.recv_timeout(READY_LIMIT) {
                Ok(line) if line == "ready" => return,
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output_lossy();
                    panic!("the probe never got ready: {:?}\n{out}", self.seen);
                }
            }
        }
    }

    /// Waits for the probe to exit; its stdout lines and stderr.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("wait for the probe");
        let mut stdout = self.seen.join("\n");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push('\n');
            stdout.push_str(&line);
        }
        let stderr = self.child.wait_with_output_lossy();
        (
            status.success(),
            format!("--- probe stdout\n{stdout}\n--- probe stderr\n{stderr}"),
        )
    }
}

trait StderrText {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut err) = self.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

fn in_h3(program: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", H3, "timeout", "60", program])
        .args(args)
        .output()
        .expect("run a command in sl-h3")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A kernel UDP client in sl-h3: each size to 10.77.2.1:7000, expecting it
/// back byte for byte from the same address.
const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
ok = 0
sizes = [int(a) for a in sys.argv[1:]]
for i, size in enumerate(sizes):
    msg = bytes((i * 31 + j) % 251 for j in range(size))
    s.sendto(msg, ("10.77.2.1", 7000))
    try:
        data, frm = s.recvfrom(65536)
    except socket.timeout:
        print("no echo of %d bytes" % size)
        continue
    if data == msg and frm == ("10.77.2.1", 7000):
        ok += 1
    else:
        print("bad echo of %d bytes: %d bytes from %s" % (size, len(data), frm))
print("echoes_ok=%d" % ok)
"#;

/// A kernel UDP echo server in sl-h3 on 10.77.2.3:7001, for COUNT datagrams or 30 s.
const SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.2.3", 7001))
s.settimeout(30)
print("listening", flush=True)
for _ in range(int(sys.argv[1])):
    try:
        data, frm = s.recvfrom(65536)
    except socket.timeout:
        break
    s.sendto(data, frm)
"#;

/// Kernel host -> stack: ping, then datagrams of `sizes` echoed by the stack.
fn kernel_host_reaches_the_stack(backend: &str, sizes: &[&str]) {
    let count = sizes.len().to_string();
    let mut probe = Probe::start(backend, &["echo", "7000", &count, PROBE_SECONDS]);
    probe.wait_ready();
    let ping = in_h3("ping", &["-c", "3", "-W", "2", "10.77.2.1"]);
    assert!(
        String::from_utf8_lossy(&ping.stdout).contains("3 received"),
        "{backend}: ping from sl-h3 to the stack's data IP:\n{}",
        text(&ping)
    );
    let mut args = vec!["-c", CLIENT];
    args.extend_from_slice(sizes);
    let client = in_h3("python3", &args);
    let (ok, probe_out) = probe.finish();
    let want = format!("echoes_ok={count}");
    assert!(
        String::from_utf8_lossy(&client.stdout).contains(&want),
        "{backend}: kernel client in sl-h3:\n{}\n{probe_out}",
        text(&client)
    );
    assert!(ok, "{backend}: probe failed\n{probe_out}");
    assert!(
        probe_out.contains(&format!("echoed={count}")),
        "{probe_out}"
    );
}

/// Stack -> kernel host: ping-pongs with a kernel echo server; returns the probe's summary.
fn stack_reaches_the_kernel_host(backend: &str, count: &str, size: &str) -> String {
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", H3, "timeout", "60", "python3", "-c", SERVER,
        ])
        .arg(count)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the kernel echo server in sl-h3");
    let mut first = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(
        first.trim(),
        "listening",
        "kernel echo server did not start"
    );
    let probe = Probe::start(backend, &["ping", "10.77.2.3", "7001", count, size]);
    let (ok, probe_out) = probe.finish();
    let _ = server.wait();
    let want = format!("sent={count} received={count}");
    assert!(
        ok && probe_out.contains(&want),
        "{backend}: {count} ping-pongs of {size} bytes with sl-h3:\n{probe_out}"
    );
    probe_out
        .lines()
        .find(|l| l.starts_with("sent="))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn dpdk_stack_talks_udp_with_a_kernel_host_and_answers_ping() {
    ensure_lab();
    let _p0 = lock_p0();
    // af_packet: up to two fragments from the kernel side. Larger fragmented
    // datagrams from a kernel peer do not reach the stack over af_packet
    // (DPDK's af_packet socket reassembles them in the kernel, into frames
    // larger than its ring slots); af_xdp carries them, so 8000 bytes runs there.
    kernel_host_reaches_the_stack("af_packet", &["1", "64", "1472", "1473", "100"]);
    kernel_host_reaches_the_stack("af_xdp", &["1", "64", "1473", "8000", "100"]);
    let summary = stack_reaches_the_kernel_host("af_packet", "300", "64");
    eprintln!("af_packet, 64 B, sluice (h1) <-> kernel (h3): {summary}");
    let summary = stack_reaches_the_kernel_host("af_xdp", "300", "64");
    eprintln!("af_xdp, 64 B, sluice (h1) <-> kernel (h3): {summary}");
    stack_reaches_the_kernel_host("af_xdp", "5", "8000");
}
