//! `tools/sluice-lab`: up is idempotent, the topologies have the promised
//! shape, and down leaves nothing behind. Needs root: fails loudly without it.
//!
//! The test builds a private lab (namespace prefix `slt-`) so that it never
//! disturbs the shared `sl-` lab other tests may be using.

use std::path::PathBuf;
use std::process::Command;

fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sluice-lab")
}

const PREFIX: &str = "slt-";

fn require_root() {
    assert_eq!(
        sh("id -u").trim(),
        "0",
        "the lab test needs root (network namespaces); run `make test` as root"
    );
}

fn ns(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn lab(args: &[&str]) -> String {
    let out = Command::new(lab_script())
        .env("SLUICE_LAB_PREFIX", PREFIX)
        .args(args)
        .output()
        .expect("run tools/sluice-lab");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sluice-lab {args:?} failed:\n{text}");
    text
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lab_namespaces() -> Vec<String> {
    sh("ip netns list")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

fn in_ns(ns: &str, cmd: &str) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .expect("ip netns exec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn assert_nothing_left() {
    assert!(
        lab_namespaces().is_empty(),
        "namespaces left: {:?}",
        lab_namespaces()
    );
    let links = sh("ip -br link show");
    for name in ["h1p0", "h2p0", "h3p0", "h1p1", "h2p1", "br0"] {
        assert!(
            !links.lines().any(|l| l.starts_with(name)),
            "link {name} left in the root namespace:\n{links}"
        );
    }
    let huge = sh("ls /dev/hugepages 2>/dev/null");
    assert!(huge.trim().is_empty(), "hugepage files left: {huge}");
    assert!(
        !std::path::Path::new(&format!("/run/sluice-lab/{PREFIX}")).exists(),
        "lab state directory left"
    );
}

#[test]
fn lab_up_twice_down_twice_leaves_nothing() {
    require_root();
    // Whatever an earlier test left, start from nothing.
    lab(&["down"]);
    assert_nothing_left();

    for round in 0..2 {
        lab(&["up", "--topology", "ha"]);
        lab(&["up", "--topology", "ha"]);
        let mut names = lab_namespaces();
        names.sort();
        let want: Vec<String> = ["h1", "h2", "h3", "sw0", "sw1"].map(ns).into();
        assert_eq!(names, want, "round {round}");

        // Kernel addresses as promised, data addresses nowhere in the kernel.
        let (_, h1) = in_ns(&ns("h1"), "ip -4 -br addr show");
        assert!(h1.contains("10.77.1.1/24"), "h1 addresses: {h1}");
        assert!(!h1.contains("10.77.2.") && !h1.contains("10.77.3."), "{h1}");
        let (_, h3) = in_ns(&ns("h3"), "ip -4 -br addr show");
        assert!(
            h3.contains("10.77.1.3/24") && h3.contains("10.77.2.3/24"),
            "{h3}"
        );
        for host in [ns("h1"), ns("h2")] {
            for port in ["p0", "p1"] {
                let (ok, _) = in_ns(&host, &format!("ip link show {port} up | grep -q UP"));
                assert!(ok, "{host} {port} is not up");
            }
        }
        // The switch forwards: h1 reaches h2 and h3 over sw0.
        for dst in ["10.77.1.2", "10.77.1.3"] {
            let (ok, out) = in_ns(&ns("h1"), &format!("ping -c 1 -W 2 {dst}"));
            assert!(ok, "h1 cannot ping {dst}: {out}");
        }
        // Checksum offloads are off on lab veths: frames carry full checksums.
        let (_, k) = in_ns(&ns("h2"), "ethtool -k p0");
        assert!(k.contains("tx-checksumming: off"), "{k}");

        // pair is ha without the second switch.
        lab(&["up", "--topology", "pair"]);
        assert!(!lab_namespaces().contains(&ns("sw1")));
        let (has_p1, _) = in_ns(&ns("h1"), "ip link show p1");
        assert!(!has_p1, "pair topology still has p1 on h1");

        lab(&["down"]);
        lab(&["down"]);
        assert_nothing_left();
    }
}

#[test]
fn lab_rejects_bad_arguments() {
    let out = Command::new(lab_script())
        .args(["up", "--topology", "ring"])
        .output()
        .expect("run sluice-lab");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown topology 'ring'"), "{err}");
    let out = Command::new(lab_script())
        .arg("sideways")
        .output()
        .expect("run sluice-lab");
    assert!(!out.status.success());
}
