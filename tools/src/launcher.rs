//! `sluice run`: command line, profile, environment and LD_PRELOAD, turned into
//! the exact environment the application will be started with.
//!
//! Precedence of settings: command-line flags > variables already in the
//! environment > the profile. The full result is checked with
//! `Config::from_vars` before anything runs, so a bad setting is refused here
//! rather than discovered inside the application.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sluice_stack::config::{self, Config};

use crate::profile::{self, Profile};

/// The preload library's file name.
pub const LIB_NAME: &str = "libsluice.so";

pub const USAGE: &str = "\
sluice: run an unmodified application on the sluice stack (LD_PRELOAD=libsluice.so)

usage:
  sluice run [OPTIONS] [--] CMD [ARGS...]
  sluice version
  sluice --help

options of run:
  -p, --profile NAME     settings profile: latency, balanced (default), throughput
      --iface DEV=IP/PREFIX
                         a data port (repeat for several); sets SLUICE_IFACES
      --mode udp|dpdk    udp: kernel UDP sockets (default); dpdk: NIC ports via DPDK
      --gateway IP       next hop for peers outside the data port subnets
  -n, --dry-run          print the environment and command instead of running it
  -h, --help             this text

Settings come from, highest first: these flags, SLUICE_* variables already in
the environment, the profile. SLUICE_LIB overrides where libsluice.so is taken
from. A bad setting is refused with one line on stderr and exit status 2; a
command that cannot be found exits 127; otherwise the command's own status is
returned. Every variable is described in docs/configuration.md.

examples:
  sluice run -- python3 server.py
  sluice run -p latency --mode dpdk --iface p0=10.77.2.1/24 -- sockperf sr -i 10.77.2.1
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    Help,
    Version,
    Run(RunArgs),
}

/// Options of `sluice run` and the command to start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    pub profile: Option<String>,
    pub ifaces: Vec<String>,
    pub mode: Option<String>,
    pub gateway: Option<String>,
    pub dry_run: bool,
    pub command: Vec<OsString>,
}

/// Parses the arguments after the program name. Errors are one line.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let mut args = args.into_iter();
    let Some(sub) = args.next() else {
        return Err("no command given (see sluice --help)".to_string());
    };
    match sub.to_str() {
        Some("-h" | "--help" | "help") => Ok(Invocation::Help),
        Some("version" | "--version" | "-V") => Ok(Invocation::Version),
        Some("run") => parse_run(args),
        _ => Err(format!(
            "unknown command {sub:?} (expected run, version or --help)"
        )),
    }
}

fn parse_run(mut args: impl Iterator<Item = OsString>) -> Result<Invocation, String> {
    let mut run = RunArgs::default();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            // Not an option: the command starts here.
            run.command.push(arg);
            break;
        };
        if text == "--" {
            break;
        }
        if !text.starts_with('-') || text == "-" {
            run.command.push(arg);
            break;
        }
        // `--name=value` or `--name value`.
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (text, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            match args.next() {
                Some(v) => v
                    .into_string()
                    .map_err(|v| format!("{name} value {v:?} is not valid UTF-8")),
                None => Err(format!("{name} needs a value ({what})")),
            }
        };
        match name {
            "-h" | "--help" => return Ok(Invocation::Help),
            "-p" | "--profile" => run.profile = Some(value("a profile name")?),
            "--iface" => run.ifaces.push(value("DEV=IP/PREFIX")?),
            "--mode" => run.mode = Some(value("udp or dpdk")?),
            "--gateway" => run.gateway = Some(value("an IPv4 address")?),
            "-n" | "--dry-run" if inline.is_none() => run.dry_run = true,
            _ => return Err(format!("unknown option {name:?} (see sluice --help)")),
        }
    }
    run.command.extend(args);
    if run.command.is_empty() {
        return Err("run needs a command: sluice run [OPTIONS] [--] CMD [ARGS...]".to_string());
    }
    Ok(Invocation::Run(run))
}

/// Where a setting came from, to point at it in an error.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Profile,
    Environment,
    Flag(&'static str),
}

/// Everything needed to start the application.
#[derive(Debug)]
pub struct Plan {
    /// Variables to set in the child (all `SLUICE_*` in effect, and `LD_PRELOAD`).
    pub set: Vec<(String, OsString)>,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub profile: Profile,
    pub lib: PathBuf,
    /// The configuration the application will see, already checked.
    pub config: Config,
}

impl Plan {
    /// `NAME=value` lines and the command, for `--dry-run`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.set {
            let _ = writeln!(out, "{name}={}", value.to_string_lossy());
        }
        let command: Vec<String> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(out, "exec {}", command.join(" "));
        out
    }
}

/// Builds the child's environment from the command line, the current
/// environment `env` and the launcher's own path `exe`. Errors are one line.
pub fn plan(run: RunArgs, env: &[(OsString, OsString)], exe: &Path) -> Result<Plan, String> {
    let mut from_env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("SLUICE_") {
            continue;
        }
        let value = value.to_str().ok_or_else(|| {
            format!(
                "{name}={:?}: value is not valid UTF-8",
                value.to_string_lossy()
            )
        })?;
        from_env.insert(name.to_string(), value.to_string());
    }

    let (profile_name, profile_origin) = match (&run.profile, from_env.get(config::PROFILE)) {
        (Some(name), _) => (name.clone(), Origin::Flag("-p")),
        (None, Some(name)) if !name.is_empty() => (name.clone(), Origin::Environment),
        _ => (profile::DEFAULT.to_string(), Origin::Profile),
    };
    let profile = profile::load(&profile_name, &profile::search_dirs(exe)).map_err(|e| {
        if profile_origin == Origin::Environment {
            format!("{}={profile_name:?}: {e}", config::PROFILE)
        } else {
            e
        }
    })?;

    // Under an outer launcher (e.g. a shell started by `sluice run`), the
    // environment holds the outer profile's values; they are profile values,
    // not the user's, so a new -p must replace them.
    if let Some(outer) = from_env
        .get(config::PROFILE)
        .filter(|o| **o != profile.name)
    {
        if let Ok(outer) = profile::load(outer, &profile::search_dirs(exe)) {
            for (name, value) in &outer.settings {
                if from_env.get(name) == Some(value) {
                    from_env.remove(name);
                }
            }
        }
    }

    let mut merged: BTreeMap<String, (String, Origin)> = BTreeMap::new();
    for (name, value) in &profile.settings {
        merged.insert(name.clone(), (value.clone(), Origin::Profile));
    }
    for (name, value) in &from_env {
        merged.insert(name.clone(), (value.clone(), Origin::Environment));
    }
    if !run.ifaces.is_empty() {
        let ifaces = (run.ifaces.join(","), Origin::Flag("--iface"));
        merged.insert(config::IFACES.to_string(), ifaces);
    }
    if let Some(mode) = run.mode {
        merged.insert(config::MODE.to_string(), (mode, Origin::Flag("--mode")));
    }
    if let Some(gateway) = run.gateway {
        let gateway = (gateway, Origin::Flag("--gateway"));
        merged.insert(config::GATEWAY.to_string(), gateway);
    }
    merged.insert(
        config::PROFILE.to_string(),
        (profile.name.clone(), profile_origin),
    );

    let config = Config::from_vars(merged.iter().map(|(k, (v, _))| (k.clone(), v.clone())))
        .map_err(|e| {
            let origin = merged.get(e.variable()).map(|(_, origin)| origin);
            match origin {
                Some(Origin::Flag(flag)) => format!("{e} (from {flag})"),
                Some(Origin::Profile) => {
                    format!(
                        "{e} (from profile {}, {})",
                        profile.name,
                        profile.path.display()
                    )
                }
                _ => e.to_string(),
            }
        })?;

    let lib = match merged.get(config::LIB) {
        Some((path, _)) if !path.is_empty() => {
            let path = Path::new(path);
            path.canonicalize()
                .map_err(|e| format!("{}={:?}: {e}", config::LIB, path.display().to_string()))?
        }
        _ => find_lib(exe)?,
    };
    let current_preload = env
        .iter()
        .rev()
        .find(|(name, _)| name == "LD_PRELOAD")
        .map(|(_, value)| value.as_os_str());
    let preload = with_preload(current_preload, &lib)?;

    let mut set: Vec<(String, OsString)> = merged
        .into_iter()
        .map(|(name, (value, _))| (name, OsString::from(value)))
        .collect();
    set.push(("LD_PRELOAD".to_string(), preload));

    let mut command = run.command.into_iter();
    let program = command
        .next()
        .ok_or("run needs a command: sluice run [OPTIONS] [--] CMD [ARGS...]")?;
    Ok(Plan {
        set,
        program,
        args: command.collect(),
        profile,
        lib,
        config,
    })
}

/// libsluice.so next to the launcher (the build tree, `target/release`), or in
/// `PREFIX/lib` when the launcher is `PREFIX/bin/sluice`.
pub fn find_lib(exe: &Path) -> Result<PathBuf, String> {
    let bin = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        bin.join(LIB_NAME),
        bin.parent().unwrap_or(bin).join("lib").join(LIB_NAME),
    ];
    for candidate in &candidates {
        if candidate.is_file() {
            return candidate
                .canonicalize()
                .map_err(|e| format!("{}: {e}", candidate.display()));
        }
    }
    Err(format!(
        "{LIB_NAME} not found ({} or {}); build it with `cargo build --release -p sluice-preload` or set {}",
        candidates[0].display(),
        candidates[1].display(),
        config::LIB
    ))
}

/// `LD_PRELOAD` with `lib` appended: entries already there are kept in order
/// (an interposer such as a sanitizer may need to come first); an entry that is
/// this very file is not added twice; an entry that is another libsluice.so is
/// replaced, since two copies of the hooks in one process cannot work.
pub fn with_preload(current: Option<&OsStr>, lib: &Path) -> Result<OsString, String> {
    let lib_text = lib
        .to_str()
        .filter(|t| !t.contains([' ', ':']))
        .ok_or_else(|| {
            format!(
                "{:?} cannot go in LD_PRELOAD (it needs a UTF-8 path without spaces or ':')",
                lib.display().to_string()
            )
        })?;
    let current = current
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries: Vec<&str> = current
        .split([' ', ':'])
        .filter(|e| !e.is_empty())
        .collect();
    let is_this_lib = |entry: &str| {
        Path::new(entry) == lib || Path::new(entry).canonicalize().is_ok_and(|p| p == lib)
    };
    if entries.iter().any(|e| is_this_lib(e)) {
        return Ok(OsString::from(current));
    }
    let is_other_sluice = |entry: &str| Path::new(entry).file_name() == Some(OsStr::new(LIB_NAME));
    if entries.iter().any(|e| is_other_sluice(e)) {
        let rebuilt: Vec<&str> = entries
            .iter()
            .map(|e| if is_other_sluice(e) { lib_text } else { e })
            .collect();
        return Ok(OsString::from(rebuilt.join(":")));
    }
    if current.trim().is_empty() {
        return Ok(OsString::from(lib_text));
    }
    Ok(OsString::from(format!("{current}:{lib_text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Invocation, String> {
        parse_args(list.iter().map(OsString::from))
    }

    fn run(list: &[&str]) -> RunArgs {
        match args(list).unwrap() {
            Invocation::Run(run) => run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn help_and_version() {
        for help in ["-h", "--help", "help"] {
            assert_eq!(args(&[help]).unwrap(), Invocation::Help);
        }
        assert_eq!(args(&["run", "--help"]).unwrap(), Invocation::Help);
        for version in ["version", "--version", "-V"] {
            assert_eq!(args(&[version]).unwrap(), Invocation::Version);
        }
    }

    #[test]
    fn run_options_in_every_spelling() {
        let r = run(&[
            "run",
            "-p",
            "latency",
            "--iface",
            "p0=10.77.2.1/24",
            "--iface=p1=10.77.3.1/24",
            "--mode=dpdk",
            "--gateway",
            "10.77.2.254",
            "-n",
            "--",
            "app",
            "-p",
            "x",
        ]);
        assert_eq!(r.profile.as_deref(), Some("latency"));
        assert_eq!(r.ifaces, ["p0=10.77.2.1/24", "p1=10.77.3.1/24"]);
        assert_eq!(r.mode.as_deref(), Some("dpdk"));
        assert_eq!(r.gateway.as_deref(), Some("10.77.2.254"));
        assert!(r.dry_run);
        assert_eq!(r.command, os(&["app", "-p", "x"]));

        let r = run(&["run", "--profile=throughput", "sockperf", "sr", "--tcp"]);
        assert_eq!(r.profile.as_deref(), Some("throughput"));
        assert_eq!(r.command, os(&["sockperf", "sr", "--tcp"]));

        // "-" alone is a command (e.g. a program named so), not an option.
        assert_eq!(run(&["run", "-"]).command, os(&["-"]));
    }

    #[test]
    fn command_line_errors() {
        assert_eq!(
            args(&[]).unwrap_err(),
            "no command given (see sluice --help)"
        );
        assert_eq!(
            args(&["start"]).unwrap_err(),
            "unknown command \"start\" (expected run, version or --help)"
        );
        assert_eq!(
            args(&["run"]).unwrap_err(),
            "run needs a command: sluice run [OPTIONS] [--] CMD [ARGS...]"
        );
        assert_eq!(
            args(&["run", "--"]).unwrap_err(),
            "run needs a command: sluice run [OPTIONS] [--] CMD [ARGS...]"
        );
        assert_eq!(
            args(&["run", "--iface"]).unwrap_err(),
            "--iface needs a value (DEV=IP/PREFIX)"
        );
        assert_eq!(
            args(&["run", "-p"]).unwrap_err(),
            "-p needs a value (a profile name)"
        );
        assert_eq!(
            args(&["run", "--turbo", "app"]).unwrap_err(),
            "unknown option \"--turbo\" (see sluice --help)"
        );
        assert_eq!(
            args(&["run", "--dry-run=yes", "app"]).unwrap_err(),
            "unknown option \"--dry-run\" (see sluice --help)"
        );
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-launcher-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn preload_is_appended_once() {
        let dir = temp_dir("preload");
        let lib = dir.join(LIB_NAME);
        std::fs::write(&lib, b"").unwrap();
        let text = lib.to_str().unwrap();

        assert_eq!(with_preload(None, &lib).unwrap(), text);
        assert_eq!(with_preload(Some(OsStr::new("")), &lib).unwrap(), text);
        assert_eq!(
            with_preload(Some(OsStr::new("/a.so b.so")), &lib).unwrap(),
            OsString::from(format!("/a.so b.so:{text}"))
        );
        let already = format!("/a.so:{text}:/b.so");
        assert_eq!(
            with_preload(Some(OsStr::new(&already)), &lib).unwrap(),
            OsString::from(&already)
        );
        // The same file through a symlink is still the same library.
        let link = dir.join("link.so");
        std::os::unix::fs::symlink(&lib, &link).unwrap();
        let via_link = format!("{}", link.display());
        assert_eq!(
            with_preload(Some(OsStr::new(&via_link)), &lib).unwrap(),
            OsString::from(&via_link)
        );
        // Another build's libsluice.so is replaced in place.
        assert_eq!(
            with_preload(Some(OsStr::new("/a.so /old/libsluice.so /b.so")), &lib).unwrap(),
            OsString::from(format!("/a.so:{text}:/b.so"))
        );
        assert!(with_preload(None, Path::new("/with space/libsluice.so"))
            .unwrap_err()
            .contains("cannot go in LD_PRELOAD"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lib_is_found_in_build_tree_or_prefix() {
        let dir = temp_dir("find");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("sluice");
        let err = find_lib(&exe).unwrap_err();
        assert!(err.starts_with("libsluice.so not found ("), "{err}");
        assert!(err.ends_with("or set SLUICE_LIB"), "{err}");

        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib").join(LIB_NAME), b"").unwrap();
        assert_eq!(
            find_lib(&exe).unwrap(),
            dir.join("lib").join(LIB_NAME).canonicalize().unwrap()
        );
        // Next to the executable (target/release) wins over PREFIX/lib.
        std::fs::write(bin.join(LIB_NAME), b"").unwrap();
        assert_eq!(
            find_lib(&exe).unwrap(),
            bin.join(LIB_NAME).canonicalize().unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn env(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn var<'a>(plan: &'a Plan, name: &str) -> Option<&'a str> {
        plan.set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn precedence_flags_then_environment_then_profile() {
        let dir = temp_dir("plan");
        let lib = dir.join(LIB_NAME);
        std::fs::write(&lib, b"").unwrap();
        let exe = dir.join("sluice");
        let lib_var = ("SLUICE_LIB", lib.to_str().unwrap());

        let p = plan(
            run(&["run", "-p", "latency", "app"]),
            &env(&[lib_var]),
            &exe,
        )
        .unwrap();
        assert_eq!(var(&p, "SLUICE_SPIN_US"), Some("1000000"));
        assert_eq!(var(&p, "SLUICE_PROFILE"), Some("latency"));

        let e = env(&[lib_var, ("SLUICE_SPIN_US", "7"), ("SLUICE_MODE", "udp")]);
        let p = plan(
            run(&[
                "run",
                "-p",
                "latency",
                "--mode",
                "dpdk",
                "--iface",
                "p0=10.77.2.1/24",
                "app",
            ]),
            &e,
            &exe,
        )
        .unwrap();
        assert_eq!(
            var(&p, "SLUICE_SPIN_US"),
            Some("7"),
            "environment beats profile"
        );
        assert_eq!(
            var(&p, "SLUICE_MODE"),
            Some("dpdk"),
            "flag beats environment"
        );
        assert_eq!(var(&p, "SLUICE_IFACES"), Some("p0=10.77.2.1/24"));
        assert_eq!(p.config.mode, config::Mode::Dpdk);
        assert_eq!(p.config.spin_us, 7);

        // SLUICE_PROFILE in the environment picks the profile when -p is absent.
        let e = env(&[lib_var, ("SLUICE_PROFILE", "throughput")]);
        let p = plan(run(&["run", "app"]), &e, &exe).unwrap();
        assert_eq!(p.profile.name, "throughput");
        let p = plan(run(&["run", "-p", "latency", "app"]), &e, &exe).unwrap();
        assert_eq!(var(&p, "SLUICE_PROFILE"), Some("latency"));
        // Values an outer launcher took from its profile yield to the new -p,
        // values the user set do not.
        let outer = env(&[
            lib_var,
            ("SLUICE_PROFILE", "balanced"),
            ("SLUICE_SPIN_US", "50"),
        ]);
        let p = plan(run(&["run", "-p", "latency", "app"]), &outer, &exe).unwrap();
        assert_eq!(var(&p, "SLUICE_SPIN_US"), Some("1000000"));
        let user = env(&[
            lib_var,
            ("SLUICE_PROFILE", "balanced"),
            ("SLUICE_SPIN_US", "51"),
        ]);
        let p = plan(run(&["run", "-p", "latency", "app"]), &user, &exe).unwrap();
        assert_eq!(var(&p, "SLUICE_SPIN_US"), Some("51"));
        // Default: balanced.
        let p = plan(run(&["run", "app"]), &env(&[lib_var]), &exe).unwrap();
        assert_eq!(var(&p, "SLUICE_PROFILE"), Some("balanced"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_point_at_their_origin() {
        let dir = temp_dir("origin");
        let lib = dir.join(LIB_NAME);
        std::fs::write(&lib, b"").unwrap();
        let exe = dir.join("sluice");
        let lib_var = ("SLUICE_LIB", lib.to_str().unwrap());

        let err = plan(
            run(&["run", "--iface", "p0=10.77.2.1/33", "app"]),
            &env(&[lib_var]),
            &exe,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "SLUICE_IFACES=\"p0=10.77.2.1/33\": prefix length 33 is not in 0..=32 (from --iface)"
        );
        let err = plan(
            run(&["run", "app"]),
            &env(&[lib_var, ("SLUICE_HUGEPAGES", "yes")]),
            &exe,
        )
        .unwrap_err();
        assert_eq!(err, "SLUICE_HUGEPAGES=\"yes\": expected auto, on or off");
        let err = plan(
            run(&["run", "app"]),
            &env(&[lib_var, ("SLUICE_PROFILE", "fast")]),
            &exe,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "SLUICE_PROFILE=\"fast\": unknown profile \"fast\" (known: balanced, latency, throughput)"
        );
        let err = plan(
            run(&["run", "app"]),
            &env(&[("SLUICE_LIB", "/nonexistent/libsluice.so")]),
            &exe,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "SLUICE_LIB=\"/nonexistent/libsluice.so\": No such file or directory (os error 2)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn describe_lists_settings_and_command() {
        let dir = temp_dir("describe");
        let lib = dir.join(LIB_NAME);
        std::fs::write(&lib, b"").unwrap();
        let e = env(&[("SLUICE_LIB", lib.to_str().unwrap())]);
        let p = plan(run(&["run", "-n", "echo", "hi"]), &e, &dir.join("sluice")).unwrap();
        let text = p.describe();
        assert!(text.contains("\nSLUICE_PROFILE=balanced\n"), "{text}");
        assert!(
            text.contains(&format!("LD_PRELOAD={}\n", lib.display())),
            "{text}"
        );
        assert!(text.ends_with("exec echo hi\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
