//! `sluice-lab fault`: nftables faults on the lab's switch ports do what they say. Each test
//! sends 2000 numbered kernel UDP datagrams from sl-h1 (10.77.1.1) to a kernel socket on
//! sl-h3 (10.77.1.3) across switch port h1p0 (its ingress: frames from sl-h1) or h3p0 (its
//! egress: frames to sl-h3) and counts what arrives: lost, duplicated, damaged. Bounds are
//! wide (a 10% rate must show as 5..15%): these check the faults, not the random generator.
//!
//! Needs root; brings the lab up when it is missing. The faults would disturb DPDK tests on
//! sl-h1, so every test holds /run/sluice-lab/dpdk-p0.lock, and clears its faults when it
//! ends, pass or fail. Run with
//! `cargo test --release -p shim-tests --test lab_faults -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, udp_counters, wait_kernel_udp_bound, LabProcess, Stack,
    H1, H1_MGMT, H3,
};
use shim_tests::{python3, run_bounded, workspace_root, Scratch};
use std::process::{Command, Output};
use std::time::Duration;

const H3_MGMT: &str = "10.77.1.3";
const SENT: u64 = 2000;
const PAYLOAD_LEN: usize = 64;

fn sluice_lab(args: &[&str]) -> Output {
    Command::new(workspace_root().join("tools/sluice-lab"))
        .env_remove("SLUICE_LAB_PREFIX")
        .args(args)
        .output()
        .expect("run tools/sluice-lab")
}

/// `sluice-lab ARGS`, which must succeed; returns what it printed.
fn lab(args: &[&str]) -> String {
    let out = sluice_lab(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sluice-lab {args:?} failed:\n{text}");
    text
}

/// The nftables tables of switch sl-sw0.
fn sw0_tables() -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", "sl-sw0", "nft", "list", "tables"])
        .output()
        .expect("nft list tables in sl-sw0 (apt-get install nftables)");
    assert!(
        out.status.success(),
        "nft list tables in sl-sw0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lab for one test: up, the p0 lock held, and the faults of h1p0 and h3p0 cleared on
/// the way in and on the way out.
struct FaultLab {
    _p0: shim_tests::lab::P0Lock,
}

impl FaultLab {
    fn take() -> FaultLab {
        ensure_lab();
        let p0 = lock_p0();
        clear_all();
        FaultLab { _p0: p0 }
    }
}

fn clear_all() {
    for port in ["h1p0", "h3p0"] {
        let _ = sluice_lab(&["fault", port, "clear"]);
    }
}

impl Drop for FaultLab {
    fn drop(&mut self) {
        clear_all();
    }
}

/// Counts datagrams until a second of silence after `marker` appears (the sender is done),
/// or 30 s; prints "received N unique U damaged D".
const RECEIVER: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: no drops of our own
s.bind((sys.argv[1], int(sys.argv[2])))
marker, size = sys.argv[3], int(sys.argv[4])
s.settimeout(0.1)
received, seen, damaged = 0, set(), 0
last = start = time.monotonic()
while time.monotonic() - start < 30:
    try:
        data = s.recv(65535)
    except socket.timeout:
        if os.path.exists(marker) and time.monotonic() - last > 1.0:
            break
        continue
    last = time.monotonic()
    received += 1
    if len(data) == size and data[:8].isdigit() and data[8:] == b"x" * (size - 8):
        seen.add(data[:8])
    else:
        damaged += 1
print("received", received, "unique", len(seen), "damaged", damaged, flush=True)
"#;

/// Sends COUNT datagrams, numbered, 50 at a time with a 2 ms pause.
const SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst, count, size = (sys.argv[1], int(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    s.sendto(b"%08d" % i + b"x" * (size - 8), dst)
    if i % 50 == 49:
        time.sleep(0.002)
"#;

#[derive(Debug)]
struct Tally {
    received: u64,
    unique: u64,
    damaged: u64,
}

impl Tally {
    /// Datagrams that never arrived, intact or damaged.
    fn lost(&self) -> u64 {
        SENT.saturating_sub(self.unique + self.damaged)
    }

    /// Extra copies: datagrams received beyond one of each.
    fn duplicates(&self) -> u64 {
        self.received.saturating_sub(self.unique + self.damaged)
    }
}

/// Refreshes sl-h1's neighbour entry for sl-h3 (a ping, before any fault is set), so that
/// no ARP exchange meets the fault while the datagrams flow.
fn prime_arp() {
    let ok = Command::new("ip")
        .args([
            "netns", "exec", H1, "ping", "-c", "1", "-W", "2", "-q", H3_MGMT,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{H1} cannot ping {H3_MGMT} with no fault set");
}

/// Sends SENT datagrams sl-h1 -> sl-h3 with the faults now set and counts what arrives.
fn exchange() -> Tally {
    let python = python3().display().to_string();
    let port = lab_port(7);
    let scratch = Scratch::new("faults");
    let marker = scratch.path().join("sent");
    let marker_s = marker.display().to_string();
    let size = PAYLOAD_LEN.to_string();
    let cmd = in_ns(
        H3,
        None,
        &Stack::Kernel,
        &python,
        &["-c", RECEIVER, H3_MGMT, &port.to_string(), &marker_s, &size],
    );
    let mut receiver = LabProcess::start("kernel UDP receiver on sl-h3", cmd);
    wait_kernel_udp_bound(&mut receiver, H3, H3_MGMT, port);
    let mut sender = in_ns(
        H1,
        None,
        &Stack::Kernel,
        &python,
        &[
            "-c",
            SENDER,
            H3_MGMT,
            &port.to_string(),
            &SENT.to_string(),
            &size,
        ],
    );
    let out = run_bounded(&mut sender, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "the sender on {H1} ({H1_MGMT}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, "sent\n").expect("write the marker");
    let status = receiver.wait(Duration::from_secs(40));
    assert!(
        status.success(),
        "the receiver failed.\n{}",
        receiver.logs()
    );
    let text = receiver.stdout();
    let n = |key: &str| -> u64 {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or_else(|| panic!("no '{key}' in the receiver's output: {text}"))
    };
    let tally = Tally {
        received: n("received"),
        unique: n("unique"),
        damaged: n("damaged"),
    };
    eprintln!("{tally:?} of {SENT} sent");
    tally
}

/// `count` of SENT, in per mille, is within [low, high].
fn assert_share(what: &str, count: u64, low: u64, high: u64, tally: &Tally) {
    let per_mille = count * 1000 / SENT;
    assert!(
        (low..=high).contains(&per_mille),
        "{what}: {count} of {SENT} ({per_mille} per mille), expected {low}..={high} per mille. \
         {tally:?}\n{}",
        lab(&["fault", "list"])
    );
}

#[test]
fn loss_drops_about_the_configured_share_of_frames_from_the_host() {
    let _lab = FaultLab::take();
    prime_arp();
    lab(&["fault", "h1p0", "loss", "100"]);
    let listed = lab(&["fault", "h1p0", "list"]);
    assert!(
        listed.contains("hook ingress device \"h1p0\"") && listed.contains("comment \"loss\""),
        "fault list does not show the loss rule on h1p0's ingress:\n{listed}"
    );
    let t = exchange();
    assert_eq!((t.damaged, t.duplicates()), (0, 0), "{t:?}");
    assert_share("lost", t.lost(), 50, 150, &t);
    // Setting a kind again replaces its rule.
    lab(&["fault", "h1p0", "loss", "500"]);
    let listed = lab(&["fault", "h1p0", "list"]);
    assert_eq!(
        listed.matches("comment \"loss\"").count(),
        1,
        "one loss rule, not two:\n{listed}"
    );
    let t = exchange();
    assert_share("lost", t.lost(), 400, 600, &t);
}

#[test]
fn dup_copies_about_the_configured_share_in_either_direction() {
    let _lab = FaultLab::take();
    prime_arp();
    lab(&["fault", "h1p0", "dup", "100"]);
    let t = exchange();
    assert_eq!((t.lost(), t.damaged), (0, 0), "{t:?}");
    assert_share("duplicated (h1p0 ingress)", t.duplicates(), 50, 150, &t);
    lab(&["fault", "h1p0", "clear"]);

    prime_arp();
    lab(&["fault", "h3p0", "dup", "100", "--egress"]);
    let t = exchange();
    assert_eq!((t.lost(), t.damaged), (0, 0), "{t:?}");
    assert_share("duplicated (h3p0 egress)", t.duplicates(), 50, 150, &t);
}

#[test]
fn corrupt_damages_udp_payloads_and_the_receivers_checksum_drops_them() {
    let _lab = FaultLab::take();
    prime_arp();
    lab(&["fault", "h1p0", "corrupt", "100"]);
    let before = udp_counters(H3);
    let t = exchange();
    let after = udp_counters(H3);
    let checksum_errors = after["InCsumErrors"] - before["InCsumErrors"];
    assert_eq!(
        (t.damaged, t.duplicates()),
        (0, 0),
        "a damaged datagram got past the UDP checksum: {t:?}"
    );
    assert_share("lost to the checksum", t.lost(), 50, 150, &t);
    assert_eq!(
        checksum_errors,
        t.lost(),
        "every missing datagram should be a UDP checksum error on {H3}"
    );

    // With the checksum zeroed, the damage reaches the application.
    prime_arp();
    lab(&["fault", "h1p0", "corrupt", "100", "--no-checksum"]);
    let t = exchange();
    assert_eq!((t.received, t.duplicates()), (SENT, 0), "{t:?}");
    assert_share("damaged", t.damaged, 50, 150, &t);
}

#[test]
fn egress_faults_hit_frames_to_the_host() {
    let _lab = FaultLab::take();
    prime_arp();
    lab(&["fault", "h3p0", "loss", "100", "--egress"]);
    let listed = lab(&["fault", "h3p0", "list"]);
    assert!(
        listed.contains("hook egress device \"h3p0\""),
        "no egress chain on h3p0:\n{listed}"
    );
    let t = exchange();
    assert_share("lost (h3p0 egress)", t.lost(), 50, 150, &t);
}

#[test]
fn blackhole_drops_everything_and_clear_restores_the_port() {
    let _lab = FaultLab::take();
    prime_arp();
    lab(&["fault", "h1p0", "blackhole"]);
    let t = exchange();
    assert_eq!(t.received, 0, "a blackhole let datagrams through: {t:?}");

    lab(&["fault", "h1p0", "clear"]);
    let tables = sw0_tables();
    assert!(
        !tables.contains("sluice_fault_h1p0"),
        "clear left the table behind:\n{tables}"
    );
    prime_arp();
    let t = exchange();
    assert_eq!(
        (t.lost(), t.damaged, t.duplicates()),
        (0, 0, 0),
        "with no fault every datagram arrives once, intact: {t:?}"
    );
}
