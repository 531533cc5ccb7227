/*
 * Differential probe of UDP socket semantics against a remote echo peer.
 *
 *   udp_probe LOCAL_IP PEER_IP ECHO_PORT CLOSED_PORT
 *
 * The lab test runs it twice: on the kernel (the host's own addresses) and
 * under libsluice with every socket offloaded (the stack's data address), and
 * requires identical transcripts. So every line is canonical: addresses are
 * printed by role (LOCAL, PEER, ANY), ports as ECHO, CLOSED, EPH (an
 * ephemeral port) or SAME (the port of an earlier socket), fds as "fd", errno
 * by name, data as its length and a checksum. Anything that depends on a
 * datagram's arrival waits for it with poll() first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "transcript.h"

#define WAIT_MS 3000

static struct in_addr local_ip, peer_ip;
static unsigned short echo_port, closed_port, same_port;


/* "label = value" or "label = -1 ENAME". */
static long show(const char *label, long r)
{
    if (r < 0)
        out("%s = %ld %s", label, r, ename(errno));
    else
        out("%s = %ld", label, r);
    return r;
}

static struct sockaddr_in addr(struct in_addr ip, unsigned short port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = ip};
    return a;
}

static const char *role_ip(struct in_addr ip)
{
    if (ip.s_addr == local_ip.s_addr)
        return "LOCAL";
    if (ip.s_addr == peer_ip.s_addr)
        return "PEER";
    if (ip.s_addr == htonl(INADDR_ANY))
        return "ANY";
    return "OTHER";
}

static void role_port(unsigned short port, char *buf, size_t len)
{
    if (port == echo_port)
        snprintf(buf, len, "ECHO");
    else if (port == closed_port)
        snprintf(buf, len, "CLOSED");
    else if (port != 0 && port == same_port)
        snprintf(buf, len, "SAME");
    else if (port != 0)
        snprintf(buf, len, "EPH");
    else
        snprintf(buf, len, "0");
}

static void show_addr(const char *label, const struct sockaddr_in *a, socklen_t len)
{
    char port[16];
    role_port(ntohs(a->sin_port), port, sizeof port);
    out("%s = %s:%s (len %u, family %d)", label, role_ip(a->sin_addr), port, (unsigned)len,
        a->sin_family);
}

static void name_of(const char *label, int fd, int peer)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    int r = peer ? getpeername(fd, (struct sockaddr *)&a, &len)
                 : getsockname(fd, (struct sockaddr *)&a, &len);
    if (r < 0)
        show(label, r);
    else
        show_addr(label, &a, len);
}

static unsigned sum(const char *p, long n)
{
    unsigned s = 0;
    for (long i = 0; i < n; i++)
        s = s * 31 + (unsigned char)p[i];
    return s;
}

static void fill(char *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + seed) % 26);
}

/* Waits until `fd` is readable (or WAIT_MS); prints nothing (timing is not canonical). */
static void await(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) != 1)
        out("await: nothing arrived within %d ms", WAIT_MS);
}

static int udp(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    return fd;
}

static unsigned short port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

/* Sends `n` bytes to the echo and reads the echo back into `back`; prints both. */
static void round_trip(const char *label, int fd, size_t n, int seed)
{
    static char msg[70000], back[70000];
    char l[64];
    fill(msg, n, seed);
    struct sockaddr_in echo = addr(peer_ip, echo_port);
    snprintf(l, sizeof l, "%s sendto %zu", label, n);
    show(l, sendto(fd, msg, n, 0, (struct sockaddr *)&echo, sizeof echo));
    await(fd);
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    long r = recvfrom(fd, back, sizeof back, 0, (struct sockaddr *)&from, &len);
    snprintf(l, sizeof l, "%s recvfrom", label);
    show(l, r);
    if (r >= 0) {
        out("  same bytes %d", r == (long)n && memcmp(msg, back, n) == 0);
        show_addr("  from", &from, len);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 || !inet_aton(argv[1], &local_ip) || !inet_aton(argv[2], &peer_ip)) {
        fprintf(stderr, "usage: udp_probe LOCAL_IP PEER_IP ECHO_PORT CLOSED_PORT\n");
        return 2;
    }
    echo_port = (unsigned short)atoi(argv[3]);
    closed_port = (unsigned short)atoi(argv[4]);
    struct in_addr any = {.s_addr = htonl(INADDR_ANY)};
    struct sockaddr_in echo = addr(peer_ip, echo_port);
    struct sockaddr_in closed = addr(peer_ip, closed_port);
    char buf[2048];

    out("== bind ==");
    int s = udp();
    struct sockaddr_in a = addr(local_ip, 0);
    show("bind LOCAL:0", bind(s, (struct sockaddr *)&a, sizeof a));
    name_of("getsockname", s, 0);
    name_of("getpeername unconnected", s, 1);
    show("bind again", bind(s, (struct sockaddr *)&a, sizeof a));
    show("bind short len", bind(udp(), (struct sockaddr *)&a, 4));
    struct sockaddr_in other = addr(local_ip, 0);
    other.sin_addr.s_addr = inet_addr("10.77.99.99");
    show("bind not ours", bind(udp(), (struct sockaddr *)&other, sizeof other));

    out("== reuse ==");
    int r1 = udp(), one = 1;
    show("SO_REUSEADDR", setsockopt(r1, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    show("bind r1", bind(r1, (struct sockaddr *)&a, sizeof a));
    same_port = port_of(r1);
    struct sockaddr_in same = addr(local_ip, same_port);
    show("bind same port without", bind(udp(), (struct sockaddr *)&same, sizeof same));
    int r3 = udp();
    setsockopt(r3, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    show("bind same port with SO_REUSEADDR", bind(r3, (struct sockaddr *)&same, sizeof same));
    name_of("r3 getsockname", r3, 0);

    int p1 = udp(), p2 = udp(), p3 = udp();
    show("SO_REUSEPORT p1", setsockopt(p1, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
    show("bind p1", bind(p1, (struct sockaddr *)&a, sizeof a));
    unsigned short p1_port = port_of(p1);
    struct sockaddr_in p1_addr = addr(local_ip, p1_port);
    setsockopt(p2, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    show("bind p1's port with SO_REUSEPORT", bind(p2, (struct sockaddr *)&p1_addr, sizeof p1_addr));
    show("bind p1's port without", bind(p3, (struct sockaddr *)&p1_addr, sizeof p1_addr));

    out("== INADDR_ANY ==");
    struct sockaddr_in wild = addr(any, 0);
    int w = udp();
    show("bind ANY:0", bind(w, (struct sockaddr *)&wild, sizeof wild));
    name_of("getsockname", w, 0);
    round_trip("ANY 64 B", w, 64, 6);

    out("== sendmsg ==");
    {
        char data[300];
        fill(data, sizeof data, 8);
        struct iovec parts[2] = {{.iov_base = data, .iov_len = 100},
                                 {.iov_base = data + 100, .iov_len = 200}};
        struct msghdr sm = {.msg_name = &echo, .msg_namelen = sizeof echo, .msg_iov = parts,
                            .msg_iovlen = 2};
        show("sendmsg 2 parts", sendmsg(s, &sm, 0));
        await(s);
        char back[400];
        long got = recv(s, back, sizeof back, 0);
        show("recv", got);
        out("  same bytes %d", got == 300 && memcmp(back, data, 300) == 0);
    }

    out("== sendto/recvfrom ==");
    round_trip("100 B", s, 100, 1);
    round_trip("1 B", s, 1, 2);
    round_trip("1472 B", s, 1472, 3);
    round_trip("4000 B (fragments)", s, 4000, 4);
    round_trip("0 B", s, 0, 5);

    out("== boundaries ==");
    size_t sizes[] = {10, 200, 1000};
    for (int i = 0; i < 3; i++) {
        fill(buf, sizes[i], i);
        sendto(s, buf, sizes[i], 0, (struct sockaddr *)&echo, sizeof echo);
    }
    for (int i = 0; i < 3; i++) {
        await(s);
        show("recv keeps the datagram", recv(s, buf, sizeof buf, 0));
    }

    out("== flags ==");
    show("MSG_DONTWAIT empty", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    int n;
    show("FIONREAD empty", ioctl(s, FIONREAD, &n));
    out("  value %d", n);
    fill(buf, 77, 9);
    sendto(s, buf, 77, 0, (struct sockaddr *)&echo, sizeof echo);
    await(s);
    show("FIONREAD", ioctl(s, FIONREAD, &n));
    out("  value %d", n);
    char peek[100];
    long r = recv(s, peek, sizeof peek, MSG_PEEK);
    show("MSG_PEEK", r);
    out("  sum %u", sum(peek, r > 0 ? r : 0));
    r = recv(s, buf, sizeof buf, 0);
    show("recv after peek", r);
    out("  sum %u", sum(buf, r > 0 ? r : 0));
    fill(buf, 50, 3);
    sendto(s, buf, 50, 0, (struct sockaddr *)&echo, sizeof echo);
    await(s);
    show("recv 10 of 50 with MSG_TRUNC", recv(s, buf, 10, MSG_TRUNC));
    sendto(s, buf, 50, 0, (struct sockaddr *)&echo, sizeof echo);
    await(s);
    struct iovec iov = {.iov_base = buf, .iov_len = 10};
    struct sockaddr_in from;
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                       .msg_iovlen = 1};
    show("recvmsg 10 of 50", recvmsg(s, &m, 0));
    out("  msg_flags MSG_TRUNC %d", !!(m.msg_flags & MSG_TRUNC));
    show_addr("  msg_name", &from, m.msg_namelen);
    show("send MSG_OOB", sendto(s, "x", 1, MSG_OOB, (struct sockaddr *)&echo, sizeof echo));
    show("recv MSG_OOB", recv(s, buf, sizeof buf, MSG_OOB | MSG_DONTWAIT));

    out("== nonblocking and timeouts ==");
    int fl = fcntl(s, F_GETFL);
    show("F_SETFL O_NONBLOCK", fcntl(s, F_SETFL, fl | O_NONBLOCK));
    show("recv nonblocking empty", recv(s, buf, sizeof buf, 0));
    show("F_SETFL blocking", fcntl(s, F_SETFL, fl));
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000}, got;
    socklen_t tl = sizeof got;
    show("SO_RCVTIMEO", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    show("recv times out", recv(s, buf, sizeof buf, 0));
    show("get SO_RCVTIMEO", getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &tl));
    out("  %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
    tv.tv_sec = 1;
    tv.tv_usec = 500000;
    show("SO_SNDTIMEO", setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
    tl = sizeof got;
    show("get SO_SNDTIMEO", getsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &got, &tl));
    out("  %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);

    out("== options ==");
    int v = 65536;
    socklen_t vl = sizeof v;
    show("SO_RCVBUF 65536", setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
    show("get SO_RCVBUF", getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &vl));
    out("  value %d", v);
    v = 65536;
    show("SO_SNDBUF 65536", setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
    vl = sizeof v;
    show("get SO_SNDBUF", getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &vl));
    out("  value %d", v);
    int opts[][2] = {{SO_TYPE, 0}, {SO_DOMAIN, 0}, {SO_PROTOCOL, 0}, {SO_ERROR, 0},
                     {SO_REUSEADDR, 0}};
    const char *names[] = {"SO_TYPE", "SO_DOMAIN", "SO_PROTOCOL", "SO_ERROR", "SO_REUSEADDR"};
    for (int i = 0; i < 5; i++) {
        vl = sizeof v;
        v = -7;
        getsockopt(r1, SOL_SOCKET, opts[i][0], &v, &vl);
        out("get %s = %d (len %u)", names[i], v, (unsigned)vl);
    }

    out("== connect ==");
    int c = udp();
    show("connect PEER:ECHO", connect(c, (struct sockaddr *)&echo, sizeof echo));
    name_of("getsockname", c, 0);
    name_of("getpeername", c, 1);
    show("send", send(c, "hello", 5, 0));
    await(c);
    r = recv(c, buf, sizeof buf, 0);
    show("recv", r);
    out("  sum %u", sum(buf, r > 0 ? r : 0));
    show("write", write(c, "again", 5));
    await(c);
    show("read", read(c, buf, sizeof buf));
    int sh = udp();
    show("connect another", connect(sh, (struct sockaddr *)&echo, sizeof echo));
    show("shutdown SHUT_WR connected", shutdown(sh, SHUT_WR));
    show("send after SHUT_WR", send(sh, "x", 1, MSG_NOSIGNAL));
    show("shutdown SHUT_RD connected", shutdown(sh, SHUT_RD));
    show("recv after SHUT_RD", recv(sh, buf, sizeof buf, MSG_DONTWAIT));
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    show("connect AF_UNSPEC", connect(c, &unspec, sizeof unspec));
    name_of("getpeername after", c, 1);
    show("send unconnected", send(c, "x", 1, 0));
    show("shutdown unconnected", shutdown(c, SHUT_RDWR));
    show("listen", listen(c, 1));
    show("accept", accept(c, NULL, NULL));

    out("== unreachable ==");
    int u = udp();
    show("connect PEER:CLOSED", connect(u, (struct sockaddr *)&closed, sizeof closed));
    show("send", send(u, "x", 1, 0));
    struct pollfd p = {.fd = u, .events = POLLIN};
    show("poll", poll(&p, 1, WAIT_MS));
    out("  POLLERR %d", !!(p.revents & POLLERR));
    show("recv", recv(u, buf, sizeof buf, 0));
    show("recv again", recv(u, buf, sizeof buf, MSG_DONTWAIT));
    show("send again", send(u, "y", 1, 0));
    p.revents = 0;
    poll(&p, 1, WAIT_MS);
    vl = sizeof v;
    show("get SO_ERROR", getsockopt(u, SOL_SOCKET, SO_ERROR, &v, &vl));
    out("  value %s", v ? ename(v) : "0");
    vl = sizeof v;
    getsockopt(u, SOL_SOCKET, SO_ERROR, &v, &vl);
    out("SO_ERROR read again: %s", v ? ename(v) : "0");
    show("sendto on unconnected to CLOSED",
         sendto(s, "z", 1, 0, (struct sockaddr *)&closed, sizeof closed));

    out("== mmsg ==");
    struct mmsghdr out_m[3], in_m[4];
    struct iovec out_v[3], in_v[4];
    char bufs[4][64];
    memset(out_m, 0, sizeof out_m);
    memset(in_m, 0, sizeof in_m);
    for (int i = 0; i < 3; i++) {
        fill(bufs[i], 20 + i, i);
        out_v[i].iov_base = bufs[i];
        out_v[i].iov_len = 20 + i;
        out_m[i].msg_hdr.msg_iov = &out_v[i];
        out_m[i].msg_hdr.msg_iovlen = 1;
        out_m[i].msg_hdr.msg_name = &echo;
        out_m[i].msg_hdr.msg_namelen = sizeof echo;
    }
    show("sendmmsg 3", sendmmsg(s, out_m, 3, 0));
    int total = 0;
    for (int tries = 0; total < 3 && tries < 3; tries++) {
        await(s);
        for (int i = 0; i < 4; i++) {
            in_v[i].iov_base = bufs[i];
            in_v[i].iov_len = sizeof bufs[i];
            in_m[i].msg_hdr.msg_iov = &in_v[i];
            in_m[i].msg_hdr.msg_iovlen = 1;
            in_m[i].msg_hdr.msg_name = NULL;
            in_m[i].msg_hdr.msg_namelen = 0;
        }
        int got_n = recvmmsg(s, in_m, 4, MSG_WAITFORONE, NULL);
        for (int i = 0; i < got_n; i++)
            out("recvmmsg datagram %d: %u bytes", total + i, in_m[i].msg_len);
        if (got_n > 0)
            total += got_n;
    }
    out("recvmmsg total %d", total);

    out("== misuse ==");
    show("sendto short addrlen", sendto(s, "x", 1, 0, (struct sockaddr *)&echo, 4));
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = htons(echo_port)};
    show("sendto AF_INET6 address", sendto(s, "x", 1, 0, (struct sockaddr *)&six, sizeof six));
    show("sendto NULL address", sendto(s, "x", 1, 0, NULL, 0));
    show("recv zero-length buffer nonblocking", recv(s, NULL, 0, MSG_DONTWAIT));
    show("send on unbound unconnected", send(udp(), "x", 1, 0));
    show("close", close(s));
    show("send after close", sendto(s, "x", 1, 0, (struct sockaddr *)&echo, sizeof echo));
    out("== end ==");
    return 0;
}
