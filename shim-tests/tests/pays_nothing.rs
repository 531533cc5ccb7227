//! "Pays nothing": a process that never offloads a socket must not map any
//! DPDK library, must not start threads and must not grow noticeably, while
//! libsluice.so itself is loaded (otherwise the check would prove nothing).

use shim_tests::{command, free_port, python3, rss_kib, wait_listening, Launch, Proto, Server};
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

/// System call numbers (x86_64) of the sleeps `sleep` uses.
const SYS_NANOSLEEP: &str = "35";
const SYS_CLOCK_NANOSLEEP: &str = "230";

fn exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The PID of the `sleep` process started as `server` (the launcher may exec
/// it in place or run it as a child), once it is inside its sleep.
fn sleeping_pid(server: &mut Server) -> u32 {
    let sleep_bin = fs::canonicalize("/usr/bin/sleep").expect("coreutils sleep");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.assert_running();
        let root = server.pid();
        for pid in std::iter::once(root).chain(children(root)) {
            let in_sleep = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            let nr = in_sleep.split_whitespace().next().unwrap_or("");
            if exe(pid).as_ref() == Some(&sleep_bin)
                && (nr == SYS_NANOSLEEP || nr == SYS_CLOCK_NANOSLEEP)
            {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "sleep never reached its sleep.\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

struct Footprint {
    maps: String,
    threads: usize,
    rss_kib: u64,
    stderr: String,
}

fn footprint(server: &Server, pid: u32) -> Footprint {
    Footprint {
        stderr: server.stderr(),
        maps: fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps"),
        threads: fs::read_dir(format!("/proc/{pid}/task"))
            .expect("read task dir")
            .count(),
        rss_kib: rss_kib(pid),
    }
}

fn sleep_footprint(launch: Launch) -> Footprint {
    sleep_footprint_with(launch, &[])
}

fn sleep_footprint_with(launch: Launch, vars: &[(&str, &str)]) -> Footprint {
    let mut cmd = command(launch, "/usr/bin/sleep");
    cmd.arg("30").envs(vars.iter().copied());
    let mut server = Server::start(&format!("sleep ({launch:?})"), cmd);
    let pid = sleeping_pid(&mut server);
    footprint(&server, pid)
}

fn mapped_files(maps: &str) -> Vec<&str> {
    let mut v: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn assert_pays_nothing(what: &str, plain: &Footprint, sluiced: &Footprint) {
    // Shown with --nocapture: the measured cost.
    eprintln!(
        "{what}: VmRSS {} KiB (plain {} KiB), threads {} (plain {})",
        sluiced.rss_kib, plain.rss_kib, sluiced.threads, plain.threads
    );
    assert!(
        sluiced.stderr.is_empty(),
        "{what}: unexpected stderr:\n{}",
        sluiced.stderr
    );
    let files = mapped_files(&sluiced.maps);
    assert!(
        files.iter().any(|f| f.ends_with("/libsluice.so")),
        "{what}: libsluice.so is not mapped, so the preload did not load:\n{}",
        files.join("\n")
    );
    let dpdk: Vec<&&str> = files
        .iter()
        .filter(|f| f.contains("librte_") || f.contains("libsluice_dpdk"))
        .collect();
    assert!(
        dpdk.is_empty(),
        "{what}: DPDK is mapped though nothing is offloaded: {dpdk:?}"
    );
    assert_eq!(
        sluiced.threads, plain.threads,
        "{what}: thread count differs from the plain run"
    );
}

fn assert_rss_close(what: &str, plain: &Footprint, sluiced: &Footprint) {
    let grown = sluiced.rss_kib.saturating_sub(plain.rss_kib);
    assert!(
        grown <= 2048,
        "{what}: VmRSS {} KiB against {} KiB plain: {} KiB more, over the 2 MiB allowance",
        sluiced.rss_kib,
        plain.rss_kib,
        grown
    );
}

#[test]
fn sleep_under_preload_pays_nothing() {
    let plain = sleep_footprint(Launch::Plain);
    let pre = sleep_footprint(Launch::Preload);
    assert_pays_nothing("sleep under LD_PRELOAD", &plain, &pre);
    assert_rss_close("sleep under LD_PRELOAD", &plain, &pre);
}

#[test]
fn sleep_under_launcher_pays_nothing() {
    let plain = sleep_footprint(Launch::Plain);
    let launched = sleep_footprint(Launch::Launcher);
    assert_pays_nothing("sleep under the launcher", &plain, &launched);
    assert_rss_close("sleep under the launcher", &plain, &launched);
}

/// A process with a live kernel socket (loopback listener): still no DPDK, no threads.
fn listener_footprint(launch: Launch, vars: &[(&str, &str)]) -> Footprint {
    let port = free_port(Proto::Tcp);
    let mut cmd = command(launch, python3());
    cmd.envs(vars.iter().copied());
    cmd.args([
        "-c",
        &format!(
            "import socket, time\n\
             s = socket.socket()\n\
             s.bind(('127.0.0.1', {port}))\n\
             s.listen()\n\
             c = socket.create_connection(('127.0.0.1', {port}))\n\
             a, _ = s.accept()\n\
             c.sendall(b'x'); assert a.recv(1) == b'x'\n\
             time.sleep(30)\n"
        ),
    ]);
    let mut server = Server::start(&format!("python3 listener ({launch:?})"), cmd);
    wait_listening(&mut server, port, Proto::Tcp, Duration::from_secs(10));
    // Established and echoed once the process sleeps.
    let pid = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sc = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let nr = sc.split_whitespace().next().unwrap_or("");
        // python's time.sleep uses clock_nanosleep (230) or select-like waits (270 pselect6).
        if nr == SYS_CLOCK_NANOSLEEP || nr == SYS_NANOSLEEP || nr == "270" {
            break;
        }
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "python never went to sleep.\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    footprint(&server, pid)
}

#[test]
fn kernel_socket_user_under_preload_pays_nothing() {
    let plain = listener_footprint(Launch::Plain, &[]);
    let pre = listener_footprint(Launch::Preload, &[]);
    assert_pays_nothing(
        "python3 with loopback sockets under LD_PRELOAD",
        &plain,
        &pre,
    );
}

/// DPDK mode with a data port configured, as in the lab: DPDK is loaded at the
/// first offloaded socket, so a process that only talks over loopback (or
/// never opens a socket) must still not map it.
const DPDK_CONFIGURED: &[(&str, &str)] = &[
    ("SLUICE_MODE", "dpdk"),
    ("SLUICE_IFACES", "p0=10.77.2.1/24"),
    ("SLUICE_HUGEPAGES", "off"),
];

#[test]
fn dpdk_configured_but_unused_pays_nothing() {
    let plain = sleep_footprint(Launch::Plain);
    let pre = sleep_footprint_with(Launch::Preload, DPDK_CONFIGURED);
    assert_pays_nothing("sleep, DPDK configured, under LD_PRELOAD", &plain, &pre);
    assert_rss_close("sleep, DPDK configured, under LD_PRELOAD", &plain, &pre);

    let plain = listener_footprint(Launch::Plain, &[]);
    let pre = listener_footprint(Launch::Preload, DPDK_CONFIGURED);
    assert_pays_nothing(
        "python3 with loopback sockets, DPDK configured",
        &plain,
        &pre,
    );
}
