//! Each wire parser on its own, on arbitrary bytes.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use sluice_stack::wire::{
    ArpMessage, EthernetHeader, IcmpMessage, Ipv4Header, TcpHeader, UdpHeader, TCP_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    let _ = EthernetHeader::parse(data);
    let _ = ArpMessage::parse(data);
    if let Ok((header, payload)) = Ipv4Header::parse(data) {
        assert!(payload.len() + header.header_len <= data.len());
        let _ = UdpHeader::parse(header.src, header.dst, payload);
    }
    let _ = Ipv4Header::parse_quoted(data);
    let _ = UdpHeader::parse(Ipv4Addr::new(10, 77, 2, 2), Ipv4Addr::new(10, 77, 2, 1), data);
    let _ = UdpHeader::parse_quoted(data);
    let (us, peer) = (Ipv4Addr::new(10, 77, 2, 1), Ipv4Addr::new(10, 77, 2, 3));
    if let Ok((tcp, payload)) = TcpHeader::parse(peer, us, data) {
        assert!(payload.len() + TCP_HEADER_LEN <= data.len());
        // The reset that answers it is always a whole header.
        if let Some(reset) = sluice_stack::tcp::reset_for(&tcp, payload.len()) {
            let mut out = [0u8; TCP_HEADER_LEN];
            reset.write(us, peer, &mut out);
        }
    }
    if let Ok(message) = IcmpMessage::parse(data) {
        // What parses must re-emit at the same size.
        let mut out = vec![0u8; message.len()];
        message.write(&mut out);
    }
});
