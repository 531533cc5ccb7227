//! sluice-dpdk-frames: exchanges real Ethernet frames with a peer and checks
//! every byte. Used by the lab tests of sluice-dpdk (tests/frames.rs).
//!
//! Both ends send `--count` data frames of distinct lengths and contents
//! (ethertype 0x88b5, local experimental, between made-up MACs) and expect
//! exactly `--count` from the other, each compared byte for byte with what
//! the peer must have sent. An end is one of:
//!   dpdk  a `sluice_dpdk::Port` (af_packet or af_xdp vdev on --iface)
//!   link  a `DpdkLink`, i.e. libsluice_dpdk.so loaded with dlopen (--lib)
//!   raw   a kernel AF_PACKET socket on --iface (the reference)
//! Small hello frames carry "I hear you" and "frames received so far", so
//! nobody sends before its peer listens and at most WINDOW frames are in
//! flight. Bounded by --count and --timeout-ms.
//!
//! --bad-device NAME first tries to open NAME and prints why it failed;
//! --reopen opens and closes the port once before the real open; --leak
//! never closes the port, leaving it to the exit hook; --watch-link sends
//! nothing: it prints `link up=...` now and at the next two carrier changes
//! (or until --timeout-ms); --exit-while-polling (dpdk side) calls exit()
//! while another thread polls the port, as an application may.
//! --second-port NAME (dpdk side) opens a second port while the first is
//! open, checks both, and closes it again before the exchange.
//! --pingpong echo|ping measures latency instead (not a test): `echo`
//! returns each 64-byte frame, `ping` sends --count of them one at a time
//! and prints the one-way latency (half the round trip) percentiles.
//!
//! Exit status: 0 all frames checked; 1 wrong, missing or extra frames, or
//! timeout; 2 the port could not be opened (the reason on stderr).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_dpdk::{Backend, Hugepages, MacAddr, Port, PortConfig, PortCounters};
use sluice_stack::link::dpdk::DpdkLink;
use sluice_stack::link::Link;

const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 4] = b"SLDF";
const HELLO: u8 = 1;
const DATA: u8 = 2;
/// Ethernet header, then magic, kind, sender, flags, pad, seq, received.
const HEADER: usize = 14 + 4 + 4 + 4 + 4;
const MIN_FRAME: usize = 64;
const MAX_FRAME: usize = 1514;
const WINDOW: u32 = 128;
const HELLO_EVERY: Duration = Duration::from_millis(1);
const LINGER: Duration = Duration::from_millis(100);

struct Args {
    side: String,
    iface: String,
    backend: Backend,
    hugepages: Hugepages,
    lib: Option<PathBuf>,
    mac: MacAddr,
    peer_mac: MacAddr,
    id: u8,
    peer_id: u8,
    count: u32,
    timeout: Duration,
    bad_device: Option<String>,
    leak: bool,
    reopen: bool,
    watch_link: bool,
    exit_while_polling: bool,
    /// Ping-pong latency instead of the exchange: `ping` or `echo`.
    pingpong: Option<String>,
    /// Open a second port on this netdev while the first is open.
    second_port: Option<String>,
}

fn usage() -> String {
    "usage: sluice-dpdk-frames dpdk|link|raw --iface NAME --mac MAC --peer-mac MAC --id N --peer-id N \
     [--count N] [--timeout-ms T] [--backend af_packet|af_xdp] [--hugepages auto|on|off] [--lib PATH] \
     [--bad-device NAME] [--leak] [--reopen] [--watch-link] [--exit-while-polling] [--pingpong ping|echo] [--second-port NAME]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let side = it.next().ok_or_else(usage)?;
    if !["dpdk", "link", "raw"].contains(&side.as_str()) {
        return Err(format!("unknown side {side:?}\n{}", usage()));
    }
    let mut a = Args {
        side,
        iface: String::new(),
        backend: Backend::AfPacket,
        hugepages: Hugepages::Auto,
        lib: None,
        mac: MacAddr::default(),
        peer_mac: MacAddr::default(),
        id: 0,
        peer_id: 0,
        count: 1000,
        timeout: Duration::from_secs(20),
        bad_device: None,
        leak: false,
        reopen: false,
        watch_link: false,
        exit_while_polling: false,
        pingpong: None,
        second_port: None,
    };
    while let Some(flag) = it.next() {
        if flag == "--exit-while-polling" {
            a.exit_while_polling = true;
            continue;
        }
        if ["--leak", "--reopen", "--watch-link"].contains(&flag.as_str()) {
            a.leak |= flag == "--leak";
            a.reopen |= flag == "--reopen";
            a.watch_link |= flag == "--watch-link";
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--iface" => a.iface = value,
            "--backend" => {
                a.backend = match value.as_str() {
                    "af_packet" => Backend::AfPacket,
                    "af_xdp" => Backend::AfXdp,
                    _ => return Err(format!("--backend: {value:?} is not af_packet or af_xdp")),
                }
            }
            "--hugepages" => {
                a.hugepages = match value.as_str() {
                    "auto" => Hugepages::Auto,
                    "on" => Hugepages::On,
                    "off" => Hugepages::Off,
                    _ => return Err(format!("--hugepages: {value:?} is not auto, on or off")),
                }
            }
            "--lib" => a.lib = Some(value.into()),
            "--mac" => a.mac = value.parse()?,
            "--peer-mac" => a.peer_mac = value.parse()?,
            "--id" => a.id = num(&value)? as u8,
            "--peer-id" => a.peer_id = num(&value)? as u8,
            "--count" => a.count = num(&value)? as u32,
            "--timeout-ms" => a.timeout = Duration::from_millis(num(&value)?),
            "--bad-device" => a.bad_device = Some(value),
            "--second-port" => a.second_port = Some(value),
            "--pingpong" if value == "ping" || value == "echo" => a.pingpong = Some(value),
            _ => return Err(format!("unknown option {flag}\n{}", usage())),
        }
    }
    if a.iface.is_empty() {
        return Err("--iface is required".into());
    }
    Ok(a)
}

/// One end of the exchange.
trait End {
    /// Whether the frame was taken (false: transmit ring full).
    fn send(&mut self, frame: &[u8]) -> Result<bool, String>;
    fn recv(&mut self, on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, String>;
    /// Sends frames from the front of `frames`; returns how many were taken.
    fn send_many(&mut self, frames: &[Vec<u8>]) -> Result<usize, String> {
        for (i, f) in frames.iter().enumerate() {
            if !self.send(f)? {
                return Ok(i);
            }
        }
        Ok(frames.len())
    }
    /// Carrier up?, and the MAC the end owns (None for the kernel socket).
    fn status(&mut self) -> Result<(bool, Option<MacAddr>), String>;
    /// The port's counters (None for the kernel socket).
    fn counters(&self) -> Option<PortCounters> {
        None
    }
    fn close(self: Box<Self>, leak: bool);
}

/// The Rust API end uses the zero-copy calls for data (frames built in and
/// read from mbufs); the copying `send`/`recv` are what the C ABI uses.
impl End for Port {
    fn send(&mut self, frame: &[u8]) -> Result<bool, String> {
        Port::send(self, frame).map_err(|e| e.to_string())
    }
    fn send_many(&mut self, frames: &[Vec<u8>]) -> Result<usize, String> {
        let mut batch = Vec::with_capacity(frames.len());
        for f in frames {
            let Some(mut mbuf) = self.alloc() else { break };
            mbuf.append(f.len())
                .ok_or("frame does not fit an mbuf")?
                .copy_from_slice(f);
            batch.push(mbuf);
        }
        // Unsent mbufs go back to the pool when `batch` drops.
        Ok(self.tx_burst(&mut batch))
    }
    fn recv(&mut self, on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, String> {
        let mut frames = Vec::with_capacity(sluice_dpdk::BURST);
        let n = self.rx_burst(&mut frames, sluice_dpdk::BURST);
        for mbuf in &frames {
            on_frame(mbuf.data());
        }
        Ok(n)
    }
    fn status(&mut self) -> Result<(bool, Option<MacAddr>), String> {
        let link = self.link_status().map_err(|e| e.to_string())?;
        Ok((link.up, Some(self.mac())))
    }
    fn counters(&self) -> Option<PortCounters> {
        Some(Port::counters(self))
    }
    fn close(self: Box<Self>, leak: bool) {
        if leak {
            // Leave it to the exit hook, as an application that never closes would.
            std::mem::forget(self);
        } else {
            Port::close(*self);
        }
    }
}

impl End for DpdkLink {
    fn counters(&self) -> Option<PortCounters> {
        Some(DpdkLink::counters(self))
    }
    fn send(&mut self, frame: &[u8]) -> Result<bool, String> {
        self.send_frame(frame).map_err(|e| e.to_string())
    }
    fn recv(&mut self, on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, String> {
        self.recv_frames(64, on_frame).map_err(|e| e.to_string())
    }
    fn status(&mut self) -> Result<(bool, Option<MacAddr>), String> {
        Ok((
            Link::status(self).map_err(|e| e.to_string())?.up,
            Some(Link::mac(self)),
        ))
    }
    fn close(self: Box<Self>, leak: bool) {
        if leak {
            std::mem::forget(self);
        }
    }
}

/// A kernel AF_PACKET socket bound to one interface and our ethertype.
struct RawSocket {
    fd: i32,
}

impl RawSocket {
    fn open(iface: &str) -> Result<Self, String> {
        let name = std::ffi::CString::new(iface).map_err(|_| "bad interface name".to_string())?;
        // SAFETY: NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(format!(
                "no network interface {iface:?} in this network namespace"
            ));
        }
        let proto = ETHERTYPE.to_be() as i32;
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto,
            )
        };
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {} (root needed)",
                std::io::Error::last_os_error()
            ));
        }
        let sock = RawSocket { fd };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETHERTYPE.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(format!(
                "bind to {iface}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // Frames for made-up MACs: a real NIC would filter them without this.
        // SAFETY: packet_mreq is plain data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        let big: i32 = 8 << 20;
        // SAFETY: valid option values of the sizes passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const i32).cast(),
                4,
            );
        }
        Ok(sock)
    }
}

impl End for RawSocket {
    fn send(&mut self, frame: &[u8]) -> Result<bool, String> {
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => Ok(false),
                _ => Err(format!("send: {e}")),
            };
        }
        Ok(true)
    }

    fn recv(&mut self, on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, String> {
        let mut buf = [0u8; 2048];
        let mut n_frames = 0;
        for _ in 0..64 {
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: `buf` and `from` are writable for the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(n_frames),
                    _ => Err(format!("recv: {e}")),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // someone else's transmission on this host
            }
            on_frame(&buf[..n as usize]);
            n_frames += 1;
        }
        Ok(n_frames)
    }

    fn status(&mut self) -> Result<(bool, Option<MacAddr>), String> {
        Ok((true, None))
    }

    fn close(self: Box<Self>, _leak: bool) {}
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn frame_len(seq: u32) -> usize {
    MIN_FRAME + (seq as usize * 97) % (MAX_FRAME - MIN_FRAME + 1)
}

/// The fixed part of every frame of the exchange.
struct Header {
    dst: MacAddr,
    src: MacAddr,
    kind: u8,
    sender: u8,
    /// Bit 0: "I hear you".
    flags: u8,
    seq: u32,
    /// Data frames received so far from the peer.
    received: u32,
}

impl Header {
    fn write(&self, buf: &mut [u8]) {
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        buf[14..18].copy_from_slice(MAGIC);
        buf[18] = self.kind;
        buf[19] = self.sender;
        buf[20] = self.flags;
        buf[21] = 0;
        buf[22..26].copy_from_slice(&self.seq.to_be_bytes());
        buf[26..30].copy_from_slice(&self.received.to_be_bytes());
    }
}

/// Data frame `seq` from `sender`: its length and every payload byte depend
/// on both, so a frame from another sequence number or sender never matches.
fn data_frame(dst: MacAddr, src: MacAddr, sender: u8, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; frame_len(seq)];
    Header {
        dst,
        src,
        kind: DATA,
        sender,
        flags: 0,
        seq,
        received: 0,
    }
    .write(&mut f);
    for (i, b) in f.iter_mut().enumerate().skip(HEADER) {
        *b = (seq.wrapping_mul(31) as usize + i * 7 + sender as usize * 101) as u8;
    }
    f
}

#[derive(Default)]
struct Progress {
    next_seq: u32,
    received: HashSet<u32>,
    peer_alive: bool,
    peer_hears_us: bool,
    peer_received: u32,
    bad: Vec<String>,
    foreign: u64,
}

/// Runs the exchange; the error (timeout or I/O) comes with what was seen.
fn exchange(end: &mut dyn End, a: &Args) -> (Progress, Option<String>) {
    let mut p = Progress::default();
    let err = run(end, a, &mut p).err();
    (p, err)
}

fn run(end: &mut dyn End, a: &Args, p: &mut Progress) -> Result<(), String> {
    let start = Instant::now();
    let mut next_hello = start;
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now - start > a.timeout {
            return Err(format!(
                "timeout after {:?}: sent {}/{}, received {}/{}, peer received {}, peer seen {}, peer hears us {}",
                a.timeout,
                p.next_seq,
                a.count,
                p.received.len(),
                a.count,
                p.peer_received,
                p.peer_alive,
                p.peer_hears_us
            ));
        }
        let mut activity = end.recv(&mut |frame| on_frame(frame, a, p))? > 0;
        if now >= next_hello {
            let mut hello = vec![0u8; MIN_FRAME];
            Header {
                dst: a.peer_mac,
                src: a.mac,
                kind: HELLO,
                sender: a.id,
                flags: p.peer_alive as u8,
                seq: 0,
                received: p.received.len() as u32,
            }
            .write(&mut hello);
            end.send(&hello)?;
            next_hello = now + HELLO_EVERY;
        }
        if p.peer_hears_us {
            let until = a.count.min(p.peer_received + WINDOW);
            let batch: Vec<Vec<u8>> = (p.next_seq..until.max(p.next_seq))
                .take(32)
                .map(|seq| data_frame(a.peer_mac, a.mac, a.id, seq))
                .collect();
            let sent = end.send_many(&batch)?;
            p.next_seq += sent as u32;
            activity |= sent > 0;
        }
        let complete = p.next_seq == a.count
            && p.received.len() as u32 == a.count
            && p.peer_received == a.count;
        match done_at {
            // Keep saying hello a little, so the peer learns we got everything.
            Some(t) if now - t > LINGER => return Ok(()),
            None if complete => done_at = Some(now),
            _ => {}
        }
        if !activity {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn on_frame(frame: &[u8], a: &Args, p: &mut Progress) {
    let ours = frame.len() >= HEADER
        && frame[0..6] == a.mac.0
        && frame[6..12] == a.peer_mac.0
        && frame[12..14] == ETHERTYPE.to_be_bytes()
        && &frame[14..18] == MAGIC;
    if !ours {
        p.foreign += 1;
        return;
    }
    let sender = frame[19];
    let seq = u32::from_be_bytes(frame[22..26].try_into().unwrap());
    if sender != a.peer_id {
        p.bad.push(format!(
            "frame from sender {sender}, expected {}",
            a.peer_id
        ));
        return;
    }
    p.peer_alive = true;
    match frame[18] {
        HELLO => {
            p.peer_hears_us |= frame[20] & 1 != 0;
            let received = u32::from_be_bytes(frame[26..30].try_into().unwrap());
            p.peer_received = p.peer_received.max(received);
        }
        DATA => {
            p.peer_hears_us = true;
            if seq >= a.count {
                p.bad
                    .push(format!("data frame seq {seq} beyond count {}", a.count));
            } else if !p.received.insert(seq) {
                p.bad.push(format!("duplicate data frame seq {seq}"));
            } else {
                let want = data_frame(a.mac, a.peer_mac, a.peer_id, seq);
                if frame != want.as_slice() {
                    let first = frame.iter().zip(&want).position(|(x, y)| x != y);
                    p.bad.push(format!(
                        "data frame seq {seq}: {} bytes, expected {}; first difference at {first:?}",
                        frame.len(),
                        want.len()
                    ));
                }
            }
        }
        kind => p.bad.push(format!("unknown frame kind {kind}")),
    }
}

/// Opens a port, polls it from another thread and exits the process under
/// that thread: the exit hook must neither crash nor hang.
fn exit_while_polling(a: &Args) -> ExitCode {
    let config = PortConfig {
        device: a.iface.clone(),
        backend: a.backend,
        hugepages: a.hugepages,
        extra_eal_args: Vec::new(),
        mac: Some(a.mac),
    };
    let port = match Port::open(&config) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("sluice-dpdk-frames: {e}");
            return ExitCode::from(2);
        }
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut polls = 0u64;
        loop {
            port.recv(64, &mut |_| {});
            let _ = port.link_status();
            polls += 1;
            if polls == 1000 {
                let _ = ready_tx.send(());
            }
        }
    });
    let _ = ready_rx.recv_timeout(a.timeout);
    println!("exiting while polling");
    std::process::exit(0)
}

/// This thread's allowed CPUs, as the kernel lists them.
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// One 64-byte frame in flight at a time, busy-polling both ways.
fn pingpong(end: &mut dyn End, a: &Args, ping: bool) -> ExitCode {
    const WARMUP: u32 = 1000;
    let start = Instant::now();
    let mut frame = vec![0u8; MIN_FRAME];
    let mut samples = Vec::with_capacity(a.count as usize);
    let mut seq = 0u32;
    let mut got: Option<u32> = None;
    let mut sent_at = Instant::now();
    let mut waiting = false;
    while start.elapsed() < a.timeout {
        if ping && !waiting {
            if seq == a.count + WARMUP {
                break;
            }
            Header {
                dst: a.peer_mac,
                src: a.mac,
                kind: DATA,
                sender: a.id,
                flags: 0,
                seq,
                received: 0,
            }
            .write(&mut frame);
            sent_at = Instant::now();
            if end.send(&frame).unwrap_or(false) {
                waiting = true;
            }
        }
        let _ = end.recv(&mut |f| {
            if f.len() >= HEADER
                && f[0..6] == a.mac.0
                && f[12..14] == ETHERTYPE.to_be_bytes()
                && f[18] == DATA
            {
                got = Some(u32::from_be_bytes(f[22..26].try_into().unwrap()));
            }
        });
        if let Some(n) = got.take() {
            if ping {
                if waiting && n == seq {
                    if seq >= WARMUP {
                        samples.push(sent_at.elapsed().as_nanos() as u64 / 2);
                    }
                    seq += 1;
                    waiting = false;
                }
            } else {
                Header {
                    dst: a.peer_mac,
                    src: a.mac,
                    kind: DATA,
                    sender: a.id,
                    flags: 0,
                    seq: n,
                    received: 0,
                }
                .write(&mut frame);
                let _ = end.send(&frame);
                seq += 1;
                if seq == a.count + WARMUP {
                    break;
                }
            }
        }
    }
    if !ping {
        println!("echoed {seq}");
        return ExitCode::SUCCESS;
    }
    if samples.is_empty() {
        eprintln!("sluice-dpdk-frames: no replies");
        return ExitCode::from(1);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "one-way latency over {} round trips: p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us",
        samples.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    ExitCode::SUCCESS
}

/// Prints the carrier state, then each change of it: two changes (a failure
/// and a recovery) end the watch, as does `limit`.
fn watch_link(end: &mut dyn End, limit: Duration) -> ExitCode {
    use std::io::Write;
    let start = Instant::now();
    let mut last = None;
    let mut reports = 0;
    while start.elapsed() < limit && reports < 3 {
        match end.status() {
            Ok((up, _)) if last != Some(up) => {
                println!("link up={up}");
                let _ = std::io::stdout().flush();
                last = Some(up);
                reports += 1;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("sluice-dpdk-frames: link status: {e}");
                return ExitCode::from(1);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ExitCode::SUCCESS
}

/// A second port in the same process: a distinct DPDK port with its own
/// MAC, up, while the first keeps working.
fn check_second_port(a: &Args, device: &str, first: &mut dyn End) -> Result<(), String> {
    let mut mac = a.mac;
    mac.0[5] ^= 0x80;
    let config = PortConfig {
        device: device.to_string(),
        backend: a.backend,
        hugepages: a.hugepages,
        extra_eal_args: Vec::new(),
        mac: Some(mac),
    };
    let port = Port::open(&config).map_err(|e| e.to_string())?;
    if port.mac() != mac {
        return Err(format!("owns MAC {}, not {mac}", port.mac()));
    }
    if !port.link_status().map_err(|e| e.to_string())?.up {
        return Err("link down".into());
    }
    match first.status()? {
        (true, Some(m)) if m == a.mac => {}
        other => return Err(format!("the first port changed: {other:?}")),
    }
    if !port.send(&[0xff; 60]).map_err(|e| e.to_string())? {
        return Err("could not send".into());
    }
    port.close();
    Ok(())
}

fn open_end(a: &Args, device: &str) -> Result<Box<dyn End>, String> {
    let config = PortConfig {
        device: device.to_string(),
        backend: a.backend,
        hugepages: a.hugepages,
        extra_eal_args: Vec::new(),
        mac: Some(a.mac),
    };
    match a.side.as_str() {
        "dpdk" => Ok(Box::new(Port::open(&config).map_err(|e| e.to_string())?)),
        "link" => {
            let lib = a
                .lib
                .as_ref()
                .ok_or("link needs --lib PATH of libsluice_dpdk.so")?;
            Ok(Box::new(
                DpdkLink::open(lib, &config).map_err(|e| e.to_string())?,
            ))
        }
        _ => Ok(Box::new(RawSocket::open(device)?)),
    }
}

fn main() -> ExitCode {
    sluice_dpdk::init_logging();
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice-dpdk-frames: {e}");
            return ExitCode::from(2);
        }
    };
    if a.exit_while_polling {
        return exit_while_polling(&a);
    }
    let cpus_before = allowed_cpus();
    if let Some(bad) = &a.bad_device {
        match open_end(&a, bad) {
            Ok(_) => {
                eprintln!("sluice-dpdk-frames: opening bad device {bad:?} succeeded");
                return ExitCode::from(1);
            }
            Err(e) => println!("bad-device error: {e}"),
        }
    }
    if a.reopen {
        // Open and close once first: the second open reuses the running EAL.
        match open_end(&a, &a.iface) {
            Ok(end) => end.close(false),
            Err(e) => {
                eprintln!("sluice-dpdk-frames: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut end = match open_end(&a, &a.iface) {
        Ok(end) => end,
        Err(e) => {
            eprintln!("sluice-dpdk-frames: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(second) = &a.second_port {
        if let Err(e) = check_second_port(&a, second, end.as_mut()) {
            eprintln!("sluice-dpdk-frames: second port {second}: {e}");
            return ExitCode::from(1);
        }
        println!("second port ok");
    }
    // The EAL pins its thread to one CPU; the port must give ours back.
    let cpus_after = allowed_cpus();
    if cpus_after != cpus_before {
        eprintln!("sluice-dpdk-frames: CPU affinity was {cpus_before}, is {cpus_after} after opening the port");
        return ExitCode::from(1);
    }
    match end.status() {
        Ok((_, Some(mac))) if mac != a.mac => {
            eprintln!(
                "sluice-dpdk-frames: the port owns MAC {mac}, not the configured {}",
                a.mac
            );
            return ExitCode::from(1);
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("sluice-dpdk-frames: link status: {e}");
            return ExitCode::from(1);
        }
    }
    if let Some(role) = &a.pingpong {
        let code = pingpong(end.as_mut(), &a, role == "ping");
        end.close(a.leak);
        return code;
    }
    if a.watch_link {
        let code = watch_link(end.as_mut(), a.timeout);
        end.close(a.leak);
        return code;
    }
    let (p, failure) = exchange(end.as_mut(), &a);
    let counters = match end.counters() {
        Some(c) => format!(" rx_frames={} tx_frames={}", c.rx_frames, c.tx_frames),
        None => String::new(),
    };
    end.close(a.leak);
    if failure.is_none() && p.bad.is_empty() && p.received.len() as u32 == a.count {
        // Only the `dpdk` side runs the EAL in this process (`link` runs it
        // inside the dlopen()ed copy of the library).
        let hugepages = match sluice_dpdk::eal_uses_hugepages() {
            Some(on) => on.to_string(),
            None => "n/a".into(),
        };
        println!(
            "ok side={} sent={} received={} foreign={} hugepages={hugepages}{counters}",
            a.side,
            p.next_seq,
            p.received.len(),
            p.foreign
        );
        return ExitCode::SUCCESS;
    }
    if let Some(e) = failure {
        eprintln!("sluice-dpdk-frames: {e}");
    }
    eprintln!(
        "sluice-dpdk-frames: {} bad frames, received {}/{}",
        p.bad.len(),
        p.received.len(),
        a.count
    );
    for b in p.bad.iter().take(20) {
        eprintln!("  {b}");
    }
    ExitCode::from(1)
}
