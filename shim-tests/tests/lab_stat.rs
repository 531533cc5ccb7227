//! `sluice-stat` against live stacks in the lab: a UDP application under sluice (sl-h1,
//! 10.77.2.1 over DPDK af_packet) exchanges datagrams with a kernel echo on sl-h3; its
//! published counters must account for them, it must be listed while it runs, and its
//! snapshot must go away when it exits or is killed.
//!
//! Needs root; brings the lab up when it is missing; holds the p0 lock while DPDK runs. Run
//! with `cargo test --release -p shim-tests --test lab_stat -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, kernel_udp_echo, lab_port, lock_p0, LabProcess, Stack, H1, H1_DATA, H3,
    H3_DATA,
};
use shim_tests::{artefacts, python3};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Sends COUNT datagrams to the echo and reads them back, prints "exchanged COUNT PORT",
/// then stays 60 s ("wait": the test kills it) or 1 s ("exit": long enough for the helper
/// to have published) and exits.
const APP: &str = r#"
import socket, sys
local, peer, count = sys.argv[1], (sys.argv[2], int(sys.argv[3])), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local, 0))
s.settimeout(5)
for i in range(count):
    s.sendto(b"stat %d" % i, peer)
    assert s.recv(100) == b"stat %d" % i
print("exchanged", count, s.getsockname()[1], flush=True)
import time
time.sleep(60 if sys.argv[5] == "wait" else 1)
"#;

const COUNT: u64 = 25;

fn stat_bin() -> PathBuf {
    artefacts().launcher.with_file_name("sluice-stat")
}

fn stat(args: &[&str]) -> (bool, String) {
    let out = Command::new(stat_bin())
        .args(args)
        .output()
        .expect("run sluice-stat");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn snapshot_file(pid: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/sluice/{pid}.stat"))
}

fn app(mode: &str, port: u16) -> LabProcess {
    let python = python3().display().to_string();
    let cmd = in_ns(
        H1,
        None,
        &Stack::dpdk(H1_DATA),
        &python,
        &[
            "-c",
            APP,
            H1_DATA,
            H3_DATA,
            &port.to_string(),
            &COUNT.to_string(),
            mode,
        ],
    );
    LabProcess::start(&format!("sluice UDP app ({mode})"), cmd)
}

/// Waits until `what` holds or 20 s pass.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} within 20 s.\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `"key": ` in `json`.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\": "))? + key.len() + 4;
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn sluice_stat_reads_a_live_stack() {
    ensure_lab();
    let _p0 = lock_p0();
    let port = lab_port(5);
    let _echo = kernel_udp_echo(H3, H3_DATA, port);

    let mut waiting = app("wait", port);
    let pid = waiting.pid();
    wait_for(
        "the application exchanged its datagrams",
        || waiting.stdout().contains("exchanged"),
        || waiting.logs(),
    );
    let local_port: u16 = waiting
        .stdout()
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .expect("the application printed its port");
    // The helper republishes a few times a second.
    wait_for(
        "a snapshot counting every datagram",
        || {
            let (_, json) = stat(&[&pid.to_string(), "--json"]);
            json_number(&json, "rx_udp").is_some_and(|n| n >= COUNT)
        },
        || format!("{}\n{}", stat(&[&pid.to_string()]).1, waiting.logs()),
    );

    let (listed, list) = stat(&[]);
    assert!(
        listed
            && list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "sluice-stat does not list {pid}:\n{list}"
    );
    let (ok, json) = stat(&[&pid.to_string(), "--json"]);
    assert!(ok, "sluice-stat {pid} --json failed: {json}");
    assert!(
        json.contains(&format!("\"pid\": {pid}")) && json.contains("\"mode\": \"dpdk\""),
        "{json}"
    );
    assert!(
        json_number(&json, "tx_udp").is_some_and(|n| n >= COUNT),
        "fewer than {COUNT} datagrams sent in {json}"
    );
    assert!(
        json.contains(&format!("\"local\": \"{H1_DATA}:{local_port}\"")),
        "the socket {H1_DATA}:{local_port} is not in {json}"
    );
    assert!(
        json.contains(&format!("\"ip\": \"{H3_DATA}\"")),
        "the neighbour {H3_DATA} is not in {json}"
    );
    assert!(
        json_number(&json, "polls").is_some_and(|n| n > 0)
            && json_number(&json, "helper_naps").is_some_and(|n| n > 0),
        "no engine figures in {json}"
    );
    let (ok, text) = stat(&[&pid.to_string()]);
    assert!(
        ok && text.contains("port") && text.contains(&format!("addr={H1_DATA}/24")),
        "{text}"
    );
    // The snapshot is the owner's alone: another user neither reads it nor sees the process.
    let mode = std::fs::metadata(snapshot_file(pid))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("the snapshot file");
    assert_eq!(mode, 0o600, "snapshot file mode {mode:o}");
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(stat_bin())
            .args(args)
            .output()
            .expect("run sluice-stat as nobody (setpriv, util-linux)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let listed = as_nobody(&[]);
    assert!(
        !listed.contains(&pid.to_string()),
        "another user sees process {pid}:\n{listed}"
    );
    let read = as_nobody(&[&pid.to_string()]);
    assert!(
        read.contains("another user") && !read.contains("rx_udp"),
        "another user read process {pid}'s statistics:\n{read}"
    );
    let (failed, err) = stat(&["999999999"]);
    assert!(
        !failed && err.contains("no process"),
        "sluice-stat of a missing pid: {err}"
    );

    // Killed: its snapshot stays behind until sluice-stat notices the process is gone.
    waiting.kill();
    assert!(
        snapshot_file(pid).exists(),
        "a killed process removed its snapshot?"
    );
    let (_, list) = stat(&[]);
    assert!(
        !list.contains(&pid.to_string()) && !snapshot_file(pid).exists(),
        "the dead process's snapshot was not cleaned up:\n{list}"
    );

    // A process that exits removes its own snapshot.
    let mut exiting = app("exit", port);
    let pid = exiting.pid();
    let status = exiting.wait(Duration::from_secs(30));
    assert!(status.success(), "{}", exiting.logs());
    assert!(exiting.stdout().contains("exchanged"), "{}", exiting.logs());
    assert!(
        !snapshot_file(pid).exists(),
        "an exited process left its snapshot behind"
    );
}
