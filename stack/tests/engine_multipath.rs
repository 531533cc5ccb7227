//! Two `Stack`s with two data ports each, joined by two in-memory wires (one per subnet, as
//! two independent switches): a stream connection opens a path on each wire, uses both, moves
//! its traffic to the survivor when one wire fails (silently dropping, or cut) and comes back
//! when it recovers, with every byte delivered once and in order.

mod common;

use common::{pattern, wait_until};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_stack::engine::{stack_mac, Stack};
use sluice_stack::iface::InterfaceConfig;
use sluice_stack::link::memory::{Impairment, MemoryLink, MemoryWire};
use sluice_stack::socket::stream::StreamSocket;
use sluice_stack::stream::endpoint::ready;

const A0: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const A1: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
const B0: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const B1: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 2);
/// The failure tests' sending rate, bytes/s: slow enough that each phase lasts long enough
/// for a path to fail and to come back.
const PACED_RATE: f64 = 12e6;

fn no_op() {}

/// Stacks a and b, each with port 0 on wire 0 and port 1 on wire 1.
fn two_port_pair() -> (Arc<Stack>, Arc<Stack>, [MemoryWire; 2]) {
    let (a0, b0, w0) = MemoryLink::pair(
        stack_mac(A0),
        stack_mac(B0),
        Impairment::default(),
        Impairment::default(),
    );
    let (a1, b1, w1) = MemoryLink::pair(
        stack_mac(A1),
        stack_mac(B1),
        Impairment::default(),
        Impairment::default(),
    );
    let spin = Duration::from_micros(50);
    let a = Stack::with_links(
        vec![
            (
                Box::new(a0) as _,
                InterfaceConfig::new(stack_mac(A0), A0, 24),
            ),
            (
                Box::new(a1) as _,
                InterfaceConfig::new(stack_mac(A1), A1, 24),
            ),
        ],
        spin,
        no_op,
    )
    .unwrap();
    let b = Stack::with_links(
        vec![
            (
                Box::new(b0) as _,
                InterfaceConfig::new(stack_mac(B0), B0, 24),
            ),
            (
                Box::new(b1) as _,
                InterfaceConfig::new(stack_mac(B1), B1, 24),
            ),
        ],
        spin,
        no_op,
    )
    .unwrap();
    (a, b, [w0, w1])
}

fn connected(a: &Arc<Stack>, b: &Arc<Stack>, port: u16) -> (Arc<StreamSocket>, Arc<StreamSocket>) {
    let l = b.stream_socket().unwrap();
    l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .unwrap();
    l.listen(16).unwrap();
    let c = a.stream_socket().unwrap();
    c.connect(SocketAddrV4::new(B0, port), false).unwrap();
    let mut accepted = None;
    wait_until("the handshake", &[a, b], || {
        if accepted.is_none() {
            accepted = l.accept().ok();
        }
        accepted.is_some() && c.readiness() & ready::CONNECTED != 0
    });
    (c, accepted.unwrap().socket)
}

/// Frames each port of `stack` sent so far.
fn tx_frames(stack: &Stack) -> [u64; 2] {
    let c = stack.counters();
    [c.ports[0].tx_frames, c.ports[1].tx_frames]
}

fn minus(a: [u64; 2], b: [u64; 2]) -> [u64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

/// What happened during a transfer: frames per port of the sender in each phase, and the
/// longest time the receiver got nothing.
struct Run {
    received: Vec<u8>,
    before: [u64; 2],
    during: [u64; 2],
    after: [u64; 2],
    longest_gap: Duration,
    /// From `recover` to both of the sender's paths active again.
    fail_back: Option<Duration>,
}

/// Sends `data` from `tx` (on `a`) to `rx` (on `b`), at most `rate` bytes/s; once a quarter
/// has arrived, `fail` runs; once half has, `recover` runs.
fn transfer_across(
    a: &Arc<Stack>,
    b: &Arc<Stack>,
    (tx, rx): (&StreamSocket, &StreamSocket),
    data: &[u8],
    rate: f64,
    fail: impl FnOnce(),
    recover: impl FnOnce(),
) -> Run {
    let started = Instant::now();
    let mut recovered_at: Option<Instant> = None;
    let mut fail_back = None;
    let mut fail = Some(fail);
    let mut recover = Some(recover);
    let start_frames = tx_frames(a);
    let mut marks = vec![start_frames];
    let (mut sent, mut closed) = (0, false);
    let mut received = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 65536];
    let mut last_progress = Instant::now();
    let mut longest_gap = Duration::ZERO;
    wait_until("the transfer", &[a, b], || {
        let allowed = ((started.elapsed().as_secs_f64() * rate) as usize).min(data.len());
        if sent < allowed {
            match tx.send(&[&data[sent..allowed]]) {
                Ok(n) => sent += n,
                Err(libc::EAGAIN) => {}
                Err(e) => panic!("send failed: errno {e}"),
            }
        } else if sent == data.len() && !closed {
            tx.shutdown(libc::SHUT_WR).unwrap();
            closed = true;
        }
        loop {
            match rx.recv(&mut [&mut buf], false) {
                Ok(0) => return true,
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    longest_gap = longest_gap.max(last_progress.elapsed());
                    last_progress = Instant::now();
                }
                Err(libc::EAGAIN) => break,
                Err(e) => panic!("recv failed: errno {e}"),
            }
        }
        if received.len() >= data.len() / 4 {
            if let Some(f) = fail.take() {
                marks.push(tx_frames(a));
                f();
            }
        }
        if received.len() >= data.len() / 2 {
            if let Some(r) = recover.take() {
                marks.push(tx_frames(a));
                r();
                recovered_at = Some(Instant::now());
            }
        }
        if let (Some(at), None) = (recovered_at, fail_back) {
            let report = a.describe_streams();
            if report.matches("state=active").count() == 2 {
                fail_back = Some(at.elapsed());
            }
        }
        false
    });
    marks.push(tx_frames(a));
    Run {
        received,
        before: minus(marks[1], marks[0]),
        during: minus(marks[2], marks[1]),
        after: minus(marks[3], marks[2]),
        longest_gap,
        fail_back,
    }
}

/// Wire 0 fails in the middle of a transfer and recovers before its end.
fn survives(fail: impl Fn(&MemoryWire), recover: impl Fn(&MemoryWire), what: &str) {
    let (a, b, wires) = two_port_pair();
    let (c, s) = connected(&a, &b, 7101);
    let data = pattern(18 << 20, 3);
    let run = transfer_across(
        &a,
        &b,
        (&c, &s),
        &data,
        PACED_RATE,
        || fail(&wires[0]),
        || recover(&wires[0]),
    );
    println!(
        "{what}: sender frames per port before {:?}, during {:?}, after {:?}; longest stall \
         {:.1} ms; both paths active again {:.1} ms after the recovery",
        run.before,
        run.during,
        run.after,
        run.longest_gap.as_secs_f64() * 1e3,
        run.fail_back.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
    );
    assert!(run.received == data, "every byte once, in order ({what})");
    assert!(run.fail_back.is_some(), "{what}: path 0 came back");
    // Both ports carried data before and after; during the failure port 0 sent only a few
    // probes (data frames went over port 1).
    for (phase, frames) in [("before", run.before), ("after", run.after)] {
        assert!(
            frames[0] > 300 && frames[1] > 300,
            "{what}: both ports carry data {phase} the failure: {frames:?}"
        );
    }
    assert!(
        run.during[1] > 1000 && run.during[0] < run.during[1] / 20,
        "{what}: port 1 carries the traffic during the failure: {:?}",
        run.during
    );
    c.close(false);
    s.close(false);
}

#[test]
fn a_connection_opens_a_path_per_subnet_and_uses_both() {
    let (a, b, _wires) = two_port_pair();
    let (c, s) = connected(&a, &b, 7100);
    let data = pattern(8 << 20, 1);
    let run = transfer_across(&a, &b, (&c, &s), &data, f64::INFINITY, || {}, || {});
    assert!(run.received == data, "every byte once, in order");
    let total = minus(tx_frames(&a), [0, 0]);
    println!("frames sent per port: {total:?}");
    assert!(
        total[0] > 1000 && total[1] > 1000,
        "both ports carried the transfer: {total:?}"
    );
    let report = a.describe_streams();
    assert!(
        report.contains("paths_opened=1"),
        "sluice-stat shows the second path:\n{report}"
    );
    assert_eq!(
        report.matches("state=active").count(),
        2,
        "both paths are active:\n{report}"
    );
    // The other stack sees both paths too, on its own addresses.
    let report = b.describe_streams();
    assert!(
        report.contains("local=10.77.3.2 remote=10.77.3.1 state=active"),
        "{report}"
    );
    c.close(false);
    s.close(false);
}

#[test]
fn a_silently_dropping_wire_moves_traffic_and_it_comes_back() {
    let drop_all = Impairment {
        drop_per_mille: 1000,
        ..Impairment::default()
    };
    survives(
        |w| w.set_impairment(drop_all, drop_all),
        |w| w.set_impairment(Impairment::default(), Impairment::default()),
        "silent drop",
    );
}

#[test]
fn a_cut_wire_moves_traffic_and_it_comes_back() {
    survives(|w| w.set_cut(true), |w| w.set_cut(false), "cut wire");
}
