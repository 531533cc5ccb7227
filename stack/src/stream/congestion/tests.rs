//! Tests of the congestion controllers.

use super::*;

const MSS: usize = 1000;
const MS: u64 = 1_000_000;

fn both() -> [Box<dyn Congestion>; 2] {
    [
        new_congestion(CongestionKind::NewReno, MSS),
        new_congestion(CongestionKind::Cubic, MSS),
    ]
}

#[test]
fn start_at_the_initial_window_and_name_themselves() {
    let [reno, cubic] = both();
    assert_eq!(reno.window(), INITIAL_WINDOW_SEGMENTS * MSS);
    assert_eq!(cubic.window(), INITIAL_WINDOW_SEGMENTS * MSS);
    assert_eq!((reno.name(), cubic.name()), ("newreno", "cubic"));
    assert_eq!(CongestionKind::default(), CongestionKind::Cubic);
}

#[test]
fn slow_start_doubles_per_round_trip() {
    for mut cc in both() {
        let w = cc.window();
        for _ in 0..w / (2 * MSS) {
            cc.on_ack(0, 2 * MSS, Some(MS), w);
        }
        assert_eq!(cc.window(), 2 * w, "{}", cc.name());
    }
}

#[test]
fn an_unused_window_does_not_grow() {
    for mut cc in both() {
        let w = cc.window();
        cc.on_ack(0, MSS, Some(MS), MSS);
        assert_eq!(cc.window(), w, "{}", cc.name());
    }
}

#[test]
fn loss_reduces_and_timeout_collapses_to_one_segment() {
    let mut reno = NewReno::new(MSS);
    reno.on_loss(0, 40 * MSS);
    assert_eq!(reno.window(), 20 * MSS);
    assert_eq!(Congestion::ssthresh(&reno), 20 * MSS);
    reno.on_timeout(0);
    assert_eq!(reno.window(), MSS);
    assert_eq!(Congestion::ssthresh(&reno), 10 * MSS);

    let mut cubic = Cubic::new(MSS);
    cubic.on_loss(0, 10 * MSS);
    assert_eq!(cubic.window(), 7 * MSS);
    cubic.on_timeout(0);
    assert_eq!(cubic.window(), MSS);
}

#[test]
fn reno_grows_one_segment_per_window_in_congestion_avoidance() {
    let mut reno = NewReno::new(MSS);
    reno.on_loss(0, 20 * MSS);
    let w = reno.window();
    for _ in 0..w / MSS {
        reno.on_ack(0, MSS, None, w);
    }
    assert_eq!(reno.window(), w + MSS);
}

#[test]
fn cubic_climbs_back_towards_the_window_of_the_loss() {
    let mut cubic = Cubic::new(MSS);
    for _ in 0..90 {
        cubic.on_ack(0, MSS, Some(MS), cubic.window());
    }
    let before = cubic.window();
    cubic.on_loss(0, before);
    let after = cubic.window();
    assert!(after < before);
    let mut now = 0;
    while now < 5_000 * MS {
        now += MS;
        let w = cubic.window();
        for _ in 0..w / MSS {
            cubic.on_ack(now, MSS, Some(MS), w);
        }
    }
    assert!(cubic.window() > before, "{} <= {}", cubic.window(), before);
}

#[test]
fn never_below_one_segment() {
    for mut cc in both() {
        for _ in 0..50 {
            cc.on_timeout(0);
            cc.on_loss(0, 0);
        }
        assert!(cc.window() >= MSS, "{}", cc.name());
    }
}
