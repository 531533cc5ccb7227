#!/usr/bin/env python3
"""A steady, bounded UDP flow through an echo server, with its losses and stalls.

    udp_flow.py echo IP PORT
        Echoes every datagram back to its sender (for ever; the caller kills it).
    udp_flow.py send LOCAL_IP DST_IP PORT SECONDS RATE
        Sends RATE sequence-numbered datagrams a second for SECONDS, collects the echoes, and
        prints one line per stall (no echo for more than 20 ms) and a summary:
            gap start_ms=S len_ms=L lost=N
            summary sent=N received=N lost=N longest_gap_ms=L
        `lost` of a gap counts the datagrams sent during it whose echo never came.
"""
import socket
import struct
import sys
import time

GAP_S = 0.020


def echo(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def send(local_ip, dst_ip, port, seconds, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((local_ip, 0))
    s.setblocking(False)
    total = int(seconds * rate)
    echoed = {}
    start = time.monotonic()
    sent = 0

    def collect(now):
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                return
            seq = struct.unpack("!Q", data[:8])[0]
            echoed.setdefault(seq, now)

    while True:
        now = time.monotonic() - start
        if now >= seconds + 0.5:
            break
        due = min(total, int(now * rate) + 1)
        while sent < due:
            try:
                s.sendto(struct.pack("!Q", sent) + b"x" * 56, (dst_ip, port))
            except BlockingIOError:
                break
            sent += 1
        collect(now)
        time.sleep(0.0002)
    arrivals = sorted(echoed.values())
    longest = 0.0
    for before, after in zip(arrivals, arrivals[1:]):
        gap = after - before
        longest = max(longest, gap)
        if gap > GAP_S:
            # Datagrams sent while no echo came back, whose echo never came.
            first, last = int(before * rate), int(after * rate)
            lost = sum(1 for q in range(first, min(last + 1, sent)) if q not in echoed)
            print(f"gap start_ms={before * 1000:.0f} len_ms={gap * 1000:.1f} lost={lost}")
    print(
        f"summary sent={sent} received={len(echoed)} lost={sent - len(echoed)} "
        f"longest_gap_ms={longest * 1000:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "send":
        a = sys.argv[2:]
        send(a[0], a[1], int(a[2]), float(a[3]), float(a[4]))
    else:
        sys.exit(__doc__)
