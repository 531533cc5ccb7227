//! Operator tools for sluice: the launcher's logic (`sluice run`), profiles, and
//! `sluice-stat`'s reading of the stacks' published statistics.

pub mod launcher;
pub mod profile;
pub mod stat;
