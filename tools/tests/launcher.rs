//! The `sluice` launcher as a user runs it: exit statuses, one-line errors,
//! the environment the application receives, LD_PRELOAD handling, profiles,
//! the installed layout and the `tools/sluice` wrapper.
//!
//! `SLUICE_LIB` points at a placeholder file so that the tests do not depend on
//! libsluice.so being built (the dynamic loader ignores it with a warning on
//! the child's stderr, which these tests do not read).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_sluice");

/// A scratch directory private to one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        // Under target/tmp: the same filesystem as the launcher, for hard links.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sluice-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.0.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Installs the launcher at `to`. A hard link, not a copy: a copy's write
/// descriptor can leak into a child forked by a parallel test, and exec()ing
/// the copy then fails with ETXTBSY.
fn install_launcher(to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::hard_link(LAUNCHER, to).expect("hard-link the launcher (same filesystem as target/)");
}

/// The launcher with a clean slate: no SLUICE_* or LD_PRELOAD inherited from
/// whoever runs the tests, and SLUICE_LIB set to `lib`.
fn launcher(program: &Path, lib: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let is_ours = name.to_str().is_some_and(|n| n.starts_with("SLUICE_"));
        if is_ours || name == "LD_PRELOAD" || name == "CARGO_TARGET_DIR" {
            cmd.env_remove(name);
        }
    }
    cmd.env("SLUICE_LIB", lib);
    cmd
}

/// Held while spawning and while writing an executable file: a descriptor open
/// for writing that leaks into a child forked meanwhile by a parallel test
/// makes exec() of that file fail with ETXTBSY.
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Output {
    let child = {
        let _guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the launcher")
    };
    child.wait_with_output().expect("wait for the launcher")
}

/// Writes an executable file (mode 0755) without racing parallel spawns.
fn write_executable(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    let _guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `sh -c SCRIPT` under the launcher and returns its stdout (must succeed).
fn child_output(scratch: &Scratch, flags: &[&str], env: &[(&str, &str)], script: &str) -> String {
    let lib = scratch.file("lib/libsluice.so", "");
    let mut cmd = launcher(Path::new(LAUNCHER), &lib);
    cmd.arg("run").args(flags).args(["--", "sh", "-c", script]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "launcher failed: {:?}\n{}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts a refusal: status 2, exactly one stderr line `sluice: ...` holding
/// every `needle`, and the command never ran.
fn assert_refused(flags: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let scratch = Scratch::new("refused");
    let lib = scratch.file("lib/libsluice.so", "");
    let mut cmd = launcher(Path::new(LAUNCHER), &lib);
    cmd.args(flags);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "for {flags:?} {env:?}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "one line for {flags:?} {env:?}: {err}"
    );
    assert!(err.starts_with("sluice: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert_eq!(stdout(&out), "", "the command must not run");
}

/// `run FLAGS -- sh -c "echo ran"`: the output shows whether the command ran.
fn run_flags<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["run"];
    all.extend_from_slice(flags);
    all.extend_from_slice(&["--", "sh", "-c", "echo ran"]);
    all
}

#[test]
fn help_goes_to_stdout_and_succeeds() {
    for flag in ["--help", "-h"] {
        let out = run(Command::new(LAUNCHER).arg(flag));
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(text.contains("sluice run [OPTIONS] [--] CMD"), "{text}");
        for option in ["--profile", "--iface", "--mode", "--gateway", "latency"] {
            assert!(text.contains(option), "{option} missing from help");
        }
        assert_eq!(stderr(&out), "");
    }
    let out = run(Command::new(LAUNCHER).args(["run", "--help"]));
    assert!(out.status.success());
    assert!(stdout(&out).contains("usage:"));
}

#[test]
fn version_prints_the_package_version() {
    let out = run(Command::new(LAUNCHER).arg("version"));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("sluice {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flag_values_are_refused() {
    assert_refused(
        &run_flags(&["--iface", "p0=10.77.2.1/33"]),
        &[],
        &[
            "SLUICE_IFACES=\"p0=10.77.2.1/33\"",
            "prefix length 33",
            "--iface",
        ],
    );
    assert_refused(
        &run_flags(&["--mode", "fast"]),
        &[],
        &["SLUICE_MODE=\"fast\"", "udp or dpdk"],
    );
    assert_refused(
        &run_flags(&["--mode", "dpdk"]),
        &[],
        &["SLUICE_MODE=\"dpdk\"", "SLUICE_IFACES"],
    );
    assert_refused(
        &run_flags(&["--iface", "p0=10.77.2.1/24", "--gateway", "10.77.9.1"]),
        &[],
        &["SLUICE_GATEWAY=\"10.77.9.1\"", "no data port subnet"],
    );
    assert_refused(
        &run_flags(&["--iface", "p0=10.77.2.1/24", "--iface", "p0=10.77.3.1/24"]),
        &[],
        &["SLUICE_IFACES=\"p0=10.77.2.1/24,p0=10.77.3.1/24\"", "twice"],
    );
}

#[test]
fn bad_environment_variables_are_refused() {
    assert_refused(
        &run_flags(&[]),
        &[("SLUICE_SPIN_US", "soon")],
        &["SLUICE_SPIN_US=\"soon\""],
    );
    assert_refused(
        &run_flags(&[]),
        &[("SLUICE_SPINUS", "5")],
        &["SLUICE_SPINUS=\"5\"", "unknown variable", "SLUICE_SPIN_US"],
    );
    assert_refused(
        &run_flags(&[]),
        &[("SLUICE_EXCLUDE", ":0")],
        &["SLUICE_EXCLUDE=\":0\"", "port 0"],
    );
    assert_refused(
        &run_flags(&[]),
        &[("SLUICE_LIB", "/nonexistent/libsluice.so")],
        &["SLUICE_LIB=\"/nonexistent/libsluice.so\""],
    );
}

#[test]
fn unknown_profiles_are_refused() {
    assert_refused(
        &run_flags(&["-p", "fast"]),
        &[],
        &["unknown profile \"fast\"", "latency"],
    );
    assert_refused(
        &run_flags(&[]),
        &[("SLUICE_PROFILE", "fast")],
        &["SLUICE_PROFILE=\"fast\"", "unknown profile"],
    );
    assert_refused(
        &run_flags(&["-p", "../etc/passwd"]),
        &[],
        &["\"../etc/passwd\""],
    );
}

#[test]
fn bad_command_lines_are_refused() {
    assert_refused(&[], &[], &["no command given"]);
    assert_refused(&["start", "x"], &[], &["unknown command \"start\""]);
    assert_refused(&["run"], &[], &["run needs a command"]);
    assert_refused(
        &["run", "--turbo", "--", "true"],
        &[],
        &["unknown option \"--turbo\""],
    );
    assert_refused(&["run", "--iface"], &[], &["--iface needs a value"]);
}

#[test]
fn ld_preload_is_kept_and_extended_once() {
    let scratch = Scratch::new("preload");
    let lib = scratch.0.join("lib/libsluice.so");
    let script = "echo \"$LD_PRELOAD\"";

    let out = child_output(&scratch, &[], &[], script);
    assert_eq!(out.trim(), lib.display().to_string());

    let out = child_output(&scratch, &[], &[("LD_PRELOAD", "/opt/other.so")], script);
    assert_eq!(out.trim(), format!("/opt/other.so:{}", lib.display()));

    // Already there (e.g. a launcher started under the launcher): not added twice.
    let already = format!("/opt/a.so {} /opt/b.so", lib.display());
    let out = child_output(&scratch, &[], &[("LD_PRELOAD", &already)], script);
    assert_eq!(out.trim(), already);

    // Nested launchers, as a user would write them.
    let nested = format!("{LAUNCHER} run -- sh -c 'echo \"$LD_PRELOAD\"'");
    let out = child_output(&scratch, &[], &[("LD_PRELOAD", "/opt/other.so")], &nested);
    assert_eq!(out.trim(), format!("/opt/other.so:{}", lib.display()));
}

#[test]
fn profile_values_reach_the_application() {
    let scratch = Scratch::new("profile");
    let script = "echo $SLUICE_PROFILE $SLUICE_SPIN_US";
    assert_eq!(
        child_output(&scratch, &[], &[], script).trim(),
        "balanced 50"
    );
    assert_eq!(
        child_output(&scratch, &["-p", "latency"], &[], script).trim(),
        "latency 1000000"
    );
    assert_eq!(
        child_output(&scratch, &["--profile=throughput"], &[], script).trim(),
        "throughput 200"
    );
    // SLUICE_PROFILE in the environment picks the profile when -p is absent.
    assert_eq!(
        child_output(&scratch, &[], &[("SLUICE_PROFILE", "latency")], script).trim(),
        "latency 1000000"
    );
}

#[test]
fn flags_override_environment_which_overrides_profile() {
    let scratch = Scratch::new("precedence");
    let script = "echo $SLUICE_SPIN_US $SLUICE_MODE $SLUICE_IFACES $SLUICE_GATEWAY";
    let flags = [
        "-p",
        "latency",
        "--mode",
        "dpdk",
        "--iface",
        "p0=10.77.2.1/24",
        "--iface",
        "p1=10.77.3.1/24",
        "--gateway",
        "10.77.3.254",
    ];
    let env = [
        ("SLUICE_SPIN_US", "9"),
        ("SLUICE_MODE", "udp"),
        ("SLUICE_IFACES", "eth9=10.1.1.1/24"),
    ];
    assert_eq!(
        child_output(&scratch, &flags, &env, script).trim(),
        "9 dpdk p0=10.77.2.1/24,p1=10.77.3.1/24 10.77.3.254"
    );
    // -p beats SLUICE_PROFILE from the environment.
    assert_eq!(
        child_output(
            &scratch,
            &["-p", "throughput"],
            &[("SLUICE_PROFILE", "latency")],
            "echo $SLUICE_PROFILE $SLUICE_SPIN_US"
        )
        .trim(),
        "throughput 200"
    );
}

#[test]
fn nested_launcher_applies_its_own_profile() {
    // A shell started with the balanced profile, then `sluice run -p latency` inside it.
    let scratch = Scratch::new("nested");
    let inner =
        format!("{LAUNCHER} run -p latency -- sh -c 'echo $SLUICE_PROFILE $SLUICE_SPIN_US'");
    assert_eq!(
        child_output(&scratch, &[], &[], &inner).trim(),
        "latency 1000000"
    );
    // A value the user set by hand still beats the inner profile.
    assert_eq!(
        child_output(&scratch, &[], &[("SLUICE_SPIN_US", "77")], &inner).trim(),
        "latency 77"
    );
}

#[test]
fn other_variables_pass_through_untouched() {
    let scratch = Scratch::new("passthrough");
    let out = child_output(
        &scratch,
        &[],
        &[("MY_SETTING", "a b:c"), ("SLUICE_EXCLUDE", "")],
        "echo \"$MY_SETTING|${SLUICE_EXCLUDE-unset}|$0|$1\"; exit 0",
    );
    assert_eq!(out.trim(), "a b:c||sh|");
}

#[test]
fn missing_command_exits_127() {
    let scratch = Scratch::new("notfound");
    let lib = scratch.file("lib/libsluice.so", "");
    let out = run(launcher(Path::new(LAUNCHER), &lib).args([
        "run",
        "--",
        "sluice-no-such-command",
        "arg",
    ]));
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out),
        "sluice: sluice-no-such-command: command not found\n"
    );
}

#[test]
fn exit_status_is_the_commands() {
    let scratch = Scratch::new("status");
    let lib = scratch.file("lib/libsluice.so", "");
    for code in [0, 1, 42, 255] {
        let out = run(launcher(Path::new(LAUNCHER), &lib).args([
            "run",
            "sh",
            "-c",
            &format!("exit {code}"),
        ]));
        assert_eq!(out.status.code(), Some(code));
    }
    // exec(), not a child: the command's death by signal is the launcher's.
    use std::os::unix::process::ExitStatusExt;
    let out = run(launcher(Path::new(LAUNCHER), &lib).args(["run", "sh", "-c", "kill -TERM $$"]));
    const SIGTERM: i32 = 15; // Linux
    assert_eq!(out.status.signal(), Some(SIGTERM));
}

#[test]
fn dry_run_prints_instead_of_running() {
    let scratch = Scratch::new("dryrun");
    let lib = scratch.file("lib/libsluice.so", "");
    let out = run(launcher(Path::new(LAUNCHER), &lib)
        .args(["run", "-n", "-p", "latency", "--", "sh", "-c", "echo ran"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("SLUICE_SPIN_US=1000000\n"), "{text}");
    assert!(
        text.contains(&format!("LD_PRELOAD={}\n", lib.display())),
        "{text}"
    );
    assert!(text.ends_with("exec sh -c echo ran\n"), "{text}");
    assert!(!text.contains("\nran\n"));
}

/// `PREFIX/bin/sluice` with `PREFIX/lib/libsluice.so` and `PREFIX/share/sluice/profiles`.
#[test]
fn installed_layout_finds_library_and_profiles() {
    let prefix = Scratch::new("prefix");
    let bin = prefix.0.join("bin/sluice");
    install_launcher(&bin);

    // Without SLUICE_LIB and without PREFIX/lib/libsluice.so: refused.
    let mut cmd = launcher(&bin, Path::new("unused"));
    cmd.env_remove("SLUICE_LIB").args(["run", "true"]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("libsluice.so not found"), "{err}");
    assert!(err.contains("SLUICE_LIB"), "{err}");

    let lib = prefix.file("lib/libsluice.so", "");
    prefix.file(
        "share/sluice/profiles/site.conf",
        "# a site's own profile\nSLUICE_SPIN_US=321\n",
    );
    prefix.file(
        "share/sluice/profiles/broken.conf",
        "SLUICE_HUGEPAGES=maybe\n",
    );
    let mut cmd = launcher(&bin, Path::new("unused"));
    cmd.env_remove("SLUICE_LIB").args([
        "run",
        "-p",
        "site",
        "sh",
        "-c",
        "echo $LD_PRELOAD $SLUICE_SPIN_US",
    ]);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("{} 321", lib.canonicalize().unwrap().display())
    );

    // A bad value inside a profile names the variable, the value and the profile.
    let mut cmd = launcher(&bin, Path::new("unused"));
    cmd.env_remove("SLUICE_LIB")
        .args(["run", "-p", "broken", "sh", "-c", "echo ran"]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SLUICE_HUGEPAGES=\"maybe\""), "{err}");
    assert!(err.contains("profile broken"), "{err}");
    assert_eq!(stdout(&out), "");
}

/// `tools/sluice` runs target/release/sluice, else target/debug/sluice, else explains.
#[test]
fn wrapper_script_runs_the_built_launcher() {
    let tree = Scratch::new("wrapper");
    let script = tree.0.join("tools/sluice");
    let source = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice")).unwrap();
    write_executable(&script, &source);
    let wrapper = |args: &[&str]| {
        let mut cmd = launcher(&script, Path::new("unused"));
        cmd.args(args);
        run(&mut cmd)
    };

    let out = wrapper(&["version"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("sluice: the launcher is not built"),
        "{err}"
    );
    assert!(err.contains("cargo build"), "{err}");

    let debug = tree.0.join("target/debug/sluice");
    install_launcher(&debug);
    let out = wrapper(&["version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("sluice {}\n", env!("CARGO_PKG_VERSION"))
    );
    // Arguments reach the launcher unchanged.
    let lib = tree.file("target/debug/libsluice.so", "");
    let mut cmd = launcher(&script, &lib);
    cmd.args(["run", "--", "sh", "-c", "echo \"$1|$2\"", "sh", "a b", ""]);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a b|\n");

    // A release build is preferred.
    write_executable(
        &tree.0.join("target/release/sluice"),
        "#!/bin/sh\necho release \"$@\"\n",
    );
    let out = wrapper(&["version"]);
    assert_eq!(stdout(&out), "release version\n");
}

/// docs/configuration.md has a section for every variable the configuration accepts.
#[test]
fn every_variable_is_documented() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = fs::read_to_string(&docs).expect("read docs/configuration.md");
    for name in sluice_stack::config::VARIABLES {
        assert!(
            text.contains(&format!("### `{name}`")),
            "docs/configuration.md has no section for {name}"
        );
    }
}
