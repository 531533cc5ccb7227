//! Tests of the neighbour table.

use super::*;
use crate::wire::EthernetHeader;

const US: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 9);
const OUR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn table() -> Neighbours {
    Neighbours::new(OUR_MAC, &[US], NeighbourConfig::default())
}

fn arp(frame: &[u8]) -> (EthernetHeader, ArpMessage) {
    let (eth, payload) = EthernetHeader::parse(frame).unwrap();
    (eth, ArpMessage::parse(payload).unwrap())
}

fn request(from_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpMessage {
    ArpMessage {
        op: ArpOp::Request,
        sender_mac: PEER_MAC,
        sender_ip: from_ip,
        target_mac: MacAddr([0; 6]),
        target_ip,
    }
}

fn reply(from_ip: Ipv4Addr) -> ArpMessage {
    ArpMessage {
        op: ArpOp::Reply,
        sender_mac: PEER_MAC,
        sender_ip: from_ip,
        target_mac: OUR_MAC,
        target_ip: US,
    }
}

fn ip_frame(tag: u8) -> Vec<u8> {
    vec![tag; 40]
}

#[test]
fn answers_requests_for_our_address_and_learns_the_asker() {
    let mut n = table();
    let mut tx = Vec::new();
    assert_eq!(
        n.receive(0, &request(PEER, US), &mut tx),
        ArpOutcome::Answered
    );
    let (eth, msg) = arp(&tx[0]);
    assert_eq!((eth.dst, eth.src), (PEER_MAC, OUR_MAC));
    assert_eq!(
        (msg.op, msg.sender_mac, msg.sender_ip, msg.target_ip),
        (ArpOp::Reply, OUR_MAC, US, PEER)
    );
    assert_eq!(n.lookup(PEER), Some(PEER_MAC));
}

#[test]
fn ignores_arp_for_other_addresses() {
    let mut n = table();
    let mut tx = Vec::new();
    assert_eq!(
        n.receive(0, &request(PEER, OTHER), &mut tx),
        ArpOutcome::Ignored
    );
    assert!(tx.is_empty());
    assert_eq!(
        n.lookup(PEER),
        None,
        "no entry from chatter not addressed to us"
    );
    assert_eq!(
        n.receive(
            0,
            &ArpMessage {
                target_ip: OTHER,
                ..reply(PEER)
            },
            &mut tx
        ),
        ArpOutcome::Ignored
    );
    assert_eq!(n.counters().ignored, 2);
}

#[test]
fn someone_claiming_our_address_is_counted_not_learned() {
    let mut n = table();
    let mut tx = Vec::new();
    assert_eq!(
        n.receive(0, &request(US, PEER), &mut tx),
        ArpOutcome::Ignored
    );
    assert_eq!(n.counters().conflicts, 1);
    assert_eq!(n.lookup(US), None);
}

#[test]
fn several_senders_wait_on_one_resolution_and_leave_in_order() {
    let mut n = table();
    let mut tx = Vec::new();
    for tag in 1..=3 {
        n.send(0, PEER, ip_frame(tag), &mut tx).unwrap();
    }
    assert_eq!(tx.len(), 1, "one broadcast request, not one per frame");
    let (eth, msg) = arp(&tx[0]);
    assert_eq!(
        (eth.dst, msg.op, msg.target_ip, msg.sender_ip),
        (MacAddr::BROADCAST, ArpOp::Request, PEER, US)
    );
    tx.clear();
    assert_eq!(n.receive(10, &reply(PEER), &mut tx), ArpOutcome::Learned);
    assert_eq!(tx.len(), 3);
    for (i, frame) in tx.iter().enumerate() {
        let (eth, _) = EthernetHeader::parse(frame).unwrap();
        assert_eq!(
            (eth.dst, eth.src, eth.ethertype),
            (PEER_MAC, OUR_MAC, EtherType::Ipv4)
        );
        assert_eq!(frame[20], i as u8 + 1);
    }
    assert_eq!(n.queued(), 0);
}

#[test]
fn queue_overflow_drops_and_counts() {
    let config = NeighbourConfig {
        max_queued_per_neighbour: 2,
        max_queued_total: 3,
        ..Default::default()
    };
    let mut n = Neighbours::new(OUR_MAC, &[US], config);
    let mut tx = Vec::new();
    n.send(0, PEER, ip_frame(1), &mut tx).unwrap();
    n.send(0, PEER, ip_frame(2), &mut tx).unwrap();
    assert_eq!(
        n.send(0, PEER, ip_frame(3), &mut tx),
        Err(QueueFull::Neighbour)
    );
    n.send(0, OTHER, ip_frame(4), &mut tx).unwrap();
    assert_eq!(
        n.send(0, OTHER, ip_frame(5), &mut tx),
        Err(QueueFull::Total)
    );
    assert_eq!(n.counters().queue_overflow_drops, 2);
    assert_eq!(n.queued(), 3);
}

#[test]
fn resolution_retries_a_bounded_number_of_times_then_gives_up() {
    let mut n = table();
    let mut tx = Vec::new();
    n.send(0, PEER, ip_frame(1), &mut tx).unwrap();
    n.send(0, PEER, ip_frame(2), &mut tx).unwrap();
    assert!(n.poll(SECOND / 2, &mut tx).is_empty());
    assert_eq!(tx.len(), 1, "no retry before the interval");
    assert!(n.poll(SECOND, &mut tx).is_empty());
    assert!(n.poll(2 * SECOND, &mut tx).is_empty());
    assert_eq!(n.counters().requests_sent, 3);
    assert_eq!(n.poll(3 * SECOND, &mut tx), vec![PEER]);
    assert_eq!(
        n.counters().requests_sent,
        3,
        "max_requests bounds the retries"
    );
    assert_eq!(n.counters().unresolved_drops, 2);
    assert_eq!(n.queued(), 0);
    assert!(n.poll(60 * SECOND, &mut tx).is_empty(), "given up for good");
}

#[test]
fn stale_entries_in_use_are_probed_by_unicast_and_refreshed() {
    let mut n = table();
    let mut tx = Vec::new();
    n.receive(0, &request(PEER, US), &mut tx);
    tx.clear();
    let stale_at = 30 * SECOND;
    n.send(stale_at, PEER, ip_frame(1), &mut tx).unwrap();
    assert_eq!(tx.len(), 2, "the frame still leaves, plus a probe");
    let (eth, msg) = arp(&tx[1]);
    assert_eq!(
        (eth.dst, msg.op, msg.target_ip),
        (PEER_MAC, ArpOp::Request, PEER)
    );
    n.receive(stale_at + 1, &reply(PEER), &mut tx);
    assert!(!n.entries(stale_at + 2)[0].stale);
    tx.clear();
    assert!(n.poll(stale_at + 5 * SECOND, &mut tx).is_empty());
    assert!(tx.is_empty(), "no more probes once confirmed");
}

#[test]
fn a_silent_stale_neighbour_is_forgotten() {
    let mut n = table();
    let mut tx = Vec::new();
    n.receive(0, &request(PEER, US), &mut tx);
    n.send(30 * SECOND, PEER, ip_frame(1), &mut tx).unwrap();
    for s in 31..=33 {
        n.poll(s * SECOND, &mut tx);
    }
    assert_eq!(n.lookup(PEER), None);
    assert_eq!(n.counters().requests_sent, 3);
}

#[test]
fn unused_entries_expire() {
    let mut n = table();
    let mut tx = Vec::new();
    n.receive(0, &request(PEER, US), &mut tx);
    n.poll(59 * SECOND, &mut tx);
    assert_eq!(n.lookup(PEER), Some(PEER_MAC));
    n.poll(60 * SECOND, &mut tx);
    assert_eq!(n.lookup(PEER), None);
}

#[test]
fn gratuitous_arp_from_a_known_neighbour_updates_it() {
    let mut n = table();
    let mut tx = Vec::new();
    n.receive(0, &request(PEER, US), &mut tx);
    let moved = MacAddr([2, 0, 0, 0, 0, 0x22]);
    let gratuitous = ArpMessage {
        sender_mac: moved,
        ..request(PEER, PEER)
    };
    assert_eq!(n.receive(1, &gratuitous, &mut tx), ArpOutcome::Learned);
    assert_eq!(n.lookup(PEER), Some(moved));
}

#[test]
fn announce_sends_gratuitous_arp_for_each_address() {
    let mut n = table();
    let mut tx = Vec::new();
    n.add_address(Ipv4Addr::new(10, 77, 3, 1), &mut tx);
    tx.clear();
    n.announce(&mut tx);
    assert_eq!(tx.len(), 2);
    let (eth, msg) = arp(&tx[0]);
    assert_eq!(
        (eth.dst, msg.sender_ip, msg.target_ip, msg.sender_mac),
        (MacAddr::BROADCAST, US, US, OUR_MAC)
    );
}

#[test]
fn the_table_is_bounded() {
    let config = NeighbourConfig {
        max_entries: 4,
        ..Default::default()
    };
    let mut n = Neighbours::new(OUR_MAC, &[US], config);
    let mut tx = Vec::new();
    for i in 0..20u8 {
        let msg = ArpMessage {
            sender_ip: Ipv4Addr::new(10, 77, 2, 100 + i),
            ..request(PEER, US)
        };
        n.receive(i as u64, &msg, &mut tx);
    }
    assert_eq!(n.entries(20).len(), 4);
    assert_eq!(
        n.lookup(Ipv4Addr::new(10, 77, 2, 119)),
        Some(PEER_MAC),
        "newest kept"
    );
}
