# The application side of tests/offloaded_udp.rs: runs in sl-h1 under libsluice.so with the
# data port p0=10.77.2.1/24 in DPDK mode, against the kernel echo peer (udp_peer.py) in
# sl-h3. Each check prints "ok NAME"; the first failure raises (non-zero exit).
import errno
import fcntl
import os
import select
import socket
import struct
import sys
import termios
import threading
import time

PEER = (sys.argv[1], int(sys.argv[2]))
CLOSED = (sys.argv[1], int(sys.argv[3]))  # nothing listens there
DATA_IP = sys.argv[4]
WHAT = sys.argv[5]  # "semantics", "fragments", "signals", "events", "mcast-procs" ("mcast-member")
# The same peer through its management address, which the policy keeps in the kernel.
KERNEL_PEER = (sys.argv[6], PEER[1])


def ok(name):
    print("ok " + name, flush=True)


def udp():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def asyncio_round_trip(loop):
    """One datagram to the echo and back through an asyncio datagram endpoint run on `loop`;
    returns (data, sender)."""
    import asyncio

    class Client(asyncio.DatagramProtocol):
        def __init__(self, fut):
            self.fut = fut

        def connection_made(self, transport):
            transport.sendto(b"asyncio")

        def datagram_received(self, data, addr):
            self.fut.set_result((data, addr))

    async def one():
        fut = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Client(fut), local_addr=(DATA_IP, 0), remote_addr=PEER)
        try:
            return await asyncio.wait_for(fut, 5)
        finally:
            transport.close()

    return loop.run_until_complete(one())


def second_process(ip, what, *args, ready):
    """This script again, as another process under sluice with its own stack and data IP
    `ip` on p0, in mode `what`; returns it once its first line is `ready` (30 s at most)."""
    import subprocess

    env = dict(os.environ, SLUICE_IFACES="p0=%s/24" % ip)
    other = subprocess.Popen(
        [sys.executable, __file__, sys.argv[1], sys.argv[2], sys.argv[3], ip, what,
         sys.argv[6], *args],
        env=env, stdout=subprocess.PIPE, text=True)
    r, _, _ = select.select([other.stdout], [], [], 30)
    line = other.stdout.readline() if r else ""
    if line.strip() != ready:
        other.kill()
        other.wait()
        raise AssertionError("the second process did not start: %r" % line)
    return other


def wait_readable(s, timeout=5.0):
    r, _, _ = select.select([s], [], [], timeout)
    assert r == [s], "no datagram within %.1f s" % timeout


if WHAT == "fork-exit":
    # A forked child that exits through exit() runs the exit hooks it inherited; the parent's
    # port (af_xdp here: closing it would detach the XDP program) must keep working.
    s = udp()
    s.bind((DATA_IP, 0))
    s.settimeout(5)
    s.sendto(b"before the fork", PEER)
    assert s.recv(100) == b"before the fork"
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # exit(), not _exit(): atexit handlers run
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    for i in range(3):
        s.sendto(b"after the child exited %d" % i, PEER)
        assert s.recv(100) == b"after the child exited %d" % i
    ok("a forked child's exit leaves the parent's port working")
    s.sendto(b"quit", PEER)
    print("all done", flush=True)
    sys.exit(0)

if WHAT == "isolation-other":
    # Started by "isolation": a second process with its own stack and data IP on the same port
    # p0, bound to the same UDP port on INADDR_ANY. It must receive nothing meant for the first.
    gport = int(sys.argv[7])
    m = udp()
    m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    m.bind(("0.0.0.0", gport))
    print("bound", flush=True)
    m.settimeout(3)
    try:
        data, sender = m.recvfrom(100)
        print("received %r from %r" % (data, sender), flush=True)
        sys.exit(1)
    except socket.timeout:
        print("nothing received", flush=True)
        sys.exit(0)

if WHAT == "isolation":
    # Two sluice processes share the interface p0 (each its own MAC and IP): traffic for one is
    # never delivered to the other, even on the same UDP port.
    OTHER_IP = "10.77.2.11"
    a = udp()
    a.bind((DATA_IP, 0))
    aport = a.getsockname()[1]
    a.settimeout(5)
    other = second_process(OTHER_IP, "isolation-other", str(aport), ready="bound")
    try:
        for i in range(20):
            a.sendto(b"for the first process %d" % i, PEER)
            assert a.recv(100) == b"for the first process %d" % i
        out, _ = other.communicate(timeout=15)
        assert other.returncode == 0 and "nothing received" in out, (other.returncode, out)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    ok("a process sharing the interface received none of the other's 20 datagrams")
    print("all done", flush=True)
    sys.exit(0)

if WHAT == "mcast-member":
    # Started by "mcast-procs" as a second process with its own stack (DATA_IP is its own):
    # joins GROUP on PORT and waits for one datagram.
    group, gport = sys.argv[7], int(sys.argv[8])
    m = udp()
    m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    m.bind(("0.0.0.0", gport))
    m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(DATA_IP)))
    print("joined", flush=True)
    m.settimeout(10)
    data, sender = m.recvfrom(100)
    assert data == b"to the group" and sender[0] == PEER[0], (data, sender)
    print("member got it", flush=True)
    sys.exit(0)

if WHAT == "mcast-procs":
    # One datagram from a kernel sender to a group reaches every member: two sockets of this
    # process (SO_REUSEADDR on one port) and a second process under sluice with its own stack
    # and data IP on the same port p0.
    GROUP = "239.77.0.2"
    MEMBER_IP = "10.77.2.11"
    members = []
    for _ in range(2):
        g = udp()
        g.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        g.bind(("0.0.0.0", members[0].getsockname()[1] if members else 0))
        g.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(DATA_IP)))
        g.settimeout(5)
        members.append(g)
    gport = members[0].getsockname()[1]
    child = second_process(MEMBER_IP, "mcast-member", GROUP, str(gport), ready="joined")
    try:
        ok("a second process with its own stack joined the group")
        u = udp()
        u.bind((DATA_IP, 0))
        u.sendto(("mcast %s %d %s" % (GROUP, gport, PEER[0])).encode(), PEER)
        for i, g in enumerate(members):
            data, sender = g.recvfrom(100)
            assert data == b"to the group" and sender[0] == PEER[0], (i, data, sender)
        out, _ = child.communicate(timeout=15)
        assert child.returncode == 0 and "member got it" in out, (child.returncode, out)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    ok("one datagram to the group reached two sockets here and the other process")
    print("all done", flush=True)
    sys.exit(0)

if WHAT == "events":
    # Event loops over offloaded sockets: one fd in several epoll sets, epoll sets inside
    # other epoll sets and poll sets, fds closed while registered, dup and its kin, threads,
    # and asyncio with each selector.
    import selectors

    s = udp()
    s.bind((DATA_IP, 0))
    s.settimeout(5)

    def echo(sock, payload):
        sock.sendto(payload, PEER)
        got = sock.recv(100)
        assert got == payload, (payload, got)

    e1, e2 = select.epoll(), select.epoll()
    e1.register(s, select.EPOLLIN)
    e2.register(s, select.EPOLLIN)
    s.sendto(b"two sets", PEER)
    assert e1.poll(5) == [(s.fileno(), select.EPOLLIN)]
    assert e2.poll(5) == [(s.fileno(), select.EPOLLIN)]
    assert s.recv(100) == b"two sets"
    assert e1.poll(0) == [] and e2.poll(0) == []
    ok("one fd in two epoll sets")

    inner = select.epoll()
    inner.register(s, select.EPOLLIN)
    outer = select.epoll()
    outer.register(inner.fileno(), select.EPOLLIN)
    watcher = select.poll()
    watcher.register(inner.fileno(), select.POLLIN)
    assert outer.poll(0.1) == [] and watcher.poll(100) == []
    s.sendto(b"nested", PEER)
    assert outer.poll(5) == [(inner.fileno(), select.EPOLLIN)]
    assert watcher.poll(5000) == [(inner.fileno(), select.POLLIN)]
    assert inner.poll(0) == [(s.fileno(), select.EPOLLIN)]
    # Level-triggered all the way: still ready until received, whoever else looked.
    assert e1.poll(0) == [(s.fileno(), select.EPOLLIN)]
    assert outer.poll(0) == [(inner.fileno(), select.EPOLLIN)]
    assert s.recv(100) == b"nested"
    assert inner.poll(0) == []
    ok("an epoll set inside an epoll set and a poll set")

    # A datagram that arrived while nobody waited, after another wait looked at the stack.
    s.sendto(b"while away", PEER)
    assert e2.poll(5) == [(s.fileno(), select.EPOLLIN)]
    assert outer.poll(2) == [(inner.fileno(), select.EPOLLIN)], "the outer set missed it"
    assert watcher.poll(2000) == [(inner.fileno(), select.POLLIN)], "the poll set missed it"
    assert s.recv(100) == b"while away"
    ok("a nested set reports data another wait saw first")
    for ep in (e1, e2, inner, outer):
        ep.close()

    c = udp()
    c.bind((DATA_IP, 0))
    e3 = select.epoll()
    e3.register(c, select.EPOLLIN)
    cfd = c.fileno()
    c.close()
    assert e3.poll(0.1) == []
    try:
        e3.unregister(cfd)
        raise AssertionError("unregistering a closed fd did not fail")
    except OSError as err:
        assert err.errno == errno.EBADF, err
    e3.register(s, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    e3.close()
    ok("an fd closed while registered; EPOLLEXCLUSIVE accepted")

    d = socket.socket(fileno=os.dup(s.fileno()))
    d.settimeout(5)
    echo(d, b"via the dup")
    assert d.getsockname() == s.getsockname()
    d.close()
    echo(s, b"dup closed")
    f = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100)
    fc = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)
    assert f >= 100 and fc >= 100 and fcntl.fcntl(fc, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    fs = socket.socket(fileno=f)
    fs.settimeout(5)
    echo(fs, b"F_DUPFD")
    fs.close()
    os.close(fc)
    echo(s, b"all dups closed")
    a = udp()
    a.bind((DATA_IP, 0))
    aport = a.getsockname()[1]
    b = udp()
    b.bind((DATA_IP, 0))
    os.dup2(b.fileno(), a.fileno())  # closes the socket that was on a's fd
    assert a.getsockname() == b.getsockname()
    freed = udp()
    freed.bind((DATA_IP, aport))
    for sock in (a, b, freed):
        sock.close()
    ok("dup, F_DUPFD, F_DUPFD_CLOEXEC, dup2 over an offloaded fd")

    errors = []

    def worker(i):
        try:
            w = udp()
            w.bind((DATA_IP, 0))
            w.settimeout(5)
            for k in range(200):
                echo(w, b"thread %d datagram %d" % (i, k))
            w.close()
        except Exception as err:
            errors.append((i, repr(err)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads), errors[:3]
    ok("8 threads with a socket each, 200 round trips each")

    import asyncio

    for selector in (selectors.SelectSelector, selectors.PollSelector, selectors.EpollSelector):
        loop = asyncio.SelectorEventLoop(selector())
        assert asyncio_round_trip(loop) == (b"asyncio", PEER)
        loop.close()
        ok("asyncio with %s" % selector.__name__)
    print("all done", flush=True)
    sys.exit(0)

if WHAT == "signals":
    # Every signal interrupts a blocking wait, whenever it comes: during the spin on the stack,
    # in a sleep, or between two sleeps (run with a long SLUICE_SPIN_US, so that most of the
    # wait is spent in user space). SO_RCVTIMEO (2 s) ends a wait the signal failed to end.
    import random
    import signal

    class Interrupted(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(7)
    s = udp()
    s.bind((DATA_IP, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 2, 0))
    p = select.poll()
    p.register(s, select.POLLIN)
    ep = select.epoll()
    ep.register(s, select.EPOLLIN)
    waits = {
        "recv": lambda: s.recv(10),
        "poll": lambda: p.poll(2000),
        "epoll": lambda: ep.poll(2),
        "select": lambda: select.select([s], [], [], 2),
    }
    for name, wait in waits.items():
        for i in range(40):
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0005, 0.045))
            start = time.monotonic()
            try:
                got = wait()
                raise AssertionError("%s returned %r, not EINTR (alarm %d)" % (name, got, i))
            except Interrupted:
                pass
            except BlockingIOError:
                raise AssertionError("alarm %d did not interrupt %s (SO_RCVTIMEO ended it)" % (i, name))
            assert time.monotonic() - start < 1.0, (name, i, time.monotonic() - start)
        ok("40 alarms at random moments each interrupt a blocking %s" % name)

    # SA_RESTART: a receive restarts after the handler, unless SO_RCVTIMEO is set; poll
    # never restarts. (The handler raises, so the time it is seen tells which happened.)
    signal.siginterrupt(signal.SIGALRM, False)

    def interrupted_after(wait):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        try:
            wait()
        except Interrupted:
            return time.monotonic() - start
        raise AssertionError("the handler never ran")

    r = udp()
    r.bind((DATA_IP, 0))
    threading.Timer(0.4, lambda: r.sendto(b"late", PEER)).start()
    took = interrupted_after(lambda: r.recv(10))
    assert took >= 0.3, "recv was not restarted under SA_RESTART (ended after %.3f s)" % took
    ok("SA_RESTART restarts a blocking recv")
    took = interrupted_after(lambda: s.recv(10))
    assert took < 0.3, "recv with SO_RCVTIMEO restarted under SA_RESTART (%.3f s)" % took
    took = interrupted_after(lambda: p.poll(2000))
    assert took < 0.3, "poll restarted under SA_RESTART (%.3f s)" % took
    ok("SA_RESTART does not restart recv with SO_RCVTIMEO, nor poll")
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    print("all done", flush=True)
    sys.exit(0)

if WHAT == "fragments":
    # Datagrams larger than the MTU go out and come back in fragments.
    f = udp()
    f.bind((DATA_IP, 0))
    f.settimeout(5)
    for size in (1473, 2000, 4000, 9000, 30000, 61332):
        big = bytes(i * 7 % 251 for i in range(size))
        f.sendto(big, PEER)
        data, sender = f.recvfrom(65535)
        assert data == big and sender == PEER, (size, len(data), sender)
        ok("%d-byte datagram (fragmented both ways)" % size)
    f.sendto(b"quit", PEER)
    print("all done", flush=True)
    sys.exit(0)

# Options set on the kernel socket before the offload decision carry over.
s = udp()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((DATA_IP, 0))
host, port = s.getsockname()
assert host == DATA_IP and port != 0, s.getsockname()
ok("explicit bind, getsockname %s:%d" % (host, port))
assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 131072, \
    s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
assert s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM
ok("options carried over (SO_RCVBUF 131072, SO_REUSEADDR)")

# Blocking sendto/recvfrom through the stack.
s.sendto(b"hello", PEER)
data, sender = s.recvfrom(100)
assert (data, sender) == (b"hello", PEER), (data, sender)
ok("sendto/recvfrom")

# MSG_DONTWAIT on an empty queue.
try:
    s.recv(100, socket.MSG_DONTWAIT)
    raise AssertionError("MSG_DONTWAIT on an empty queue returned data")
except BlockingIOError:
    pass
ok("MSG_DONTWAIT -> EAGAIN")

# MSG_PEEK leaves the datagram; FIONREAD gives its size.
s.sendto(b"x" * 100, PEER)
wait_readable(s)
buf = bytearray(4)
fcntl.ioctl(s, termios.FIONREAD, buf)
assert struct.unpack("i", buf)[0] == 100, struct.unpack("i", buf)
ok("FIONREAD")
assert s.recv(10, socket.MSG_PEEK) == b"x" * 10
assert s.recv(1000) == b"x" * 100
ok("MSG_PEEK")

# Truncation: MSG_TRUNC in msg_flags, and the MSG_TRUNC flag returns the real length.
s.sendto(b"y" * 100, PEER)
wait_readable(s)
data, anc, flags, sender = s.recvmsg(10)
assert data == b"y" * 10 and flags & socket.MSG_TRUNC and sender == PEER, (data, flags, sender)
s.sendto(b"z" * 100, PEER)
wait_readable(s)
small = bytearray(10)
n = s.recv_into(small, 10, socket.MSG_TRUNC)
assert n == 100 and bytes(small) == b"z" * 10, n
ok("MSG_TRUNC (msg_flags and return value)")

# connect, send/recv, getpeername; then AF_UNSPEC disconnect.
c = udp()
c.connect(PEER)
assert c.getpeername() == PEER
assert c.getsockname()[0] == DATA_IP, c.getsockname()
c.send(b"connected")
assert c.recv(100) == b"connected"
os.write(c.fileno(), b"via write")
assert os.read(c.fileno(), 100) == b"via write"
ok("connect, send/recv, write/read, getpeername")

# connect(AF_UNSPEC) dissolves the association (Python cannot say it: through libc).
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
unspec = ctypes.create_string_buffer(struct.pack("=H14x", socket.AF_UNSPEC), 16)
assert libc.connect(c.fileno(), unspec, 16) == 0, ctypes.get_errno()
try:
    c.getpeername()
    raise AssertionError("getpeername after AF_UNSPEC")
except OSError as err:
    assert err.errno == errno.ENOTCONN, err
try:
    c.send(b"nowhere")
    raise AssertionError("send without a peer")
except OSError as err:
    assert err.errno == errno.EDESTADDRREQ, err
ok("connect(AF_UNSPEC) disconnects (ENOTCONN, EDESTADDRREQ)")

# sendmmsg and recvmmsg (MSG_WAITFORONE), through libc as Python has neither.
class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


def sockaddr_in(addr):
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(addr[1]), socket.inet_aton(addr[0]))


MSG_WAITFORONE = 0x10000  # not in Python's socket module
mm = udp()
mm.bind((DATA_IP, 0))
dst = ctypes.create_string_buffer(sockaddr_in(PEER), 16)
payloads = [b"first", b"second!", b"third datagram"]
bufs = [ctypes.create_string_buffer(p, len(p)) for p in payloads]
iovs = [Iovec(ctypes.cast(b, ctypes.c_void_p), len(p)) for b, p in zip(bufs, payloads)]
msgs = (Mmsghdr * 3)()
for i in range(3):
    msgs[i].hdr.name = ctypes.cast(dst, ctypes.c_void_p)
    msgs[i].hdr.namelen = 16
    msgs[i].hdr.iov = ctypes.pointer(iovs[i])
    msgs[i].hdr.iovlen = 1
assert libc.sendmmsg(mm.fileno(), msgs, 3, 0) == 3, ctypes.get_errno()
assert [msgs[i].len for i in range(3)] == [len(p) for p in payloads]
got = []
deadline = time.monotonic() + 5
while len(got) < 3 and time.monotonic() < deadline:
    rbufs = [ctypes.create_string_buffer(100) for _ in range(4)]
    riovs = [Iovec(ctypes.cast(b, ctypes.c_void_p), 100) for b in rbufs]
    names = [ctypes.create_string_buffer(16) for _ in range(4)]
    rmsgs = (Mmsghdr * 4)()
    for i in range(4):
        rmsgs[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p)
        rmsgs[i].hdr.namelen = 16
        rmsgs[i].hdr.iov = ctypes.pointer(riovs[i])
        rmsgs[i].hdr.iovlen = 1
    n = libc.recvmmsg(mm.fileno(), rmsgs, 4, MSG_WAITFORONE, None)
    assert n >= 1, ctypes.get_errno()
    for i in range(n):
        assert rmsgs[i].hdr.namelen == 16 and names[i].raw == sockaddr_in(PEER)
        got.append(rbufs[i].raw[:rmsgs[i].len])
assert got == payloads, got
ok("sendmmsg, recvmmsg with MSG_WAITFORONE")

# A send to a closed port: ICMP port unreachable becomes ECONNREFUSED.
e = udp()
e.connect(CLOSED)
e.send(b"anyone?")
deadline = time.monotonic() + 5
err = 0
while time.monotonic() < deadline and err == 0:
    select.select([e], [], [], 0.2)
    err = e.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
assert err == errno.ECONNREFUSED, err
ok("SO_ERROR ECONNREFUSED after a send to a closed port")

# Readiness mixed with a pipe: select, poll, epoll.
rp, wp = os.pipe()
r, w, x = select.select([s, rp], [], [], 0)
assert (r, w, x) == ([], [], []), r
os.write(wp, b"p")
r, _, _ = select.select([s, rp], [], [], 0)
assert r == [rp], r
os.read(rp, 1)
s.sendto(b"ready?", PEER)
r, _, _ = select.select([s, rp], [], [], 5)
assert r == [s], r
assert s.recv(100) == b"ready?"
ok("select with a pipe")

p = select.poll()
p.register(s, select.POLLIN)
p.register(rp, select.POLLIN)
assert p.poll(0) == []
s.sendto(b"poll", PEER)
events = p.poll(5000)
assert events == [(s.fileno(), select.POLLIN)], events
assert s.recv(100) == b"poll"
os.write(wp, b"p")
assert p.poll(0) == [(rp, select.POLLIN)], p.poll(0)
os.read(rp, 1)
ok("poll with a pipe")

ep = select.epoll()
ep.register(s, select.EPOLLIN)
ep.register(rp, select.EPOLLIN)
try:
    ep.register(s, select.EPOLLIN)
    raise AssertionError("a second EPOLL_CTL_ADD did not fail")
except FileExistsError:
    pass
assert ep.poll(0) == []
s.sendto(b"epoll", PEER)
events = ep.poll(5)
assert events == [(s.fileno(), select.EPOLLIN)], events
assert s.recv(100) == b"epoll"
os.write(wp, b"p")
assert ep.poll(0) == [(rp, select.EPOLLIN)], ep.poll(0)
os.read(rp, 1)
ep.modify(s, select.EPOLLIN | select.EPOLLOUT)
assert ep.poll(0) == [(s.fileno(), select.EPOLLOUT)], ep.poll(0)
ep.unregister(s)
try:
    ep.unregister(s)
    raise AssertionError("a second EPOLL_CTL_DEL did not fail")
except FileNotFoundError:
    pass
try:
    ep.modify(s, select.EPOLLIN)
    raise AssertionError("EPOLL_CTL_MOD of an unregistered fd did not fail")
except FileNotFoundError:
    pass
ep.close()
ok("epoll with a pipe (ADD/MOD/DEL, EEXIST/ENOENT)")

# A signal interrupts a blocking receive (SO_RCVTIMEO bounds the check if it does not).
import signal


class Interrupted(Exception):
    pass


def on_alarm(signum, frame):
    raise Interrupted()


signal.signal(signal.SIGALRM, on_alarm)
q = udp()
q.bind((DATA_IP, 0))
q.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    q.recv(10)
    raise AssertionError("recv returned data")
except Interrupted:
    pass
except BlockingIOError:
    raise AssertionError("the signal did not interrupt recv (SO_RCVTIMEO ended it)")
signal.signal(signal.SIGALRM, signal.SIG_DFL)
ok("a signal interrupts a blocking recv")

# An fd added to epoll before it was offloaded moves with it.
m = udp()
ep = select.epoll()
ep.register(m, select.EPOLLIN)
m.bind((DATA_IP, 0))
assert ep.poll(0) == []
m.sendto(b"migrated", PEER)
assert ep.poll(5) == [(m.fileno(), select.EPOLLIN)]
assert m.recv(100) == b"migrated"
ep.close()
ok("epoll registration made before the offload follows it")

# asyncio (epoll selector) with a datagram endpoint.
import asyncio

loop = asyncio.new_event_loop()
assert asyncio_round_trip(loop) == (b"asyncio", PEER)
loop.close()
ok("asyncio datagram endpoint")

# Non-blocking mode set before the decision is kept.
n = udp()
n.setblocking(False)
n.bind((DATA_IP, 0))
try:
    n.recv(10)
    raise AssertionError("non-blocking recv returned data")
except BlockingIOError:
    pass
ok("O_NONBLOCK carried over")

# A timeout (Python waits with poll() on a non-blocking fd).
t = udp()
t.bind((DATA_IP, 0))
t.settimeout(0.2)
try:
    t.recv(10)
    raise AssertionError("recv with a timeout returned data")
except socket.timeout:
    pass
t.sendto(b"timeout", PEER)
assert t.recv(100) == b"timeout"
ok("settimeout (poll-based wait)")

# INADDR_ANY: offloaded paths and kernel paths (loopback) both arrive on one socket.
a = udp()
a.bind(("0.0.0.0", 0))
any_port = a.getsockname()[1]
assert a.getsockname() == ("0.0.0.0", any_port), a.getsockname()
a.sendto(b"from the stack", PEER)
data, sender = a.recvfrom(100)
assert (data, sender) == (b"from the stack", PEER), (data, sender)
k = udp()
k.sendto(b"from loopback", ("127.0.0.1", any_port))
data, sender = a.recvfrom(100)
assert data == b"from loopback" and sender[0] == "127.0.0.1", (data, sender)
ok("INADDR_ANY receives from the stack and from the kernel")


def later(sock, payload, dst):
    time.sleep(0.3)
    sock.sendto(payload, dst)


threading.Thread(target=later, args=(k, b"late loopback", ("127.0.0.1", any_port))).start()
data, sender = a.recvfrom(100)
assert data == b"late loopback", data
threading.Thread(target=later, args=(a, b"late echo", PEER)).start()
data, sender = a.recvfrom(100)
assert (data, sender) == (b"late echo", PEER), (data, sender)
ok("INADDR_ANY blocking recv wakes for either path")

a.sendto(b"via the kernel", KERNEL_PEER)
data, sender = a.recvfrom(100)
assert (data, sender) == (b"via the kernel", KERNEL_PEER), (data, sender)
ok("sendto a kernel-kept destination goes through the shadow")

kc = udp()
kc.bind((DATA_IP, 0))
kc.connect(KERNEL_PEER)
assert kc.getpeername() == KERNEL_PEER, kc.getpeername()
kc.send(b"kernel peer")
assert kc.recv(100) == b"kernel peer"
ok("connect to a kernel-kept peer is served by the shadow")

ep = select.epoll()
ep.register(a, select.EPOLLIN)
assert ep.poll(0) == []
k.sendto(b"kernel side", ("127.0.0.1", any_port))
assert ep.poll(5) == [(a.fileno(), select.EPOLLIN)]
assert a.recv(100) == b"kernel side"
a.sendto(b"stack side", PEER)
assert ep.poll(5) == [(a.fileno(), select.EPOLLIN)]
assert a.recv(100) == b"stack side"
ep.close()
ok("INADDR_ANY in epoll")

# Multicast: IP_ADD_MEMBERSHIP (ip_mreq, then ip_mreqn) on the data port, a kernel sender.
GROUP = "239.77.0.1"
g = udp()
g.bind(("0.0.0.0", 0))
gport = g.getsockname()[1]
mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(DATA_IP))
g.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
try:
    g.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    raise AssertionError("joining twice did not fail")
except OSError as err:
    assert err.errno == errno.EADDRINUSE, err
g.settimeout(5)
s.sendto(("mcast %s %d %s" % (GROUP, gport, PEER[0])).encode(), PEER)
data, sender = g.recvfrom(100)
assert data == b"to the group" and sender[0] == PEER[0], (data, sender)
g.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
try:
    g.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
    raise AssertionError("leaving twice did not fail")
except OSError as err:
    assert err.errno == errno.EADDRNOTAVAIL, err
mreqn = struct.pack("4s4si", socket.inet_aton(GROUP), socket.inet_aton(DATA_IP), 0)
g.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
s.sendto(("mcast %s %d %s" % (GROUP, gport, PEER[0])).encode(), PEER)
data, sender = g.recvfrom(100)
assert data == b"to the group", data
ok("multicast membership (ip_mreq, ip_mreqn; EADDRINUSE, EADDRNOTAVAIL)")

# fork: a child that closes an inherited offloaded socket leaves the parent's intact; so
# does a subprocess (fork + close_fds + exec).
import subprocess

fs = udp()
fs.bind((DATA_IP, 0))
pid = os.fork()
if pid == 0:
    fs.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
subprocess.run(["/bin/true"], check=True)
fs.settimeout(5)
fs.sendto(b"after fork", PEER)
assert fs.recv(100) == b"after fork"
ok("fork: a child closing inherited offloaded sockets leaves the parent's intact")

# A child that uses an inherited offloaded socket gets the kernel socket under it: nothing it
# does reaches the parent's stack (whose copy in the child may hold locks forever), nothing
# hangs, and the parent's traffic on the socket is untouched.
pid = os.fork()
if pid == 0:
    fs.settimeout(None)  # straight to the calls, no readiness wait first
    fs.getsockname()
    for attempt in (lambda: fs.sendto(b"from the child", PEER),
                    lambda: fs.recv(100, socket.MSG_DONTWAIT)):
        try:
            attempt()
        except OSError:
            pass
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
fs.sendto(b"parent after child", PEER)
assert fs.recv(100) == b"parent after child"
r, _, _ = select.select([fs], [], [], 0.3)
assert r == [], "a datagram the parent did not ask for arrived: %r" % fs.recv(100)
ok("fork: a child using inherited offloaded sockets gets their kernel sockets, the parent is untouched")

maps = open("/proc/self/maps").read()
assert "libsluice_dpdk.so" in maps, "the DPDK port library is not mapped: nothing was offloaded"
ok("libsluice_dpdk.so mapped")

s.sendto(b"quit", PEER)
print("all done", flush=True)
