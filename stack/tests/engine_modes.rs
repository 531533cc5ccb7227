//! Starting the stack from a configuration, and what an idle stack costs.
//! (A test binary of its own: the idle measurement needs no other stacks busy
//! in the same process.)

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sluice_stack::config::{Config, Mode};
use sluice_stack::engine::{stack_mac, Stack};
use sluice_stack::iface::InterfaceConfig;
use sluice_stack::link::memory::{Impairment, MemoryLink};
use sluice_stack::link::Link;

fn vars(list: &[(&str, &str)]) -> Config {
    Config::from_vars(list.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

fn no_op() {}

/// Tests here run one at a time: the idle measurement counts helper threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn mode_udp_starts_without_any_setup_and_keeps_datagram_sockets_in_the_kernel() {
    let _serial = serial();
    let config = vars(&[("SLUICE_IFACES", "lo=10.77.2.1/24")]);
    assert_eq!(config.mode, Mode::Udp);
    let stack = Stack::start(&config, no_op).expect("mode udp needs nothing");
    assert_eq!(stack.mode(), Mode::Udp);
    assert_eq!(stack.udp_socket().err(), Some(libc::EOPNOTSUPP));
    assert!(stack.counters().ports.is_empty());
}

#[test]
fn mode_dpdk_without_its_library_fails_with_one_line() {
    let _serial = serial();
    let config = vars(&[
        ("SLUICE_MODE", "dpdk"),
        ("SLUICE_IFACES", "p0=10.77.2.1/24"),
        ("SLUICE_DPDK_LIB", "/nonexistent/libsluice_dpdk.so"),
    ]);
    let err = Stack::start(&config, no_op)
        .err()
        .expect("no library, no stack");
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("/nonexistent/libsluice_dpdk.so"), "{text}");
    assert!(text.contains("p0"), "names the port: {text}");
}

#[test]
fn mode_dpdk_without_ports_fails_with_one_line() {
    let _serial = serial();
    let config = Config {
        mode: Mode::Dpdk,
        ..Config::default()
    };
    let err = Stack::start(&config, no_op)
        .err()
        .expect("no ports, no stack");
    assert!(err.to_string().contains("SLUICE_IFACES"), "{err}");
}

/// CPU time a thread of this process has used, in nanoseconds (schedstat's
/// first field: exact, unlike the 10 ms ticks of /proc/.../stat).
fn thread_cpu_ns(tid: &str) -> u64 {
    let path = format!("/proc/self/task/{tid}/schedstat");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (kernel without CONFIG_SCHEDSTATS?)"));
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn helper_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let tid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim() == "sluice-helper").then_some(tid)
        })
        .collect()
}

#[test]
fn an_idle_stack_uses_little_cpu() {
    let _serial = serial();
    let a_ip = Ipv4Addr::new(10, 77, 2, 1);
    let b_ip = Ipv4Addr::new(10, 77, 2, 2);
    let (a, b, _wire) = MemoryLink::pair(
        stack_mac(a_ip),
        stack_mac(b_ip),
        Impairment::default(),
        Impairment::default(),
    );
    let a_config = InterfaceConfig::new(a.mac(), a_ip, 24);
    let b_config = InterfaceConfig::new(b.mac(), b_ip, 24);
    let spin = Duration::from_micros(50);
    let a = Stack::with_links(vec![(Box::new(a) as _, a_config)], spin, no_op).unwrap();
    let b = Stack::with_links(vec![(Box::new(b) as _, b_config)], spin, no_op).unwrap();
    // Some traffic first, then silence: the helpers must calm down.
    let server = b.udp_socket().unwrap();
    server.bind(SocketAddrV4::new(b_ip, 9000)).unwrap();
    let client = a.udp_socket().unwrap();
    client
        .send_to(&[b"hi"], Some(SocketAddrV4::new(b_ip, 9000)), false)
        .unwrap();
    // Past the helpers' busy and doze periods.
    std::thread::sleep(Duration::from_millis(400));
    let helpers = helper_threads();
    assert_eq!(helpers.len(), 2, "one helper thread per stack");
    let before: Vec<u64> = helpers.iter().map(|t| thread_cpu_ns(t)).collect();
    let window = Duration::from_secs(2);
    std::thread::sleep(window);
    for (tid, start) in helpers.iter().zip(before) {
        let used = (thread_cpu_ns(tid) - start) as f64 / 1e9;
        let share = used / window.as_secs_f64() * 100.0;
        eprintln!("idle helper thread {tid}: {share:.2}% of a core");
        // CPU time of the thread itself, so other load on the machine does not count.
        assert!(
            share < 2.0,
            "idle helper used {share:.1}% of a core (the bound is 2%)"
        );
    }
    drop((a, b));
}

#[test]
fn the_dpdk_library_is_looked_for_next_to_the_object_holding_the_stack() {
    let _serial = serial();
    // Linked into this test executable, the stack looks in its directory
    // (in libsluice.so, it looks next to libsluice.so).
    let lib = sluice_stack::engine::default_dpdk_lib().expect("dladdr finds this executable");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(lib, exe.with_file_name("libsluice_dpdk.so"));
}

static HELPER_STARTED_AS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn record_thread() {
    let name = std::thread::current().name().unwrap_or("").to_string();
    HELPER_STARTED_AS.lock().unwrap().push(name);
}

#[test]
fn on_thread_start_runs_on_the_helper_thread_and_portless_stacks_refuse_sockets() {
    let _serial = serial();
    let stack = Stack::with_links(Vec::new(), Duration::ZERO, record_thread).unwrap();
    let start = std::time::Instant::now();
    while HELPER_STARTED_AS.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "helper never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        *HELPER_STARTED_AS.lock().unwrap(),
        vec!["sluice-helper".to_string()]
    );
    assert_eq!(stack.udp_socket().err(), Some(libc::ENODEV));
}
