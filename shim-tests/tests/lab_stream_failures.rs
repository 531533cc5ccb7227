//! Offloaded streams whose peer goes away: a peer process that dies is noticed within a bound
//! (the retransmissions' user timeout), and keepalive (SO_KEEPALIVE, TCP_KEEPIDLE,
//! TCP_KEEPINTVL, TCP_KEEPCNT) finds an idle peer behind a silently dropping switch port.
//!
//! Needs root; brings the lab up when it is missing; holds /run/sluice-lab/dpdk-p0.lock and
//! clears its faults when it ends. Run with
//! `cargo test --release -p shim-tests --test lab_stream_failures -- --test-threads=1`.

use shim_tests::lab::{
    ensure_lab, in_ns, lab_port, lock_p0, sluice_lab, sluice_lab_quietly, LabProcess, Stack, H1,
    H1_DATA, H2, H2_DATA,
};
use shim_tests::python3;
use std::time::Duration;

/// `SERVER ADDRESS PORT`: answers each line it reads with the same line, for one connection.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
s.settimeout(60)
c, _ = s.accept()
while True:
    d = c.recv(4096)
    if not d:
        break
    c.sendall(d)
"#;

/// `CLIENT ADDRESS PORT MODE`: one round trip, "ready", then (MODE=send) keeps sending, or
/// (MODE=idle, with keepalive 1 s / 1 s / 2 probes) waits in recv; prints the error that ends
/// it and how long after "ready" it came.
const CLIENT: &str = r#"
import errno, socket, sys, time
ip, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = socket.create_connection((ip, port), timeout=10)
c.settimeout(None)
if mode == "idle":
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
c.sendall(b"ping\n")
assert c.recv(16) == b"ping\n"
print("ready", flush=True)
time.sleep(1)
start = time.time()
try:
    while True:
        if mode == "send":
            c.sendall(b"x" * 1000)
            time.sleep(0.01)
        else:
            if not c.recv(16):
                print("end of stream after %.1f" % (time.time() - start), flush=True)
                sys.exit(0)
except OSError as e:
    print("error %s after %.1f" % (errno.errorcode.get(e.errno, e.errno), time.time() - start), flush=True)
"#;

fn start_pair(port: u16, mode: &str) -> (LabProcess, LabProcess) {
    let python = python3().display().to_string();
    let port = port.to_string();
    let cmd = in_ns(
        H2,
        Some(1),
        &Stack::dpdk(H2_DATA),
        &python,
        &["-c", SERVER, H2_DATA, &port],
    );
    let mut server = LabProcess::start("stream server", cmd);
    server.wait_printed("listening", Duration::from_secs(30));
    let cmd = in_ns(
        H1,
        Some(0),
        &Stack::dpdk(H1_DATA),
        &python,
        &["-c", CLIENT, H2_DATA, &port, mode],
    );
    let mut client = LabProcess::start(&format!("stream client ({mode})"), cmd);
    client.wait_printed("ready", Duration::from_secs(30));
    (server, client)
}

/// The "error NAME after SECONDS" line of a client that has ended.
fn ending(client: &mut LabProcess, limit: Duration) -> (String, f64) {
    client.wait(limit);
    let out = client.stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("error "))
        .unwrap_or_else(|| panic!("the client saw no error.\n{}", client.logs()));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].to_string(), words[3].parse().unwrap_or(f64::MAX))
}

#[test]
fn a_peer_process_that_dies_is_noticed_within_the_user_timeout() {
    ensure_lab();
    let _p0 = lock_p0();
    let (mut server, mut client) = start_pair(lab_port(0), "send");
    server.kill();
    // The dead process's stack answers nothing: the sender's retransmissions run out.
    let (error, after) = ending(&mut client, Duration::from_secs(60));
    assert_eq!(error, "ETIMEDOUT", "{}", client.logs());
    assert!(after < 40.0, "noticed only after {after} s");
    eprintln!("a dead peer was noticed after {after} s ({error})");
}

/// `sluice-lab fault PORT blackhole` until dropped.
struct Blackhole(&'static str);

impl Blackhole {
    fn on(port: &'static str) -> Blackhole {
        sluice_lab(&["fault", port, "blackhole"]);
        Blackhole(port)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        sluice_lab_quietly(&["fault", self.0, "clear"]);
    }
}

#[test]
fn keepalive_finds_an_idle_peer_behind_a_silent_switch() {
    ensure_lab();
    let _p0 = lock_p0();
    let (_server, mut client) = start_pair(lab_port(1), "idle");
    // Everything the server's host sends is dropped from now on; the client is idle in recv.
    let _silence = Blackhole::on("h2p0");
    let (error, after) = ending(&mut client, Duration::from_secs(30));
    assert_eq!(error, "ETIMEDOUT", "{}", client.logs());
    // Idle 1 s, then 2 probes 1 s apart: about 3 s; bounded generously.
    assert!(after < 10.0, "keepalive took {after} s");
    eprintln!("keepalive: the silent peer was given up after {after} s");
}
