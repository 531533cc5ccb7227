//! Keeping sluice in the environment of exec'd programs.
//!
//! A program that execs with an environment of its own making (a daemon scrubbing its
//! environment, `env -i`, Python's `subprocess` with `env=`) would drop `LD_PRELOAD` and the
//! `SLUICE_*` configuration, and its child would silently run on the kernel. The exec hooks pass
//! the environment through `carry`: `LD_PRELOAD` gets libsluice.so back (kept after whatever
//! else it lists), and each `SLUICE_*` variable this process started with is added unless the
//! new environment sets it itself.
//!
//! The process's own environment can be rewritten after start-up (setenv, or programs that reuse
//! the environment area for their process title, as redis-server does), so the relevant strings
//! are copied at load time, by a constructor that only copies bytes into a static buffer.

use std::borrow::Cow;
use std::cell::UnsafeCell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicUsize, Ordering};

const PRELOAD: &[u8] = b"LD_PRELOAD=";
const SLUICE: &[u8] = b"SLUICE_";
const SNAPSHOT_BYTES: usize = 16 * 1024;

struct Snapshot {
    bytes: UnsafeCell<[u8; SNAPSHOT_BYTES]>,
    /// Bytes of `bytes` in use: NUL-terminated `NAME=value` strings back to back.
    len: AtomicUsize,
}

// SAFETY: `bytes` is written only by the constructor, before `len` is published with Release;
// readers read no further than `len` after an Acquire load.
unsafe impl Sync for Snapshot {}

static SNAPSHOT: Snapshot = Snapshot {
    bytes: UnsafeCell::new([0; SNAPSHOT_BYTES]),
    len: AtomicUsize::new(0),
};

/// glibc calls `.init_array` functions with (argc, argv, envp).
#[used]
#[link_section = ".init_array"]
static TAKE_SNAPSHOT: unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    take_snapshot;

unsafe extern "C" fn take_snapshot(
    _argc: c_int,
    _argv: *const *const c_char,
    envp: *const *const c_char,
) {
    if envp.is_null() || SNAPSHOT.len.load(Ordering::Relaxed) != 0 {
        return;
    }
    // SAFETY: constructors run before any other use of SNAPSHOT (len is still 0).
    let bytes = unsafe { &mut *SNAPSHOT.bytes.get() };
    let mut used = 0;
    let mut i = 0;
    loop {
        // SAFETY: envp is the NULL-terminated environment the loader passes to constructors.
        let entry = unsafe { *envp.add(i) };
        if entry.is_null() {
            break;
        }
        i += 1;
        // SAFETY: environment entries are NUL-terminated strings.
        let entry = unsafe { CStr::from_ptr(entry) }.to_bytes_with_nul();
        if !(entry.starts_with(PRELOAD) || entry.starts_with(SLUICE)) {
            continue;
        }
        // An entry that does not fit is left out rather than cut.
        if used + entry.len() <= bytes.len() {
            bytes[used..used + entry.len()].copy_from_slice(entry);
            used += entry.len();
        }
    }
    SNAPSHOT.len.store(used, Ordering::Release);
}

/// The `LD_PRELOAD` and `SLUICE_*` entries this process started with.
pub fn snapshot() -> Vec<&'static CStr> {
    let len = SNAPSHOT.len.load(Ordering::Acquire);
    // SAFETY: the first `len` bytes were written before `len` was published and never change.
    let bytes: &'static [u8] = unsafe { &(&*SNAPSHOT.bytes.get())[..len] };
    bytes
        .split_inclusive(|&b| b == 0)
        .filter_map(|s| CStr::from_bytes_with_nul(s).ok())
        .collect()
}

/// The path libsluice.so was loaded from.
pub fn our_library() -> Option<&'static CStr> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr on the address of one of our functions; Dl_info is plain data.
    let found = unsafe { libc::dladdr(take_snapshot as *const _, info.as_mut_ptr()) };
    // SAFETY: initialised (zeroed, then filled by dladdr).
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname points to the loader's copy of the name, valid while we are loaded.
    Some(unsafe { CStr::from_ptr(info.dli_fname) })
}

fn name_of(entry: &[u8]) -> &[u8] {
    let end = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
    &entry[..=end.min(entry.len() - 1)]
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Whether an `LD_PRELOAD` value lists `lib` (by path, or by file name: the loader searches
/// bare names, and the same library may be reached through another directory).
fn lists(value: &[u8], lib: &[u8]) -> bool {
    value
        .split(|&b| b == b' ' || b == b':')
        .filter(|t| !t.is_empty())
        .any(|t| t == lib || file_name(t) == file_name(lib))
}

/// `envp` with sluice kept in it: see the module documentation. `snapshot` is the start-up
/// `LD_PRELOAD`/`SLUICE_*` entries, `lib` the path of libsluice.so when known.
pub fn carry<'a>(
    envp: &[&'a CStr],
    snapshot: &[&'a CStr],
    lib: Option<&CStr>,
) -> Vec<Cow<'a, CStr>> {
    let startup_preload = snapshot
        .iter()
        .find(|e| e.to_bytes().starts_with(PRELOAD))
        .copied();
    let lib: Option<&[u8]> = lib
        .map(CStr::to_bytes)
        .or_else(|| startup_preload.map(|e| &e.to_bytes()[PRELOAD.len()..]));
    let mut out: Vec<Cow<'a, CStr>> = Vec::with_capacity(envp.len() + snapshot.len() + 1);
    let mut has_preload = false;
    for &entry in envp {
        let bytes = entry.to_bytes();
        if !bytes.starts_with(PRELOAD) {
            out.push(Cow::Borrowed(entry));
            continue;
        }
        has_preload = true;
        let value = &bytes[PRELOAD.len()..];
        match lib {
            Some(lib) if !lists(value, lib) => {
                let mut fixed = bytes.to_vec();
                if !value.is_empty() {
                    fixed.push(b' ');
                }
                fixed.extend_from_slice(lib);
                out.push(Cow::Owned(
                    CString::new(fixed).expect("no NUL inside C strings"),
                ));
            }
            _ => out.push(Cow::Borrowed(entry)),
        }
    }
    if !has_preload {
        match (startup_preload, lib) {
            (Some(e), Some(lib)) if lists(&e.to_bytes()[PRELOAD.len()..], lib) => {
                out.push(Cow::Borrowed(e))
            }
            (_, Some(lib)) => {
                let mut entry = PRELOAD.to_vec();
                entry.extend_from_slice(lib);
                out.push(Cow::Owned(
                    CString::new(entry).expect("no NUL inside C strings"),
                ));
            }
            (startup, None) => out.extend(startup.map(Cow::Borrowed)),
        }
    }
    for &entry in snapshot {
        let bytes = entry.to_bytes();
        if !bytes.starts_with(SLUICE) {
            continue;
        }
        let name = name_of(bytes);
        if !envp.iter().any(|e| e.to_bytes().starts_with(name)) {
            out.push(Cow::Borrowed(entry));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn run(envp: &[&str], snapshot: &[&str], lib: Option<&str>) -> Vec<String> {
        let envp: Vec<CString> = envp.iter().map(|s| c(s)).collect();
        let snapshot: Vec<CString> = snapshot.iter().map(|s| c(s)).collect();
        let lib = lib.map(c);
        let e: Vec<&CStr> = envp.iter().map(|s| s.as_c_str()).collect();
        let s: Vec<&CStr> = snapshot.iter().map(|s| s.as_c_str()).collect();
        carry(&e, &s, lib.as_deref())
            .iter()
            .map(|x| x.to_str().unwrap().to_string())
            .collect()
    }

    const LIB: &str = "/opt/sluice/libsluice.so";

    #[test]
    fn an_empty_environment_gets_preload_and_configuration_back() {
        let startup = [
            "LD_PRELOAD=/opt/sluice/libsluice.so",
            "SLUICE_MODE=dpdk",
            "SLUICE_IFACES=p0=10.77.2.1/24",
        ];
        assert_eq!(run(&[], &startup, Some(LIB)), startup);
    }

    #[test]
    fn the_program_s_own_values_win_and_nothing_is_doubled() {
        let got = run(
            &[
                "PATH=/bin",
                "SLUICE_MODE=udp",
                "LD_PRELOAD=/opt/sluice/libsluice.so",
            ],
            &[
                "LD_PRELOAD=/opt/sluice/libsluice.so",
                "SLUICE_MODE=dpdk",
                "SLUICE_LOG=debug",
            ],
            Some(LIB),
        );
        assert_eq!(
            got,
            [
                "PATH=/bin",
                "SLUICE_MODE=udp",
                "LD_PRELOAD=/opt/sluice/libsluice.so",
                "SLUICE_LOG=debug"
            ]
        );
    }

    #[test]
    fn another_preload_list_keeps_its_entries_and_gains_ours() {
        assert_eq!(
            run(&["LD_PRELOAD=/usr/lib/libfoo.so"], &[], Some(LIB)),
            ["LD_PRELOAD=/usr/lib/libfoo.so /opt/sluice/libsluice.so"]
        );
        assert_eq!(
            run(&["LD_PRELOAD="], &[], Some(LIB)),
            ["LD_PRELOAD=/opt/sluice/libsluice.so"]
        );
        // Listed by bare name (found through the loader's search path): already there.
        assert_eq!(
            run(&["LD_PRELOAD=libsluice.so:libbar.so"], &[], Some(LIB)),
            ["LD_PRELOAD=libsluice.so:libbar.so"]
        );
    }

    #[test]
    fn without_a_known_path_the_start_up_value_is_used() {
        assert_eq!(
            run(&["A=1"], &["LD_PRELOAD=/x/libsluice.so /y/other.so"], None),
            ["A=1", "LD_PRELOAD=/x/libsluice.so /y/other.so"]
        );
    }

    #[test]
    fn a_variable_name_is_matched_whole() {
        // SLUICE_LOG set must not hide SLUICE_LOGX, and vice versa.
        assert_eq!(
            run(&["SLUICE_LOGX=1"], &["SLUICE_LOG=debug"], Some(LIB)),
            [
                "SLUICE_LOGX=1",
                "LD_PRELOAD=/opt/sluice/libsluice.so",
                "SLUICE_LOG=debug"
            ]
        );
    }
}
