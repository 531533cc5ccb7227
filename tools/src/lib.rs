//! Operator tools for sluice: the launcher's logic (`sluice run`) and profiles.

pub mod launcher;
pub mod profile;
