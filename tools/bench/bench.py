#!/usr/bin/env python3
"""sluice benchmarks: every contender measured in the same run, reported as ratios.

Sections so far:
  passthrough   what libsluice.so costs a process whose sockets all stay in the
                kernel: sockperf UDP ping-pong on loopback with and without the
                preload, and a system-call-heavy loop (tools/bench/syscalls.c).
  lab UDP       sockperf between lab hosts sl-h1 (client) and sl-h2 (server)
                over veth and a bridge (docs/lab.md): the kernel (10.77.1.1 ->
                10.77.1.2), sluice over DPDK af_packet and af_xdp (data IPs
                10.77.2.1 -> 10.77.2.2), and sluice's kernel-UDP mode (datagrams
                pass through to the kernel in that mode, so it runs on the
                kernel IPs). UDP ping-pong 64 B and 1024 B (one-way latency as
                sockperf reports it: avg, p50, p99, p99.9) and UDP throughput
                64 B and 1472 B (messages RECEIVED per second: the server's
                "Total N messages received" over the client's test duration).
                Plus a raw DPDK reference: dpdk-testpmd txonly on sl-h1 p0.
                Needs root (namespaces); holds /run/sluice-lab/dpdk-p0.lock.

Rounds alternate plain and preloaded runs so that drift on a shared machine
hits both sides alike; the median of the rounds is reported. Client and server
are pinned (server CPU 1, client CPU 0) the same way for every contender.
Results go to bench-results/results.json and a picture to
bench-results/lab_udp.svg; the tables go to stdout.
"""

import argparse
import fcntl
import json
import math
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
    """make demo: an unmodified sockperf UDP ping-pong between two lab hosts, through the
    kernel and through sluice (DPDK af_packet), side by side."""
    need("sockperf", "sockperf")
    need("taskset", "util-linux")
    if os.geteuid() != 0:
        sys.exit("make demo needs root (network namespaces): run it with sudo")
    seconds = 3
    print(f"sockperf UDP ping-pong, 64 B, {seconds} s each, sl-h1 -> sl-h2 over veth and a bridge "
          f"(server CPU {SERVER_CPU}, client CPU {CLIENT_CPU})")
    print("the same unmodified sockperf binary: plain (kernel UDP), then under sluice "
          "(LD_PRELOAD, its own UDP/IP over DPDK af_packet)\n")
    contenders = lab_contenders()
    brought_up = lab_up()
    tmp = RESULTS / "demo-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    LabServer.ready_s = 20
    results = {}
    P0_LOCK.parent.mkdir(parents=True, exist_ok=True)
    port = 16000 + os.getpid() % 1000
    try:
        with open(P0_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for name in ("kernel", "sluice_af_packet"):
                port += 1
                try:
                    server = LabServer(contenders[name], port, tmp)
                    try:
                        results[name] = lab_pingpong(contenders[name], port, 64, seconds, server)
                    finally:
                        server.stop()
                except ContenderFailed as e:
                    results[name] = e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if brought_up:
            subprocess.run([str(LAB_SCRIPT), "down"], stdout=subprocess.DEVNULL)
    failed = {n: r for n, r in results.items() if isinstance(r, ContenderFailed)}
    if failed:
        for n, e in failed.items():
            print(f"{n}: failed: {e}")
        sys.exit(1)
    kernel, sluice = results["kernel"], results["sluice_af_packet"]
    print(f"{'one-way latency (us)':<22}{'kernel':>10}{'sluice':>10}{'ratio':>8}")
    for k in ("avg", "p50", "p99", "p999"):
        print(f"{k:<22}{kernel[k]:>10.2f}{sluice[k]:>10.2f}{sluice[k] / kernel[k]:>8.3f}")
    print(f"\nsluice answers in {sluice['p50'] / kernel['p50']:.2f}x the kernel's median time. "
          "More: sudo make bench")


# ---------------------------------------------------------------------------
# Lab UDP: the kernel against sluice between two lab hosts.

LAB_SCRIPT = ROOT / "tools" / "sluice-lab"
P0_LOCK = Path("/run/sluice-lab/dpdk-p0.lock")
CLIENT_NS, SERVER_NS, KERNEL_HOST = "sl-h1", "sl-h2", "sl-h3"
SERVER_CPU, CLIENT_CPU = "1", "0"
LAB_PP_SIZES = (64, 1024)
# The sparse ping-pong: 64 B at this many messages per second (10 ms apart).
SPARSE_MPS = 100
SPARSE = f"{SPARSE_MPS}mps_64"  # key pp_100mps_64B
LAB_TP_SIZES = (64, 1472)


class ContenderFailed(Exception):
    """One contender could not run one measurement; the bench goes on."""

    def __init__(self, msg):
        super().__init__(" ".join(msg.split()))


class ServerFailed(ContenderFailed):
    """The contender's server did not start: its other measurements are skipped."""


def lab_contenders():
    """name -> how it runs: IPs, environment, and whether it offloads."""
    lib = str(RELEASE / "libsluice.so")

    def dpdk(backend, ip):
        return {"LD_PRELOAD": lib, "SLUICE_MODE": "dpdk", "SLUICE_IFACES": f"p0={ip}/24",
                "SLUICE_DPDK_BACKEND": backend}
    return {
        "kernel": {"client_ip": "10.77.1.1", "server_ip": "10.77.1.2",
                   "client_env": {}, "server_env": {}, "offloaded": False,
                   "label": "kernel UDP"},
        "sluice_af_packet": {"client_ip": "10.77.2.1", "server_ip": "10.77.2.2",
                             "client_env": dpdk("af_packet", "10.77.2.1"),
                             "server_env": dpdk("af_packet", "10.77.2.2"), "offloaded": True,
                             "label": "sluice af_packet"},
        "sluice_af_xdp": {"client_ip": "10.77.2.1", "server_ip": "10.77.2.2",
                          "client_env": dpdk("af_xdp", "10.77.2.1"),
                          "server_env": dpdk("af_xdp", "10.77.2.2"), "offloaded": True,
                          "label": "sluice af_xdp"},
        # Datagram sockets pass through to the kernel in udp mode: same IPs as the kernel.
        "sluice_udp_mode": {"client_ip": "10.77.1.1", "server_ip": "10.77.1.2",
                            "client_env": {"LD_PRELOAD": lib, "SLUICE_MODE": "udp"},
                            "server_env": {"LD_PRELOAD": lib, "SLUICE_MODE": "udp"},
                            "offloaded": False, "label": "sluice --mode udp (pass-through)"},
    }


def ns_cmd(ns, cpu, env, argv):
    """ip netns exec NS [taskset -c CPU] env VARS argv: every wrapper execs,
    so the PID is the program's, and the preload reaches the program only."""
    cmd = ["ip", "netns", "exec", ns]
    if cpu is not None:
        cmd += ["taskset", "-c", cpu]
    return cmd + ["env"] + [f"{k}={v}" for k, v in env.items()] + argv


def clean_env():
    """Our environment minus LD_PRELOAD and SLUICE_*: only what a contender sets applies."""
    return {k: v for k, v in os.environ.items()
            if k != "LD_PRELOAD" and not k.startswith("SLUICE_")}


def ns_has_port(ns, dev="p0"):
    return subprocess.run(["ip", "-n", ns, "link", "show", dev], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def lab_up():
    """Brings the lab up when it is missing; returns True if we did (so we take it down)."""
    if all(ns_has_port(h) for h in (CLIENT_NS, SERVER_NS, KERNEL_HOST)):
        return False
    subprocess.run([str(LAB_SCRIPT), "up"], check=True, stdout=subprocess.DEVNULL)
    return True


def udp_bound(ns, ip, port):
    octets = [int(o) for o in ip.split(".")]
    local = "%02X%02X%02X%02X:%04X" % (octets[3], octets[2], octets[1], octets[0], port)
    table = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/udp"],
                           capture_output=True, text=True).stdout
    return any(len(f) > 1 and f[1] == local for f in (l.split() for l in table.splitlines()))


def pings(ip):
    return subprocess.run(["ip", "netns", "exec", KERNEL_HOST, "ping", "-c", "1", "-W", "1", "-q",
                           ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class LabServer:
    """sockperf server in the server namespace, pinned; stopped with SIGINT
    (sockperf then prints its received total), killed by PID if it lingers."""

    # Seconds a server gets to become reachable (a hang guard; DPDK starts in ~2 s).
    ready_s = 20

    def __init__(self, c, port, tmp):
        self.out_path = tmp / f"server-{port}.out"
        self.out = open(self.out_path, "w")
        argv = ["sockperf", "sr", "-i", c["server_ip"], "-p", str(port)]
        self.proc = subprocess.Popen(ns_cmd(SERVER_NS, SERVER_CPU, c["server_env"], argv),
                                     env=clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + self.ready_s
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(f"server exited ({self.proc.returncode}): "
                                      + self.text().strip()[-300:])
            # An offloaded server's data IP is not in the kernel: wait until its stack answers.
            if (pings(c["server_ip"]) if c["offloaded"] else
                    udp_bound(SERVER_NS, c["server_ip"], port)):
                break
            if time.time() > deadline:
                self.stop()
                raise ServerFailed(f"server not reachable within {self.ready_s} s: "
                                      + self.text().strip()[-300:])
            time.sleep(0.1)

    def text(self):
        if not self.out.closed:
            self.out.flush()
        return strip_ansi(self.out_path.read_text(errors="replace"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            # sockperf prints its totals from the signal handler, then exits;
            # should it linger once the totals are out, it gets a moment, then
            # SIGKILL (a benchmark must end whatever happens).
            deadline = time.time() + 5
            while self.proc.poll() is None and time.time() < deadline:
                text = self.text()
                if "messages received" in text or "No messages were received" in text:
                    deadline = min(deadline, time.time() + 0.3)
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        if not self.out.closed:
            self.out.close()
        return self.text()


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def lab_client(c, mode, port, size, seconds, extra=()):
    argv = ["sockperf", mode, "-i", c["server_ip"], "-p", str(port), "-t", str(seconds),
            "-m", str(size), *extra]
    try:
        out = subprocess.run(ns_cmd(CLIENT_NS, CLIENT_CPU, c["client_env"], argv), env=clean_env(),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=seconds + 40)
    except subprocess.TimeoutExpired:
        raise ContenderFailed(f"sockperf {mode} did not finish within {seconds + 40} s")
    text = strip_ansi(out.stdout + out.stderr)
    if out.returncode != 0 or "ERROR" in text:
        raise ContenderFailed(f"sockperf {mode} failed ({out.returncode}): "
                              + text.strip()[-300:])
    return text


def lab_pingpong(c, port, size, seconds, server, extra=()):
    text = lab_client(c, "pp", port, size, seconds, extra)
    pct = {float(p): float(v) for p, v in PCT.findall(text)}
    avg = AVG.search(text)
    dropped = re.search(r"# dropped messages = (\d+)", text)
    if not avg or not {50.0, 99.0, 99.9} <= pct.keys():
        raise ContenderFailed("no latency summary: " + text.strip()[-300:])
    if server.proc.poll() is not None:
        raise ContenderFailed(f"server exited ({server.proc.returncode}) during the run")
    return {"avg": float(avg.group(1)), "p50": pct[50.0], "p99": pct[99.0], "p999": pct[99.9],
            "dropped": int(dropped.group(1)) if dropped else None}


def lab_pingpongs(c, port, seconds, tmp):
    """Every ping-pong size against one server: [(size, result or ContenderFailed)]."""
    try:
        server = LabServer(c, port, tmp)
    except ContenderFailed as e:
        return [(size, e) for size in (*LAB_PP_SIZES, SPARSE)]
    out = []
    try:
        for size in LAB_PP_SIZES:
            try:
                out.append((size, lab_pingpong(c, port, size, seconds, server)))
            except ContenderFailed as e:
                out.append((size, e))
        # Sparse traffic: both ends sleep between messages, so this measures how promptly
        # a sleeping receiver wakes (a spinning one never gets to sleep at full rate).
        try:
            out.append((SPARSE, lab_pingpong(c, port, 64, seconds, server,
                                             ("--mps", str(SPARSE_MPS)))))
        except ContenderFailed as e:
            out.append((SPARSE, e))
    finally:
        server.stop()
    return out


def lab_throughput(c, port, size, seconds, tmp):
    server = LabServer(c, port, tmp)
    try:
        text = lab_client(c, "tp", port, size, seconds)
    finally:
        server_text = server.stop()
    sent = re.search(r"Total of (\d+) messages sent in ([\d.]+) sec", text)
    received = re.search(r"Total (\d+) messages received", server_text)
    if not sent or not received:
        raise ContenderFailed("no sent/received totals: " + (text + server_text).strip()[-300:])
    duration = float(sent.group(2))
    return {"received_per_s": int(received.group(1)) / duration,
            "sent_per_s": int(sent.group(1)) / duration,
            "received": int(received.group(1)), "sent": int(sent.group(1)),
            "seconds": duration}


def testpmd_txonly(backend, seconds):
    """Raw DPDK: dpdk-testpmd txonly, 64 B, on sl-h1 p0; median Tx-pps of its
    per-second statistics. Frames go to an unused MAC and 10.77.2.99."""
    if shutil.which("dpdk-testpmd") is None:
        raise ContenderFailed("dpdk-testpmd not found: apt-get install dpdk")
    vdev = (f"net_af_packet0,iface=p0" if backend == "af_packet"
            else "net_af_xdp0,iface=p0,start_queue=0,queue_count=1")
    # EAL start and port probe take about 2 s before the first statistics.
    argv = ["timeout", "-s", "INT", str(seconds + 3), "dpdk-testpmd", "--in-memory", "--no-pci",
            f"--file-prefix=bench-testpmd-{os.getpid()}", f"--vdev={vdev}", "-l", "0-1",
            "--log-level=error", "--", "--forward-mode=txonly", "--txpkts=64",
            "--stats-period=1", "--eth-peer=0,02:00:00:77:02:99", "--tx-ip=10.77.2.1,10.77.2.99"]
    try:
        out = subprocess.run(ns_cmd(CLIENT_NS, None, {}, argv), env=clean_env(),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise ContenderFailed("dpdk-testpmd did not stop")
    rates = [int(r) for r in re.findall(r"Tx-pps:\s+(\d+)", out.stdout)]
    rates = [r for r in rates if r > 0]
    if not rates:
        raise ContenderFailed("no Tx-pps from dpdk-testpmd: " + (out.stdout + out.stderr)[-300:])
    return {"tx_pps": statistics.median(rates), "samples": len(rates)}


def lab_udp(quick):
    """Runs every contender; a failure is recorded per contender and measurement."""
    need("sockperf", "sockperf")
    need("taskset", "util-linux")
    if os.geteuid() != 0:
        return {"error": "needs root (network namespaces): run make bench as root"}
    rounds, seconds = (1, 1) if quick else (3, 4)
    LabServer.ready_s = 10 if quick else 20
    contenders = lab_contenders()
    try:
        brought_up = lab_up()
    except (subprocess.CalledProcessError, OSError) as e:
        return {"error": f"the lab is not up and {LAB_SCRIPT} up failed: {e}"}
    tmp = RESULTS / "lab-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {name: {"label": c["label"], "offloaded": c["offloaded"], "errors": {}}
               for name, c in contenders.items()}
    samples = {name: {} for name in contenders}
    P0_LOCK.parent.mkdir(parents=True, exist_ok=True)
    port = 17000 + os.getpid() % 1000 * 10
    with open(P0_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Rounds interleave the contenders so that drift hits all of them alike.
            for _ in range(rounds):
                for name, c in contenders.items():
                    port += 1
                    pps = lab_pingpongs(c, port, seconds, tmp)
                    for size, r in pps:
                        if isinstance(r, ContenderFailed):
                            results[name]["errors"][f"pp_{size}B"] = str(r)
                        else:
                            samples[name].setdefault(f"pp_{size}B", []).append(r)
                    for size in LAB_TP_SIZES:
                        port += 1
                        if any(isinstance(r, ServerFailed) for _, r in pps):
                            results[name]["errors"][f"tp_{size}B"] = \
                                "not run: its server did not start for the ping-pong"
                            continue
                        try:
                            r = lab_throughput(c, port, size, seconds, tmp)
                            samples[name].setdefault(f"tp_{size}B", []).append(r)
                        except ContenderFailed as e:
                            results[name]["errors"][f"tp_{size}B"] = str(e)
            raw = {}
            for backend in ("af_packet", "af_xdp"):
                try:
                    raw[backend] = testpmd_txonly(backend, 1 if quick else 4)
                except ContenderFailed as e:
                    raw[backend] = {"error": str(e)}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            shutil.rmtree(tmp, ignore_errors=True)
            if brought_up:
                subprocess.run([str(LAB_SCRIPT), "down"], stdout=subprocess.DEVNULL)
    for name, per in samples.items():
        for key, runs in per.items():
            fields = runs[0].keys()
            results[name][key] = {f: statistics.median(r[f] for r in runs)
                                  for f in fields if runs[0][f] is not None}
            results[name][key]["rounds"] = len(runs)
            if key.startswith("pp_"):
                results[name][key]["dropped"] = sum(r["dropped"] or 0 for r in runs)
    return {"contenders": results, "raw_dpdk_txonly_64B": raw, "rounds": rounds,
            "seconds": seconds, "server_cpu": int(SERVER_CPU), "client_cpu": int(CLIENT_CPU),
            "latency": "one-way (sockperf: round trip / 2), microseconds",
            "throughput": "messages received per second at the server (server-side count "
                          "over the client's test duration)"}


LAB_MEASURES = [
    # (label, key, field, better, target ratio of sluice/kernel or None)
    ("UDP pp 64 B avg (us)", "pp_64B", "avg", "lower", None),
    ("UDP pp 64 B p50 (us)", "pp_64B", "p50", "lower", 0.5),
    ("UDP pp 64 B p99 (us)", "pp_64B", "p99", "lower", 1.0),
    ("UDP pp 64 B p99.9 (us)", "pp_64B", "p999", "lower", None),
    ("UDP pp 1024 B avg (us)", "pp_1024B", "avg", "lower", None),
    ("UDP pp 1024 B p50 (us)", "pp_1024B", "p50", "lower", 0.5),
    ("UDP pp 1024 B p99 (us)", "pp_1024B", "p99", "lower", 1.0),
    ("UDP pp 1024 B p99.9 (us)", "pp_1024B", "p999", "lower", None),
    (f"UDP pp 64 B at {SPARSE_MPS}/s p50 (us)", f"pp_{SPARSE}B", "p50", "lower", 1.0),
    (f"UDP pp 64 B at {SPARSE_MPS}/s p99 (us)", f"pp_{SPARSE}B", "p99", "lower", None),
    ("UDP tp 64 B received (kmsg/s)", "tp_64B", "received_per_s", "higher", 2.0),
    ("UDP tp 1472 B received (kmsg/s)", "tp_1472B", "received_per_s", "higher", 2.0),
]


def lab_value(result, name, key, field):
    v = result["contenders"][name].get(key, {}).get(field)
    if v is not None and field.endswith("_per_s"):
        v /= 1000.0
    return v


def print_lab_table(result):
    print("\nLab UDP, sl-h1 -> sl-h2 (veth + bridge), server CPU 1, client CPU 0; "
          "ratio = sluice/kernel")
    if "error" in result:
        print(f"  not run: {result['error']}")
        return
    others = [n for n in result["contenders"] if n != "kernel"]
    short = {"sluice_af_packet": "af_packet", "sluice_af_xdp": "af_xdp",
             "sluice_udp_mode": "udp-mode"}
    head = f"{'measure':<34}{'kernel':>9}"
    for n in others:
        head += f"{short[n]:>11}{'ratio':>7}"
    print(head + "  target (offloaded contenders)")
    for label, key, field, better, target in LAB_MEASURES:
        kernel = lab_value(result, "kernel", key, field)
        line = f"{label:<34}" + (f"{kernel:>9.2f}" if kernel is not None else f"{'failed':>9}")
        verdicts = []
        for n in others:
            v = lab_value(result, n, key, field)
            if v is None:
                line += f"{'failed':>11}{'':>7}"
                continue
            ratio = v / kernel if kernel else None
            line += f"{v:>11.2f}" + (f"{ratio:>7.2f}" if ratio is not None else f"{'-':>7}")
            if target is not None and ratio is not None and result["contenders"][n]["offloaded"]:
                met = ratio <= target if better == "lower" else ratio >= target
                verdicts.append(f"{short[n]} {'met' if met else 'NOT met'}")
        if target is not None:
            line += (f"  {'<=' if better == 'lower' else '>='} {target:.1f}: "
                     + (", ".join(verdicts) or "no offloaded result"))
        print(line)
    raw = result.get("raw_dpdk_txonly_64B", {})
    for backend, r in raw.items():
        if "tx_pps" in r:
            line = f"raw DPDK {backend} testpmd txonly 64 B: {r['tx_pps'] / 1000:.0f} kpps sent"
            sluice = lab_value(result, f"sluice_{backend}", "tp_64B", "received_per_s")
            if sluice is not None:
                line += f"; sluice {backend} receives {sluice * 1000 / r['tx_pps']:.2f}x of it"
            print(line)
        else:
            print(f"raw DPDK {backend}: failed: {r.get('error', '?')[:200]}")
    print("udp-mode: datagram sockets pass through to the kernel in that mode (it exists for "
          "streams), so it measures interposition, not offload.")
    print("latency is one-way (round trip / 2) as sockperf reports it; throughput is messages "
          "received at the server per second of the client's run.")
    for n, r in result["contenders"].items():
        for key, err in r["errors"].items():
            print(f"  {n} {key} failed: {err[:240]}")


def lab_svg(result, path):
    """Latency percentiles (64 B and 1024 B) and throughput bars, hand-drawn SVG."""
    names = list(result["contenders"])
    colours = ["#555555", "#1f77b4", "#2ca02c", "#ff7f0e"]
    panels = [
        ("UDP ping-pong 64 B, one-way latency (us, log scale, lower is better)", "pp_64B",
         ["avg", "p50", "p99", "p999"]),
        ("UDP ping-pong 1024 B, one-way latency (us, log scale, lower is better)", "pp_1024B",
         ["avg", "p50", "p99", "p999"]),
        ("UDP throughput, messages received (kmsg/s, higher is better)", None,
         ["tp_64B", "tp_1472B"]),
    ]
    width, panel_h, left, top = 760, 230, 60, 40
    height = top + len(panels) * (panel_h + 40) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">sluice lab UDP, {result.get("date", "")}'
           f'</text>']
    for i, n in enumerate(names):
        x = left + 330 + i * 100
        out.append(f'<rect x="{x}" y="10" width="10" height="10" fill="{colours[i]}"/>'
                   f'<text x="{x + 14}" y="19">{n.replace("sluice_", "")}</text>')
    for p, (title, key, groups) in enumerate(panels):
        y0 = top + p * (panel_h + 40)
        values = {}
        for g in groups:
            for n in names:
                if key is None:
                    v = lab_value(result, n, g, "received_per_s")
                else:
                    v = lab_value(result, n, key, g)
                values[(g, n)] = v
        present = [v for v in values.values() if v]
        vmax = max(present or [1.0])
        # Latency percentiles span decades: a log scale keeps p50 visible beside p99.9.
        lo = min(present or [1.0]) / 2 if key is not None else 0.0
        plot_w = width - left - 20
        out.append(f'<text x="{left}" y="{y0 + 12}" font-size="12">{title}</text>')
        base = y0 + panel_h
        out.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" '
                   f'stroke="black"/>')
        gw = plot_w / len(groups)
        bw = gw * 0.8 / len(names)
        for gi, g in enumerate(groups):
            gx = left + gi * gw + gw * 0.1
            label = g.replace("tp_", "").replace("p999", "p99.9")
            out.append(f'<text x="{gx + gw * 0.4}" y="{base + 14}" text-anchor="middle">'
                       f'{label}</text>')
            for ni, n in enumerate(names):
                v = values[(g, n)]
                x = gx + ni * bw
                if v is None:
                    out.append(f'<text x="{x + bw / 2:.1f}" y="{base - 4}" text-anchor="middle" '
                               f'fill="red">failed</text>')
                    continue
                if key is None:
                    h = (panel_h - 30) * v / vmax
                else:
                    h = (panel_h - 30) * math.log(v / lo) / math.log(vmax / lo)
                out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw * 0.9:.1f}" '
                           f'height="{h:.1f}" fill="{colours[ni]}"/>')
                out.append(f'<text x="{x + bw * 0.45:.1f}" y="{base - h - 3:.1f}" '
                           f'text-anchor="middle" font-size="9">{v:.1f}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes")
    ap.add_argument("--only", choices=["passthrough", "lab-udp"],
                    help="run one section only")
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
    if args.only in (None, "passthrough"):
        result, rows = passthrough(args.quick)
        report["passthrough"] = result
        print_table("Pass-through overhead (nothing offloaded; sluice = under libsluice.so)",
                    rows)
    if args.only in (None, "lab-udp"):
        lab_started = time.time()
        lab = lab_udp(args.quick)
        lab["elapsed_s"] = round(time.time() - lab_started, 1)
        lab["date"] = report["date"]
        report["lab_udp"] = lab
        print_lab_table(lab)
        if "contenders" in lab:
            lab_svg(lab, RESULTS / "lab_udp.svg")
            print(f"wrote {RESULTS / 'lab_udp.svg'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'results.json'} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
