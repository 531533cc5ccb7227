//! libsluice.so under LD_PRELOAD: pass-through, errno, offload decisions, bad configuration,
//! exec keeping the preload, vfork, and what an idle process pays.
//!
//! A custom harness (`harness = false`): this binary also plays the preloaded child in some
//! tests (`preloaded ROLE`), calling libc directly, e.g. the variadic execl family.
//! Needs /usr/bin/python3, /bin/sh, readelf; a missing tool fails the test that needs it.

use std::ffi::CString;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::ptr::null;
use std::sync::OnceLock;

/// target/<profile>/libsluice.so, (re)built first: cargo does not build a cdylib for the
/// integration tests of its own package.
fn library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/preloaded-HASH -> target/<profile>
            let exe = std::env::current_exe().expect("current_exe");
            let dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("test binary lives in target/<profile>/deps");
            if let Some(cargo) = std::env::var_os("CARGO") {
                let mut build = Command::new(cargo);
                build.args([
                    "build",
                    "-j1",
                    "-q",
                    "-p",
                    "sluice-preload",
                    "--manifest-path",
                ]);
                build.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
                if dir.ends_with("release") {
                    build.arg("--release");
                }
                let status = build.status().expect("cannot run cargo build");
                assert!(status.success(), "cargo build -p sluice-preload failed");
            }
            let lib = dir.join("libsluice.so");
            assert!(
                lib.exists(),
                "{} not found: build it first (cargo build -p sluice-preload)",
                lib.display()
            );
            lib
        })
        .clone()
}

/// `program args` preloaded with libsluice.so, in an environment without SLUICE_* from ours.
fn preloaded(program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLUICE_") || name == "LD_PRELOAD" {
            cmd.env_remove(name);
        }
    }
    cmd.env("LD_PRELOAD", library());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn python(script: &str, env: &[(&str, &str)]) -> (String, String) {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is needed (apt-get install python3)"
    );
    let out = run(preloaded("/usr/bin/python3", &["-c", script], env));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn this_binary_as(role: &str, env: &[(&str, &str)]) -> (String, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = run(preloaded(exe.to_str().expect("utf-8 path"), &[role], env));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- tests

fn library_links_nothing_but_libc() {
    let out = Command::new("readelf")
        .args(["-d", library().to_str().unwrap()])
        .output()
        .expect("readelf is needed (apt-get install binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries parsed from:\n{text}");
    for lib in &needed {
        assert!(
            ["libc.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"].contains(lib),
            "libsluice.so must not depend on {lib} (needed: {needed:?})"
        );
    }
}

fn an_idle_process_pays_nothing() {
    let out = run(preloaded(
        "/bin/cat",
        &["/proc/self/status", "/proc/self/maps"],
        &[],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("libsluice.so"),
        "the library is not mapped:\n{text}"
    );
    assert!(
        text.lines().any(|l| l == "Threads:\t1"),
        "a preloaded process must not start threads:\n{text}"
    );
    assert!(
        !text.contains("librte_") && !text.contains("dpdk"),
        "DPDK is mapped in a process that never offloaded:\n{text}"
    );
}

const PASS_THROUGH: &str = r#"
import errno, os, socket, threading
# UDP and TCP over loopback, data intact.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
u.sendto(b"ping", u.getsockname())
assert u.recvfrom(16)[0] == b"ping"
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
c = socket.create_connection(ls.getsockname())
a, _ = ls.accept()
c.sendall(b"x" * 100000)
got = b""
while len(got) < 100000:
    got += a.recv(65536)
assert got == b"x" * 100000
a.close(); c.close(); ls.close()
# errno comes through exactly.
def err(f, *args):
    try:
        f(*args)
    except OSError as e:
        return e.errno
    return 0
t = socket.socket()
refused = err(t.connect, ("127.0.0.1", 1))
assert refused == errno.ECONNREFUSED, refused
assert err(os.read, 9999, 1) == errno.EBADF
assert err(os.write, 9999, b"x") == errno.EBADF
assert err(os.close, 9999) == errno.EBADF
assert err(os.dup2, 9999, 5) == errno.EBADF
n = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); n.setblocking(False)
assert err(n.recv, 1) == errno.EAGAIN
# dup, close one, the other still works.
d = os.dup(u.fileno())
os.close(u.fileno()); u.detach()
v = socket.socket(fileno=d)
v.sendto(b"again", v.getsockname())
assert v.recv(16) == b"again"
# fork and select/poll/epoll.
import select
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, b"child")
    os._exit(3)
assert select.select([r], [], [], 5)[0] == [r]
p = select.poll(); p.register(r, select.POLLIN); assert p.poll(5000)
e = select.epoll(); e.register(r, select.EPOLLIN); assert e.poll(5)
assert os.read(r, 16) == b"child"
assert os.waitpid(pid, 0)[1] >> 8 == 3
# many threads creating, duplicating and closing sockets at once.
def churn():
    for _ in range(300):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        k = os.dup(s.fileno())
        s.close()
        os.close(k)
ts = [threading.Thread(target=churn) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("all good")
"#;

fn python_sockets_pass_through_intact() {
    for log in ["warn", "debug"] {
        let (out, _) = python(PASS_THROUGH, &[("SLUICE_LOG", log)]);
        assert_eq!(out.trim(), "all good");
    }
}

const DECISIONS: &str = r#"
import socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.connect(("10.77.9.9", 7000))
print("a", a.fileno())
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.connect(("10.77.9.9", 53))
print("b", b.fileno())
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"x", ("127.0.0.1", 9))
c.sendto(b"x", ("10.77.9.9", 9999))
print("c", c.fileno())
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.bind(("127.0.0.1", 0))
print("d", d.fileno())
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
k = socket.create_connection(l.getsockname())
s, _ = l.accept()
print("s", s.fileno())
print("l", l.fileno())
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("u", u.fileno())
"#;

fn offload_decisions_are_taken_when_the_address_is_known() {
    let (out, err) = python(
        DECISIONS,
        &[("SLUICE_LOG", "debug"), ("SLUICE_OFFLOAD", "10.77.9.0/24")],
    );
    let fd = |name: &str| -> String {
        out.lines()
            .find_map(|l| {
                let mut w = l.split(' ');
                (w.next() == Some(name)).then(|| w.next().unwrap().to_string())
            })
            .unwrap_or_else(|| panic!("no fd for {name} in {out}"))
    };
    let expect = |line: String| {
        assert!(err.contains(&line), "missing `{line}` in stderr:\n{err}");
    };
    expect(format!(
        "sluice: fd {} -> offload (dst 10.77.9.9:7000)",
        fd("a")
    ));
    // Port 53 is excluded by default.
    expect(format!(
        "sluice: fd {} -> kernel (dst 10.77.9.9:53)",
        fd("b")
    ));
    // The first sendto decides; the second does not re-decide.
    expect(format!(
        "sluice: fd {} -> kernel (dst 127.0.0.1:9)",
        fd("c")
    ));
    assert!(
        !err.contains(&format!("fd {} -> offload", fd("c"))),
        "{err}"
    );
    expect(format!("sluice: fd {} -> kernel (bind 127.0.0.1:", fd("d")));
    expect(format!(
        "sluice: fd {} -> kernel (accepted on fd {})",
        fd("s"),
        fd("l")
    ));
    assert!(
        !err.contains(&format!("fd {} ->", fd("u"))),
        "AF_UNIX is never decided:\n{err}"
    );
}

/// A socket inherited across exec is unknown to the new process's table: connect adopts it.
fn inherited_sockets_are_adopted_at_connect() {
    let script = r#"
import os, socket, sys
if len(sys.argv) == 1:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_inheritable(True)
    os.execv(sys.executable, [sys.executable, "-c", SCRIPT, str(s.fileno())])
fd = int(sys.argv[1])
s = socket.socket(fileno=fd)
s.connect(("10.77.9.9", 7001))
print(fd)
"#;
    let script = format!("SCRIPT = {script:?}\n{script}");
    let (out, err) = python(
        &script,
        &[("SLUICE_LOG", "debug"), ("SLUICE_OFFLOAD", "10.77.9.0/24")],
    );
    let line = format!("sluice: fd {} -> offload (dst 10.77.9.9:7001)", out.trim());
    assert!(err.contains(&line), "missing `{line}` in stderr:\n{err}");
}

fn the_default_log_level_is_quiet() {
    let (_, err) = python(DECISIONS, &[("SLUICE_OFFLOAD", "10.77.9.0/24")]);
    assert_eq!(err, "", "nothing on stderr at the default level");
}

fn a_bad_configuration_is_one_line_and_everything_still_works() {
    let (out, err) = python(PASS_THROUGH, &[("SLUICE_MODE", "warp")]);
    assert_eq!(out.trim(), "all good");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{err}");
    assert!(
        lines[0].starts_with("sluice: SLUICE_MODE=\"warp\"")
            && lines[0].ends_with("; passing all calls to the kernel"),
        "{}",
        lines[0]
    );
    // A process that never opens an IPv4 socket never reads the configuration.
    let out = run(preloaded("/bin/true", &[], &[("SLUICE_MODE", "warp")]));
    assert!(out.stderr.is_empty());
}

fn exec_with_a_scrubbed_environment_keeps_sluice() {
    let lib = library();
    let lib = lib.to_str().unwrap();
    let script = r#"
import os, sys
mode = sys.argv[1]
show = 'printf "%s|%s|%s" "$LD_PRELOAD" "$SLUICE_LOG" "$SLUICE_OFFLOAD"'
if mode == "execve":
    os.execve("/bin/sh", ["sh", "-c", show], {"SLUICE_OFFLOAD": "10.9.0.0/16"})
elif mode == "subprocess":
    import subprocess
    sys.stdout.write(subprocess.run(["/bin/sh", "-c", show], env={}, capture_output=True, text=True).stdout)
elif mode == "posix_spawn":
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", show], {})
    os.waitpid(pid, 0)
elif mode == "execv":
    del os.environ["LD_PRELOAD"]
    os.unsetenv("LD_PRELOAD")
    os.execv("/bin/sh", ["sh", "-c", show])
else:
    os.execvpe("sh", ["sh", "-c", show], {"PATH": "/usr/bin:/bin"})
"#;
    for mode in ["execve", "execv", "execvpe", "subprocess", "posix_spawn"] {
        let out = run(preloaded(
            "/usr/bin/python3",
            &["-c", script, mode],
            &[("SLUICE_LOG", "warn"), ("SLUICE_OFFLOAD", "10.77.2.0/24")],
        ));
        let got = String::from_utf8_lossy(&out.stdout);
        let want_offload = if mode == "execve" {
            "10.9.0.0/16"
        } else {
            "10.77.2.0/24"
        };
        assert_eq!(got, format!("{lib}|warn|{want_offload}"), "after {mode}");
    }
}

fn variadic_execs_keep_sluice_and_every_argument() {
    let lib = library();
    let lib = lib.to_str().unwrap();
    let (out, _) = this_binary_as("execl", &[("SLUICE_LOG", "warn")]);
    assert_eq!(out, format!("a b c d e f g h|{lib}|warn"));
    let (out, _) = this_binary_as("execlp", &[("SLUICE_LOG", "warn")]);
    assert_eq!(out, format!("1 2|{lib}|warn"));
    let (out, _) = this_binary_as("execle", &[("SLUICE_LOG", "warn")]);
    assert_eq!(out, format!("x|{lib}|warn|only"));
}

fn vfork_children_run_and_exit() {
    let (out, _) = this_binary_as("vfork", &[]);
    assert_eq!(out.trim(), "child exited 7, parent state intact");
}

fn errno_is_preserved_exactly() {
    let (out, _) = this_binary_as(
        "errno",
        &[("SLUICE_LOG", "debug"), ("SLUICE_OFFLOAD", "10.77.9.0/24")],
    );
    assert_eq!(out.trim(), "errno ok");
}

// ---------------------------------------------------------------- roles (run preloaded)

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn set_errno(v: c_int) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = v }
}

fn role(name: &str) -> ! {
    // The program drops LD_PRELOAD from its own environment: only the hooks can put it back.
    std::env::remove_var("LD_PRELOAD");
    let show = cstr(r#"printf "%s|%s|%s" "$*" "$LD_PRELOAD" "$SLUICE_LOG""#);
    let sh = cstr("/bin/sh");
    let a: Vec<CString> = "sh a b c d e f g h".split(' ').map(cstr).collect();
    // SAFETY: well-formed variadic calls ending with NULL (execle: then envp).
    unsafe {
        match name {
            "execl" => {
                // 11 variadic arguments: 5 in registers, the rest on the stack.
                libc::execl(
                    sh.as_ptr(),
                    a[0].as_ptr(),
                    cstr("-c").as_ptr(),
                    show.as_ptr(),
                    a[0].as_ptr(),
                    a[1].as_ptr(),
                    a[2].as_ptr(),
                    a[3].as_ptr(),
                    a[4].as_ptr(),
                    a[5].as_ptr(),
                    a[6].as_ptr(),
                    a[7].as_ptr(),
                    a[8].as_ptr(),
                    null::<libc::c_char>(),
                );
            }
            "execlp" => {
                libc::execlp(
                    cstr("sh").as_ptr(),
                    a[0].as_ptr(),
                    cstr("-c").as_ptr(),
                    show.as_ptr(),
                    a[0].as_ptr(),
                    cstr("1").as_ptr(),
                    cstr("2").as_ptr(),
                    null::<libc::c_char>(),
                );
            }
            "execle" => {
                let show = cstr(r#"printf "%s|%s|%s|%s" "$*" "$LD_PRELOAD" "$SLUICE_LOG" "$ONLY""#);
                let only = cstr("ONLY=only");
                let envp = [only.as_ptr(), null()];
                libc::execle(
                    sh.as_ptr(),
                    a[0].as_ptr(),
                    cstr("-c").as_ptr(),
                    show.as_ptr(),
                    a[0].as_ptr(),
                    cstr("x").as_ptr(),
                    null::<libc::c_char>(),
                    envp.as_ptr(),
                );
            }
            "vfork" => {
                static mut MARK: c_int = 1;
                // libc deprecates vfork because a Rust frame cannot survive it; the hook turns
                // it into fork, which is what this checks.
                #[allow(deprecated)]
                let pid = libc::vfork();
                if pid == 0 {
                    // Would be the parent's memory under a real vfork.
                    MARK = 2;
                    libc::_exit(7);
                }
                let mut status = 0;
                assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
                let mark = MARK;
                if libc::WEXITSTATUS(status) == 7 && mark == 1 {
                    println!("child exited 7, parent state intact");
                }
                std::process::exit(0);
            }
            "errno" => {
                errno_role();
                println!("errno ok");
                std::process::exit(0);
            }
            _ => panic!("unknown role {name}"),
        }
    }
    panic!("{name} returned: {}", std::io::Error::last_os_error());
}

/// Successful hooked calls leave errno alone, even when the hook initialises, allocates and
/// logs; failing ones set the kernel's errno.
fn errno_role() {
    // SAFETY: plain socket calls on our own fds and addresses.
    unsafe {
        set_errno(1234);
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        assert_eq!(errno(), 1234, "socket() with initialisation");
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 7000u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([10, 77, 9, 9]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of_val(&sin) as libc::socklen_t;
        let r = libc::connect(fd, (&sin as *const libc::sockaddr_in).cast(), len);
        // With no route to 10.77.9.0/24 the connect fails with the kernel's errno; with one it
        // succeeds and must not have touched errno (the debug log line was written meanwhile).
        if r == 0 {
            assert_eq!(errno(), 1234, "connect() with a logged decision");
        } else {
            assert!(
                [libc::ENETUNREACH, libc::EHOSTUNREACH].contains(&errno()),
                "{}",
                errno()
            );
        }
        let d = libc::dup(fd);
        set_errno(4321);
        assert_eq!(libc::close(d), 0);
        assert_eq!(errno(), 4321, "close() of a tracked dup");
        assert_eq!(libc::close(fd), 0);
        assert_eq!(libc::close(fd), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(libc::dup2(fd, 100), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(libc::fcntl(fd, libc::F_GETFL), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(libc::ioctl(fd, libc::FIONREAD, &mut 0 as *mut c_int), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(libc::socket(libc::AF_INET, 99, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        let mut buf = [0u8; 4];
        assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::EBADF);
    }
}

// ---------------------------------------------------------------- harness

const UDP_MODE: &str = r#"
import socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("0.0.0.0", 0))
a.sendto(b"still the kernel", ("127.0.0.1", a.getsockname()[1]))
assert a.recv(100) == b"still the kernel"
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.connect(("10.77.9.9", 7000))
status = open("/proc/self/status").read()
maps = open("/proc/self/maps").read()
print([l for l in status.splitlines() if l.startswith("Threads:")][0])
print("dpdk mapped" if "dpdk" in maps or "librte_" in maps else "no dpdk")
"#;

/// Kernel-UDP mode (the default): datagram sockets the policy offloads stay in the kernel,
/// and starting a stack for them would cost a thread for nothing.
fn kernel_udp_mode_keeps_datagram_sockets_in_the_kernel() {
    let (out, err) = python(
        UDP_MODE,
        &[("SLUICE_LOG", "debug"), ("SLUICE_OFFLOAD", "10.77.9.0/24")],
    );
    assert!(
        err.contains("-> offload (bind 0.0.0.0:0)"),
        "the policy did not offload the wildcard bind:\n{err}"
    );
    assert!(
        out.contains("Threads:\t1"),
        "a stack thread was started:\n{out}\n{err}"
    );
    assert!(out.contains("no dpdk"), "DPDK was mapped:\n{out}");
    assert!(
        !err.contains("stack started"),
        "a stack was started:\n{err}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = args.get(1).filter(|a| !a.starts_with('-')) {
        if ["execl", "execlp", "execle", "vfork", "errno"].contains(&name.as_str()) {
            role(name);
        }
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[
        (
            "library_links_nothing_but_libc",
            library_links_nothing_but_libc,
        ),
        ("an_idle_process_pays_nothing", an_idle_process_pays_nothing),
        (
            "python_sockets_pass_through_intact",
            python_sockets_pass_through_intact,
        ),
        (
            "offload_decisions_are_taken_when_the_address_is_known",
            offload_decisions_are_taken_when_the_address_is_known,
        ),
        (
            "kernel_udp_mode_keeps_datagram_sockets_in_the_kernel",
            kernel_udp_mode_keeps_datagram_sockets_in_the_kernel,
        ),
        (
            "inherited_sockets_are_adopted_at_connect",
            inherited_sockets_are_adopted_at_connect,
        ),
        (
            "the_default_log_level_is_quiet",
            the_default_log_level_is_quiet,
        ),
        (
            "a_bad_configuration_is_one_line_and_everything_still_works",
            a_bad_configuration_is_one_line_and_everything_still_works,
        ),
        (
            "exec_with_a_scrubbed_environment_keeps_sluice",
            exec_with_a_scrubbed_environment_keeps_sluice,
        ),
        (
            "variadic_execs_keep_sluice_and_every_argument",
            variadic_execs_keep_sluice_and_every_argument,
        ),
        ("vfork_children_run_and_exit", vfork_children_run_and_exit),
        ("errno_is_preserved_exactly", errno_is_preserved_exactly),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
