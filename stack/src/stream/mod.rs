//! Streams between sluice hosts: a reliable, ordered byte stream protocol of
//! our own, carried in UDP datagrams (the stream for TCP port P uses UDP
//! port P). The wire format is written down in docs/protocol.md.
//!
//! Layers, bottom up, all sans IO (time is passed in as `now`, ns):
//! - [`wire`]: the segment format, parse and emit.
//! - [`rtt`]: RTT estimation and the retransmission timeout.
//! - [`congestion`]: congestion controllers (NewReno, CUBIC).
//! - [`conn`]: one connection's state machine: handshake, send and receive
//!   buffers, acknowledgement, SACK loss recovery, flow control, timers,
//!   orderly close and reset.
//!
//! The engine owns the sockets, demultiplexes datagrams by connection id
//! and peer address, chooses connection ids and ISNs (from a CSPRNG) and
//! drives each [`conn::Connection`] with `handle`, `poll_transmit` and
//! `next_deadline`.

pub mod congestion;
pub mod conn;
pub mod cookie;
pub mod endpoint;
pub mod route;
pub mod rtt;
pub mod wire;

#[cfg(test)]
mod tests;
