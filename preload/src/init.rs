//! Process-wide state, built lazily at the first IPv4 socket call.
//!
//! Loading libsluice.so does nothing but copy a few environment strings (see `exec_env`): no
//! thread, no allocation, no configuration parsing. The first call that needs a decision
//! (socket, bind, connect) reads the `SLUICE_*` configuration and starts logging. A bad
//! configuration is reported on one stderr line and turns sluice off for the process: every call
//! then goes to the kernel.
//!
//! Initialisation never waits: a thread calling while another initialises passes its call to
//! the kernel (bind and connect adopt such sockets later), so no lock can deadlock, not even
//! in a child forked mid-initialisation.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, OnceLock};

use sluice_stack::config::Config;

use crate::entry::SocketEntry;
use crate::fdtable::FdTable;
use crate::guard::{as_sluice, inside};

/// fd -> tracked socket.
pub static TABLE: FdTable<SocketEntry> = FdTable::new();

pub struct Sluice {
    pub config: Config,
}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const DISABLED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static SLUICE: OnceLock<Sluice> = OnceLock::new();

/// The process's sluice state; `None` means "pass this call to the kernel" (bad configuration,
/// or another thread is initialising right now).
#[inline]
pub fn sluice() -> Option<&'static Sluice> {
    match STATE.load(Ordering::Acquire) {
        READY => SLUICE.get(),
        UNINIT => initialise(),
        _ => None,
    }
}

#[cold]
fn initialise() -> Option<&'static Sluice> {
    if STATE
        .compare_exchange(UNINIT, BUSY, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return (STATE.load(Ordering::Acquire) == READY)
            .then(|| SLUICE.get())
            .flatten();
    }
    let config = as_sluice(|| {
        catch_unwind(AssertUnwindSafe(|| {
            silence_panics();
            match Config::from_env() {
                Ok(config) => {
                    start_logging(&config.log);
                    log::debug!(
                        target: "sluice",
                        "sluice: mode {}, {} data port(s), {}",
                        config.mode.as_str(),
                        config.ports.len(),
                        config.policy
                    );
                    Some(config)
                }
                Err(e) => {
                    stderr_line(&format!("sluice: {e}; passing all calls to the kernel"));
                    None
                }
            }
        }))
    });
    match config {
        Ok(Some(config)) => {
            let _ = SLUICE.set(Sluice { config });
            STATE.store(READY, Ordering::Release);
            SLUICE.get()
        }
        Ok(None) => {
            STATE.store(DISABLED, Ordering::Release);
            None
        }
        Err(_) => {
            stderr_line("sluice: internal fault while reading the configuration; passing all calls to the kernel");
            STATE.store(DISABLED, Ordering::Release);
            None
        }
    }
}

fn start_logging(filter: &str) {
    use std::io::Write;
    let _ = env_logger::Builder::new()
        .parse_filters(filter)
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            writeln!(
                out,
                "[{} {} pid {}] {}",
                record.level(),
                record.target(),
                // Read at each line: a forked child logs with its own pid.
                std::process::id(),
                record.args()
            )
        })
        .try_init();
}

/// Writes one line to stderr with the real write(2), whatever state std's stderr is in.
pub fn stderr_line(line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // SAFETY: writing an initialised buffer to fd 2.
        let n = unsafe { crate::real::write(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && crate::guard::errno() == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
}

/// Panics inside hook bodies are reported by the guard, once per hook: the default hook would
/// print a backtrace hint on every call. Panics elsewhere keep the default report.
pub fn silence_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !inside() {
                default(info);
            }
        }));
    });
}
