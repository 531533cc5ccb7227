//! The send side: queued bytes, the segments in flight, and the SACK
//! scoreboard that finds which of them were lost.
//!
//! Offsets are 64-bit stream positions (offset 0 is the first data byte,
//! the ISN + 1 on the wire); the FIN takes the offset after the last data
//! byte. Every segment sent keeps its boundaries in a [`Sent`] record until
//! it is acknowledged, so SACK blocks mark whole records and a
//! retransmission resends exactly what was sent before.
//!
//! Loss detection follows RFC 6675 in spirit: a record is lost when more
//! than `DUP_THRESH - 1` segments' worth of bytes above it were SACKed. A
//! scan pointer only moves forward, and running sums of SACKed bytes keep
//! every ACK's work proportional to what it changed, not to the window.

use std::collections::VecDeque;

/// Segments SACKed above a hole before the hole counts as lost.
pub(super) const DUP_THRESH: u64 = 3;
/// Most paths one connection uses.
pub const MAX_PATHS: usize = 4;

/// One segment in flight.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    /// Offset of the first byte.
    pub off: u64,
    /// Payload bytes.
    pub len: u32,
    /// The FIN follows the payload.
    pub fin: bool,
    /// When it was last (re)sent, ns.
    pub sent_at: u64,
    /// When it was first sent, ns.
    pub first_sent_at: u64,
    /// How many times it was sent.
    pub xmits: u16,
    /// The peer reported it in a SACK block.
    pub sacked: bool,
    /// Judged lost and not yet retransmitted.
    pub lost: bool,
    /// The path it was last sent on.
    pub path: u8,
}

impl Sent {
    /// Sequence space taken: payload, plus one for FIN.
    pub fn span(&self) -> u64 {
        self.len as u64 + self.fin as u64
    }

    /// Offset after the segment.
    pub fn end(&self) -> u64 {
        self.off + self.span()
    }
}

/// What an acknowledgement removed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Acked {
    /// Sequence space newly acknowledged (data bytes plus one for FIN).
    pub bytes: u64,
    /// Send time of the newest fully acknowledged record if it was sent
    /// only once (Karn's rule: a retransmitted one gives no RTT sample) and
    /// not SACKed before (its cumulative ACK waited for a hole).
    pub clean_sent_at: Option<u64>,
    /// The same, for each path's newest record.
    pub clean_by_path: [Option<u64>; MAX_PATHS],
    /// Sequence space acknowledged per path (of records last sent there).
    pub bytes_by_path: [u64; MAX_PATHS],
}

/// Queued data and the retransmission scoreboard.
#[derive(Debug)]
pub(super) struct SendBuffer {
    /// Bytes from `una` (first unacknowledged) to the end of what was written.
    data: VecDeque<u8>,
    capacity: usize,
    /// First unacknowledged offset.
    una: u64,
    /// Next offset never sent.
    nxt: u64,
    fin_queued: bool,
    fin_sent: bool,
    fin_acked: bool,
    records: VecDeque<Sent>,
    /// Bytes in flight: sent, not SACKed, not judged lost (RFC 6675 "pipe").
    pipe: u64,
    /// The same per path (the records last sent on each).
    path_pipe: [u64; MAX_PATHS],
    /// Records per path neither SACKed nor acknowledged (in flight or lost).
    path_outstanding: [usize; MAX_PATHS],
    /// SACKed bytes per path: losses are judged within a path, so that paths of different
    /// delays do not make each other's segments look lost.
    sacked_total: [u64; MAX_PATHS],
    /// Records below this offset were judged (lost or SACKed).
    scan_off: u64,
    sacked_below_scan: [u64; MAX_PATHS],
    lost_count: usize,
    /// Lost records are looked for from here on.
    rexmit_cursor: u64,
    /// Retransmissions in the order they were sent: (offset, sent_at).
    rexmits: VecDeque<(u64, u64)>,
    /// Latest send time of a segment known to have arrived, per path and overall.
    delivered_sent_at: [u64; MAX_PATHS],
    delivered_any: u64,
    /// Records delivered (SACKed or acknowledged) per path, ever: a path's sign of life.
    deliveries: [u64; MAX_PATHS],
    /// Records judged lost per path, ever.
    losses: [u64; MAX_PATHS],
}

impl SendBuffer {
    pub fn new(capacity: usize) -> SendBuffer {
        SendBuffer {
            data: VecDeque::new(),
            capacity,
            una: 0,
            nxt: 0,
            fin_queued: false,
            fin_sent: false,
            fin_acked: false,
            records: VecDeque::new(),
            pipe: 0,
            path_pipe: [0; MAX_PATHS],
            path_outstanding: [0; MAX_PATHS],
            sacked_total: [0; MAX_PATHS],
            scan_off: 0,
            sacked_below_scan: [0; MAX_PATHS],
            lost_count: 0,
            rexmit_cursor: 0,
            rexmits: VecDeque::new(),
            delivered_sent_at: [0; MAX_PATHS],
            delivered_any: 0,
            deliveries: [0; MAX_PATHS],
            losses: [0; MAX_PATHS],
        }
    }

    /// Bytes `write` would take.
    pub fn space(&self) -> usize {
        if self.fin_queued {
            return 0;
        }
        self.capacity.saturating_sub(self.data.len())
    }

    /// Queues bytes; returns how many were taken.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Unacknowledged plus unsent bytes held.
    pub fn queued(&self) -> usize {
        self.data.len()
    }

    /// Offset after the last byte written (where the FIN goes).
    pub fn data_end(&self) -> u64 {
        if self.fin_acked {
            self.una - 1
        } else {
            self.una + self.data.len() as u64
        }
    }

    pub fn una(&self) -> u64 {
        self.una
    }

    pub fn nxt(&self) -> u64 {
        self.nxt
    }

    /// Offset after everything sent, FIN included.
    pub fn sent_end(&self) -> u64 {
        self.nxt + self.fin_sent as u64
    }

    pub fn unsent(&self) -> u64 {
        self.data_end() - self.nxt
    }

    pub fn queue_fin(&mut self) {
        self.fin_queued = true;
    }

    pub fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    pub fn fin_pending(&self) -> bool {
        self.fin_queued && !self.fin_sent
    }

    pub fn fin_acked(&self) -> bool {
        self.fin_acked
    }

    /// Written data and FIN (if queued) all acknowledged.
    pub fn all_acked(&self) -> bool {
        self.data.is_empty() && (!self.fin_queued || self.fin_acked)
    }

    pub fn in_flight(&self) -> bool {
        !self.records.is_empty()
    }

    pub fn pipe(&self) -> u64 {
        self.pipe
    }

    pub fn lost_count(&self) -> usize {
        self.lost_count
    }

    /// Bytes in flight on `path`.
    pub fn path_pipe(&self, path: usize) -> u64 {
        self.path_pipe[path]
    }

    /// Records last sent on `path` that are neither SACKed nor acknowledged.
    pub fn path_outstanding(&self, path: usize) -> usize {
        self.path_outstanding[path]
    }

    /// Records of `path` delivered so far (a counter: it grows while the path works).
    pub fn deliveries(&self, path: usize) -> u64 {
        self.deliveries[path]
    }

    /// Records of `path` judged lost so far (a counter).
    pub fn losses(&self, path: usize) -> u64 {
        self.losses[path]
    }

    /// Drops everything (abort, reset).
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
        self.records = VecDeque::new();
        self.pipe = 0;
        self.path_pipe = [0; MAX_PATHS];
        self.path_outstanding = [0; MAX_PATHS];
        self.lost_count = 0;
        self.sacked_total = [0; MAX_PATHS];
        self.sacked_below_scan = [0; MAX_PATHS];
        self.rexmits = VecDeque::new();
    }

    /// The payload of `[off, off + len)` as up to two slices.
    pub fn payload(&self, off: u64, len: usize) -> (&[u8], &[u8]) {
        let start = (off - self.una) as usize;
        let (a, b) = self.data.as_slices();
        if start >= a.len() {
            let s = start - a.len();
            (&b[s..s + len], &[])
        } else if start + len <= a.len() {
            (&a[start..start + len], &[])
        } else {
            (&a[start..], &b[..len - (a.len() - start)])
        }
    }

    fn account(&mut self, r: &Sent) {
        let p = r.path as usize;
        if r.sacked {
            self.sacked_total[p] += r.span();
            if r.off < self.scan_off {
                self.sacked_below_scan[p] += r.span();
            }
            return;
        }
        self.path_outstanding[p] += 1;
        if r.lost {
            self.lost_count += 1;
        } else {
            self.pipe += r.span();
            self.path_pipe[p] += r.span();
        }
    }

    fn unaccount(&mut self, r: &Sent) {
        let p = r.path as usize;
        if r.sacked {
            self.sacked_total[p] -= r.span();
            if r.off < self.scan_off {
                self.sacked_below_scan[p] -= r.span();
            }
            return;
        }
        self.path_outstanding[p] -= 1;
        if r.lost {
            self.lost_count -= 1;
        } else {
            self.pipe -= r.span();
            self.path_pipe[p] -= r.span();
        }
    }

    /// Changes record `i` through `f`, keeping the sums right.
    fn update(&mut self, i: usize, f: impl FnOnce(&mut Sent)) {
        let mut r = self.records[i];
        self.unaccount(&r);
        f(&mut r);
        self.account(&r);
        self.records[i] = r;
    }

    /// Records a new segment `[nxt, nxt + len)` (+ FIN) as sent at `now` on `path`.
    pub fn sent_new(&mut self, len: usize, fin: bool, now: u64, path: usize) {
        let r = Sent {
            off: self.nxt,
            len: len as u32,
            fin,
            sent_at: now,
            first_sent_at: now,
            xmits: 1,
            sacked: false,
            lost: false,
            path: path as u8,
        };
        self.nxt += len as u64;
        if fin {
            self.fin_sent = true;
        }
        self.account(&r);
        self.records.push_back(r);
    }

    /// Processes a cumulative acknowledgement up to `ack` (the caller
    /// checked `una < ack <= sent_end`).
    pub fn ack(&mut self, ack: u64) -> Acked {
        let data_end = self.data_end();
        let mut acked = Acked {
            bytes: ack - self.una,
            ..Acked::default()
        };
        while let Some(&r) = self.records.front() {
            if r.end() <= ack {
                self.unaccount(&r);
                self.records.pop_front();
                let p = r.path as usize;
                acked.bytes_by_path[p] += r.span();
                if !r.sacked {
                    self.delivered(&r);
                }
                acked.clean_sent_at = (r.xmits == 1 && !r.sacked).then_some(r.sent_at);
                if acked.clean_sent_at.is_some() {
                    acked.clean_by_path[p] = acked.clean_sent_at;
                }
                if r.fin {
                    self.fin_acked = true;
                }
            } else {
                if r.off < ack {
                    // Only a misbehaving peer splits a segment; keep the rest.
                    self.update(0, |r| {
                        r.len -= (ack - r.off) as u32;
                        r.off = ack;
                    });
                }
                break;
            }
        }
        let data_acked = (ack.min(data_end) - self.una) as usize;
        self.data.drain(..data_acked);
        self.una = ack;
        if self.scan_off < ack {
            self.scan_off = ack;
            self.sacked_below_scan = [0; MAX_PATHS];
        }
        if self.rexmit_cursor < ack {
            self.rexmit_cursor = ack;
        }
        acked
    }

    /// Marks the records inside SACK block `[start, end)`. Returns whether
    /// any record was newly SACKed.
    pub fn sack(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(self.una);
        let end = end.min(self.sent_end());
        if start >= end {
            return false;
        }
        let mut i = self.records.partition_point(|r| r.off < start);
        let mut changed = false;
        while i < self.records.len() && self.records[i].end() <= end {
            if !self.records[i].sacked {
                self.update(i, |r| {
                    r.sacked = true;
                    r.lost = false;
                });
                let r = self.records[i];
                self.delivered(&r);
                changed = true;
            }
            i += 1;
        }
        changed
    }

    /// Marks lost every record with more than `DUP_THRESH - 1` segments'
    /// worth of SACKed bytes above it, and every record sent once that was
    /// sent more than `reorder_window` ns before something that arrived
    /// (RACK's time rule: it finds losses at the tail, where too few
    /// segments follow to reach the count). Returns how many were marked.
    ///
    /// Both rules look only at the record's own path. The scan stops at the first record it
    /// cannot judge yet, whatever its path.
    pub fn detect_losses(&mut self, mss: usize, reorder_window: u64) -> usize {
        let threshold = (DUP_THRESH - 1) * mss as u64;
        let mut i = self.records.partition_point(|r| r.off < self.scan_off);
        let mut marked = 0;
        while i < self.records.len() {
            let r = self.records[i];
            let p = r.path as usize;
            let own = if r.sacked { r.span() } else { 0 };
            // Retransmissions in flight are judged by their own send times
            // (detect_lost_retransmissions); SACKed and lost ones are settled.
            let judged = r.sacked || r.lost || r.xmits > 1;
            if !judged {
                let above = self.sacked_total[p] - self.sacked_below_scan[p] - own;
                let late = r.sent_at.saturating_add(reorder_window) < self.delivered_sent_at[p];
                if above <= threshold && !late {
                    break;
                }
                self.mark_lost(i);
                marked += 1;
            }
            self.sacked_below_scan[p] += own;
            self.scan_off = r.end();
            i += 1;
        }
        marked
    }

    /// Notes that `r` arrived. For a retransmitted one we cannot tell which
    /// copy did, so the first send time stands (it errs on the early side).
    fn delivered(&mut self, r: &Sent) {
        let p = r.path as usize;
        self.delivered_sent_at[p] = self.delivered_sent_at[p].max(r.first_sent_at);
        self.delivered_any = self.delivered_any.max(r.first_sent_at);
        self.deliveries[p] += 1;
    }

    /// Marks record `i` lost (it is neither SACKed nor lost).
    fn mark_lost(&mut self, i: usize) {
        let r = self.records[i];
        self.update(i, |r| r.lost = true);
        self.rexmit_cursor = self.rexmit_cursor.min(r.off);
        self.losses[r.path as usize] += 1;
    }

    /// Marks lost every retransmission that should have arrived by now: a
    /// segment sent more than `reorder_window` ns after it was delivered
    /// (the retransmission itself was lost; without this only the timeout
    /// would find out). Returns how many were marked.
    pub fn detect_lost_retransmissions(&mut self, reorder_window: u64) -> usize {
        let mut marked = 0;
        while let Some(&(off, sent_at)) = self.rexmits.front() {
            if sent_at.saturating_add(reorder_window) >= self.delivered_any {
                break;
            }
            self.rexmits.pop_front();
            let i = self.records.partition_point(|r| r.off < off);
            let Some(r) = self.records.get(i) else {
                continue;
            };
            if r.off == off && r.sent_at == sent_at && !r.sacked && !r.lost {
                self.mark_lost(i);
                marked += 1;
            }
        }
        marked
    }

    /// Three duplicate ACKs without SACK information: the first segment is
    /// lost (once). Returns whether it was marked.
    pub fn mark_first_lost(&mut self) -> bool {
        match self.records.front() {
            Some(r) if !r.sacked && !r.lost && r.xmits == 1 => {
                self.mark_lost(0);
                true
            }
            _ => false,
        }
    }

    /// Retransmission timeout: every record not SACKed is lost.
    pub fn mark_all_lost(&mut self) {
        for i in 0..self.records.len() {
            if !self.records[i].sacked && !self.records[i].lost {
                self.mark_lost(i);
            }
        }
        self.scan_off = self.sent_end();
        self.sacked_below_scan = self.sacked_total;
        self.rexmit_cursor = self.una;
    }

    /// A path failed: every record on it not SACKed is lost (to be sent again on the
    /// others). Returns how many were marked.
    pub fn mark_path_lost(&mut self, path: usize) -> usize {
        if self.path_outstanding[path] == 0 {
            return 0;
        }
        let mut marked = 0;
        for i in 0..self.records.len() {
            let r = self.records[i];
            if r.path as usize == path && !r.sacked && !r.lost {
                self.mark_lost(i);
                marked += 1;
            }
        }
        marked
    }

    /// The first lost record (to retransmit), if any.
    pub fn next_lost(&mut self) -> Option<Sent> {
        if self.lost_count == 0 {
            return None;
        }
        let mut i = self
            .records
            .partition_point(|r| r.end() <= self.rexmit_cursor);
        while let Some(r) = self.records.get(i) {
            if r.lost {
                self.rexmit_cursor = r.off;
                return Some(*r);
            }
            i += 1;
        }
        None
    }

    /// Tail-loss probe: resends the last segment (unless SACKed) without
    /// marking anything lost, so that its acknowledgement or SACK reveals
    /// what happened to the tail. Returns the record to emit.
    pub fn probe_last(&mut self, now: u64, path: usize) -> Option<Sent> {
        let i = self.records.len().checked_sub(1)?;
        let r = self.records[i];
        if r.sacked || r.lost {
            return None;
        }
        self.update(i, |r| {
            r.xmits = r.xmits.saturating_add(1);
            r.sent_at = now;
            r.path = path as u8;
        });
        self.rexmits.push_back((r.off, now));
        Some(self.records[i])
    }

    /// The lost record at `off` was retransmitted at `now` on `path`.
    pub fn retransmitted(&mut self, off: u64, now: u64, path: usize) {
        let i = self.records.partition_point(|r| r.off < off);
        if self.records.get(i).is_some_and(|r| r.off == off) {
            self.update(i, |r| {
                r.lost = false;
                r.xmits = r.xmits.saturating_add(1);
                r.sent_at = now;
                r.path = path as u8;
            });
            self.rexmit_cursor = self.records[i].end();
            self.rexmits.push_back((off, now));
        }
    }
}

#[cfg(test)]
mod tests;
