//! Differential conformance of offloaded stream (TCP) sockets: the probe c/stream_probe.c runs
//! as a server in sl-h2 and a client in sl-h1 and walks the same scenarios on both ends
//! (listen and backlog, accept/accept4 flags, names, blocking and non-blocking connect,
//! ECONNREFUSED, EISCONN, data of 1 B to 1 MiB, writev/readv, MSG_PEEK, MSG_WAITALL,
//! MSG_DONTWAIT, FIONREAD, SO_RCVLOWAT, sendfile, SIOCOUTQ, half-close, SHUT_RD, reset on close
//! with unread data, EPIPE and SIGPIPE, SO_LINGER {1, 0}, poll revents at each step, epoll
//! edge-triggered across a half-close, keepalive and other options, SO_REUSEADDR after a close;
//! then, issue 5: SIGALRM 50 ms into a blocking accept, recv, connect (to a full accept queue),
//! poll, select and epoll_wait with and without SA_RESTART, and into a recv or accept with
//! SO_RCVTIMEO; poll, select and epoll over a pipe, an eventfd and streams, with timeouts; dup,
//! dup2, dup3, F_DUPFD and F_DUPFD_CLOEXEC of a connected stream, and dup2 over one; a forked
//! child that closes an inherited connection, or exits with it; 8 threads with 200 checked
//! requests each) printing a canonical transcript on each end.
//!
//! The pair runs on the kernel (10.77.1.1 -> 10.77.1.2, no preload) twice, which must agree
//! (else the probe itself is not deterministic), then with both processes under libsluice over
//! DPDK (10.77.2.1 -> 10.77.2.2), whose transcripts must equal the kernel's.
//!
//! Needs root; brings the lab up when it is missing; holds the p0 lock throughout (a DPDK port
//! on p0 would take the kernel runs' frames too). Run
//! with `cargo test --release -p shim-tests --test lab_stream_conformance -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, LabProcess, Stack, H1, H1_DATA, H1_MGMT, H2, H2_DATA,
    H2_MGMT,
};
use shim_tests::{unified_diff, workspace_root, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Hang guards, not speed checks (each process also ends itself after 60 s: alarm).
const READY: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_secs(90);

/// Compiles c/stream_probe.c into `dir` as build.rs compiles the other probes.
fn compile_probe(dir: &Path) -> PathBuf {
    let src = workspace_root().join("shim-tests/c/stream_probe.c");
    let bin = dir.join("stream_probe");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&compiler)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-D_GNU_SOURCE",
            "-pthread",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// What one run of the pair printed.
struct Pair {
    server: String,
    client: String,
    /// Both processes' exit status and stderr (sluice's log), for failure messages.
    logs: String,
    complete: bool,
}

impl Pair {
    fn transcript(&self) -> String {
        format!(
            "---- server (sl-h2) ----\n{}---- client (sl-h1) ----\n{}",
            self.server, self.client
        )
    }
}

/// Runs the server in sl-h2 on `server_ip:port` (and port+1, port+2), waits until it is
/// ready, then the client in sl-h1 from `client_ip`; both to completion.
fn run_pair(
    probe: &Path,
    stack: (&Stack, &Stack),
    server_ip: &str,
    client_ip: &str,
    port: u16,
) -> Pair {
    let probe = probe.display().to_string();
    let port = port.to_string();
    let args = |role: &'static str, local: &str, peer: &str| -> Vec<String> {
        vec![
            "SLUICE_LOG=sluice=debug".to_string(),
            probe.clone(),
            role.to_string(),
            local.to_string(),
            peer.to_string(),
            port.clone(),
        ]
    };
    let server_args = args("server", server_ip, client_ip);
    let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let mut server = LabProcess::start(
        "stream_probe server",
        in_ns(H2, Some(1), stack.0, "/usr/bin/env", &server_args),
    );
    let start = Instant::now();
    while !server.stdout().contains("== ready ==") {
        assert!(
            server.running(),
            "the probe's server exited before it was ready.\n{}",
            server.logs()
        );
        assert!(
            start.elapsed() < READY,
            "the probe's server was not ready within {READY:?}.\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let client_args = args("client", client_ip, server_ip);
    let client_args: Vec<&str> = client_args.iter().map(String::as_str).collect();
    let mut client = LabProcess::start(
        "stream_probe client",
        in_ns(H1, Some(0), stack.1, "/usr/bin/env", &client_args),
    );
    let c_status = client.wait(RUN);
    let s_status = server.wait(RUN);
    let (server_out, client_out) = (server.stdout(), client.stdout());
    let complete = s_status.success()
        && c_status.success()
        && server_out.contains("== end ==")
        && client_out.contains("== end ==");
    Pair {
        logs: format!("{}\n{}", server.logs(), client.logs()),
        server: server_out,
        client: client_out,
        complete,
    }
}

#[test]
fn offloaded_stream_sockets_answer_like_the_kernel() {
    ensure_lab();
    // The kernel runs need p0 too: a DPDK port (af_xdp above all) on it takes the kernel's frames.
    let _p0 = lock_p0();
    let dir = Scratch::new("stream-probe");
    let probe = compile_probe(dir.path());
    let kernel = (&Stack::Kernel, &Stack::Kernel);

    // Each run has its own three ports: the kernel keeps TIME_WAIT sockets behind.
    let first = run_pair(&probe, kernel, H2_MGMT, H1_MGMT, lab_port(0));
    assert!(
        first.complete,
        "the probe did not complete on the kernel: the lab or the probe is broken.\n{}\n{}",
        first.transcript(),
        first.logs
    );
    let second = run_pair(&probe, kernel, H2_MGMT, H1_MGMT, lab_port(3));
    assert!(
        second.complete && first.transcript() == second.transcript(),
        "two kernel runs differ: the probe is not deterministic.\n{}\n{}",
        unified_diff(
            "kernel-1",
            &first.transcript(),
            "kernel-2",
            &second.transcript()
        ),
        second.logs
    );

    let sluice = run_pair(
        &probe,
        (&Stack::dpdk(H2_DATA), &Stack::dpdk(H1_DATA)),
        H2_DATA,
        H1_DATA,
        lab_port(0),
    );
    assert!(
        sluice
            .logs
            .contains(&format!("-> offload (bind {H2_DATA}:"))
            && sluice.logs.contains(&format!("-> offload (dst {H2_DATA}:")),
        "the probe's sockets were not offloaded:\n{}",
        sluice.logs
    );
    let (k, s) = (first.transcript(), sluice.transcript());
    if k != s || !sluice.complete {
        panic!(
            "offloaded streams differ from the kernel's (sluice run complete: {}):\n{}\n\
             the sluice processes:\n{}",
            sluice.complete,
            unified_diff("kernel", &k, "sluice", &s),
            sluice.logs
        );
    }
}
