//! ARP: the stack's own neighbour table (never the kernel's).
//!
//! [`Neighbours`] answers requests for the data IPs it owns and only those,
//! resolves next hops with a bounded number of broadcast requests, parks the
//! frames waiting for an answer in a bounded queue, ages entries out (a stale
//! entry in use is re-confirmed with unicast probes, as Linux does) and
//! announces its addresses with gratuitous ARP when a port comes up.
//!
//! Time is a monotonic nanosecond count passed in by the caller.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::wire::{ArpMessage, ArpOp, EtherType, EthernetHeader, MacAddr};

const SECOND: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// How long an answer is trusted before the entry goes stale.
    pub reachable_ns: u64,
    /// Interval between requests (broadcast while resolving, unicast while probing).
    pub retry_interval_ns: u64,
    /// Requests sent before a next hop is declared unreachable.
    pub max_requests: u32,
    /// Frames parked per unresolved next hop.
    pub max_queued_per_neighbour: usize,
    /// Frames parked over all unresolved next hops.
    pub max_queued_total: usize,
    /// Entries kept (resolved plus resolving); the oldest resolved one makes room.
    pub max_entries: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            reachable_ns: 30 * SECOND,
            retry_interval_ns: SECOND,
            max_requests: 3,
            max_queued_per_neighbour: 64,
            max_queued_total: 1024,
            max_entries: 1024,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighbourCounters {
    pub requests_sent: u64,
    pub replies_sent: u64,
    pub announcements_sent: u64,
    /// Entries created or refreshed from received ARP.
    pub learned: u64,
    /// ARP about addresses that are not ours and neighbours we do not track.
    pub ignored: u64,
    /// Someone else claims one of our addresses.
    pub conflicts: u64,
    /// Frames dropped because the waiting queue was full.
    pub queue_overflow_drops: u64,
    /// Frames dropped because their next hop never answered.
    pub unresolved_drops: u64,
}

/// What a received ARP message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A request for one of our addresses: a reply was queued.
    Answered,
    /// A neighbour's address was learned or refreshed.
    Learned,
    /// Not about us: nothing changed.
    Ignored,
}

/// Why a frame could not be handed to [`Neighbours::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFull {
    Neighbour,
    Total,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: MacAddr,
    confirmed_at: u64,
    /// Unicast probes sent since the entry went stale and was used.
    probes_sent: u32,
    next_probe_at: u64,
}

#[derive(Debug)]
struct Resolving {
    waiting: VecDeque<Vec<u8>>,
    requests_sent: u32,
    next_request_at: u64,
}

/// A resolved neighbour, for display (sluice-stat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub stale: bool,
}

pub struct Neighbours {
    mac: MacAddr,
    addrs: Vec<Ipv4Addr>,
    config: NeighbourConfig,
    entries: HashMap<Ipv4Addr, Entry>,
    resolving: HashMap<Ipv4Addr, Resolving>,
    queued_total: usize,
    counters: NeighbourCounters,
    /// The neighbour a frame was last sent to (a port's health probes ask it).
    last_used: Option<Ipv4Addr>,
}

impl Neighbours {
    pub fn new(mac: MacAddr, addrs: &[Ipv4Addr], config: NeighbourConfig) -> Self {
        Neighbours {
            mac,
            addrs: addrs.to_vec(),
            config,
            entries: HashMap::new(),
            resolving: HashMap::new(),
            queued_total: 0,
            counters: NeighbourCounters::default(),
            last_used: None,
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Uses `mac` from now on: in what it sends and announces (the MAC of the port carrying
    /// these addresses after a failover).
    pub fn set_mac(&mut self, mac: MacAddr) {
        self.mac = mac;
    }

    /// The resolved neighbour most recently sent to, else any resolved one: whom a port's
    /// health probes ask.
    pub fn probe_target(&self) -> Option<(Ipv4Addr, MacAddr)> {
        self.last_used
            .and_then(|ip| Some((ip, self.entries.get(&ip)?.mac)))
            .or_else(|| {
                let (ip, e) = self.entries.iter().max_by_key(|(_, e)| e.confirmed_at)?;
                Some((*ip, e.mac))
            })
    }

    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.addrs.contains(&ip)
    }

    /// Takes over an address (e.g. a failed port's IP) and announces it.
    pub fn add_address(&mut self, ip: Ipv4Addr, tx: &mut Vec<Vec<u8>>) {
        if !self.owns(ip) {
            self.addrs.push(ip);
        }
        self.announce_one(ip, tx);
    }

    pub fn remove_address(&mut self, ip: Ipv4Addr) {
        self.addrs.retain(|a| *a != ip);
    }

    pub fn counters(&self) -> &NeighbourCounters {
        &self.counters
    }

    /// Gratuitous ARP for every address we own: switches and peers learn
    /// (or relearn, after a move) where our addresses live.
    pub fn announce(&mut self, tx: &mut Vec<Vec<u8>>) {
        for ip in self.addrs.clone() {
            self.announce_one(ip, tx);
        }
    }

    fn announce_one(&mut self, ip: Ipv4Addr, tx: &mut Vec<Vec<u8>>) {
        let msg = ArpMessage {
            op: ArpOp::Request,
            sender_mac: self.mac,
            sender_ip: ip,
            target_mac: MacAddr([0; 6]),
            target_ip: ip,
        };
        tx.push(msg.to_frame(MacAddr::BROADCAST));
        self.counters.announcements_sent += 1;
    }

    /// The MAC for `ip` if known (stale entries still count: they are being re-confirmed).
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&ip).map(|e| e.mac)
    }

    pub fn entries(&self, now: u64) -> Vec<NeighbourEntry> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(ip, e)| NeighbourEntry {
                ip: *ip,
                mac: e.mac,
                stale: self.is_stale(e, now),
            })
            .collect();
        out.sort_by_key(|e| e.ip);
        out
    }

    /// Frames parked waiting for resolution.
    pub fn queued(&self) -> usize {
        self.queued_total
    }

    fn is_stale(&self, entry: &Entry, now: u64) -> bool {
        now >= entry.confirmed_at.saturating_add(self.config.reachable_ns)
    }

    /// Handles one received ARP message, queueing any reply and any frames
    /// its answer releases on `tx`.
    pub fn receive(&mut self, now: u64, msg: &ArpMessage, tx: &mut Vec<Vec<u8>>) -> ArpOutcome {
        let for_us = self.owns(msg.target_ip);
        if msg.sender_mac.is_multicast() || msg.sender_mac == self.mac {
            self.counters.ignored += 1;
            return ArpOutcome::Ignored;
        }
        if self.owns(msg.sender_ip) {
            self.counters.conflicts += 1;
            log::warn!(
                "{} claims our address {} (ARP from another host)",
                msg.sender_mac,
                msg.sender_ip
            );
            return ArpOutcome::Ignored;
        }
        let known = self.entries.contains_key(&msg.sender_ip)
            || self.resolving.contains_key(&msg.sender_ip);
        // Learn from messages addressed to us, and refresh neighbours we
        // already track (their gratuitous ARP); never create entries from
        // other hosts' chatter. A probe (sender 0.0.0.0) teaches nothing.
        let mut learned = false;
        if (for_us || known) && !msg.sender_ip.is_unspecified() {
            self.learn(now, msg.sender_ip, msg.sender_mac, tx);
            learned = true;
        }
        if for_us && msg.op == ArpOp::Request {
            let reply = ArpMessage {
                op: ArpOp::Reply,
                sender_mac: self.mac,
                sender_ip: msg.target_ip,
                target_mac: msg.sender_mac,
                target_ip: msg.sender_ip,
            };
            tx.push(reply.to_frame(msg.sender_mac));
            self.counters.replies_sent += 1;
            return ArpOutcome::Answered;
        }
        if learned {
            ArpOutcome::Learned
        } else {
            self.counters.ignored += 1;
            ArpOutcome::Ignored
        }
    }

    fn learn(&mut self, now: u64, ip: Ipv4Addr, mac: MacAddr, tx: &mut Vec<Vec<u8>>) {
        self.counters.learned += 1;
        if !self.entries.contains_key(&ip)
            && self.entries.len() + self.resolving.len() >= self.config.max_entries
        {
            self.evict_oldest();
        }
        self.entries.insert(
            ip,
            Entry {
                mac,
                confirmed_at: now,
                probes_sent: 0,
                next_probe_at: 0,
            },
        );
        if let Some(resolving) = self.resolving.remove(&ip) {
            self.queued_total -= resolving.waiting.len();
            for mut frame in resolving.waiting {
                self.address(&mut frame, mac);
                tx.push(frame);
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(ip) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.confirmed_at)
            .map(|(ip, _)| *ip)
        {
            self.entries.remove(&ip);
        }
    }

    fn address(&self, frame: &mut [u8], dst: MacAddr) {
        EthernetHeader {
            dst,
            src: self.mac,
            ethertype: EtherType::Ipv4,
        }
        .write(frame);
    }

    fn request(&mut self, target_ip: Ipv4Addr, dst: MacAddr, tx: &mut Vec<Vec<u8>>) {
        let Some(&sender_ip) = self.addrs.first() else {
            return;
        };
        let msg = ArpMessage {
            op: ArpOp::Request,
            sender_mac: self.mac,
            sender_ip,
            target_mac: MacAddr([0; 6]),
            target_ip,
        };
        let target_mac = if dst.is_broadcast() {
            MacAddr([0; 6])
        } else {
            dst
        };
        tx.push(ArpMessage { target_mac, ..msg }.to_frame(dst));
        self.counters.requests_sent += 1;
    }

    /// Sends an IPv4 frame (Ethernet header space in front, filled here) to
    /// `next_hop`: at once if its MAC is known, else parked until resolution.
    pub fn send(
        &mut self,
        now: u64,
        next_hop: Ipv4Addr,
        mut frame: Vec<u8>,
        tx: &mut Vec<Vec<u8>>,
    ) -> Result<(), QueueFull> {
        if let Some(entry) = self.entries.get(&next_hop).copied() {
            self.last_used = Some(next_hop);
            self.address(&mut frame, entry.mac);
            tx.push(frame);
            if self.is_stale(&entry, now) && entry.probes_sent == 0 {
                self.request(next_hop, entry.mac, tx);
                let e = self.entries.get_mut(&next_hop).expect("entry just read");
                e.probes_sent = 1;
                e.next_probe_at = now + self.config.retry_interval_ns;
            }
            return Ok(());
        }
        if self.queued_total >= self.config.max_queued_total {
            self.counters.queue_overflow_drops += 1;
            return Err(QueueFull::Total);
        }
        if !self.resolving.contains_key(&next_hop) {
            if self.entries.len() + self.resolving.len() >= self.config.max_entries {
                self.evict_oldest();
            }
            self.request(next_hop, MacAddr::BROADCAST, tx);
            let resolving = Resolving {
                waiting: VecDeque::new(),
                requests_sent: 1,
                next_request_at: now + self.config.retry_interval_ns,
            };
            self.resolving.insert(next_hop, resolving);
        }
        let resolving = self.resolving.get_mut(&next_hop).expect("inserted above");
        if resolving.waiting.len() >= self.config.max_queued_per_neighbour {
            self.counters.queue_overflow_drops += 1;
            return Err(QueueFull::Neighbour);
        }
        resolving.waiting.push_back(frame);
        self.queued_total += 1;
        Ok(())
    }

    /// Runs timers: retries, give-ups, probes of stale entries, expiry.
    /// Returns the next hops that did not answer (their frames were dropped).
    pub fn poll(&mut self, now: u64, tx: &mut Vec<Vec<u8>>) -> Vec<Ipv4Addr> {
        let mut unreachable = Vec::new();
        let mut retry = Vec::new();
        for (ip, r) in &self.resolving {
            if now >= r.next_request_at {
                if r.requests_sent >= self.config.max_requests {
                    unreachable.push(*ip);
                } else {
                    retry.push(*ip);
                }
            }
        }
        for ip in &unreachable {
            let r = self.resolving.remove(ip).expect("listed above");
            self.queued_total -= r.waiting.len();
            self.counters.unresolved_drops += r.waiting.len() as u64;
        }
        for ip in retry {
            self.request(ip, MacAddr::BROADCAST, tx);
            let r = self.resolving.get_mut(&ip).expect("listed above");
            r.requests_sent += 1;
            r.next_request_at = now + self.config.retry_interval_ns;
        }
        let (reachable, interval, max) = (
            self.config.reachable_ns,
            self.config.retry_interval_ns,
            self.config.max_requests,
        );
        let mut probe = Vec::new();
        self.entries.retain(|ip, e| {
            if e.probes_sent > 0 && now >= e.next_probe_at {
                if e.probes_sent >= max {
                    return false; // probed and silent: forget it
                }
                probe.push((*ip, e.mac));
                e.probes_sent += 1;
                e.next_probe_at = now + interval;
            }
            // Unused stale entries are kept one more lifetime, then collected.
            now < e.confirmed_at.saturating_add(2 * reachable)
        });
        for (ip, mac) in probe {
            self.request(ip, mac, tx);
        }
        unreachable.sort();
        unreachable
    }
}

#[cfg(test)]
mod tests;
