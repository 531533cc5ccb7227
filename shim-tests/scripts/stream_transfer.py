"""One-way stream transfer for the lab tests, byte-exact by SHA-256.

    stream_transfer.py sink ADDRESS PORT
        accepts one connection, reads to the end, prints "got DIGEST LENGTH" and
        "longest_gap_ms MS" (the longest time without data), the stack's counters of
        the connection, and answers "done".
    stream_transfer.py source ADDRESS PORT BYTES [RATE]
        connects, prints "connected", sends BYTES pseudo-random bytes (at most RATE
        bytes/s when given), half-closes, waits for "done", prints "sent DIGEST
        LENGTH" and the stack's counters of the connection.

The counters are the "stream " lines of this process's sluice-stat snapshot (when
it runs under sluice), read after the snapshot's refresh period.
"""

import hashlib
import os
import random
import socket
import sys
import time

CHUNK = 1 << 16


def print_stream_counters():
    time.sleep(0.6)  # the snapshot is refreshed every 250 ms
    try:
        with open("/dev/shm/sluice/%d.stat" % os.getpid()) as f:
            for line in f:
                if line.startswith("stream "):
                    print(line.strip(), flush=True)
    except OSError:
        pass


def sink(ip, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(1)
    print("listening", flush=True)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(120)
    h, n, gap, last = hashlib.sha256(), 0, 0.0, None
    while True:
        d = c.recv(CHUNK)
        now = time.monotonic()
        if not d:
            break
        if last is not None:
            gap = max(gap, now - last)
        last = now
        h.update(d)
        n += len(d)
    print("got", h.hexdigest(), n, flush=True)
    print("longest_gap_ms %.1f" % (gap * 1e3), flush=True)
    print_stream_counters()
    c.sendall(b"done")
    c.close()


def source(ip, port, n, rate=None):
    data = random.Random(7).randbytes(n)
    c = socket.create_connection((ip, port), timeout=120)
    print("connected", flush=True)
    if rate is None:
        c.sendall(data)
    else:
        start, sent = time.monotonic(), 0
        while sent < n:
            if sent + CHUNK > int((time.monotonic() - start) * rate):
                time.sleep(0.002)
                continue
            c.sendall(data[sent:sent + CHUNK])
            sent += CHUNK
    c.shutdown(socket.SHUT_WR)
    assert c.recv(16) == b"done"
    print("sent", hashlib.sha256(data).hexdigest(), n, flush=True)
    print_stream_counters()


if __name__ == "__main__":
    role, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "sink":
        sink(ip, port)
    else:
        source(ip, port, int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
