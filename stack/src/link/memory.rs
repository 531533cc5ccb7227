//! An in-memory link pair: two [`Link`] ends joined by queues, for
//! deterministic tests of the stack without any device.
//!
//! Each direction can be impaired by a seeded rule ([`Impairment`]): drop,
//! duplicate or reorder a share of frames, or cut the wire entirely. The same
//! seed gives the same sequence of faults, so a failing test reproduces.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{FaultRolls, Link, LinkError, LinkStatus, MacAddr};

/// Frames one direction of the wire holds before `send_frame` reports it full.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Faults applied to the frames of one direction, each in parts per thousand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Impairment {
    pub seed: u64,
    pub drop_per_mille: u16,
    pub duplicate_per_mille: u16,
    /// A reordered frame is held back and delivered after the next one.
    pub reorder_per_mille: u16,
    /// A corrupted frame has one byte past the Ethernet header flipped (the receiver's
    /// checksums should catch it).
    pub corrupt_per_mille: u16,
}

/// What one direction of the wire did, for tests to check against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireCounters {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    /// Refused because the wire was full.
    pub full: u64,
}

struct Wire {
    frames: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
    capacity: usize,
    impairment: Impairment,
    rng: FaultRolls,
    cut: bool,
    counters: WireCounters,
}

impl Wire {
    fn new(impairment: Impairment) -> Self {
        Wire {
            frames: VecDeque::new(),
            held: None,
            capacity: DEFAULT_CAPACITY,
            impairment,
            rng: FaultRolls::new(impairment.seed),
            cut: false,
            counters: WireCounters::default(),
        }
    }

    fn roll(&mut self) -> u16 {
        self.rng.per_mille()
    }

    fn push(&mut self, frame: &[u8]) -> bool {
        if self.frames.len() >= self.capacity {
            self.counters.full += 1;
            return false;
        }
        self.counters.sent += 1;
        if self.cut {
            self.counters.dropped += 1;
            return true;
        }
        let imp = self.impairment;
        if imp.drop_per_mille > 0 && self.roll() < imp.drop_per_mille {
            self.counters.dropped += 1;
            return true;
        }
        let corrupted;
        let frame =
            if imp.corrupt_per_mille > 0 && self.roll() < imp.corrupt_per_mille && frame.len() > 14
            {
                self.counters.corrupted += 1;
                let mut bad = frame.to_vec();
                let at = 14 + (self.roll() as usize * 7919) % (bad.len() - 14);
                bad[at] ^= 1 << (self.roll() % 8);
                corrupted = bad;
                &corrupted[..]
            } else {
                frame
            };
        let copies = if imp.duplicate_per_mille > 0 && self.roll() < imp.duplicate_per_mille {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        if imp.reorder_per_mille > 0 && self.held.is_none() && self.roll() < imp.reorder_per_mille {
            self.counters.reordered += 1;
            self.held = Some(frame.to_vec());
            if copies == 2 {
                self.frames.push_back(frame.to_vec());
            }
            return true;
        }
        for _ in 0..copies {
            self.frames.push_back(frame.to_vec());
        }
        if let Some(held) = self.held.take() {
            self.frames.push_back(held);
        }
        true
    }
}

/// One end of an in-memory wire.
pub struct MemoryLink {
    mac: MacAddr,
    tx: Arc<Mutex<Wire>>,
    rx: Arc<Mutex<Wire>>,
}

/// A handle on both directions of a pair, to impair or cut it during a test.
#[derive(Clone)]
pub struct MemoryWire {
    a_to_b: Arc<Mutex<Wire>>,
    b_to_a: Arc<Mutex<Wire>>,
}

impl MemoryWire {
    /// Cuts (true) or restores (false) both directions: frames sent meanwhile are lost.
    pub fn set_cut(&self, cut: bool) {
        self.a_to_b.lock().unwrap().cut = cut;
        self.b_to_a.lock().unwrap().cut = cut;
    }

    pub fn set_impairment(&self, a_to_b: Impairment, b_to_a: Impairment) {
        for (wire, imp) in [(&self.a_to_b, a_to_b), (&self.b_to_a, b_to_a)] {
            let mut wire = wire.lock().unwrap();
            wire.impairment = imp;
            wire.rng = FaultRolls::new(imp.seed);
        }
    }

    /// Counters of the direction from end `a` to end `b`, and back.
    pub fn counters(&self) -> (WireCounters, WireCounters) {
        (
            self.a_to_b.lock().unwrap().counters,
            self.b_to_a.lock().unwrap().counters,
        )
    }
}

impl MemoryLink {
    /// Two ends owning `mac_a` and `mac_b`, each direction impaired by its own rule.
    pub fn pair(
        mac_a: MacAddr,
        mac_b: MacAddr,
        a_to_b: Impairment,
        b_to_a: Impairment,
    ) -> (MemoryLink, MemoryLink, MemoryWire) {
        let ab = Arc::new(Mutex::new(Wire::new(a_to_b)));
        let ba = Arc::new(Mutex::new(Wire::new(b_to_a)));
        let a = MemoryLink {
            mac: mac_a,
            tx: ab.clone(),
            rx: ba.clone(),
        };
        let b = MemoryLink {
            mac: mac_b,
            tx: ba.clone(),
            rx: ab.clone(),
        };
        (
            a,
            b,
            MemoryWire {
                a_to_b: ab,
                b_to_a: ba,
            },
        )
    }
}

impl Link for MemoryLink {
    fn send_frame(&mut self, frame: &[u8]) -> Result<bool, LinkError> {
        Ok(self.tx.lock().unwrap().push(frame))
    }

    fn recv_frames(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, LinkError> {
        // Take the burst out first: `on_frame` may send on the reverse wire.
        let burst: Vec<Vec<u8>> = {
            let mut wire = self.rx.lock().unwrap();
            let n = wire.frames.len().min(max);
            wire.frames.drain(..n).collect()
        };
        let mut delivered = 0;
        for frame in &burst {
            // Like a NIC's MAC filter: ours, broadcast and multicast only.
            let for_us = frame.len() >= 6 && {
                let dst = MacAddr(frame[..6].try_into().unwrap());
                dst == self.mac || dst.is_multicast()
            };
            if for_us {
                on_frame(frame);
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    fn status(&mut self) -> Result<LinkStatus, LinkError> {
        Ok(LinkStatus {
            up: !self.tx.lock().unwrap().cut,
            speed_mbps: None,
        })
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: MacAddr, tag: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst.0);
        f[14] = tag;
        f
    }

    fn drain(link: &mut MemoryLink) -> Vec<u8> {
        let mut tags = Vec::new();
        link.recv_frames(usize::MAX, &mut |f| tags.push(f[14]))
            .unwrap();
        tags
    }

    fn drain_frames(link: &mut MemoryLink) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        link.recv_frames(usize::MAX, &mut |f| frames.push(f.to_vec()))
            .unwrap();
        frames
    }

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn clean_wire_delivers_in_order_and_filters_macs() {
        let (mut a, mut b, _) =
            MemoryLink::pair(A, B, Impairment::default(), Impairment::default());
        for tag in 0..5 {
            assert!(a.send_frame(&frame(B, tag)).unwrap());
        }
        assert!(a
            .send_frame(&frame(MacAddr([2, 9, 9, 9, 9, 9]), 99))
            .unwrap());
        assert!(a.send_frame(&frame(MacAddr::BROADCAST, 7)).unwrap());
        assert_eq!(drain(&mut b), vec![0, 1, 2, 3, 4, 7]);
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    fn seeded_faults_repeat_and_roughly_match_their_rates() {
        let imp = Impairment {
            seed: 42,
            drop_per_mille: 100,
            duplicate_per_mille: 100,
            reorder_per_mille: 100,
            corrupt_per_mille: 0,
        };
        let run = || {
            let (mut a, mut b, wire) = MemoryLink::pair(A, B, imp, Impairment::default());
            let mut got = Vec::new();
            for tag in 0..=255u8 {
                a.send_frame(&frame(B, tag)).unwrap();
                got.extend(drain(&mut b));
            }
            (got, wire.counters().0)
        };
        let (first, counters) = run();
        assert_eq!(first, run().0, "same seed, same faults");
        assert!((10..60).contains(&counters.dropped), "{counters:?}");
        assert!(
            counters.duplicated > 5 && counters.reordered > 5,
            "{counters:?}"
        );
        let in_order = first.windows(2).all(|w| w[0] <= w[1]);
        assert!(!in_order, "some frames must arrive out of order");
    }

    #[test]
    fn corruption_flips_bytes_past_the_ethernet_header() {
        let imp = Impairment {
            seed: 3,
            corrupt_per_mille: 500,
            ..Default::default()
        };
        let (mut a, mut b, wire) = MemoryLink::pair(A, B, imp, Impairment::default());
        let sent = frame(B, 9);
        let mut changed = 0;
        for _ in 0..100 {
            a.send_frame(&sent).unwrap();
            for got in drain_frames(&mut b) {
                assert_eq!(got.len(), sent.len());
                assert_eq!(got[..14], sent[..14], "the Ethernet header is left alone");
                changed += usize::from(got != sent);
            }
        }
        let corrupted = wire.counters().0.corrupted as usize;
        assert!((25..75).contains(&corrupted), "{corrupted}");
        assert_eq!(changed, corrupted);
    }

    #[test]
    fn a_cut_wire_loses_frames_and_a_full_one_refuses_them() {
        let (mut a, mut b, wire) =
            MemoryLink::pair(A, B, Impairment::default(), Impairment::default());
        wire.set_cut(true);
        assert!(!a.is_up());
        a.send_frame(&frame(B, 1)).unwrap();
        assert!(drain(&mut b).is_empty());
        wire.set_cut(false);
        for _ in 0..DEFAULT_CAPACITY {
            assert!(a.send_frame(&frame(B, 2)).unwrap());
        }
        assert!(!a.send_frame(&frame(B, 3)).unwrap(), "a full wire refuses");
        assert_eq!(wire.counters().0.full, 1);
    }
}
