//! The sluice userspace stack: configuration, offload policy, links, protocols.
//!
//! Nothing in this crate hooks libc; the preload crate translates the C ABI
//! into calls on the types defined here.

pub mod arp;
pub mod config;
pub mod engine;
pub mod icmp;
pub mod iface;
pub mod ipv4;
pub mod link;
pub mod policy;
pub mod port_health;
pub mod signals;
pub mod socket;
pub mod stats;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod wire;
