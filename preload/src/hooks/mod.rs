//! The exported hooks, by concern. Every hook has the C prototype of the libc function it
//! replaces and ends in the real function (see `crate::real`) unless the fd is sluice's.

mod fd;
mod io;
mod mux;
mod process;
mod signal;
mod socket;
mod sockopt;

use std::os::raw::c_int;
use std::sync::Arc;

use crate::entry::SocketEntry;
pub(crate) use crate::guard::fail;

/// The entry of `fd` if the stack serves it (its `offloaded()` is then `Some`).
#[inline]
pub(crate) fn served(fd: c_int) -> Option<Arc<SocketEntry>> {
    let table = &crate::init::TABLE;
    // The borrow-only look first: kernel-routed sockets pay no reference count.
    if table.with(fd, |e| e.served_by_stack()) != Some(true) {
        return None;
    }
    table
        .get(fd)
        .filter(|e| e.served_by_stack())
        .filter(|_| !crate::offload::inherited_in_child(fd))
}
