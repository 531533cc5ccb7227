//! Raw bindings to the system DPDK (22.11, found with pkg-config).
//!
//! Only the EAL, ethdev, mbuf and mempool calls that `sluice-dpdk` uses are
//! bound. DPDK's static inline fast-path functions (rx/tx burst, mbuf
//! alloc/free and field access) are reached through `sluice_rte_*` wrappers
//! compiled from `src/shim.c`. Everything here is `unsafe` and unchecked: use
//! the safe `sluice_dpdk::Port` instead.

#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
