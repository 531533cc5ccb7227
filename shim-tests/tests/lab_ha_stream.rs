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
    digest_line, ensure_ha_lab, in_ns, lab_port, lock_p0, number_after, sluice_lab, LabProcess,
    Stack, H1, H1_DATA, H2, H2_DATA,
};
use shim_tests::{python3, scripts_dir};
use std::process::Command;
use std::time::Duration;

/// The sending rate and how long the transfer lasts: the failure comes after 2 s and lasts
/// 2 s, and 2 s follow it, so each phase moves several thousand frames.
const RATE: usize = 8 << 20;
const SECONDS: usize = 7;
/// A hang guard for one run.
const LIMIT: Duration = Duration::from_secs(90);

/// Sluice over DPDK af_packet on both data ports of a host.
fn two_ports(p0: &str, p1: &str) -> Stack {
    Stack::Dpdk {
        iface: format!("p0={p0}/24,p1={p1}/24"),
        backend: "af_packet".to_string(),
    }
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
                sluice_lab(&["fault", "h1p0", "blackhole"]);
                sluice_lab(&["fault", "h1p0", "blackhole", "--egress"]);
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
            Some(Failure::Blackhole) => sluice_lab(&["fault", "h1p0", "clear"]),
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

fn transfer_across(failure: Failure, offset: u16) {
    ensure_ha_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let script = scripts_dir().join("stream_transfer.py");
    let script = script.to_str().unwrap();
    let port = lab_port(offset).to_string();
    let mut cmd = in_ns(
        H2,
        Some(1),
        &two_ports(H2_DATA, "10.77.3.2"),
        &python,
        &[script, "sink", H2_DATA, &port],
    );
    cmd.env("SLUICE_LOG", "info");
    let mut sink = LabProcess::start("stream sink", cmd);
    sink.wait_printed("listening", LIMIT);
    let (bytes, rate) = ((RATE * SECONDS).to_string(), RATE.to_string());
    let mut cmd = in_ns(
        H1,
        Some(0),
        &two_ports(H1_DATA, "10.77.3.1"),
        &python,
        &[script, "source", H2_DATA, &port, &bytes, &rate],
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
    let sent = digest_line(&source.stdout(), "sent ");
    let got = digest_line(&sink.stdout(), "got ");
    assert!(
        sent.is_some() && sent == got,
        "{failure:?}: sent {sent:?}, received {got:?}.\n{logs}"
    );
    let (before, during, after) = (
        minus(at_failure, start),
        minus(at_recovery, failed),
        minus(late, recovered),
    );
    let gap = number_after(&sink.stdout(), "longest_gap_ms").unwrap_or(f64::NAN);
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
