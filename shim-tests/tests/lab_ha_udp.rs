//! Datagram failover in the lab (`ha` topology, switches joined by their inter-switch link):
//! a UDP echo under sluice on sl-h1 with two DPDK ports (p0 10.77.2.1 on sw0, p1 10.77.3.1
//! on sw1) serves a steady flow (2000 datagrams/s) from the kernel on sl-h3 (10.77.2.3, on sw0
//! only) addressed to p0's IP. Port 0 fails twice: its switch port goes down (the carrier), then
//! its switch silently drops everything both ways (nftables). Each time the address must move
//! to p1 (the flow continues, carried by p1), and back to p0 on recovery. The datagrams lost
//! around each event and the longest stall are printed.
//!
//! Needs root; brings the lab up (with its inter-switch link) when missing; holds the p0 lock.
//! Run with `cargo test --release -p shim-tests --test lab_ha_udp -- --test-threads=1 --nocapture`.

use shim_tests::lab::{
    ensure_ha_lab, ensure_lab, in_ns, lab_port, lock_p0, number_after, sluice_lab,
    sluice_lab_quietly, LabProcess, Stack, H1, H1_DATA, H3, H3_DATA,
};
use shim_tests::{python3, scripts_dir};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RATE: u32 = 2000;
/// Each event: flow for this long, the failure after 1 s, recovery 2 s later.
const FLOW_SECONDS: u32 = 6;
const FAIL_AFTER: Duration = Duration::from_secs(1);
const FAILED_FOR: Duration = Duration::from_secs(2);
/// What a user would check: the flow resumes within this after each move...
const LONGEST_STALL_MS: f64 = 1000.0;
/// ...and an event (a move away and a move back) costs fewer datagrams than this (a quarter
/// of a second of the flow).
const MOST_LOST: u64 = 500;

fn sh(ns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Puts port 0's switch side back however the test ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        sh("sl-sw0", &["ip", "link", "set", "h1p0", "up"]);
        sluice_lab_quietly(&["fault", "h1p0", "clear"]);
    }
}

/// The `port` lines of a live stack's sluice-stat snapshot, by index.
fn ports(pid: u32) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(format!("/dev/shm/sluice/{pid}.stat")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("port "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn num(port: &HashMap<String, String>, key: &str) -> u64 {
    port.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Waits (bounded) until port 0's snapshot satisfies `done`; its last snapshot.
fn wait_port0(
    server: &mut LabProcess,
    what: &str,
    done: impl Fn(&[HashMap<String, String>]) -> bool,
) -> Vec<HashMap<String, String>> {
    let start = Instant::now();
    loop {
        server.assert_running();
        let p = ports(server.pid());
        if p.len() == 2 && done(&p) {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s; ports {p:?}\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// One failure of port 0 during a flow: the flow's losses and stalls, and where it went.
fn event(server: &mut LabProcess, port: u16, name: &str, fail: &dyn Fn(), recover: &dyn Fn()) {
    let before = ports(server.pid());
    let flow = scripts_dir().join("udp_flow.py");
    let args = [
        flow.to_str().unwrap(),
        "send",
        H3_DATA,
        H1_DATA,
        &port.to_string(),
        &FLOW_SECONDS.to_string(),
        &RATE.to_string(),
    ];
    let python = python3();
    let mut client = LabProcess::start(
        "udp_flow send",
        in_ns(H3, None, &Stack::Kernel, python.to_str().unwrap(), &args),
    );
    thread::sleep(FAIL_AFTER);
    fail();
    let failed_at = Instant::now();
    let moved = wait_port0(server, "p0 down and 10.77.2.1 served by p1", |p| {
        p[0]["state"] == "down" && p[1]["serves"].contains(H1_DATA)
    });
    println!(
        "{name}: p0 down ({}) after {} ms",
        moved[0]["last_change"],
        failed_at.elapsed().as_millis()
    );
    // The flow goes on through p1 meanwhile.
    let carried = num(&moved[1], "carried_rx_frames");
    thread::sleep(Duration::from_millis(500));
    let during = ports(server.pid());
    assert!(
        num(&during[1], "carried_rx_frames") >= carried + 200,
        "{name}: p1 did not carry the flow: {during:?}"
    );
    thread::sleep(FAILED_FOR.saturating_sub(failed_at.elapsed()));
    recover();
    let recovered_at = Instant::now();
    let back = wait_port0(server, "p0 up and 10.77.2.1 back on p0", |p| {
        p[0]["state"] == "up" && p[0]["serves"] == H1_DATA && p[1]["serves"] == "10.77.3.1"
    });
    println!(
        "{name}: p0 up ({}) after {} ms",
        back[0]["last_change"],
        recovered_at.elapsed().as_millis()
    );
    // The flow returns to p0: p0's link receives it, p1 carries nothing more.
    let (rx0, carried) = (
        num(&back[0], "link_rx_frames"),
        num(&back[1], "carried_rx_frames"),
    );
    thread::sleep(Duration::from_millis(500));
    let after = ports(server.pid());
    assert!(
        num(&after[0], "link_rx_frames") >= rx0 + 200,
        "{name}: the flow did not return to p0: {after:?}"
    );
    assert_eq!(
        num(&after[1], "carried_rx_frames"),
        carried,
        "{name}: p1 still carries"
    );
    let status = client.wait(Duration::from_secs(u64::from(FLOW_SECONDS) + 10));
    assert!(
        status.success(),
        "{name}: flow client failed\n{}",
        client.logs()
    );
    let out = client.stdout();
    for line in out.lines().filter(|l| l.starts_with("gap ")) {
        println!("{name}: {line}");
    }
    let summary = out
        .lines()
        .find(|l| l.starts_with("summary "))
        .unwrap_or_else(|| panic!("{name}: no summary\n{}", client.logs()));
    let lost = number_after(summary, "lost=").expect("lost=") as u64;
    let stall = number_after(summary, "longest_gap_ms=").expect("longest_gap_ms=");
    let moves = num(&after[0], "moves") - num(&before[0], "moves");
    let garps = num(&after[0], "garps_sent") + num(&after[1], "garps_sent")
        - num(&before[0], "garps_sent")
        - num(&before[1], "garps_sent");
    println!(
        "{name}: {summary}; datagrams lost over both moves {lost}, longest stall {stall:.1} ms, \
         moves {moves}, GARPs {garps}"
    );
    assert_eq!(moves, 2, "{name}: away and back");
    assert!(garps >= 6, "{name}: 3 GARPs per move, got {garps}");
    assert!(
        stall < LONGEST_STALL_MS,
        "{name}: stalled {stall} ms\n{}",
        server.logs()
    );
    assert!(
        lost < MOST_LOST,
        "{name}: lost {lost} datagrams\n{}",
        server.logs()
    );
}

#[test]
fn a_failed_port_s_address_moves_to_the_other_port_and_back() {
    ensure_lab();
    let _p0 = lock_p0();
    // Under the lock: adding the inter-switch link must not surprise another suite's DPDK run.
    ensure_ha_lab();
    let _restore = Restore;
    let port = lab_port(40);
    let stack = Stack::Dpdk {
        iface: "p0=10.77.2.1/24,p1=10.77.3.1/24".to_string(),
        backend: "af_packet".to_string(),
    };
    let flow = scripts_dir().join("udp_flow.py");
    let port_arg = port.to_string();
    let python = python3();
    let args = [
        "SLUICE_LOG=sluice_stack=info",
        python.to_str().unwrap(),
        flow.to_str().unwrap(),
        "echo",
        H1_DATA,
        &port_arg,
    ];
    let mut server = LabProcess::start("udp_flow echo", in_ns(H1, None, &stack, "env", &args));
    server.wait_printed("ready", Duration::from_secs(30));
    wait_port0(&mut server, "both ports up", |p| {
        p.iter().all(|p| p["state"] == "up")
    });

    event(
        &mut server,
        port,
        "link down",
        &|| assert!(sh("sl-sw0", &["ip", "link", "set", "h1p0", "down"])),
        &|| assert!(sh("sl-sw0", &["ip", "link", "set", "h1p0", "up"])),
    );
    event(
        &mut server,
        port,
        "blackhole",
        &|| {
            // Frames to sl-h1 first: until the second rule is in, the failure is one-way
            // (sl-h1's frames lost, the flow still arriving), which silence cannot see.
            sluice_lab(&["fault", "h1p0", "blackhole", "--egress"]);
            sluice_lab(&["fault", "h1p0", "blackhole"]);
        },
        &|| sluice_lab(&["fault", "h1p0", "clear"]),
    );
    let log = server.stderr();
    for line in log.lines().filter(|l| l.contains("port p")) {
        println!("sluice: {line}");
    }
    assert!(
        log.contains("port p0 (10.77.2.1) down: carrier lost"),
        "{log}"
    );
    assert!(
        log.contains("port p0 (10.77.2.1) down: silent for"),
        "{log}"
    );
}
