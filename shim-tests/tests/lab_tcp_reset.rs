//! A kernel TCP client that connects to a sluice data IP is refused at once: the stack
//! answers its SYN with a reset (stack/src/tcp.rs) instead of letting it retry for minutes.
//! sl-h1 runs a sluice process (10.77.2.1 over DPDK af_packet) whose offloaded UDP socket
//! keeps the stack up; the kernel-only host sl-h3 connects to 10.77.2.1 with TCP.
//!
//! Needs root; brings the lab up when it is missing; holds the p0 lock while DPDK runs. Run
//! with `cargo test --release -p shim-tests --test lab_tcp_reset -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, wait_stack_answers, LabProcess, Stack, H1, H1_DATA, H3,
};
use shim_tests::{python3, run_bounded};
use std::time::{Duration, Instant};

/// Hang guard for the stack to come up, not a speed check.
const READY: Duration = Duration::from_secs(30);

/// Holds an offloaded UDP socket on the data IP for 60 s (the test ends it sooner).
const HOLDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("bound", flush=True)
time.sleep(60)
"#;

/// A kernel TCP connect with a 5 s timeout: prints the outcome and the seconds it took.
const CONNECT: &str = r#"
import errno, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
start = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    outcome = "connected"
except socket.timeout:
    outcome = "timeout"
except OSError as e:
    outcome = errno.errorcode.get(e.errno, str(e.errno))
print(outcome, "%.3f" % (time.monotonic() - start), flush=True)
"#;

/// The `tcp_resets_sent` of port 0 in the process's sluice-stat snapshot, if published.
fn resets_sent(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/dev/shm/sluice/{pid}.stat")).ok()?;
    let line = text.lines().find(|l| l.starts_with("port index=0 "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("tcp_resets_sent="))?
        .parse()
        .ok()
}

#[test]
fn a_kernel_tcp_client_to_a_data_ip_is_refused_at_once() {
    ensure_lab();
    let _p0 = lock_p0();
    let python = python3().display().to_string();
    let udp_port = lab_port(4);
    let tcp_port = lab_port(3);
    let cmd = in_ns(
        H1,
        None,
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", HOLDER, H1_DATA, &udp_port.to_string()],
    );
    let mut holder = LabProcess::start("sluice UDP holder (python3)", cmd);
    wait_stack_answers(&mut holder, H1_DATA, READY);
    assert!(
        holder.maps("/libsluice_dpdk.so"),
        "the data IP answers ping without libsluice_dpdk.so mapped: not offloaded.\n{}",
        holder.logs()
    );

    for attempt in 1..=3 {
        let mut cmd = in_ns(
            H3,
            None,
            &Stack::Kernel,
            &python,
            &["-c", CONNECT, H1_DATA, &tcp_port.to_string()],
        );
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        let outcome = words.next().unwrap_or("(nothing)");
        let seconds: f64 = words
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        eprintln!(
            "kernel TCP connect {H3} -> {H1_DATA}:{tcp_port} #{attempt}: {outcome} in {seconds} s"
        );
        assert_eq!(
            outcome,
            "ECONNREFUSED",
            "a kernel TCP connect to the data IP should be refused by a reset, not {outcome}.\n\
             stderr: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            holder.logs()
        );
        assert!(
            seconds < 1.0,
            "refused only after {seconds} s (the reset should answer the first SYN)"
        );
    }

    let start = Instant::now();
    loop {
        let sent = resets_sent(holder.pid());
        if sent.is_some_and(|n| n >= 3) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the stack's snapshot does not count 3 resets sent (tcp_resets_sent: {sent:?}).\n{}",
            holder.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    holder.assert_running();
}
