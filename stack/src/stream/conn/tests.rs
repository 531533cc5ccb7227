//! Tests of the connection state machine: handshake, resets, forged
//! segments, keepalive, persist probes, Nagle, close, garbage input.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::stream::tests::{pattern, NetConfig, Pair, Rng, CLIENT_ID, MS, SEC, SERVER_ID, US};
use crate::stream::wire::{self, reset_for, SegmentType};

const T0: u64 = 1_000 * SEC;

fn clean() -> NetConfig {
    NetConfig {
        max_backlog: SEC,
        ..NetConfig::default()
    }
}

fn established(config: ConnConfig) -> Pair {
    let mut p = Pair::new(config, config, clean(), 7);
    p.establish();
    p
}

/// Every datagram `conn` emits at `now`, parsed.
fn drain(conn: &mut Connection, now: u64) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    conn.poll_transmit(now, &mut |d| {
        let (h, p) = wire::parse(d).expect("emitted an unparsable segment");
        out.push((h, p.to_vec()));
    });
    out
}

/// Writes `n` pattern bytes from the client and checks the server reads them.
fn send_and_check(p: &mut Pair, from_off: u64, n: u64) {
    let data: Vec<u8> = (from_off..from_off + n).map(|o| pattern(0, o)).collect();
    let mut written = 0;
    let mut got = Vec::new();
    let mut buf = vec![0; 65536];
    assert!(p.run_until(10 * SEC, |p| {
        written += p.client().write(&data[written..]);
        let k = p.server().read(&mut buf, false);
        got.extend_from_slice(&buf[..k]);
        got.len() as u64 == n
    }));
    assert_eq!(got, data);
}

#[test]
fn handshake_establishes_both_sides_and_learns_ids() {
    let mut p = established(ConnConfig::default());
    assert_eq!(p.client().peer_id(), SERVER_ID);
    assert_eq!(p.server().peer_id(), CLIENT_ID);
    assert_eq!(p.client().local_id(), CLIENT_ID);
    assert!(p.client().stats().srtt_us > 0);
    assert!(p.server().stats().srtt_us > 0);
    assert_eq!(p.client().error(), None);
}

#[test]
fn connect_to_nobody_retries_with_backoff_then_times_out() {
    let config = ConnConfig {
        connect_timeout: 3 * SEC,
        ..ConnConfig::default()
    };
    let mut c = Connection::connect(config, T0, CLIENT_ID, 77);
    assert_eq!(c.state(), State::SynSent);
    assert_eq!(c.peer_id(), 0);
    let mut syns = Vec::new();
    let mut now = T0;
    while c.state() != State::Closed {
        for (h, payload) in drain(&mut c, now) {
            assert_eq!(h.kind, SegmentType::Syn);
            assert_eq!((h.src_conn, h.dst_conn, h.seq), (CLIENT_ID, 0, 77));
            assert_eq!(wire::parse_syn_options(&payload).mss, Some(1408));
            syns.push(now);
        }
        match c.next_deadline() {
            Some(t) => now = t,
            None => break,
        }
        assert!(now <= T0 + 3 * SEC);
    }
    assert_eq!(c.error(), Some(StreamError::TimedOut));
    assert_eq!(c.error().unwrap().errno(), libc::ETIMEDOUT);
    assert_eq!(now, T0 + 3 * SEC);
    assert_eq!(syns[0], T0);
    assert!(syns[1] - T0 <= 250 * MS);
    assert!(syns.len() >= 4, "{syns:?}");
    assert!(
        syns.windows(3).all(|w| w[2] - w[1] >= w[1] - w[0]),
        "{syns:?}"
    );
    assert_eq!(c.next_deadline(), None);
    assert!(c.is_finished());
    assert_eq!(c.write(b"x"), 0);
}

#[test]
fn reset_answering_the_syn_is_refused() {
    let mut c = Connection::connect(ConnConfig::default(), T0, CLIENT_ID, 500);
    let (syn, payload) = drain(&mut c, T0).remove(0);
    // An RST that does not acknowledge our SYN is ignored.
    let mut wrong = reset_for(&syn, payload.len()).unwrap();
    wrong.ack = wrong.ack.wrapping_add(1);
    c.handle(T0 + MS, &wrong, &[]);
    assert_eq!(c.state(), State::SynSent);
    let rst = reset_for(&syn, payload.len()).unwrap();
    c.handle(T0 + MS, &rst, &[]);
    assert_eq!(c.error(), Some(StreamError::Refused));
    assert_eq!(c.error().unwrap().errno(), libc::ECONNREFUSED);
    assert_eq!(c.state(), State::Closed);
    assert!(drain(&mut c, T0 + 2 * MS).is_empty());
    assert!(c.is_finished());
}

#[test]
fn syn_ack_with_the_wrong_ack_is_ignored() {
    let mut c = Connection::connect(ConnConfig::default(), T0, CLIENT_ID, 500);
    let (syn, payload) = drain(&mut c, T0).remove(0);
    let mut s = Connection::accept(ConnConfig::default(), T0, SERVER_ID, 9, &syn, &payload);
    let (mut synack, options) = drain(&mut s, T0).remove(0);
    assert_eq!(synack.kind, SegmentType::SynAck);
    synack.ack = 1234;
    c.handle(T0 + MS, &synack, &options);
    assert_eq!(c.state(), State::SynSent);
    assert_eq!(c.stats().dropped_segments, 1);
}

#[test]
fn abort_resets_the_peer_in_window() {
    let mut p = established(ConnConfig::default());
    send_and_check(&mut p, 0, 5000);
    p.server().abort();
    assert_eq!(p.server().state(), State::Closed);
    assert!(p.run_until(SEC, |p| p.client().error().is_some()));
    assert_eq!(p.client().error(), Some(StreamError::Reset));
    assert_eq!(p.client().error().unwrap().errno(), libc::ECONNRESET);
    assert_eq!(p.client().write(b"more"), 0);
    assert_eq!(p.client().read(&mut [0; 10], false), 0);
    assert!(p.client().is_finished());
    assert!(p.server().is_finished());
    assert_eq!(p.server().error(), None);
}

#[test]
fn abort_before_the_peer_is_known_sends_nothing() {
    let mut c = Connection::connect(ConnConfig::default(), T0, CLIENT_ID, 1);
    c.abort();
    assert!(drain(&mut c, T0).is_empty());
    assert!(c.is_finished());
}

/// The latest header each side emitted, captured by the pair's filter.
fn capture(p: &mut Pair) -> Rc<RefCell<[Option<Header>; 2]>> {
    let seen = Rc::new(RefCell::new([None, None]));
    let s = seen.clone();
    p.filter = Some(Box::new(move |to, h, _| {
        s.borrow_mut()[1 - to] = Some(h.clone());
        true
    }));
    seen
}

#[test]
fn forged_resets_and_data_are_ignored() {
    let mut p = established(ConnConfig::default());
    let seen = capture(&mut p);
    send_and_check(&mut p, 0, 20_000);
    // The client's receive point is the ack its last segment carried.
    let client_last = seen.borrow()[0].clone().unwrap();
    let rcv_nxt = client_last.ack;
    let now = p.now;
    let dropped = p.client().stats().dropped_segments;

    let mut rst = Header::new(SegmentType::Rst, SERVER_ID, CLIENT_ID);
    rst.seq = rcv_nxt.wrapping_add(1 << 31);
    p.client().handle(now, &rst, &[]);
    rst.seq = rcv_nxt.wrapping_sub(1);
    p.client().handle(now, &rst, &[]);
    let mut wrong_ids = Header::new(SegmentType::Rst, 0xBAD, CLIENT_ID);
    wrong_ids.seq = rcv_nxt;
    p.client().handle(now, &wrong_ids, &[]);
    let mut not_ours = Header::new(SegmentType::Rst, SERVER_ID, 0xBAD);
    not_ours.seq = rcv_nxt;
    p.client().handle(now, &not_ours, &[]);

    // Data far outside the window, from the wrong id, or acknowledging
    // what was never sent.
    let garbage = [0xEE; 100];
    let mut data = Header::new(SegmentType::Data, SERVER_ID, CLIENT_ID);
    data.seq = rcv_nxt.wrapping_add(1 << 30);
    p.client().handle(now, &data, &garbage);
    data.seq = rcv_nxt.wrapping_sub(1 << 30);
    p.client().handle(now, &data, &garbage);
    let mut spoofed = Header::new(SegmentType::Data, 0xBAD, CLIENT_ID);
    spoofed.seq = rcv_nxt;
    p.client().handle(now, &spoofed, &garbage);
    let mut bad_ack = Header::new(SegmentType::Data, SERVER_ID, CLIENT_ID);
    bad_ack.seq = rcv_nxt;
    bad_ack.flags.ack = true;
    bad_ack.ack = client_last.seq.wrapping_add(1 << 20);
    p.client().handle(now, &bad_ack, &garbage);

    assert_eq!(p.client().state(), State::Established);
    assert_eq!(p.client().error(), None);
    assert_eq!(p.client().readable(), 0);
    assert_eq!(p.client().stats().dropped_segments, dropped + 8);
    // Both directions still work and carry the right bytes.
    send_and_check(&mut p, 20_000, 50_000);
    p.server().write(b"reply");
    assert!(p.run_until(SEC, |p| p.client().readable() == 5));
    let mut buf = [0; 5];
    p.client().read(&mut buf, false);
    assert_eq!(&buf, b"reply");

    // The same RST with the right ids and an in-window seq does reset.
    let server_last = seen.borrow()[1].clone().unwrap();
    let mut real = Header::new(SegmentType::Rst, SERVER_ID, CLIENT_ID);
    real.seq = server_last.seq.wrapping_add(5);
    let now = p.now;
    p.client().handle(now, &real, &[]);
    assert_eq!(p.client().error(), Some(StreamError::Reset));
}

#[test]
fn keepalive_detects_a_dead_peer() {
    let config = ConnConfig {
        keepalive: Some(Keepalive {
            idle: SEC,
            interval: 100 * MS,
            count: 3,
        }),
        ..ConnConfig::default()
    };
    let mut p = established(config);
    send_and_check(&mut p, 0, 1000);
    let start = p.now;
    let probes = Rc::new(RefCell::new(Vec::new()));
    let seen = probes.clone();
    p.filter = Some(Box::new(move |to, h, _| {
        if h.kind == SegmentType::Probe {
            seen.borrow_mut().push((to, h.ts_val));
        }
        true
    }));
    // A live peer answers: nothing fails over many idle periods.
    assert!(!p.run_until(10 * SEC, |p| p.client().error().is_some()));
    assert!(probes.borrow().len() >= 9, "{}", probes.borrow().len());
    assert_eq!(p.client().state(), State::Established);
    // Now the peer vanishes.
    p.net.cut = [true, true];
    let cut_at = p.now;
    assert!(p.run_until(10 * SEC, |p| p.client().error().is_some()));
    assert_eq!(p.client().error(), Some(StreamError::TimedOut));
    let took = p.now - cut_at;
    assert!(took <= SEC + 300 * MS + 10 * MS, "took {} ms", took / MS);
    assert!(p.now - start > 10 * SEC);
}

#[test]
fn user_timeout_ends_a_transfer_to_a_dead_peer() {
    let config = ConnConfig {
        user_timeout: 5 * SEC,
        ..ConnConfig::default()
    };
    let mut p = established(config);
    send_and_check(&mut p, 0, 1000);
    p.net.cut = [true, true];
    let cut_at = p.now;
    p.client().write(&[1; 100_000]);
    assert!(p.run_until(20 * SEC, |p| p.client().error().is_some()));
    assert_eq!(p.client().error(), Some(StreamError::TimedOut));
    let took = p.now - cut_at;
    assert!((5 * SEC..8 * SEC).contains(&took), "took {} ms", took / MS);
    assert!(p.client().stats().timeouts >= 3);
}

#[test]
fn zero_window_with_a_lost_update_recovers_by_probing() {
    let config = ConnConfig {
        recv_buffer: 16 << 10,
        mss: 1024,
        ..ConnConfig::default()
    };
    let mut p = established(config);
    let total = 100_000u64;
    let data: Vec<u8> = (0..total).map(|o| pattern(0, o)).collect();
    let taken = p.client().write(&data);
    assert_eq!(taken as u64, total);
    // The server does not read: the window closes.
    p.run_until(50 * MS, |_| false);
    assert_eq!(p.client().stats().peer_window, 0);
    assert_eq!(p.server().readable(), 16 << 10);
    assert_eq!(p.client().stats().bytes_in_flight, 0);
    // The server reads, but its window update is lost.
    let lost_updates = Rc::new(RefCell::new(0));
    let probes = Rc::new(RefCell::new(0));
    let (l, pr) = (lost_updates.clone(), probes.clone());
    p.filter = Some(Box::new(move |to, h, payload| {
        if to == 1 && h.kind == SegmentType::Probe {
            *pr.borrow_mut() += 1;
        }
        if to == 0 && payload.is_empty() && *pr.borrow() == 0 {
            *l.borrow_mut() += 1;
            return false;
        }
        true
    }));
    let mut got = Vec::new();
    let mut buf = vec![0; 65536];
    let n = p.server().read(&mut buf, false);
    got.extend_from_slice(&buf[..n]);
    assert!(p.run_until(10 * SEC, |p| {
        let n = p.server().read(&mut buf, false);
        got.extend_from_slice(&buf[..n]);
        got.len() as u64 == total
    }));
    assert_eq!(got, data);
    assert!(*lost_updates.borrow() >= 1);
    assert!(*probes.borrow() >= 1);
}

#[test]
fn a_lost_syn_ack_is_resent_for_the_repeated_syn() {
    let mut p = Pair::new(ConnConfig::default(), ConnConfig::default(), clean(), 3);
    let dropped = Rc::new(RefCell::new(0));
    let d = dropped.clone();
    p.filter = Some(Box::new(move |to, h, _| {
        if to == 0 && h.kind == SegmentType::SynAck && *d.borrow() == 0 {
            *d.borrow_mut() += 1;
            return false;
        }
        true
    }));
    let start = p.now;
    p.establish();
    assert_eq!(*dropped.borrow(), 1);
    // Either the SYN retry (200 ms) or the SYN-ACK retry brought it back.
    assert!(p.now - start >= 200 * MS && p.now - start < 300 * MS);
    // And the RTT measured is the network's, not the 200 ms of the retry.
    assert!(
        p.client().stats().srtt_us < 1_000,
        "{:?}",
        p.client().stats()
    );
    assert!(
        p.server().stats().srtt_us < 1_000,
        "{:?}",
        p.server().stats()
    );
}

#[test]
fn the_passive_side_gives_up_after_the_connect_timeout() {
    let config = ConnConfig {
        connect_timeout: SEC,
        ..ConnConfig::default()
    };
    let mut p = Pair::new(config, config, clean(), 4);
    let syns = Rc::new(RefCell::new(0));
    let s = syns.clone();
    p.filter = Some(Box::new(move |to, _, _| {
        *s.borrow_mut() += 1;
        to == 1 && *s.borrow() == 1
    }));
    let start = p.now;
    assert!(p.run_until(5 * SEC, |p| p.conns[1]
        .as_ref()
        .is_some_and(|s| s.error().is_some())));
    assert_eq!(p.server().error(), Some(StreamError::TimedOut));
    assert!(p.now - start >= SEC && p.now - start <= SEC + MS);
}

#[test]
fn orderly_close_walks_through_the_states() {
    let mut p = established(ConnConfig::default());
    send_and_check(&mut p, 0, 3000);
    p.client().close_write();
    p.client().close_write();
    assert_eq!(p.client().state(), State::FinWait);
    assert_eq!(p.client().write(b"late"), 0);
    assert_eq!(p.client().send_space(), 0);
    assert!(p.run_until(SEC, |p| p.server().state() == State::CloseWait));
    assert!(p.server().at_eof());
    assert!(p.run_until(SEC, |p| p.client().all_acked()));
    // The server can still send after the client's FIN.
    assert_eq!(p.server().write(b"last words"), 10);
    p.server().close_write();
    assert!(p.run_until(SEC, |p| p.client().is_finished()
        && p.server().is_finished()));
    assert_eq!(p.client().state(), State::Closed);
    assert!(!p.client().at_eof());
    let mut buf = [0; 32];
    assert_eq!(p.client().read(&mut buf, true), 10);
    assert_eq!(p.client().read(&mut buf, false), 10);
    assert_eq!(&buf[..10], b"last words");
    assert!(p.client().at_eof());
    assert_eq!(p.client().error(), None);
    assert_eq!(p.server().error(), None);
    assert_eq!(p.client().next_deadline(), None);
}

#[test]
fn data_written_before_the_handshake_completes_is_sent_after() {
    let mut p = Pair::new(ConnConfig::default(), ConnConfig::default(), clean(), 5);
    assert_eq!(p.client().write(b"early"), 5);
    assert!(p.run_until(SEC, |p| p.conns[1].is_some() && p.server().readable() == 5));
}

/// Counts the client's data segments while it writes `writes` single bytes
/// back to back.
fn small_write_segments(nodelay: bool, writes: usize) -> usize {
    let config = ConnConfig {
        nodelay,
        ..ConnConfig::default()
    };
    let mut p = established(config);
    let segments = Rc::new(RefCell::new(0));
    let s = segments.clone();
    p.filter = Some(Box::new(move |to, _, payload| {
        if to == 1 && !payload.is_empty() {
            *s.borrow_mut() += 1;
        }
        true
    }));
    for _ in 0..writes {
        assert_eq!(p.client().write(b"x"), 1);
        p.step();
        p.now += US;
    }
    assert!(p.run_until(SEC, |p| p.server().readable() == writes));
    let n = *segments.borrow();
    n
}

#[test]
fn nagle_coalesces_small_writes_unless_nodelay() {
    assert!(small_write_segments(false, 50) <= 3);
    assert_eq!(small_write_segments(true, 50), 50);
}

#[test]
fn send_space_and_write_respect_the_send_buffer() {
    let config = ConnConfig {
        send_buffer: 10_000,
        ..ConnConfig::default()
    };
    let mut p = established(config);
    assert_eq!(p.client().send_space(), 10_000);
    assert_eq!(p.client().write(&[7; 25_000]), 10_000);
    assert_eq!(p.client().write(&[7; 10]), 0);
    assert_eq!(p.client().send_space(), 0);
    assert!(p.run_until(SEC, |p| p.client().all_acked()));
    assert_eq!(p.client().send_space(), 10_000);
}

#[test]
fn stats_report_estimates_and_counters() {
    let mut p = established(ConnConfig::default());
    send_and_check(&mut p, 0, 200_000);
    let s = p.client().stats();
    assert!(s.srtt_us >= 100 && s.srtt_us < 2000, "{s:?}");
    assert!(s.rto_us >= 5_000);
    assert!(s.cwnd >= 10 * 1408);
    assert_eq!(s.bytes_sent, 200_000);
    assert_eq!(p.server().stats().bytes_received, 200_000);
    assert_eq!(s.peer_window as usize, 4 << 20);
    assert_eq!(p.client().congestion_name(), "cubic");
}

#[test]
fn random_and_mutated_segments_never_panic() {
    let mut p = Pair::new(ConnConfig::default(), ConnConfig::default(), clean(), 11);
    p.establish();
    let captured = Rc::new(RefCell::new(Vec::<(usize, Vec<u8>)>::new()));
    let c = captured.clone();
    p.filter = Some(Box::new(move |to, h, payload| {
        let mut bytes = Vec::new();
        wire::emit(h, payload, &mut bytes);
        let mut c = c.borrow_mut();
        if c.len() < 256 {
            c.push((to, bytes));
        }
        true
    }));
    let block: Vec<u8> = (0..30_000).map(|o| pattern(0, o)).collect();
    p.client().write(&block);
    p.server().write(&block);
    p.run_until(20 * MS, |_| false);
    p.filter = None;
    let samples = captured.borrow().clone();
    assert!(!samples.is_empty());
    let mut rng = Rng::new(99);
    let mut buf = vec![0; 4096];
    for i in 0..5_000 {
        let (to, mut bytes) = if i % 3 == 0 {
            let len = rng.below(200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if b.len() >= 40 && rng.chance(700) {
                b[..4].copy_from_slice(&[0x51, 0xCE, 1, 1 + rng.below(5) as u8]);
                b[5] = 0;
                let data_len = (b.len() - 40) as u16;
                b[6..8].copy_from_slice(&data_len.to_be_bytes());
            }
            (rng.below(2) as usize, b)
        } else {
            samples[rng.below(samples.len() as u64) as usize].clone()
        };
        if i % 3 != 0 {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
        }
        if let Ok((h, payload)) = wire::parse(&bytes) {
            if let Some(conn) = p.conns[to].as_mut() {
                conn.handle(p.now, &h, payload);
            }
        }
        if i % 50 == 0 {
            p.now += 100 * US;
            p.step();
            for conn in p.conns.iter_mut().flatten() {
                conn.read(&mut buf, false);
                let _ = (conn.next_deadline(), conn.stats());
            }
        }
    }
}

#[test]
fn connections_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Connection>();
}

#[test]
fn the_smaller_mss_of_the_two_sides_is_used() {
    let client = ConnConfig::default();
    let server = ConnConfig {
        mss: 500,
        ..ConnConfig::default()
    };
    let mut p = Pair::new(client, server, clean(), 8);
    let largest = Rc::new(RefCell::new([0usize; 2]));
    let l = largest.clone();
    p.filter = Some(Box::new(move |to, _, payload| {
        let mut l = l.borrow_mut();
        l[to] = l[to].max(payload.len());
        true
    }));
    p.establish();
    send_and_check(&mut p, 0, 50_000);
    p.server().write(&[1; 50_000]);
    assert!(p.run_until(SEC, |p| p.client().readable() == 50_000));
    assert_eq!(*largest.borrow(), [500, 500]);
}

#[test]
fn buffers_smaller_than_a_segment_still_carry_a_lossy_stream() {
    let config = ConnConfig {
        recv_buffer: 1000,
        send_buffer: 3000,
        ..ConnConfig::default()
    };
    let net = NetConfig {
        loss_per_mille: 50,
        reorder_per_mille: 50,
        dup_per_mille: 20,
        ..clean()
    };
    let mut p = Pair::new(config, config, net, 9);
    p.establish();
    let total = 200_000u64;
    let (mut written, mut got) = (0u64, Vec::new());
    let mut buf = [0; 4096];
    assert!(p.run_until(60 * SEC, |p| {
        while written < total {
            let byte = [pattern(0, written)];
            if p.client().write(&byte) == 0 {
                break;
            }
            written += 1;
        }
        let n = p.server().read(&mut buf, false);
        got.extend_from_slice(&buf[..n]);
        assert!(p.server().stats().recv_queued <= 1000);
        assert!(p.client().stats().send_queued <= 3000);
        got.len() as u64 == total
    }));
    let expect: Vec<u8> = (0..total).map(|o| pattern(0, o)).collect();
    assert_eq!(got, expect);
}

#[test]
fn an_unacceptable_segment_before_the_handshake_completes_does_not_spin() {
    let mut c = Connection::connect(ConnConfig::default(), T0, CLIENT_ID, 500);
    let (syn, payload) = drain(&mut c, T0).remove(0);
    let mut s = Connection::accept(ConnConfig::default(), T0, SERVER_ID, 9, &syn, &payload);
    drain(&mut s, T0);
    let mut stray = Header::new(SegmentType::Data, CLIENT_ID, SERVER_ID);
    stray.seq = 501u32.wrapping_add(1 << 30);
    s.handle(T0 + MS, &stray, b"junk");
    assert_eq!(s.state(), State::SynReceived);
    drain(&mut s, T0 + MS);
    assert!(s.next_deadline().unwrap() > T0 + MS);
}

#[test]
fn keepalive_turned_on_late_probes_at_its_interval_not_in_a_burst() {
    let mut p = established(ConnConfig::default());
    // Quiet for ten seconds (nothing is pending, so time just passes).
    p.step();
    assert_eq!(p.next_event(None), None);
    p.now += 10 * SEC;
    p.net.cut = [true, true];
    p.client().set_keepalive(Some(Keepalive {
        idle: SEC,
        interval: 100 * MS,
        count: 3,
    }));
    let start = p.now;
    let sent = p.client().stats().segments_sent;
    p.step();
    assert_eq!(
        p.client().stats().segments_sent,
        sent + 1,
        "one probe at once"
    );
    assert!(p.run_until(SEC, |p| p.client().error().is_some()));
    assert_eq!(p.client().stats().segments_sent, sent + 3);
    assert_eq!(p.now - start, 300 * MS);
}

#[test]
fn garbage_during_the_handshake_never_panics_or_spins() {
    let mut rng = Rng::new(5);
    for round in 0..200u64 {
        let now = T0 + round * SEC;
        let mut c = Connection::connect(ConnConfig::default(), now, CLIENT_ID, rng.next() as u32);
        let (syn, payload) = drain(&mut c, now).remove(0);
        let mut s = Connection::accept(ConnConfig::default(), now, SERVER_ID, 9, &syn, &payload);
        let mut good = Vec::new();
        s.poll_transmit(now, &mut |d| good = d.to_vec());
        for i in 0..20u64 {
            let t = now + i * 10 * US;
            let mut bytes = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            if let Ok((mut h, p)) = wire::parse(&bytes) {
                c.handle(t, &h, p);
                h.src_conn = if rng.chance(500) {
                    CLIENT_ID
                } else {
                    h.src_conn
                };
                h.dst_conn = if rng.chance(500) {
                    SERVER_ID
                } else {
                    h.dst_conn
                };
                s.handle(t, &h, p);
            }
            for conn in [&mut c, &mut s] {
                conn.poll_transmit(t, &mut |d| assert!(wire::parse(d).is_ok()));
                if let Some(due) = conn.next_deadline() {
                    assert!(due > t);
                }
            }
        }
    }
}

#[test]
fn a_down_link_moves_traffic_to_the_other_path_but_the_last_path_keeps_trying() {
    let mut p = established(ConnConfig::default());
    p.client().set_paths(2);
    p.server().set_paths(2);
    send_and_check(&mut p, 0, 200_000);
    let st = p.client().path_stats();
    assert!(
        st.iter()
            .all(|s| s.state == PathState::Active && s.bytes_sent > 0),
        "both paths answered their probes and carried data: {st:?}"
    );
    p.client().set_path_link(0, false);
    send_and_check(&mut p, 200_000, 200_000);
    let st = p.client().path_stats();
    assert_eq!(
        (st[0].state, st[0].last_failure),
        (PathState::Failed, Some(FailReason::LinkDown))
    );
    // Every link reported down (a wrong verdict, or the end of the network): the last path
    // goes on carrying the data rather than strand the connection.
    p.client().set_path_link(1, false);
    let before = p.client().path_stats()[1].bytes_sent;
    send_and_check(&mut p, 400_000, 200_000);
    let st = p.client().path_stats();
    assert_eq!(st[1].state, PathState::Active);
    assert!(st[1].bytes_sent >= before + 200_000, "{st:?}");
    // The links are back: path 0 is probed, answers, and carries data again.
    p.client().set_path_link(0, true);
    p.client().set_path_link(1, true);
    let before = p.client().path_stats()[0].bytes_sent;
    send_and_check(&mut p, 600_000, 400_000);
    let st = p.client().path_stats();
    assert_eq!(st[0].state, PathState::Active);
    assert!(st[0].bytes_sent > before, "{st:?}");
}

#[test]
fn a_silent_path_fails_its_data_moves_and_it_comes_back_when_it_answers() {
    let mut p = established(ConnConfig::default());
    p.client().set_paths(2);
    p.server().set_paths(2);
    send_and_check(&mut p, 0, 200_000);
    // Path 0 drops everything, both ways, with no word about its link.
    let silent = Rc::new(RefCell::new(true));
    let s = silent.clone();
    p.filter = Some(Box::new(move |_, h, _| !(*s.borrow() && h.path == 0)));
    send_and_check(&mut p, 200_000, 1_000_000);
    let st = p.client().path_stats();
    assert_eq!(
        (st[0].state, st[0].last_failure, st[0].failures),
        (PathState::Failed, Some(FailReason::Silent), 1),
        "{st:?}"
    );
    assert!(st[0].losses > 0, "what path 0 carried was resent: {st:?}");
    *silent.borrow_mut() = false;
    // Probed 10 ms after the failure, then every 20, 40, ... 200 ms: back within a second.
    assert!(p.run_until(SEC, |p| p.client().path_stats()[0].state
        == PathState::Active));
    let before = p.client().path_stats()[0].bytes_sent;
    send_and_check(&mut p, 1_200_000, 1_000_000);
    let st = p.client().path_stats();
    assert_eq!(st[0].state, PathState::Active, "{st:?}");
    assert!(
        st[0].bytes_sent > before,
        "path 0 carries data again: {st:?}"
    );
}
