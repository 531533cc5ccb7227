//! DPDK's Environment Abstraction Layer, started once per process.
//!
//! The first port to open decides the EAL command line (its device is put on
//! it); later ports are hot-plugged into the running EAL. All control-path
//! DPDK calls (init, hotplug, port setup and close) run under [`control`],
//! because DPDK's control path is not thread-safe.

use std::ffi::{c_char, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dpdk_sys as sys;
use sluice_stack::config::Hugepages;

use crate::error::DpdkError;

/// Memory for `--no-huge`: a few ports' mempools (about 9 MiB each) and
/// af_xdp's UMEM (16 MiB each), with room to spare.
const NO_HUGE_MEMORY_MB: u32 = 256;

/// Hugepages `auto` wants this many free 2 MiB pages before using them.
const AUTO_MIN_FREE_HUGEPAGES: u64 = 64;

/// How a device reaches DPDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attach {
    /// A virtual device over a kernel netdev: `name` is also the ethdev name.
    Vdev { name: String, args: String },
    /// A PCI device driven directly by DPDK, by address.
    Pci { addr: String },
}

/// The running EAL.
#[derive(Debug)]
pub(crate) struct Eal {
    /// The PCI bus was scanned (the first device was a PCI one).
    pub pci: bool,
    pub hugepages: bool,
}

/// A port that is set up, so that process exit can close it.
pub(crate) struct OpenPort {
    pub id: u16,
    pub vdev: Option<String>,
    pub gate: Arc<PortGate>,
}

/// Arbitrates between a port's owner and the exit hook, which may run while
/// another thread is still polling: closing first refuses new calls, then
/// waits for those inside to leave; calls made after that find it closed.
#[derive(Default)]
pub(crate) struct PortGate(AtomicU32);

/// Set by whoever closes the port; the low bits count the calls inside it
/// (one thread's, nested by callbacks, plus refused attempts in flight).
const CLOSING: u32 = 1 << 31;
const CALLS: u32 = CLOSING - 1;

impl PortGate {
    /// Marks a call as inside the port, or `None` once it is closing.
    pub fn enter(&self) -> Option<GateGuard<'_>> {
        if self.0.fetch_add(1, Ordering::Acquire) & CLOSING != 0 {
            self.0.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(GateGuard(self))
    }

    /// Claims the port for closing and waits up to `wait` for the calls
    /// inside to leave. False when someone else closes it, or a call stays
    /// inside: then the port must be left alone (it refuses new calls).
    pub fn retire(&self, wait: std::time::Duration) -> bool {
        if self.0.fetch_or(CLOSING, Ordering::AcqRel) & CLOSING != 0 {
            return false;
        }
        let deadline = std::time::Instant::now() + wait;
        while self.0.load(Ordering::Acquire) & CALLS != 0 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }
}

pub(crate) struct GateGuard<'a>(&'a PortGate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Release);
    }
}

/// Everything the control path shares.
pub(crate) struct Control {
    eal: Option<Result<&'static Eal, DpdkError>>,
    pub open_ports: Vec<OpenPort>,
}

static CONTROL: Mutex<Control> = Mutex::new(Control {
    eal: None,
    open_ports: Vec::new(),
});
static EAL: OnceLock<Eal> = OnceLock::new();

/// Takes the control-path lock (a panic elsewhere does not poison DPDK).
pub(crate) fn control() -> MutexGuard<'static, Control> {
    CONTROL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Control {
    /// Starts the EAL if needed and makes `attach` a probed device. Returns
    /// whether the device was put on the EAL command line (so probed by init).
    pub fn attach(
        &mut self,
        attach: &Attach,
        hugepages: Hugepages,
        extra_args: &[String],
    ) -> Result<(&'static Eal, bool), DpdkError> {
        if let Some(done) = &self.eal {
            let eal = done.clone()?;
            hotplug_add(eal, attach)?;
            return Ok((eal, false));
        }
        let started = init(attach, hugepages, extra_args).map(|eal| EAL.get_or_init(|| eal));
        self.eal = Some(started.clone());
        Ok((started?, true))
    }
}

fn hotplug_add(eal: &Eal, attach: &Attach) -> Result<(), DpdkError> {
    let (bus, name, args) = match attach {
        Attach::Vdev { name, args } => ("vdev", name.as_str(), args.as_str()),
        Attach::Pci { addr } if eal.pci => ("pci", addr.as_str(), ""),
        Attach::Pci { addr } => {
            return Err(DpdkError::Probe {
                device: addr.clone(),
                reason: "the EAL was started for a netdev port with --no-pci; a PCI port must be the first port of the process".into(),
            })
        }
    };
    let c = |s: &str| CString::new(s).expect("device names have no NUL");
    let (bus_c, name_c, args_c) = (c(bus), c(name), c(args));
    // SAFETY: three NUL-terminated strings that outlive the call; the EAL is
    // initialised and the control lock is held.
    let rc = unsafe { sys::rte_eal_hotplug_add(bus_c.as_ptr(), name_c.as_ptr(), args_c.as_ptr()) };
    if rc < 0 {
        return Err(DpdkError::Probe {
            device: name.to_string(),
            reason: format!("hotplug failed: {}", strerror(-rc)),
        });
    }
    Ok(())
}

/// Removes a virtual device after its port is closed, so the netdev is free.
pub(crate) fn hotplug_remove_vdev(name: &str) {
    let (bus, name_c) = (
        CString::new("vdev").unwrap(),
        CString::new(name).expect("no NUL"),
    );
    // SAFETY: NUL-terminated strings; control lock held by the caller.
    let rc = unsafe { sys::rte_eal_hotplug_remove(bus.as_ptr(), name_c.as_ptr()) };
    if rc < 0 {
        log::debug!("removing vdev {name}: {}", strerror(-rc));
    }
}

fn init(attach: &Attach, hugepages: Hugepages, extra_args: &[String]) -> Result<Eal, DpdkError> {
    let affinity = Affinity::current()?;
    let use_hugepages = match hugepages {
        Hugepages::On => true,
        Hugepages::Off => false,
        Hugepages::Auto => hugepages_available(),
    };
    let mut args: Vec<String> = vec![
        "sluice".into(),
        // One lcore (id 0, so CPUs beyond RTE_MAX_LCORE work too) on one
        // of our CPUs: EAL starts no worker threads then.
        format!("--lcores=0@{}", affinity.first_cpu()),
        format!("--file-prefix=sluice-{}", std::process::id()),
        "--no-telemetry".into(),
        format!("--log-level={}", eal_log_level()),
    ];
    let pci = match attach {
        Attach::Vdev {
            name,
            args: dev_args,
        } => {
            args.push("--no-pci".into());
            args.push(format!("--vdev={name},{dev_args}"));
            false
        }
        Attach::Pci { addr } => {
            args.push("-a".into());
            args.push(addr.clone());
            true
        }
    };
    // No shared runtime files, so any number of processes can run at once
    // and nothing is left in /dev/hugepages. (--in-memory says both, but
    // EAL refuses it together with --no-huge.)
    if use_hugepages {
        args.push("--in-memory".into());
    } else {
        args.push("--no-huge".into());
        args.push("--no-shconf".into());
        args.push(format!("-m{NO_HUGE_MEMORY_MB}"));
    }
    args.extend(extra_args.iter().cloned());
    let shown = args.join(" ");
    log::info!("starting DPDK EAL: {shown}");

    // EAL may keep pointers into argv and permutes it: give it leaked copies.
    let mut argv: Vec<*mut c_char> = args
        .iter()
        .map(|a| {
            CString::new(a.as_str())
                .map(CString::into_raw)
                .map_err(|_| DpdkError::EalInit {
                    args: shown.clone(),
                    reason: format!("argument {a:?} contains a NUL byte"),
                })
        })
        .collect::<Result<_, _>>()?;
    argv.push(std::ptr::null_mut());
    let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());

    log_to_stderr();
    // The EAL's threads (interrupts, multi-process) inherit this mask: with
    // the application's signals blocked there, a Ctrl-C reaches a thread of
    // the application, where it interrupts a blocking call as it should.
    let mask = sluice_stack::signals::AsyncSignalsBlocked::new();
    // SAFETY: argv holds argc NUL-terminated strings and a null, all leaked
    // so they outlive the EAL; this runs once per process under the lock.
    let rc = unsafe { sys::rte_eal_init((argv.len() - 1) as i32, argv.as_mut_ptr()) };
    drop(mask);
    // EAL pinned this thread to its lcore: give the application its CPUs back.
    affinity.restore();
    if rc < 0 {
        return Err(DpdkError::EalInit {
            args: shown,
            reason: strerror(last_errno()),
        });
    }
    EAL_OWNER.store(std::process::id(), std::sync::atomic::Ordering::Release);
    // SAFETY: registering a plain function to run at exit.
    if unsafe { libc::atexit(close_at_exit) } != 0 {
        log::warn!(
            "could not register the DPDK exit hook: ports left open will not be closed at exit"
        );
    }
    Ok(Eal {
        pci,
        hugepages: use_hugepages,
    })
}

/// DPDK writes its log to stdout (and syslog) by default; an application's
/// stdout is not ours to write to.
fn log_to_stderr() {
    // SAFETY: fd 2 stays open for the life of the process; the stream is
    // handed to DPDK for good.
    unsafe {
        let stream = libc::fdopen(2, c"w".as_ptr());
        if !stream.is_null() {
            sys::rte_openlog_stream(stream.cast());
        }
    }
}

fn eal_log_level() -> &'static str {
    if log::log_enabled!(target: "sluice_dpdk::eal", log::Level::Debug) {
        "info"
    } else {
        // Quiet: an application's stderr only hears about real trouble.
        "error"
    }
}

/// The process that started the EAL. A forked child inherits the exit hook but not the
/// ports: closing them there would stop the parent's devices (detach its XDP program, stop
/// a PCI NIC), so the hook does nothing in any other process.
static EAL_OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Closes whatever the application left open, then stops the EAL, so that
/// af_xdp programs and promiscuous flags do not outlive the process.
extern "C" fn close_at_exit() {
    if EAL_OWNER.load(std::sync::atomic::Ordering::Acquire) != std::process::id() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // Another thread may be stuck holding the lock; exit must not hang.
        let Ok(mut control) = CONTROL.try_lock() else {
            return;
        };
        let mut in_use = false;
        for port in std::mem::take(&mut control.open_ports) {
            if port.gate.retire(EXIT_WAIT) {
                crate::port::close_port(port.id, port.vdev.as_deref());
            } else {
                in_use = true; // a thread stays inside it: leave it alone
            }
        }
        if in_use {
            return; // and leave the EAL running under that thread
        }
        // SAFETY: the EAL was initialised (this hook is registered after it)
        // and no port is open any more; the runtime directory name is a
        // NUL-terminated string owned by the EAL, copied before cleanup.
        let runtime_dir = unsafe { CStr::from_ptr(sys::rte_eal_get_runtime_dir()) }.to_owned();
        // SAFETY: as above.
        unsafe { sys::rte_eal_cleanup() };
        // EAL makes /var/run/dpdk/<file-prefix>/ even without shared files
        // and leaves it behind; it is empty here unless someone else uses it.
        let _ = std::fs::remove_dir(std::ffi::OsStr::from_bytes(runtime_dir.to_bytes()));
    });
}

/// How long the exit hook waits for a thread to leave a port (it leaves
/// after its current burst): exit must not hang on a thread stuck inside.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

fn hugepages_available() -> bool {
    let free = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    free >= AUTO_MIN_FREE_HUGEPAGES && mounted
}

pub(crate) fn last_errno() -> i32 {
    // SAFETY: reads DPDK's thread-local rte_errno.
    unsafe { sys::sluice_rte_errno() }
}

/// DPDK's message for an errno (its own codes included).
pub(crate) fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror returns a static or thread-local NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(sys::rte_strerror(errnum)) };
    format!("{} (errno {errnum})", msg.to_string_lossy())
}

/// The calling thread's CPU affinity, saved across `rte_eal_init`.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn current() -> Result<Self, DpdkError> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a writable cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Err(DpdkError::EalInit {
                args: String::new(),
                reason: format!("sched_getaffinity: {}", std::io::Error::last_os_error()),
            });
        }
        Ok(Affinity(set))
    }

    fn first_cpu(&self) -> usize {
        // SAFETY: CPU_ISSET only reads the set.
        (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &self.0) })
            .unwrap_or(0)
    }

    fn restore(&self) {
        // SAFETY: `self.0` is a valid cpu_set_t from sched_getaffinity.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if rc != 0 {
            log::warn!(
                "could not restore CPU affinity after DPDK EAL init: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Whether the running EAL uses hugepages; `None` before the first port.
pub fn uses_hugepages() -> Option<bool> {
    EAL.get().map(|eal| eal.hugepages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn closing_waits_for_calls_inside_and_refuses_new_ones() {
        let gate = PortGate::default();
        let outer = gate.enter().expect("an open port admits calls");
        let nested = gate.enter().expect("a callback may call the port again");
        assert!(
            !gate.retire(Duration::from_millis(1)),
            "closed while calls were inside"
        );
        assert!(gate.enter().is_none(), "a closing port admitted a new call");
        drop((nested, outer));
        // The first claim failed for good: the port is left alone.
        assert!(!gate.retire(Duration::ZERO));

        let gate = PortGate::default();
        assert!(gate.retire(Duration::ZERO));
        assert!(gate.enter().is_none(), "a closed port admitted a call");
        assert!(!gate.retire(Duration::ZERO), "closed twice");
    }

    #[test]
    fn closing_waits_for_a_polling_thread_to_leave() {
        let gate = std::sync::Arc::new(PortGate::default());
        let poller = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut calls = 0u64;
                while let Some(_inside) = gate.enter() {
                    calls += 1;
                    std::hint::spin_loop();
                }
                calls
            })
        };
        while gate.0.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        assert!(
            gate.retire(Duration::from_secs(10)),
            "the poller never left"
        );
        assert!(poller.join().unwrap() > 0);
    }
}
