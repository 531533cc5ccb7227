//! libsluice.so: the LD_PRELOAD interposer. It translates the C ABI and dispatches each call
//! either to the kernel or (for offloaded sockets, as the stack grows) to the sluice stack.
//! No protocol code lives here.
//!
//! # Hooks
//!
//! | concern | module | functions |
//! |---|---|---|
//! | sockets | `hooks::socket`, `hooks::sockopt` | socket, bind, listen, accept, accept4, connect, shutdown, sendto, sendmsg, sendmmsg, getsockopt, setsockopt, getsockname, getpeername |
//! | data | `hooks::io` | read, readv, write, writev, send, recv, recvfrom, recvmsg, recvmmsg, __read_chk, __recv_chk, __recvfrom_chk |
//! | readiness | `hooks::mux` | poll, __poll_chk, ppoll, __ppoll_chk, select, pselect, epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2 |
//! | fds | `hooks::fd` | close, close_range, closefrom, dup, dup2, dup3, fcntl, fcntl64, ioctl |
//! | processes | `hooks::process` | fork, vfork (as fork), execve, execv, execvp, execvpe, execl, execlp, execle, posix_spawn, posix_spawnp |
//!
//! # Design
//!
//! - **Real functions** (`real`): resolved lazily with `dlsym(RTLD_NEXT)` into atomics, no lock;
//!   a call made while this thread is inside dlsym, or whose symbol is missing, takes the raw
//!   system call.
//! - **fd table** (`fdtable`, `entry`): socket() always makes the kernel socket (the shadow);
//!   IPv4 TCP/UDP sockets get an entry, shared by dup'd fds. Lookups take no lock (split
//!   reference counts); a call on an fd that is not ours costs one or two atomic loads (plain
//!   moves on x86_64).
//! - **Offload decision**: taken at bind, connect or the first sendto/sendmsg with an address,
//!   by `OffloadPolicy::offloads`, and logged at debug level as
//!   `sluice: fd N -> offload (dst A.B.C.D:P)` or `... -> kernel (...)`.
//! - **The stack** (`offload`): started lazily at the first offloaded socket (so a process that
//!   never offloads maps no DPDK and starts no thread); if it cannot start, one error line and
//!   everything stays in the kernel. An offloaded datagram socket gets a stack `UdpSocket` in
//!   its entry, with the options already set on the shadow carried over.
//! - **Datagram data path** (`dgram`): the socket calls translated onto `UdpSocket` with the
//!   kernel's return values, errno and address formats. A socket bound to INADDR_ANY also binds
//!   its shadow to the same port and receives from both; a destination the policy keeps in the
//!   kernel (sendto, or connect) is served by the shadow. Stream sockets still move their data
//!   through the shadow (later issue).
//! - **Readiness** (`mux`): poll/select/epoll over kernel and offloaded fds in one real wait
//!   that includes the stack's wakeup eventfd; offloaded fds' readiness and epoll registrations
//!   live in user space.
//! - **Re-entry and panics** (`guard`): hook bodies run with a thread-local flag set, so calls
//!   made by our own code (logging, configuration, later the stack and DPDK's EAL) pass straight
//!   to the kernel; a panic is caught, reported once per hook, and the call completes in the
//!   kernel. errno is exactly what the kernel call left.
//! - **Initialisation** (`init`): lazy, at the first IPv4 socket call; a bad configuration is
//!   one stderr line and the process runs on the kernel. Loading the library only copies the
//!   `LD_PRELOAD`/`SLUICE_*` strings for exec (`exec_env`): no thread, no allocation, and no
//!   library beyond libc, libgcc_s and the loader.
//!
//! # Limits (known)
//!
//! - Only AF_INET sockets are tracked; AF_INET6 (including v4-mapped addresses) stays in the
//!   kernel.
//! - socket(), accept() and dup() of a tracked fd allocate a table entry: a signal handler that
//!   creates or duplicates IPv4 sockets while the interrupted code is inside malloc can deadlock
//!   in malloc. close() and dup2() over a tracked fd only free.
//! - A child forked while another thread was initialising sluice runs on the kernel.
//! - Exec'd children get back `LD_PRELOAD` and the start-up `SLUICE_*` values even if the
//!   program removed them on purpose: to run a child without sluice, run it outside sluice.
//! - vfork costs what fork costs (see `hooks::process`).
//! - Offloaded datagram sockets: no control messages (msg_control comes back empty, cmsgs
//!   given to sendmsg are ignored); an ip_mreqn naming only an interface index is not mapped;
//!   blocking waits end with EINTR on a signal only in their sleeping phase, and SA_RESTART is
//!   not honoured; an fd added to an epoll set before it became offloaded stays in the
//!   kernel's set (see `mux`); a socket bound to one data IP has an unbound shadow, so a
//!   kernel-kept destination sees the shadow's own ephemeral port.
//!
//! Unit tests build without the hooks (a test executable exporting `read` would intercept its
//! own harness); the hooks are exercised under LD_PRELOAD by `tests/preloaded.rs`.

// Test builds leave the hooks out, and with them the only users of much of the rest.
#![cfg_attr(test, allow(dead_code))]

mod dgram;
mod entry;
mod exec_env;
mod fdtable;
mod guard;
#[cfg(not(test))]
mod hooks;
mod init;
mod mux;
mod offload;
mod real;
mod signals;
mod stream;
