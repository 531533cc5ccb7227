use super::*;

const NOTHING: Observed = Observed {
    received: false,
    sent: false,
    answered: false,
};
const SENT: Observed = Observed {
    sent: true,
    ..NOTHING
};
const RECEIVED: Observed = Observed {
    received: true,
    ..NOTHING
};
const ANSWER: Observed = Observed {
    received: true,
    answered: true,
    ..NOTHING
};

fn health() -> PortHealth {
    PortHealth::new(0, HealthConfig::default(), true)
}

/// Polls every millisecond from `from` to `to` with `seen` each time; the probes sent and the
/// changes, with their times.
fn run(h: &mut PortHealth, from: u64, to: u64, seen: Observed) -> (Vec<u64>, Vec<(u64, Change)>) {
    let (mut probes, mut changes) = (Vec::new(), Vec::new());
    for t in from..=to {
        let v = h.poll(t * MS, seen, true);
        if v.probe {
            probes.push(t);
        }
        if let Some(c) = v.change {
            changes.push((t, c));
        }
    }
    (probes, changes)
}

#[test]
fn carrier_loss_takes_the_port_down_at_once_and_only_once() {
    let mut h = health();
    assert_eq!(h.carrier(true), None);
    let change = h.carrier(false).expect("a change");
    assert_eq!(
        change,
        Change {
            up: false,
            reason: Reason::CarrierLost
        }
    );
    assert!(!h.up());
    assert_eq!(h.carrier(false), None);
    assert_eq!(h.changes(), 1);
    // Down without a carrier: no probes, whatever is seen.
    let (probes, changes) = run(&mut h, 1, 500, SENT);
    assert!(probes.is_empty() && changes.is_empty());
}

#[test]
fn carrier_return_needs_an_answered_probe_when_there_is_a_neighbour() {
    let mut h = health();
    h.carrier(false);
    h.carrier(true);
    assert!(!h.up(), "the carrier alone does not bring it back");
    let v = h.poll(10 * MS, NOTHING, true);
    assert!(v.probe, "probes at once when the carrier returns");
    assert_eq!(v.change, None);
    // Frames that are not an answer do not bring it back (a one-way path stays down).
    assert_eq!(h.poll(11 * MS, RECEIVED, true).change, None);
    let v = h.poll(12 * MS, ANSWER, true);
    assert_eq!(
        v.change,
        Some(Change {
            up: true,
            reason: Reason::Answered
        })
    );
    assert!(h.up());
}

#[test]
fn carrier_return_without_a_neighbour_is_enough() {
    let mut h = health();
    h.carrier(false);
    assert_eq!(h.poll(MS, NOTHING, false).change, None);
    h.carrier(true);
    let v = h.poll(2 * MS, NOTHING, false);
    assert_eq!(
        v.change.map(|c| (c.up, c.reason)),
        Some((true, Reason::CarrierUp))
    );
}

#[test]
fn silence_while_sending_is_probed_then_declared_down() {
    let mut h = health();
    // Traffic both ways: nothing to suspect.
    for t in 0..100 {
        let seen = if t % 2 == 0 { SENT } else { RECEIVED };
        assert_eq!(h.poll(t * MS, seen, true), Verdict::default());
    }
    // From 100 ms on: sending, hearing nothing (the last frame came at 99 ms).
    let (probes, changes) = run(&mut h, 100, 400, SENT);
    // After 20 ms of silence, every 15 ms; once down, every 50 ms.
    assert_eq!(probes, [119, 134, 149, 214, 264, 314, 364]);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (at, change) = changes[0];
    assert_eq!(at, 164);
    assert!(!change.up);
    assert_eq!(change.reason, Reason::Silent(65 * MS));
    assert_eq!(change.reason.to_string(), "silent for 65 ms");
    assert_eq!(h.probes_sent(), 7);
}

#[test]
fn any_frame_ends_the_suspicion() {
    let mut h = health();
    let (probes, _) = run(&mut h, 0, 25, SENT);
    assert_eq!(probes, [20]);
    h.poll(26 * MS, RECEIVED, true);
    // A fresh silence starts from that frame: no probe before 20 ms more.
    let (probes, changes) = run(&mut h, 27, 45, SENT);
    assert!(probes.is_empty() && changes.is_empty(), "{probes:?}");
    assert!(h.up());
}

#[test]
fn an_idle_port_is_not_probed() {
    let mut h = health();
    let (probes, changes) = run(&mut h, 0, 1000, NOTHING);
    assert!(probes.is_empty() && changes.is_empty());
}

#[test]
fn without_a_neighbour_or_with_probing_off_silence_is_not_judged() {
    let mut h = health();
    for t in 0..500 {
        assert_eq!(h.poll(t * MS, SENT, false), Verdict::default());
    }
    let mut single = PortHealth::new(0, HealthConfig::default(), false);
    let (probes, changes) = run(&mut single, 0, 500, SENT);
    assert!(probes.is_empty() && changes.is_empty());
    assert!(single.up());
}

#[test]
fn a_silent_port_recovers_when_a_probe_is_answered() {
    let mut h = health();
    let (_, changes) = run(&mut h, 0, 100, SENT);
    assert_eq!(changes.len(), 1);
    let v = h.poll(130 * MS, ANSWER, true);
    assert_eq!(v.change.map(|c| c.reason), Some(Reason::Answered));
    assert!(h.up());
    assert_eq!(h.changes(), 2);
    assert_eq!(
        h.last_reason().map(|r| r.key()),
        Some("probe_answered".into())
    );
}

#[test]
fn addresses_move_to_the_first_surviving_port_and_never_to_a_down_one() {
    assert_eq!(hosts(&[true, true], &[None, None]), [None, None]);
    assert_eq!(hosts(&[false, true], &[None, None]), [Some(1), None]);
    assert_eq!(hosts(&[true, false], &[None, None]), [None, Some(0)]);
    // Back up: home again.
    assert_eq!(hosts(&[true, true], &[None, Some(0)]), [None, None]);
    // Every port down: nothing moves, and what moved stays.
    assert_eq!(hosts(&[false, false], &[None, None]), [None, None]);
    assert_eq!(hosts(&[false, false], &[Some(1), None]), [Some(1), None]);
    // A host that fails hands over to the next survivor; a surviving host keeps its guests.
    assert_eq!(
        hosts(&[false, false, true], &[Some(1), None, None]),
        [Some(2), Some(2), None]
    );
    assert_eq!(
        hosts(&[false, true, true], &[Some(2), None, None]),
        [Some(2), None, None]
    );
}

#[test]
fn traffic_that_stops_is_probed_and_a_quiet_answer_settles_it() {
    let mut h = health();
    // Receiving only (a server whose clients send), then nothing.
    let (probes, _) = run(&mut h, 0, 50, RECEIVED);
    assert!(probes.is_empty());
    let (probes, changes) = run(&mut h, 51, 75, NOTHING);
    assert_eq!(probes, [70], "20 ms after the last frame");
    assert!(changes.is_empty());
    // The neighbour answers: the port merely went quiet, and is left alone.
    assert_eq!(h.poll(76 * MS, ANSWER, true), Verdict::default());
    let (probes, changes) = run(&mut h, 77, 1000, NOTHING);
    assert!(probes.is_empty() && changes.is_empty() && h.up());
}

#[test]
fn traffic_that_stops_unanswered_is_a_silent_port() {
    let mut h = health();
    run(&mut h, 0, 50, RECEIVED);
    let (probes, changes) = run(&mut h, 51, 200, NOTHING);
    assert_eq!(&probes[..3], [70, 85, 100]);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0],
        (
            115,
            Change {
                up: false,
                reason: Reason::Silent(65 * MS)
            }
        )
    );
}
