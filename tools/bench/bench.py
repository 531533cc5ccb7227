#!/usr/bin/env python3
"""sluice benchmarks: every contender measured in the same run, reported as ratios.

Sections so far:
  passthrough   what libsluice.so costs a process whose sockets all stay in the
                kernel: sockperf UDP ping-pong on loopback with and without the
                preload, and a system-call-heavy loop (tools/bench/syscalls.c).

Rounds alternate plain and preloaded runs so that drift on a shared machine
hits both sides alike; the median of the rounds is reported. Client and server
are pinned (server CPU 1, client CPU 0) the same way for every contender.
Results go to bench-results/results.json; the table goes to stdout.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
RESULTS = ROOT / "bench-results"


def fail(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def need(tool, package):
    if shutil.which(tool) is None:
        fail(f"{tool} not found: apt-get install {package} (or run make deps)")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def preload_env():
    lib = RELEASE / "libsluice.so"
    if not lib.exists():
        fail(f"{lib} is missing: run make build")
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(lib)
    return env


PCT = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
AVG = re.compile(r"avg-latency=([\d.]+)")


def sockperf_udp_pingpong(env, seconds, size=64):
    """One sockperf UDP ping-pong on loopback; returns {avg, p50, p99, p999} in us."""
    port = free_udp_port()
    server = subprocess.Popen(
        ["taskset", "-c", "1", "sockperf", "sr", "-i", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = subprocess.run(
            ["taskset", "-c", "0", "sockperf", "pp", "-i", "127.0.0.1", "-p", str(port),
             "-t", str(seconds), "-m", str(size)],
            env=env, capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    pct = {float(p): float(v) for p, v in PCT.findall(out)}
    avg = AVG.search(out)
    if not avg or 50.0 not in pct:
        fail(f"could not parse sockperf output:\n{out}")
    return {"avg": float(avg.group(1)), "p50": pct[50.0], "p99": pct[99.0],
            "p999": pct[99.9]}


def syscall_loop(env, binary, iters):
    out = subprocess.run(["taskset", "-c", "0", str(binary), str(iters)], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        fail(f"syscall loop failed ({out.returncode}): {out.stderr}")
    return float(out.stdout.strip())


def build_syscall_loop():
    src = ROOT / "tools" / "bench" / "syscalls.c"
    binary = RESULTS / "syscalls"
    RESULTS.mkdir(exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", str(binary), str(src)], check=True)
    return binary


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def passthrough(quick):
    need("sockperf", "sockperf")
    need("taskset", "util-linux")
    rounds, seconds, iters = (2, 2, 50000) if quick else (5, 5, 300000)
    plain_env, sluice_env = dict(os.environ), preload_env()
    plain, sluice = [], []
    for _ in range(rounds):
        plain.append(sockperf_udp_pingpong(plain_env, seconds))
        sluice.append(sockperf_udp_pingpong(sluice_env, seconds))
    binary = build_syscall_loop()
    loop_plain, loop_sluice = [], []
    for _ in range(rounds):
        loop_plain.append(syscall_loop(plain_env, binary, iters))
        loop_sluice.append(syscall_loop(sluice_env, binary, iters))
    result = {
        "sockperf_udp_pp_loopback_64B_us": {
            "kernel": {k: median_of(plain, k) for k in ("avg", "p50", "p99", "p999")},
            "passthrough": {k: median_of(sluice, k) for k in ("avg", "p50", "p99", "p999")},
            "rounds": rounds, "seconds": seconds,
        },
        "syscall_loop_ns_per_iter": {
            "kernel": statistics.median(loop_plain),
            "passthrough": statistics.median(loop_sluice),
            "rounds": rounds, "iterations": iters,
        },
    }
    pp = result["sockperf_udp_pp_loopback_64B_us"]
    loop = result["syscall_loop_ns_per_iter"]
    rows = [
        ("UDP ping-pong loopback 64 B p50 (us)", pp["kernel"]["p50"], pp["passthrough"]["p50"], 1.03),
        ("UDP ping-pong loopback 64 B p99 (us)", pp["kernel"]["p99"], pp["passthrough"]["p99"], None),
        ("syscall loop (ns/iteration)", loop["kernel"], loop["passthrough"], 1.05),
    ]
    return result, rows


def print_table(title, rows):
    print(f"\n{title}")
    print(f"{'measure':<42}{'kernel':>10}{'sluice':>10}{'ratio':>8}  target")
    for name, kernel, sluice, target in rows:
        ratio = sluice / kernel if kernel else float("nan")
        verdict = ""
        if target is not None:
            verdict = f"<= {target:.2f} " + ("met" if ratio <= target else "NOT met")
        print(f"{name:<42}{kernel:>10.2f}{sluice:>10.2f}{ratio:>8.3f}  {verdict}")


def demo():
    need("sockperf", "sockperf")
    need("taskset", "util-linux")
    print("sockperf UDP ping-pong, 64 B, loopback, 3 s each (server CPU 1, client CPU 0)")
    print("sluice's data path is not there yet: this shows what interposition costs.\n")
    kernel = sockperf_udp_pingpong(dict(os.environ), 3)
    sluice = sockperf_udp_pingpong(preload_env(), 3)
    print(f"{'latency (us)':<14}{'kernel':>10}{'sluice':>10}{'ratio':>8}")
    for k in ("avg", "p50", "p99", "p999"):
        print(f"{k:<14}{kernel[k]:>10.2f}{sluice[k]:>10.2f}{sluice[k] / kernel[k]:>8.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes")
    ap.add_argument("--demo", action="store_true",
                    help="make demo: one short side-by-side run, no JSON")
    args = ap.parse_args()
    if args.demo:
        demo()
        return
    started = time.time()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.uname().nodename} {os.uname().release}, {os.cpu_count()} cores",
        "quick": args.quick,
    }
    result, rows = passthrough(args.quick)
    report["passthrough"] = result
    print_table("Pass-through overhead (nothing offloaded; sluice = under libsluice.so)", rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'results.json'} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
