//! Port health: whether a data port works, judged by its carrier and by silence.
//!
//! [`PortHealth`] is a state machine with time passed in (monotonic ns). The engine feeds it
//! the carrier (read at a bounded interval, never per poll), whether the port's link received
//! or sent frames since the last look, and answers to its probes; it returns changes of state
//! and says when to send a probe.
//!
//! Silence: a port that hears nothing for [`HealthConfig::silence_ns`] while its carrier claims
//! to be up, although it was sending, or receiving traffic until then, is probed with unicast
//! ARP requests to a known neighbour, as Linux re-confirms a neighbour (NUD probes). Traffic
//! received ends the suspicion, and so does an answer (after which a port that simply went
//! quiet is not probed again until traffic resumes); after
//! [`HealthConfig::probes`] unanswered probes the port is down. A down port keeps probing (the
//! engine asks by broadcast then: the neighbour may have moved its address meanwhile) and is
//! up again once its carrier is up and a probe is answered (with no neighbour to ask, a port
//! that went down by its carrier comes back with the carrier).
//!
//! [`hosts`] decides which surviving port serves the addresses of each failed one.

use std::fmt;

const MS: u64 = 1_000_000;

/// The detection constants. With the defaults a silent port is down 20 + 3 x 15 = 65 ms after
/// the first frame it sent without hearing anything since; a lost carrier is seen within the
/// carrier check interval (10 ms, see the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Sending without receiving anything for this long starts the probes.
    pub silence_ns: u64,
    /// Interval between probes of a port suspected silent.
    pub probe_interval_ns: u64,
    /// Unanswered probes before the port is declared down.
    pub probes: u32,
    /// Interval between probes of a port that is down (to see it recover).
    pub down_probe_interval_ns: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            silence_ns: 20 * MS,
            probe_interval_ns: 15 * MS,
            probes: 3,
            down_probe_interval_ns: 50 * MS,
        }
    }
}

/// Why a port changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    CarrierLost,
    /// Nothing received for this long (ns) while sending and probing.
    Silent(u64),
    /// A probe was answered (or, with nobody to probe, the carrier returned).
    Answered,
    CarrierUp,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CarrierLost => f.write_str("carrier lost"),
            Reason::Silent(ns) => write!(f, "silent for {} ms", ns / MS),
            Reason::Answered => f.write_str("probe answered"),
            Reason::CarrierUp => f.write_str("carrier up"),
        }
    }
}

impl Reason {
    /// One word, for the statistics snapshot.
    pub fn key(&self) -> String {
        match self {
            Reason::CarrierLost => "carrier_lost".into(),
            Reason::Silent(ns) => format!("silent_{}ms", ns / MS),
            Reason::Answered => "probe_answered".into(),
            Reason::CarrierUp => "carrier_up".into(),
        }
    }
}

/// A change of state: `up` now, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub up: bool,
    pub reason: Reason,
}

/// What the engine saw on the port since the last call to [`PortHealth::poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Frames other than answers to our probes.
    pub received: bool,
    pub sent: bool,
    /// An answer to one of our probes arrived.
    pub answered: bool,
}

/// What [`PortHealth::poll`] asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub change: Option<Change>,
    /// Send one probe now.
    pub probe: bool,
}

#[derive(Clone, Debug)]
pub struct PortHealth {
    config: HealthConfig,
    up: bool,
    carrier: bool,
    /// Probing is allowed at all (a stack with one port never probes).
    probing: bool,
    last_rx: u64,
    /// Traffic was received since the last answered probe: its stopping is suspect.
    heard_traffic: bool,
    /// The first frame sent since the last one received.
    sent_unanswered_since: Option<u64>,
    probes_unanswered: u32,
    next_probe_at: u64,
    changes: u64,
    last_reason: Option<Reason>,
    probes_sent: u64,
}

impl PortHealth {
    pub fn new(now: u64, config: HealthConfig, probing: bool) -> Self {
        PortHealth {
            config,
            up: true,
            carrier: true,
            probing,
            last_rx: now,
            heard_traffic: false,
            sent_unanswered_since: None,
            probes_unanswered: 0,
            next_probe_at: 0,
            changes: 0,
            last_reason: None,
            probes_sent: 0,
        }
    }

    pub fn up(&self) -> bool {
        self.up
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn last_reason(&self) -> Option<Reason> {
        self.last_reason
    }

    pub fn probes_sent(&self) -> u64 {
        self.probes_sent
    }

    /// A probe is outstanding (the engine looks for its answer among received frames).
    pub fn awaiting_answer(&self) -> bool {
        !self.up || self.probes_unanswered > 0
    }

    /// The carrier as last read; a change to down takes the port down at once.
    pub fn carrier(&mut self, up: bool) -> Option<Change> {
        let was = self.carrier;
        self.carrier = up;
        if was && !up && self.up {
            return Some(self.set(false, Reason::CarrierLost));
        }
        None
    }

    /// Runs the timers on what was observed. `can_probe`: there is a neighbour to ask.
    pub fn poll(&mut self, now: u64, seen: Observed, can_probe: bool) -> Verdict {
        if seen.received || (seen.answered && self.up) {
            self.last_rx = now;
            self.sent_unanswered_since = None;
            self.probes_unanswered = 0;
            // After an answer, a quiet port is left alone until traffic resumes.
            self.heard_traffic = seen.received && !seen.answered;
        }
        if seen.sent && self.sent_unanswered_since.is_none() && !seen.received {
            self.sent_unanswered_since = Some(now);
        }
        if self.up {
            self.poll_up(now, can_probe)
        } else {
            self.poll_down(now, seen, can_probe)
        }
    }

    fn poll_up(&mut self, now: u64, can_probe: bool) -> Verdict {
        let mut verdict = Verdict::default();
        let stopped = self.heard_traffic.then_some(self.last_rx);
        let Some(since) = self.sent_unanswered_since.into_iter().chain(stopped).min() else {
            return verdict;
        };
        if !self.probing || !can_probe || now < since + self.config.silence_ns {
            return verdict;
        }
        if self.probes_unanswered == 0 || now >= self.next_probe_at {
            if self.probes_unanswered >= self.config.probes {
                let silent = now.saturating_sub(self.last_rx);
                verdict.change = Some(self.set(false, Reason::Silent(silent)));
                self.next_probe_at = now + self.config.down_probe_interval_ns;
                return verdict;
            }
            self.probe(now, self.config.probe_interval_ns);
            verdict.probe = true;
        }
        verdict
    }

    fn poll_down(&mut self, now: u64, seen: Observed, can_probe: bool) -> Verdict {
        let mut verdict = Verdict::default();
        if !self.carrier {
            return verdict;
        }
        if seen.answered {
            verdict.change = Some(self.set(true, Reason::Answered));
        } else if !can_probe && self.last_reason == Some(Reason::CarrierLost) {
            verdict.change = Some(self.set(true, Reason::CarrierUp));
        } else if can_probe && self.probing && now >= self.next_probe_at {
            self.probe(now, self.config.down_probe_interval_ns);
            verdict.probe = true;
        }
        verdict
    }

    fn probe(&mut self, now: u64, interval: u64) {
        self.probes_unanswered += 1;
        self.probes_sent += 1;
        self.next_probe_at = now + interval;
    }

    fn set(&mut self, up: bool, reason: Reason) -> Change {
        self.up = up;
        self.changes += 1;
        self.last_reason = Some(reason);
        self.sent_unanswered_since = None;
        self.probes_unanswered = 0;
        self.heard_traffic = false;
        // A port that just went down probes at once (a carrier that returns is tried first).
        self.next_probe_at = 0;
        Change { up, reason }
    }
}

/// Which port serves the addresses of each port: `None` for itself (it is up, or there is
/// no surviving port to move to), `Some(j)` for surviving port `j`. An address never moves to a
/// port that is down; with every port down each stays where it is (`current`).
pub fn hosts(up: &[bool], current: &[Option<usize>]) -> Vec<Option<usize>> {
    let first_up = up.iter().position(|u| *u);
    (0..up.len())
        .map(|i| {
            if up[i] {
                None
            } else {
                match current[i] {
                    Some(j) if up[j] => Some(j),
                    _ => first_up.or(current[i]),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
