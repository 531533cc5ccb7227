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
    if table.with(fd, |e| e.offloaded().is_some()) != Some(true) {
        return None;
    }
    table
        .get(fd)
        .filter(|e| e.offloaded().is_some())
        .filter(|_| !crate::offload::inherited_in_child(fd))
}

/// Hooks whose first argument is an fd and that only need to know whether it is tracked:
/// an untracked fd costs the table lookup and goes to the kernel.
macro_rules! fd_hooks {
    ($( fn $name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)*) -> $ret {
            // SAFETY: the caller's arguments, passed on unchanged.
            let kernel = || unsafe { crate::real::$name($fd $(, $arg)*) };
            if !crate::init::TABLE.is_tracked($fd) {
                return kernel();
            }
            static SITE: crate::guard::Site = crate::guard::Site::new(stringify!($name));
            // Only the fd's shadow is concerned (these calls do not touch the stack's data).
            crate::guard::guarded(&SITE, kernel, |k| k.call())
        }
    )*};
}
pub(crate) use fd_hooks;
