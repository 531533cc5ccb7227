//! Helpers for tests that run real applications in the lab (`tools/sluice-lab`,
//! see docs/lab.md): root and lab checks, exclusive use of the DPDK ports,
//! commands inside a host namespace (pinned, plain or under sluice), background
//! processes that are always killed by PID and reaped, the kernel's UDP
//! counters of a namespace, and sockperf output parsing.
//!
//! These tests need root and namespaces; without them they fail with a message
//! saying so, they never skip.

use crate::{artefacts, command, Launch, Scratch};
use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Sluice hosts, each with p0 on switch sl-sw0.
pub const H1: &str = "sl-h1";
pub const H2: &str = "sl-h2";
/// The kernel-only host: 10.77.1.3 and 10.77.2.3 on its p0.
pub const H3: &str = "sl-h3";

/// Data IPs owned by the stack (never configured in the kernel).
pub const H1_DATA: &str = "10.77.2.1";
pub const H2_DATA: &str = "10.77.2.2";
/// sl-h3's kernel address on the data subnet.
pub const H3_DATA: &str = "10.77.2.3";
/// Kernel (management) IPs on p0.
pub const H1_MGMT: &str = "10.77.1.1";
pub const H2_MGMT: &str = "10.77.1.2";

/// `tools/sluice-lab ARGS` on the shared lab, which must succeed.
pub fn sluice_lab(args: &[&str]) {
    let out = sluice_lab_output(args);
    assert!(
        out.status.success(),
        "sluice-lab {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same where failure cannot be acted on (undoing a fault as a test ends).
pub fn sluice_lab_quietly(args: &[&str]) {
    let _ = sluice_lab_output(args);
}

fn sluice_lab_output(args: &[&str]) -> std::process::Output {
    Command::new(crate::workspace_root().join("tools/sluice-lab"))
        .env_remove("SLUICE_LAB_PREFIX")
        .args(args)
        .output()
        .expect("run tools/sluice-lab")
}

/// The digest and length on the line of `text` that starts with `key` ("sent " or "got ",
/// as `scripts/stream_transfer.py` prints them).
pub fn digest_line(text: &str, key: &str) -> Option<(String, usize)> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut words = line.split_whitespace().skip(1);
    Some((words.next()?.to_string(), words.next()?.parse().ok()?))
}

/// The `ha` topology: p1 on sl-h1 and sl-h2 and the inter-switch link (`sluice-lab up` is
/// idempotent and adds what is missing).
pub fn ensure_ha_lab() {
    ensure_lab();
    let ha = || has_port(H1, "p1") && has_port(H2, "p1") && has_port("sl-sw0", "isl0");
    if !ha() {
        sluice_lab(&["up", "--topology", "ha"]);
    }
    assert!(
        ha(),
        "no p1 ports or no inter-switch link after sluice-lab up"
    );
}

/// The file lock every suite takes around DPDK use of sl-h1/sl-h2 p0.
pub const P0_LOCK: &str = "/run/sluice-lab/dpdk-p0.lock";

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the lab tests need root (network namespaces, AF_PACKET, DPDK): \
         run `sudo -E cargo test -p shim-tests --test lab_udp_apps -- --test-threads=1`"
    );
}

fn has_port(ns: &str, port: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Root, and the lab's hosts with their p0 ports; runs `tools/sluice-lab up`
/// (once per test process) when they are missing.
pub fn ensure_lab() {
    require_root();
    static LAB: Once = Once::new();
    LAB.call_once(|| {
        if [H1, H2, H3].iter().all(|h| has_port(h, "p0")) {
            return;
        }
        let script = crate::workspace_root().join("tools/sluice-lab");
        let status = Command::new(&script).arg("up").status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the lab is not up and `{} up` failed: {status:?}",
            script.display()
        );
        assert!(
            [H1, H2, H3].iter().all(|h| has_port(h, "p0")),
            "sluice-lab up did not create p0 in {H1}, {H2} and {H3}"
        );
    });
}

/// Exclusive use of sl-h1/sl-h2 p0 for DPDK, released on drop: a mutex for
/// the threads of this test binary and `flock` for other test binaries and
/// the benchmark.
pub struct P0Lock {
    _file: fs::File,
    _thread: MutexGuard<'static, ()>,
}

pub fn lock_p0() -> P0Lock {
    static P0: Mutex<()> = Mutex::new(());
    let thread = P0.lock().unwrap_or_else(|e| e.into_inner());
    fs::create_dir_all("/run/sluice-lab").expect("create /run/sluice-lab");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(P0_LOCK)
        .unwrap_or_else(|e| panic!("open {P0_LOCK}: {e}"));
    // SAFETY: flock on an fd we own; blocks until the other holder is done.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {P0_LOCK}: {}",
        std::io::Error::last_os_error()
    );
    P0Lock {
        _file: file,
        _thread: thread,
    }
}

/// How a process in the lab meets the network.
#[derive(Clone, Debug)]
pub enum Stack {
    /// No preload: the kernel's own sockets.
    Kernel,
    /// `LD_PRELOAD=libsluice.so`, `SLUICE_MODE=dpdk`, port p0 with this
    /// `IP/PREFIX`, over the given DPDK backend (`af_packet` or `af_xdp`).
    Dpdk { iface: String, backend: String },
    /// `LD_PRELOAD=libsluice.so`, `SLUICE_MODE=udp` on this kernel `IP/PREFIX` of p0: streams
    /// over kernel UDP.
    KernelUdp { iface: String },
}

impl Stack {
    /// Sluice over DPDK af_packet on p0 with `ip`/24.
    pub fn dpdk(ip: &str) -> Stack {
        Stack::Dpdk {
            iface: format!("p0={ip}/24"),
            backend: "af_packet".to_string(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Stack::Kernel => Vec::new(),
            Stack::Dpdk { iface, backend } => {
                dpdk_port_lib();
                vec![
                    (
                        "LD_PRELOAD".to_string(),
                        artefacts().preload.display().to_string(),
                    ),
                    ("SLUICE_MODE".to_string(), "dpdk".to_string()),
                    ("SLUICE_IFACES".to_string(), iface.clone()),
                    ("SLUICE_DPDK_BACKEND".to_string(), backend.clone()),
                ]
            }
            Stack::KernelUdp { iface } => vec![
                (
                    "LD_PRELOAD".to_string(),
                    artefacts().preload.display().to_string(),
                ),
                ("SLUICE_MODE".to_string(), "udp".to_string()),
                ("SLUICE_IFACES".to_string(), iface.clone()),
            ],
        }
    }
}

/// libsluice_dpdk.so beside libsluice.so (where the preload looks for it),
/// built in release mode once per test process unless `SHIM_TESTS_NO_BUILD`.
pub fn dpdk_port_lib() -> &'static std::path::Path {
    static LIB: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        let lib = artefacts().preload.with_file_name("libsluice_dpdk.so");
        if std::env::var_os("SHIM_TESTS_NO_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            // -j1: two cores, other builds beside the tests.
            let out = Command::new(&cargo)
                .current_dir(crate::workspace_root())
                .args(["build", "--release", "-j1", "-p", "sluice-dpdk"])
                .output()
                .unwrap_or_else(|e| panic!("cannot run `{cargo}` to build libsluice_dpdk.so: {e}"));
            assert!(
                out.status.success(),
                "`cargo build --release -p sluice-dpdk` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            lib.is_file(),
            "{} is missing: run `cargo build --release -p sluice-dpdk`",
            lib.display()
        );
        lib
    })
}

/// `ip netns exec NS [taskset -c CPU] env VARS... program args...`. Every
/// wrapper execs, so the child's PID is the program's. The environment is
/// clean of `LD_PRELOAD` and `SLUICE_*` except what `stack` sets, and the
/// preload applies to the program only, not to the wrappers.
pub fn in_ns(ns: &str, cpu: Option<u32>, stack: &Stack, program: &str, args: &[&str]) -> Command {
    let mut cmd = command(Launch::Plain, "ip");
    cmd.args(["netns", "exec", ns]);
    if let Some(cpu) = cpu {
        cmd.args(["taskset", "-c", &cpu.to_string()]);
    }
    cmd.arg("env");
    for (k, v) in stack.env() {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(program).args(args);
    cmd
}

/// A process started by a lab test: output to files, killed by PID and reaped
/// on drop, pass or fail.
pub struct LabProcess {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: Scratch,
}

impl LabProcess {
    pub fn start(name: &str, mut cmd: Command) -> LabProcess {
        let log = Scratch::new("lab");
        let out = fs::File::create(log.path().join("stdout")).expect("stdout file");
        let err = fs::File::create(log.path().join("stderr")).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        LabProcess {
            name: name.to_string(),
            child: Some(child),
            status: None,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stdout(&self) -> String {
        strip_ansi(&fs::read_to_string(self.log.path().join("stdout")).unwrap_or_default())
    }

    pub fn stderr(&self) -> String {
        strip_ansi(&fs::read_to_string(self.log.path().join("stderr")).unwrap_or_default())
    }

    /// Everything it said, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} ({}) stdout:\n{}\n--- {} stderr:\n{}",
            self.name,
            match self.status {
                Some(st) => format!("exited: {st}"),
                None => "running".to_string(),
            },
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Waits up to `limit` for `what` in its output; fails if it exits or the time runs out.
    pub fn wait_printed(&mut self, what: &str, limit: Duration) {
        let start = Instant::now();
        while !self.stdout().contains(what) {
            self.assert_running();
            assert!(
                start.elapsed() < limit,
                "{} printed no {what:?} within {limit:?}.\n{}",
                self.name,
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        if let Some(child) = self.child.as_mut() {
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.status = Some(st);
                self.child = None;
            }
        }
        self.child.is_some()
    }

    pub fn assert_running(&mut self) {
        if !self.running() {
            panic!("{} exited early.\n{}", self.name, self.logs());
        }
    }

    /// True if a file whose name ends with `lib` is mapped in the process.
    pub fn maps(&self, lib: &str) -> bool {
        fs::read_to_string(format!("/proc/{}/maps", self.pid()))
            .unwrap_or_default()
            .lines()
            .any(|l| l.ends_with(lib))
    }

    /// Waits up to `limit` for it to exit by itself; kills it (and fails) if it does not.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        while self.running() {
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{} did not finish within {limit:?}; killed.\n{}",
                    self.name,
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.status.expect("exited")
    }

    /// SIGINT (sockperf prints its totals then), then SIGKILL after `grace`,
    /// or shortly after one of `printed` appears in its output. Returns true
    /// if it exited by itself.
    pub fn interrupt(&mut self, grace: Duration, printed: &[&str]) -> bool {
        if !self.running() {
            return true;
        }
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGINT) };
        let mut deadline = Instant::now() + grace;
        let mut seen = false;
        while self.running() && Instant::now() < deadline {
            if !seen {
                let text = format!("{}{}", self.stdout(), self.stderr());
                if printed.iter().any(|p| text.contains(p)) {
                    seen = true;
                    deadline = deadline.min(Instant::now() + Duration::from_millis(300));
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        let exited = !self.running();
        self.kill();
        exited
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }
}

impl Drop for LabProcess {
    /// SIGINT first, so that a DPDK port is closed by its exit hook (an af_xdp
    /// port killed outright leaves its XDP program on the interface), then SIGKILL.
    fn drop(&mut self) {
        self.interrupt(Duration::from_secs(2), &[]);
    }
}

/// The numeric `key=value` fields of the lines of `kinds` (e.g. `streams`, `port`) in a live
/// process's sluice-stat snapshot, summed by key (over ports, say).
pub fn stat_counters(pid: u32, kinds: &[&str]) -> HashMap<String, u64> {
    let path = format!("{}/{pid}.stat", sluice_stack_stat_dir());
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((kind, fields)) = line.split_once(' ') else {
            continue;
        };
        if !kinds.contains(&kind) {
            continue;
        }
        for (k, v) in fields.split_whitespace().filter_map(|w| w.split_once('=')) {
            if let Ok(v) = v.parse::<u64>() {
                *out.entry(k.to_string()).or_insert(0) += v;
            }
        }
    }
    out
}

/// Where sluice stacks publish their snapshots.
fn sluice_stack_stat_dir() -> &'static str {
    "/dev/shm/sluice"
}

/// `Tcp:` counters of /proc/net/snmp inside `ns` (ActiveOpens, InSegs, OutSegs, ...).
pub fn tcp_counters(ns: &str) -> HashMap<String, u64> {
    snmp_counters(ns, "Tcp:")
}

/// `Udp:` counters of /proc/net/snmp inside `ns` (InDatagrams, OutDatagrams, ...).
pub fn udp_counters(ns: &str) -> HashMap<String, u64> {
    snmp_counters(ns, "Udp:")
}

/// One table (`Udp:`, `Tcp:`, ...) of /proc/net/snmp inside `ns`.
fn snmp_counters(ns: &str, table: &str) -> HashMap<String, u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .unwrap_or_else(|e| panic!("cannot read /proc/net/snmp in {ns}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(table)).collect();
    assert!(
        rows.len() >= 2,
        "no {table} lines in /proc/net/snmp of {ns}"
    );
    let names = rows[0].split_whitespace().skip(1);
    let values = rows[1].split_whitespace().skip(1);
    names
        .zip(values)
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

/// Kernel UDP datagrams in plus out in `ns` since `before`.
pub fn udp_datagrams_since(ns: &str, before: &HashMap<String, u64>) -> u64 {
    let now = udp_counters(ns);
    let d = |k: &str| now.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
    d("InDatagrams") + d("OutDatagrams")
}

/// Waits until the stack in `proc` answers ping on its data IP `ip` (asked
/// from the kernel host sl-h3, on the same switch): its port is up, it
/// answers ARP, and the socket that started it is bound.
pub fn wait_stack_answers(proc: &mut LabProcess, ip: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        proc.assert_running();
        let ok = Command::new("ip")
            .args(["netns", "exec", H3, "ping", "-c", "1", "-W", "1", "-q", ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stack of {} never answered ping on {ip} within {limit:?} \
             (libsluice_dpdk.so mapped: {}).\n{}",
            proc.name,
            proc.maps("/libsluice_dpdk.so"),
            proc.logs()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until a kernel UDP socket is bound to `ip:port` inside `ns`.
pub fn wait_kernel_udp_bound(proc: &mut LabProcess, ns: &str, ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().expect("IPv4")).collect();
    let local = format!(
        "{:02X}{:02X}{:02X}{:02X}:{port:04X}",
        octets[3], octets[2], octets[1], octets[0]
    );
    loop {
        proc.assert_running();
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", "/proc/net/udp"])
            .output()
            .expect("read /proc/net/udp");
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not bind {ip}:{port} in {ns}.\n{}",
            proc.name,
            proc.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP port for one test (`offset` below 8), different across concurrent test processes.
pub fn lab_port(offset: u16) -> u16 {
    20000 + (std::process::id() % 4000) as u16 * 8 + offset % 8
}

/// Removes ANSI colour sequences (sockperf colours its notes).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key` in `text`, e.g. "Latency is 29.6 usec".
pub fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// A kernel UDP echo on `ip:port` in `ns` (`0.0.0.0` for every address), started and bound;
/// exits after 90 s whatever happens (and is ended on drop).
pub fn kernel_udp_echo(ns: &str, ip: &str, port: u16) -> LabProcess {
    let python = crate::python3().display().to_string();
    let cmd = in_ns(
        ns,
        None,
        &Stack::Kernel,
        &python,
        &["-c", UDP_ECHO, ip, &port.to_string()],
    );
    let mut echo = LabProcess::start(&format!("kernel UDP echo {ns} {ip}:{port}"), cmd);
    wait_kernel_udp_bound(&mut echo, ns, ip, port);
    echo
}

/// The echo's program, for `python3 -c UDP_ECHO ADDRESS PORT`.
const UDP_ECHO: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.5)
end = time.monotonic() + 90
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    s.sendto(data, peer)
"#;
