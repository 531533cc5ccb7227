//! sluice-udp-probe: a tiny UDP endpoint on the sluice stack (configured by
//! the `SLUICE_*` variables), for lab tests against kernel hosts.
//!
//! ```text
//! sluice-udp-probe echo PORT COUNT SECONDS      echo COUNT datagrams back, then exit
//! sluice-udp-probe ping IP PORT COUNT SIZE      COUNT ping-pongs of SIZE bytes; prints latency
//! sluice-udp-probe kernel-ping IP PORT COUNT SIZE   the same over a kernel socket (no stack)
//! sluice-udp-probe kernel-echo IP PORT COUNT SECONDS echo over a kernel socket bound to IP:PORT
//! ```
//!
//! Prints `ready` once the stack is up (echo), and a summary line with the
//! port counters at the end. Exit status 0 only if every datagram went both ways.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_stack::config::Config;
use sluice_stack::engine::Stack;
use sluice_stack::socket::udp::RecvFlags;

fn no_op() {}

fn usage() -> ExitCode {
    eprintln!("usage: sluice-udp-probe echo PORT COUNT SECONDS | ping IP PORT COUNT SIZE | kernel-ping IP PORT COUNT SIZE | kernel-echo IP PORT COUNT SECONDS");
    ExitCode::from(2)
}

/// `ping` arguments: peer, count, size.
fn ping_args(ip: &str, port: &str, count: &str, size: &str) -> Option<(SocketAddrV4, u32, usize)> {
    Some((
        SocketAddrV4::new(ip.parse().ok()?, port.parse().ok()?),
        count.parse().ok()?,
        size.parse().ok()?,
    ))
}

/// `count` exchanges of `size` bytes, each waiting for its own echo (stale
/// echoes of timed-out rounds are skipped); the one-way times (RTT / 2) of
/// the rounds that came back intact.
fn ping_pong(
    count: u32,
    size: usize,
    mut send: impl FnMut(&[u8]) -> bool,
    mut recv: impl FnMut(&mut [u8]) -> Option<usize>,
) -> Vec<u64> {
    let mut buf = vec![0u8; 65536];
    let mut one_way_ns = Vec::new();
    let mut payload = vec![0u8; size.max(4)];
    for seq in 0..count {
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let start = Instant::now();
        if !send(&payload) {
            continue;
        }
        while let Some(n) = recv(&mut buf) {
            if n >= 4 && buf[..4] == payload[..4] {
                if buf[..n] == payload[..] {
                    one_way_ns.push(start.elapsed().as_nanos() as u64 / 2);
                }
                break;
            }
        }
    }
    one_way_ns
}

/// Prints `sent= received= one_way_p50_us= one_way_p99_us=`; true if nothing was lost.
fn summary(count: u32, one_way_ns: &[u64]) -> bool {
    // The first exchanges include ARP resolution: leave them out of the figures.
    let mut steady: Vec<u64> = one_way_ns.iter().skip(10).copied().collect();
    steady.sort_unstable();
    let pct = |p: usize| {
        steady
            .get((steady.len() * p / 100).min(steady.len().saturating_sub(1)))
            .map(|ns| *ns as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "sent={count} received={} one_way_p50_us={:.1} one_way_p99_us={:.1}",
        one_way_ns.len(),
        pct(50),
        pct(99)
    );
    one_way_ns.len() == count as usize
}

/// The same ping-pong over a plain kernel socket, for side-by-side figures.
fn kernel_ping(args: &[&str]) -> ExitCode {
    let Some((peer, count, size)) = (match args {
        [ip, port, count, size] => ping_args(ip, port, count, size),
        _ => None,
    }) else {
        return usage();
    };
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("kernel UDP socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let one_way_ns = ping_pong(
        count,
        size,
        |payload| socket.send_to(payload, peer).is_ok(),
        |buf| socket.recv(buf).ok(),
    );
    if summary(count, &one_way_ns) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// An echo server on a plain kernel socket, the counterpart of `echo`.
fn kernel_echo(args: &[&str]) -> ExitCode {
    let [ip, port, count, seconds] = args else {
        return usage();
    };
    let (Ok(ip), Ok(port), Ok(count), Ok(seconds)) = (
        ip.parse::<Ipv4Addr>(),
        port.parse::<u16>(),
        count.parse::<u32>(),
        seconds.parse::<u64>(),
    ) else {
        return usage();
    };
    let socket = std::net::UdpSocket::bind(SocketAddrV4::new(ip, port)).expect("bind");
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut buf = vec![0u8; 65536];
    let mut echoed = 0;
    while echoed < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            break;
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        if socket.send_to(&buf[..n], from).is_ok() {
            echoed += 1;
        }
    }
    println!("echoed={echoed}");
    if echoed == count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first().map(|(a, r)| (a.as_str(), r)) {
        Some(("kernel-ping", rest)) => {
            return kernel_ping(&rest.iter().map(String::as_str).collect::<Vec<_>>())
        }
        Some(("kernel-echo", rest)) => {
            return kernel_echo(&rest.iter().map(String::as_str).collect::<Vec<_>>())
        }
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-udp-probe: {e}");
            return ExitCode::from(2);
        }
    };
    let stack = match Stack::start(&config, no_op) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-udp-probe: {e}");
            return ExitCode::from(1);
        }
    };
    let socket = match stack.udp_socket() {
        Ok(s) => s,
        Err(errno) => {
            eprintln!("sluice-udp-probe: udp_socket: errno {errno}");
            return ExitCode::from(1);
        }
    };
    let data_ip = config
        .ports
        .first()
        .map(|p| p.addr)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut buf = vec![0u8; 65536];
    let ok = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["echo", port, count, seconds] => {
            let (Ok(port), Ok(count), Ok(seconds)) = (
                port.parse::<u16>(),
                count.parse::<u32>(),
                seconds.parse::<u64>(),
            ) else {
                return usage();
            };
            if let Err(errno) = socket.bind(SocketAddrV4::new(data_ip, port)) {
                eprintln!("sluice-udp-probe: bind: errno {errno}");
                return ExitCode::from(1);
            }
            println!("ready");
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut echoed = 0;
            while echoed < count {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_recv_timeout(Some(left));
                let Ok(got) = socket.recv_from(&mut [&mut buf], RecvFlags::default()) else {
                    break;
                };
                if socket
                    .send_to(&[&buf[..got.copied]], Some(got.from), false)
                    .is_ok()
                {
                    echoed += 1;
                }
            }
            println!("echoed={echoed}");
            echoed == count
        }
        ["ping", ip, port, count, size] => {
            let Some((peer, count, size)) = ping_args(ip, port, count, size) else {
                return usage();
            };
            socket.set_recv_timeout(Some(Duration::from_secs(2)));
            let one_way_ns = ping_pong(
                count,
                size,
                |payload| socket.send_to(&[payload], Some(peer), false).is_ok(),
                |buf| {
                    socket
                        .recv_from(&mut [buf], RecvFlags::default())
                        .ok()
                        .map(|got| got.copied)
                },
            );
            summary(count, &one_way_ns)
        }
        _ => return usage(),
    };
    for (i, port) in stack.counters().ports.iter().enumerate() {
        println!(
            "port{i} rx_frames={} tx_frames={} rx_drops={} tx_drops={} rx_udp={} tx_udp={}",
            port.rx_frames,
            port.tx_frames,
            port.rx_drops,
            port.tx_drops,
            port.rx_udp_datagrams,
            port.tx_udp_datagrams
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
