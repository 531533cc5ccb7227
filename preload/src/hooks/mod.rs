//! The exported hooks, by concern. Every hook has the C prototype of the libc function it
//! replaces and ends in the real function (see `crate::real`) unless the fd is sluice's.

mod fd;
mod io;
mod mux;
mod process;
mod socket;

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
            // Offloaded sockets will be served by the stack's data path here (later issue);
            // until it exists the kernel shadow carries the data of every socket.
            crate::guard::guarded(&SITE, kernel, |k| k.call())
        }
    )*};
}
pub(crate) use fd_hooks;
