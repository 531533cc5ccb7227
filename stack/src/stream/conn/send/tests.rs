//! Tests of the send buffer and scoreboard.

use super::*;

const MSS: usize = 100;

/// A buffer with `n` full segments sent.
fn sent(n: usize) -> SendBuffer {
    let mut s = SendBuffer::new(1 << 20);
    let data: Vec<u8> = (0..n * MSS).map(|i| i as u8).collect();
    assert_eq!(s.write(&data), n * MSS);
    for i in 0..n {
        s.sent_new(MSS, false, i as u64, 0);
    }
    s
}

#[test]
fn write_is_bounded_by_capacity_and_fin() {
    let mut s = SendBuffer::new(10);
    assert_eq!(s.write(&[1; 25]), 10);
    assert_eq!(s.space(), 0);
    s.ack(0);
    let mut s = SendBuffer::new(10);
    s.queue_fin();
    assert_eq!(s.write(b"x"), 0);
}

#[test]
fn cumulative_ack_frees_data_and_records() {
    let mut s = sent(4);
    assert_eq!(s.pipe(), 400);
    let acked = s.ack(200);
    assert_eq!(acked.bytes, 200);
    assert_eq!(acked.clean_sent_at, Some(1));
    assert_eq!(s.pipe(), 200);
    assert_eq!(s.queued(), 200);
    assert_eq!(s.payload(200, 3).0, &[200u8, 201, 202]);
}

#[test]
fn three_sacked_segments_above_a_hole_mark_it_lost() {
    let mut s = sent(6);
    assert!(s.sack(100, 300));
    assert_eq!(
        s.detect_losses(MSS, u64::MAX),
        0,
        "two segments are not enough"
    );
    assert!(s.sack(300, 400));
    assert_eq!(s.detect_losses(MSS, u64::MAX), 1);
    assert_eq!(s.lost_count(), 1);
    assert_eq!(s.pipe(), 200, "segments 4 and 5 are still in flight");
    let lost = s.next_lost().unwrap();
    assert_eq!((lost.off, lost.len), (0, 100));
    s.retransmitted(0, 10, 0);
    assert_eq!(s.lost_count(), 0);
    assert_eq!(s.pipe(), 300);
    assert!(s.next_lost().is_none());
    let acked = s.ack(400);
    assert_eq!(
        acked.clean_sent_at, None,
        "the last one acked was SACKed earlier: no sample"
    );
    assert_eq!(s.pipe(), 200);
}

#[test]
fn several_holes_are_found_in_order() {
    let mut s = sent(10);
    for k in [1u64, 3, 5, 6, 7] {
        s.sack(k * 100, k * 100 + 100);
    }
    assert_eq!(
        s.detect_losses(MSS, u64::MAX),
        3,
        "segments 0, 2 and 4 have >= 3 SACKed above"
    );
    let mut order = Vec::new();
    while let Some(r) = s.next_lost() {
        order.push(r.off);
        s.retransmitted(r.off, 99, 0);
    }
    assert_eq!(order, vec![0, 200, 400]);
}

#[test]
fn timeout_marks_everything_not_sacked_lost() {
    let mut s = sent(5);
    s.sack(200, 300);
    s.mark_all_lost();
    assert_eq!(s.lost_count(), 4);
    assert_eq!(s.pipe(), 0);
    assert_eq!(s.next_lost().unwrap().off, 0);
    s.retransmitted(0, 50, 0);
    assert_eq!(s.next_lost().unwrap().off, 100);
}

#[test]
fn fin_takes_one_sequence_number() {
    let mut s = SendBuffer::new(100);
    s.write(b"abc");
    s.queue_fin();
    assert!(s.fin_pending());
    s.sent_new(3, true, 0, 0);
    assert_eq!(s.sent_end(), 4);
    s.ack(3);
    assert!(!s.fin_acked());
    assert!(!s.all_acked());
    s.ack(4);
    assert!(s.fin_acked());
    assert!(s.all_acked());
    assert_eq!(s.data_end(), 3);
    assert_eq!(s.unsent(), 0);
}

#[test]
fn payload_spans_the_ring_seam() {
    let mut s = SendBuffer::new(8);
    s.write(&[0, 1, 2, 3, 4, 5]);
    s.sent_new(6, false, 0, 0);
    s.ack(5);
    s.write(&[6, 7, 8, 9, 10, 11]);
    s.sent_new(7, false, 0, 0);
    let (a, b) = s.payload(5, 7);
    let joined: Vec<u8> = a.iter().chain(b).copied().collect();
    assert_eq!(joined, vec![5, 6, 7, 8, 9, 10, 11]);
}
