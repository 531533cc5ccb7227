//! The DPDK port as the stack sees it: a C ABI into `libsluice_dpdk.so`.
//!
//! The stack must not link DPDK (a process that never offloads must not map
//! any DPDK library), so the port lives in `libsluice_dpdk.so`, which
//! [`DpdkLink::open`] `dlopen()`s at the first offloaded socket. The library
//! exports one symbol, [`PORT_API_SYMBOL`], returning a [`PortApi`] table of
//! `extern "C"` functions. Both sides compile this file, so the table layout
//! cannot drift within one build; [`PORT_API_ABI_VERSION`] catches a library
//! from another build.

use std::ffi::{c_char, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr::NonNull;

use super::{Link, LinkError, LinkStatus, MacAddr};
use crate::config::{DpdkBackend, Hugepages};

/// Bumped whenever [`PortApi`] or [`PortConfigC`] changes.
pub const PORT_API_ABI_VERSION: u32 = 3;

/// `extern "C" fn() -> *const PortApi`, exported by `libsluice_dpdk.so`.
pub const PORT_API_SYMBOL: &str = "sluice_dpdk_port_api";

/// Room for an error message coming back across the C ABI.
pub const ERROR_LEN: usize = 512;

/// What a port is opened on and how DPDK is started for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// A netdev name (`p0`, reached through an af_packet or af_xdp vdev) or a
    /// PCI address (`0000:00:04.0`, driven by DPDK directly).
    pub device: String,
    pub backend: DpdkBackend,
    pub hugepages: Hugepages,
    /// Appended to the EAL command line; only the first port's are used,
    /// since the EAL starts once per process.
    pub extra_eal_args: Vec<String>,
    /// The MAC the stack owns on this port; `None` uses the device's own.
    pub mac: Option<MacAddr>,
}

impl PortConfig {
    pub fn new(device: impl Into<String>) -> Self {
        PortConfig {
            device: device.into(),
            backend: DpdkBackend::default(),
            hugepages: Hugepages::default(),
            extra_eal_args: Vec::new(),
            mac: None,
        }
    }
}

/// `backend` values of [`PortConfigC`].
pub const BACKEND_AF_PACKET: u32 = 0;
pub const BACKEND_AF_XDP: u32 = 1;
/// `hugepages` values of [`PortConfigC`].
pub const HUGEPAGES_AUTO: u32 = 0;
pub const HUGEPAGES_ON: u32 = 1;
pub const HUGEPAGES_OFF: u32 = 2;

/// [`PortConfig`] across the C ABI. Strings are NUL-terminated UTF-8 and
/// only need to live for the duration of the `open` call.
#[repr(C)]
pub struct PortConfigC {
    pub device: *const c_char,
    pub backend: u32,
    pub hugepages: u32,
    pub extra_eal_args: *const *const c_char,
    pub extra_eal_args_len: usize,
    pub mac: [u8; 6],
    /// Non-zero when `mac` is set.
    pub has_mac: u8,
}

/// Carrier state across the C ABI; `speed_mbps` 0 means unknown.
#[repr(C)]
#[derive(Default)]
pub struct LinkStatusC {
    pub up: u8,
    pub speed_mbps: u32,
}

/// Counters of one port (both sides use this type, across the C ABI too).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames delivered to the stack.
    pub rx_frames: u64,
    /// Unicast frames for another MAC, dropped (the port is promiscuous or
    /// shares its netdev with the kernel).
    pub rx_not_ours: u64,
    /// Frames spread over several buffers, dropped.
    pub rx_chained: u64,
    pub tx_frames: u64,
    /// Sends refused because the transmit ring or the buffer pool was full.
    pub tx_full: u64,
}

/// One frame to send: `len` bytes at `ptr`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FrameRef {
    pub ptr: *const u8,
    pub len: usize,
}

/// Called once per received frame; the bytes are valid during the call only.
pub type FrameCallback = unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize);

/// The port's C ABI. Every function catches panics on its side. Errors are
/// written, NUL-terminated and truncated, into `err[..err_len]`.
#[repr(C)]
pub struct PortApi {
    pub abi_version: u32,
    /// Returns a port handle, or null with the reason in `err`.
    pub open: unsafe extern "C" fn(
        config: *const PortConfigC,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void,
    /// 1: queued; 0: transmit ring full, not taken; -1: error in `err`.
    pub send: unsafe extern "C" fn(
        port: *mut c_void,
        frame: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32,
    /// Queues frames from the front of `frames[..count]` in one burst: the number taken
    /// (fewer when the ring or pool fills), or -1 with the reason in `err` when the first
    /// frame cannot be sent at all.
    pub send_many: unsafe extern "C" fn(
        port: *mut c_void,
        frames: *const FrameRef,
        count: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i64,
    /// Number of frames handed to `on_frame` (at most `max`), or -1.
    pub recv: unsafe extern "C" fn(
        port: *mut c_void,
        max: u32,
        on_frame: FrameCallback,
        ctx: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i64,
    /// 0, or -1 with the reason in `err`.
    pub link_status: unsafe extern "C" fn(
        port: *mut c_void,
        out: *mut LinkStatusC,
        err: *mut c_char,
        err_len: usize,
    ) -> i32,
    /// Writes the port's 6-byte MAC to `out`.
    pub mac: unsafe extern "C" fn(port: *mut c_void, out: *mut u8),
    /// Writes the port's counters to `out`.
    pub counters: unsafe extern "C" fn(port: *mut c_void, out: *mut PortCounters),
    /// Stops and closes the port; the handle is invalid afterwards.
    pub close: unsafe extern "C" fn(port: *mut c_void),
    /// Writes up to `max` fds that poll readable while frames wait to `out`; returns how
    /// many there are (may exceed `max`).
    pub wait_fds: unsafe extern "C" fn(port: *mut c_void, out: *mut i32, max: usize) -> usize,
}

/// A DPDK port in `libsluice_dpdk.so`, reached through [`PortApi`].
pub struct DpdkLink {
    api: &'static PortApi,
    port: NonNull<c_void>,
    mac: MacAddr,
}

// SAFETY: the handle is owned by this value alone and `&mut self` serialises
// its use; DPDK queues may be polled from any thread, one at a time.
unsafe impl Send for DpdkLink {}

impl DpdkLink {
    /// Loads `library` (once per process; it is never unloaded, because the
    /// DPDK runtime inside it cannot be torn down and mapped again) and opens
    /// a port on `config.device`.
    pub fn open(library: &Path, config: &PortConfig) -> Result<Self, LinkError> {
        let api = load_api(library)?;
        let device = c_string("device", &config.device)?;
        let extra: Vec<CString> = config
            .extra_eal_args
            .iter()
            .map(|a| c_string("EAL argument", a))
            .collect::<Result<_, _>>()?;
        let extra_ptrs: Vec<*const c_char> = extra.iter().map(|a| a.as_ptr()).collect();
        let config_c = PortConfigC {
            device: device.as_ptr(),
            backend: match config.backend {
                DpdkBackend::AfPacket => BACKEND_AF_PACKET,
                DpdkBackend::AfXdp => BACKEND_AF_XDP,
            },
            hugepages: match config.hugepages {
                Hugepages::Auto => HUGEPAGES_AUTO,
                Hugepages::On => HUGEPAGES_ON,
                Hugepages::Off => HUGEPAGES_OFF,
            },
            extra_eal_args: extra_ptrs.as_ptr(),
            extra_eal_args_len: extra_ptrs.len(),
            mac: config.mac.map(|m| m.0).unwrap_or_default(),
            has_mac: config.mac.is_some() as u8,
        };
        let mut err = [0 as c_char; ERROR_LEN];
        // SAFETY: `config_c` and the strings it points to outlive the call;
        // `err` is a writable buffer of the length passed.
        let handle = unsafe { (api.open)(&config_c, err.as_mut_ptr(), err.len()) };
        let port = NonNull::new(handle).ok_or_else(|| LinkError::Open(error_text(&err)))?;
        let mut mac = [0u8; 6];
        // SAFETY: `port` is a live handle from `open`; `mac` has 6 bytes.
        unsafe { (api.mac)(port.as_ptr(), mac.as_mut_ptr()) };
        Ok(DpdkLink {
            api,
            port,
            mac: MacAddr(mac),
        })
    }
}

impl DpdkLink {
    /// The port's traffic counters.
    pub fn counters(&self) -> PortCounters {
        let mut out = PortCounters::default();
        // SAFETY: live handle; `out` is writable.
        unsafe { (self.api.counters)(self.port.as_ptr(), &mut out) };
        out
    }
}

/// At most this many wait fds per port (one per receive queue).
const MAX_WAIT_FDS: usize = 16;

impl Link for DpdkLink {
    fn send_frame(&mut self, frame: &[u8]) -> Result<bool, LinkError> {
        let mut err = [0 as c_char; ERROR_LEN];
        // SAFETY: live handle; `frame` and `err` are valid for their lengths.
        let rc = unsafe {
            (self.api.send)(
                self.port.as_ptr(),
                frame.as_ptr(),
                frame.len(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        match rc {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(frame_error(frame.len(), error_text(&err))),
        }
    }

    fn send_frames(&mut self, frames: &[&[u8]]) -> Result<usize, LinkError> {
        let refs: Vec<FrameRef> = frames
            .iter()
            .map(|f| FrameRef {
                ptr: f.as_ptr(),
                len: f.len(),
            })
            .collect();
        let mut err = [0 as c_char; ERROR_LEN];
        // SAFETY: live handle; `refs` describes `frames`, which outlive the call; `err` is
        // valid for its length.
        let n = unsafe {
            (self.api.send_many)(
                self.port.as_ptr(),
                refs.as_ptr(),
                refs.len(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        match usize::try_from(n) {
            Ok(n) => Ok(n.min(frames.len())),
            Err(_) => Err(frame_error(
                frames.first().map_or(0, |f| f.len()),
                error_text(&err),
            )),
        }
    }

    fn recv_frames(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, LinkError> {
        let mut ctx = RecvContext {
            on_frame,
            panic: None,
        };
        let mut err = [0 as c_char; ERROR_LEN];
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        // SAFETY: live handle; `ctx` outlives the call and is only used by
        // `deliver_frame`, which gets the matching type back.
        let n = unsafe {
            (self.api.recv)(
                self.port.as_ptr(),
                max,
                deliver_frame,
                (&mut ctx as *mut RecvContext).cast(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if let Some(payload) = ctx.panic {
            // The callback's panic was held back at the C boundary.
            panic::resume_unwind(payload);
        }
        if n < 0 {
            return Err(LinkError::Device(error_text(&err)));
        }
        Ok(n as usize)
    }

    fn status(&mut self) -> Result<LinkStatus, LinkError> {
        let mut out = LinkStatusC::default();
        let mut err = [0 as c_char; ERROR_LEN];
        // SAFETY: live handle; `out` and `err` are writable.
        let rc = unsafe {
            (self.api.link_status)(self.port.as_ptr(), &mut out, err.as_mut_ptr(), err.len())
        };
        if rc != 0 {
            return Err(LinkError::Device(error_text(&err)));
        }
        Ok(LinkStatus {
            up: out.up != 0,
            speed_mbps: (out.speed_mbps != 0).then_some(out.speed_mbps),
        })
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = [0i32; MAX_WAIT_FDS];
        // SAFETY: live handle; `fds` has room for `MAX_WAIT_FDS`.
        let n = unsafe { (self.api.wait_fds)(self.port.as_ptr(), fds.as_mut_ptr(), fds.len()) };
        fds[..n.min(MAX_WAIT_FDS)].to_vec()
    }
}

impl Drop for DpdkLink {
    fn drop(&mut self) {
        // SAFETY: the handle came from `open` and is closed exactly once.
        unsafe { (self.api.close)(self.port.as_ptr()) };
    }
}

struct RecvContext<'a> {
    on_frame: &'a mut dyn FnMut(&[u8]),
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn deliver_frame(ctx: *mut c_void, frame: *const u8, len: usize) {
    // SAFETY: `ctx` is the `RecvContext` passed by `recv_frames`, alive for
    // the whole `recv` call; the library guarantees `frame[..len]` is valid.
    let (ctx, frame) = unsafe {
        (
            &mut *ctx.cast::<RecvContext>(),
            std::slice::from_raw_parts(frame, len),
        )
    };
    if ctx.panic.is_some() {
        return; // drop the rest of the burst, the panic resumes after it
    }
    // A panic must not unwind into the C caller: keep it for later.
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| (ctx.on_frame)(frame))) {
        ctx.panic = Some(payload);
    }
}

fn load_api(library: &Path) -> Result<&'static PortApi, LinkError> {
    let name = library.display().to_string();
    let load_err = |reason: String| LinkError::Load {
        library: name.clone(),
        reason,
    };
    let path = CString::new(library.as_os_str().as_bytes())
        .map_err(|_| load_err("path contains a NUL byte".into()))?;
    // SAFETY: `path` is NUL-terminated. RTLD_LOCAL keeps DPDK's symbols out
    // of the global namespace the application resolves against.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(load_err(dl_error()));
    }
    let symbol = CString::new(PORT_API_SYMBOL).expect("symbol name has no NUL");
    // SAFETY: `handle` is a live dlopen handle; `symbol` is NUL-terminated.
    let entry = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
    if entry.is_null() {
        return Err(load_err(format!(
            "no symbol {PORT_API_SYMBOL}: {}",
            dl_error()
        )));
    }
    // SAFETY: the library exports `PORT_API_SYMBOL` with exactly this type.
    let entry: unsafe extern "C" fn() -> *const PortApi = unsafe { std::mem::transmute(entry) };
    // SAFETY: calling the entry point has no preconditions.
    let api = unsafe { entry() };
    if api.is_null() {
        return Err(load_err(format!("{PORT_API_SYMBOL} returned no table")));
    }
    // SAFETY: the table is a static in the library, which is never unloaded.
    // The version is read before anything else in it is trusted.
    let api: &'static PortApi = unsafe { &*api };
    if api.abi_version != PORT_API_ABI_VERSION {
        return Err(LinkError::AbiMismatch {
            library: name,
            found: api.abi_version,
            expected: PORT_API_ABI_VERSION,
        });
    }
    Ok(api)
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated thread-local string.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dlopen error".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

fn c_string(what: &str, text: &str) -> Result<CString, LinkError> {
    CString::new(text).map_err(|_| LinkError::Open(format!("{what} {text:?} contains a NUL byte")))
}

/// The NUL-terminated message the library wrote into `err`.
fn error_text(err: &[c_char]) -> String {
    let bytes: Vec<u8> = err
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if bytes.is_empty() {
        "unknown error (the DPDK port library gave no reason)".to_string()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Writes `msg` into a caller's C buffer, truncated and NUL-terminated: the
/// library side of [`error_text`].
///
/// # Safety
/// `err` must be null or point to `err_len` writable bytes.
pub unsafe fn write_error(err: *mut c_char, err_len: usize, msg: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let n = msg.len().min(err_len - 1);
    // SAFETY: the caller guarantees `err_len` writable bytes; n < err_len.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// Maps a send error message to a typed error: the library reports oversized
/// frames with a fixed prefix so the caller can tell them from device faults.
fn frame_error(len: usize, msg: String) -> LinkError {
    match msg
        .strip_prefix(FRAME_TOO_LARGE_PREFIX)
        .and_then(|max| max.trim().parse().ok())
    {
        Some(max) => LinkError::FrameTooLarge { len, max },
        None => LinkError::Device(msg),
    }
}

/// Prefix of `send`'s error for an oversized frame, followed by the maximum.
pub const FRAME_TOO_LARGE_PREFIX: &str = "frame too large, max ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_load_error_naming_it() {
        let err = DpdkLink::open(
            Path::new("/nonexistent/libsluice_dpdk.so"),
            &PortConfig::new("p0"),
        )
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(matches!(err, LinkError::Load { .. }), "{err:?}");
        assert!(text.contains("/nonexistent/libsluice_dpdk.so"), "{text}");
    }

    #[test]
    fn library_without_the_entry_point_is_refused() {
        // libc has no sluice_dpdk_port_api.
        let err = DpdkLink::open(Path::new("libc.so.6"), &PortConfig::new("p0"))
            .err()
            .unwrap();
        assert!(err.to_string().contains(PORT_API_SYMBOL), "{err}");
    }

    #[test]
    fn error_messages_survive_the_c_buffer_truncated() {
        let mut buf = [0 as c_char; 8];
        // SAFETY: `buf` has 8 writable bytes.
        unsafe { write_error(buf.as_mut_ptr(), buf.len(), "no such interface") };
        assert_eq!(error_text(&buf), "no such");
        assert_eq!(
            error_text(&[0; 4]),
            "unknown error (the DPDK port library gave no reason)"
        );
    }

    #[test]
    fn oversized_frame_errors_become_typed() {
        let msg = format!("{FRAME_TOO_LARGE_PREFIX}2048");
        assert_eq!(
            frame_error(4000, msg),
            LinkError::FrameTooLarge {
                len: 4000,
                max: 2048
            }
        );
        assert_eq!(
            frame_error(60, "tx failed".into()),
            LinkError::Device("tx failed".into())
        );
    }

    // A stand-in for libsluice_dpdk.so's table, to test the ABI glue.
    mod fake {
        use super::super::*;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub static CLOSED: AtomicUsize = AtomicUsize::new(0);

        unsafe extern "C" fn open(
            _: *const PortConfigC,
            err: *mut c_char,
            len: usize,
        ) -> *mut c_void {
            // SAFETY: `err` per the ABI.
            unsafe { write_error(err, len, "no network interface \"x\"") };
            std::ptr::null_mut()
        }
        unsafe extern "C" fn send(
            _: *mut c_void,
            frame: *const u8,
            len: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> i32 {
            if len > 100 {
                // SAFETY: `err` per the ABI.
                unsafe { write_error(err, err_len, &format!("{FRAME_TOO_LARGE_PREFIX}100")) };
                return -1;
            }
            // SAFETY: `frame[..len]` per the ABI, len > 0 in these tests.
            i32::from(unsafe { *frame } != 0xee)
        }
        unsafe extern "C" fn recv(
            _: *mut c_void,
            max: u32,
            on_frame: FrameCallback,
            ctx: *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> i64 {
            if max == 0 {
                // SAFETY: `err` per the ABI.
                unsafe { write_error(err, err_len, "device gone") };
                return -1;
            }
            for frame in [&b"frame-one"[..], b"frame-two"] {
                // SAFETY: the callback and context come from the caller.
                unsafe { on_frame(ctx, frame.as_ptr(), frame.len()) };
            }
            2
        }
        unsafe extern "C" fn link_status(
            _: *mut c_void,
            out: *mut LinkStatusC,
            _: *mut c_char,
            _: usize,
        ) -> i32 {
            // SAFETY: `out` per the ABI.
            unsafe {
                *out = LinkStatusC {
                    up: 1,
                    speed_mbps: 0,
                }
            };
            0
        }
        unsafe extern "C" fn mac(_: *mut c_void, out: *mut u8) {
            // SAFETY: 6 writable bytes per the ABI.
            unsafe { std::ptr::copy_nonoverlapping([2u8, 0, 0, 0, 0, 9].as_ptr(), out, 6) };
        }
        unsafe extern "C" fn counters(_: *mut c_void, out: *mut PortCounters) {
            // SAFETY: `out` per the ABI.
            unsafe {
                *out = PortCounters {
                    rx_frames: 7,
                    ..Default::default()
                }
            };
        }
        unsafe extern "C" fn close(_: *mut c_void) {
            CLOSED.fetch_add(1, Ordering::SeqCst);
        }
        unsafe extern "C" fn wait_fds(_: *mut c_void, _: *mut i32, _: usize) -> usize {
            0
        }

        unsafe extern "C" fn send_many(
            port: *mut c_void,
            frames: *const FrameRef,
            count: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> i64 {
            let mut taken = 0;
            for i in 0..count {
                // SAFETY: `frames` has `count` entries per the ABI.
                let f = unsafe { *frames.add(i) };
                // SAFETY: forwarded from the caller's contract.
                match unsafe { send(port, f.ptr, f.len, err, err_len) } {
                    1 => taken += 1,
                    0 => break,
                    _ if taken == 0 => return -1,
                    _ => break,
                }
            }
            taken
        }

        pub static API: PortApi = PortApi {
            abi_version: PORT_API_ABI_VERSION,
            open,
            send,
            send_many,
            recv,
            link_status,
            mac,
            counters,
            close,
            wait_fds,
        };

        pub fn link() -> DpdkLink {
            DpdkLink {
                api: &API,
                port: NonNull::dangling(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
            }
        }
    }

    #[test]
    fn frames_come_through_the_callback_in_order() {
        let mut link = fake::link();
        let mut seen = Vec::new();
        let n = link.recv_frames(8, &mut |f| seen.push(f.to_vec())).unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, vec![b"frame-one".to_vec(), b"frame-two".to_vec()]);
        assert_eq!(
            link.recv_frames(0, &mut |_| {}),
            Err(LinkError::Device("device gone".into()))
        );
    }

    #[test]
    fn a_panic_in_the_callback_reaches_the_caller_not_the_c_side() {
        let mut link = fake::link();
        let mut calls = 0;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            link.recv_frames(8, &mut |_| {
                calls += 1;
                panic!("stack bug");
            })
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"stack bug"));
        assert_eq!(calls, 1, "frames after the panic must not be delivered");
    }

    #[test]
    fn send_status_mac_and_counters_map_from_the_c_side() {
        let mut link = fake::link();
        assert_eq!(link.send_frame(&[1; 60]), Ok(true));
        assert_eq!(link.send_frame(&[0xee; 60]), Ok(false));
        assert_eq!(
            link.send_frame(&[1; 200]),
            Err(LinkError::FrameTooLarge { len: 200, max: 100 })
        );
        assert_eq!(
            link.status(),
            Ok(LinkStatus {
                up: true,
                speed_mbps: None
            })
        );
        assert!(link.is_up());
        assert_eq!(link.mac().to_string(), "02:00:00:00:00:09");
        assert_eq!(link.counters().rx_frames, 7);
    }

    #[test]
    fn dropping_the_link_closes_the_port_once() {
        use std::sync::atomic::Ordering;
        let before = fake::CLOSED.load(Ordering::SeqCst);
        drop(fake::link());
        assert_eq!(fake::CLOSED.load(Ordering::SeqCst), before + 1);
    }
}
