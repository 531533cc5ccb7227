//! Helpers shared by the integration tests in `tests/`: where the built
//! artefacts are, how to start a program plainly, under `LD_PRELOAD` or under
//! the launcher, bounded runs, and servers that are always killed.

pub mod lab;

use std::collections::HashMap;
use std::env;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The C probe that prints the conformance transcript (built by build.rs).
pub const CONFORM_BIN: &str = env!("SHIM_CONFORM_BIN");
/// The multi-threaded fd churn program (built by build.rs).
pub const STRESS_BIN: &str = env!("SHIM_STRESS_BIN");
/// The UDP semantics probe run against a remote echo in the lab (c/udp_probe.c).
pub const UDP_PROBE_BIN: &str = env!("SHIM_UDP_PROBE_BIN");
/// A deliberately wrong interposer, proving the conformance harness can fail (built by build.rs).
pub const CANARY_SO: &str = env!("SHIM_CANARY_SO");

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shim-tests sits inside the workspace")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR` (relative to the workspace root if relative) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The release artefacts the tests run.
pub struct Artefacts {
    pub preload: PathBuf,
    pub launcher: PathBuf,
}

/// Builds (or confirms up to date) libsluice.so and the launcher in release
/// mode, once per test process, so that a test never runs stale hooks.
/// With `SHIM_TESTS_NO_BUILD=1` the existing artefacts are used as they are.
pub fn artefacts() -> &'static Artefacts {
    static BUILT: OnceLock<Artefacts> = OnceLock::new();
    BUILT.get_or_init(|| {
        if env::var_os("SHIM_TESTS_NO_BUILD").is_none() {
            build_release();
        }
        let release = target_dir().join("release");
        let a = Artefacts {
            preload: release.join("libsluice.so"),
            launcher: release.join("sluice"),
        };
        for p in [&a.preload, &a.launcher] {
            assert!(
                p.is_file(),
                "{} is missing: run `cargo build --release -p sluice-preload -p sluice-tools`",
                p.display()
            );
        }
        a
    })
}

fn build_release() {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // -j1: the machine has two cores and other builds run beside the tests.
    let out = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-j1",
            "-p",
            "sluice-preload",
            "-p",
            "sluice-tools",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cargo}` to build libsluice.so: {e}"));
    assert!(
        out.status.success(),
        "`cargo build --release -p sluice-preload -p sluice-tools` failed; the tests need \
             libsluice.so and the launcher:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a program under test is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Straight, no preload.
    Plain,
    /// `LD_PRELOAD=<target>/release/libsluice.so program`.
    Preload,
    /// `<target>/release/sluice run -- program`.
    Launcher,
}

/// A command for `program args...` started the given way, with a clean
/// environment as far as sluice is concerned: no inherited `LD_PRELOAD` and no
/// `SLUICE_*` variables, so nothing is offloaded unless the test says so.
pub fn command(launch: Launch, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = match launch {
        Launch::Plain | Launch::Preload => Command::new(program),
        Launch::Launcher => {
            let mut c = Command::new(&artefacts().launcher);
            c.arg("run").arg("--").arg(program);
            c
        }
    };
    cmd.env_remove("LD_PRELOAD");
    for (k, _) in env::vars_os() {
        if k.to_string_lossy().starts_with("SLUICE_") {
            cmd.env_remove(k);
        }
    }
    if launch == Launch::Preload {
        cmd.env("LD_PRELOAD", &artefacts().preload);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, killing it and failing the test if it
/// outlives `limit`. Output is collected in full.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    // Drain both pipes concurrently so a chatty child cannot block on a full pipe.
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(&mut child, limit);
    let stdout = t_out.join().expect("stdout reader");
    let stderr = t_err.join().expect("stderr reader");
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{what} did not finish within {limit:?}; killed.\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Waits for `child` up to `limit`; on timeout kills it (by PID), reaps it and returns None.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Panics unless `output` is a success, showing everything the program said.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}).\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = env::temp_dir().join(format!(
            "shim-tests-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A background server started by a test. Dropping it kills the process by
/// PID and reaps it, so no server outlives its test, pass or fail.
pub struct Server {
    name: String,
    child: Option<Child>,
    log: Scratch,
}

impl Server {
    /// Starts `cmd` in the background; stdout and stderr go to files shown by [`Server::logs`].
    pub fn start(name: &str, mut cmd: Command) -> Server {
        let log = Scratch::new("server");
        let out = fs::File::create(log.path().join("stdout")).expect("server stdout file");
        let err = fs::File::create(log.path().join("stderr")).expect("server stderr file");
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Server {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.log.path().join("stderr")).unwrap_or_default()
    }

    /// What the server printed so far, for failure messages.
    pub fn logs(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.log.path().join(f)).unwrap_or_default();
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            read("stdout"),
            self.name,
            read("stderr")
        )
    }

    /// Panics (with the logs) if the server has already exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("server running");
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!("{} exited early ({st}).\n{}", self.name, self.logs());
        }
    }

    /// Panics unless libsluice.so is mapped in the server: proves the run
    /// really was under the preload (ld.so only warns when it cannot load it).
    pub fn assert_preloaded(&mut self) {
        self.assert_running();
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap_or_default();
        assert!(
            maps.lines().any(|l| l.ends_with("/libsluice.so")),
            "{} runs without libsluice.so mapped.\n{}",
            self.name,
            self.logs()
        );
    }

    /// Waits up to `limit` for the server to exit by itself (e.g. `iperf3 -s -1`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("server running");
        let st = wait_bounded(child, limit);
        if st.is_some() {
            self.child = None;
        }
        st
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A loopback port the kernel just handed out and that is free again.
pub fn free_port(proto: Proto) -> u16 {
    match proto {
        Proto::Tcp => TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
        Proto::Udp => UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()),
    }
    .expect("bind a loopback port")
    .port()
}

/// True if some socket listens on (TCP) or is bound to (UDP) `port` on
/// 127.0.0.1 or any address, per /proc/net. Probing without connecting keeps
/// one-shot servers (iperf3 -1) untouched.
pub fn is_listening(port: u16, proto: Proto) -> bool {
    let (file, state) = match proto {
        Proto::Tcp => ("/proc/net/tcp", "0A"),
        Proto::Udp => ("/proc/net/udp", "07"),
    };
    let table = fs::read_to_string(file).unwrap_or_default();
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && wanted.iter().any(|w| w == f[1]) && f[3] == state
    })
}

/// Waits until `server` listens on `port`, failing with its logs otherwise.
pub fn wait_listening(server: &mut Server, port: u16, proto: Proto, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !is_listening(port, proto) {
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "{:?} port {port} not open within {limit:?}.\n{}",
            proto,
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The path of an installed tool, or a failure naming the Debian package.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not installed: apt-get install {package}"))
}

/// Debian's python3 (not a pyenv shim), so the tested interpreter is the packaged one.
pub fn python3() -> PathBuf {
    let p = PathBuf::from("/usr/bin/python3");
    assert!(
        p.is_file(),
        "/usr/bin/python3 is missing: apt-get install python3"
    );
    p
}

pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Parses `/proc/PID/status` into key -> value.
pub fn proc_status(pid: u32) -> HashMap<String, String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// `VmRSS` of a live process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let st = proc_status(pid);
    let v = st
        .get("VmRSS")
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"));
    v.trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS is a number of kB")
}

/// Shows two texts side by side as `diff -u` would, for failure messages.
pub fn unified_diff(a_name: &str, a: &str, b_name: &str, b: &str) -> String {
    let dir = Scratch::new("diff");
    let (pa, pb) = (dir.path().join(a_name), dir.path().join(b_name));
    fs::write(&pa, a).expect("write diff input");
    fs::write(&pb, b).expect("write diff input");
    match Command::new("diff").arg("-u").arg(&pa).arg(&pb).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => format!("--- {a_name}\n{a}\n+++ {b_name}\n{b}"),
    }
}
