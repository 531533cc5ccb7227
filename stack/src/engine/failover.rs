//! Port failover for a stack with several data ports: each port's health (carrier and
//! silence, see [`crate::port_health`]) and the move of a failed port's address to a surviving
//! port.
//!
//! A failed port's [`Interface`](crate::iface::Interface) (its address, sockets, neighbours)
//! stays as it is but is carried by a surviving port's link and answers with that port's MAC:
//! the survivor's link hands it the frames addressed to its IP (ARP for it included), its
//! frames leave through the survivor's link, and it announces the move with gratuitous ARP.
//! Datagram sockets bound to the moved address keep their address and see nothing. Streams do
//! not move with it: they have their own paths ([`Streams::port_state`] hears of every change),
//! so stream datagrams to a moved address are not handed to it and a moved interface sends
//! none.
//!
//! Nothing here runs on a stack with one port.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::{Engine, Port, RX_BURST};
use crate::link::{LinkError, MacAddr};
use crate::port_health::{hosts, Observed};
use crate::wire::{
    ArpMessage, ArpOp, EtherType, EthernetHeader, Ipv4Header, PROTO_UDP, UDP_HEADER_LEN,
};

/// How often the helper reads the carriers of netdev ports (outside the engine lock), and
/// the engine looks at them and at the links' own status.
pub(crate) const CARRIER_CHECK: Duration = Duration::from_millis(10);
/// How often the engine runs the ports' health timers.
const HEALTH_CHECK_NS: u64 = 1_000_000;
/// Gratuitous ARPs sent when an address moves, and their spacing: a peer that misses one
/// (a busy switch, a lost frame) hears the next.
const GARPS: u32 = 3;
const GARP_INTERVAL_NS: u64 = 50_000_000;

const CARRIER_UNKNOWN: u8 = 0;
const CARRIER_UP: u8 = 1;
const CARRIER_DOWN: u8 = 2;

/// The carriers of netdev-backed ports as the kernel sees them (/sys/class/net/IF/carrier):
/// DPDK's af_packet and af_xdp ports report a link that is always up.
pub(crate) struct Carriers {
    files: Vec<Option<PathBuf>>,
    states: Vec<AtomicU8>,
}

impl Carriers {
    /// `netdevs`: each port's netdev name, if it has one.
    pub(crate) fn new(netdevs: Vec<Option<String>>) -> Carriers {
        Carriers {
            states: netdevs
                .iter()
                .map(|_| AtomicU8::new(CARRIER_UNKNOWN))
                .collect(),
            files: netdevs
                .into_iter()
                .map(|n| n.map(|n| PathBuf::from(format!("/sys/class/net/{n}/carrier"))))
                .collect(),
        }
    }

    /// Reads them (the helper thread, every [`CARRIER_CHECK`]). An interface that is
    /// administratively down has no carrier file to read: that is down too, but a file that is
    /// missing altogether (a sysfs of another namespace) says nothing.
    pub(crate) fn read(&self) {
        for (file, state) in self.files.iter().zip(&self.states) {
            let Some(file) = file else { continue };
            let value = match std::fs::read_to_string(file) {
                Ok(text) if text.trim() == "1" => CARRIER_UP,
                Ok(_) => CARRIER_DOWN,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => CARRIER_UNKNOWN,
                Err(_) => CARRIER_DOWN,
            };
            state.store(value, Ordering::Relaxed);
        }
    }

    pub(crate) fn watched(&self) -> bool {
        self.files.iter().any(Option::is_some)
    }

    fn down(&self, port: usize) -> bool {
        self.states
            .get(port)
            .is_some_and(|s| s.load(Ordering::Relaxed) == CARRIER_DOWN)
    }
}

/// One port's health and moves, for the counters and sluice-stat.
pub(crate) struct PortState {
    pub(crate) own_mac: MacAddr,
    pub(crate) changes: u64,
    pub(crate) last_change: Option<String>,
    pub(crate) serves: Vec<Ipv4Addr>,
    pub(crate) moves: u64,
    pub(crate) garps_sent: u64,
    pub(crate) probes_sent: u64,
    pub(crate) link_rx_frames: u64,
    pub(crate) link_tx_frames: u64,
    pub(crate) carried_rx_frames: u64,
    pub(crate) carried_tx_frames: u64,
}

/// The engine's failover state.
#[derive(Debug, Default)]
pub(crate) struct Failover {
    next_check: u64,
    next_carrier_check: u64,
    /// Some port's address is served by another port.
    pub(crate) moved: bool,
    announcements: Vec<Announcement>,
    /// The neighbour each port's health probes last asked: a port that stays down longer
    /// than its neighbour entries live still has someone to ask.
    probed: Vec<Option<Ipv4Addr>>,
}

#[derive(Debug)]
struct Announcement {
    port: usize,
    left: u32,
    next_at: u64,
}

impl Engine {
    /// Moves port `index`'s frames to the link that carries its interface.
    pub(crate) fn flush_port(&mut self, index: usize) {
        match self.ports[index].host {
            Some(host) => {
                self.ports[index].coalesce.flushed();
                let frames = self.ports[index].iface.take_frames();
                let waiting = std::mem::take(&mut self.ports[index].backlog);
                let carrier = &mut self.ports[host];
                carrier.carried_tx += (frames.len() + waiting.len()) as u64;
                carrier.backlog.extend(waiting);
                carrier.backlog.extend(frames);
                carrier.flush();
            }
            None => self.ports[index].flush(),
        }
    }

    /// After a datagram was queued on port `index` at `now`: to the device now, or with the
    /// rest of its burst when the application sends back to back (see `coalesce`). True when
    /// the frames went to the device (the caller tells `Coalesce::returned` when that ended).
    pub(crate) fn flush_port_soon(&mut self, index: usize, now: u64) -> bool {
        let flush = self.ports[index].coalesce.on_send(now);
        if flush {
            self.flush_port(index);
        }
        flush
    }

    pub(crate) fn flush_ports(&mut self) {
        for index in 0..self.ports.len() {
            self.flush_port(index);
        }
    }

    pub(crate) fn port_health(&self, index: usize) -> PortState {
        let p = &self.ports[index];
        PortState {
            own_mac: p.own_mac,
            changes: p.health.changes(),
            last_change: p.health.last_reason().map(|r| r.key()),
            serves: self.served_by(index),
            moves: p.moves,
            garps_sent: p.garps_sent,
            probes_sent: p.health.probes_sent(),
            link_rx_frames: p.link_rx,
            link_tx_frames: p.link_tx,
            carried_rx_frames: p.carried_rx,
            carried_tx_frames: p.carried_tx,
        }
    }

    /// The addresses port `index`'s link serves now: its own first, then those moved to it.
    pub(crate) fn served_by(&self, index: usize) -> Vec<Ipv4Addr> {
        let own = &self.ports[index];
        let home = own.host.is_none().then(|| own.iface.config().addr);
        let guests = (self.ports.iter())
            .filter(|p| p.host == Some(index))
            .map(|p| p.iface.config().addr);
        home.into_iter().chain(guests).collect()
    }

    /// Whether data port `index` works (a stack with one port: always).
    pub(crate) fn port_up(&self, index: usize) -> bool {
        self.ports.get(index).is_some_and(|p| p.health.up())
    }

    /// Receives a burst on port `index`'s link: the frames for addresses it serves for failed
    /// ports go to their interfaces. A port whose interface moved away listens for answers to
    /// its probes, answers the health probes of others for its own address (when a whole
    /// switch failed, the ports on it can only come back by answering each other), and learns
    /// from the ARP it hears where its neighbours are now (one of them may have moved its
    /// address too, and moved it back, while this port was down: its probes must find it).
    pub(crate) fn receive_port(&mut self, index: usize, now: u64) -> Result<usize, LinkError> {
        let guests: Vec<(usize, Ipv4Addr)> = if self.failover.moved {
            (self.ports.iter().enumerate())
                .filter(|(_, p)| p.host == Some(index))
                .map(|(g, p)| (g, p.iface.config().addr))
                .collect()
        } else {
            Vec::new()
        };
        let stream_ports: Vec<u16> = if guests.is_empty() {
            Vec::new()
        } else {
            self.streams.carriers().map(|(p, _)| p).collect()
        };
        let port = &mut self.ports[index];
        let moved_away = port.host.is_some();
        let watch = port.health.awaiting_answer();
        let own = port.own_mac;
        let own_ip = port.iface.config().addr;
        let mut probed_by: Vec<MacAddr> = Vec::new();
        let mut heard: Vec<ArpMessage> = Vec::new();
        let mut answers = 0u64;
        let mut for_guests: Vec<(usize, Vec<u8>)> = Vec::new();
        let iface = &mut port.iface;
        let got = port.link.recv_frames(RX_BURST, &mut |frame| {
            if watch && answers_probe(frame, own) {
                answers += 1;
            }
            if moved_away {
                match heard_while_away(frame, own_ip) {
                    Some(Heard::Probe(asker)) => probed_by.push(asker),
                    Some(Heard::Neighbour(m)) => heard.push(m),
                    None => {}
                }
                return;
            }
            if let Some(guest) = guest_of(frame, &guests, &stream_ports) {
                for_guests.push((guest, frame.to_vec()));
                return;
            }
            iface.receive(now, frame)
        });
        port.answers += answers;
        for asker in probed_by {
            port.answer_probe(asker);
        }
        // Only ARP about others (no request for our address), so it teaches the interface
        // where its neighbours are and answers nothing; as a broadcast, as the interface's MAC
        // is its carrier's now.
        for m in heard {
            port.iface.receive(now, &m.to_frame(MacAddr::BROADCAST));
        }
        if let Ok(n) = got {
            port.link_rx += n as u64;
        }
        port.carried_rx += for_guests.len() as u64;
        for (guest, frame) in for_guests {
            self.ports[guest].iface.receive(now, &frame);
        }
        got
    }

    /// The ports' health timers, the moves they call for, and due announcements (every
    /// millisecond at most; only with more than one port).
    pub(crate) fn check_ports(&mut self, now: u64, carriers: &Carriers) {
        if self.ports.len() < 2 || now < self.failover.next_check {
            return;
        }
        self.failover.next_check = now + HEALTH_CHECK_NS;
        let carrier_due = now >= self.failover.next_carrier_check;
        if carrier_due {
            self.failover.next_carrier_check = now + CARRIER_CHECK.as_nanos() as u64;
        }
        let mut changed = false;
        for index in 0..self.ports.len() {
            let port = &mut self.ports[index];
            let mut changes = Vec::new();
            if carrier_due {
                let (link_up, kernel_down) = (port.link.is_up(), carriers.down(index));
                let change = port.health.carrier(link_up && !kernel_down);
                if change.is_some() && link_up {
                    log::info!("port p{index}: the device reports its link up, the kernel's carrier is down");
                }
                changes.extend(change);
            }
            let answers = port.answers - port.seen_answers;
            let seen = Observed {
                received: port.link_rx - port.seen_rx > answers,
                sent: port.link_tx != port.seen_tx,
                answered: answers > 0,
            };
            (port.seen_rx, port.seen_tx) = (port.link_rx, port.link_tx);
            port.seen_answers = port.answers;
            let target = port.iface.neighbours().probe_target();
            self.failover.probed.resize(index + 1, None);
            let probed = &mut self.failover.probed[index];
            if let Some((ip, _)) = target {
                *probed = Some(ip);
            }
            // A port that is down asks whoever holds the neighbour's address now (broadcast):
            // the MAC it learned may have moved on while it heard nothing.
            let ask = if port.health.up() {
                target.map(|(ip, mac)| (ip, Some(mac)))
            } else {
                probed.map(|ip| (ip, None))
            };
            let verdict = port.health.poll(now, seen, ask.is_some());
            if let (true, Some((ip, mac))) = (verdict.probe, ask) {
                port.send_probe(ip, mac);
            }
            changes.extend(verdict.change);
            for change in changes {
                let addr = port.iface.config().addr;
                let state = if change.up { "up" } else { "down" };
                log::info!("port p{index} ({addr}) {state}: {}", change.reason);
                self.streams.port_state(index, change.up);
                changed = true;
            }
        }
        if changed {
            self.move_addresses(now);
        }
        self.announce(now);
    }

    /// Puts every port's interface on the link that should carry it now.
    fn move_addresses(&mut self, now: u64) {
        let up: Vec<bool> = self.ports.iter().map(|p| p.health.up()).collect();
        let current: Vec<Option<usize>> = self.ports.iter().map(|p| p.host).collect();
        let next = hosts(&up, &current);
        for (index, host) in next.iter().enumerate() {
            if *host == current[index] {
                continue;
            }
            let carrier = host.unwrap_or(index);
            let mac = self.ports[carrier].own_mac;
            let port = &mut self.ports[index];
            port.iface.set_mac(mac);
            port.host = *host;
            port.moves += 1;
            let addr = port.iface.config().addr;
            match host {
                Some(_) => log::info!("port p{index}: address {addr} moves to p{carrier} ({mac})"),
                None => log::info!("port p{index}: address {addr} moves back ({mac})"),
            }
            self.failover.announcements.retain(|a| a.port != index);
            self.failover.announcements.push(Announcement {
                port: index,
                left: GARPS,
                next_at: now,
            });
        }
        self.failover.moved = next.iter().any(Option::is_some);
    }

    /// Gratuitous ARPs that are due, from the link carrying each moved interface.
    fn announce(&mut self, now: u64) {
        let due: Vec<usize> = (self.failover.announcements.iter())
            .filter(|a| now >= a.next_at)
            .map(|a| a.port)
            .collect();
        for index in due {
            self.ports[index].iface.up();
            let carrier = self.ports[index].host.unwrap_or(index);
            self.ports[carrier].garps_sent += 1;
            self.flush_port(index);
        }
        for a in &mut self.failover.announcements {
            if now >= a.next_at {
                a.left -= 1;
                a.next_at = now + GARP_INTERVAL_NS;
            }
        }
        self.failover.announcements.retain(|a| a.left > 0);
    }
}

impl Port {
    /// A health probe: an ARP request for `ip` from the port's own MAC with sender address
    /// 0.0.0.0 (RFC 5227), which the neighbour answers without learning anything from it (a
    /// probe from a failed port must not pull its moved address back). Unicast to `mac`, or
    /// broadcast without one.
    fn send_probe(&mut self, ip: Ipv4Addr, mac: Option<MacAddr>) {
        let probe = ArpMessage {
            op: ArpOp::Request,
            sender_mac: self.own_mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: mac.unwrap_or(MacAddr([0; 6])),
            target_ip: ip,
        };
        // Straight to this port's own link, whoever carries its interface.
        self.send_on_own_link(&probe.to_frame(mac.unwrap_or(MacAddr::BROADCAST)));
    }

    /// Answers the health probe of the port at `asker` from this port's own link while its
    /// address lives elsewhere: a reply for 0.0.0.0 from 0.0.0.0, which proves the link works
    /// and teaches the asker nothing (its neighbour entry for our address stays where the
    /// gratuitous ARPs put it).
    fn answer_probe(&mut self, asker: MacAddr) {
        let reply = ArpMessage {
            op: ArpOp::Reply,
            sender_mac: self.own_mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: asker,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        self.send_on_own_link(&reply.to_frame(asker));
    }

    /// Sends a health frame (a probe or an answer to one), which is not traffic: the next
    /// health check does not count it as sent (a probe that did would call for the next one,
    /// 20 ms after its answer, for ever).
    fn send_on_own_link(&mut self, frame: &[u8]) {
        match self.link.send_frame(frame) {
            Ok(true) => {
                self.link_tx += 1;
                self.seen_tx += 1;
            }
            Ok(false) | Err(_) => self.tx_drops += 1,
        }
    }
}

/// What a port whose address moved away takes from its own link.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A health probe for its address, from the port at this MAC.
    Probe(MacAddr),
    /// ARP from a neighbour (its address in it) that asks nothing of this port.
    Neighbour(ArpMessage),
}

/// What `frame`, received on the own link of a port whose address `ip` moved away, is to it.
fn heard_while_away(frame: &[u8], ip: Ipv4Addr) -> Option<Heard> {
    let m = arp_of(frame)?;
    if m.op == ArpOp::Request && m.target_ip == ip {
        // Others' requests for the address are answered where it lives now.
        return m
            .sender_ip
            .is_unspecified()
            .then_some(Heard::Probe(m.sender_mac));
    }
    (!m.sender_ip.is_unspecified() && m.sender_ip != ip).then_some(Heard::Neighbour(m))
}

/// An answer to a health probe: an ARP reply to `own` for 0.0.0.0.
fn answers_probe(frame: &[u8], own: MacAddr) -> bool {
    arp_of(frame).is_some_and(|m| {
        m.op == ArpOp::Reply && m.target_mac == own && m.target_ip.is_unspecified()
    })
}

/// The ARP message `frame` carries, if it is one.
fn arp_of(frame: &[u8]) -> Option<ArpMessage> {
    let (eth, payload) = EthernetHeader::parse(frame).ok()?;
    if eth.ethertype != EtherType::Arp {
        return None;
    }
    ArpMessage::parse(payload).ok()
}

/// The guest interface a frame is for: ARP about, or IPv4 to, a moved address, except stream
/// datagrams (streams do not follow the address).
fn guest_of(frame: &[u8], guests: &[(usize, Ipv4Addr)], stream_ports: &[u16]) -> Option<usize> {
    if guests.is_empty() {
        return None;
    }
    let (eth, payload) = EthernetHeader::parse(frame).ok()?;
    let find = |ip: Ipv4Addr| guests.iter().find(|(_, a)| *a == ip).map(|(g, _)| *g);
    match eth.ethertype {
        EtherType::Arp => find(ArpMessage::parse(payload).ok()?.target_ip),
        EtherType::Ipv4 => {
            let (header, rest) = Ipv4Header::parse(payload).ok()?;
            let guest = find(header.dst)?;
            let first = header.fragment_offset == 0;
            if header.protocol == PROTO_UDP && first && rest.len() >= UDP_HEADER_LEN {
                let dst_port = u16::from_be_bytes([rest[2], rest[3]]);
                if stream_ports.contains(&dst_port) {
                    return None;
                }
            }
            Some(guest)
        }
        EtherType::Other(_) => None,
    }
}
