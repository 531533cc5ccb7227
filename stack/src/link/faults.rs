//! `SLUICE_FAULTS`: a link that delays and reorders the frames a port sends, for testing the
//! stream protocol on a real lab where the switch (nftables) can drop, duplicate and corrupt
//! but not reorder or delay. Never for production traffic.
//!
//! A sent frame is held for the configured delay; a share of frames (per mille, seeded) is
//! held back until the next frame has gone. Held frames leave whenever the engine uses the
//! link (it does so continuously while traffic flows).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::{FaultRolls, Link, LinkError, LinkStatus, MacAddr};

/// What `SLUICE_FAULTS` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Frames held back behind the next one, per mille.
    pub reorder_per_mille: u16,
    /// Every frame leaves this long after it was sent.
    pub delay: Duration,
    pub seed: u64,
}

impl FaultConfig {
    /// Parses `reorder=PERMILLE,delay_us=N,seed=S` (any subset, any order).
    pub fn parse(text: &str) -> Result<FaultConfig, String> {
        let mut config = FaultConfig {
            seed: 1,
            ..FaultConfig::default()
        };
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not KEY=VALUE"))?;
            let number = |max: u64| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v <= max)
                    .ok_or_else(|| format!("{key}={value:?}: expected a number in 0..={max}"))
            };
            match key {
                "reorder" => config.reorder_per_mille = number(1000)? as u16,
                "delay_us" => config.delay = Duration::from_micros(number(1_000_000)?),
                "seed" => config.seed = number(u64::MAX)?,
                other => {
                    return Err(format!(
                        "unknown fault {other:?} (known: reorder, delay_us, seed)"
                    ))
                }
            }
        }
        Ok(config)
    }
}

/// A link whose transmitted frames are delayed and reordered.
pub struct FaultLink {
    inner: Box<dyn Link + Send>,
    config: FaultConfig,
    rng: FaultRolls,
    /// Frames waiting for their time, in order of release.
    held: VecDeque<(Instant, Vec<u8>)>,
    /// A frame held back until the next one has been queued (or, with no next one, a little
    /// while: a last frame must not wait for ever).
    behind: Option<(Instant, Vec<u8>)>,
    pub reordered: u64,
}

impl FaultLink {
    pub fn new(inner: Box<dyn Link + Send>, config: FaultConfig) -> FaultLink {
        FaultLink {
            inner,
            config,
            rng: FaultRolls::new(config.seed),
            held: VecDeque::new(),
            behind: None,
            reordered: 0,
        }
    }

    fn roll(&mut self) -> u16 {
        self.rng.per_mille()
    }

    /// Hands the frames whose time has come to the inner link (those it refuses stay).
    fn release(&mut self) -> Result<(), LinkError> {
        let now = Instant::now();
        let patience = self.config.delay.max(Duration::from_millis(1));
        if self
            .behind
            .as_ref()
            .is_some_and(|(since, _)| now.duration_since(*since) >= patience)
        {
            if let Some((_, late)) = self.behind.take() {
                self.held.push_back((now, late));
            }
        }
        while let Some((at, frame)) = self.held.front() {
            if *at > now || !self.inner.send_frame(frame)? {
                break;
            }
            self.held.pop_front();
        }
        Ok(())
    }
}

impl Link for FaultLink {
    fn send_frame(&mut self, frame: &[u8]) -> Result<bool, LinkError> {
        let at = Instant::now() + self.config.delay;
        if self.behind.is_none() && self.roll() < self.config.reorder_per_mille {
            self.reordered += 1;
            self.behind = Some((Instant::now(), frame.to_vec()));
        } else {
            self.held.push_back((at, frame.to_vec()));
            if let Some((_, late)) = self.behind.take() {
                self.held.push_back((at, late));
            }
        }
        self.release()?;
        Ok(true)
    }

    fn recv_frames(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, LinkError> {
        self.release()?;
        self.inner.recv_frames(max, on_frame)
    }

    fn status(&mut self) -> Result<LinkStatus, LinkError> {
        self.inner.status()
    }

    fn mac(&self) -> MacAddr {
        self.inner.mac()
    }

    fn wait_fds(&self) -> Vec<RawFd> {
        self.inner.wait_fds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::memory::{Impairment, MemoryLink};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn frame(tag: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&B.0);
        f[14] = tag;
        f
    }

    #[test]
    fn the_configuration_parses_and_refuses_nonsense() {
        let c = FaultConfig::parse("reorder=20,delay_us=300,seed=9").unwrap();
        assert_eq!(c.reorder_per_mille, 20);
        assert_eq!(c.delay, Duration::from_micros(300));
        assert_eq!(c.seed, 9);
        assert!(FaultConfig::parse("reorder=2000").is_err());
        assert!(FaultConfig::parse("jitter=5").is_err());
        assert!(FaultConfig::parse("reorder").is_err());
    }

    #[test]
    fn frames_are_delayed_and_some_reordered_but_none_lost() {
        let (a, mut b, _) = MemoryLink::pair(A, B, Impairment::default(), Impairment::default());
        let config = FaultConfig::parse("reorder=200,delay_us=200000,seed=3").unwrap();
        let mut faulty = FaultLink::new(Box::new(a), config);
        let start = Instant::now();
        for tag in 0..100u8 {
            assert!(faulty.send_frame(&frame(tag)).unwrap());
        }
        let mut got = Vec::new();
        b.recv_frames(usize::MAX, &mut |f| got.push(f[14])).unwrap();
        assert!(got.is_empty(), "nothing leaves before its delay");
        while got.len() < 100 && start.elapsed() < Duration::from_secs(5) {
            faulty.recv_frames(0, &mut |_| {}).unwrap();
            b.recv_frames(usize::MAX, &mut |f| got.push(f[14])).unwrap();
        }
        // A frame held back with no next one leaves after a while too.
        assert_eq!(got.len(), 100, "{got:?}");
        assert!(faulty.reordered > 5);
        assert!(
            got.windows(2).any(|w| w[0] > w[1]),
            "some frames were reordered"
        );
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "no duplicates");
    }
}
