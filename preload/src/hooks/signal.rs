//! sigaction and signal: the application's handlers are relayed, so that our blocking waits
//! know when one ran (see `crate::signals`).

#![allow(clippy::missing_safety_doc)]

use std::os::raw::c_int;

use libc::sighandler_t;

use crate::real;

#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    // SAFETY: the caller's arguments, valid as for sigaction(2); the real call gets them or
    // a copy with the relay in place of the handler.
    unsafe { crate::signals::sigaction(sig, act, old, |a, o| real::sigaction(sig, a, o)) }
}

/// glibc's signal(): BSD semantics (the handler stays installed, the signal is blocked while
/// it runs, interrupted calls restart). glibc's own signal() calls its sigaction internally,
/// past this library, so it is replaced rather than passed through.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    // SAFETY: an all-zero sigaction is valid; the set calls only touch its mask.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is ours.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        if libc::sigaddset(&mut act.sa_mask, sig) != 0 {
            return libc::SIG_ERR; // errno EINVAL, as signal() sets it
        }
    }
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both point to our locals.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}
