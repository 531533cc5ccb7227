//! Compiles the C probe programs the tests run under the preload.
//!
//! They are C on purpose: the calls must go through glibc's PLT exactly as an
//! unmodified application's do, and `-D_FORTIFY_SOURCE=2` must make glibc emit
//! the `_chk` variants (`__read_chk`, `__recv_chk`, ...) that the preload hooks.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn compile(name: &str, extra: &[&str]) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let src = format!("c/{name}.c");
    let shared = extra.contains(&"-shared");
    let bin = out_dir.join(if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    });
    let compiler = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&compiler)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-D_GNU_SOURCE",
        ])
        .args(extra)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args(if shared { &["-ldl"][..] } else { &[] })
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(status.success(), "compiling {src} failed");
    println!("cargo:rerun-if-changed={src}");
    let var = format!(
        "SHIM_{}_{}",
        name.to_uppercase(),
        if shared { "SO" } else { "BIN" }
    );
    println!("cargo:rustc-env={var}={}", bin.display());
}

fn main() {
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-changed=c/transcript.h");
    // -U first: some toolchains predefine _FORTIFY_SOURCE and warn on redefinition.
    compile("conform", &["-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2"]);
    compile("stress", &["-pthread"]);
    compile("udp_probe", &[]);
    compile("canary", &["-shared", "-fPIC"]);
}
