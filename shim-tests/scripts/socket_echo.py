"""Loopback socket workout for python3 under sluice: TCP and UDP echo with
blocking sockets, a non-blocking selectors server with several clients, and
an asyncio echo. Prints one "ok" line per part and exits 0, or raises."""

import asyncio
import selectors
import socket
import threading

DEADLINE = 10.0  # seconds; every blocking call is bounded by it


def tcp_echo():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(DEADLINE)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(DEADLINE)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    t = threading.Thread(target=serve)
    t.start()
    payload = bytes(range(256)) * 1024  # 256 KiB: several segments and windows
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = bytearray()

        def reader():
            while len(got) < len(payload):
                chunk = c.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)

        r = threading.Thread(target=reader)
        r.start()
        c.sendall(payload)
        r.join(DEADLINE)
        c.shutdown(socket.SHUT_WR)
        assert c.recv(1) == b"", "expected EOF after the echo"
    t.join(DEADLINE)
    srv.close()
    assert bytes(got) == payload, f"tcp echo mismatch: {len(got)} of {len(payload)} bytes"
    print(f"ok tcp echo {len(payload)} bytes")


def udp_echo():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(DEADLINE)
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(DEADLINE)
    for i in range(100):
        msg = f"datagram {i}".encode() * (1 + i % 7)
        cli.sendto(msg, srv.getsockname())
        data, peer = srv.recvfrom(65536)
        srv.sendto(data, peer)
        back, src = cli.recvfrom(65536)
        assert back == msg and src == srv.getsockname(), (back, src)
    cli.close()
    srv.close()
    print("ok udp echo 100 datagrams")


def selectors_echo():
    sel = selectors.DefaultSelector()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    sel.register(srv, selectors.EVENT_READ, None)
    addr = srv.getsockname()
    clients = []
    for i in range(8):
        c = socket.socket()
        c.setblocking(False)
        assert c.connect_ex(addr) in (0, 115), "non-blocking connect"  # 115: EINPROGRESS
        clients.append((c, f"client {i} says hello".encode()))
    pending = {c.fileno(): (c, m, bytearray()) for c, m in clients}
    for c, m in clients:
        sel.register(c, selectors.EVENT_WRITE, "client")
    served = 0
    while pending:
        events = sel.select(timeout=DEADLINE)
        assert events, "selector timed out"
        for key, mask in events:
            sock = key.fileobj
            if key.data is None:
                conn, _ = sock.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "conn":
                data = sock.recv(4096)
                if data:
                    sock.send(data)
                else:
                    sel.unregister(sock)
                    sock.close()
                    served += 1
            elif mask & selectors.EVENT_WRITE:
                c, m, _ = pending[sock.fileno()]
                assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                c.send(m)
                sel.modify(c, selectors.EVENT_READ, "client")
            else:
                c, m, got = pending[sock.fileno()]
                got.extend(c.recv(4096))
                if bytes(got) == m:
                    del pending[sock.fileno()]
                    sel.unregister(c)
                    c.close()
    sel.close()
    srv.close()
    print(f"ok selectors echo {len(clients)} clients")


async def asyncio_echo():
    async def handle(reader, writer):
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for i in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        msg = f"asyncio round {i}\n".encode() * 100
        writer.write(msg)
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(len(msg)), DEADLINE)
        assert got == msg
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()
    print("ok asyncio echo 5 connections")


if __name__ == "__main__":
    tcp_echo()
    udp_echo()
    selectors_echo()
    asyncio.run(asyncio_echo())
    print("python sockets: all ok")
