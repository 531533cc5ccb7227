//! High availability of streams on the `ha` lab: sl-h1 and sl-h2 each run sluice with two
//! data ports (p0 on switch sw0, p1 on switch sw1), and a paced, long one-way transfer from
//! h1 to h2 goes on while h1's port 0 fails and later recovers: once loudly (the switch's
//! end of the link goes down) and once silently (the switch drops everything, both ways,
//! with an nftables blackhole). What arrives must be byte-exact; the source's per-port frame
//! counters must show both ports used before the failure, port 1 alone during it, and both
//! again after; the longest stall the sink saw is printed.
//!
//! Needs root; brings the `ha` lab up when it is missing; holds /run/sluice-lab/dpdk-p0.lock;
//! undoes its failure when it ends, pass or fail. Run with
//! `cargo test --release -p shim-tests --test lab_ha_stream -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, LabProcess, Stack, H1, H1_DATA, H2, H2_DATA,
};
use shim_tests::{python3, workspace_root};
use std::process::Command;
use std::time::Duration;

/// The sending rate and how long the transfer lasts: the failure comes after 2 s and lasts
/// 2 s, and 2 s follow it, so each phase moves several thousand frames.
const RATE: usize = 8 << 20;
const SECONDS: usize = 7;
/// A hang guard for one run.
const LIMIT: Duration = Duration::from_secs(90);

/// `SINK ADDRESS PORT`: accepts one connection, reads to the end, prints the digest and
/// length and the longest time without data, answers "done".
const SINK: &str = r#"
import hashlib, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(120)
h, n, gap, last = hashlib.sha256(), 0, 0.0, None
while True:
    d = c.recv(1 << 16)
    now = time.monotonic()
    if not d:
        break
    if last is not None:
        gap = max(gap, now - last)
    last = now
    h.update(d)
    n += len(d)
print("got", h.hexdigest(), n, flush=True)
print("longest_gap_ms %.1f" % (gap * 1e3), flush=True)
c.sendall(b"done")
c.close()
"#;

/// `SOURCE ADDRESS PORT RATE SECONDS`: sends RATE bytes/s of pseudo-random bytes for
/// SECONDS, half-closes, waits for the sink's "done", prints the digest of what it sent.
const SOURCE: &str = r#"
import hashlib, random, socket, sys, time
ip, port, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(11).randbytes(rate * secs)
c = socket.create_connection((ip, port), timeout=120)
print("connected", flush=True)
start, sent, chunk = time.monotonic(), 0, 1 << 16
while sent < len(data):
    due = int((time.monotonic() - start) * rate)
    if sent + chunk > due:
        time.sleep(0.002)
        continue
    c.sendall(data[sent:sent + chunk])
    sent += chunk
c.shutdown(socket.SHUT_WR)
assert c.recv(16) == b"done"
print("sent", hashlib.sha256(data).hexdigest(), len(data), flush=True)
"#;

/// Sluice over DPDK af_packet on both data ports of a host.
fn two_ports(p0: &str, p1: &str) -> Stack {
    Stack::Dpdk {
        iface: format!("p0={p0}/24,p1={p1}/24"),
        backend: "af_packet".to_string(),
    }
}

fn lab_tool(args: &[&str]) {
    let out = Command::new(workspace_root().join("tools/sluice-lab"))
        .args(args)
        .output()
        .expect("run tools/sluice-lab");
    assert!(
        out.status.success(),
        "sluice-lab {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `ha` topology: p1 on both sluice hosts.
fn ensure_ha_lab() {
    ensure_lab();
    let has_p1 = |ns: &str| {
        Command::new("ip")
            .args(["netns", "exec", ns, "ip", "link", "show", "p1"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(has_p1(H1) && has_p1(H2)) {
        lab_tool(&["up", "--topology", "ha"]);
    }
    assert!(has_p1(H1) && has_p1(H2), "the ha lab has no p1 ports");
}

/// A failure of h1's port 0, undone on drop.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The switch's end of the link goes down: h1 sees its carrier go.
    LinkDown,
    /// The switch drops every frame from and to h1's port 0; the link stays up.
    Blackhole,
}

impl Failure {
    fn start(self) -> Active {
        match self {
            Failure::LinkDown => switch_link("down"),
            Failure::Blackhole => {
                lab_tool(&["fault", "h1p0", "blackhole"]);
                lab_tool(&["fault", "h1p0", "blackhole", "--egress"]);
            }
        }
        Active(Some(self))
    }
}

struct Active(Option<Failure>);

impl Active {
    fn end(&mut self) {
        match self.0.take() {
            Some(Failure::LinkDown) => switch_link("up"),
            Some(Failure::Blackhole) => lab_tool(&["fault", "h1p0", "clear"]),
            None => {}
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.end();
    }
}

fn switch_link(state: &str) {
    let status = Command::new("ip")
        .args([
            "netns", "exec", "sl-sw0", "ip", "link", "set", "h1p0", state,
        ])
        .status()
        .expect("run ip");
    assert!(status.success(), "ip link set h1p0 {state} in sl-sw0");
}

/// Frames sent per data port by process `pid`, from its sluice-stat snapshot.
fn tx_frames(pid: u32) -> [u64; 2] {
    let text = std::fs::read_to_string(format!("/dev/shm/sluice/{pid}.stat")).unwrap_or_default();
    let mut frames = [0; 2];
    for line in text.lines().filter(|l| l.starts_with("port ")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(i @ 0..=1), Some(tx)) = (field("index="), field("tx_frames=")) {
            frames[i as usize] = tx;
        }
    }
    frames
}

/// The state of the path over port 0 in process `pid`'s sluice-stat snapshot.
fn path0_state(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/dev/shm/sluice/{pid}.stat")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("path ") && l.contains(" port=0 "))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("state=")))
        .unwrap_or("none")
        .to_string()
}

fn minus(a: [u64; 2], b: [u64; 2]) -> [u64; 2] {
    [a[0].saturating_sub(b[0]), a[1].saturating_sub(b[1])]
}

/// The snapshot is refreshed every 250 ms: wait for a fresh one.
fn settle() {
    std::thread::sleep(Duration::from_millis(600));
}

fn last_number(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn transfer_across(failure: Failure, offset: u16) {
    ensure_ha_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let port = lab_port(offset).to_string();
    let mut cmd = in_ns(
        H2,
        Some(1),
        &two_ports(H2_DATA, "10.77.3.2"),
        &python,
        &["-c", SINK, H2_DATA, &port],
    );
    cmd.env("SLUICE_LOG", "info");
    let mut sink = LabProcess::start("stream sink", cmd);
    sink.wait_printed("listening", LIMIT);
    let (rate, seconds) = (RATE.to_string(), SECONDS.to_string());
    let mut cmd = in_ns(
        H1,
        Some(0),
        &two_ports(H1_DATA, "10.77.3.1"),
        &python,
        &["-c", SOURCE, H2_DATA, &port, &rate, &seconds],
    );
    cmd.env("SLUICE_LOG", "info");
    let mut source = LabProcess::start("stream source", cmd);
    source.wait_printed("connected", LIMIT);
    let pid = source.pid();
    settle();
    let start = tx_frames(pid);
    std::thread::sleep(Duration::from_millis(1400));
    let at_failure = tx_frames(pid);
    let mut active = failure.start();
    // Counted from half a second after each event: what was in flight when it happened is
    // not what the port carries once sluice has noticed.
    std::thread::sleep(Duration::from_millis(500));
    let failed = tx_frames(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let at_recovery = tx_frames(pid);
    let state_during = path0_state(pid);
    active.end();
    std::thread::sleep(Duration::from_millis(500));
    let recovered = tx_frames(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let late = tx_frames(pid);
    let state_after = path0_state(pid);
    let status = source.wait(LIMIT);
    let logs = format!("{}\n{}", source.logs(), sink.logs());
    assert!(
        status.success(),
        "{failure:?}: the transfer failed ({status}).\n{logs}"
    );
    sink.wait(Duration::from_secs(10));
    let sent = source
        .stdout()
        .lines()
        .find(|l| l.starts_with("sent "))
        .map(|l| l[5..].to_string());
    let got = sink
        .stdout()
        .lines()
        .find(|l| l.starts_with("got "))
        .map(|l| l[4..].to_string());
    assert!(
        sent.is_some() && sent == got,
        "{failure:?}: sent {sent:?}, received {got:?}.\n{logs}"
    );
    let (before, during, after) = (
        minus(at_failure, start),
        minus(at_recovery, failed),
        minus(late, recovered),
    );
    let gap = last_number(&sink.stdout(), "longest_gap_ms ").unwrap_or(f64::NAN);
    println!(
        "{failure:?}: {} bytes byte-exact; h1 frames sent per port (p0, p1): before {before:?}, \
         during {during:?}, after {after:?}; longest stall at the sink {gap:.1} ms",
        RATE * SECONDS
    );
    for (phase, frames) in [("before", before), ("after", after)] {
        assert!(
            frames[0] > 300 && frames[1] > 300,
            "{failure:?}: both ports carry the stream {phase} the failure: {frames:?}\n{logs}"
        );
    }
    // Port 0 sends only its path probes (a few a second) while it is failed.
    assert!(
        during[1] > 1000 && during[0] < 50,
        "{failure:?}: port 1 alone carries the stream during the failure: {during:?}\n{logs}"
    );
    assert_eq!(
        (state_during.as_str(), state_after.as_str()),
        ("failed", "active"),
        "{failure:?}: sluice-stat shows the path over port 0 failed, then active again"
    );
    assert!(
        logs.contains("failed:") && logs.contains(" active"),
        "{failure:?}: the path's failure and return are logged\n{logs}"
    );
}

#[test]
fn a_stream_survives_port_0_going_down_and_comes_back() {
    transfer_across(Failure::LinkDown, 20);
}

#[test]
fn a_stream_survives_a_switch_silently_dropping_port_0() {
    transfer_across(Failure::Blackhole, 21);
}
