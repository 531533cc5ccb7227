//! Tests of the receive buffer.

use super::*;

fn bytes(from: u64, n: usize) -> Vec<u8> {
    (from..from + n as u64).map(|o| o as u8).collect()
}

fn read_all(r: &mut RecvBuffer) -> Vec<u8> {
    let mut buf = vec![0; 1 << 16];
    let n = r.read(&mut buf, false);
    buf.truncate(n);
    buf
}

#[test]
fn in_order_data_is_readable_at_once() {
    let mut r = RecvBuffer::new(1000);
    let a = r.insert(0, &bytes(0, 100));
    assert!(a.advanced && !a.out_of_order && !a.duplicate);
    assert_eq!(a.new_bytes, 100);
    assert_eq!(r.readable(), 100);
    assert_eq!(r.window(), 900);
    assert_eq!(read_all(&mut r), bytes(0, 100));
    assert_eq!(r.window(), 1000);
}

#[test]
fn out_of_order_data_waits_for_the_hole_and_is_reported() {
    let mut r = RecvBuffer::new(1000);
    let a = r.insert(200, &bytes(200, 100));
    assert!(a.out_of_order && !a.advanced);
    assert_eq!(r.readable(), 0);
    assert_eq!(r.buffered(), 100);
    r.insert(400, &bytes(400, 50));
    let mut blocks = Vec::new();
    r.sack_blocks(&mut blocks);
    assert_eq!(blocks, vec![(400, 450), (200, 300)]);
    // Touching ranges merge; the block of the latest arrival comes first.
    r.insert(300, &bytes(300, 50));
    r.sack_blocks(&mut blocks);
    assert_eq!(blocks, vec![(200, 350), (400, 450)]);
    let a = r.insert(0, &bytes(0, 200));
    assert!(a.advanced);
    assert_eq!(r.nxt(), 350);
    assert_eq!(read_all(&mut r), bytes(0, 350));
    r.sack_blocks(&mut blocks);
    assert_eq!(blocks, vec![(400, 450)]);
}

#[test]
fn overlapping_and_duplicate_segments_count_once() {
    let mut r = RecvBuffer::new(1000);
    r.insert(100, &bytes(100, 100));
    let a = r.insert(150, &bytes(150, 100));
    assert_eq!(a.new_bytes, 50);
    let a = r.insert(120, &bytes(120, 10));
    assert!(a.duplicate);
    assert_eq!(r.buffered(), 150);
    r.insert(0, &bytes(0, 120));
    assert_eq!(r.readable(), 250);
    assert!(r.insert(0, &bytes(0, 50)).duplicate);
    assert_eq!(read_all(&mut r), bytes(0, 250));
}

#[test]
fn nothing_beyond_the_window_is_kept() {
    let mut r = RecvBuffer::new(100);
    let a = r.insert(50, &bytes(50, 100));
    assert!(a.clipped);
    assert_eq!(r.buffered(), 50);
    assert!(r.insert(100, &bytes(100, 10)).clipped);
    r.insert(0, &bytes(0, 50));
    assert_eq!(r.buffered(), 100);
    assert_eq!(r.window(), 0);
    let mut buf = [0; 30];
    r.read(&mut buf, false);
    assert_eq!(r.window(), 30);
    assert_eq!(r.right_edge(), 130);
}

#[test]
fn at_most_four_blocks_newest_first() {
    let mut r = RecvBuffer::new(10_000);
    for i in 1..=6u64 {
        r.insert(i * 100, &bytes(i * 100, 10));
    }
    let mut blocks = Vec::new();
    r.sack_blocks(&mut blocks);
    assert_eq!(blocks, vec![(600, 610), (500, 510), (400, 410), (300, 310)]);
}

#[test]
fn peek_leaves_the_bytes() {
    let mut r = RecvBuffer::new(100);
    r.insert(0, b"hello");
    let mut buf = [0; 5];
    assert_eq!(r.read(&mut buf, true), 5);
    assert_eq!(r.readable(), 5);
    assert_eq!(r.read(&mut buf, false), 5);
    assert_eq!(&buf, b"hello");
    assert_eq!(r.readable(), 0);
}

#[test]
fn fin_is_received_once_the_bytes_before_it_are() {
    let mut r = RecvBuffer::new(100);
    assert!(r.set_fin(10));
    assert!(!r.fin_received());
    assert!(!r.set_fin(12), "a second, different FIN is ignored");
    assert!(r.insert(5, b"abcdefgh").clipped, "nothing beyond the FIN");
    r.insert(0, b"0123456789");
    assert!(r.fin_received());
    assert!(!r.set_fin(5));
}

#[test]
fn wraps_around_the_ring_correctly() {
    let mut r = RecvBuffer::new(64);
    let mut off = 0u64;
    let mut expect = 0u64;
    for round in 0..200u64 {
        let n = 1 + (round * 7 % 40) as usize;
        // Deliver the second half first, then the first half.
        let half = n / 2;
        r.insert(off + half as u64, &bytes(off + half as u64, n - half));
        r.insert(off, &bytes(off, half));
        off += n as u64;
        let got = read_all(&mut r);
        assert_eq!(got, bytes(expect, got.len()));
        expect += got.len() as u64;
        assert_eq!(expect, off.min(expect + 64));
    }
}
