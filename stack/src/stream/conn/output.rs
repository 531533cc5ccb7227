//! Timers and everything that leaves: SYN and SYN-ACK, retransmissions,
//! new data, ACKs, probes and RST.

use super::path::FailReason;
use super::{ts_of, Connection, Phase, StreamError, DELAYED_ACK, MAX_WINDOW, SYN_RTO};
use crate::stream::rtt::MAX_RTO;
use crate::stream::wire::{
    emit_parts, emit_syn_options, Flags, Header, SegmentType, SynOptions, SACK_BLOCK_LEN,
};

impl Connection {
    /// Runs timers due at `now` (retransmission, delayed ACK, keepalive,
    /// persist, connect timeout) and emits every datagram that should go
    /// out now, each a complete encoded segment (header + SACKs + payload),
    /// at most mss payload bytes, within min(cwnd, peer window).
    pub fn poll_transmit(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        self.last_now = self.last_now.max(now);
        self.needs_poll = false;
        match self.phase {
            Phase::Closed => {
                if self.rst_now {
                    self.emit_rst(now, emit);
                }
                if self.ack_now && self.error.is_none() && !self.aborted {
                    self.emit_control(SegmentType::Data, now, self.reply_path(), emit);
                }
                self.ack_now = false;
                return;
            }
            Phase::SynSent | Phase::SynReceived => {
                // Nothing but the SYN or SYN-ACK can go out before the
                // handshake completes (a wanted ACK waits for it).
                self.ack_now = false;
                if now >= self.opened_at.saturating_add(self.config.connect_timeout) {
                    self.fail(StreamError::TimedOut);
                } else if self.syn_now || self.syn_deadline.is_some_and(|d| now >= d) {
                    self.emit_syn(now, emit);
                }
                return;
            }
            Phase::Open => {}
        }
        self.run_timers(now, emit);
        if self.phase != Phase::Open {
            return;
        }
        self.run_path_timers(now, emit);
        self.retransmit_lost(now, emit);
        self.send_new_data(now, emit);
        // A path probe is answered on its own path (the answer proves that path), even when
        // the latest segment came in on another.
        while self.probe_answers != 0 {
            let path = self.probe_answers.trailing_zeros() as usize;
            self.probe_answers &= !(1 << path);
            if path < self.paths.len() {
                self.emit_control(SegmentType::Data, now, path, emit);
            }
        }
        if self.ack_now {
            self.emit_control(SegmentType::Data, now, self.reply_path(), emit);
        }
        self.arm_timers(now);
    }

    fn run_timers(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        for path in 0..self.paths.len() {
            if self.paths[path].rto_deadline.is_some_and(|d| now >= d) {
                self.on_rto(path, now);
                if self.phase != Phase::Open {
                    return;
                }
            }
        }
        if self.stranded() && now.saturating_sub(self.last_progress) >= self.config.user_timeout {
            self.fail(StreamError::TimedOut);
            return;
        }
        if self.delack_deadline.is_some_and(|d| now >= d) {
            self.ack_now = true;
        }
        if self.tlp_deadline.is_some_and(|d| now >= d) {
            self.probe_tail(now, emit);
        }
        if let (Some(k), Some(due)) = (self.config.keepalive, self.keepalive_deadline()) {
            if now >= due {
                if self.keepalive_probes >= k.count {
                    self.fail(StreamError::TimedOut);
                    return;
                }
                self.keepalive_probes += 1;
                self.keepalive_probed_at = now;
                self.emit_control(SegmentType::Probe, now, self.primary(), emit);
            }
        }
        if self.persist_deadline.is_some_and(|d| now >= d) {
            if now.saturating_sub(self.last_recv) >= self.config.user_timeout {
                self.fail(StreamError::TimedOut);
                return;
            }
            self.emit_control(SegmentType::Probe, now, self.primary(), emit);
            self.persist_backoff = (self.persist_backoff + 1).min(16);
            self.persist_deadline = Some(now + self.persist_interval());
        }
    }

    /// Tail-loss probe (RFC 8985 style): no ACK for two round trips after
    /// the last send, so the last segment goes again; its SACK or ACK
    /// shows which of the tail was lost, long before the RTO would.
    fn probe_tail(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        self.tlp_deadline = None;
        if self.in_recovery() || self.send.lost_count() > 0 {
            return;
        }
        let path = self.primary();
        if let Some(r) = self.send.probe_last(now, path) {
            self.emit_data(now, r.off, r.len as usize, r.fin, path, emit);
            self.stats.retransmits += 1;
            self.paths[path].retransmits += 1;
            self.tail_probed = true;
            let p = &mut self.paths[path];
            p.rto_deadline = Some(now + p.rtt.rto());
        }
    }

    /// Some path is recovering from a loss.
    fn in_recovery(&self) -> bool {
        self.paths.iter().any(|p| p.in_recovery)
    }

    /// Probe timeout: two smoothed RTTs, plus the peer's ACK delay.
    fn probe_timeout(&self) -> u64 {
        2 * self.paths[self.primary()].rtt.srtt() + DELAYED_ACK
    }

    /// Data waits for acknowledgement and no path may carry it (every path failed; a link
    /// reported down fails only a path that has another beside it): only the user timeout
    /// ends that.
    fn stranded(&self) -> bool {
        self.multipath() && self.send.in_flight() && !(0..self.paths.len()).any(|i| self.usable(i))
    }

    /// The retransmission timer of `path` expired. With another path working, the path
    /// failed: what it carried goes on the others. Alone, it is a classic timeout: back off,
    /// everything unacknowledged is lost, start again from one segment.
    fn on_rto(&mut self, path: usize, now: u64) {
        if !self.send.in_flight() {
            self.paths[path].rto_deadline = None;
            return;
        }
        if now.saturating_sub(self.last_progress) >= self.config.user_timeout {
            self.fail(StreamError::TimedOut);
            return;
        }
        self.stats.timeouts += 1;
        if self.multipath() && self.other_usable(path) {
            self.fail_path(path, FailReason::Silent, now);
            return;
        }
        let sent_end = self.send.sent_end();
        let p = &mut self.paths[path];
        p.rtt.backoff();
        p.cc.on_timeout(now);
        p.in_recovery = true;
        p.rto_recovery = true;
        p.recovery_end = sent_end;
        p.rto_deadline = Some(now + p.rtt.rto());
        self.send.mark_all_lost();
        self.dupacks = 0;
        self.tlp_deadline = None;
    }

    fn persist_interval(&self) -> u64 {
        self.paths[self.primary()]
            .rtt
            .rto()
            .saturating_mul(1 << self.persist_backoff)
            .min(MAX_RTO)
    }

    /// When the next keepalive probe (or the verdict) is due, if keepalive
    /// applies now: on, synchronised, nothing in flight (retransmission
    /// watches the peer then) and no persist probing.
    fn keepalive_deadline(&self) -> Option<u64> {
        let k = self.config.keepalive?;
        if self.phase != Phase::Open || self.send.in_flight() || self.persist_deadline.is_some() {
            return None;
        }
        Some(if self.keepalive_probes == 0 {
            self.last_recv.saturating_add(k.idle)
        } else {
            self.keepalive_probed_at.saturating_add(k.interval)
        })
    }

    fn arm_timers(&mut self, now: u64) {
        if self.multipath() {
            // Each path times what it carries.
            for i in 0..self.paths.len() {
                let outstanding = self.send.path_outstanding(i) > 0;
                let p = &mut self.paths[i];
                if !outstanding || p.state == super::PathState::Failed {
                    p.rto_deadline = None;
                } else if p.rto_deadline.is_none() {
                    p.rto_deadline = Some(now + p.rtt.rto());
                }
            }
        } else {
            let in_flight = self.send.in_flight();
            let p = &mut self.paths[0];
            if !in_flight {
                p.rto_deadline = None;
            } else if p.rto_deadline.is_none() {
                p.rto_deadline = Some(now + p.rtt.rto());
            }
        }
        let primary = self.primary();
        let may_probe_tail = self.send.in_flight()
            && !self.in_recovery()
            && !self.tail_probed
            && self.paths[primary].rtt.has_sample()
            && self.send.lost_count() == 0;
        if !may_probe_tail {
            self.tlp_deadline = None;
        } else if self.tlp_deadline.is_none() {
            let pto = self.probe_timeout();
            // Not worth it when the RTO comes first anyway.
            let rto = self.paths.iter().filter_map(|p| p.rto_deadline).min();
            if rto.is_some_and(|rto| now + pto < rto) {
                self.tlp_deadline = Some(now + pto);
            }
        }
        if self.window_blocked() {
            if self.persist_deadline.is_none() {
                self.persist_deadline = Some(now + self.persist_interval());
            }
        } else {
            self.persist_deadline = None;
            self.persist_backoff = 0;
        }
    }

    /// Data waits, nothing is in flight, and only the peer's window stops it.
    fn window_blocked(&self) -> bool {
        self.phase == Phase::Open
            && !self.send.in_flight()
            && self.send.unsent() > 0
            && self.next_new_segment().is_none()
    }

    /// The next new segment (payload length, FIN, path) that may go out now.
    fn next_new_segment(&self) -> Option<(usize, bool, usize)> {
        if self.phase != Phase::Open {
            return None;
        }
        let unsent = self.send.unsent();
        let fin = self.send.fin_pending();
        if unsent == 0 {
            // A FIN alone takes no buffer space at the peer, nor room in a window.
            let path = self.pick_path(1).unwrap_or_else(|| self.primary());
            return fin.then_some((0, true, path));
        }
        let peer_room = self.snd_right.saturating_sub(self.send.nxt());
        let len = (self.mss as u64).min(unsent).min(peer_room);
        if len == 0 {
            return None;
        }
        let path = self.pick_path(len)?;
        if len < self.mss as u64 {
            if len < unsent {
                // Limited by the peer's window: avoid silly small segments.
                if len * 2 < self.peer_max_window {
                    return None;
                }
            } else if !self.config.nodelay && self.send.in_flight() && !fin {
                // Nagle: hold the small tail until the data in flight is acknowledged.
                return None;
            }
        }
        Some((len as usize, fin && len == unsent, path))
    }

    fn retransmit_lost(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        if self.send.lost_count() == 0 {
            return;
        }
        while let Some(path) = self.pick_path(1) {
            let Some(r) = self.send.next_lost() else {
                break;
            };
            self.emit_data(now, r.off, r.len as usize, r.fin, path, emit);
            self.send.retransmitted(r.off, now, path);
            self.stats.retransmits += 1;
            self.paths[path].retransmits += 1;
            if !self.paths.iter().any(|p| p.rto_recovery) {
                self.stats.fast_retransmits += 1;
            }
        }
    }

    fn send_new_data(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        while let Some((len, fin, path)) = self.next_new_segment() {
            if !self.send.in_flight() {
                self.last_progress = now;
            }
            let off = self.send.nxt();
            self.emit_data(now, off, len, fin, path, emit);
            self.send.sent_new(len, fin, now, path);
            self.tlp_deadline = None; // counts from the last send
        }
    }

    /// Fills the reused header with what every segment after the
    /// handshake carries: ids, ACK, window, timestamps, SACK blocks.
    pub(super) fn fill_header(&mut self, kind: SegmentType, seq: u32, now: u64, path: usize) {
        self.recv.sack_blocks(&mut self.blocks);
        let base = self.irs.wrapping_add(1);
        let ack = self.rcv_ack();
        let h = &mut self.header;
        h.kind = kind;
        let ts_recent = self.paths[path].ts_recent;
        h.flags = Flags {
            fin: false,
            ack: true,
            echo: ts_recent.is_some(),
        };
        h.src_conn = self.local_id;
        h.dst_conn = self.peer_id;
        h.seq = seq;
        h.ack = ack;
        h.window = self.recv.window().min(MAX_WINDOW) as u32;
        h.ts_val = ts_of(now);
        h.ts_ecr = ts_recent.unwrap_or(0);
        h.path = path as u16;
        h.sacks.clear();
        h.sacks.extend(
            self.blocks
                .iter()
                .map(|&(s, e)| (base.wrapping_add(s as u32), base.wrapping_add(e as u32))),
        );
    }

    /// Bookkeeping after a segment carrying our ACK went out.
    fn acked_peer(&mut self) {
        self.ack_now = false;
        self.delack_deadline = None;
        self.unacked_bytes = 0;
        self.adv_right = self.recv.right_edge();
    }

    fn emit_data(
        &mut self,
        now: u64,
        off: u64,
        len: usize,
        fin: bool,
        path: usize,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        let seq = self.snd_seq(off);
        self.fill_header(SegmentType::Data, seq, now, path);
        self.header.flags.fin = fin;
        // The caller's mss leaves no room for SACK blocks beside a full
        // payload: carry the ones that fit, and send the rest in a pure ACK.
        let room = (self.config.mss - len) / SACK_BLOCK_LEN;
        let sacks_left_off = self.header.sacks.len() > room;
        self.header.sacks.truncate(room);
        let (a, b) = self.send.payload(off, len);
        emit_parts(&self.header, &[a, b], &mut self.out);
        emit(&self.out);
        self.stats.segments_sent += 1;
        self.stats.bytes_sent += len as u64;
        let p = &mut self.paths[path];
        p.segments_sent += 1;
        p.bytes_sent += len as u64;
        self.acked_peer();
        if sacks_left_off {
            self.ack_now = true;
        }
    }

    /// A segment without payload on `path`: pure ACK (DATA) or PROBE.
    fn emit_control(
        &mut self,
        kind: SegmentType,
        now: u64,
        path: usize,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        let seq = self.snd_seq(self.send.sent_end());
        self.fill_header(kind, seq, now, path);
        self.emit_header(emit);
        self.paths[path].segments_sent += 1;
        self.acked_peer();
    }

    /// Emits the filled header alone.
    pub(super) fn emit_header(&mut self, emit: &mut dyn FnMut(&[u8])) {
        emit_parts(&self.header, &[], &mut self.out);
        emit(&self.out);
        self.stats.segments_sent += 1;
    }

    fn emit_rst(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        let seq = self.snd_seq(self.send.sent_end());
        self.fill_header(SegmentType::Rst, seq, now, self.reply_path());
        self.header.sacks.clear();
        self.emit_header(emit);
        self.rst_now = false;
    }

    fn emit_syn(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        let synack = self.phase == Phase::SynReceived;
        let mut h = Header::new(
            if synack {
                SegmentType::SynAck
            } else {
                SegmentType::Syn
            },
            self.local_id,
            self.peer_id,
        );
        h.seq = self.iss;
        h.flags.ack = synack;
        h.ack = self.irs.wrapping_add(1);
        h.window = self.recv.window().min(MAX_WINDOW) as u32;
        h.ts_val = ts_of(now);
        // A SYN-ACK echoes the SYN it answers. One resent by the timer
        // answers no new SYN: echoing the old one would make the peer
        // count the retry wait as round-trip time.
        if synack && self.syn_echo_fresh {
            let ts_recent = self.paths[0].ts_recent;
            h.flags.echo = ts_recent.is_some();
            h.ts_ecr = ts_recent.unwrap_or(0);
        }
        self.syn_echo_fresh = false;
        let mut options = Vec::with_capacity(4 + 2 + 5 * self.announce.len());
        let mss = SynOptions {
            mss: Some(self.config.mss.min(u16::MAX as usize) as u16),
            addrs: self.announce.clone(),
        };
        emit_syn_options(&mss, &mut options);
        emit_parts(&h, &[&options], &mut self.out);
        emit(&self.out);
        self.stats.segments_sent += 1;
        self.syn_xmits += 1;
        if self.syn_xmits > 1 {
            self.stats.retransmits += 1;
        }
        self.syn_now = false;
        let backoff = SYN_RTO.saturating_mul(1 << (self.syn_xmits - 1).min(16));
        let give_up = self.opened_at.saturating_add(self.config.connect_timeout);
        self.syn_deadline = Some(now.saturating_add(backoff).min(give_up));
    }

    /// The earliest time poll_transmit has timer work to do (None: nothing
    /// pending). A time at or before the latest `now` seen means "at once".
    pub fn next_deadline(&self) -> Option<u64> {
        if self.needs_poll
            || self.rst_now
            || self.ack_now
            || self.syn_now
            || self.probe_answers != 0
        {
            return Some(self.last_now);
        }
        match self.phase {
            Phase::Closed => None,
            Phase::SynSent | Phase::SynReceived => {
                let give_up = self.opened_at.saturating_add(self.config.connect_timeout);
                Some(self.syn_deadline.map_or(give_up, |d| d.min(give_up)))
            }
            Phase::Open => {
                let retransmit = self.send.lost_count() > 0 && self.pick_path(1).is_some();
                if retransmit || self.next_new_segment().is_some() || self.link_failure_pending() {
                    return Some(self.last_now);
                }
                let stranded = self
                    .stranded()
                    .then(|| self.last_progress.saturating_add(self.config.user_timeout));
                [
                    self.paths.iter().filter_map(|p| p.rto_deadline).min(),
                    self.delack_deadline,
                    self.tlp_deadline,
                    self.persist_deadline,
                    self.keepalive_deadline(),
                    self.path_deadline(),
                    stranded,
                ]
                .into_iter()
                .flatten()
                .min()
            }
        }
    }
}
