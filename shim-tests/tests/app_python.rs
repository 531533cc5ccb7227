//! python3 under the preload and the launcher: our loopback socket workout
//! (scripts/socket_echo.py: TCP and UDP echo, selectors, asyncio) must print
//! its own success lines exactly as it does without sluice.

use shim_tests::{assert_success, command, python3, run_bounded, scripts_dir, Launch};
use std::time::Duration;

fn run(launch: Launch) -> String {
    run_with(launch, &[])
}

fn run_with(launch: Launch, vars: &[(&str, &str)]) -> String {
    let mut cmd = command(launch, python3());
    cmd.arg(scripts_dir().join("socket_echo.py"))
        .envs(vars.iter().copied());
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    assert_success(&format!("python3 socket_echo.py ({launch:?})"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const EXPECTED: &str = "ok tcp echo 262144 bytes
ok udp echo 100 datagrams
ok selectors echo 8 clients
ok asyncio echo 5 connections
python sockets: all ok
";

#[test]
fn python_sockets_plain() {
    // The reference: if this fails, the script or the machine is at fault, not sluice.
    assert_eq!(run(Launch::Plain), EXPECTED);
}

#[test]
fn python_sockets_under_preload() {
    assert_eq!(run(Launch::Preload), EXPECTED);
}

#[test]
fn python_sockets_under_launcher() {
    assert_eq!(run(Launch::Launcher), EXPECTED);
}

#[test]
fn python_sockets_under_preload_with_offload_policy() {
    // Every connect/bind/sendto consults the policy; loopback must stay in the kernel.
    assert_eq!(
        run_with(Launch::Preload, &[("SLUICE_OFFLOAD", "10.77.0.0/16")]),
        EXPECTED
    );
}
