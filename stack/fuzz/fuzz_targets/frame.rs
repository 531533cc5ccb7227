//! Whole frames into a live Interface: every parser, ARP, reassembly, ICMP
//! and UDP demultiplexing on attacker-controlled bytes. The input is a
//! sequence of frames, each prefixed by a 2-byte big-endian length, so the
//! fuzzer can build state (fragments, ARP) across frames.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use sluice_stack::iface::{Interface, InterfaceConfig};
use sluice_stack::udp::BindOptions;
use sluice_stack::wire::MacAddr;

const MS: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let mut iface = Interface::new(InterfaceConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 77, 2, 1),
        24,
    ));
    let socket = iface.sockets_mut().open();
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7);
    iface.sockets_mut().bind(socket, any, BindOptions::default()).unwrap();
    let mut rest = data;
    let mut now = 0;
    while rest.len() >= 2 {
        let len = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
        let (frame, tail) = rest[2..].split_at(len);
        now += MS;
        iface.receive(now, frame);
        if len % 7 == 0 {
            iface.poll(now * 1000);
        }
        rest = tail;
    }
    while iface.recv_udp(socket).ok().flatten().is_some() {}
    let _ = iface.take_frames();
    let peer = SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 2), 9);
    let _ = iface.send_udp(now, socket, Some(peer), b"still alive");
});
