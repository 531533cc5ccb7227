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
                Plus a raw DPDK reference: dpdk-testpmd txonly on sl-h1 p0
                to dpdk-testpmd rxonly on sl-h2 p0, the frames the receiver
                counts per second, in the frames of each throughput size
                (106 B for 64 B datagrams, 1514 B for 1472 B ones), once in
                every round like the contenders (the median is reported).
                Needs root (namespaces); holds /run/sluice-lab/dpdk-p0.lock.
                Quick runs leave out the udp-mode contender and the 100/s
                ping-pong.
  lab streams   the same hosts, SOCK_STREAM: the kernel's TCP (10.77.1.1 ->
                10.77.1.2) against sluice streams (its reliable protocol over
                UDP) over DPDK af_packet and af_xdp (data IPs 10.77.2.x) and over
                kernel UDP sockets (SLUICE_MODE=udp, SLUICE_IFACES=p0=10.77.1.X/24:
                the kernel IPs). Unmodified programs: sockperf TCP ping-pong
                64 B (avg, p50, p99, p99.9 one-way), iperf3 1 stream and -P 4
                (receiver Gbit/s), redis-benchmark SET and GET (50 clients:
                requests/s, p50). STREAM_PLAN says which contender runs what
                (quick runs: the kernel and af_packet). An offloaded contender
                whose run moved kernel TCP segments (a fall-back to the kernel's
                TCP) is reported failed; a failure is not retried in later
                rounds; the section stops starting runs after STREAM_BUDGET_S.

Rounds alternate plain and preloaded runs so that drift on a shared machine
hits both sides alike; the median of the rounds is reported. Client and server
are pinned (server CPU 1, client CPU 0) the same way for every contender.
Results go to bench-results/results.json and a picture of both lab sections to
bench-results/lab_udp.svg; the tables go to stdout. A contender that fails a
measurement is shown as failed, with the reason under the table.
"""

import argparse
import csv
import fcntl
import io
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
RESULTS = ROOT / "bench-results"


def interrupt(proc, grace=5.0):
    """SIGINT (sockperf and testpmd print their totals on it), then SIGKILL if PROC lingers
    past GRACE seconds: a benchmark must end whatever happens."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        interrupt(server)
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
    rounds, seconds, iters = (2, 1, 50000) if quick else (5, 4, 200000)
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
# Its runs are a second shorter than the others' (300 round trips in a full run).
SPARSE_SHORTER_S = 1
SPARSE = f"{SPARSE_MPS}mps_64"  # key pp_100mps_64B
LAB_TP_SIZES = (64, 1472)


class ContenderFailed(Exception):
    """One contender could not run one measurement; the bench goes on."""

    def __init__(self, msg):
        super().__init__(" ".join(msg.split()))


class ServerFailed(ContenderFailed):
    """The contender's server did not start: its other measurements are skipped."""


class Hung(ContenderFailed):
    """A stream run that did not end (or whose server never became ready) in its time."""


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
        # Datagram sockets pass through to the kernel in udp mode: same IPs as the kernel. Its
        # sleeping receiver is the kernel's, so the sparse ping-pong is left out for it.
        "sluice_udp_mode": {"client_ip": "10.77.1.1", "server_ip": "10.77.1.2",
                            "client_env": {"LD_PRELOAD": lib, "SLUICE_MODE": "udp"},
                            "server_env": {"LD_PRELOAD": lib, "SLUICE_MODE": "udp"},
                            "offloaded": False, "sparse": False,
                            "label": "sluice --mode udp (pass-through)"},
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
    return pingpong_summary(text, server)


def pingpong_summary(text, server):
    """sockperf ping-pong client output -> {avg, p50, p99, p999, dropped} (one-way, us)."""
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
        if not c.get("sparse", True):
            return out
        try:
            out.append((SPARSE, lab_pingpong(c, port, 64,
                                             max(1, seconds - SPARSE_SHORTER_S), server,
                                             ("--mps", str(SPARSE_MPS)))))
        except ContenderFailed as e:
            out.append((SPARSE, e))
    finally:
        server.stop()
    return out


# An idle offloaded process: its server's CPU time over this window (quick runs: the shorter),
# after this much quiet.
IDLE_WINDOW_S, IDLE_WINDOW_QUICK_S, IDLE_QUIET_S = 3, 2, 1


def task_cpu_ns(pid):
    """CPU time of all of PID's threads, ns (schedstat: run time on a CPU only)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def lab_idle(c, port, tmp, window):
    """The share of a core an offloaded server uses once quiet: a sockperf server that was
    pinged (its stack answered), then left alone for WINDOW seconds."""
    server = LabServer(c, port, tmp)
    try:
        time.sleep(IDLE_QUIET_S)
        before = task_cpu_ns(server.proc.pid)
        time.sleep(window)
        used = task_cpu_ns(server.proc.pid) - before
        if server.proc.poll() is not None:
            raise ContenderFailed(f"server exited ({server.proc.returncode}) while idle")
    finally:
        server.stop()
    return {"core_percent": used / (window * 1e9) * 100, "seconds": window}


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


# testpmd's frames go to this MAC, which the switch forwards to sl-h2's port only (a static
# entry made for the run), as it forwards sluice's frames to sl-h2: unknown, the MAC would be
# flooded to every port of both switches, and the raw rate would pay for copies nobody else's
# traffic makes. Not sl-h2's kernel MAC either: its kernel drops the frames at once, as it drops
# frames for the MAC of sluice's interface.
RAW_PEER_MAC = "02:00:00:77:02:99"


# Seconds of each raw DPDK run (testpmd reports about two whole seconds from it).
RAW_SECONDS = 2


def raw_result(keys, runs, errors):
    """backend -> "<frame>B" -> the medians of testpmd_pair's rounds, or the error when no
    round gave a rate."""
    raw = {}
    for backend, frame in keys:
        done = runs.get((backend, frame), [])
        if not done:
            r = {"error": errors.get((backend, frame), "not run")}
        else:
            r = {f: statistics.median(d[f] for d in done) for f in ("rx_pps", "tx_pps")}
            r["rounds"] = len(done)
            r["rx_pps_rounds"] = [d["rx_pps"] for d in done]
            if (backend, frame) in errors:
                r["error"] = errors[(backend, frame)]
        raw.setdefault(backend, {})[f"{frame}B"] = r
    return raw


def testpmd_pair(backend, frame, seconds):
    """Raw DPDK between the two hosts: dpdk-testpmd txonly on sl-h1 p0 (client CPU) sends
    FRAME-byte frames to dpdk-testpmd rxonly on sl-h2 p0 (server CPU), as sockperf's client and
    server run. The raw rate is what the receiver counts (median Rx-pps of its per-second
    statistics while the sender runs), as sluice's throughput is what its server receives; the
    sender's Tx-pps is kept beside it."""
    if shutil.which("dpdk-testpmd") is None:
        raise ContenderFailed("dpdk-testpmd not found: apt-get install dpdk")
    fdb = ["ip", "netns", "exec", "sl-sw0", "bridge", "fdb"]
    subprocess.run(fdb + ["replace", RAW_PEER_MAC, "dev", "h2p0", "master", "static"],
                   check=True)
    try:
        return testpmd_run(backend, seconds, frame)
    finally:
        subprocess.run(fdb + ["del", RAW_PEER_MAC, "dev", "h2p0", "master"],
                       stderr=subprocess.DEVNULL)


def testpmd_argv(backend, seconds, worker_cpu, role, extra):
    """testpmd with its forwarding lcore on WORKER_CPU (its main lcore, which only prints the
    statistics, on the other CPU), stopped by SIGINT after SECONDS."""
    vdev = (f"net_af_packet0,iface=p0" if backend == "af_packet"
            else "net_af_xdp0,iface=p0,start_queue=0,queue_count=1")
    main_cpu = "1" if worker_cpu == "0" else "0"
    return ["timeout", "-s", "INT", str(seconds), "dpdk-testpmd", "--in-memory", "--no-pci",
            f"--file-prefix=bench-testpmd-{role}-{os.getpid()}", f"--vdev={vdev}", "-l", "0,1",
            f"--main-lcore={main_cpu}", "--log-level=error", "--", f"--forward-mode={role}",
            "--stats-period=1", *extra]


def testpmd_run(backend, seconds, frame):
    rx_path = Path(tempfile.mkstemp(prefix="bench-testpmd-rx-")[1])
    # The receiver runs until the sender has finished.
    with open(rx_path, "w") as rx_out:
        rx = subprocess.Popen(ns_cmd(SERVER_NS, None, {}, testpmd_argv(
            backend, seconds + 30, SERVER_CPU, "rxonly", [])), env=clean_env(),
            stdin=subprocess.DEVNULL, stdout=rx_out, stderr=subprocess.STDOUT)
    try:
        # Both start at once (EAL start takes 2-3 s each); the receiver's first second with
        # frames, partial, is left out below.
        try:
            tx = subprocess.run(ns_cmd(CLIENT_NS, None, {}, testpmd_argv(
                backend, seconds + 4, CLIENT_CPU, "txonly",
                [f"--txpkts={frame}", f"--eth-peer=0,{RAW_PEER_MAC}",
                 "--tx-ip=10.77.2.1,10.77.2.99"])), env=clean_env(), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise ContenderFailed("dpdk-testpmd txonly did not stop")
    finally:
        # The receiver's last statistics (the sender's partial last second) come within a second.
        time.sleep(1)
        interrupt(rx)
        rx_text = rx_path.read_text(errors="replace")
        rx_path.unlink()
    tx_rates = [int(r) for r in re.findall(r"Tx-pps:\s+(\d+)", tx.stdout)]
    tx_rates = [r for r in tx_rates if r > 0]
    # The receiver's samples while frames came; the first and last are partial seconds.
    rx_rates = [int(r) for r in re.findall(r"Rx-pps:\s+(\d+)", rx_text)]
    rx_rates = [r for r in rx_rates if r > 0][1:-1]
    if not tx_rates or not rx_rates:
        raise ContenderFailed("no Tx-pps/Rx-pps from dpdk-testpmd: "
                              + (tx.stdout + tx.stderr + rx_text)[-300:])
    return {"rx_pps": statistics.median(rx_rates), "tx_pps": statistics.median(tx_rates),
            "samples": len(rx_rates)}


# Ethernet (14), IPv4 (20) and UDP (8) headers: the frame that carries a datagram of N bytes
# is N + FRAME_OVERHEAD long, and raw DPDK is measured with frames of that length for each UDP
# throughput size (the frame length matters: 106-byte frames went at 0.75-0.9x the rate of
# 64-byte ones over af_xdp in the lab).
FRAME_OVERHEAD = 42
# A full 1500-byte MTU frame (1472 B of UDP payload): raw DPDK's bandwidth at this MTU.
RAW_FULL_FRAME = 1472 + FRAME_OVERHEAD
# Stream payload per full frame: the MTU less IPv4 (20), UDP (8) and our header (40), as the
# engine sets the stream MSS.
STREAM_PAYLOAD_PER_FRAME = 1400


def raw_gbit_s(r):
    """The stream payload raw DPDK could carry at its full-frame rate, Gbit/s."""
    return r["rx_pps"] * STREAM_PAYLOAD_PER_FRAME * 8 / 1e9


def take_lock(lock):
    """Exclusive use of sl-h1/sl-h2 p0 (shim-tests take the same lock); returns the seconds
    spent waiting for other users of the lab."""
    started = time.time()
    fcntl.flock(lock, fcntl.LOCK_EX)
    return round(time.time() - started, 1)


def lab_udp(quick, only=None):
    """Runs every contender (or the kernel and those in ONLY); a failure is recorded per
    contender and measurement."""
    need("sockperf", "sockperf")
    need("taskset", "util-linux")
    if os.geteuid() != 0:
        return {"error": "needs root (network namespaces): run make bench as root"}
    rounds, seconds = (1, 1) if quick else (3, 3)
    LabServer.ready_s = 10 if quick else 20
    contenders = lab_contenders()
    if only:
        contenders = {n: c for n, c in contenders.items() if n == "kernel" or n in only}
    if quick:
        # Datagrams pass through to the kernel in udp mode (the pass-through section measures
        # that too); leaving it out, and the sparse ping-pong, keeps the quick run, streams
        # included, under 2 minutes.
        contenders.pop("sluice_udp_mode", None)
        for c in contenders.values():
            c["sparse"] = False
    try:
        brought_up = lab_up()
    except (subprocess.CalledProcessError, OSError) as e:
        return {"error": f"the lab is not up and {LAB_SCRIPT} up failed: {e}"}
    tmp = RESULTS / "lab-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {name: {"label": c["label"], "offloaded": c["offloaded"], "errors": {}}
               for name, c in contenders.items()}
    samples = {name: {} for name in contenders}
    # (backend, frame length) of the raw DPDK runs (quick runs: full frames only, which the
    # stream section needs too)
    raw_keys = [(backend, size + FRAME_OVERHEAD) for backend in ("af_packet", "af_xdp")
                for size in (LAB_TP_SIZES[-1:] if quick else LAB_TP_SIZES)]
    raw_runs, raw_errors = {}, {}
    P0_LOCK.parent.mkdir(parents=True, exist_ok=True)
    port = 17000 + os.getpid() % 1000 * 10
    with open(P0_LOCK, "w") as lock:
        lock_wait = take_lock(lock)
        try:
            # Rounds interleave the contenders so that drift hits all of them alike.
            for round_no in range(rounds):
                for name, c in contenders.items():
                    port += 1
                    if round_no == 0 and c["offloaded"]:
                        try:
                            samples[name]["idle"] = [lab_idle(
                                c, port, tmp, IDLE_WINDOW_QUICK_S if quick else IDLE_WINDOW_S)]
                        except (ContenderFailed, ServerFailed) as e:
                            results[name]["errors"]["idle"] = str(e)
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
                # Raw DPDK in every round too: its rate drifts with the machine as much as the
                # contenders' do (testpmd's 1514 B frames at 200-305 kpps within an hour).
                for key in raw_keys:
                    try:
                        raw_runs.setdefault(key, []).append(
                            testpmd_pair(*key, RAW_SECONDS))
                    except ContenderFailed as e:
                        raw_errors[key] = str(e)
            raw = raw_result(raw_keys, raw_runs, raw_errors)
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
    return {"contenders": results, "raw_dpdk": raw, "rounds": rounds,
            "lock_wait_s": lock_wait,
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
    v = result["contenders"].get(name, {}).get(key, {}).get(field)
    if v is not None and field.endswith("_per_s"):
        v /= 1000.0
    return v


SHORT = {"kernel": "kernel", "sluice_af_packet": "af_packet", "sluice_af_xdp": "af_xdp",
         "sluice_udp_mode": "udp-mode", "sluice_two_ports": "2 ports"}


def lab_cell(result, name, key, field):
    """(value or None, text when None): "failed" when the measure failed, "skipped" when it
    was not run because of an earlier failure, "-" when it is not run for that contender
    (e.g. left out of a quick run)."""
    v = lab_value(result, name, key, field)
    if v is not None:
        return v, None
    errors = result["contenders"].get(name, {}).get("errors", {})
    if key not in errors:
        return None, "-"
    return None, "skipped" if errors[key].startswith("not run") else "failed"


def print_measures(result, measures):
    """Rows of one lab section: kernel, then each sluice contender with its ratio to the kernel
    and, where a target applies, met or NOT met."""
    others = [n for n in result["contenders"] if n != "kernel"]
    head = f"{'measure':<34}{'kernel':>9}"
    for n in others:
        head += f"{SHORT.get(n, n):>11}{'ratio':>7}"
    print(head + "  target (offloaded contenders)")
    for label, key, field, better, target in measures:
        kernel, why = lab_cell(result, "kernel", key, field)
        line = f"{label:<34}" + (f"{kernel:>9.2f}" if kernel is not None else f"{why:>9}")
        verdicts = []
        for n in others:
            v, why = lab_cell(result, n, key, field)
            if v is None:
                line += f"{why:>11}{'':>7}"
                continue
            ratio = v / kernel if kernel else None
            line += f"{v:>11.2f}" + (f"{ratio:>7.2f}" if ratio is not None else f"{'-':>7}")
            r = result["contenders"][n]
            if target is not None and ratio is not None and r.get("targets", r["offloaded"]):
                met = ratio <= target if better == "lower" else ratio >= target
                verdicts.append(f"{SHORT.get(n, n)} {'met' if met else 'NOT met'}")
        if target is not None:
            line += (f"  {'<=' if better == 'lower' else '>='} {target:.1f}: "
                     + (", ".join(verdicts) or "no offloaded result"))
        print(line)


def print_errors(result):
    for n, r in result["contenders"].items():
        for key, err in r["errors"].items():
            verb = "" if err.startswith("not run") else "failed: "
            print(f"  {n} {key} {verb}{err[:400]}")


def print_lab_table(result):
    print("\nLab UDP, sl-h1 -> sl-h2 (veth + bridge), server CPU 1, client CPU 0; "
          "ratio = sluice/kernel")
    if "error" in result:
        print(f"  not run: {result['error']}")
        return
    print_measures(result, LAB_MEASURES)
    idle = [(n, lab_value(result, n, "idle", "core_percent")) for n in result["contenders"]]
    idle = [(n, v) for n, v in idle if v is not None]
    if idle:
        window = result["contenders"][idle[0][0]]["idle"]["seconds"]
        print(f"idle offloaded sockperf server (% of a core over {window} s, after "
              f"{IDLE_QUIET_S} s quiet): "
              + ", ".join(f"{SHORT.get(n, n)} {v:.2f}" for n, v in idle)
              + f"  <= 2: {'met' if all(v <= 2 for _, v in idle) else 'NOT met'}")
    # Raw DPDK in the frames of each UDP throughput size, against what sluice received.
    for backend, frames in result.get("raw_dpdk", {}).items():
        for size in LAB_TP_SIZES:
            frame = size + FRAME_OVERHEAD
            r = frames.get(f"{frame}B", {})
            if not r:
                continue  # not measured in quick runs
            if "rx_pps" not in r:
                print(f"raw DPDK {backend} {frame} B: failed: {r.get('error', '?')[:200]}")
                continue
            rounds = r.get("rx_pps_rounds", [r["rx_pps"]])
            line = (f"raw DPDK {backend} testpmd txonly -> rxonly, {frame} B frames (a {size} B "
                    f"datagram's): {r['rx_pps'] / 1000:.0f} kpps received "
                    f"({r['tx_pps'] / 1000:.0f} sent"
                    + (f"; rounds {' '.join(f'{x / 1000:.0f}' for x in rounds)})"
                       if len(rounds) > 1 else ")"))
            sluice = lab_value(result, f"sluice_{backend}", f"tp_{size}B", "received_per_s")
            if sluice is not None:
                ratio = sluice * 1000 / r["rx_pps"]
                line += (f"; sluice receives {ratio:.2f}x of it (target >= 0.9: "
                         f"{'met' if ratio >= 0.9 else 'NOT met'})")
            print(line)
    if "sluice_udp_mode" in result["contenders"]:
        print("udp-mode: datagram sockets pass through to the kernel in that mode (it exists "
              f"for streams), so it measures interposition, not offload ('-': the {SPARSE_MPS}/s "
              "ping-pong, which measures how a sleeping receiver wakes, is not run for it).")
    else:
        print("udp-mode: not run (quick runs leave it out: for datagrams it measures "
              f"pass-through), nor the {SPARSE_MPS}/s ping-pong ('-').")
    print("latency is one-way (round trip / 2) as sockperf reports it; throughput is messages "
          "received at the server per second of the client's run.")
    print_errors(result)


LAB_UDP_PANELS = [
    # (title, [(group label, key, field)], log scale)
    ("UDP ping-pong 64 B, one-way latency (us, log scale, lower is better)",
     [(f, "pp_64B", f) for f in ("avg", "p50", "p99", "p999")], True),
    ("UDP ping-pong 1024 B, one-way latency (us, log scale, lower is better)",
     [(f, "pp_1024B", f) for f in ("avg", "p50", "p99", "p999")], True),
    ("UDP throughput, messages received (kmsg/s, higher is better)",
     [("64B", "tp_64B", "received_per_s"), ("1472B", "tp_1472B", "received_per_s")], False),
]


def lab_svg(sections, path, date=""):
    """Bars per contender, hand-drawn SVG; sections = [(lab result, panels)]; a section that
    did not run (no contenders) is left out."""
    names = []
    panels = []
    for result, section_panels in sections:
        if "contenders" not in result:
            continue
        names += [n for n in result["contenders"] if n not in names]
        panels += [(result, *p) for p in section_panels]
    colours = {"kernel": "#555555", "sluice_af_packet": "#1f77b4", "sluice_af_xdp": "#2ca02c",
               "sluice_udp_mode": "#ff7f0e", "sluice_two_ports": "#9467bd"}
    width, panel_h, left, top = 760, 230, 60, 40
    height = top + len(panels) * (panel_h + 40) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">sluice lab, {date}</text>']
    for i, n in enumerate(names):
        x = left + 250 + i * 110
        out.append(f'<rect x="{x}" y="10" width="10" height="10" '
                   f'fill="{colours.get(n, "#999999")}"/>'
                   f'<text x="{x + 14}" y="19">{n.replace("sluice_", "")}</text>')
    for p, (result, title, groups, log) in enumerate(panels):
        y0 = top + p * (panel_h + 40)
        values = {(g, n): lab_cell(result, n, key, field)
                  for g, key, field in groups for n in names}
        present = [v for v, _ in values.values() if v]
        vmax = max(present or [1.0])
        # Latency percentiles span decades: a log scale keeps p50 visible beside p99.9.
        lo = min(present or [1.0]) / 2 if log else 0.0
        plot_w = width - left - 20
        out.append(f'<text x="{left}" y="{y0 + 12}" font-size="12">{title}</text>')
        base = y0 + panel_h
        out.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" '
                   f'stroke="black"/>')
        gw = plot_w / len(groups)
        bw = gw * 0.8 / len(names)
        for gi, (g, _, _) in enumerate(groups):
            gx = left + gi * gw + gw * 0.1
            label = g.replace("p999", "p99.9")
            out.append(f'<text x="{gx + gw * 0.4}" y="{base + 14}" text-anchor="middle">'
                       f'{label}</text>')
            for ni, n in enumerate(names):
                v, why = values[(g, n)]
                x = gx + ni * bw
                if v is None:
                    colour = "red" if why == "failed" else "#999999"
                    out.append(f'<text x="{x + bw / 2:.1f}" y="{base - 4}" '
                               f'text-anchor="middle" fill="{colour}">{why}</text>')
                    continue
                if not log:
                    h = (panel_h - 30) * v / vmax
                else:
                    h = (panel_h - 30) * math.log(v / lo) / math.log(vmax / lo)
                out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw * 0.9:.1f}" '
                           f'height="{h:.1f}" fill="{colours.get(n, "#999999")}"/>')
                out.append(f'<text x="{x + bw * 0.45:.1f}" y="{base - h - 3:.1f}" '
                           f'text-anchor="middle" font-size="9">{v:.1f}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


# ---------------------------------------------------------------------------
# Lab streams: kernel TCP against sluice streams (its reliable protocol over UDP) between the
# same two lab hosts, with unmodified sockperf (TCP), iperf3 and redis.

STREAM_PP_SIZE = 64
# A contender whose traffic moved more kernel TCP segments than this (in either host) during
# one measurement fell back to the kernel's TCP: its numbers are not sluice's.
FALLBACK_SEGMENTS = 1000
# redis-benchmark: clients, and requests per test (SET, then GET) in quick and full runs.
REDIS_CLIENTS = 50
REDIS_REQUESTS = (20000, 50000)
# Seconds the stream section may start new runs for (quick, full): make bench QUICK=1 stays
# under 2 minutes and make bench under 15 whatever hangs; what is left is reported as not run.
STREAM_BUDGET_S = (25, 345)
# Which contenders run which measurement: (full run, quick run).
ALL_STREAM = ("kernel", "sluice_af_packet", "sluice_af_xdp", "sluice_udp_mode",
              "sluice_two_ports")
STREAM_PLAN = {
    "tcp_pp": (ALL_STREAM, ("kernel", "sluice_af_packet")),
    "iperf3": (ALL_STREAM, ("kernel", "sluice_af_packet")),
    "redis": (("kernel", "sluice_af_packet", "sluice_af_xdp", "sluice_udp_mode"),
              ("kernel", "sluice_af_packet")),
    "iperf3_capped": (("kernel", "sluice_af_packet", "sluice_two_ports"), ()),
}
# The result keys each kind of measurement produces.
STREAM_KEYS = {"tcp_pp": [f"tcp_pp_{STREAM_PP_SIZE}B"], "iperf3": ["iperf3_1", "iperf3_P4"],
               "redis": ["redis_set", "redis_get"], "iperf3_capped": ["iperf3_capped"]}


def stream_contenders():
    """name -> how it runs. "mode" says how a server shows it is ready; "targets" whether the
    table's latency targets apply (DPDK only: the kernel-UDP mode is expected to be slower)."""
    lib = str(RELEASE / "libsluice.so")

    def dpdk(backend, ip, p1=None):
        ifaces = f"p0={ip}/24" + (f",p1={p1}/24" if p1 else "")
        return {"LD_PRELOAD": lib, "SLUICE_MODE": "dpdk", "SLUICE_IFACES": ifaces,
                "SLUICE_DPDK_BACKEND": backend}

    def udp(ip):
        return {"LD_PRELOAD": lib, "SLUICE_MODE": "udp", "SLUICE_IFACES": f"p0={ip}/24"}
    return {
        "kernel": {"client_ip": "10.77.1.1", "server_ip": "10.77.1.2", "client_env": {},
                   "server_env": {}, "mode": "kernel", "offloaded": False, "targets": False,
                   "label": "kernel TCP"},
        "sluice_af_packet": {"client_ip": "10.77.2.1", "server_ip": "10.77.2.2",
                             "client_env": dpdk("af_packet", "10.77.2.1"),
                             "server_env": dpdk("af_packet", "10.77.2.2"), "mode": "dpdk",
                             "offloaded": True, "targets": True,
                             "label": "sluice streams over DPDK af_packet"},
        "sluice_af_xdp": {"client_ip": "10.77.2.1", "server_ip": "10.77.2.2",
                          "client_env": dpdk("af_xdp", "10.77.2.1"),
                          "server_env": dpdk("af_xdp", "10.77.2.2"), "mode": "dpdk",
                          "offloaded": True, "targets": True,
                          "label": "sluice streams over DPDK af_xdp"},
        # The stream protocol over kernel UDP sockets, between the kernel IPs (whose subnet
        # SLUICE_IFACES offloads in this mode).
        "sluice_udp_mode": {"client_ip": "10.77.1.1", "server_ip": "10.77.1.2",
                            "client_env": udp("10.77.1.1"), "server_env": udp("10.77.1.2"),
                            "mode": "udp", "offloaded": True, "targets": False,
                            "label": "sluice streams over kernel UDP (SLUICE_MODE=udp)"},
        # Both data ports of each host (the ha lab's p0 on sw0 and p1 on sw1): one connection
        # runs a path over each (multipath).
        "sluice_two_ports": {"client_ip": "10.77.2.1", "server_ip": "10.77.2.2",
                             "client_env": dpdk("af_packet", "10.77.2.1", "10.77.3.1"),
                             "server_env": dpdk("af_packet", "10.77.2.2", "10.77.3.2"),
                             "mode": "dpdk", "offloaded": True, "targets": True,
                             "label": "sluice streams over two af_packet ports (multipath)"},
    }


def proc_net_has(ns, table, ip, port, state=None):
    """Whether /proc/net/TABLE in NS has a socket bound to ip:port (in state, hex, if given)."""
    octets = [int(o) for o in ip.split(".")]
    local = "%02X%02X%02X%02X:%04X" % (octets[3], octets[2], octets[1], octets[0], port)
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/proc/net/{table}"],
                          capture_output=True, text=True).stdout
    for f in (line.split() for line in text.splitlines()[1:]):
        if len(f) > 3 and f[1] == local and (state is None or f[3] == state):
            return True
    return False


def kernel_tcp_segments(ns):
    """The kernel's TCP InSegs + OutSegs in NS (/proc/net/snmp)."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2:
        return 0
    counters = dict(zip(rows[0], rows[1]))
    return int(counters.get("InSegs", 0)) + int(counters.get("OutSegs", 0))


class FallbackGuard:
    """Fails an offloaded contender whose measurement went through the kernel's TCP (a
    connection that fell back, e.g. because the peer did not answer the handshake)."""

    def __init__(self, c):
        self.c = c
        self.before = {ns: kernel_tcp_segments(ns) for ns in (CLIENT_NS, SERVER_NS)}

    def check(self):
        if not self.c["offloaded"]:
            return
        for ns, before in self.before.items():
            moved = kernel_tcp_segments(ns) - before
            if moved > FALLBACK_SEGMENTS:
                raise ContenderFailed(f"went through kernel TCP, not sluice streams: {ns}'s "
                                      f"kernel TCP counters moved by {moved} segments "
                                      "(fell back?)")


class StreamServer:
    """A stream server (sockperf, iperf3, redis-server) in the server namespace, pinned to the
    server CPU; ready once it listens: in the kernel's TCP table (kernel), answering ping on its
    data IP (DPDK: the IP is the stack's), or with its UDP carrier bound (kernel-UDP mode: the
    stream on TCP port P is carried on UDP port P). Stopped with SIGINT, killed by PID if it
    lingers."""

    def __init__(self, what, c, port, argv, tmp, printed=None):
        self.what = what
        self.out_path = tmp / f"stream-server-{port}.out"
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(ns_cmd(SERVER_NS, SERVER_CPU, c["server_env"], argv),
                                     env=clean_env(), cwd=tmp, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        ip = c["server_ip"]
        deadline = time.time() + LabServer.ready_s
        while True:
            if self.proc.poll() is not None:
                self.out.close()
                raise ServerFailed(f"{what} exited ({self.proc.returncode}): "
                                   + failure_text(self.text()))
            if c["mode"] == "kernel":
                ready = proc_net_has(SERVER_NS, "tcp", ip, port, "0A")
            elif c["mode"] == "udp":
                ready = (proc_net_has(SERVER_NS, "udp", ip, port)
                         or proc_net_has(SERVER_NS, "udp", "0.0.0.0", port))
            else:
                ready = pings(ip)
            if ready and printed is not None:
                ready = printed in self.text()
            if ready:
                if c["mode"] == "dpdk":
                    # The stack answers ping once its port is up, which is at bind; listen
                    # follows at once in these programs: a moment for it.
                    time.sleep(0.3)
                break
            if time.time() > deadline:
                self.stop()
                raise Hung(f"{what} not ready within {LabServer.ready_s} s: "
                           + failure_text(self.text()))
            time.sleep(0.1)

    def text(self):
        if not self.out.closed:
            self.out.flush()
        return strip_ansi(self.out_path.read_text(errors="replace"))

    def alive(self):
        if self.proc.poll() is not None:
            raise ContenderFailed(f"{self.what} exited ({self.proc.returncode}) during the run: "
                                  + failure_text(self.text(), 200))

    def stop(self, grace=3.0):
        interrupt(self.proc, grace)
        if not self.out.closed:
            self.out.close()
        return self.text()


def failure_text(text, limit=300):
    """What a failed run said, for the table: sluice's own one-line messages first (an
    internal fault, a bad configuration), then the end of the rest of the output."""
    ours, rest = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("sluice:"):
            if line[:160] not in ours and len(ours) < 2:
                ours.append(line[:160])
        elif line and not line.startswith(("libbpf:", "libxdp:")):  # af_xdp's loader chatter
            rest.append(line)
    tail = " ".join(" ".join(rest).split())[-limit:]
    return " | ".join(ours + ([tail] if tail else []))


class ClientRun:
    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout = rc, stdout
        self.text = strip_ansi(stdout + stderr)


def stream_client(c, argv, timeout, what, check=True):
    """Runs a client in the client namespace, pinned to the client CPU; returns a ClientRun.
    subprocess.run kills it (by PID: every wrapper execs) when the timeout expires."""
    try:
        out = subprocess.run(ns_cmd(CLIENT_NS, CLIENT_CPU, c["client_env"], argv),
                             env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Hung(f"{what} did not finish within {timeout:.0f} s")
    run = ClientRun(out.returncode, out.stdout, out.stderr)
    if check and out.returncode != 0:
        raise ContenderFailed(f"{what} failed ({out.returncode}): " + failure_text(run.text))
    return run


def stream_pingpong(c, port, seconds, tmp, slack):
    """sockperf TCP ping-pong, 64 B: {tcp_pp_64B: one-way latency}."""
    ip = c["server_ip"]
    server = StreamServer("sockperf server --tcp", c, port,
                          ["sockperf", "server", "--tcp", "-i", ip, "-p", str(port)], tmp)
    try:
        guard = FallbackGuard(c)
        text = stream_client(c, ["sockperf", "ping-pong", "--tcp", "-i", ip, "-p", str(port),
                                 "-t", str(seconds), "-m", str(STREAM_PP_SIZE)],
                             seconds + slack, "sockperf ping-pong --tcp").text
        if "ERROR" in text:
            raise ContenderFailed("sockperf ping-pong --tcp: " + failure_text(text))
        r = pingpong_summary(text, server)
        guard.check()
    finally:
        server.stop()
    return {f"tcp_pp_{STREAM_PP_SIZE}B": r}


# The bandwidth each of sl-h1's switch ports is policed to for the capped iperf3 run: below
# what one port carries uncapped, so that the ports, not the CPU, are the limit and a second
# port can show what it adds.
CAPPED_MBIT = 400


def stream_iperf3_capped(c, port, seconds, tmp, slack):
    """iperf3, one stream, with sl-h1's switch ports (h1p0, h1p1) policed to CAPPED_MBIT each
    in the sending direction: receiver Gbit/s. The caps are removed after, pass or fail."""
    ports = ("h1p0", "h1p1")
    try:
        for p in ports:
            subprocess.run([str(LAB_SCRIPT), "fault", p, "rate", str(CAPPED_MBIT)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        r = stream_iperf3(c, port, seconds, tmp, slack, 1)
    except subprocess.CalledProcessError as e:
        raise ContenderFailed(f"sluice-lab fault rate: {e.stderr.decode()[-200:]}")
    finally:
        for p in ports:
            subprocess.run([str(LAB_SCRIPT), "fault", p, "clear"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return {"iperf3_capped": r["iperf3_1"]}


def stream_iperf3(c, port, seconds, tmp, slack, parallel):
    """iperf3 for SECONDS with PARALLEL streams: receiver Gbit/s."""
    ip = c["server_ip"]
    server = StreamServer("iperf3 -s", c, port,
                          ["iperf3", "-s", "-1", "-B", ip, "-p", str(port)], tmp)
    try:
        guard = FallbackGuard(c)
        argv = ["iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J"]
        if parallel > 1:
            argv += ["-P", str(parallel)]
        run = stream_client(c, argv, seconds + slack, f"iperf3 -P {parallel}", check=False)
        rc, text = run.rc, run.text
        try:
            data = json.loads(run.stdout[run.stdout.index("{"):run.stdout.rindex("}") + 1])
        except ValueError:
            raise ContenderFailed(f"iperf3 ({rc}): no JSON result: " + failure_text(text))
        if rc != 0 or "error" in data:
            raise ContenderFailed(f"iperf3 ({rc}): {data.get('error', '')} | server: "
                                  + failure_text(text + server.text(), 200))
        end = data.get("end", {})
        received, sent = end.get("sum_received", {}), end.get("sum_sent", {})
        if not received.get("bits_per_second"):
            raise ContenderFailed("iperf3: nothing received: " + failure_text(text))
        guard.check()
    finally:
        server.stop()
    key = "iperf3_1" if parallel == 1 else f"iperf3_P{parallel}"
    return {key: {"gbit_s": received["bits_per_second"] / 1e9,
                  "sent_gbit_s": sent.get("bits_per_second", 0) / 1e9,
                  "retransmits": sent.get("retransmits"),
                  "seconds": received.get("seconds")}}


def stream_redis(c, port, requests, tmp, slack):
    """redis-benchmark SET and GET, REDIS_CLIENTS clients, REQUESTS each: requests per second
    and p50 latency."""
    ip = c["server_ip"]
    server = StreamServer("redis-server", c, port,
                          ["redis-server", "--port", str(port), "--bind", ip, "--save", "",
                           "--appendonly", "no", "--protected-mode", "no"], tmp,
                          printed="Ready to accept connections")
    try:
        guard = FallbackGuard(c)
        run = stream_client(c, ["redis-benchmark", "-h", ip, "-p", str(port),
                                "-c", str(REDIS_CLIENTS), "-n", str(requests),
                                "-t", "set,get", "--csv"], slack, "redis-benchmark")
        server.alive()
        rows = {}
        header = None
        for row in csv.reader(io.StringIO(run.stdout)):
            if row and row[0] == "test":
                header = row
            elif header and len(row) == len(header):
                rows[row[0]] = dict(zip(header, row))
        out = {}
        for test in ("SET", "GET"):
            if test not in rows:
                raise ContenderFailed(f"redis-benchmark: no {test} result: "
                                      + failure_text(run.text))
            r = rows[test]
            out[f"redis_{test.lower()}"] = {
                "requests_per_s": float(r["rps"]),
                "p50_us": 1000 * float(r["p50_latency_ms"]),
                "p99_us": 1000 * float(r["p99_latency_ms"]),
                "avg_us": 1000 * float(r["avg_latency_ms"]), "requests": requests}
        guard.check()
    finally:
        server.stop()
    return out


def lab_stream(quick, only=None):
    """Runs the stream contenders; a failure is recorded per contender and measurement."""
    for tool, package in (("sockperf", "sockperf"), ("iperf3", "iperf3"),
                          ("redis-server", "redis-server"), ("redis-benchmark", "redis-tools"),
                          ("taskset", "util-linux")):
        need(tool, package)
    if os.geteuid() != 0:
        return {"error": "needs root (network namespaces): run make bench as root"}
    rounds, seconds = (1, 1) if quick else (3, 3)
    requests = REDIS_REQUESTS[0] if quick else REDIS_REQUESTS[1]
    # Beyond the run itself: sockperf's warm-up and summary take about 2.5 s, DPDK start 0.3 s.
    slack = 12 if quick else 25
    LabServer.ready_s = 10 if quick else 20
    budget = STREAM_BUDGET_S[0] if quick else STREAM_BUDGET_S[1]
    contenders = stream_contenders()
    if only:
        contenders = {n: c for n, c in contenders.items() if n == "kernel" or n in only}
    plan = {kind: [n for n in (quick_list if quick else full) if n in contenders]
            for kind, (full, quick_list) in STREAM_PLAN.items()}
    try:
        brought_up = lab_up()
    except (subprocess.CalledProcessError, OSError) as e:
        return {"error": f"the lab is not up and {LAB_SCRIPT} up failed: {e}"}
    tmp = RESULTS / "stream-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {name: {"label": c["label"], "offloaded": c["offloaded"],
                      "targets": c["targets"], "errors": {}}
               for name, c in contenders.items()}
    samples = {name: {} for name in contenders}
    hung = {}  # contender -> the first measurement that hung
    port = 27000 + os.getpid() % 500 * 10
    P0_LOCK.parent.mkdir(parents=True, exist_ok=True)

    # (kind, result keys, function of contender and port)
    runs = [
        ("tcp_pp", STREAM_KEYS["tcp_pp"], lambda c, p: stream_pingpong(c, p, seconds, tmp, slack)),
        ("iperf3", ["iperf3_1"], lambda c, p: stream_iperf3(c, p, seconds, tmp, slack, 1)),
        ("iperf3", ["iperf3_P4"], lambda c, p: stream_iperf3(c, p, seconds, tmp, slack, 4)),
        ("redis", STREAM_KEYS["redis"],
         lambda c, p: stream_redis(c, p, requests, tmp, slack + requests // 4000)),
        ("iperf3_capped", STREAM_KEYS["iperf3_capped"],
         lambda c, p: stream_iperf3_capped(c, p, seconds, tmp, slack)),
    ]
    with open(P0_LOCK, "w") as lock:
        lock_wait = take_lock(lock)
        section_started = time.time()  # the budget counts from here, not from the wait
        try:
            # Rounds interleave the contenders so that drift hits all of them alike.
            for _ in range(rounds):
                for name, c in contenders.items():
                    for kind, keys, run in runs:
                        if name not in plan[kind]:
                            continue
                        errors = results[name]["errors"]
                        # One failure per contender and measurement: later rounds skip it (a
                        # hang must not cost its timeout three times). In a quick run, a
                        # contender that hung once skips its remaining stream measurements.
                        if any(k in errors for k in keys):
                            continue
                        if time.time() - section_started > budget:
                            for k in keys:
                                errors[k] = (f"not run: the section's time budget ({budget} s) "
                                             "was spent")
                            continue
                        if quick and hung.get(name):
                            for k in keys:
                                errors[k] = f"not run: {hung[name]} hung first (quick run)"
                            continue
                        port += 1
                        try:
                            for key, r in run(c, port).items():
                                samples[name].setdefault(key, []).append(r)
                        except ContenderFailed as e:
                            for k in keys:
                                errors[k] = str(e)
                            if isinstance(e, Hung):
                                hung.setdefault(name, keys[0])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            shutil.rmtree(tmp, ignore_errors=True)
            if brought_up:
                subprocess.run([str(LAB_SCRIPT), "down"], stdout=subprocess.DEVNULL)
    for name, per in samples.items():
        for key, runs_ in per.items():
            values = {}
            for r in runs_:
                for f, v in r.items():
                    if v is not None:
                        values.setdefault(f, []).append(v)
            results[name][key] = {f: statistics.median(v) for f, v in values.items()}
            results[name][key]["rounds"] = len(runs_)
    return {"contenders": results, "quick": quick, "rounds": rounds, "seconds": seconds,
            "lock_wait_s": lock_wait,
            "plan": plan, "server_cpu": int(SERVER_CPU), "client_cpu": int(CLIENT_CPU),
            "latency": "sockperf TCP ping-pong, one-way (round trip / 2), microseconds",
            "throughput": "iperf3 receiver Gbit/s over the client's -t seconds",
            "redis": {"clients": REDIS_CLIENTS, "requests_per_test": requests,
                      "measure": "redis-benchmark --csv: requests per second; latency in us"}}


STREAM_MEASURES = [
    # (label, key, field, better, target ratio of sluice/kernel or None)
    ("TCP pp 64 B avg (us)", "tcp_pp_64B", "avg", "lower", None),
    ("TCP pp 64 B p50 (us)", "tcp_pp_64B", "p50", "lower", 0.5),
    ("TCP pp 64 B p99 (us)", "tcp_pp_64B", "p99", "lower", 1.0),
    ("TCP pp 64 B p99.9 (us)", "tcp_pp_64B", "p999", "lower", None),
    ("iperf3 1 stream (Gbit/s)", "iperf3_1", "gbit_s", "higher", None),
    ("iperf3 -P 4 (Gbit/s)", "iperf3_P4", "gbit_s", "higher", None),
    (f"iperf3, ports at {CAPPED_MBIT} Mb/s (Gbit/s)", "iperf3_capped", "gbit_s", "higher", None),
    ("redis SET (kreq/s)", "redis_set", "requests_per_s", "higher", None),
    ("redis SET p50 (us)", "redis_set", "p50_us", "lower", None),
    ("redis GET (kreq/s)", "redis_get", "requests_per_s", "higher", None),
    ("redis GET p50 (us)", "redis_get", "p50_us", "lower", None),
]

LAB_STREAM_PANELS = [
    ("TCP ping-pong 64 B (sockperf --tcp), one-way latency (us, log scale, lower is better)",
     [(f, "tcp_pp_64B", f) for f in ("avg", "p50", "p99", "p999")], True),
    ("iperf3, receiver (Gbit/s, higher is better)",
     [("1 stream", "iperf3_1", "gbit_s"), ("-P 4", "iperf3_P4", "gbit_s"),
      (f"ports capped {CAPPED_MBIT} Mb/s", "iperf3_capped", "gbit_s")], False),
    (f"redis-benchmark, {REDIS_CLIENTS} clients (kreq/s, higher is better)",
     [("SET", "redis_set", "requests_per_s"), ("GET", "redis_get", "requests_per_s")], False),
]


def print_stream_table(result, raw_full=None):
    print("\nLab streams, sl-h1 -> sl-h2: kernel TCP against sluice streams (its protocol over "
          "UDP); server CPU 1, client CPU 0; ratio = sluice/kernel")
    if "error" in result:
        print(f"  not run: {result['error']}")
        return
    print_measures(result, STREAM_MEASURES)
    print("udp-mode: sluice streams over kernel UDP sockets between the kernel IPs. 2 ports: "
          "af_packet on both data ports of each host, one path per port (multipath). '-': not "
          "run for that contender" + (" in a quick run." if result.get("quick") else "."))
    print(f"ports capped: sl-h1's switch ports each policed to {CAPPED_MBIT} Mbit/s (sluice-lab "
          "fault rate): the kernel and af_packet use one port, 2 ports both.")
    print("latency is one-way (round trip / 2) as sockperf reports it; iperf3 is the "
          f"receiver's rate; redis-benchmark runs {REDIS_CLIENTS} clients, "
          f"{result['redis']['requests_per_test']} requests per test.")
    # Stream bulk throughput against what raw DPDK moves in full frames between the same ports
    # (the UDP section measures it).
    for backend, r in (raw_full or {}).items():
        got = lab_value(result, f"sluice_{backend}", "iperf3_1", "gbit_s")
        if "rx_pps" in r and got is not None:
            ratio = got / raw_gbit_s(r)
            print(f"iperf3 1 stream over {backend}: {got:.2f} Gbit/s = {ratio:.2f}x raw DPDK's "
                  f"{raw_gbit_s(r):.2f} Gbit/s of payload in full frames (target >= 0.8: "
                  f"{'met' if ratio >= 0.8 else 'not met'})")
    print_errors(result)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes")
    ap.add_argument("--only", choices=["passthrough", "lab-udp", "lab-stream"],
                    help="run one section only")
    ap.add_argument("--contenders", metavar="NAME,...",
                    help="lab sections: these sluice contenders only (the kernel always runs): "
                         "sluice_af_packet, sluice_af_xdp, sluice_udp_mode, sluice_two_ports")
    ap.add_argument("--demo", action="store_true",
                    help="make demo: one short side-by-side run, no JSON")
    args = ap.parse_args()
    if args.demo:
        demo()
        return
    only = set(args.contenders.split(",")) if args.contenders else None
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
    lab_sections = [s for s in ("lab-udp", "lab-stream") if args.only in (None, s)]
    # The lab comes up once for both lab sections (when it was missing) and goes down at the end.
    brought_up = False
    try:
        if lab_sections and os.geteuid() == 0:
            try:
                brought_up = lab_up()
            except (subprocess.CalledProcessError, OSError):
                pass  # each section tries again and reports the failure
        for section in lab_sections:
            lab_started = time.time()
            if section == "lab-udp":
                lab = lab_udp(args.quick, only)
                print_lab_table(lab)
            else:
                lab = lab_stream(args.quick, only)
                raw_full = {backend: frames.get(f"{RAW_FULL_FRAME}B", {}) for backend, frames
                            in report.get("lab_udp", {}).get("raw_dpdk", {}).items()}
                print_stream_table(lab, raw_full)
            lab["elapsed_s"] = round(time.time() - lab_started, 1)
            lab["date"] = report["date"]
            report[section.replace("-", "_")] = lab
    finally:
        if brought_up:
            subprocess.run([str(LAB_SCRIPT), "down"], stdout=subprocess.DEVNULL)
    sections = [(report[k], panels) for k, panels in
                (("lab_udp", LAB_UDP_PANELS), ("lab_stream", LAB_STREAM_PANELS)) if k in report]
    RESULTS.mkdir(exist_ok=True)
    if any("contenders" in r for r, _ in sections):
        # One picture for both lab sections (the name predates the stream section).
        lab_svg(sections, RESULTS / "lab_udp.svg", report["date"])
        print(f"wrote {RESULTS / 'lab_udp.svg'}")
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    waited = sum(report.get(k, {}).get("lock_wait_s", 0) for k in ("lab_udp", "lab_stream"))
    print(f"\nwrote {RESULTS / 'results.json'} in {time.time() - started:.0f} s"
          + (f" ({waited:.0f} s of it waiting for {P0_LOCK}: the lab was in use)"
             if waited >= 1 else ""))


if __name__ == "__main__":
    main()
