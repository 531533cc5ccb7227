//! What the engine tests share: a patterned payload and a bounded wait that polls stacks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_stack::engine::Stack;

/// Upper bound on any wait: only reached when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `stacks` until `done`; panics after PATIENCE.
pub fn wait_until(what: &str, stacks: &[&Arc<Stack>], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        for s in stacks {
            s.poll();
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// `len` pseudo-random bytes from `seed` (xorshift): a transfer that reorders, drops or
/// duplicates anything cannot match it by chance.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
