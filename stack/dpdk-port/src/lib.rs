//! A DPDK ethernet port for the sluice stack (`libsluice_dpdk.so`).
//!
//! [`Port`] is a safe wrapper over one DPDK ethdev with one rx/tx queue pair:
//! a netdev reached through an af_packet or af_xdp virtual device, or a PCI
//! NIC. The EAL starts lazily, once per process, at the first
//! [`Port::open`]. The stack does not link this crate: it loads the cdylib
//! with dlopen() and calls it through the C ABI in [`ffi`] (see
//! `sluice_stack::link::dpdk`), so a process that never offloads maps no
//! DPDK library.

mod eal;
mod error;
pub mod ffi;
mod port;

pub use eal::uses_hugepages as eal_uses_hugepages;
pub use error::DpdkError;
pub use port::{Mbuf, Port, BURST};
pub use sluice_stack::config::{DpdkBackend as Backend, Hugepages};
pub use sluice_stack::link::dpdk::{PortConfig, PortCounters};
pub use sluice_stack::link::{LinkStatus, MacAddr};

/// Logging inside libsluice_dpdk.so. Loaded with dlopen(), the library has
/// its own copy of the `log` crate, so the preload's logger does not reach
/// it: this sets one up from the same `SLUICE_LOG` filter, in the same format.
/// Idempotent; the port's C ABI calls it at the first open.
pub fn init_logging() {
    use sluice_stack::config;
    use std::io::Write;
    let filter = std::env::var(config::LOG).unwrap_or_else(|_| config::DEFAULT_LOG.into());
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            writeln!(
                out,
                "[{} {} pid {}] {}",
                record.level(),
                record.target(),
                pid,
                record.args()
            )
        })
        .try_init();
}
