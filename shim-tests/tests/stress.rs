//! Stress: 8 threads x 2000 iterations of socket/bind/getsockname/dup/dup2/
//! socketpair/close on loopback under the preload, every result checked by
//! the program (c/stress.c), finishing within a bound.

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
