//! Processes: fork, vfork, and the exec family.
//!
//! fork passes through: the child inherits the fds and a copy of the table, which stay in step.
//! A child of a process whose stack runs does not use that stack (its copy has no threads, may
//! hold locks forever, and shares the ports' rings with the parent): new sockets stay in the
//! kernel; closing inherited offloaded sockets (or exiting) is safe and leaves the parent's
//! sockets intact; every other call on them goes to their kernel sockets (one warning line says
//! why), never to the parent's stack.
//!
//! vfork is turned into fork. The child of a real vfork runs on the parent's stack and memory
//! until it execs or exits; returning through this hook's frame in the child would clobber the
//! frame the parent later returns through, and whatever the child changed in our state (table,
//! re-entry flag, locks) would be the parent's. `syscall(SYS_vfork)` from here has the same
//! flaw. fork gives the child its own copy: it costs a page-table copy, and it is correct for
//! every conforming vfork caller (one that only calls exec or _exit in the child).
//!
//! The exec and posix_spawn hooks keep sluice in the new program's environment (see
//! `crate::exec_env`).
//! glibc's execv/execvp/execl/execlp/execle call execve/execvpe internally without going
//! through the symbol table, so each is hooked, not only execve. execl, execlp and execle are
//! variadic: a small naked trampoline spills the argument registers next to the stacked
//! arguments so that Rust can walk the list.

#![allow(clippy::missing_safety_doc)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use libc::{pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use crate::exec_env::{carry, our_library, snapshot};
use crate::guard::{errno, guarded, set_errno, Site};
use crate::real;

extern "C" {
    /// Changes under setenv/putenv: read it at each call.
    static mut environ: *const *const c_char;
}

fn process_environment() -> *const *const c_char {
    // SAFETY: reading the pointer value (not a reference) of glibc's environ.
    unsafe { ptr::addr_of!(environ).read() }
}

#[no_mangle]
pub unsafe extern "C" fn fork() -> pid_t {
    // SAFETY: no arguments; the real fork runs glibc's atfork handlers.
    let pid = unsafe { real::fork() };
    if pid == 0 {
        crate::offload::forked_child();
    }
    pid
}

#[no_mangle]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: see the module documentation for why this is fork.
    unsafe { fork() }
}

/// The entries of a NULL-terminated environment (NULL itself means empty on Linux).
///
/// # Safety
/// `envp` is null or a NULL-terminated array of C strings that outlive the result.
unsafe fn entries<'a>(envp: *const *const c_char) -> Vec<&'a CStr> {
    let mut out = Vec::new();
    if envp.is_null() {
        return out;
    }
    let mut i = 0;
    loop {
        // SAFETY: NULL-terminated array, per the contract.
        let entry = unsafe { *envp.add(i) };
        if entry.is_null() {
            return out;
        }
        // SAFETY: environment entries are C strings.
        out.push(unsafe { CStr::from_ptr(entry) });
        i += 1;
    }
}

#[derive(Clone, Copy)]
enum Lookup {
    /// `path` is the file to run (execve).
    Path,
    /// `path` is searched in PATH when it has no slash (execvpe).
    Search,
}

/// Runs `call` (an exec or spawn) with `envp` carried through `exec_env::carry`; with
/// `envp` itself if that faults. errno is what `call` left.
///
/// # Safety
/// `envp` is null or a NULL-terminated array of C strings.
unsafe fn with_carried_env(
    site: &'static Site,
    envp: *const *const c_char,
    call: impl Fn(*const *const c_char) -> c_int,
) -> c_int {
    guarded(
        site,
        || call(envp),
        |_kernel| {
            // SAFETY: the caller's environment array.
            let given = unsafe { entries(envp) };
            let carried = carry(&given, &snapshot(), our_library());
            let mut pointers: Vec<*const c_char> = carried.iter().map(|e| e.as_ptr()).collect();
            pointers.push(ptr::null());
            let result = call(pointers.as_ptr());
            // An exec only returns on failure: keep its errno across the frees.
            let e = errno();
            drop(pointers);
            drop(carried);
            set_errno(e);
            result
        },
    )
}

/// exec with `envp` carried. Returns only on failure.
///
/// # Safety
/// The arguments of execve (Lookup::Path) or execvpe (Lookup::Search).
unsafe fn exec_carrying(
    site: &'static Site,
    lookup: Lookup,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's arguments and a NULL-terminated environment.
    let exec = |envp: *const *const c_char| unsafe {
        match lookup {
            Lookup::Path => real::execve(path, argv, envp),
            Lookup::Search => real::execvpe(path, argv, envp),
        }
    };
    // SAFETY: per this function's contract.
    unsafe { with_carried_env(site, envp, exec) }
}

#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    static SITE: Site = Site::new("execve");
    // SAFETY: the caller's arguments.
    unsafe { exec_carrying(&SITE, Lookup::Path, path, argv, envp) }
}

#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    static SITE: Site = Site::new("execv");
    // SAFETY: the caller's arguments and the process environment.
    unsafe { exec_carrying(&SITE, Lookup::Path, path, argv, process_environment()) }
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    static SITE: Site = Site::new("execvp");
    // SAFETY: the caller's arguments and the process environment.
    unsafe { exec_carrying(&SITE, Lookup::Search, file, argv, process_environment()) }
}

#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    static SITE: Site = Site::new("execvpe");
    // SAFETY: the caller's arguments.
    unsafe { exec_carrying(&SITE, Lookup::Search, file, argv, envp) }
}

// posix_spawn and posix_spawnp run the child through glibc's internal exec, so they carry the
// environment themselves. They return an error number rather than setting errno.

#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    static SITE: Site = Site::new("posix_spawn");
    // SAFETY: the caller's arguments and a NULL-terminated environment.
    let spawn = |envp| unsafe { real::posix_spawn(pid, path, actions, attr, argv, envp) };
    // SAFETY: the caller's environment.
    unsafe { with_carried_env(&SITE, envp, spawn) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    static SITE: Site = Site::new("posix_spawnp");
    // SAFETY: the caller's arguments and a NULL-terminated environment.
    let spawn = |envp| unsafe { real::posix_spawnp(pid, file, actions, attr, argv, envp) };
    // SAFETY: the caller's environment.
    unsafe { with_carried_env(&SITE, envp, spawn) }
}

const EXECL: c_int = 0;
const EXECLP: c_int = 1;
const EXECLE: c_int = 2;

/// Second half of the execl* trampolines. The variadic arguments after `path` are `regs[0..5]`
/// (rsi, rdx, rcx, r8, r9 as the caller passed them) and then `stack[0..]`.
unsafe extern "C" fn exec_list(
    path: *const c_char,
    regs: *const usize,
    stack: *const usize,
    variant: c_int,
) -> c_int {
    let collected = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the trampoline passes 5 spilled registers and the caller's stacked
        // arguments; a well-formed call ends its list with NULL (and envp for execle).
        let arg = |i: usize| unsafe {
            if i < 5 {
                *regs.add(i)
            } else {
                *stack.add(i - 5)
            }
        };
        let mut argv: Vec<*const c_char> = Vec::new();
        let mut i = 0;
        loop {
            let a = arg(i) as *const c_char;
            argv.push(a);
            i += 1;
            if a.is_null() {
                break;
            }
        }
        let envp = if variant == EXECLE {
            arg(i) as *const *const c_char
        } else {
            process_environment()
        };
        (argv, envp)
    }));
    let Ok((argv, envp)) = collected else {
        set_errno(libc::ENOMEM);
        return -1;
    };
    static EXECL_SITE: Site = Site::new("execl");
    static EXECLP_SITE: Site = Site::new("execlp");
    static EXECLE_SITE: Site = Site::new("execle");
    let (site, lookup) = match variant {
        EXECLP => (&EXECLP_SITE, Lookup::Search),
        EXECLE => (&EXECLE_SITE, Lookup::Path),
        _ => (&EXECL_SITE, Lookup::Path),
    };
    // SAFETY: the caller's arguments, now as an array.
    let r = unsafe { exec_carrying(site, lookup, path, argv.as_ptr(), envp) };
    let e = errno();
    drop(argv);
    set_errno(e);
    r
}

/// A variadic `int f(const char *path, const char *arg, ...)` that spills its integer argument
/// registers below the return address, so that they and the stacked arguments form two arrays,
/// and calls `exec_list(path, regs, stack, variant)`. On entry rsp is 8 mod 16; five pushes
/// make it 0 mod 16 again, as the call needs.
macro_rules! exec_trampoline {
    ($name:ident, $variant:expr) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, arg: *const c_char) -> c_int {
            core::arch::naked_asm!(
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "mov rsi, rsp",
                "lea rdx, [rsp + 48]",
                "mov ecx, {variant}",
                "call {collect}",
                "add rsp, 40",
                "ret",
                variant = const $variant,
                collect = sym exec_list,
            )
        }
    };
}

exec_trampoline!(execl, EXECL);
exec_trampoline!(execlp, EXECLP);
exec_trampoline!(execle, EXECLE);
