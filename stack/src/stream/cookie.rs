//! The stateless handshake: SYN cookies for a listener whose half-open connections are at
//! their bound (a flood of SYNs from spoofed sources, say).
//!
//! Instead of a connection, such a SYN gets a SYN-ACK whose connection id and initial sequence
//! number are a keyed hash of the SYN (addresses, ports, the initiator's id and ISN) and of a
//! time slot; nothing is kept. A peer that really sent the SYN answers with an ACK naming that
//! id and acknowledging that ISN; recomputing the hash proves it, and only then is the
//! connection created, already established. A spoofed source never sees the SYN-ACK, so it
//! cannot answer it, and costs no memory. What a cookie cannot carry is lost: the peer's MSS
//! is rounded down to one of four sizes (two bits of the id) and its other addresses
//! (multipath), so such a connection has one path.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddrV4;

use super::conn::ts_of;
use super::wire::{emit_syn_options, Header, SegmentType, SynOptions};

/// A cookie is good for two slots of this length, ns (64 s to 128 s).
const SLOT: u64 = 64_000_000_000;
/// The MSS sizes a cookie can name (two bits of the connection id).
const MSS_SIZES: [u16; 4] = [536, 1200, 1400, 8960];

/// The key of the stateless handshake (random per process).
pub struct SynCookies {
    key: RandomState,
}

impl Default for SynCookies {
    fn default() -> Self {
        SynCookies::new()
    }
}

impl SynCookies {
    /// A fresh key: SipHash keyed from the operating system's random source.
    pub fn new() -> SynCookies {
        SynCookies {
            key: RandomState::new(),
        }
    }

    /// (connection id, ISN) for the SYN from `peer` (initiator id, ISN) to `local`, in slot
    /// `slot`, naming MSS size `mss_index`.
    fn cookie(
        &self,
        peer: SocketAddrV4,
        local: SocketAddrV4,
        peer_id: u32,
        peer_isn: u32,
        slot: u64,
        mss_index: usize,
    ) -> (u32, u32) {
        let h = self
            .key
            .hash_one((peer, local, peer_id, peer_isn, slot, mss_index));
        let mut id = ((h >> 32) as u32 & !3) | mss_index as u32;
        if id >> 2 == 0 {
            id |= 4; // never 0: 0 means "no id yet" on the wire
        }
        (id, h as u32)
    }

    /// The stateless SYN-ACK answering `syn` (from `peer` to the listener at `local`), encoded
    /// into `out`. Its options are only the MSS, and only when the SYN carried options, so the
    /// answer is never larger than the SYN (no amplification).
    #[allow(clippy::too_many_arguments)]
    pub fn syn_ack(
        &self,
        now: u64,
        peer: SocketAddrV4,
        local: SocketAddrV4,
        syn: &Header,
        syn_options: &SynOptions,
        syn_payload_len: usize,
        (our_mss, window): (usize, u32),
        out: &mut Vec<u8>,
    ) {
        let peer_mss = syn_options.mss.unwrap_or(u16::MAX);
        let mss_index = MSS_SIZES.iter().rposition(|&m| m <= peer_mss).unwrap_or(0);
        let (id, isn) = self.cookie(peer, local, syn.src_conn, syn.seq, now / SLOT, mss_index);
        let mut h = Header::new(SegmentType::SynAck, id, syn.src_conn);
        h.seq = isn;
        h.flags.ack = true;
        h.ack = syn.seq.wrapping_add(1);
        h.window = window;
        h.ts_val = ts_of(now);
        h.flags.echo = true;
        h.ts_ecr = syn.ts_val;
        let mut options = Vec::with_capacity(4);
        if syn_payload_len >= 4 {
            let mss = SynOptions {
                mss: Some(our_mss.min(u16::MAX as usize) as u16),
                addrs: Vec::new(),
            };
            emit_syn_options(&mss, &mut options);
        }
        super::wire::emit(&h, &options, out);
    }

    /// Whether `ack` (from `peer` to `local`, for no known connection) answers one of our
    /// cookies: Some(the peer's MSS as the cookie named it). The peer's first segment after
    /// our SYN-ACK carries its ISN + 1 and our ISN + 1.
    pub fn check(
        &self,
        now: u64,
        peer: SocketAddrV4,
        local: SocketAddrV4,
        ack: &Header,
    ) -> Option<usize> {
        if !ack.flags.ack || !matches!(ack.kind, SegmentType::Data | SegmentType::Probe) {
            return None;
        }
        let mss_index = (ack.dst_conn & 3) as usize;
        let peer_isn = ack.seq.wrapping_sub(1);
        let slot = now / SLOT;
        [slot, slot.saturating_sub(1)].into_iter().find_map(|slot| {
            let (id, isn) = self.cookie(peer, local, ack.src_conn, peer_isn, slot, mss_index);
            (id == ack.dst_conn && isn.wrapping_add(1) == ack.ack)
                .then_some(MSS_SIZES[mss_index] as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::wire::{parse, parse_syn_options};
    use std::net::Ipv4Addr;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, last), port)
    }

    fn syn() -> Header {
        let mut h = Header::new(SegmentType::Syn, 0x1234_5678, 0);
        h.seq = 1000;
        h.ts_val = 77;
        h
    }

    /// The ACK a peer sends back for `syn_ack`.
    fn answer(syn_ack: &Header) -> Header {
        let mut h = Header::new(SegmentType::Data, syn_ack.dst_conn, syn_ack.src_conn);
        h.flags.ack = true;
        h.seq = syn_ack.ack;
        h.ack = syn_ack.seq.wrapping_add(1);
        h
    }

    #[test]
    fn the_answer_to_a_cookie_is_recognised_and_nothing_else_is() {
        let cookies = SynCookies::new();
        let (peer, local) = (addr(1, 40000), addr(2, 7000));
        let now = 5_000_000_000;
        let options = SynOptions {
            mss: Some(1408),
            addrs: Vec::new(),
        };
        let mut out = Vec::new();
        cookies.syn_ack(
            now,
            peer,
            local,
            &syn(),
            &options,
            4,
            (1400, 65536),
            &mut out,
        );
        assert!(out.len() <= 44, "no larger than a SYN with an MSS option");
        let (sa, payload) = parse(&out).unwrap();
        assert_eq!(sa.kind, SegmentType::SynAck);
        assert_eq!((sa.dst_conn, sa.ack, sa.ts_ecr), (0x1234_5678, 1001, 77));
        assert_eq!(parse_syn_options(payload).mss, Some(1400));
        assert_ne!(sa.src_conn, 0);
        let ack = answer(&sa);
        assert_eq!(cookies.check(now, peer, local, &ack), Some(1400));
        // Still good in the next slot, not two slots later.
        assert_eq!(cookies.check(now + SLOT, peer, local, &ack), Some(1400));
        assert_eq!(cookies.check(now + 2 * SLOT, peer, local, &ack), None);
        // Any other address, port, id or number fails.
        assert_eq!(cookies.check(now, addr(9, 40000), local, &ack), None);
        assert_eq!(cookies.check(now, peer, addr(2, 7001), &ack), None);
        for tamper in [
            |h: &mut Header| h.src_conn ^= 1,
            |h: &mut Header| h.dst_conn ^= 8,
            |h: &mut Header| h.dst_conn ^= 1,
            |h: &mut Header| h.seq ^= 1,
            |h: &mut Header| h.ack ^= 1,
            |h: &mut Header| h.flags.ack = false,
            |h: &mut Header| h.kind = SegmentType::Rst,
        ] {
            let mut forged = ack.clone();
            tamper(&mut forged);
            assert_eq!(cookies.check(now, peer, local, &forged), None, "{forged:?}");
        }
        // Another process's key does not know our cookies.
        assert_eq!(SynCookies::new().check(now, peer, local, &ack), None);
    }

    #[test]
    fn a_syn_without_options_gets_a_syn_ack_without_options_and_the_smallest_mss() {
        let cookies = SynCookies::new();
        let (peer, local) = (addr(1, 40000), addr(2, 7000));
        let mut out = Vec::new();
        let none = SynOptions::default();
        cookies.syn_ack(0, peer, local, &syn(), &none, 0, (1400, 65536), &mut out);
        assert_eq!(out.len(), 40, "no larger than the 40-byte SYN");
        let (sa, _) = parse(&out).unwrap();
        // No MSS option: as large as ours, which the largest size names.
        assert_eq!(cookies.check(0, peer, local, &answer(&sa)), Some(8960));
        let small = SynOptions {
            mss: Some(600),
            addrs: Vec::new(),
        };
        cookies.syn_ack(0, peer, local, &syn(), &small, 4, (1400, 65536), &mut out);
        let (sa, _) = parse(&out).unwrap();
        assert_eq!(cookies.check(0, peer, local, &answer(&sa)), Some(536));
    }
}
