//! Statistics for `sluice-stat`: every stack publishes a snapshot of its counters and state
//! in shared memory (a file in /dev/shm/sluice/), rewritten by the helper thread a few times a
//! second. The data path never touches it: no lock and no system call are added there; the
//! helper takes the engine only when nobody else holds it.
//!
//! The snapshot is text, one record a line, `KIND key=value ...`, so that it stays readable
//! with `cat` and simple to parse. It is replaced atomically (write, then rename), so a reader
//! never sees half of one. The file is removed at exit; `sluice-stat` removes the files of
//! processes that died without exiting.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::{Engine, Stack};
use crate::iface::DropReason;

/// Where the snapshots live; sticky and world-writable like /tmp, since every user's processes
/// publish there.
pub const DIR: &str = "/dev/shm/sluice";
/// The first line of a snapshot, with its format version.
pub const HEADER: &str = "sluice-stat 1";
/// How often the helper republishes.
pub const PERIOD: Duration = Duration::from_millis(250);

/// This process's id and snapshot file, once published (removed at exit by that process only:
/// a forked child inherits the exit hook, not the file).
static PUBLISHED: OnceLock<(u32, PathBuf)> = OnceLock::new();
/// Held while a snapshot is written; set to true at exit, after which nothing is published
/// (the helper thread runs on while the exit hooks do).
static WRITING: Mutex<bool> = Mutex::new(false);

/// The snapshot file of process `pid`.
pub fn path_of(pid: u32) -> PathBuf {
    Path::new(DIR).join(format!("{pid}.stat"))
}

impl Stack {
    /// The snapshot text (see the module documentation), or `None` when the engine is busy.
    pub(crate) fn snapshot(&self) -> Option<String> {
        let engine = self.try_engine()?;
        let mut out = String::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(
            out,
            "process pid={} mode={} updated_ms={} uptime_ms={}",
            std::process::id(),
            self.mode().as_str(),
            now.as_millis(),
            self.now() / 1_000_000
        );
        describe(&engine, self.now(), &mut out);
        let f = self.figures();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "engine polls={} helper_progress={} helper_naps={} helper_frame_wakeups={} \
             spun_us={} spin_budget_us={} wait_fds={}",
            load(&f.polls),
            self.helper_progress(),
            load(&f.helper_naps),
            load(&f.helper_frame_wakeups),
            load(&f.spin_ns) / 1000,
            self.spin_budget().as_micros(),
            self.wait_fds().len()
        );
        Some(out)
    }

    /// Writes the snapshot to this process's file (called by the helper every `PERIOD`).
    /// False when there was nothing written because the engine was busy: the caller tries
    /// again soon rather than a period later (a reader would see a stale snapshot).
    pub(crate) fn publish(&self) -> bool {
        let Some(text) = self.snapshot() else {
            return false;
        };
        let exited = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        if *exited {
            return true;
        }
        let pid = std::process::id();
        if PUBLISHED.get().is_none() && !prepare_dir() {
            return true;
        }
        let path = path_of(pid);
        let tmp = Path::new(DIR).join(format!(".{pid}.stat.tmp"));
        // Anyone may create files in the directory: never write through one made by someone
        // else (a symbolic link to a file of ours, say). A leftover of ours is removed first;
        // the new file must be ours alone (O_EXCL, O_NOFOLLOW); rename replaces a link itself.
        let _ = std::fs::remove_file(&tmp);
        let written = new_private_file(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                if PUBLISHED.set((pid, path)).is_ok() {
                    // SAFETY: registers a plain function to run at exit.
                    unsafe { libc::atexit(remove_at_exit) };
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                log::debug!("sluice-stat snapshot in {DIR}: {e}");
            }
        }
        true
    }
}

fn describe(engine: &Engine, now: u64, out: &mut String) {
    for (i, port) in engine.ports.iter().enumerate() {
        let c = port.iface.counters();
        let config = port.iface.config();
        let h = engine.port_health(i);
        let _ = writeln!(
            out,
            "port index={i} addr={}/{} mac={} rx_frames={} tx_frames={} rx_drops={} tx_drops={} \
             rx_udp={} tx_udp={} socket_queue_drops={} tx_backlog={} tcp_resets_sent={} \
             tcp_rate_limited={} state={} changes={} last_change={} serves={} moves={} \
             garps_sent={} probes_sent={} link_rx_frames={} link_tx_frames={} \
             carried_rx_frames={} carried_tx_frames={}",
            config.addr,
            config.prefix_len,
            h.own_mac,
            c.rx_frames,
            c.tx_frames,
            c.total_dropped(),
            port.tx_drops(),
            c.rx_udp_datagrams,
            c.tx_udp_datagrams,
            port.socket_queue_drops(),
            port.backlog_len(),
            c.tcp_resets_sent,
            c.dropped(DropReason::TcpRateLimited),
            if engine.port_up(i) { "up" } else { "down" },
            h.changes,
            h.last_change.as_deref().unwrap_or("-"),
            join(&h.serves),
            h.moves,
            h.garps_sent,
            h.probes_sent,
            h.link_rx_frames,
            h.link_tx_frames,
            h.carried_rx_frames,
            h.carried_tx_frames,
        );
        for n in port.iface.neighbours().entries(now) {
            let _ = writeln!(
                out,
                "neighbour port={i} ip={} mac={} state={}",
                n.ip,
                n.mac,
                if n.stale { "stale" } else { "reachable" }
            );
        }
    }
    let mut keys: Vec<&u64> = engine.sockets.keys().collect();
    keys.sort();
    for key in keys {
        let entry = &engine.sockets[key];
        let (local, peer) = engine
            .ports
            .iter()
            .zip(entry.ids.iter())
            .find_map(|(port, id)| {
                let udp = port.iface.sockets();
                let local = udp.local_addr(*id).ok().flatten()?;
                Some((local, udp.peer_addr(*id).ok().flatten()))
            })
            .map_or(("-".to_string(), "-".to_string()), |(l, p)| {
                (l.to_string(), p.map_or("-".to_string(), |p| p.to_string()))
            });
        let (queued, bytes, drops) = entry.shared.depth();
        let _ = writeln!(
            out,
            "socket id={key} proto=udp local={local} peer={peer} rx_queued={queued} \
             rx_queued_bytes={bytes} rx_drops={drops}"
        );
    }
    if engine.streams.active() {
        engine.streams.describe(out);
    }
}

fn join(addrs: &[std::net::Ipv4Addr]) -> String {
    if addrs.is_empty() {
        return "-".into();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates (truncates) `path` readable and writable by its owner only: another user's
/// `sluice-stat` must not read this process's addresses and counters.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode through open(): set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// A new file at `path`, owner-only, failing if anything (a link included) is there.
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates the directory (sticky, world-writable, like /tmp) if needed, and checks that it
/// is one to trust: a real directory, owned by root or by us, sticky if others may write.
fn prepare_dir() -> bool {
    use std::os::unix::fs::MetadataExt;
    let dir = Path::new(DIR);
    if std::fs::symlink_metadata(dir).is_err() {
        if std::fs::create_dir(dir).is_err() && std::fs::symlink_metadata(dir).is_err() {
            return false;
        }
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let trusted = meta.is_dir()
        && (meta.uid() == 0 || meta.uid() == uid)
        && (meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0);
    if !trusted {
        log::debug!("sluice-stat: {DIR} is not a directory to trust; no snapshot");
    }
    trusted
}

extern "C" fn remove_at_exit() {
    *WRITING.lock().unwrap_or_else(|p| p.into_inner()) = true;
    if let Some((pid, path)) = PUBLISHED.get() {
        if *pid == std::process::id() {
            let _ = std::fs::remove_file(path);
        }
    }
}
