//! `sluice`: the launcher. `sluice run [OPTIONS] -- CMD` checks the whole
//! configuration, then exec()s CMD with libsluice.so preloaded.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::process::{exit, Command};

use sluice_tools::launcher::{self, Invocation, USAGE};

/// Bad configuration or command line.
const EXIT_CONFIG: i32 = 2;
/// Shell conventions for a command that cannot be run.
const EXIT_NOT_EXECUTABLE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

fn fail(message: &str, status: i32) -> ! {
    eprintln!("sluice: {message}");
    exit(status)
}

fn main() {
    let run = match launcher::parse_args(std::env::args_os().skip(1)) {
        Ok(Invocation::Help) => {
            print!("{USAGE}");
            return;
        }
        Ok(Invocation::Version) => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Ok(Invocation::Run(run)) => run,
        Err(message) => fail(&message, EXIT_CONFIG),
    };
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| fail(&format!("cannot locate the launcher: {e}"), EXIT_CONFIG));
    let env: Vec<_> = std::env::vars_os().collect();
    let dry_run = run.dry_run;
    let plan = launcher::plan(run, &env, &exe).unwrap_or_else(|e| fail(&e, EXIT_CONFIG));
    if dry_run {
        print!("{}", plan.describe());
        return;
    }
    // exec() only returns on failure; on success the command's status is ours.
    let error = Command::new(&plan.program)
        .args(&plan.args)
        .envs(plan.set.iter().map(|(k, v)| (k, v)))
        .exec();
    let program = plan.program.to_string_lossy();
    match error.kind() {
        ErrorKind::NotFound => fail(&format!("{program}: command not found"), EXIT_NOT_FOUND),
        _ => fail(&format!("{program}: {error}"), EXIT_NOT_EXECUTABLE),
    }
}
