//! The receive side: bytes ready to read, out-of-order bytes waiting for a
//! hole to fill, the peer's FIN, and the SACK blocks that describe them.
//!
//! One ring holds everything from the read point on: in-order bytes first,
//! then the reassembly area where out-of-order payload is written at its
//! place (gaps are filler). Data is accepted only below the read point plus
//! the buffer size, which is also the right edge of the window we
//! advertise, so the ring never grows beyond the buffer size and the
//! advertised window never shrinks. Which parts of the reassembly area hold
//! data is kept as merged ranges in a `BTreeMap`.

use std::collections::{BTreeMap, VecDeque};

use crate::stream::wire::MAX_SACK;

/// Most recently received out-of-order positions remembered for SACK order.
const RECENT: usize = 8;

/// What one arriving segment did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Arrival {
    /// Bytes not held before.
    pub new_bytes: usize,
    /// The in-order point moved.
    pub advanced: bool,
    /// The payload (or part of it) lies beyond the in-order point.
    pub out_of_order: bool,
    /// Nothing in it was new.
    pub duplicate: bool,
    /// Part of it lay beyond the window and was dropped.
    pub clipped: bool,
}

/// Received bytes and the reassembly state.
#[derive(Debug)]
pub(super) struct RecvBuffer {
    /// Bytes from `read_off` on: in order up to `nxt`, then reassembly area.
    data: VecDeque<u8>,
    capacity: usize,
    read_off: u64,
    /// First byte not received in order.
    nxt: u64,
    /// Out-of-order ranges, start -> end, disjoint and not touching, all above `nxt`.
    ranges: BTreeMap<u64, u64>,
    ooo_bytes: usize,
    /// Offset of the peer's FIN, once announced.
    fin_off: Option<u64>,
    /// Positions of recent out-of-order arrivals, newest first.
    recent: VecDeque<u64>,
}

impl RecvBuffer {
    pub fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer {
            data: VecDeque::new(),
            capacity,
            read_off: 0,
            nxt: 0,
            ranges: BTreeMap::new(),
            ooo_bytes: 0,
            fin_off: None,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// First offset not received in order (the data part of the ACK).
    pub fn nxt(&self) -> u64 {
        self.nxt
    }

    /// The right edge of the window: nothing at or beyond it is accepted.
    pub fn right_edge(&self) -> u64 {
        self.read_off + self.capacity as u64
    }

    /// Bytes we can take beyond `nxt`.
    pub fn window(&self) -> u64 {
        self.right_edge() - self.nxt
    }

    /// In-order bytes ready to read.
    pub fn readable(&self) -> usize {
        (self.nxt - self.read_off) as usize
    }

    /// Bytes held: ready plus out of order.
    pub fn buffered(&self) -> usize {
        self.readable() + self.ooo_bytes
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// The peer's FIN arrived and every byte before it did too.
    pub fn fin_received(&self) -> bool {
        self.fin_off == Some(self.nxt)
    }

    /// Drops everything (abort, reset).
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
        self.ranges.clear();
        self.ooo_bytes = 0;
        self.read_off = self.nxt;
    }

    /// Takes the payload of a segment starting at `off`.
    pub fn insert(&mut self, off: u64, payload: &[u8]) -> Arrival {
        let mut arrival = Arrival::default();
        let end = off + payload.len() as u64;
        let limit = self.right_edge().min(self.fin_off.unwrap_or(u64::MAX));
        let start = off.max(self.nxt);
        let stop = end.min(limit);
        arrival.clipped = end > limit;
        if start >= stop {
            arrival.duplicate = end <= self.nxt;
            return arrival;
        }
        self.write_at(
            start,
            &payload[(start - off) as usize..(stop - off) as usize],
        );
        if start > self.nxt {
            arrival.out_of_order = true;
            arrival.new_bytes = self.add_range(start, stop);
            arrival.duplicate = arrival.new_bytes == 0;
            if self.recent.front() != Some(&start) {
                if self.recent.len() == RECENT {
                    self.recent.pop_back();
                }
                self.recent.push_front(start);
            }
            return arrival;
        }
        // In order: the point moves to the end of this payload, then over
        // any out-of-order ranges it now reaches.
        let before = self.nxt;
        let mut nxt = stop;
        while let Some((&s, &e)) = self.ranges.first_key_value() {
            if s > nxt {
                break;
            }
            self.ranges.remove(&s);
            self.ooo_bytes -= (e - s) as usize;
            nxt = nxt.max(e);
        }
        self.nxt = nxt;
        arrival.new_bytes = (stop - before) as usize;
        arrival.advanced = true;
        arrival
    }

    /// Copies `bytes` into the ring at stream offset `off`.
    fn write_at(&mut self, off: u64, bytes: &[u8]) {
        let at = (off - self.read_off) as usize;
        let end = at + bytes.len();
        if at == self.data.len() {
            self.data.extend(bytes);
            return;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let (a, b) = self.data.as_mut_slices();
        let mut src = bytes;
        if at < a.len() {
            let n = src.len().min(a.len() - at);
            a[at..at + n].copy_from_slice(&src[..n]);
            src = &src[n..];
            b[..src.len()].copy_from_slice(src);
        } else {
            let s = at - a.len();
            b[s..s + src.len()].copy_from_slice(src);
        }
    }

    /// Adds `[start, end)` to the out-of-order ranges; returns the bytes not
    /// covered before.
    fn add_range(&mut self, mut start: u64, mut end: u64) -> usize {
        let mut covered = 0;
        while let Some((&s, &e)) = self.ranges.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.ranges.remove(&s);
            covered += e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        let new = (end - start - covered) as usize;
        self.ooo_bytes += (end - start - covered) as usize;
        new
    }

    /// The peer's FIN is at `off` (just after its last data byte). Ignored
    /// when it contradicts what was received (data beyond it, another FIN).
    pub fn set_fin(&mut self, off: u64) -> bool {
        if off < self.nxt || off > self.right_edge() {
            return false;
        }
        if let Some(known) = self.fin_off {
            return known == off;
        }
        if self.ranges.last_key_value().is_some_and(|(_, &e)| e > off) {
            return false;
        }
        self.fin_off = Some(off);
        true
    }

    /// Copies in-order bytes into `buf`; consumes them unless `peek`.
    pub fn read(&mut self, buf: &mut [u8], peek: bool) -> usize {
        let n = buf.len().min(self.readable());
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        if !peek {
            self.data.drain(..n);
            self.read_off += n as u64;
        }
        n
    }

    /// Up to [`MAX_SACK`] blocks, the most recently changed first, then the
    /// lowest others.
    pub fn sack_blocks(&mut self, out: &mut Vec<(u64, u64)>) {
        out.clear();
        if self.ranges.is_empty() {
            self.recent.clear();
            return;
        }
        let ranges = &self.ranges;
        self.recent.retain(|&pos| {
            ranges
                .range(..=pos)
                .next_back()
                .is_some_and(|(_, &e)| e > pos)
        });
        for &pos in &self.recent {
            if out.len() == MAX_SACK {
                return;
            }
            if let Some((&s, &e)) = ranges.range(..=pos).next_back() {
                if !out.contains(&(s, e)) {
                    out.push((s, e));
                }
            }
        }
        for (&s, &e) in ranges {
            if out.len() == MAX_SACK {
                return;
            }
            if !out.contains(&(s, e)) {
                out.push((s, e));
            }
        }
    }
}

#[cfg(test)]
mod tests;
