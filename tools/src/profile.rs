//! Profiles: small files of `SLUICE_*` settings the launcher applies (`-p NAME`).
//!
//! Format: one `SLUICE_NAME=value` per line; blank lines and lines starting
//! with `#` are ignored; the value is taken verbatim after trimming spaces.

use std::path::{Path, PathBuf};

/// The profile used when neither `-p` nor `SLUICE_PROFILE` names one.
pub const DEFAULT: &str = "balanced";

/// A profile read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub path: PathBuf,
    /// Settings in file order.
    pub settings: Vec<(String, String)>,
}

/// Parses a profile's text; errors name the line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut settings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at_line = |reason: String| format!("line {}: {reason}", index + 1);
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| at_line(format!("{line:?} is not SLUICE_NAME=value")))?;
        let name = name.trim();
        if !name.starts_with("SLUICE_") {
            return Err(at_line(format!(
                "{name:?} is not a SLUICE_* variable (profiles set only sluice settings)"
            )));
        }
        settings.push((name.to_string(), value.trim().to_string()));
    }
    Ok(settings)
}

/// Profile names are file stems: letters, digits, '-' and '_' (no paths).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where profiles are looked for, first match wins: an installed prefix
/// (`PREFIX/bin/sluice` -> `PREFIX/share/sluice/profiles`), the build tree the
/// executable sits in (`target/{release,debug}/sluice` -> `tools/profiles`),
/// and the source tree this launcher was built from.
pub fn search_dirs(exe: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin) = exe.parent() {
        if let Some(prefix) = bin.parent() {
            dirs.push(prefix.join("share/sluice/profiles"));
            // target/release -> the workspace root is two levels up.
            if let Some(root) = prefix.parent() {
                dirs.push(root.join("tools/profiles"));
            }
        }
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    if !dirs.contains(&source) {
        dirs.push(source);
    }
    dirs
}

/// Finds and reads profile `name` in `dirs`.
pub fn load(name: &str, dirs: &[PathBuf]) -> Result<Profile, String> {
    if !is_valid_name(name) {
        return Err(format!(
            "profile name {name:?} is not valid (letters, digits, '-' and '_')"
        ));
    }
    let Some(path) = dirs
        .iter()
        .map(|dir| dir.join(format!("{name}.conf")))
        .find(|path| path.is_file())
    else {
        let known = available(dirs);
        let known = if known.is_empty() {
            format!(
                "no profiles found in {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("known: {}", known.join(", "))
        };
        return Err(format!("unknown profile {name:?} ({known})"));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("profile {name} ({}): {e}", path.display()))?;
    let settings = parse(&text).map_err(|e| format!("profile {name} ({}) {e}", path.display()))?;
    Ok(Profile {
        name: name.to_string(),
        path,
        settings,
    })
}

/// Names of the profiles found in `dirs`, sorted, without duplicates.
pub fn available(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "conf" {
                return None;
            }
            let stem = path.file_stem()?.to_str()?;
            is_valid_name(stem).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<PathBuf> {
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")]
    }

    #[test]
    fn parses_settings_comments_and_blank_lines() {
        let text =
            "# latency\n\n  SLUICE_SPIN_US = 100  \nSLUICE_LOG=info,sluice=debug\n   # done\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                ("SLUICE_SPIN_US".to_string(), "100".to_string()),
                ("SLUICE_LOG".to_string(), "info,sluice=debug".to_string()),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(
            parse("# x\nSLUICE_SPIN_US 100\n").unwrap_err(),
            "line 2: \"SLUICE_SPIN_US 100\" is not SLUICE_NAME=value"
        );
        assert_eq!(
            parse("LD_PRELOAD=/x.so\n").unwrap_err(),
            "line 1: \"LD_PRELOAD\" is not a SLUICE_* variable (profiles set only sluice settings)"
        );
    }

    #[test]
    fn names_are_plain_words() {
        assert!(is_valid_name("latency"));
        assert!(is_valid_name("my-profile_2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("../latency"));
        assert!(!is_valid_name("a.conf"));
    }

    #[test]
    fn shipped_profiles_load_and_are_valid_configuration() {
        let dirs = shipped();
        assert_eq!(available(&dirs), ["balanced", "latency", "throughput"]);
        for name in available(&dirs) {
            let profile = load(&name, &dirs).unwrap();
            assert!(!profile.settings.is_empty(), "{name} sets something");
            let config = sluice_stack::config::Config::from_vars(profile.settings.clone())
                .unwrap_or_else(|e| panic!("profile {name}: {e}"));
            assert_eq!(
                config.mode,
                sluice_stack::config::Mode::Udp,
                "profiles leave the mode alone"
            );
        }
    }

    #[test]
    fn shipped_spin_budgets_are_ordered() {
        let dirs = shipped();
        let spin = |name: &str| {
            let profile = load(name, &dirs).unwrap();
            sluice_stack::config::Config::from_vars(profile.settings)
                .unwrap()
                .spin_us
        };
        assert!(spin("latency") > spin("throughput"));
        assert!(spin("throughput") > spin("balanced"));
        assert_eq!(
            spin(DEFAULT),
            sluice_stack::config::DEFAULT_SPIN_US,
            "the default profile matches libsluice.so loaded without the launcher"
        );
    }

    #[test]
    fn unknown_profile_lists_known_ones() {
        assert_eq!(
            load("fast", &shipped()).unwrap_err(),
            "unknown profile \"fast\" (known: balanced, latency, throughput)"
        );
        assert_eq!(
            load("../x", &shipped()).unwrap_err(),
            "profile name \"../x\" is not valid (letters, digits, '-' and '_')"
        );
        let nowhere = vec![PathBuf::from("/nonexistent/sluice/profiles")];
        assert_eq!(
            load("latency", &nowhere).unwrap_err(),
            "unknown profile \"latency\" (no profiles found in /nonexistent/sluice/profiles)"
        );
    }

    #[test]
    fn search_order_prefers_installed_then_build_tree() {
        let dirs = search_dirs(Path::new("/opt/sluice/bin/sluice"));
        assert_eq!(dirs[0], PathBuf::from("/opt/sluice/share/sluice/profiles"));
        let dirs = search_dirs(Path::new("/src/sluice/target/release/sluice"));
        assert_eq!(dirs[1], PathBuf::from("/src/sluice/tools/profiles"));
        assert_eq!(
            dirs.last().unwrap(),
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
        );
    }
}
