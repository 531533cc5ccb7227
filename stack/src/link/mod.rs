//! Links: what the stack sends Ethernet frames through.
//!
//! A [`Link`] is one data port seen from the stack: it sends and receives
//! whole Ethernet frames (destination MAC first, no FCS), says whether the
//! port is up and which MAC address the stack owns on it. The DPDK port
//! ([`dpdk::DpdkLink`]) lives in a separate shared object that is loaded only
//! when the first socket is offloaded, so this crate never links DPDK.

pub mod capture;
pub mod dpdk;
pub mod faults;
pub mod kernel_udp;
pub mod memory;

use std::fmt;
use std::str::FromStr;

/// An Ethernet (MAC-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group addresses (multicast, and broadcast) have the I/G bit set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Locally administered: made up by us, not burnt into a NIC by a vendor.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// A locally administered unicast address built from `bytes` (the first
    /// octet's I/G and U/L bits are forced), for a stack that owns its MAC.
    pub fn local(bytes: [u8; 6]) -> Self {
        let mut b = bytes;
        b[0] = (b[0] & !0x01) | 0x02;
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Six colon-separated hex octets, e.g. `02:00:00:00:00:01`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{text:?} is not a MAC address (want six hex octets like 02:00:00:00:00:01)")
        };
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// Carrier state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// Negotiated speed, when the device reports one.
    pub speed_mbps: Option<u32>,
}

/// Why a link could not be opened or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The shared object implementing the link could not be loaded.
    Load { library: String, reason: String },
    /// The shared object is from another sluice build.
    AbiMismatch {
        library: String,
        found: u32,
        expected: u32,
    },
    /// The port could not be opened (bad device, no permission, DPDK failed).
    Open(String),
    /// A frame larger than the port can carry in one buffer.
    FrameTooLarge { len: usize, max: usize },
    /// The device failed while in use.
    Device(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Load { library, reason } => {
                write!(f, "cannot load the DPDK port library {library}: {reason}")
            }
            LinkError::AbiMismatch { library, found, expected } => write!(
                f,
                "{library} has port ABI version {found}, this sluice needs {expected}: install matching builds"
            ),
            LinkError::Open(reason) => write!(f, "cannot open port: {reason}"),
            LinkError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes is larger than the port's {max}-byte buffers")
            }
            LinkError::Device(reason) => write!(f, "port failed: {reason}"),
        }
    }
}

impl std::error::Error for LinkError {}

/// One data port: whole Ethernet frames in and out.
///
/// Calls never block: a link is polled by the stack's engine.
pub trait Link {
    /// Queues one frame for transmission. `Ok(false)` means the transmit ring
    /// is full and the frame was not taken; the caller may retry later.
    fn send_frame(&mut self, frame: &[u8]) -> Result<bool, LinkError>;

    /// Queues frames from the front of `frames`, in order, and returns how many were taken
    /// (fewer when the ring fills, or before a frame that fails). An error means the first
    /// frame cannot be sent at all. A link that hands several frames to the device at once
    /// (one system call per burst for a DPDK af_packet port, not one per frame) overrides it.
    fn send_frames(&mut self, frames: &[&[u8]]) -> Result<usize, LinkError> {
        for (taken, frame) in frames.iter().enumerate() {
            match self.send_frame(frame) {
                Ok(true) => {}
                Ok(false) => return Ok(taken),
                Err(e) if taken == 0 => return Err(e),
                Err(_) => return Ok(taken),
            }
        }
        Ok(frames.len())
    }

    /// Hands up to `max` received frames to `on_frame`, in arrival order, and
    /// returns how many. Only frames for [`Link::mac`], broadcast or
    /// multicast are delivered.
    fn recv_frames(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, LinkError>;

    /// Carrier state and speed.
    fn status(&mut self) -> Result<LinkStatus, LinkError>;

    /// Whether the carrier is up; a link that cannot tell counts as down.
    fn is_up(&mut self) -> bool {
        self.status().map(|s| s.up).unwrap_or(false)
    }

    /// The MAC address the stack owns on this port.
    fn mac(&self) -> MacAddr;

    /// File descriptors that poll readable while received frames wait (the packet or XDP
    /// sockets under a DPDK netdev port): a sleeping waiter wakes on them when a frame
    /// arrives instead of relying on the helper's naps. Empty when the link has none. They
    /// stay open as long as the link.
    fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
}

/// Seeded rolls for injected faults (xorshift64): cheap and reproducible, so a failing test
/// repeats; not for anything that must be unpredictable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FaultRolls(u64);

impl FaultRolls {
    pub(crate) fn new(seed: u64) -> FaultRolls {
        // xorshift must not start at zero.
        FaultRolls(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// A roll in 0..1000.
    pub(crate) fn per_mille(&mut self) -> u16 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % 1000) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints_back() {
        let mac: MacAddr = "02:0a:ff:00:10:01".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x10, 0x01]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:01");
        assert!(mac.is_locally_administered());
        assert!(!mac.is_multicast());
    }

    #[test]
    fn mac_rejects_malformed_text() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:0g",
            "002:00:00:00:00:01",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(err.contains("not a MAC address"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn local_mac_is_unicast_and_locally_administered() {
        let mac = MacAddr::local([0xff, 1, 2, 3, 4, 5]);
        assert!(!mac.is_multicast());
        assert!(mac.is_locally_administered());
        assert_eq!(&mac.0[1..], &[1, 2, 3, 4, 5]);
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
    }
}
