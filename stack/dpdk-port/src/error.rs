//! Errors of the DPDK port, each a sentence a user can act on.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpdkError {
    /// The device string is neither a netdev name nor a PCI address.
    BadDevice(String),
    /// No network interface of that name in this process's network namespace.
    NoSuchInterface(String),
    /// `rte_eal_init` failed; later ports cannot be opened either.
    EalInit { args: String, reason: String },
    /// DPDK did not create an ethdev for the device.
    Probe { device: String, reason: String },
    /// A DPDK call failed while setting the port up or using it.
    Call {
        device: String,
        call: &'static str,
        reason: String,
    },
    /// The port was closed by the exit hook while still owned.
    Closed,
    /// A frame larger than one mbuf.
    FrameTooLarge { len: usize, max: usize },
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkError::BadDevice(reason) => write!(f, "bad DPDK device: {reason}"),
            DpdkError::NoSuchInterface(name) => write!(
                f,
                "no network interface {name:?} in this network namespace (see `ip link`)"
            ),
            DpdkError::EalInit { args, reason } => {
                write!(
                    f,
                    "DPDK EAL initialisation failed ({reason}); EAL arguments: {args}"
                )
            }
            DpdkError::Probe { device, reason } => {
                write!(f, "DPDK could not probe {device}: {reason}")
            }
            DpdkError::Call {
                device,
                call,
                reason,
            } => write!(f, "{call} on {device} failed: {reason}"),
            DpdkError::Closed => write!(f, "the DPDK port was closed at process exit"),
            DpdkError::FrameTooLarge { len, max } => {
                write!(
                    f,
                    "frame of {len} bytes does not fit the port's {max}-byte buffers"
                )
            }
        }
    }
}

impl std::error::Error for DpdkError {}
