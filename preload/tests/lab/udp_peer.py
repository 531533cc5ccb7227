# A plain kernel UDP peer for tests/offloaded_udp.rs (runs in sl-h3, never under sluice).
# Bound to INADDR_ANY (the data address and the management address), it echoes every
# datagram back to its sender; b"quit" ends it, b"mcast ..." sends one datagram to a group. Bounded: exits after
# `lifetime` seconds whatever happens.
import socket
import sys
import time

port, lifetime = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
print("peer ready", flush=True)
end = time.monotonic() + lifetime
while time.monotonic() < end:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        data, sender = s.recvfrom(65535)
    except socket.timeout:
        break
    if data == b"quit":
        break
    if data.startswith(b"mcast "):
        # "mcast GROUP PORT IFACE_ADDR": one datagram to the group, out of IFACE_ADDR.
        _, group, gport, iface = data.decode().split()
        m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        m.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
        m.sendto(b"to the group", (group, int(gport)))
        m.close()
        continue
    s.sendto(data, sender)
