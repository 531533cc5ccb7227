//! Finds the system DPDK with pkg-config, compiles the inline-function shim
//! and generates bindings for the small part of DPDK that sluice uses.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// DPDK 22.11 is the LTS release Debian 12 ships; older APIs differ.
const MIN_DPDK: &str = "22.11";

/// Only the libraries whose symbols we call. DPDK's drivers (PMDs) are not
/// linked: EAL loads them as plugins from its driver directory at run time.
const DPDK_LIBS: &[&str] = &["rte_ethdev", "rte_mbuf", "rte_mempool", "rte_eal"];

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .cargo_metadata(false)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!(
                "dpdk-sys needs libdpdk >= {MIN_DPDK} (Debian: apt-get install libdpdk-dev): {e}"
            )
        });

    // The pkg-config crate keeps only -I and -D; DPDK's cflags also carry
    // `-include rte_config.h` and `-march=...`, which its headers need.
    let cflags = raw_cflags();

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").opt_level(2).warnings(true);
    for flag in split_cflags(&cflags) {
        shim.flag(&flag);
    }
    shim.compile("sluice_dpdk_shim");

    for path in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for lib in DPDK_LIBS {
        assert!(
            dpdk.libs.iter().any(|l| l == lib),
            "libdpdk's pkg-config file does not list {lib}"
        );
        // Dynamic, so EAL can load PMDs from pmds-23.0 as plugins.
        println!("cargo:rustc-link-lib=dylib={lib}");
    }

    let bindings = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(split_cflags(&cflags))
        .clang_arg("-Isrc")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_eal_(init|cleanup|hotplug_add|hotplug_remove|get_runtime_dir)")
        .allowlist_function("rte_eth_dev_(count_avail|get_port_by_name|configure|info_get|socket_id|start|stop|close|default_mac_addr_set)")
        .allowlist_function("rte_eth_(rx|tx)_queue_setup")
        .allowlist_function("rte_eth_(macaddr_get|link_get_nowait|promiscuous_enable|promiscuous_disable|promiscuous_get|stats_get)")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count)")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_openlog_stream")
        .allowlist_function("sluice_rte_.*")
        .allowlist_type("rte_eth_(conf|dev_info|link|stats)")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RTE_ETH_LINK_(UP|DOWN|FULL_DUPLEX)")
        .allowlist_var("RTE_ETH_SPEED_NUM_(NONE|UNKNOWN)")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("SOCKET_ID_ANY")
        // We only ever hold pointers to these; the shim reads their fields,
        // so their (cache-aligned, bitfield-heavy) layout never matters here.
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        // DPDK's doc comments would become (failing) doctests.
        .generate_comments(false)
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen could not generate DPDK bindings");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("could not write DPDK bindings");
}

fn raw_cflags() -> String {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("could not run pkg-config");
    assert!(
        out.status.success(),
        "pkg-config --cflags libdpdk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pkg-config output is not UTF-8")
}

/// Splits cflags into arguments (DPDK's contain no quoted spaces).
fn split_cflags(cflags: &str) -> Vec<String> {
    cflags.split_whitespace().map(str::to_owned).collect()
}
