//! Stress: 8 threads x 2000 iterations of socket/bind/getsockname/dup/dup2/
//! socketpair/close on loopback under the preload, every result checked by
//! the program (c/stress.c), finishing within a bound; and forks taken while
//! those threads churn.

use shim_tests::{assert_success, command, run_bounded, Launch, STRESS_BIN};
use std::time::Duration;

fn churn(launch: Launch, vars: &[(&str, &str)]) {
    let mut cmd = command(launch, STRESS_BIN);
    cmd.args(["8", "2000"]).envs(vars.iter().copied());
    // Plainly this takes well under a second; the bound only catches hangs.
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert_success(&format!("stress ({launch:?})"), &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "stress ok: threads=8 iterations=2000\n"
    );
}

#[test]
fn fd_churn_plain() {
    churn(Launch::Plain, &[]);
}

#[test]
fn fd_churn_under_preload() {
    churn(Launch::Preload, &[]);
}

#[test]
fn fd_churn_under_preload_with_offload_policy() {
    // With a policy configured every bind consults it (loopback still stays in the kernel).
    churn(Launch::Preload, &[("SLUICE_OFFLOAD", "10.77.0.0/16")]);
}

#[test]
fn fork_while_threads_churn_under_preload() {
    // fork() copies whatever locks other threads hold at that instant: the
    // child must still be able to use sockets (no deadlock, no corrupt table).
    let mut cmd = command(Launch::Preload, STRESS_BIN);
    cmd.args(["4", "6000", "200"]);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert_success("stress with forks under the preload", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "stress ok: threads=4 iterations=6000 forks=200\n"
    );
}
