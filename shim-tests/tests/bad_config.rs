//! Bad configuration: libsluice.so loaded directly with a bad SLUICE_* value
//! says so in exactly one stderr line (naming the variable and the value) and
//! lets the application run on the kernel; the launcher refuses with exit
//! status 2 and the same single line, without starting the application.

use shim_tests::{command, python3, run_bounded, Launch};
use std::process::Output;
use std::time::Duration;

/// Loopback TCP echo that prints "echo ok".
const ECHO: &str = "import socket\n\
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
c = socket.create_connection(s.getsockname(), timeout=10)\n\
a, _ = s.accept(); c.sendall(b'ping'); a.sendall(a.recv(4)); assert c.recv(4) == b'ping'\n\
print('echo ok')\n";

/// (variable, bad value, text the error line must quote)
const BAD: &[(&str, &str, &str)] = &[
    ("SLUICE_IFACES", "p0=10.77.2.1/33", "10.77.2.1/33"),
    ("SLUICE_MODE", "warp-speed", "warp-speed"),
    ("SLUICE_OFFLOAD", "10.77.0.0/16:99999", "99999"),
];

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(String::from)
        .collect()
}

fn assert_one_line(what: &str, out: &Output, var: &str, quoted: &str) {
    let lines = stderr_lines(out);
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got {lines:#?}"
    );
    assert!(
        lines[0].contains(var) && lines[0].contains(quoted),
        "{what}: the error line must name {var} and quote `{quoted}`: `{}`",
        lines[0]
    );
}

#[test]
fn preload_with_bad_config_warns_once_and_app_runs() {
    for (var, value, quoted) in BAD {
        let mut cmd = command(Launch::Preload, python3());
        cmd.args(["-c", ECHO]).env(var, value);
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        let what = format!("LD_PRELOAD with {var}={value}");
        assert!(
            out.status.success(),
            "{what}: the application must still run ({}); stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "echo ok\n", "{what}");
        assert_one_line(&what, &out, var, quoted);
    }
}

#[test]
fn launcher_with_bad_config_exits_2_with_one_line() {
    for (var, value, quoted) in BAD {
        let mut cmd = command(Launch::Launcher, python3());
        cmd.args(["-c", ECHO]).env(var, value);
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        let what = format!("sluice run with {var}={value}");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: exit status; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{what}: the application ran anyway: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_one_line(&what, &out, var, quoted);
    }
}

#[test]
fn launcher_with_bad_iface_flag_exits_2_with_one_line() {
    let mut cmd = command(Launch::Plain, &shim_tests::artefacts().launcher);
    cmd.args(["run", "--iface", "p0=10.77.2.1/33", "--"])
        .arg(python3())
        .args(["-c", ECHO]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let what = "sluice run --iface p0=10.77.2.1/33";
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: exit status; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{what}: the application ran anyway");
    let lines = stderr_lines(&out);
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got {lines:#?}"
    );
    // The line may name the flag or the variable it becomes; it must quote the value.
    assert!(
        (lines[0].contains("--iface") || lines[0].contains("SLUICE_IFACES"))
            && lines[0].contains("10.77.2.1/33"),
        "{what}: the error line must name --iface or SLUICE_IFACES and quote the value: `{}`",
        lines[0]
    );
}
