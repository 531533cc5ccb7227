//! sluice-stat: what the sluice stacks on this host are doing.
//!
//!   sluice-stat                 the processes that run a stack
//!   sluice-stat PID             a snapshot of one stack
//!   sluice-stat PID -w [SECS]   refreshed every SECS (default 1), like top
//!   sluice-stat PID --json      the snapshot as JSON, for scripts

use std::process::ExitCode;
use std::time::Duration;

use sluice_tools::stat;

const USAGE: &str = "usage: sluice-stat [PID [-w [SECS]] [--json]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mut pid = None;
    let mut json = false;
    let mut watch = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--json" => json = true,
            "-w" | "--watch" => {
                let secs = args.get(i + 1).and_then(|s| s.parse::<f64>().ok());
                if secs.is_some() {
                    i += 1;
                }
                watch = Some(secs.unwrap_or(1.0).max(0.1));
            }
            a => match a.parse::<u32>() {
                Ok(p) if pid.is_none() => pid = Some(p),
                _ => {
                    eprintln!("sluice-stat: unexpected argument {a:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
        i += 1;
    }
    let Some(pid) = pid else {
        let pids = stat::list();
        if json {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("[{}]", list.join(", "));
        } else if pids.is_empty() {
            println!("no sluice stacks running");
        } else {
            for pid in pids {
                let mode = stat::read(pid)
                    .ok()
                    .and_then(|s| s.of_kind("process").next()?.get("mode").map(str::to_string))
                    .unwrap_or_else(|| "?".into());
                let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.replace('\0', " ").trim().to_string())
                    .unwrap_or_default();
                println!("{pid:>8}  {mode:<5}  {cmd}");
            }
        }
        return ExitCode::SUCCESS;
    };
    loop {
        match stat::read(pid) {
            Ok(snapshot) => {
                if watch.is_some() && !json {
                    print!("\x1b[2J\x1b[H");
                }
                if json {
                    println!("{}", snapshot.to_json());
                } else {
                    print!("{}", snapshot.to_text());
                }
            }
            Err(e) => {
                eprintln!("sluice-stat: {e}");
                return ExitCode::from(1);
            }
        }
        match watch {
            Some(secs) => std::thread::sleep(Duration::from_secs_f64(secs)),
            None => return ExitCode::SUCCESS,
        }
    }
}
