//! Socket objects: what the preload's fd table points at once a socket is
//! offloaded. They hold the per-socket receive queue (read by application
//! threads without the engine lock) and call into the [`crate::engine::Stack`]
//! for everything else.

pub mod stream;
pub mod udp;
