//! Keeping the application's signals away from the stack's own threads.
//!
//! A signal sent to the process is delivered to any thread that does not
//! block it. Should it land on a thread of ours, the handler runs there and
//! the application's thread stays blocked in its call, never seeing EINTR.

/// Blocks the asynchronous signals on the calling thread until dropped
/// (faults stay deliverable); threads started meanwhile inherit the mask.
pub struct AsyncSignalsBlocked(libc::sigset_t);

impl AsyncSignalsBlocked {
    pub fn new() -> Self {
        // SAFETY: sigset_t is plain data, set up by sigemptyset/sigfillset
        // and pthread_sigmask; the calls touch only these two sets.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut saved: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut block);
            for fault in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
                libc::sigdelset(&mut block, fault);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut saved);
            AsyncSignalsBlocked(saved)
        }
    }
}

impl Default for AsyncSignalsBlocked {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AsyncSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: puts back the mask `new` saved, on the same thread (the
        // guard is not Send: sigset_t holds no pointers, but a mask is
        // per thread, so the guard is used where it was made).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(sig: i32) -> bool {
        // SAFETY: reads the calling thread's mask into a local set.
        unsafe {
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
            libc::sigismember(&now, sig) == 1
        }
    }

    #[test]
    fn threads_started_under_the_guard_never_take_signals() {
        let child = {
            let _mask = AsyncSignalsBlocked::new();
            assert!(blocked(libc::SIGINT));
            std::thread::spawn(|| {
                (
                    blocked(libc::SIGINT),
                    blocked(libc::SIGTERM),
                    blocked(libc::SIGSEGV),
                )
            })
        };
        assert!(!blocked(libc::SIGINT), "the caller's mask is restored");
        let (int, term, segv) = child.join().unwrap();
        assert!(int && term, "the thread inherits the blocked signals");
        assert!(!segv, "faults stay deliverable");
    }
}
