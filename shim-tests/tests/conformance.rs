//! Differential conformance: the C probe (c/conform.c) prints a transcript of
//! everything an application can observe from every hooked call. With nothing
//! offloaded, the preload must be invisible: the transcript under
//! `LD_PRELOAD=libsluice.so` and under the launcher must equal the plain one.
//! The only expected difference is the "ENV:" lines: the preload is mapped,
//! and it survives exec even when the caller scrubs the environment.

use shim_tests::{
    artefacts, assert_success, command, run_bounded, unified_diff, workspace_root, Launch,
    CANARY_SO, CONFORM_BIN,
};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A policy that offloads the lab's data subnets, as in a real deployment:
/// loopback stays in the kernel, so the preload must still be invisible.
const LAB_POLICY: &[(&str, &str)] = &[("SLUICE_OFFLOAD", "10.77.0.0/16")];

struct Transcript {
    /// Lines that must be identical across launch modes.
    common: String,
    /// "ENV:" lines, expected to differ.
    env: Vec<String>,
}

fn split(text: &str) -> Transcript {
    let (env, common): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with("ENV:"));
    Transcript {
        common: common.join("\n") + "\n",
        env: env.into_iter().map(String::from).collect(),
    }
}

/// Runs the probe; on any failure shows how far it got against the plain run.
fn transcript_with(launch: Launch, vars: &[(&str, &str)]) -> Transcript {
    let mut cmd = command(launch, CONFORM_BIN);
    cmd.envs(vars.iter().copied());
    let out = run_bounded(&mut cmd, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complete = out.status.success() && text.contains("== end ==");
    if !complete || !stderr.is_empty() {
        let reference = if launch == Launch::Plain {
            String::new()
        } else {
            format!(
                "\nagainst the plain run:\n{}",
                diff_against_plain(&split(&text).common)
            )
        };
        panic!(
            "conformance probe under {launch:?} with {vars:?}: {} ({}), stderr:\n{stderr}{reference}",
            if complete { "wrote to stderr" } else { "did not complete" },
            out.status
        );
    }
    split(&text)
}

fn transcript(launch: Launch) -> Transcript {
    transcript_with(launch, &[])
}

fn diff_against_plain(other: &str) -> String {
    let plain = transcript(Launch::Plain);
    unified_diff("plain", &plain.common, "sluice", other)
}

fn assert_same(mode: Launch, vars: &[(&str, &str)]) {
    let plain = transcript_with(Launch::Plain, vars);
    let other = transcript_with(mode, vars);
    if plain.common != other.common {
        panic!(
            "transcript under {mode:?} with {vars:?} differs from the plain run:\n{}",
            unified_diff(
                "plain",
                &plain.common,
                &format!("{mode:?}").to_lowercase(),
                &other.common
            )
        );
    }
}

#[test]
fn preload_is_invisible_to_every_hooked_call() {
    assert_same(Launch::Preload, &[]);
}

#[test]
fn launcher_is_invisible_to_every_hooked_call() {
    assert_same(Launch::Launcher, &[]);
}

#[test]
fn preload_with_an_offload_policy_leaves_loopback_alone() {
    assert_same(Launch::Preload, LAB_POLICY);
}

#[test]
fn launcher_profiles_are_invisible_to_every_hooked_call() {
    // Every shipped profile (tools/profiles/*.conf), e.g. latency's long spin budget.
    let dir = workspace_root().join("tools/profiles");
    let mut profiles: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".conf").map(String::from)
        })
        .collect();
    profiles.sort();
    assert!(!profiles.is_empty(), "no profiles in {}", dir.display());
    let plain = transcript(Launch::Plain);
    for profile in profiles {
        let mut cmd = command(Launch::Plain, &artefacts().launcher);
        cmd.args(["run", "-p", &profile, "--", CONFORM_BIN]);
        let out = run_bounded(&mut cmd, LIMIT);
        assert_success(&format!("probe under `sluice run -p {profile}`"), &out);
        let other = split(&String::from_utf8_lossy(&out.stdout));
        assert!(
            other.common == plain.common,
            "transcript under profile {profile} differs from the plain run:\n{}",
            unified_diff("plain", &plain.common, &profile, &other.common)
        );
    }
}

#[test]
fn harness_notices_a_hook_that_changes_an_errno() {
    // The canary interposer turns getpeername's ENOTCONN into EINVAL; if the
    // comparison missed that, passing the tests above would mean nothing.
    let plain = transcript(Launch::Plain);
    let mut cmd = command(Launch::Plain, CONFORM_BIN);
    cmd.env("LD_PRELOAD", CANARY_SO);
    let out = run_bounded(&mut cmd, LIMIT);
    assert_success("probe under the canary interposer", &out);
    let canary = split(&String::from_utf8_lossy(&out.stdout));
    let diff = unified_diff("plain", &plain.common, "canary", &canary.common);
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("getpeername") && l.contains("EINVAL")),
        "the harness did not show the canary's wrong errno:\n{diff}"
    );
}

#[test]
fn plain_transcript_is_deterministic() {
    // Guards the harness itself: a line that varies run to run would make the
    // comparison above flaky rather than meaningful.
    let a = transcript(Launch::Plain);
    let b = transcript(Launch::Plain);
    assert_eq!(
        a.common,
        b.common,
        "{}",
        unified_diff("run1", &a.common, "run2", &b.common)
    );
}

const EXEC_VARIANTS: [&str; 5] = ["execve", "vfork+execve", "execle", "execvpe", "execvp"];

fn env_line<'a>(t: &'a Transcript, key: &str) -> &'a str {
    let prefix = format!("ENV: {key} ");
    t.env
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {:?}", t.env))
}

#[test]
fn plain_run_has_no_preload() {
    let t = transcript(Launch::Plain);
    assert_eq!(env_line(&t, "libsluice.so"), "ENV: libsluice.so mapped no");
    for v in EXEC_VARIANTS {
        assert_eq!(
            env_line(&t, v),
            format!("ENV: {v} LD_PRELOAD= SLUICE_OFFLOAD="),
            "plain {v}"
        );
    }
}

/// The children started through every exec variant kept libsluice.so in
/// LD_PRELOAD and, when `setting` is given, the sluice configuration too.
fn assert_preload_kept_across_exec(mode: Launch, vars: &[(&str, &str)], setting: Option<&str>) {
    let t = transcript_with(mode, vars);
    assert_eq!(
        env_line(&t, "libsluice.so"),
        "ENV: libsluice.so mapped yes",
        "libsluice.so is not mapped under {mode:?}: the comparison would prove nothing"
    );
    for v in EXEC_VARIANTS {
        let line = env_line(&t, v);
        let preload = line
            .strip_prefix(&format!("ENV: {v} LD_PRELOAD="))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("");
        // execve/execle/execvpe pass an environment without LD_PRELOAD: the
        // preload must put itself back so the child stays accelerated.
        assert!(
            preload
                .split([':', ' '])
                .any(|p| p.ends_with("/libsluice.so")),
            "under {mode:?} the child started by {v} lost the preload: `{line}`"
        );
        if let Some(setting) = setting {
            assert!(
                line.ends_with(&format!(" {setting}")),
                "under {mode:?} the child started by {v} lost `{setting}`: `{line}`"
            );
        }
    }
}

#[test]
fn preload_survives_exec_with_scrubbed_environment() {
    assert_preload_kept_across_exec(Launch::Preload, &[], None);
}

#[test]
fn launcher_preload_survives_exec_with_scrubbed_environment() {
    assert_preload_kept_across_exec(Launch::Launcher, &[], None);
}

#[test]
fn configuration_survives_exec_with_scrubbed_environment() {
    assert_preload_kept_across_exec(
        Launch::Preload,
        LAB_POLICY,
        Some("SLUICE_OFFLOAD=10.77.0.0/16"),
    );
}

#[test]
fn probe_calls_the_fortified_chk_variants() {
    // The hooks for __read_chk & co. are only exercised if the probe really calls them.
    let out = Command::new("nm")
        .args(["-D", "--undefined-only", CONFORM_BIN])
        .output()
        .expect("run nm (binutils)");
    assert_success("nm", &out);
    let syms = String::from_utf8_lossy(&out.stdout);
    for sym in ["__read_chk", "__recv_chk", "__recvfrom_chk", "__poll_chk"] {
        assert!(
            syms.lines().any(|l| l.split_whitespace().last().is_some_and(|s| s.split('@').next() == Some(sym))),
            "the probe does not reference {sym}; was it built with -O2 -D_FORTIFY_SOURCE=2?\n{syms}"
        );
    }
}

/// Every entry point of the BSD socket surface the design says libsluice.so interposes.
const HOOKED: &[&str] = &[
    "socket",
    "bind",
    "listen",
    "accept",
    "accept4",
    "connect",
    "shutdown",
    "close",
    "read",
    "readv",
    "write",
    "writev",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "fcntl",
    "ioctl",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "dup",
    "dup2",
    "dup3",
    "fork",
    "vfork",
    "execve",
    "execle",
    "execvpe",
    "__read_chk",
    "__recv_chk",
    "__recvfrom_chk",
    "__poll_chk",
];

#[test]
fn preload_exports_every_hook() {
    // A hook that is not exported is silently bypassed: the transcripts would
    // still match, so check the symbol table too.
    let lib = &artefacts().preload;
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("run nm (binutils)");
    assert_success("nm", &out);
    let syms = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = HOOKED
        .iter()
        .copied()
        .filter(|sym| {
            !syms.lines().any(|l| {
                l.split_whitespace()
                    .last()
                    .and_then(|s| s.split('@').next())
                    == Some(*sym)
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} does not export {missing:?}",
        lib.display()
    );
}
