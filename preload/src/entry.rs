//! What sluice knows about one tracked socket (one entry shared by all fds dup'd from it).

use std::net::SocketAddrV4;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the socket's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Route {
    /// No address seen yet (socket() alone decides nothing).
    Undecided = 0,
    Kernel = 1,
    /// The policy says offload. Until the stack's data path exists, the kernel shadow still
    /// carries the data.
    Offload = 2,
}

impl Route {
    fn from_u8(v: u8) -> Route {
        match v {
            1 => Route::Kernel,
            2 => Route::Offload,
            _ => Route::Undecided,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Undecided => "undecided",
            Route::Kernel => "kernel",
            Route::Offload => "offload",
        }
    }
}

/// Why a decision was taken, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Bind,
    Connect,
    SendTo,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::Bind => "bind",
            Cause::Connect | Cause::SendTo => "dst",
        }
    }
}

#[derive(Debug)]
pub struct SocketEntry {
    route: AtomicU8,
}

impl SocketEntry {
    pub fn new(route: Route) -> SocketEntry {
        SocketEntry {
            route: AtomicU8::new(route as u8),
        }
    }

    pub fn route(&self) -> Route {
        Route::from_u8(self.route.load(Ordering::Acquire))
    }

    /// Records the policy's answer for `addr`. A connect always decides (it names the peer);
    /// bind and sendto only decide a socket that is still undecided. Returns whether the
    /// decision was recorded.
    pub fn decide(&self, cause: Cause, offload: bool) -> bool {
        let route = if offload {
            Route::Offload
        } else {
            Route::Kernel
        } as u8;
        match cause {
            Cause::Connect => {
                self.route.store(route, Ordering::Release);
                true
            }
            Cause::Bind | Cause::SendTo => self
                .route
                .compare_exchange(
                    Route::Undecided as u8,
                    route,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
        }
    }
}

/// The debug line naming a decision: `sluice: fd 5 -> offload (dst 10.77.2.2:9000)`.
pub fn decision_line(fd: c_int, route: Route, cause: Cause, addr: SocketAddrV4) -> String {
    format!(
        "sluice: fd {fd} -> {} ({} {addr})",
        route.as_str(),
        cause.label()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_overrides_and_sendto_only_fills_in() {
        let e = SocketEntry::new(Route::Undecided);
        assert!(e.decide(Cause::SendTo, true));
        assert_eq!(e.route(), Route::Offload);
        assert!(!e.decide(Cause::SendTo, false), "first sendto decides");
        assert_eq!(e.route(), Route::Offload);
        assert!(e.decide(Cause::Connect, false));
        assert_eq!(e.route(), Route::Kernel);
        assert!(!e.decide(Cause::Bind, true));
    }

    #[test]
    fn decision_line_reads_as_documented() {
        let addr = "10.77.2.2:9000".parse().unwrap();
        assert_eq!(
            decision_line(5, Route::Offload, Cause::Connect, addr),
            "sluice: fd 5 -> offload (dst 10.77.2.2:9000)"
        );
        assert_eq!(
            decision_line(6, Route::Kernel, Cause::Bind, addr),
            "sluice: fd 6 -> kernel (bind 10.77.2.2:9000)"
        );
    }
}
