/*
 * Differential probe of stream (TCP) socket semantics between two processes.
 *
 *   stream_probe server LOCAL_IP PEER_IP PORT
 *   stream_probe client LOCAL_IP PEER_IP PORT
 *
 * The server listens on LOCAL_IP:PORT (and LOCAL_IP:PORT+2); nothing ever
 * listens on PORT+1. The client, on another host, connects to PEER_IP. Both
 * walk the same list of scenarios in the same order, one or more connections
 * each, and synchronise through the data they exchange (plus a few short,
 * bounded sleeps where the point is that something does NOT happen).
 *
 * The lab test runs the pair twice: on the kernel (the hosts' own addresses)
 * and with both processes under libsluice (the stacks' data addresses), and
 * requires identical transcripts, so every line is canonical: addresses by
 * role (LOCAL, PEER, ANY), ports by role (PORT, CLOSED, PORT2, EPH), fds as
 * "fd", errno by name, poll/epoll events by name, data as lengths and
 * "same bytes". Whatever depends on the peer's packets having arrived waits
 * for that condition first (poll until the bit, FIONREAD until the count).
 *
 * alarm(30) in each process: a hang ends with "== timeout ==" and exit 3.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "transcript.h"

#define WAIT_MS 3000
#define EV (POLLIN | POLLOUT | POLLRDHUP)

static struct in_addr local_ip, peer_ip;
static unsigned short port, closed_port, port2;
static volatile sig_atomic_t sigpipes;

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
}

/* ---- printing ---------------------------------------------------------- */

/* "label = value" or "label = -1 ENAME". */
static long show(const char *label, long r)
{
    if (r < 0)
        out("%s = %ld %s", label, r, ename(errno));
    else
        out("%s = %ld", label, r);
    return r;
}

/* Like show, for calls returning an fd: its number is not canonical. */
static int show_fd(const char *label, int r)
{
    if (r < 0)
        out("%s = %d %s", label, r, ename(errno));
    else
        out("%s = fd", label);
    return r;
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

static const char *role_port(unsigned short p)
{
    if (p == 0)
        return "0";
    if (p == port)
        return "PORT";
    if (p == closed_port)
        return "CLOSED";
    if (p == port2)
        return "PORT2";
    return "EPH";
}

static void show_addr(const char *label, const struct sockaddr_in *a, socklen_t len)
{
    out("%s = %s:%s (len %u, family %d)", label, role_ip(a->sin_addr), role_port(ntohs(a->sin_port)),
        (unsigned)len, a->sin_family);
}

/* getsockname (peer 0) or getpeername (peer 1), printed by role; returns the port or 0. */
static unsigned short name_of(const char *label, int fd, int peer)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    int r = peer ? getpeername(fd, (struct sockaddr *)&a, &len)
                 : getsockname(fd, (struct sockaddr *)&a, &len);
    if (r < 0) {
        show(label, r);
        return 0;
    }
    show_addr(label, &a, len);
    return ntohs(a.sin_port);
}

static void show_poll(const char *label, int fd, int timeout)
{
    struct pollfd p = {.fd = fd, .events = EV};
    char names[128];
    int r = poll(&p, 1, timeout);
    if (r < 0)
        show(label, r);
    else
        out("%s = %d revents %s", label, r, event_names((unsigned)p.revents, 0, names, sizeof names));
}

/* Polls until one of `want` is reported (or WAIT_MS); prints every revents (of EV) then. */
static void wait_revents(const char *label, int fd, short want)
{
    struct pollfd p = {.fd = fd, .events = want};
    char names[128];
    long deadline = now_ms() + WAIT_MS;
    while (!(p.revents & want) && now_ms() < deadline) {
        p.revents = 0;
        if (poll(&p, 1, (int)(deadline - now_ms())) < 0 && errno != EINTR)
            break;
    }
    int found = (p.revents & want) != 0;
    p.events = EV;
    p.revents = 0;
    poll(&p, 1, 0);
    out("%s: revents %s%s", label, event_names((unsigned)p.revents, 0, names, sizeof names),
        found ? "" : " (waited in vain)");
}

static void show_flags(const char *label, int fd)
{
    int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
    out("%s: F_GETFL O_NONBLOCK %d, O_RDWR %d; F_GETFD FD_CLOEXEC %d", label,
        fl >= 0 && (fl & O_NONBLOCK) != 0, fl >= 0 && (fl & O_ACCMODE) == O_RDWR,
        fdf >= 0 && (fdf & FD_CLOEXEC) != 0);
}

static void show_int_opt(const char *label, int fd, int level, int name)
{
    int v = -7;
    socklen_t len = sizeof v;
    int r = getsockopt(fd, level, name, &v, &len);
    if (r < 0)
        show(label, r);
    else
        out("%s = %d (len %u)", label, v, (unsigned)len);
}

static void show_so_error(const char *label, int fd)
{
    int v = -7;
    socklen_t len = sizeof v;
    int r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len);
    if (r < 0)
        show(label, r);
    else
        out("%s = %s", label, v ? ename(v) : "0");
}

/* ---- helpers ----------------------------------------------------------- */

static void fill(char *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + i / 251 + (size_t)seed) % 26);
}

static int same(const char *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)('a' + (i * 7 + i / 251 + (size_t)seed) % 26))
            return 0;
    return 1;
}

static int tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    return fd;
}

static struct sockaddr_in addr(struct in_addr ip, unsigned short p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p), .sin_addr = ip};
    return a;
}

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v);
}

/* Waits until FIONREAD reports at least n (or WAIT_MS); prints the value it saw. */
static void wait_fionread(const char *label, int fd, int n)
{
    int v = -1, r = -1;
    for (int i = 0; i < WAIT_MS; i++) {
        r = ioctl(fd, FIONREAD, &v);
        if (r < 0 || v >= n)
            break;
        sleep_ms(1);
    }
    if (r < 0)
        show(label, r);
    else
        out("%s = %d", label, v);
}

/* Reads until n bytes, EOF or an error; returns the count read. */
static long read_all(int fd, char *buf, long n)
{
    long got = 0;
    while (got < n) {
        long r = recv(fd, buf + got, (size_t)(n - got), 0);
        if (r <= 0)
            break;
        got += r;
    }
    return got;
}

/* One byte, sent and printed. */
static void tell(const char *label, int fd, char c)
{
    show(label, send(fd, &c, 1, 0));
}

/* One byte received (blocking) and printed with its value. */
static void hear(const char *label, int fd)
{
    char c = 0;
    long r = recv(fd, &c, 1, 0);
    if (r == 1)
        out("%s = 1 '%c'", label, c);
    else
        show(label, r);
}

/* Reads to EOF (bounded by WAIT_MS of poll): prints what the final recv said. */
static void expect_eof(const char *label, int fd)
{
    char buf[256];
    long total = 0, r = -1;
    for (int i = 0; i < 100; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, WAIT_MS);
        r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r <= 0)
            break;
        total += r;
    }
    if (r < 0)
        out("%s: %ld bytes before = -1 %s", label, total, ename(errno));
    else
        out("%s: %ld bytes before = %ld", label, total, r);
}

static int listener(unsigned short p, int backlog)
{
    int fd = tcp();
    struct sockaddr_in a = addr(local_ip, p);
    set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, backlog) < 0) {
        out("listener on %s: %s", role_port(p), ename(errno));
        exit(1);
    }
    return fd;
}

static int connect_to(const char *label, unsigned short p)
{
    int fd = tcp();
    struct sockaddr_in a = addr(peer_ip, p);
    show(label, connect(fd, (struct sockaddr *)&a, sizeof a));
    return fd;
}

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "== timeout ==\n";
    if (write(1, msg, sizeof msg - 1) < 0)
        _exit(4);
    _exit(3);
}

/* ---- the server -------------------------------------------------------- */

static void server(void)
{
    char buf[256];
    static char big[1 << 20];

    out("== server: listen ==");
    int u = tcp();
    name_of("unbound getsockname", u, 0);
    name_of("unbound getpeername", u, 1);
    show("unbound accept", accept(u, NULL, NULL));
    show("listen unbound (autobind)", listen(u, 1));
    name_of("autobound getsockname", u, 0);
    close(u);

    int l = tcp();
    show("SO_REUSEADDR", set_int(l, SOL_SOCKET, SO_REUSEADDR, 1));
    struct sockaddr_in a = addr(local_ip, port);
    show("bind LOCAL:PORT", bind(l, (struct sockaddr *)&a, sizeof a));
    name_of("getsockname", l, 0);
    show("listen 8", listen(l, 8));
    show("listen again 16", listen(l, 16));
    name_of("listener getpeername", l, 1);
    show_int_opt("SO_ACCEPTCONN", l, SOL_SOCKET, SO_ACCEPTCONN);
    show_int_opt("SO_TYPE", l, SOL_SOCKET, SO_TYPE);
    show_so_error("SO_ERROR", l);
    show_poll("poll listener, none pending", l, 0);
    int b = tcp();
    set_int(b, SOL_SOCKET, SO_REUSEADDR, 1);
    show("bind PORT while it listens (SO_REUSEADDR)", bind(b, (struct sockaddr *)&a, sizeof a));
    close(b);
    int fl = fcntl(l, F_GETFL);
    fcntl(l, F_SETFL, fl | O_NONBLOCK);
    show("accept nonblocking, none pending", accept(l, NULL, NULL));
    fcntl(l, F_SETFL, fl);
    show("accept4 bad flags", accept4(l, NULL, NULL, 0x7));
    show("send on listener", send(l, "x", 1, MSG_NOSIGNAL));
    show("recv on listener", recv(l, buf, 1, MSG_DONTWAIT));
    show("connect listener", connect(l, (struct sockaddr *)&a, sizeof a));
    int l2 = listener(port2, 4);
    out("== ready ==");

    out("== A: accept, names, data ==");
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    memset(&from, 0, sizeof from);
    int s = show_fd("accept", accept(l, (struct sockaddr *)&from, &flen));
    show_addr("accept address", &from, flen);
    name_of("getsockname", s, 0);
    unsigned short pp = name_of("getpeername", s, 1);
    out("peer port matches accept address: %s", pp == ntohs(from.sin_port) ? "yes" : "no");
    show_flags("accepted", s);
    show_int_opt("SO_ACCEPTCONN", s, SOL_SOCKET, SO_ACCEPTCONN);
    unsigned char cport[2];
    show("recv client's port MSG_WAITALL", recv(s, cport, 2, MSG_WAITALL));
    out("peer port matches client's own getsockname: %s",
        pp == ((cport[0] << 8) | cport[1]) ? "yes" : "no");

    out("-- 1 byte --");
    hear("recv 1", s);
    show_poll("poll idle (the client waits for us)", s, 0);
    tell("send 1", s, 'y');

    out("-- 64 KiB --");
    long r = show("recv 65536 MSG_WAITALL", recv(s, big, 65536, MSG_WAITALL));
    out("  same bytes: %s", r == 65536 && same(big, 65536, 1) ? "yes" : "no");

    out("-- 1 MiB --");
    static char mib[1 << 20];
    r = read_all(s, mib, sizeof mib);
    out("read 1 MiB in a loop: %ld bytes, same bytes: %s", r,
        r == (long)sizeof mib && same(mib, sizeof mib, 2) ? "yes" : "no");
    fill(big, sizeof big, 3);
    show("send 1 MiB back", send(s, big, sizeof big, 0));

    out("-- writev/readv --");
    wait_fionread("FIONREAD until 600", s, 600);
    char v1[50], v2[150], v3[400];
    struct iovec iv[3] = {{v1, sizeof v1}, {v2, sizeof v2}, {v3, sizeof v3}};
    r = show("readv 50+150+400", readv(s, iv, 3));
    memcpy(big, v1, 50);
    memcpy(big + 50, v2, 150);
    memcpy(big + 200, v3, 400);
    out("  same bytes: %s", r == 600 && same(big, 600, 4) ? "yes" : "no");
    tell("send go", s, 'p');

    out("-- MSG_PEEK --");
    wait_fionread("FIONREAD until 10", s, 10);
    char p1[100], p2[100], p3[100];
    show("recv MSG_PEEK", recv(s, p1, sizeof p1, MSG_PEEK));
    show("recv MSG_PEEK again", recv(s, p2, sizeof p2, MSG_PEEK));
    show("recv 4 MSG_PEEK", recv(s, p3, 4, MSG_PEEK));
    r = show("recv", recv(s, p3, sizeof p3, 0));
    out("  same bytes peeked twice and read: %s",
        r == 10 && memcmp(p1, p2, 10) == 0 && memcmp(p1, p3, 10) == 0 && same(p3, 10, 5) ? "yes"
                                                                                          : "no");
    show("recv MSG_DONTWAIT empty", recv(s, p3, sizeof p3, MSG_DONTWAIT));
    show("recv MSG_PEEK|MSG_DONTWAIT empty", recv(s, p3, sizeof p3, MSG_PEEK | MSG_DONTWAIT));
    int n = -1;
    show("FIONREAD empty", ioctl(s, FIONREAD, &n));
    out("  value %d", n);

    out("-- MSG_WAITALL --");
    tell("send go", s, 'w');
    long t0 = now_ms();
    r = show("recv 100 MSG_WAITALL", recv(s, big, 100, MSG_WAITALL));
    out("  waited for the second part: %s; same bytes: %s", now_ms() - t0 >= 200 ? "yes" : "no",
        r == 100 && same(big, 100, 6) ? "yes" : "no");

    out("-- SO_RCVLOWAT --");
    show("SO_RCVLOWAT 50", set_int(s, SOL_SOCKET, SO_RCVLOWAT, 50));
    show_int_opt("get SO_RCVLOWAT", s, SOL_SOCKET, SO_RCVLOWAT);
    tell("send go", s, 'l');
    sleep_ms(100);
    wait_fionread("FIONREAD until 20", s, 20);
    struct pollfd pl = {.fd = s, .events = POLLIN};
    r = poll(&pl, 1, 300);
    out("poll POLLIN 300 ms with 20 of 50 queued = %ld revents %s", r,
        event_names((unsigned)pl.revents, 0, buf, sizeof buf));
    pl.revents = 0;
    r = poll(&pl, 1, WAIT_MS);
    out("poll POLLIN after the rest = %ld revents %s", r,
        event_names((unsigned)pl.revents, 0, buf, sizeof buf));
    r = show("recv 100", recv(s, big, 100, 0));
    if (r >= 0 && r < 60) {
        /* Only when the line above already differs: keeps the later steps in step. */
        long more = recv(s, big + r, (size_t)(60 - r), MSG_WAITALL);
        out("  (resync: read %ld more)", more);
    }
    out("  same bytes: %s", r == 60 && same(big, 60, 7) ? "yes" : "no");
    show("SO_RCVLOWAT 1", set_int(s, SOL_SOCKET, SO_RCVLOWAT, 1));
    tell("send go", s, 's');

    out("-- sendfile --");
    r = show("recv 100000 MSG_WAITALL", recv(s, mib, 100000, MSG_WAITALL));
    out("  same bytes: %s", r == 100000 && same(mib, 100000, 8) ? "yes" : "no");

    out("-- end of A --");
    wait_revents("wait for POLLRDHUP", s, POLLRDHUP);
    show("recv at EOF", recv(s, buf, sizeof buf, 0));
    show("close", close(s));

    out("== B: accept4 flags ==");
    int variants[] = {0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC, -1};
    const char *vnames[] = {"0", "SOCK_NONBLOCK", "SOCK_CLOEXEC", "SOCK_NONBLOCK|SOCK_CLOEXEC",
                            "accept on an O_NONBLOCK listener"};
    for (int i = 0; i < 5; i++) {
        out("-- %s --", vnames[i]);
        if (variants[i] >= 0) {
            s = show_fd("accept4", accept4(l, NULL, NULL, variants[i]));
        } else {
            fcntl(l, F_SETFL, fl | O_NONBLOCK);
            wait_revents("poll listener", l, POLLIN);
            s = show_fd("accept", accept(l, NULL, NULL));
            fcntl(l, F_SETFL, fl);
        }
        show_flags("accepted", s);
        if (variants[i] >= 0 && (variants[i] & SOCK_NONBLOCK))
            show("recv before the client sends", recv(s, buf, sizeof buf, 0));
        tell("send hello", s, 'h');
        wait_revents("wait for POLLIN", s, POLLIN);
        hear("recv", s);
        show("close first", close(s));
    }

    out("== C: accept queue ==");
    wait_revents("poll listener", l, POLLIN);
    sleep_ms(500);
    int q[3];
    for (int i = 0; i < 3; i++) {
        q[i] = show_fd("accept", accept(l, NULL, NULL));
        hear("  carries id", q[i]);
    }
    for (int i = 0; i < 3; i++)
        tell("send", q[i], 'k');
    for (int i = 0; i < 3; i++) {
        expect_eof("EOF", q[i]);
        close(q[i]);
    }

    out("== D: nonblocking connect ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    hear("recv", s);
    tell("send", s, 'd');
    expect_eof("EOF", s);
    close(s);

    out("== E: refused (client only) ==");

    out("== F: half-close ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    wait_revents("wait for POLLRDHUP", s, POLLRDHUP);
    r = show("recv 200", recv(s, big, 200, 0));
    out("  same bytes: %s", r == 100 && same(big, 100, 9) ? "yes" : "no");
    show("recv at EOF", recv(s, big, 200, 0));
    show("recv at EOF again", recv(s, big, 200, 0));
    show_poll("poll after EOF", s, 0);
    sleep_ms(100);
    fill(big, 50, 10);
    show("send 50 after the peer's SHUT_WR", send(s, big, 50, 0));
    show("shutdown SHUT_WR", shutdown(s, SHUT_WR));
    show_poll("poll after both shut down", s, 0);
    show("send after SHUT_WR (MSG_NOSIGNAL)", send(s, "x", 1, MSG_NOSIGNAL));
    show("close", close(s));

    out("== G: SHUT_RD ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    r = show("recv 10 MSG_WAITALL", recv(s, big, 10, MSG_WAITALL));
    out("  same bytes: %s", r == 10 && same(big, 10, 11) ? "yes" : "no");
    expect_eof("EOF", s);
    close(s);

    out("== H: close with unread data ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    fill(big, 20, 12);
    show("send 20", send(s, big, 20, 0));
    wait_revents("wait for POLLERR/POLLHUP", s, POLLERR | POLLHUP);
    show("recv", recv(s, buf, sizeof buf, 0));
    show("recv again", recv(s, buf, sizeof buf, 0));
    show_poll("poll", s, 0);
    show("send (MSG_NOSIGNAL)", send(s, "x", 1, MSG_NOSIGNAL));
    show_so_error("SO_ERROR", s);
    name_of("getpeername", s, 1);
    show("close", close(s));

    out("== I: send after the peer closed ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    hear("recv", s);
    show("close", close(s));

    out("== J: SO_LINGER {1, 0} ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    r = show("recv 5 MSG_WAITALL", recv(s, big, 5, MSG_WAITALL));
    out("  same bytes: %s", r == 5 && memcmp(big, "hello", 5) == 0 ? "yes" : "no");
    tell("send ack", s, 'a');
    wait_revents("wait for POLLERR/POLLHUP", s, POLLERR | POLLHUP);
    show("recv", recv(s, buf, sizeof buf, 0));
    show_so_error("SO_ERROR", s);
    show("close", close(s));

    out("== K: epoll edge-triggered ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = 7};
    show("epoll_ctl ADD EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET", epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
    struct epoll_event got[4];
#define EPW(label, ms)                                                                           \
    do {                                                                                         \
        memset(got, 0, sizeof got);                                                              \
        int k_ = epoll_wait(ep, got, 4, ms);                                                     \
        if (k_ < 0)                                                                              \
            show(label, k_);                                                                     \
        else                                                                                     \
            out("%s = %d events %s data %u", label, k_,                                          \
                event_names(k_ > 0 ? got[0].events : 0, 1, buf, sizeof buf),                     \
                k_ > 0 ? got[0].data.u32 : 0);                                                   \
    } while (0)
    EPW("epoll_wait after ADD", 1000);
    EPW("epoll_wait again", 100);
    tell("send go", s, 'g');
    EPW("epoll_wait for the data", WAIT_MS);
    EPW("epoll_wait again", 100);
    wait_fionread("FIONREAD until 10", s, 10);
    show("recv", recv(s, big, 100, 0));
    EPW("epoll_wait after reading", 100);
    tell("send go", s, 'g');
    EPW("epoll_wait for the half-close", WAIT_MS);
    EPW("epoll_wait again", 100);
    show("recv at EOF", recv(s, big, 100, 0));
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    show("epoll_ctl MOD level-triggered", epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev));
    EPW("epoll_wait level-triggered", 0);
    EPW("epoll_wait level-triggered again", 0);
    show("close", close(s));
    EPW("epoll_wait after close", 0);
    close(ep);

    out("== L: options ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    show_int_opt("SO_KEEPALIVE default", s, SOL_SOCKET, SO_KEEPALIVE);
    show_int_opt("TCP_NODELAY default", s, IPPROTO_TCP, TCP_NODELAY);
    show("SO_KEEPALIVE 1", set_int(s, SOL_SOCKET, SO_KEEPALIVE, 1));
    show("TCP_KEEPIDLE 45", set_int(s, IPPROTO_TCP, TCP_KEEPIDLE, 45));
    show_int_opt("get SO_KEEPALIVE", s, SOL_SOCKET, SO_KEEPALIVE);
    show_int_opt("get TCP_KEEPIDLE", s, IPPROTO_TCP, TCP_KEEPIDLE);
    hear("recv", s);
    expect_eof("EOF", s);
    close(s);

    out("== M: SO_REUSEADDR after close ==");
    int ctl = show_fd("accept ctl", accept(l, NULL, NULL));
    s = show_fd("accept on PORT2", accept(l2, NULL, NULL));
    name_of("getsockname", s, 0);
    show("close first", close(s));
    hear("recv on ctl", ctl);
    sleep_ms(100);
    show("close PORT2 listener", close(l2));
    struct sockaddr_in a2 = addr(local_ip, port2);
    b = tcp();
    show("bind PORT2 without SO_REUSEADDR", bind(b, (struct sockaddr *)&a2, sizeof a2));
    close(b);
    b = tcp();
    show("SO_REUSEADDR", set_int(b, SOL_SOCKET, SO_REUSEADDR, 1));
    show("bind PORT2 with SO_REUSEADDR", bind(b, (struct sockaddr *)&a2, sizeof a2));
    show("listen", listen(b, 4));
    tell("send on ctl", ctl, 'r');
    s = show_fd("accept on PORT2 again", accept(b, NULL, NULL));
    name_of("getsockname", s, 0);
    hear("recv", s);
    expect_eof("EOF", s);
    close(s);
    close(b);
    expect_eof("ctl EOF", ctl);
    close(ctl);

    show("close listener", close(l));
    out("== end ==");
}

/* ---- the client -------------------------------------------------------- */

static void client(void)
{
    char buf[256];
    static char big[1 << 20];

    out("== client: unconnected ==");
    int u = tcp();
    name_of("getsockname", u, 0);
    name_of("getpeername", u, 1);
    show("send", send(u, "x", 1, MSG_NOSIGNAL));
    show("recv", recv(u, buf, 1, MSG_DONTWAIT));
    show("shutdown", shutdown(u, SHUT_RDWR));
    show_poll("poll", u, 0);
    close(u);

    out("== A: blocking connect, names, data ==");
    int c = tcp();
    struct sockaddr_in a = addr(peer_ip, port);
    show("connect PEER:PORT", connect(c, (struct sockaddr *)&a, sizeof a));
    unsigned short mine = name_of("getsockname", c, 0);
    name_of("getpeername", c, 1);
    show("connect again", connect(c, (struct sockaddr *)&a, sizeof a));
    show("accept on a connected socket", accept(c, NULL, NULL));
    show("listen on a connected socket", listen(c, 1));
    show_int_opt("SO_ACCEPTCONN", c, SOL_SOCKET, SO_ACCEPTCONN);
    show_int_opt("SO_TYPE", c, SOL_SOCKET, SO_TYPE);
    show_int_opt("SO_PROTOCOL", c, SOL_SOCKET, SO_PROTOCOL);
    show_so_error("SO_ERROR", c);
    show_flags("connected", c);
    show_poll("poll idle", c, 0);
    show("recv MSG_DONTWAIT empty", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    unsigned char cport[2] = {(unsigned char)(mine >> 8), (unsigned char)mine};
    show("send my port", send(c, cport, 2, 0));

    out("-- 1 byte --");
    tell("send 1", c, 'x');
    hear("recv 1", c);

    out("-- 64 KiB --");
    fill(big, 65536, 1);
    show("send 65536", send(c, big, 65536, 0));

    out("-- 1 MiB --");
    fill(big, sizeof big, 2);
    show("send 1 MiB", send(c, big, sizeof big, 0));
    long r = show("recv 1 MiB MSG_WAITALL", recv(c, big, sizeof big, MSG_WAITALL));
    out("  same bytes: %s", r == (long)sizeof big && same(big, sizeof big, 3) ? "yes" : "no");

    out("-- writev/readv --");
    fill(big, 600, 4);
    struct iovec iv[3] = {{big, 100}, {big + 100, 200}, {big + 300, 300}};
    show("writev 100+200+300", writev(c, iv, 3));

    out("-- MSG_PEEK --");
    hear("recv go", c);
    fill(big, 10, 5);
    show("send 10", send(c, big, 10, 0));

    out("-- MSG_WAITALL --");
    hear("recv go", c);
    fill(big, 100, 6);
    show("send 40", send(c, big, 40, 0));
    sleep_ms(300);
    show("send 60", send(c, big + 40, 60, 0));

    out("-- SO_RCVLOWAT --");
    hear("recv go", c);
    fill(big, 60, 7);
    show("send 20", send(c, big, 20, 0));
    sleep_ms(700);
    show("send 40", send(c, big + 20, 40, 0));

    out("-- sendfile --");
    hear("recv go", c);
    char path[] = "/tmp/stream_probe_XXXXXX";
    int f = mkstemp(path);
    if (f < 0) {
        perror("mkstemp");
        exit(1);
    }
    unlink(path);
    fill(big, 100000, 8);
    if (write(f, big, 100000) != 100000) {
        perror("write");
        exit(1);
    }
    off_t off = 0;
    show("sendfile 100000", sendfile(c, f, &off, 100000));
    out("  offset %ld", (long)off);
    close(f);
    int outq = -1;
    for (int i = 0; i < WAIT_MS; i++) {
        if (ioctl(c, SIOCOUTQ, &outq) < 0 || outq == 0)
            break;
        sleep_ms(1);
    }
    out("SIOCOUTQ drains to %d", outq);

    out("-- end of A --");
    show("close", close(c));

    out("== B: accept4 flags ==");
    for (int i = 0; i < 5; i++) {
        c = connect_to("connect", port);
        hear("recv hello", c);
        tell("send", c, 'b');
        expect_eof("EOF", c);
        close(c);
    }

    out("== C: accept queue ==");
    int q[3];
    for (int i = 0; i < 3; i++) {
        q[i] = connect_to("connect", port);
        tell("send id", q[i], (char)('0' + i));
    }
    for (int i = 0; i < 3; i++)
        hear("recv", q[i]);
    for (int i = 0; i < 3; i++)
        close(q[i]);

    out("== D: nonblocking connect ==");
    c = tcp();
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    show("connect nonblocking", connect(c, (struct sockaddr *)&a, sizeof a));
    wait_revents("wait for POLLOUT", c, POLLOUT);
    show_so_error("SO_ERROR", c);
    show("connect again", connect(c, (struct sockaddr *)&a, sizeof a));
    name_of("getpeername", c, 1);
    tell("send", c, 'n');
    wait_revents("wait for POLLIN", c, POLLIN);
    hear("recv", c);
    show("close", close(c));

    out("== E: refused ==");
    struct sockaddr_in cl = addr(peer_ip, closed_port);
    c = tcp();
    show("connect PEER:CLOSED", connect(c, (struct sockaddr *)&cl, sizeof cl));
    name_of("getpeername", c, 1);
    show_so_error("SO_ERROR", c);
    show_poll("poll", c, 0);
    close(c);
    c = tcp();
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    show("connect nonblocking PEER:CLOSED", connect(c, (struct sockaddr *)&cl, sizeof cl));
    wait_revents("wait for POLLERR", c, POLLERR);
    show_so_error("SO_ERROR", c);
    show_so_error("SO_ERROR again", c);
    show("connect again", connect(c, (struct sockaddr *)&cl, sizeof cl));
    close(c);
    c = tcp();
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    show("connect nonblocking PEER:CLOSED", connect(c, (struct sockaddr *)&cl, sizeof cl));
    wait_revents("wait for POLLERR", c, POLLERR);
    show("connect again without reading SO_ERROR", connect(c, (struct sockaddr *)&cl, sizeof cl));
    show_so_error("SO_ERROR", c);
    close(c);

    out("== F: half-close ==");
    c = connect_to("connect", port);
    fill(big, 100, 9);
    show("send 100", send(c, big, 100, 0));
    show("shutdown SHUT_WR", shutdown(c, SHUT_WR));
    show("send after SHUT_WR (MSG_NOSIGNAL)", send(c, "x", 1, MSG_NOSIGNAL));
    out("  SIGPIPE count %d", (int)sigpipes);
    show_poll("poll after SHUT_WR", c, 0);
    wait_revents("wait for POLLRDHUP", c, POLLRDHUP);
    r = show("recv 200", recv(c, big, 200, 0));
    out("  same bytes: %s", r == 50 && same(big, 50, 10) ? "yes" : "no");
    show("recv at EOF", recv(c, big, 200, 0));
    show_poll("poll after both shut down", c, 0);
    name_of("getsockname", c, 0);
    show("close", close(c));

    out("== G: SHUT_RD ==");
    c = connect_to("connect", port);
    show("shutdown SHUT_RD", shutdown(c, SHUT_RD));
    show("recv after SHUT_RD", recv(c, buf, sizeof buf, 0));
    show("recv MSG_DONTWAIT after SHUT_RD", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    show_poll("poll after SHUT_RD", c, 0);
    fill(big, 10, 11);
    show("send 10 after SHUT_RD", send(c, big, 10, 0));
    show("close", close(c));

    out("== H: close with unread data ==");
    c = connect_to("connect", port);
    wait_fionread("FIONREAD until 20", c, 20);
    show("close with 20 unread", close(c));

    out("== I: send after the peer closed ==");
    c = connect_to("connect", port);
    tell("send", c, 'i');
    wait_revents("wait for POLLRDHUP", c, POLLRDHUP);
    show("recv at EOF", recv(c, buf, sizeof buf, 0));
    show("send 10 to a closed peer", send(c, "0123456789", 10, 0));
    out("  SIGPIPE count %d", (int)sigpipes);
    wait_revents("wait for POLLERR/POLLHUP", c, POLLERR | POLLHUP);
    show("send 10 after the reset", send(c, "0123456789", 10, 0));
    out("  SIGPIPE count %d", (int)sigpipes);
    show("send 10 MSG_NOSIGNAL", send(c, "0123456789", 10, MSG_NOSIGNAL));
    out("  SIGPIPE count %d", (int)sigpipes);
    show("write 10", write(c, "0123456789", 10));
    out("  SIGPIPE count %d", (int)sigpipes);
    show_so_error("SO_ERROR", c);
    show("recv", recv(c, buf, sizeof buf, 0));
    show_poll("poll", c, 0);
    show("close", close(c));

    out("== J: SO_LINGER {1, 0} ==");
    c = connect_to("connect", port);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}, lb;
    show("SO_LINGER {1, 0}", setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    socklen_t ll = sizeof lb;
    memset(&lb, 0x55, sizeof lb);
    show("get SO_LINGER", getsockopt(c, SOL_SOCKET, SO_LINGER, &lb, &ll));
    out("  onoff %d linger %d len %u", lb.l_onoff, lb.l_linger, (unsigned)ll);
    show("send 5", send(c, "hello", 5, 0));
    hear("recv ack", c);
    show("close", close(c));

    out("== K: epoll edge-triggered ==");
    c = connect_to("connect", port);
    hear("recv go", c);
    fill(big, 10, 12);
    show("send 10", send(c, big, 10, 0));
    hear("recv go", c);
    show("shutdown SHUT_WR", shutdown(c, SHUT_WR));
    expect_eof("EOF", c);
    close(c);

    out("== L: options ==");
    c = connect_to("connect", port);
    show_int_opt("SO_KEEPALIVE default", c, SOL_SOCKET, SO_KEEPALIVE);
    show_int_opt("TCP_KEEPIDLE default", c, IPPROTO_TCP, TCP_KEEPIDLE);
    show_int_opt("TCP_KEEPINTVL default", c, IPPROTO_TCP, TCP_KEEPINTVL);
    show_int_opt("TCP_KEEPCNT default", c, IPPROTO_TCP, TCP_KEEPCNT);
    show_int_opt("TCP_NODELAY default", c, IPPROTO_TCP, TCP_NODELAY);
    show("SO_KEEPALIVE 1", set_int(c, SOL_SOCKET, SO_KEEPALIVE, 1));
    show("TCP_KEEPIDLE 30", set_int(c, IPPROTO_TCP, TCP_KEEPIDLE, 30));
    show("TCP_KEEPINTVL 5", set_int(c, IPPROTO_TCP, TCP_KEEPINTVL, 5));
    show("TCP_KEEPCNT 4", set_int(c, IPPROTO_TCP, TCP_KEEPCNT, 4));
    show("TCP_NODELAY 1", set_int(c, IPPROTO_TCP, TCP_NODELAY, 1));
    show("TCP_KEEPIDLE 0", set_int(c, IPPROTO_TCP, TCP_KEEPIDLE, 0));
    show("TCP_KEEPCNT -1", set_int(c, IPPROTO_TCP, TCP_KEEPCNT, -1));
    show_int_opt("get SO_KEEPALIVE", c, SOL_SOCKET, SO_KEEPALIVE);
    show_int_opt("get TCP_KEEPIDLE", c, IPPROTO_TCP, TCP_KEEPIDLE);
    show_int_opt("get TCP_KEEPINTVL", c, IPPROTO_TCP, TCP_KEEPINTVL);
    show_int_opt("get TCP_KEEPCNT", c, IPPROTO_TCP, TCP_KEEPCNT);
    show_int_opt("get TCP_NODELAY", c, IPPROTO_TCP, TCP_NODELAY);
    show("SO_KEEPALIVE 0", set_int(c, SOL_SOCKET, SO_KEEPALIVE, 0));
    show_int_opt("get SO_KEEPALIVE", c, SOL_SOCKET, SO_KEEPALIVE);
    show("SO_RCVBUF 65536", set_int(c, SOL_SOCKET, SO_RCVBUF, 65536));
    show_int_opt("get SO_RCVBUF", c, SOL_SOCKET, SO_RCVBUF);
    show("SO_SNDBUF 65536", set_int(c, SOL_SOCKET, SO_SNDBUF, 65536));
    show_int_opt("get SO_SNDBUF", c, SOL_SOCKET, SO_SNDBUF);
    tell("send", c, 'o');
    show("close", close(c));

    out("== M: SO_REUSEADDR after close ==");
    int ctl = connect_to("connect ctl", port);
    c = connect_to("connect PORT2", port2);
    expect_eof("EOF", c);
    show("close", close(c));
    tell("send on ctl", ctl, 'c');
    hear("recv on ctl", ctl);
    c = connect_to("connect PORT2 again", port2);
    name_of("getpeername", c, 1);
    tell("send", c, 'm');
    show("close", close(c));
    show("close ctl", close(ctl));

    out("== end ==");
}

int main(int argc, char **argv)
{
    if (argc != 5 || !inet_aton(argv[2], &local_ip) || !inet_aton(argv[3], &peer_ip)) {
        fprintf(stderr, "usage: stream_probe server|client LOCAL_IP PEER_IP PORT\n");
        return 2;
    }
    port = (unsigned short)atoi(argv[4]);
    closed_port = port + 1;
    port2 = port + 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    alarm(30);
    if (strcmp(argv[1], "server") == 0)
        server();
    else if (strcmp(argv[1], "client") == 0)
        client();
    else
        return 2;
    return 0;
}
