//! Arriving segments: validation, handshake, RST, acknowledgement and SACK
//! processing, data and FIN.

use super::send::{DUP_THRESH, MAX_PATHS};
use super::{seq_diff, ts_of, Connection, Phase, StreamError, DELAYED_ACK};
use crate::stream::wire::{parse_syn_options, Header, SegmentType};

impl Connection {
    /// A segment for this connection (the caller matched dst_conn ==
    /// local_id and the peer address).
    ///
    /// Validates it (RST only if its seq is acceptable: in the receive
    /// window, or in SynSent its ack == ISN+1; data outside the window is
    /// dropped and an ACK is scheduled; ids must match the peer's once
    /// known), processes ACK/SACK/window/timestamps/data/FIN, and schedules
    /// what must be sent.
    pub fn handle(&mut self, now: u64, header: &Header, payload: &[u8]) {
        self.last_now = self.last_now.max(now);
        self.needs_poll = true;
        if header.dst_conn != self.local_id {
            self.drop_segment();
            return;
        }
        match self.phase {
            Phase::SynSent => self.handle_syn_sent(now, header, payload),
            Phase::Closed => self.handle_closed(header),
            Phase::SynReceived | Phase::Open => {
                if header.src_conn != self.peer_id {
                    self.drop_segment();
                    return;
                }
                match header.kind {
                    SegmentType::Syn => self.handle_syn(header),
                    SegmentType::SynAck => {
                        // Our ACK of it was lost: say it again.
                        if self.phase == Phase::Open && header.seq == self.irs {
                            self.stats.segments_received += 1;
                            self.ack_now = true;
                        } else {
                            self.drop_segment();
                        }
                    }
                    SegmentType::Rst => self.handle_rst(header),
                    SegmentType::Data | SegmentType::Probe => {
                        self.handle_segment(now, header, payload)
                    }
                }
            }
        }
    }

    fn handle_syn_sent(&mut self, now: u64, h: &Header, payload: &[u8]) {
        let acks_syn = h.flags.ack && h.ack == self.iss.wrapping_add(1);
        match h.kind {
            SegmentType::Rst if acks_syn => {
                self.stats.segments_received += 1;
                self.fail(StreamError::Refused);
            }
            SegmentType::SynAck if acks_syn && h.src_conn != 0 => {
                self.stats.segments_received += 1;
                self.peer_id = h.src_conn;
                self.irs = h.seq;
                self.paths[0].ts_recent = Some(h.ts_val);
                self.last_recv = now;
                let options = parse_syn_options(payload);
                self.peer_addrs = options.addrs;
                self.synchronise(h.window, options.mss);
                self.handshake_rtt(now, h);
                self.establish(now);
                self.ack_now = true;
            }
            _ => self.drop_segment(),
        }
    }

    /// RTT of the handshake: from the timestamp echo, or (Karn) from the
    /// first SYN when it was sent only once.
    fn handshake_rtt(&mut self, now: u64, h: &Header) {
        if h.flags.echo {
            self.sample_echo(now, h.ts_ecr, 0);
        } else if self.phase == Phase::SynReceived && self.syn_xmits == 1 {
            // (A SYN-ACK without echo may be a timer retry: no sample then.)
            self.paths[0].rtt.sample(now.saturating_sub(self.opened_at));
        }
    }

    /// An RTT sample for `path` from a timestamp echo (the peer echoes, on each path, the
    /// latest timestamp it received on that path).
    pub(super) fn sample_echo(&mut self, now: u64, ts_ecr: u32, path: usize) -> Option<u64> {
        let us = seq_diff(ts_of(now), ts_ecr);
        if us < 0 {
            return None;
        }
        let rtt = us as u64 * 1_000;
        self.paths[path].rtt.sample(rtt);
        Some(rtt)
    }

    fn establish(&mut self, now: u64) {
        self.phase = Phase::Open;
        self.syn_deadline = None;
        self.syn_now = false;
        self.paths[0].rtt.reset_backoff();
        self.last_progress = now;
        self.last_recv = now;
    }

    fn handle_closed(&mut self, h: &Header) {
        // After an orderly close the peer may not have our last ACK yet:
        // its retransmissions (data or FIN) are answered with that ACK.
        let orderly = self.error.is_none() && !self.aborted;
        let from_peer = h.src_conn == self.peer_id;
        if orderly && from_peer && matches!(h.kind, SegmentType::Data | SegmentType::Probe) {
            self.stats.segments_received += 1;
            self.ack_now = true;
        } else {
            self.drop_segment();
        }
    }

    fn handle_syn(&mut self, h: &Header) {
        if h.seq != self.irs {
            self.drop_segment();
            return;
        }
        self.stats.segments_received += 1;
        if self.phase == Phase::SynReceived {
            // Our SYN-ACK was lost. The new one answers this SYN: echo its
            // time, or the peer would measure from its first SYN.
            self.paths[0].ts_recent = Some(h.ts_val);
            self.syn_echo_fresh = true;
            self.syn_now = true;
        } else {
            self.ack_now = true;
        }
    }

    fn handle_rst(&mut self, h: &Header) {
        let off = self.rcv_off(h.seq);
        let nxt = self.recv.nxt() as i64;
        // The sender's next sequence number lies within the window we
        // offered (its FIN may take one more).
        if off < nxt || off > self.recv.right_edge() as i64 + 1 {
            self.drop_segment();
            return;
        }
        self.stats.segments_received += 1;
        self.fail(StreamError::Reset);
    }

    /// DATA and PROBE in SynReceived or Open.
    fn handle_segment(&mut self, now: u64, h: &Header, payload: &[u8]) {
        let off = self.rcv_off(h.seq);
        let nxt = self.recv.nxt() as i64;
        // Old duplicates start at most a buffer below the in-order point;
        // nothing legitimate starts beyond the window's right edge.
        let lowest = nxt - self.config.recv_buffer as i64 - 1;
        if off < lowest || off > self.recv.right_edge() as i64 + 1 {
            self.drop_segment();
            self.ack_now = true;
            return;
        }
        if self.phase == Phase::SynReceived {
            if !h.flags.ack || h.ack != self.iss.wrapping_add(1) {
                self.drop_segment();
                return;
            }
            self.handshake_rtt(now, h);
            self.establish(now);
        }
        if h.flags.ack {
            let ack = self.ack_off(h.ack);
            if ack > self.send.sent_end() as i64 {
                // Acknowledges what we never sent: forged or confused.
                self.drop_segment();
                self.ack_now = true;
                return;
            }
            if ack >= self.send.una() as i64 {
                self.process_ack(now, h, ack as u64, payload.is_empty() && !h.flags.fin);
            }
        }
        self.stats.segments_received += 1;
        self.last_recv = now;
        self.keepalive_probes = 0;
        // A probe's timestamp is always taken: its echo is how the prober knows the path works.
        self.heard_on(now, h, off <= nxt || h.kind == SegmentType::Probe);
        if h.kind == SegmentType::Probe {
            if self.multipath() && (h.path as usize) < self.paths.len() {
                self.probe_answers |= 1 << h.path;
            } else {
                self.ack_now = true;
            }
        } else if !payload.is_empty() || h.flags.fin {
            self.receive_data(now, off, payload, h.flags.fin);
        }
        self.check_orderly_close();
    }

    fn receive_data(&mut self, now: u64, off: i64, payload: &[u8], fin: bool) {
        let nxt = self.recv.nxt();
        // Cut what lies below the in-order point (already received).
        let (off, payload) = if off < nxt as i64 {
            let skip = ((nxt as i64 - off) as usize).min(payload.len());
            (nxt, &payload[skip..])
        } else {
            (off as u64, payload)
        };
        let had_holes = self.recv.has_out_of_order();
        let arrival = self.recv.insert(off, payload);
        self.stats.bytes_received += arrival.new_bytes as u64;
        if arrival.duplicate && !payload.is_empty() {
            self.stats.dup_segments += 1;
        }
        if arrival.out_of_order {
            self.stats.out_of_order_segments += 1;
        }
        let fin_taken = fin && !arrival.clipped && self.recv.set_fin(off + payload.len() as u64);
        if arrival.out_of_order || arrival.duplicate || arrival.clipped || had_holes || fin_taken {
            self.ack_now = true;
        } else if arrival.advanced {
            self.unacked_bytes += arrival.new_bytes;
            if self.unacked_bytes >= 2 * self.mss {
                self.ack_now = true;
            } else if self.delack_deadline.is_none() {
                self.delack_deadline = Some(now + DELAYED_ACK);
            }
        }
    }

    fn process_ack(&mut self, now: u64, h: &Header, ack: u64, pure: bool) {
        // The peer never shrinks its window: keep the furthest right edge.
        let right = ack + h.window as u64;
        let window_moved = right > self.snd_right;
        if window_moved {
            self.snd_right = right;
            self.peer_max_window = self.peer_max_window.max(h.window as u64);
        }
        let paths = self.paths.len();
        let mut pipe_before = [0usize; MAX_PATHS];
        let mut losses_before = [0u64; MAX_PATHS];
        for i in 0..paths {
            pipe_before[i] = self.send.path_pipe(i) as usize;
            losses_before[i] = self.send.losses(i);
        }
        let advanced = ack > self.send.una();
        if advanced {
            let acked = self.send.ack(ack);
            if self.multipath() {
                self.multipath_acked(now, h, &acked, &pipe_before);
            } else {
                let rtt = if h.flags.echo {
                    self.sample_echo(now, h.ts_ecr, 0)
                } else if let Some(sent_at) = acked.clean_sent_at {
                    let rtt = now.saturating_sub(sent_at);
                    self.paths[0].rtt.sample(rtt);
                    Some(rtt)
                } else {
                    None
                };
                let in_flight = self.send.in_flight();
                let p = &mut self.paths[0];
                p.cc.on_ack(now, acked.bytes as usize, rtt, pipe_before[0]);
                p.rtt.reset_backoff();
                p.rto_deadline = in_flight.then(|| now + p.rtt.rto());
            }
            self.dupacks = 0;
            self.last_progress = now;
            self.tail_probed = false;
            self.tlp_deadline = None;
            for p in &mut self.paths {
                if p.in_recovery && ack >= p.recovery_end {
                    p.in_recovery = false;
                    p.rto_recovery = false;
                }
            }
        } else if pure && !window_moved && self.send.in_flight() && h.sacks.is_empty() {
            self.dupacks += 1;
        }
        let mut sacked = false;
        for &(start, end) in &h.sacks {
            let (s, e) = (self.ack_off(start), self.ack_off(end));
            if s < e && s >= self.send.una() as i64 {
                sacked |= self.send.sack(s as u64, e as u64);
            }
        }
        if sacked && self.multipath() {
            self.note_path_progress(now);
        }
        if sacked || advanced {
            let srtt = self.paths.iter().map(|p| p.rtt.srtt()).max().unwrap_or(0);
            let reorder_window = srtt / 4;
            self.send.detect_losses(self.mss, reorder_window);
            self.send.detect_lost_retransmissions(reorder_window);
        }
        if self.dupacks >= DUP_THRESH as u32 {
            self.send.mark_first_lost();
        }
        let sent_end = self.send.sent_end();
        for i in 0..paths {
            let p = &mut self.paths[i];
            if self.send.losses(i) > losses_before[i] && !p.in_recovery {
                p.in_recovery = true;
                p.recovery_end = sent_end;
                p.cc.on_loss(now, pipe_before[i]);
            }
        }
    }

    /// A cumulative acknowledgement with several paths: each path's window grows by what
    /// it carried, with an RTT sample from the echo (for the path the ACK came on) or from
    /// its newest record sent once.
    fn multipath_acked(
        &mut self,
        now: u64,
        h: &Header,
        acked: &super::send::Acked,
        pipe_before: &[usize; MAX_PATHS],
    ) {
        let echo_path = (h.path as usize) < self.paths.len() && h.flags.echo;
        let carried = acked.bytes_by_path.iter().take(self.paths.len());
        for (i, &bytes) in carried.enumerate() {
            if bytes == 0 {
                continue;
            }
            let rtt = if echo_path && i == h.path as usize {
                self.sample_echo(now, h.ts_ecr, i)
            } else if let Some(sent_at) = acked.clean_by_path[i] {
                let rtt = now.saturating_sub(sent_at);
                self.paths[i].rtt.sample(rtt);
                Some(rtt)
            } else {
                None
            };
            self.paths[i]
                .cc
                .on_ack(now, bytes as usize, rtt, pipe_before[i]);
        }
        self.note_path_progress(now);
    }

    /// Paths with newly delivered records are alive: their backoff clears and their
    /// retransmission timer restarts (or stops, with nothing left there).
    fn note_path_progress(&mut self, now: u64) {
        for i in 0..self.paths.len() {
            let delivered = self.send.deliveries(i);
            let outstanding = self.send.path_outstanding(i) > 0;
            let p = &mut self.paths[i];
            if delivered != p.deliveries_seen {
                p.deliveries_seen = delivered;
                p.rtt.reset_backoff();
                p.rto_deadline = outstanding.then(|| now + p.rtt.rto());
            }
        }
    }

    fn check_orderly_close(&mut self) {
        if self.phase == Phase::Open && self.send.fin_acked() && self.recv.fin_received() {
            self.close_now();
        }
    }
}
