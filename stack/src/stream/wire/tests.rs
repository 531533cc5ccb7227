//! Tests of the segment format.

use super::*;

fn sample() -> Header {
    Header {
        kind: SegmentType::Data,
        flags: Flags {
            fin: true,
            ack: true,
            echo: false,
        },
        src_conn: 0x0102_0304,
        dst_conn: 0xA0B0_C0D0,
        seq: 0xFFFF_FFF0,
        ack: 7,
        window: 65_536,
        ts_val: 123_456,
        ts_ecr: 0,
        path: 3,
        sacks: vec![(10, 20), (30, 40)],
    }
}

#[test]
fn round_trips_header_sacks_and_payload() {
    let mut out = Vec::new();
    emit(&sample(), b"hello", &mut out);
    assert_eq!(out.len(), HEADER_LEN + 16 + 5);
    let (header, payload) = parse(&out).unwrap();
    assert_eq!(header, sample());
    assert_eq!(payload, b"hello");
}

#[test]
fn lays_out_fields_big_endian_at_their_offsets() {
    let mut out = Vec::new();
    emit(&sample(), b"xy", &mut out);
    assert_eq!(&out[0..2], &[0x51, 0xCE]);
    assert_eq!(out[2], VERSION);
    assert_eq!(out[3], 3);
    assert_eq!(out[4], 0x03);
    assert_eq!(out[5], 2);
    assert_eq!(&out[6..8], &[0, 2]);
    assert_eq!(&out[8..12], &[1, 2, 3, 4]);
    assert_eq!(&out[16..20], &[0xFF, 0xFF, 0xFF, 0xF0]);
    assert_eq!(&out[24..28], &[0, 1, 0, 0]);
    assert_eq!(&out[36..40], &[0, 3, 0, 0]);
    assert_eq!(&out[40..44], &[0, 0, 0, 10]);
}

#[test]
fn emit_clears_the_output_first() {
    let mut out = vec![9; 100];
    emit(&Header::new(SegmentType::Probe, 1, 2), &[], &mut out);
    assert_eq!(out.len(), HEADER_LEN);
}

#[test]
fn rejects_malformed_datagrams() {
    let mut good = Vec::new();
    emit(&sample(), b"abc", &mut good);
    assert_eq!(parse(&good[..39]), Err(WireError::Short));
    let mut bad = good.clone();
    bad[0] = 0;
    assert_eq!(parse(&bad), Err(WireError::BadMagic));
    let mut bad = good.clone();
    bad[2] = 2;
    assert_eq!(parse(&bad), Err(WireError::BadVersion));
    let mut bad = good.clone();
    bad[3] = 9;
    assert_eq!(parse(&bad), Err(WireError::BadType));
    let mut bad = good.clone();
    bad[5] = 5;
    assert_eq!(parse(&bad), Err(WireError::TooManySacks));
    let mut bad = good.clone();
    bad[5] = 3;
    assert_eq!(parse(&bad), Err(WireError::BadLength));
    assert_eq!(parse(&good[..good.len() - 1]), Err(WireError::BadLength));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(parse(&long), Err(WireError::BadLength));
}

#[test]
fn ignores_unknown_flag_bits_and_reserved_bytes() {
    let mut out = Vec::new();
    emit(&sample(), &[], &mut out);
    out[4] |= 0xF8;
    out[38] = 0xAA;
    let (header, _) = parse(&out).unwrap();
    assert_eq!(header.flags, sample().flags);
}

#[test]
fn syn_options_round_trip_and_skip_unknown_ones() {
    let options = SynOptions {
        mss: Some(1408),
        addrs: vec![
            (Ipv4Addr::new(10, 0, 0, 1), 24),
            (Ipv4Addr::new(10, 0, 1, 1), 31),
        ],
    };
    let mut out = vec![77, 3, 1, 2, 3];
    emit_syn_options(&options, &mut out);
    assert_eq!(parse_syn_options(&out), options);
    // An entry with an impossible prefix length is dropped, the others stand.
    let parsed = parse_syn_options(&[2, 10, 10, 0, 0, 1, 33, 10, 0, 1, 1, 24]);
    assert_eq!(parsed.addrs, vec![(Ipv4Addr::new(10, 0, 1, 1), 24)]);
}

#[test]
fn garbage_syn_options_give_what_was_readable() {
    assert_eq!(parse_syn_options(&[]), SynOptions::default());
    assert_eq!(parse_syn_options(&[1]), SynOptions::default());
    // MSS with a wrong length is skipped; a truncated option ends the list.
    assert_eq!(parse_syn_options(&[1, 3, 0, 0, 0]), SynOptions::default());
    let parsed = parse_syn_options(&[1, 2, 0x05, 0x80, 2, 8, 10, 0]);
    assert_eq!(parsed.mss, Some(0x0580));
    assert!(parsed.addrs.is_empty());
}

#[test]
fn reset_answering_a_syn_acknowledges_it_and_is_addressed_to_its_sender() {
    let mut syn = Header::new(SegmentType::Syn, 42, 0);
    syn.seq = 1000;
    let rst = reset_for(&syn, 4).unwrap();
    assert_eq!(rst.kind, SegmentType::Rst);
    assert_eq!((rst.src_conn, rst.dst_conn), (0, 42));
    assert!(rst.flags.ack);
    assert_eq!(rst.ack, 1001);
    assert_eq!(rst.seq, 0);
}

#[test]
fn reset_answering_an_acknowledging_segment_uses_its_ack_as_seq() {
    let mut data = Header::new(SegmentType::Data, 42, 7);
    data.flags.ack = true;
    data.seq = 50;
    data.ack = 9000;
    let rst = reset_for(&data, 100).unwrap();
    assert_eq!((rst.src_conn, rst.dst_conn), (7, 42));
    assert_eq!(rst.seq, 9000);
    assert!(!rst.flags.ack);
}

#[test]
fn reset_answering_data_without_ack_counts_payload_and_fin() {
    let mut data = Header::new(SegmentType::Data, 42, 7);
    data.seq = u32::MAX - 1;
    data.flags.fin = true;
    let rst = reset_for(&data, 10).unwrap();
    assert_eq!(rst.ack, 9);
}

#[test]
fn never_answers_a_reset() {
    assert_eq!(reset_for(&Header::new(SegmentType::Rst, 1, 2), 0), None);
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buf = Vec::new();
    for _ in 0..20_000 {
        let len = (next() % 120) as usize;
        buf.clear();
        buf.extend((0..len).map(|_| next() as u8));
        if buf.len() >= 4 && next() % 2 == 0 {
            buf[0] = 0x51;
            buf[1] = 0xCE;
            buf[2] = VERSION;
            buf[3] = 1 + (buf[3] % 5);
        }
        if let Ok((header, payload)) = parse(&buf) {
            let mut again = Vec::new();
            emit(&header, payload, &mut again);
            assert_eq!(parse(&again).unwrap(), (header, payload));
        }
        let _ = parse_syn_options(&buf);
    }
}
