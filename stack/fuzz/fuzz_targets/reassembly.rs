//! Arbitrary fragment sequences into the reassembler: the memory bound must
//! hold after every fragment, and whatever completes must be whole.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use sluice_stack::ipv4::reassembly::{Reassembler, ReassemblyConfig};
use sluice_stack::wire::{Ipv4Header, IPV4_HEADER_LEN, PROTO_UDP};

const MAX_BYTES: usize = 64 * 1024;
const MAX_DATAGRAMS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let config = ReassemblyConfig {
        timeout_ns: 1_000,
        max_bytes: MAX_BYTES,
        max_datagrams: MAX_DATAGRAMS,
    };
    let mut reassembler = Reassembler::new(config);
    // Each fragment: ident (1 byte), offset in 8-byte units (2), flags+len (1), then len bytes.
    let mut rest = data;
    let mut now = 0u64;
    while rest.len() >= 4 {
        let ident = u16::from(rest[0] & 3);
        let offset = (usize::from(rest[1]) << 8 | usize::from(rest[2])) & 0x1fff;
        let more = rest[3] & 0x80 != 0;
        let len = usize::from(rest[3] & 0x7f).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        let header = Ipv4Header {
            src: Ipv4Addr::new(10, 77, 2, 2),
            dst: Ipv4Addr::new(10, 77, 2, 1),
            protocol: PROTO_UDP,
            ttl: 64,
            ident,
            dont_fragment: false,
            more_fragments: more,
            fragment_offset: offset * 8,
            header_len: IPV4_HEADER_LEN,
            total_len: IPV4_HEADER_LEN + len,
        };
        now += 100;
        if let Some(whole) = reassembler.add(now, &header, payload) {
            assert!(!whole.is_empty() && whole.len() <= 65535 - IPV4_HEADER_LEN);
        }
        let (count, bytes) = reassembler.in_progress();
        assert!(count <= MAX_DATAGRAMS && bytes <= MAX_BYTES, "{count} datagrams, {bytes} bytes");
        reassembler.expire(now);
        rest = &rest[4 + len..];
    }
});
