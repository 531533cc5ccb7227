//! Differential conformance of offloaded UDP sockets: the probe c/udp_probe.c exercises UDP
//! socket semantics against a kernel echo on sl-h3 (bind, SO_REUSEADDR, sendto/recvfrom,
//! datagram boundaries, MSG_PEEK/MSG_TRUNC/MSG_DONTWAIT, FIONREAD, O_NONBLOCK, SO_RCVTIMEO,
//! SO_SNDTIMEO, buffer sizes, connect and AF_UNSPEC, ICMP port unreachable and ECONNREFUSED,
//! sendmmsg/recvmmsg, misuse) and prints a canonical transcript. It runs on sl-h1 twice: on
//! the kernel (10.77.1.1 -> 10.77.1.3) and under libsluice with every socket offloaded to the
//! stack over DPDK (10.77.2.1 -> 10.77.2.3). The transcripts must be equal.
//!
//! Needs root; brings the lab up when it is missing; holds the p0 lock while DPDK runs. Run
//! with `cargo test --release -p shim-tests --test lab_udp_conformance -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, kernel_udp_echo, lab_port, lock_p0, LabProcess, Stack, H1, H1_DATA, H1_MGMT,
    H3, H3_DATA,
};
use shim_tests::{unified_diff, UDP_PROBE_BIN};
use std::time::Duration;

const H3_MGMT: &str = "10.77.1.3";

/// Runs the probe in sl-h1 the way `stack` says; returns (stdout, stderr).
fn transcript(stack: &Stack, local: &str, peer: &str, echo: u16, closed: u16) -> (String, String) {
    let (echo_s, closed_s) = (echo.to_string(), closed.to_string());
    let cmd = in_ns(
        H1,
        None,
        stack,
        "/usr/bin/env",
        &[
            "SLUICE_LOG=sluice=debug",
            UDP_PROBE_BIN,
            local,
            peer,
            &echo_s,
            &closed_s,
        ],
    );
    let mut probe = LabProcess::start("udp_probe", cmd);
    let status = probe.wait(Duration::from_secs(60));
    let (out, err) = (probe.stdout(), probe.stderr());
    assert!(
        status.success() && out.contains("== end =="),
        "the probe did not complete ({status}).\n{}",
        probe.logs()
    );
    (out, err)
}

#[test]
fn offloaded_udp_sockets_answer_like_the_kernel() {
    ensure_lab();
    let _p0 = lock_p0();
    let echo = lab_port(3);
    let closed = lab_port(4);
    // Every port unreachable answered, however fast they come (sluice-lab up sets it too).
    let sysctl = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            H3,
            "sysctl",
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
        ])
        .status()
        .expect("run sysctl in sl-h3");
    assert!(
        sysctl.success(),
        "cannot turn off ICMP rate limiting in {H3}"
    );
    let mut peer = kernel_udp_echo(H3, "0.0.0.0", echo);

    let (kernel, _) = transcript(&Stack::Kernel, H1_MGMT, H3_MGMT, echo, closed);
    let (sluice, log) = transcript(&Stack::dpdk(H1_DATA), H1_DATA, H3_DATA, echo, closed);
    assert!(
        log.contains("-> offload (bind 10.77.2.1:0)") && log.contains("-> offload (dst 10.77.2.3:"),
        "the probe's sockets were not offloaded:\n{log}"
    );
    assert!(
        !kernel.contains("await: nothing arrived"),
        "the kernel run lost datagrams: the lab is not healthy.\n{kernel}"
    );
    if kernel != sluice {
        panic!(
            "offloaded UDP differs from the kernel's:\n{}\nsluice's log:\n{log}",
            unified_diff("kernel", &kernel, "sluice", &sluice)
        );
    }
    peer.assert_running();
}
