//! Offloaded streams across a faulty switch: nftables faults on the lab switch's ports of
//! sl-h1 and sl-h2 (`sluice-lab fault`: loss, duplication, corruption), a large one-way transfer
//! between two sluice processes, compared by SHA-256, within a bound of time.
//!
//! Needs root; brings the lab up when it is missing; holds /run/sluice-lab/dpdk-p0.lock and
//! clears its faults when it ends, pass or fail. Run with
//! `cargo test --release -p shim-tests --test lab_stream_faults -- --test-threads=1`.

use shim_tests::lab::{
    digest_line, ensure_lab, in_ns, lab_port, lock_p0, sluice_lab, sluice_lab_quietly, LabProcess,
    Stack, H1, H1_DATA, H2, H2_DATA,
};
use shim_tests::{python3, scripts_dir};
use std::time::{Duration, Instant};

/// Bytes moved per case: enough for thousands of segments, so that the faults hit often.
const BYTES: usize = 8 << 20;
/// A hang guard for one transfer (a healthy one takes a second or two).
const LIMIT: Duration = Duration::from_secs(90);

/// `sluice-lab fault ...` on the given switch ports; cleared on drop.
struct Faults(Vec<&'static str>);

impl Faults {
    fn apply(ports: &[&'static str], kind: &str, permille: &str) -> Faults {
        let faults = Faults(ports.to_vec());
        for port in ports {
            sluice_lab(&["fault", port, kind, permille]);
        }
        faults
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        for port in &self.0 {
            sluice_lab_quietly(&["fault", port, "clear"]);
        }
    }
}

/// One transfer from sl-h1 to sl-h2 under `kind`/`permille` faults on both hosts' switch
/// ports; returns how long it took.
fn transfer_under(kind: &str, permille: &str, offset: u16) -> Duration {
    ensure_lab();
    let _p0 = lock_p0();
    let _faults = Faults::apply(&["h1p0", "h2p0"], kind, permille);
    transfer(kind, permille, offset, None)
}

/// One transfer from sl-h1 to sl-h2, both stacks with `link_faults` (SLUICE_FAULTS) if given.
fn transfer(kind: &str, permille: &str, offset: u16, link_faults: Option<&str>) -> Duration {
    let python = python3().display().to_string();
    let script = scripts_dir().join("stream_transfer.py");
    let script = script.to_str().unwrap();
    let port = lab_port(offset).to_string();
    let mut cmd = in_ns(
        H2,
        Some(1),
        &Stack::dpdk(H2_DATA),
        &python,
        &[script, "sink", H2_DATA, &port],
    );
    if let Some(f) = link_faults {
        cmd.env("SLUICE_FAULTS", f);
    }
    let mut sink = LabProcess::start("stream sink", cmd);
    sink.wait_printed("listening", LIMIT);
    let mut cmd = in_ns(
        H1,
        Some(0),
        &Stack::dpdk(H1_DATA),
        &python,
        &[script, "source", H2_DATA, &port, &BYTES.to_string()],
    );
    if let Some(f) = link_faults {
        cmd.env("SLUICE_FAULTS", f);
    }
    let start = Instant::now();
    let mut source = LabProcess::start("stream source", cmd);
    let status = source.wait(LIMIT);
    let took = start.elapsed();
    assert!(
        status.success(),
        "{kind} {permille}‰: the transfer failed ({status}).\n{}\n{}",
        source.logs(),
        sink.logs()
    );
    sink.wait(Duration::from_secs(10));
    let sent = digest_line(&source.stdout(), "sent ");
    let got = digest_line(&sink.stdout(), "got ");
    assert!(
        sent.is_some() && sent == got,
        "{kind} {permille}‰: sent {sent:?}, received {got:?}.\n{}\n{}",
        source.logs(),
        sink.logs()
    );
    let stats = source.stdout();
    let counter = |name: &str| -> u64 {
        stats
            .lines()
            .filter(|l| l.starts_with("stream "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix(&format!("{name}=")))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    let (retransmits, dups) = (counter("retransmits"), counter("dup_segments"));
    if kind == "reorder" {
        let sink_stats = sink.stdout();
        let out_of_order: u64 = sink_stats
            .lines()
            .filter(|l| l.starts_with("stream "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix("out_of_order="))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        assert!(
            out_of_order > 0,
            "the sink saw no segment out of order: were the faults applied?\n{sink_stats}"
        );
        eprintln!("  sink: {out_of_order} segments arrived out of order");
    }
    if kind == "loss" || kind == "corrupt" {
        assert!(
            retransmits > 0,
            "{kind} {permille}‰: the source retransmitted nothing: were the faults applied?\n{stats}"
        );
    }
    let mbit = BYTES as f64 * 8.0 / took.as_secs_f64() / 1e6;
    eprintln!("  source: {retransmits} retransmissions, {dups} duplicate segments received");
    eprintln!("{kind} {permille}‰ on both ports: {BYTES} bytes byte-exact in {took:.2?} ({mbit:.0} Mbit/s)");
    took
}

#[test]
fn a_large_transfer_survives_one_percent_loss() {
    transfer_under("loss", "10", 0);
}

#[test]
fn a_large_transfer_survives_five_percent_loss() {
    transfer_under("loss", "50", 1);
}

#[test]
fn a_large_transfer_survives_one_percent_duplication() {
    transfer_under("dup", "10", 2);
}

#[test]
fn a_large_transfer_survives_corruption() {
    // 0.1%: the receiver's UDP checksum drops the damaged datagrams; the protocol resends them.
    transfer_under("corrupt", "1", 3);
}

#[test]
fn a_large_transfer_survives_reordering_and_delay_at_the_link() {
    // The switch cannot reorder or delay: both stacks' ports do it themselves (SLUICE_FAULTS),
    // 2% of frames held behind the next one, every frame 300 us late.
    ensure_lab();
    let _p0 = lock_p0();
    transfer("reorder", "20", 4, Some("reorder=20,delay_us=300,seed=7"));
}
