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
 * Then the issue-5 steps (N to R, before the server closes its listener): SIGALRM 50 ms into
 * blocking calls (accept, recv, connect to a full accept queue, poll, select, epoll_wait; with
 * and without SA_RESTART; recv and accept with SO_RCVTIMEO), readiness over a pipe, an
 * eventfd and streams together, the dup family, fork, and 8 threads with 200 requests each.
 * Nothing timed is printed: "returned 0 after >= 90 ms: yes", never a duration.
 *
 * alarm(60) in each process: a hang ends with "== timeout ==" and exit 3. The signal steps
 * borrow ITIMER_REAL (alarm's timer) for one call each, then re-arm the guard.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
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

static void server_more(int l);
static void client_more(void);

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

    server_more(l);
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

    client_more();
    out("== end ==");
}

/* ---- issue 5: signals, mixed readiness sets, dup, fork, threads --------- */

/*
 * Signals. SIGALRM is also the hang guard: setitimer's 50 ms shot takes over ITIMER_REAL
 * (alarm's timer) for one blocking call, then guard() re-arms alarm with what is left of the
 * process's 60 s. Each interrupted call is bounded anyway: the peer always acts ~300 ms later
 * (a connection, a byte), so a call that is not interrupted returns then instead of hanging.
 */
static volatile sig_atomic_t ticks;
static long guard_end;

static void on_tick(int sig)
{
    (void)sig;
    ticks++;
}

/* The hang guard: on_alarm for SIGALRM, alarm() with the rest of the process's time. */
static void guard(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    long left = (guard_end - now_ms() + 999) / 1000;
    alarm(left > 0 ? (unsigned)left : 1);
}

/* on_tick for SIGALRM, with or without SA_RESTART, and one SIGALRM in 50 ms. */
static void arm_tick(int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    ticks = 0;
    struct itimerval t;
    memset(&t, 0, sizeof t);
    t.it_value.tv_usec = 50000;
    setitimer(ITIMER_REAL, &t, NULL);
}

static void unarm_tick(void)
{
    struct itimerval z;
    memset(&z, 0, sizeof z);
    setitimer(ITIMER_REAL, &z, NULL);
    guard();
}

static void tick_report(const char *label, long r, int e, int is_fd)
{
    if (r < 0)
        out("%s = %ld %s; handler ran %d time(s)", label, r, ename(e), (int)ticks);
    else if (is_fd)
        out("%s = fd; handler ran %d time(s)", label, (int)ticks);
    else
        out("%s = %ld; handler ran %d time(s)", label, r, (int)ticks);
}

/* `call` with a SIGALRM 50 ms into it; prints its result, errno and the handler's runs. */
#define INTERRUPTED(label, restart, is_fd, call)                                                 \
    ({                                                                                           \
        arm_tick(restart);                                                                       \
        long r_ = (long)(call);                                                                  \
        int e_ = errno;                                                                          \
        unarm_tick();                                                                            \
        tick_report(label, r_, e_, is_fd);                                                       \
        r_;                                                                                      \
    })

/* One byte that is coming (or not): waits WAIT_MS at most for POLLIN, never blocks in recv. */
static void hear_within(const char *label, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c = 0;
    poll(&p, 1, WAIT_MS);
    long r = recv(fd, &c, 1, MSG_DONTWAIT);
    if (r == 1)
        out("%s = 1 '%c'", label, c);
    else
        show(label, r);
}

/* A pending connection if one comes within WAIT_MS (else -1, printed): never blocks forever. */
static int accept_late(const char *label, int l)
{
    struct pollfd p = {.fd = l, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) <= 0) {
        out("%s: none pending", label);
        return -1;
    }
    return show_fd(label, accept(l, NULL, NULL));
}

/* Asks the peer's serve_late() for one byte in ~300 ms ("w"), silently. */
static void ask_late(int fd)
{
    if (send(fd, "w", 1, 0) != 1)
        out("send w: %s", ename(errno));
}

/* The peer's side of ask_late: a byte 'z' 300 ms after each 'w', until another byte. */
static void serve_late(const char *label, int fd)
{
    int n = 0;
    char c = 0;
    long r;
    while ((r = recv(fd, &c, 1, 0)) == 1 && c == 'w') {
        sleep_ms(300);
        if (send(fd, "z", 1, 0) != 1)
            break;
        n++;
    }
    if (r == 1)
        out("%s: %d late bytes sent, ended by '%c'", label, n, c);
    else
        show(label, r);
}

/* A write of 8 bytes (an eventfd's counter, or bytes into a pipe) after ms, on a thread. */
struct later {
    int fd, ms;
    pthread_t thread;
};

static void *write_later_thread(void *arg)
{
    struct later *w = arg;
    uint64_t one = 1;
    sleep_ms(w->ms);
    if (write(w->fd, &one, sizeof one) != sizeof one)
        out("write later: %s", ename(errno));
    return NULL;
}

static void write_later(struct later *w, int fd, int ms)
{
    w->fd = fd;
    w->ms = ms;
    if (pthread_create(&w->thread, NULL, write_later_thread, w) != 0) {
        out("pthread_create failed");
        exit(1);
    }
}

static void poke(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) != sizeof one)
        out("write: %s", ename(errno));
}

static void drain(int fd)
{
    char b[64];
    if (read(fd, b, sizeof b) < 0)
        out("read: %s", ename(errno));
}

static const char *mixed_names[4] = {"pipe", "eventfd", "stream1", "stream2"};

/* poll over the mixed set, every member's revents by name; a timeout's duration as yes/no. */
static void mixed_poll(const char *label, struct pollfd *p, int timeout)
{
    char line[512], names[128];
    for (int i = 0; i < 4; i++)
        p[i].revents = 0;
    long t0 = now_ms();
    int r = poll(p, 4, timeout);
    long took = now_ms() - t0;
    if (r < 0) {
        show(label, r);
        return;
    }
    int used = snprintf(line, sizeof line, "%s = %d:", label, r);
    for (int i = 0; i < 4; i++)
        used += snprintf(line + used, sizeof line - (size_t)used, "%s %s %s", i ? "," : "",
                         mixed_names[i], event_names((unsigned)p[i].revents, 0, names, sizeof names));
    out("%s", line);
    if (r == 0 && timeout > 0)
        out("  returned 0 after >= %d ms: %s; before 2000 ms: %s", timeout - 10,
            took >= timeout - 10 ? "yes" : "no", took < 2000 ? "yes" : "no");
}

/* select for reading over the mixed set: the members reported, by name. */
static void mixed_select(const char *label, const int *fds, long timeout_ms)
{
    char line[512];
    fd_set rd;
    FD_ZERO(&rd);
    int top = 0;
    for (int i = 0; i < 4; i++) {
        FD_SET(fds[i], &rd);
        if (fds[i] > top)
            top = fds[i];
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    long t0 = now_ms();
    int r = select(top + 1, &rd, NULL, NULL, &tv);
    long took = now_ms() - t0;
    if (r < 0) {
        show(label, r);
        return;
    }
    int used = snprintf(line, sizeof line, "%s = %d:", label, r), any = 0;
    for (int i = 0; i < 4; i++)
        if (FD_ISSET(fds[i], &rd)) {
            used += snprintf(line + used, sizeof line - (size_t)used, "%s %s", any ? "," : "",
                             mixed_names[i]);
            any = 1;
        }
    if (!any)
        snprintf(line + used, sizeof line - (size_t)used, " none");
    out("%s", line);
    long left = tv.tv_sec * 1000000L + tv.tv_usec;
    if (r == 0 && timeout_ms > 0) {
        out("  returned 0 after >= %ld ms: %s; before 2000 ms: %s", timeout_ms - 10,
            took >= timeout_ms - 10 ? "yes" : "no", took < 2000 ? "yes" : "no");
        out("  timeval left %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    } else if (timeout_ms > 0) {
        out("  timeval left more than 0 and less than the timeout: %s",
            left > 0 && left < timeout_ms * 1000L ? "yes" : "no");
    }
}

/* epoll_wait over the mixed set (data: the member's index); events sorted by member. */
static void mixed_epoll(const char *label, int ep, int timeout)
{
    char line[512], names[128];
    struct epoll_event got[8];
    memset(got, 0, sizeof got);
    long t0 = now_ms();
    int r = epoll_wait(ep, got, 8, timeout);
    long took = now_ms() - t0;
    if (r < 0) {
        show(label, r);
        return;
    }
    int used = snprintf(line, sizeof line, "%s = %d:", label, r), any = 0;
    for (unsigned m = 0; m < 4; m++)
        for (int i = 0; i < r; i++)
            if (got[i].data.u32 == m) {
                used += snprintf(line + used, sizeof line - (size_t)used, "%s %s %s",
                                 any ? "," : "", mixed_names[m],
                                 event_names(got[i].events, 1, names, sizeof names));
                any = 1;
            }
    for (int i = 0; i < r; i++)
        if (got[i].data.u32 >= 4)
            used += snprintf(line + used, sizeof line - (size_t)used, " unknown data %u",
                             got[i].data.u32);
    if (!any && r == 0)
        snprintf(line + used, sizeof line - (size_t)used, " none");
    out("%s", line);
    if (r == 0 && timeout > 0)
        out("  returned 0 after >= %d ms: %s; before 2000 ms: %s", timeout - 10,
            took >= timeout - 10 ? "yes" : "no", took < 2000 ? "yes" : "no");
}

/* Threads: each request is a header and a body the server checks and answers with its own. */
#define THREADS 8
#define REQUESTS 200

struct header {
    uint32_t id;
    uint16_t seq, len;
};

struct worker {
    int fd, id;
    int done;    /* requests answered and checked */
    int bad;     /* the first failure, a short code (0: none) */
    pthread_t thread;
};

static int body_len(int id, int seq)
{
    return 1 + (seq * 37 + id * 11) % 700;
}

static void *client_worker(void *arg)
{
    struct worker *w = arg;
    char req[8 + 700], rep[700];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr(peer_ip, port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        w->bad = 1;
        return NULL;
    }
    for (int m = 0; m < REQUESTS; m++) {
        struct header h = {.id = (uint32_t)w->id, .seq = (uint16_t)m,
                           .len = (uint16_t)body_len(w->id, m)}, back;
        memcpy(req, &h, sizeof h);
        fill(req + 8, h.len, w->id * 1000 + m);
        if (send(fd, req, 8 + (size_t)h.len, 0) != 8 + (long)h.len) {
            w->bad = 2;
            break;
        }
        if (recv(fd, &back, sizeof back, MSG_WAITALL) != (long)sizeof back ||
            memcmp(&back, &h, sizeof h) != 0) {
            w->bad = 3;
            break;
        }
        if (recv(fd, rep, h.len, MSG_WAITALL) != (long)h.len ||
            !same(rep, h.len, w->id * 1000 + m + 7)) {
            w->bad = 4;
            break;
        }
        w->done++;
    }
    if (close(fd) < 0)
        w->bad = 5;
    return NULL;
}

static void *server_worker(void *arg)
{
    struct worker *w = arg;
    char body[700], rep[8 + 700];
    struct header h;
    long r;
    while ((r = recv(w->fd, &h, sizeof h, MSG_WAITALL)) == (long)sizeof h) {
        if (h.len == 0 || h.len > 700 || h.seq != w->done || h.len != body_len((int)h.id, h.seq)) {
            w->bad = 1;
            break;
        }
        if (recv(w->fd, body, h.len, MSG_WAITALL) != (long)h.len ||
            !same(body, h.len, (int)h.id * 1000 + h.seq)) {
            w->bad = 2;
            break;
        }
        memcpy(rep, &h, sizeof h);
        fill(rep + 8, h.len, (int)h.id * 1000 + h.seq + 7);
        if (send(w->fd, rep, 8 + (size_t)h.len, 0) != 8 + (long)h.len) {
            w->bad = 3;
            break;
        }
        w->done++;
    }
    if (r != 0 && !w->bad)
        w->bad = 4;
    close(w->fd);
    return NULL;
}

static void server_more(int l)
{
    char buf[256];
    struct timeval tv2 = {.tv_sec = 2}, tv0 = {.tv_sec = 0};

    out("== N: signals (SIGALRM 50 ms into a blocking call) ==");
    int ctl = show_fd("accept ctl", accept(l, NULL, NULL));
    out("-- accept --");
    tell("send go on ctl", ctl, 'a');
    long r = INTERRUPTED("accept, handler without SA_RESTART", 0, 1, accept(l, NULL, NULL));
    int s1 = r >= 0 ? (int)r : accept_late("accept the late connection", l);
    tell("send go on ctl", ctl, 'a');
    r = INTERRUPTED("accept, handler with SA_RESTART", 1, 1, accept(l, NULL, NULL));
    int s2 = r >= 0 ? (int)r : accept_late("  (resync: accept the late connection)", l);
    if (s1 < 0 || s2 < 0) {
        out("no connections to go on with");
        exit(1);
    }
    show("SO_RCVTIMEO 2 s on the listener",
         setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv2, sizeof tv2));
    tell("send go on ctl", ctl, 'a');
    r = INTERRUPTED("accept with SO_RCVTIMEO, handler with SA_RESTART", 1, 1,
                    accept(l, NULL, NULL));
    show("SO_RCVTIMEO 0 on the listener", setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv0, sizeof tv0));
    int s3 = r >= 0 ? (int)r : accept_late("accept the late connection", l);
    show("close it", close(s3));

    out("-- recv --");
    ask_late(s1);
    INTERRUPTED("recv, handler without SA_RESTART", 0, 0, recv(s1, buf, 1, 0));
    hear_within("recv the late byte", s1);
    ask_late(s1);
    buf[0] = '?';
    r = INTERRUPTED("recv, handler with SA_RESTART", 1, 0, recv(s1, buf, 1, 0));
    out("  byte '%c'", r == 1 ? buf[0] : '?');
    if (r != 1)
        hear_within("  (resync: recv the late byte)", s1);
    show("SO_RCVTIMEO 2 s", setsockopt(s1, SOL_SOCKET, SO_RCVTIMEO, &tv2, sizeof tv2));
    ask_late(s1);
    INTERRUPTED("recv with SO_RCVTIMEO, handler with SA_RESTART", 1, 0, recv(s1, buf, 1, 0));
    show("SO_RCVTIMEO 0", setsockopt(s1, SOL_SOCKET, SO_RCVTIMEO, &tv0, sizeof tv0));
    hear_within("recv the late byte", s1);

    out("-- poll, select, epoll_wait (never restarted) --");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1}, got[2];
    show("epoll_ctl ADD EPOLLIN", epoll_ctl(ep, EPOLL_CTL_ADD, s1, &ev));
    for (int restart = 0; restart < 2; restart++) {
        struct pollfd p = {.fd = s1, .events = POLLIN};
        ask_late(s1);
        INTERRUPTED(restart ? "poll -1, handler with SA_RESTART"
                            : "poll -1, handler without SA_RESTART",
                    restart, 0, poll(&p, 1, -1));
        hear_within("recv the late byte", s1);
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(s1, &rd);
        ask_late(s1);
        INTERRUPTED(restart ? "select NULL, handler with SA_RESTART"
                            : "select NULL, handler without SA_RESTART",
                    restart, 0, select(s1 + 1, &rd, NULL, NULL, NULL));
        hear_within("recv the late byte", s1);
        ask_late(s1);
        INTERRUPTED(restart ? "epoll_wait -1, handler with SA_RESTART"
                            : "epoll_wait -1, handler without SA_RESTART",
                    restart, 0, epoll_wait(ep, got, 2, -1));
        hear_within("recv the late byte", s1);
    }
    close(ep);
    tell("send end of the late bytes", s1, 'n');

    out("-- connect (client) to a full accept queue --");
    int l0 = listener(port2, 0);
    tell("send go on ctl", ctl, 'L');
    hear("recv on ctl", ctl);
    wait_revents("poll PORT2 listener (backlog 0): the blocker is queued", l0, POLLIN);
    tell("send go on ctl", ctl, 'C');
    hear("recv on ctl", ctl);
    int b1 = show_fd("accept the blocker", accept(l0, NULL, NULL));
    int b2 = accept_late("accept the interrupted connect's connection", l0);
    tell("send go on ctl", ctl, 'M');
    hear("recv on ctl", ctl);
    wait_revents("poll PORT2 listener: the second blocker is queued", l0, POLLIN);
    tell("send go on ctl", ctl, 'E');
    sleep_ms(250);
    int b3 = show_fd("accept the second blocker", accept(l0, NULL, NULL));
    int b4 = accept_late("accept the restarted connect's connection", l0);
    hear("recv on ctl", ctl);
    for (int i = 0; i < 4; i++) {
        int b = i == 0 ? b1 : i == 1 ? b2 : i == 2 ? b3 : b4;
        if (b >= 0) {
            expect_eof("EOF", b);
            close(b);
        }
    }
    show("close PORT2 listener", close(l0));

    out("== O: poll, select and epoll over a pipe, an eventfd and streams ==");
    int pp[2];
    if (pipe(pp) < 0) {
        perror("pipe");
        exit(1);
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int fds[4] = {pp[0], efd, s1, s2};
    struct pollfd set[4];
    for (int i = 0; i < 4; i++)
        set[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    struct later w;

    out("-- poll --");
    mixed_poll("poll 100 ms, nothing ready", set, 100);
    poke(pp[1]);
    mixed_poll("poll, the pipe ready", set, 1000);
    drain(pp[0]);
    poke(efd);
    mixed_poll("poll, the eventfd ready", set, 1000);
    drain(efd);
    ask_late(s1);
    mixed_poll("poll 3 s, stream1 becomes ready", set, WAIT_MS);
    poke(pp[1]);
    mixed_poll("poll 0, the pipe and stream1 ready", set, 0);
    drain(pp[0]);
    hear("recv stream1", s1);
    write_later(&w, pp[1], 150);
    mixed_poll("poll 3 s, the pipe becomes ready", set, WAIT_MS);
    pthread_join(w.thread, NULL);
    drain(pp[0]);
    write_later(&w, efd, 150);
    mixed_poll("poll -1, the eventfd becomes ready", set, -1);
    pthread_join(w.thread, NULL);
    drain(efd);

    out("-- select --");
    mixed_select("select 100 ms, nothing ready", fds, 100);
    poke(pp[1]);
    mixed_select("select 1 s, the pipe ready", fds, 1000);
    drain(pp[0]);
    ask_late(s1);
    mixed_select("select 3 s, stream1 becomes ready", fds, WAIT_MS);
    poke(efd);
    mixed_select("select 0, the eventfd and stream1 ready", fds, 0);
    drain(efd);
    hear("recv stream1", s1);
    write_later(&w, pp[1], 150);
    mixed_select("select 3 s, the pipe becomes ready", fds, WAIT_MS);
    pthread_join(w.thread, NULL);
    drain(pp[0]);

    out("-- epoll --");
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < 4; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) < 0)
            out("epoll_ctl ADD %s: %s", mixed_names[i], ename(errno));
    }
    mixed_epoll("epoll_wait 100 ms, nothing ready", ep, 100);
    poke(pp[1]);
    mixed_epoll("epoll_wait, the pipe ready", ep, 1000);
    drain(pp[0]);
    ask_late(s1);
    mixed_epoll("epoll_wait 3 s, stream1 becomes ready", ep, WAIT_MS);
    poke(efd);
    poke(pp[1]);
    mixed_epoll("epoll_wait 0, the pipe, the eventfd and stream1 ready", ep, 0);
    drain(efd);
    drain(pp[0]);
    hear("recv stream1", s1);
    write_later(&w, efd, 150);
    mixed_epoll("epoll_wait 3 s, the eventfd becomes ready", ep, WAIT_MS);
    pthread_join(w.thread, NULL);
    drain(efd);
    mixed_epoll("epoll_wait 0, nothing ready", ep, 0);
    close(ep);
    close(efd);
    close(pp[0]);
    close(pp[1]);
    tell("send end of the late bytes", s1, 'e');
    expect_eof("stream1 EOF", s1);
    close(s1);
    expect_eof("stream2 EOF", s2);
    close(s2);
    expect_eof("ctl EOF", ctl);
    close(ctl);

    out("== P: dup, dup2, dup3, F_DUPFD, F_DUPFD_CLOEXEC ==");
    int s = show_fd("accept", accept(l, NULL, NULL));
    hear("recv", s);
    hear("recv", s);
    tell("send", s, 'a');
    tell("send", s, 'b');
    for (int i = 0; i < 4; i++) {
        hear("recv after the peer closed one of its fds", s);
        sleep_ms(50);
        show_poll("poll: no EOF", s, 0);
        tell("send", s, 'k');
    }
    int t = show_fd("accept a second connection", accept(l, NULL, NULL));
    hear("recv on the second", t);
    expect_eof("the second connection after dup2 over its fd: EOF", t);
    close(t);
    for (int i = 0; i < 2; i++) {
        hear("recv", s);
        sleep_ms(50);
        show_poll("poll: no EOF", s, 0);
        tell("send", s, 'k');
    }
    expect_eof("EOF after the last fd closed", s);
    close(s);

    out("== Q: fork ==");
    s = show_fd("accept", accept(l, NULL, NULL));
    for (int i = 0; i < 2; i++) {
        hear("recv after the child exited", s);
        sleep_ms(50);
        show_poll("poll: no EOF", s, 0);
        tell("send", s, 'k');
    }
    static char big[65536];
    r = show("recv 65536 MSG_WAITALL", recv(s, big, sizeof big, MSG_WAITALL));
    out("  same bytes: %s", r == (long)sizeof big && same(big, sizeof big, 13) ? "yes" : "no");
    fill(big, sizeof big, 14);
    show("send 65536", send(s, big, sizeof big, 0));
    expect_eof("EOF", s);
    close(s);

    out("== R: threads ==");
    struct worker ws[THREADS];
    memset(ws, 0, sizeof ws);
    int accepted = 0;
    for (int i = 0; i < THREADS; i++) {
        ws[i].fd = accept(l, NULL, NULL);
        if (ws[i].fd < 0) {
            show("accept", -1);
            break;
        }
        if (pthread_create(&ws[i].thread, NULL, server_worker, &ws[i]) != 0) {
            out("pthread_create failed");
            exit(1);
        }
        accepted++;
    }
    int requests = 0, clean = 0;
    for (int i = 0; i < accepted; i++) {
        pthread_join(ws[i].thread, NULL);
        requests += ws[i].done;
        clean += ws[i].bad == 0 && ws[i].done == REQUESTS;
        if (ws[i].bad)
            out("  a connection failed with code %d after %d requests", ws[i].bad, ws[i].done);
    }
    out("threads: %d connections, %d served %d requests each, %d requests in all", accepted, clean,
        REQUESTS, requests);
}

static void client_more(void)
{
    char buf[256];

    out("== N: signals (SIGALRM 50 ms into a blocking call) ==");
    int ctl = connect_to("connect ctl", port);
    out("-- accept (server) --");
    int d[3];
    for (int i = 0; i < 3; i++) {
        hear("recv go on ctl", ctl);
        sleep_ms(300);
        d[i] = connect_to("connect", port);
    }
    show("close the third", close(d[2]));
    out("-- recv, poll, select, epoll_wait (server) --");
    serve_late("late bytes", d[0]);

    out("-- connect to a full accept queue --");
    struct sockaddr_in a2 = addr(peer_ip, port2);
    hear("recv go on ctl", ctl);
    int bl = connect_to("connect the blocker to PORT2 (backlog 0)", port2);
    tell("send on ctl", ctl, 'B');
    hear("recv go on ctl", ctl);
    int c2 = tcp();
    INTERRUPTED("connect, handler without SA_RESTART", 0, 0,
                connect(c2, (struct sockaddr *)&a2, sizeof a2));
    tell("send on ctl", ctl, 'D');
    wait_revents("wait for POLLOUT", c2, POLLOUT);
    show_so_error("SO_ERROR", c2);
    show("connect again", connect(c2, (struct sockaddr *)&a2, sizeof a2));
    show("connect again", connect(c2, (struct sockaddr *)&a2, sizeof a2));
    name_of("getpeername", c2, 1);
    hear("recv go on ctl", ctl);
    int bl2 = connect_to("connect a second blocker", port2);
    tell("send on ctl", ctl, 'B');
    hear("recv go on ctl", ctl);
    int c3 = tcp();
    INTERRUPTED("connect, handler with SA_RESTART", 1, 0,
                connect(c3, (struct sockaddr *)&a2, sizeof a2));
    show("connect again", connect(c3, (struct sockaddr *)&a2, sizeof a2));
    name_of("getpeername", c3, 1);
    show_so_error("SO_ERROR", c3);
    tell("send on ctl", ctl, 'F');
    close(bl);
    close(c2);
    close(bl2);
    close(c3);

    out("== O: poll, select and epoll over a pipe, an eventfd and streams (server) ==");
    serve_late("late bytes", d[0]);
    close(d[0]);
    close(d[1]);
    close(ctl);

    out("== P: dup, dup2, dup3, F_DUPFD, F_DUPFD_CLOEXEC ==");
    int c = connect_to("connect", port);
    int fd1 = show_fd("dup", dup(c));
    show_flags("dup", fd1);
    tell("send on the original", c, '1');
    tell("send on the dup", fd1, '2');
    hear("recv on the dup", fd1);
    hear("recv on the original", c);
    show("close the original", close(c));
    tell("send on the dup", fd1, '3');
    hear("recv on the dup", fd1);

    int spare = open("/dev/null", O_RDONLY);
    int fd2 = dup2(fd1, spare);
    out("dup2 onto an open fd = %s", fd2 == spare ? "that fd" : fd2 < 0 ? ename(errno) : "other");
    show_flags("dup2", fd2);
    show("close the dup", close(fd1));
    tell("send on the dup2", fd2, '4');
    hear("recv on the dup2", fd2);

    spare = open("/dev/null", O_RDONLY);
    int fd3 = dup3(fd2, spare, O_CLOEXEC);
    out("dup3 O_CLOEXEC onto an open fd = %s",
        fd3 == spare ? "that fd" : fd3 < 0 ? ename(errno) : "other");
    show_flags("dup3 O_CLOEXEC", fd3);
    show("dup3 onto itself", dup3(fd3, fd3, 0));
    int fd4 = fcntl(fd3, F_DUPFD, 100);
    out("F_DUPFD 100 = %s", fd4 >= 100 ? "fd >= 100" : fd4 < 0 ? ename(errno) : "fd < 100");
    show_flags("F_DUPFD", fd4);
    int fd5 = show_fd("F_DUPFD_CLOEXEC 0", fcntl(fd4, F_DUPFD_CLOEXEC, 0));
    show_flags("F_DUPFD_CLOEXEC", fd5);
    show("close the dup2", close(fd2));
    show("close the dup3", close(fd3));
    tell("send on F_DUPFD", fd4, '5');
    hear("recv on F_DUPFD", fd4);
    show("close F_DUPFD", close(fd4));
    tell("send on F_DUPFD_CLOEXEC", fd5, '6');
    hear("recv on F_DUPFD_CLOEXEC", fd5);

    int c9 = connect_to("connect a second", port);
    tell("send on the second", c9, 's');
    int fd6 = dup2(fd5, c9);
    out("dup2 over the second connection's fd = %s",
        fd6 == c9 ? "that fd" : fd6 < 0 ? ename(errno) : "other");
    tell("send on it (now the first connection)", c9, '7');
    hear("recv on it", c9);
    show("close F_DUPFD_CLOEXEC", close(fd5));
    tell("send on the last fd", c9, '8');
    hear("recv on the last fd", c9);
    show("recv MSG_DONTWAIT", recv(c9, buf, sizeof buf, MSG_DONTWAIT));
    show("close the last fd", close(c9));

    out("== Q: fork ==");
    c = connect_to("connect", port);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        out("child: close the inherited socket = %d", close(c));
        exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    out("child exited: %s, status %d", WIFEXITED(status) ? "yes" : "no", WEXITSTATUS(status));
    tell("send", c, 'f');
    hear("recv", c);
    pid = fork();
    if (pid == 0)
        _exit(0); /* the socket closes with the process */
    waitpid(pid, &status, 0);
    out("child exited without closing it: %s, status %d", WIFEXITED(status) ? "yes" : "no",
        WEXITSTATUS(status));
    tell("send", c, 'g');
    hear("recv", c);
    static char big[65536];
    fill(big, sizeof big, 13);
    show("send 65536", send(c, big, sizeof big, 0));
    long r = show("recv 65536 MSG_WAITALL", recv(c, big, sizeof big, MSG_WAITALL));
    out("  same bytes: %s", r == (long)sizeof big && same(big, sizeof big, 14) ? "yes" : "no");
    show("close", close(c));

    out("== R: threads ==");
    struct worker ws[THREADS];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < THREADS; i++) {
        ws[i].id = i;
        if (pthread_create(&ws[i].thread, NULL, client_worker, &ws[i]) != 0) {
            out("pthread_create failed");
            exit(1);
        }
    }
    int ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].bad == 0 && ws[i].done == REQUESTS;
        if (ws[i].bad)
            out("  thread %d failed with code %d after %d requests", i, ws[i].bad, ws[i].done);
    }
    out("threads: %d ok", ok);
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
    guard_end = now_ms() + 60000;
    alarm(60);
    if (strcmp(argv[1], "server") == 0)
        server();
    else if (strcmp(argv[1], "client") == 0)
        client();
    else
        return 2;
    return 0;
}
