//! The C ABI that `sluice_stack::link::dpdk::DpdkLink` loads with dlopen().
//!
//! A handle is a boxed [`Port`]. Every function catches panics: unwinding
//! into the C caller would abort the application.

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use sluice_stack::config::{DpdkBackend, Hugepages};
use sluice_stack::link::dpdk::{
    write_error, FrameCallback, FrameRef, LinkStatusC, PortApi, PortConfig, PortConfigC,
    PortCounters, BACKEND_AF_PACKET, BACKEND_AF_XDP, FRAME_TOO_LARGE_PREFIX, HUGEPAGES_AUTO,
    HUGEPAGES_OFF, HUGEPAGES_ON, PORT_API_ABI_VERSION,
};
use sluice_stack::link::MacAddr;

use crate::error::DpdkError;
use crate::port::Port;

static PORT_API: PortApi = PortApi {
    abi_version: PORT_API_ABI_VERSION,
    open: port_open,
    send: port_send,
    send_many: port_send_many,
    recv: port_recv,
    link_status: port_link_status,
    mac: port_mac,
    counters: port_counters,
    close: port_close,
    wait_fds: port_wait_fds,
};

/// The entry point `DpdkLink` looks up (`PORT_API_SYMBOL`).
#[no_mangle]
pub extern "C" fn sluice_dpdk_port_api() -> *const PortApi {
    &PORT_API
}

/// Runs `f`, turning a panic into an error message in `err`.
///
/// # Safety
/// `err` must be null or point to `err_len` writable bytes.
unsafe fn guarded<T>(
    err: *mut c_char,
    err_len: usize,
    failed: T,
    f: impl FnOnce() -> Result<T, String>,
) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("internal error in libsluice_dpdk: {what}"))
    });
    outcome.unwrap_or_else(|msg| {
        // SAFETY: forwarded from the caller's contract.
        unsafe { write_error(err, err_len, &msg) };
        failed
    })
}

/// Reads a `PortConfigC` into an owned `PortConfig`.
///
/// # Safety
/// `c` must point to a valid `PortConfigC` whose strings are NUL-terminated.
unsafe fn read_config(c: &PortConfigC) -> Result<PortConfig, String> {
    let text = |p: *const c_char, what: &str| -> Result<String, String> {
        if p.is_null() {
            return Err(format!("{what} is missing"));
        }
        // SAFETY: non-null and NUL-terminated by the caller's contract.
        unsafe { CStr::from_ptr(p) }
            .to_str()
            .map(str::to_owned)
            .map_err(|_| format!("{what} is not UTF-8"))
    };
    let mut extra_eal_args = Vec::with_capacity(c.extra_eal_args_len);
    for i in 0..c.extra_eal_args_len {
        // SAFETY: the array has `extra_eal_args_len` entries.
        extra_eal_args.push(text(unsafe { *c.extra_eal_args.add(i) }, "EAL argument")?);
    }
    Ok(PortConfig {
        device: text(c.device, "device")?,
        backend: match c.backend {
            BACKEND_AF_PACKET => DpdkBackend::AfPacket,
            BACKEND_AF_XDP => DpdkBackend::AfXdp,
            other => return Err(format!("unknown backend {other}")),
        },
        hugepages: match c.hugepages {
            HUGEPAGES_AUTO => Hugepages::Auto,
            HUGEPAGES_ON => Hugepages::On,
            HUGEPAGES_OFF => Hugepages::Off,
            other => return Err(format!("unknown hugepages setting {other}")),
        },
        extra_eal_args,
        mac: (c.has_mac != 0).then_some(MacAddr(c.mac)),
    })
}

/// # Safety
/// See `PortApi::open`.
unsafe extern "C" fn port_open(
    config: *const PortConfigC,
    err: *mut c_char,
    err_len: usize,
) -> *mut c_void {
    // SAFETY: `err` per the ABI contract.
    unsafe {
        guarded(err, err_len, std::ptr::null_mut(), || {
            if config.is_null() {
                return Err("no port configuration".into());
            }
            crate::init_logging();
            // SAFETY: non-null, valid per the ABI contract.
            let config = read_config(&*config)?;
            let port = Port::open(&config).map_err(|e| e.to_string())?;
            Ok(Box::into_raw(Box::new(port)).cast())
        })
    }
}

/// # Safety
/// `port` must be a live handle from `port_open`.
unsafe fn port_ref<'a>(port: *mut c_void) -> Result<&'a Port, String> {
    // SAFETY: per the caller's contract, a live `Box<Port>` pointer or null.
    unsafe { port.cast::<Port>().as_ref() }.ok_or_else(|| "null port handle".to_string())
}

unsafe extern "C" fn port_send(
    port: *mut c_void,
    frame: *const u8,
    len: usize,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    // SAFETY: handle, frame and err per the ABI contract.
    unsafe {
        guarded(err, err_len, -1, || {
            let port = port_ref(port)?;
            let frame = std::slice::from_raw_parts(frame, len);
            port.send(frame).map(i32::from).map_err(send_error)
        })
    }
}

/// A send's error as the ABI reports it (a frame too large names the largest that fits).
fn send_error(e: DpdkError) -> String {
    match e {
        DpdkError::FrameTooLarge { max, .. } => format!("{FRAME_TOO_LARGE_PREFIX}{max}"),
        e => e.to_string(),
    }
}

unsafe extern "C" fn port_send_many(
    port: *mut c_void,
    frames: *const FrameRef,
    count: usize,
    err: *mut c_char,
    err_len: usize,
) -> i64 {
    // SAFETY: handle, frames and err per the ABI contract.
    unsafe {
        guarded(err, err_len, -1, || {
            let port = port_ref(port)?;
            let frames: Vec<&[u8]> = (0..count)
                .map(|i| {
                    let f = *frames.add(i);
                    std::slice::from_raw_parts(f.ptr, f.len)
                })
                .collect();
            port.send_many(&frames)
                .map(|taken| taken as i64)
                .map_err(send_error)
        })
    }
}

unsafe extern "C" fn port_recv(
    port: *mut c_void,
    max: u32,
    on_frame: FrameCallback,
    ctx: *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> i64 {
    // SAFETY: handle, callback, ctx and err per the ABI contract.
    unsafe {
        guarded(err, err_len, -1, || {
            let port = port_ref(port)?;
            let n = port.recv(max as usize, &mut |frame: &[u8]| {
                on_frame(ctx, frame.as_ptr(), frame.len())
            });
            Ok(n as i64)
        })
    }
}

unsafe extern "C" fn port_link_status(
    port: *mut c_void,
    out: *mut LinkStatusC,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    // SAFETY: handle, out and err per the ABI contract.
    unsafe {
        guarded(err, err_len, -1, || {
            let status = port_ref(port)?.link_status().map_err(|e| e.to_string())?;
            *out = LinkStatusC {
                up: status.up as u8,
                speed_mbps: status.speed_mbps.unwrap_or(0),
            };
            Ok(0)
        })
    }
}

unsafe extern "C" fn port_mac(port: *mut c_void, out: *mut u8) {
    // SAFETY: handle and a 6-byte `out` per the ABI contract.
    unsafe {
        guarded(std::ptr::null_mut(), 0, (), || {
            let mac = port_ref(port)?.mac();
            std::ptr::copy_nonoverlapping(mac.0.as_ptr(), out, 6);
            Ok(())
        })
    }
}

unsafe extern "C" fn port_counters(port: *mut c_void, out: *mut PortCounters) {
    // SAFETY: handle and a writable `out` per the ABI contract.
    unsafe {
        guarded(std::ptr::null_mut(), 0, (), || {
            *out = port_ref(port)?.counters();
            Ok(())
        })
    }
}

unsafe extern "C" fn port_wait_fds(port: *mut c_void, out: *mut i32, max: usize) -> usize {
    // SAFETY: handle, and `out` with room for `max`, per the ABI contract.
    unsafe {
        guarded(std::ptr::null_mut(), 0, 0, || {
            let fds = port_ref(port)?.wait_fds();
            for (i, fd) in fds.iter().take(max).enumerate() {
                *out.add(i) = *fd;
            }
            Ok(fds.len())
        })
    }
}

unsafe extern "C" fn port_close(port: *mut c_void) {
    if port.is_null() {
        return;
    }
    // SAFETY: a live handle from `port_open`, closed once: we own the box.
    let port = unsafe { Box::from_raw(port.cast::<Port>()) };
    // SAFETY: null error buffer is allowed.
    unsafe {
        guarded(std::ptr::null_mut(), 0, (), || {
            port.close();
            Ok(())
        })
    }
}
