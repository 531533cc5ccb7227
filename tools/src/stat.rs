//! `sluice-stat`: reads the snapshots that running stacks publish (see `sluice_stack::stats`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sluice_stack::stats::{path_of, DIR, HEADER};

/// One line of a snapshot: its kind and its `key=value` fields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub records: Vec<Record>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Result<Snapshot, String> {
        let mut lines = text.lines();
        match lines.next() {
            Some(HEADER) => {}
            Some(other) => {
                return Err(format!("not a sluice-stat snapshot (first line {other:?})"))
            }
            None => return Err("empty snapshot".into()),
        }
        let records = lines
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut words = line.split_whitespace();
                let kind = words.next().unwrap_or_default().to_string();
                let fields = words
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (w.to_string(), String::new()),
                    })
                    .collect();
                Record { kind, fields }
            })
            .collect();
        Ok(Snapshot { records })
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.kind == kind)
    }

    /// As JSON: `{"process": {...}, "engine": {...}, "port": [...], "socket": [...], ...}`;
    /// numbers stay numbers.
    pub fn to_json(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for r in &self.records {
            if !kinds.contains(&r.kind.as_str()) {
                kinds.push(&r.kind);
            }
        }
        let object = |r: &Record| {
            let body: Vec<String> = r
                .fields
                .iter()
                .map(|(k, v)| format!("{}: {}", json_string(k), json_value(v)))
                .collect();
            format!("{{{}}}", body.join(", "))
        };
        let mut parts = Vec::new();
        for kind in kinds {
            let all: Vec<&Record> = self.of_kind(kind).collect();
            let value = if matches!(kind, "process" | "engine") && all.len() == 1 {
                object(all[0])
            } else {
                format!(
                    "[{}]",
                    all.iter().map(|r| object(r)).collect::<Vec<_>>().join(", ")
                )
            };
            parts.push(format!("{}: {value}", json_string(kind)));
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// A human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            let _ = write!(out, "{:<10}", r.kind);
            for (k, v) in &r.fields {
                let _ = write!(out, " {k}={v}");
            }
            out.push('\n');
        }
        out
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(v: &str) -> String {
    if !v.is_empty() && v.len() < 20 && v.bytes().all(|b| b.is_ascii_digit()) {
        v.to_string()
    } else {
        json_string(v)
    }
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The pids with a snapshot that the caller may read (its own processes; root: all), sorted;
/// snapshots of dead processes are removed on the way.
pub fn list() -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(DIR) else {
        return Vec::new();
    };
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_suffix(".stat")?.parse::<u32>().ok()?;
            let owner = e.metadata().ok()?.uid();
            if uid != 0 && owner != uid {
                return None; // another user's process
            }
            if alive(pid) {
                Some(pid)
            } else {
                let _ = std::fs::remove_file(e.path());
                None
            }
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The snapshot of `pid`.
pub fn read(pid: u32) -> Result<Snapshot, String> {
    let path: PathBuf = path_of(pid);
    match std::fs::read_to_string(&path) {
        Ok(text) => Snapshot::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(if alive(pid) {
            format!("process {pid} publishes no sluice statistics (no stack, or not yet)")
        } else {
            format!("no process {pid}")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "process {pid} belongs to another user: only root may read its statistics"
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "sluice-stat 1\n\
        process pid=42 mode=dpdk updated_ms=1 uptime_ms=5\n\
        port index=0 addr=10.77.2.1/24 mac=02:5c:0a:4d:02:01 rx_frames=3 tx_frames=4\n\
        socket id=1 proto=udp local=10.77.2.1:5000 peer=- rx_queued=0\n\
        socket id=2 proto=udp local=10.77.2.1:5001 peer=10.77.2.3:7 rx_queued=2\n\
        engine helper_progress=9\n";

    #[test]
    fn parses_and_renders_json() {
        let s = Snapshot::parse(SAMPLE).unwrap();
        assert_eq!(s.of_kind("socket").count(), 2);
        assert_eq!(
            s.of_kind("port").next().unwrap().get("rx_frames"),
            Some("3")
        );
        let json = s.to_json();
        assert!(
            json.starts_with(r#"{"process": {"pid": 42, "mode": "dpdk""#),
            "{json}"
        );
        assert!(json.contains(r#""socket": [{"id": 1, "proto": "udp", "local": "10.77.2.1:5000""#));
        assert!(
            json.contains(r#""engine": {"helper_progress": 9}"#),
            "{json}"
        );
    }

    #[test]
    fn rejects_other_files() {
        assert!(Snapshot::parse("hello\n").is_err());
        assert!(Snapshot::parse("").is_err());
    }
}
