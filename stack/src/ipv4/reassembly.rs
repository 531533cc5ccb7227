//! IPv4 reassembly: fragments in, whole datagrams out, under a memory bound.
//!
//! Datagrams in progress are keyed by (source, destination, protocol,
//! identification). Memory is accounted by the bytes actually allocated for
//! each datagram, capped in total and in number of datagrams: when a new
//! fragment does not fit, the oldest datagrams in progress are evicted (so a
//! flood of never-completing fragments cannot starve real traffic for long).
//! An exact duplicate of data already held is ignored (duplication on the
//! wire is harmless), but any other overlap drops the whole datagram: the
//! overlapping-fragment attacks rely on a receiver that picks one version.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::wire::{Ipv4Header, IPV4_HEADER_LEN, IPV4_MAX_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// A datagram not complete this long after its first fragment is dropped.
    pub timeout_ns: u64,
    /// Bytes held over all datagrams in progress.
    pub max_bytes: usize,
    /// Datagrams in progress at once.
    pub max_datagrams: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        // Linux: 30 s (ipfrag_time) and 4 MiB (ipfrag_high_thresh).
        ReassemblyConfig {
            timeout_ns: 30_000_000_000,
            max_bytes: 4 << 20,
            max_datagrams: 256,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyCounters {
    pub fragments: u64,
    pub reassembled: u64,
    /// Exact repeats of data already held, ignored.
    pub duplicates: u64,
    /// Datagrams dropped because fragments overlapped with different data,
    /// or disagreed about where the datagram ends.
    pub overlaps: u64,
    /// Fragments that cannot be valid: empty, misaligned, beyond 64 KiB.
    pub malformed: u64,
    pub timed_out: u64,
    /// Datagrams evicted (or fragments refused) to stay within the memory bound.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

struct Partial {
    started_at: u64,
    data: Vec<u8>,
    /// Byte ranges received, sorted, disjoint and not adjacent (merged).
    have: Vec<(usize, usize)>,
    /// Payload length, once the last fragment has arrived.
    total: Option<usize>,
}

impl Partial {
    fn is_complete(&self) -> bool {
        matches!(self.total, Some(total) if self.have == [(0, total)])
    }

    fn insert_range(&mut self, start: usize, end: usize) {
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }
}

/// How a new fragment relates to the data already held.
enum Fit {
    New,
    Duplicate,
    Conflict,
}

pub struct Reassembler {
    config: ReassemblyConfig,
    partials: HashMap<DatagramKey, Partial>,
    bytes: usize,
    counters: ReassemblyCounters,
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            partials: HashMap::new(),
            bytes: 0,
            counters: ReassemblyCounters::default(),
        }
    }

    pub fn counters(&self) -> &ReassemblyCounters {
        &self.counters
    }

    /// Datagrams in progress and the bytes they hold.
    pub fn in_progress(&self) -> (usize, usize) {
        (self.partials.len(), self.bytes)
    }

    /// Takes one fragment; returns the whole payload when this fragment completes its datagram.
    pub fn add(&mut self, now: u64, header: &Ipv4Header, payload: &[u8]) -> Option<Vec<u8>> {
        self.counters.fragments += 1;
        let key = DatagramKey {
            src: header.src,
            dst: header.dst,
            protocol: header.protocol,
            ident: header.ident,
        };
        let start = header.fragment_offset;
        let end = start + payload.len();
        // Offsets count 8-byte units, so only the last fragment may end off a multiple of 8.
        let misaligned = header.more_fragments && payload.len() & 7 != 0;
        if payload.is_empty() || misaligned || end > IPV4_MAX_LEN - IPV4_HEADER_LEN {
            self.counters.malformed += 1;
            return None;
        }
        if !self.partials.contains_key(&key) {
            if self.partials.len() >= self.config.max_datagrams {
                self.evict_oldest(None);
            }
            self.partials.insert(
                key,
                Partial {
                    started_at: now,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                },
            );
        }
        let partial = self.partials.get_mut(&key).expect("inserted above");
        let fit = fit(partial, start, end, payload);
        let ends_disagree = match (partial.total, header.more_fragments) {
            (Some(total), false) => total != end,
            (Some(total), true) => end > total,
            (None, false) => partial.have.last().is_some_and(|&(_, e)| e > end),
            (None, true) => false,
        };
        match fit {
            Fit::Duplicate if !ends_disagree => {
                self.counters.duplicates += 1;
                return None;
            }
            Fit::Conflict | Fit::Duplicate => {
                self.counters.overlaps += 1;
                self.remove(&key);
                return None;
            }
            Fit::New if ends_disagree => {
                self.counters.overlaps += 1;
                self.remove(&key);
                return None;
            }
            Fit::New => {}
        }
        let growth = end.saturating_sub(partial.data.len());
        if self.bytes + growth > self.config.max_bytes {
            self.evict_oldest(Some(key));
            while self.bytes + growth > self.config.max_bytes && self.evict_oldest(Some(key)) {}
            if self.bytes + growth > self.config.max_bytes {
                self.counters.evicted += 1;
                self.remove(&key);
                return None;
            }
        }
        let partial = self.partials.get_mut(&key).expect("kept by eviction");
        if growth > 0 {
            partial.data.resize(end, 0);
            self.bytes += growth;
        }
        partial.data[start..end].copy_from_slice(payload);
        partial.insert_range(start, end);
        if !header.more_fragments {
            partial.total = Some(end);
        }
        if !partial.is_complete() {
            return None;
        }
        let done = self.remove(&key).expect("complete datagram is present");
        self.counters.reassembled += 1;
        Some(done.data)
    }

    /// Drops datagrams older than the timeout; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let timeout = self.config.timeout_ns;
        let old: Vec<DatagramKey> = self
            .partials
            .iter()
            .filter(|(_, p)| now >= p.started_at.saturating_add(timeout))
            .map(|(k, _)| *k)
            .collect();
        for key in &old {
            self.remove(key);
        }
        self.counters.timed_out += old.len() as u64;
        old.len()
    }

    fn remove(&mut self, key: &DatagramKey) -> Option<Partial> {
        let partial = self.partials.remove(key)?;
        self.bytes -= partial.data.len();
        Some(partial)
    }

    /// Evicts the oldest datagram other than `keep`; false if there was none.
    fn evict_oldest(&mut self, keep: Option<DatagramKey>) -> bool {
        let oldest = self
            .partials
            .iter()
            .filter(|(k, _)| Some(**k) != keep)
            .min_by_key(|(_, p)| p.started_at)
            .map(|(k, _)| *k);
        match oldest {
            Some(key) => {
                self.remove(&key);
                self.counters.evicted += 1;
                true
            }
            None => false,
        }
    }
}

fn fit(partial: &Partial, start: usize, end: usize, payload: &[u8]) -> Fit {
    let overlapping = partial
        .have
        .iter()
        .filter(|&&(s, e)| s < end && start < e)
        .count();
    if overlapping == 0 {
        return Fit::New;
    }
    let contained = partial.have.iter().any(|&(s, e)| s <= start && end <= e);
    if contained && partial.data[start..end] == *payload {
        Fit::Duplicate
    } else {
        Fit::Conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PROTO_UDP;

    const SECOND: u64 = 1_000_000_000;

    fn header(ident: u16, offset: usize, more: bool, len: usize) -> Ipv4Header {
        Ipv4Header {
            src: Ipv4Addr::new(10, 77, 2, 2),
            dst: Ipv4Addr::new(10, 77, 2, 1),
            protocol: PROTO_UDP,
            ttl: 64,
            ident,
            dont_fragment: false,
            more_fragments: more,
            fragment_offset: offset,
            header_len: IPV4_HEADER_LEN,
            total_len: IPV4_HEADER_LEN + len,
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// Feeds `payload` cut into fragments of `size` bytes, in `order`.
    fn feed(
        r: &mut Reassembler,
        ident: u16,
        payload: &[u8],
        size: usize,
        order: &[usize],
    ) -> Option<Vec<u8>> {
        let chunks: Vec<_> = payload.chunks(size).collect();
        let mut out = None;
        for &i in order {
            let more = i + 1 < chunks.len();
            let got = r.add(
                0,
                &header(ident, i * size, more, chunks[i].len()),
                chunks[i],
            );
            if got.is_some() {
                assert!(out.is_none(), "completed twice");
                out = got;
            }
        }
        out
    }

    #[test]
    fn reassembles_in_order_and_out_of_order() {
        let payload = data(3000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert_eq!(
            feed(&mut r, 1, &payload, 1480, &[0, 1, 2]).as_deref(),
            Some(&payload[..])
        );
        assert_eq!(
            feed(&mut r, 2, &payload, 1480, &[2, 0, 1]).as_deref(),
            Some(&payload[..])
        );
        assert_eq!(r.in_progress(), (0, 0));
        assert_eq!(r.counters().reassembled, 2);
    }

    #[test]
    fn exact_duplicates_are_ignored() {
        let payload = data(2000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert_eq!(
            feed(&mut r, 1, &payload, 1000, &[0, 0, 1]).as_deref(),
            Some(&payload[..])
        );
        assert_eq!(r.counters().duplicates, 1);
    }

    #[test]
    fn overlapping_fragments_with_different_data_drop_the_datagram() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert!(r.add(0, &header(1, 0, true, 16), &[1; 16]).is_none());
        // Overlaps bytes 8..16 with different content.
        assert!(r.add(0, &header(1, 8, false, 16), &[2; 16]).is_none());
        assert_eq!(r.counters().overlaps, 1);
        assert_eq!(r.in_progress(), (0, 0));
        // A same-size repeat with different bytes is an overlap too.
        assert!(r.add(0, &header(2, 0, true, 8), &[1; 8]).is_none());
        assert!(r.add(0, &header(2, 0, true, 8), &[3; 8]).is_none());
        assert_eq!(r.counters().overlaps, 2);
    }

    #[test]
    fn disagreeing_last_fragments_drop_the_datagram() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert!(r.add(0, &header(1, 16, false, 8), &[1; 8]).is_none());
        assert!(r.add(0, &header(1, 40, false, 8), &[1; 8]).is_none());
        assert_eq!(r.counters().overlaps, 1);
        // Data beyond an already known end.
        assert!(r.add(0, &header(3, 8, false, 8), &[1; 8]).is_none());
        assert!(r.add(0, &header(3, 16, true, 8), &[1; 8]).is_none());
        assert_eq!(r.counters().overlaps, 2);
    }

    #[test]
    fn malformed_fragments_are_counted() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert!(
            r.add(0, &header(1, 0, true, 10), &[0; 10]).is_none(),
            "not a multiple of 8"
        );
        assert!(r.add(0, &header(1, 8, true, 0), &[]).is_none(), "empty");
        assert!(
            r.add(0, &header(1, 65528, false, 16), &[0; 16]).is_none(),
            "past 64 KiB"
        );
        assert_eq!(r.counters().malformed, 3);
        assert_eq!(r.in_progress(), (0, 0));
    }

    #[test]
    fn incomplete_datagrams_time_out() {
        let config = ReassemblyConfig {
            timeout_ns: 30 * SECOND,
            ..Default::default()
        };
        let mut r = Reassembler::new(config);
        r.add(0, &header(1, 0, true, 8), &[0; 8]);
        assert_eq!(r.expire(29 * SECOND), 0);
        assert_eq!(r.expire(30 * SECOND), 1);
        assert_eq!(r.in_progress(), (0, 0));
        assert_eq!(r.counters().timed_out, 1);
        // The late last fragment starts a new datagram that cannot complete.
        assert!(r
            .add(31 * SECOND, &header(1, 8, false, 8), &[0; 8])
            .is_none());
    }

    #[test]
    fn a_flood_of_distinct_idents_stays_within_the_bound_and_real_traffic_still_completes() {
        let config = ReassemblyConfig {
            max_bytes: 64 * 1024,
            max_datagrams: 32,
            ..Default::default()
        };
        let mut r = Reassembler::new(config);
        for ident in 0..10_000u16 {
            // A tiny fragment far into the datagram: costs the receiver its offset in memory.
            let offset = 8 * (ident as usize % 8000);
            r.add(ident as u64, &header(ident, offset, true, 8), &[0; 8]);
            let (count, bytes) = r.in_progress();
            assert!(
                count <= 32 && bytes <= 64 * 1024,
                "{count} datagrams, {bytes} bytes"
            );
        }
        assert!(r.counters().evicted > 0);
        let payload = data(3000);
        assert_eq!(
            feed(&mut r, 60_000, &payload, 1480, &[1, 2, 0]).as_deref(),
            Some(&payload[..])
        );
    }

    #[test]
    fn a_datagram_larger_than_the_bound_is_refused() {
        let config = ReassemblyConfig {
            max_bytes: 4096,
            ..Default::default()
        };
        let mut r = Reassembler::new(config);
        assert!(feed(&mut r, 1, &data(8000), 1480, &[0, 1, 2, 3, 4, 5]).is_none());
        assert!(r.in_progress().1 <= 4096);
        assert!(r.counters().evicted > 0);
    }
}
