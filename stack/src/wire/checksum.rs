//! The Internet checksum (RFC 1071) of IPv4 headers, UDP datagrams and IGMP messages, eight
//! bytes at a time.
//!
//! Every datagram the stack sends or receives is summed once, so this is on the
//! data path: a 1400-byte stream segment is 700 16-bit words. The one's-complement
//! sum does not depend on the order of the additions nor on the byte order of the
//! words, as long as the result is swapped back (RFC 1071, section 2): the bytes are
//! read as native 64-bit words, each split into two 32-bit halves added into a
//! 64-bit accumulator (no carry is lost below 2^32 words), and the total is folded
//! to 16 bits and put into network order at the end.

use std::net::Ipv4Addr;

/// A running one's-complement sum, in native byte order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum(u64);

impl Sum {
    /// Adds `bytes` as if they started at an even offset of the summed data.
    pub fn add_bytes(mut self, bytes: &[u8]) -> Sum {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_ne_bytes(w.try_into().expect("chunks of eight"));
            self.0 += (w & 0xffff_ffff) + (w >> 32);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Zero padding: an odd last byte is the high half of its word.
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            let w = u64::from_ne_bytes(last);
            self.0 += (w & 0xffff_ffff) + (w >> 32);
        }
        self
    }

    /// Adds the IPv4 pseudo-header of a UDP (or TCP) segment of `len` bytes.
    pub fn pseudo_header(self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> Sum {
        let mut p = [0u8; 12];
        p[..4].copy_from_slice(&src.octets());
        p[4..8].copy_from_slice(&dst.octets());
        p[9] = protocol;
        p[10..].copy_from_slice(&len.to_be_bytes());
        self.add_bytes(&p)
    }

    /// The 16-bit one's-complement sum, in network byte order as a number (the value
    /// to compare with or to complement into a header field read with `from_be_bytes`).
    pub fn fold(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        u16::from_be(s as u16)
    }

    /// The checksum field of data summed with that field at zero: the complemented sum.
    pub fn checksum(self) -> u16 {
        !self.fold()
    }

    /// Whether data summed with its checksum field in place checks out (sums to all ones).
    pub fn verifies(self) -> bool {
        self.fold() == 0xffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's definition, word by word in network order.
    fn reference(bytes: &[u8]) -> u16 {
        let mut s: u64 = bytes
            .chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn the_rfc_1071_example_sums_to_its_published_value() {
        // Section 3 of RFC 1071: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::default().add_bytes(&bytes).fold(), 0xddf2);
    }

    #[test]
    fn every_length_and_content_matches_the_word_by_word_sum() {
        // Lengths around the eight-byte steps, contents with carries (all ones) and without.
        let mut seed = 0x9e37_79b9_u32;
        for len in 0..200 {
            for fill in [None, Some(0xff), Some(0x00)] {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        fill.unwrap_or((seed >> 16) as u8)
                    })
                    .collect();
                assert_eq!(
                    Sum::default().add_bytes(&bytes).fold(),
                    reference(&bytes),
                    "{len} bytes, fill {fill:?}"
                );
            }
        }
    }

    #[test]
    fn a_large_datagram_of_all_ones_folds_without_losing_carries() {
        let bytes = vec![0xff; 65_535];
        assert_eq!(Sum::default().add_bytes(&bytes).fold(), reference(&bytes));
    }

    #[test]
    fn sums_of_pieces_at_even_offsets_equal_the_sum_of_the_whole() {
        let bytes: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = Sum::default().add_bytes(&bytes).fold();
        let pieces = Sum::default()
            .add_bytes(&bytes[..12])
            .add_bytes(&bytes[12..100])
            .add_bytes(&bytes[100..]);
        assert_eq!(pieces.fold(), whole);
    }

    #[test]
    fn the_pseudo_header_is_source_destination_protocol_and_length() {
        let (src, dst) = (Ipv4Addr::new(10, 77, 2, 1), Ipv4Addr::new(10, 77, 2, 2));
        let by_hand = [10, 77, 2, 1, 10, 77, 2, 2, 0, 17, 0x05, 0xdc];
        assert_eq!(
            Sum::default().pseudo_header(src, dst, 17, 1500).fold(),
            reference(&by_hand)
        );
    }
}
