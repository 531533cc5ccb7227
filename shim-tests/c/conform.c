/*
 * Differential conformance probe.
 *
 * Exercises every socket call that libsluice.so hooks, on loopback only, and
 * prints a canonical transcript of what an application can observe: return
 * values, errno names, data, flags, addresses and readiness. The test runs it
 * plainly and under the preload and requires identical transcripts, so every
 * line must be deterministic:
 *   - fd numbers are printed as "fd" (the preload may hold fds of its own);
 *   - kernel-chosen ports are printed by name (registered from getsockname),
 *     or "EPH" for an unregistered ephemeral port;
 *   - anything that depends on packet arrival waits with poll() first or uses
 *     a blocking call, never a sleep.
 * Lines starting with "ENV:" are expected to differ (they show whether the
 * preload is loaded and survives exec with a scrubbed environment); the test
 * checks them separately.
 *
 * Built with -O2 -D_FORTIFY_SOURCE=2 so that the "chk" section makes glibc
 * call __read_chk, __recv_chk, __recvfrom_chk and __poll_chk.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transcript.h"

extern char **environ;

/* An fd number that no one has open (checked at start). */
#define UNUSED_FD 900
/* Generous: loopback delivers in microseconds; a wait only ends early. */
#define WAIT_MS 5000

static void section(const char *name) { out("== %s ==", name); }

enum kind { K_NUM, K_FD };

static long show(enum kind k, const char *label, long r, int e)
{
    if (r < 0)
        out("%s = %ld %s", label, r, ename(e));
    else if (k == K_FD)
        out("%s = fd", label);
    else
        out("%s = %ld", label, r);
    return r;
}

/* Evaluate a call, print "expr = result [ERRNO]", yield the result. */
#define NUM(...) ({ errno = 0; long _r = (long)(__VA_ARGS__); int _e = errno; show(K_NUM, #__VA_ARGS__, _r, _e); })
#define FD(...) ({ errno = 0; long _r = (long)(__VA_ARGS__); int _e = errno; (int)show(K_FD, #__VA_ARGS__, _r, _e); })

static void die(const char *what)
{
    out("FATAL: %s: %s", what, ename(errno));
    exit(1);
}

/* ---- ports by name ---------------------------------------------------- */

static struct {
    unsigned short port;
    char name[16];
} names[64];
static int n_names;

static void name_port(unsigned short port, const char *name)
{
    if (n_names == 64)
        die("too many named ports");
    names[n_names].port = port;
    snprintf(names[n_names].name, sizeof names[n_names].name, "%s", name);
    n_names++;
}

/* The newest name first: the kernel may hand a closed socket's port to a new one, which then
 * must not show up under the old name (the transcript would vary from run to run). */
static const char *port_name(unsigned short port)
{
    if (port == 0)
        return "0";
    for (int i = n_names - 1; i >= 0; i--)
        if (names[i].port == port)
            return names[i].name;
    return "EPH";
}

static const char *fmt_addr(const void *sa, socklen_t len)
{
    static char bufs[4][96];
    static int next;
    char *b = bufs[next++ % 4];
    const struct sockaddr *s = sa;
    if (len == 0) {
        snprintf(b, 96, "(len 0)");
    } else if (s->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(b, 96, "%s:%s (len %u)", ip, port_name(ntohs(in->sin_port)), (unsigned)len);
    } else if (s->sa_family == AF_UNIX) {
        snprintf(b, 96, "unix (len %u)", (unsigned)len);
    } else {
        snprintf(b, 96, "family %d (len %u)", s->sa_family, (unsigned)len);
    }
    return b;
}

static struct sockaddr_in lo(unsigned short port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* Bind to 127.0.0.1:0 and name the port the kernel chose. */
static unsigned short bind_named(int fd, const char *name)
{
    struct sockaddr_in a = lo(0);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind helper");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("getsockname helper");
    name_port(ntohs(a.sin_port), name);
    return ntohs(a.sin_port);
}

static unsigned short local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("getsockname helper");
    return ntohs(a.sin_port);
}

static void show_sockname(const char *what, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    errno = 0;
    int r = getsockname(fd, (struct sockaddr *)&ss, &len);
    if (r < 0)
        out("getsockname(%s) = -1 %s", what, ename(errno));
    else
        out("getsockname(%s) = 0 %s", what, fmt_addr(&ss, len));
}

static void show_peername(const char *what, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    errno = 0;
    int r = getpeername(fd, (struct sockaddr *)&ss, &len);
    if (r < 0)
        out("getpeername(%s) = -1 %s", what, ename(errno));
    else
        out("getpeername(%s) = 0 %s", what, fmt_addr(&ss, len));
}

static void show_data(const char *what, const char *buf, long n)
{
    char esc[256];
    int j = 0;
    for (long i = 0; i < n && j < (int)sizeof esc - 5; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            esc[j++] = (char)c;
        else
            j += snprintf(esc + j, sizeof esc - j, "\\x%02x", c);
    }
    esc[j] = 0;
    out("  %s data \"%s\"", what, esc);
}

static const char *fmt_events(unsigned ev)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {
        {POLLIN, "IN"},         {POLLPRI, "PRI"},       {POLLOUT, "OUT"},   {POLLERR, "ERR"},
        {POLLHUP, "HUP"},       {POLLNVAL, "NVAL"},     {POLLRDNORM, "RDNORM"},
        {POLLRDBAND, "RDBAND"}, {POLLWRNORM, "WRNORM"}, {POLLWRBAND, "WRBAND"},
        {POLLRDHUP, "RDHUP"},   {EPOLLET, "ET"},        {EPOLLONESHOT, "ONESHOT"},
    };
    static char b[128];
    b[0] = 0;
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (ev & bits[i].bit) {
            if (b[0])
                strcat(b, "|");
            strcat(b, bits[i].name);
            ev &= ~bits[i].bit;
        }
    if (ev)
        snprintf(b + strlen(b), sizeof b - strlen(b), "|0x%x", ev);
    if (!b[0])
        strcpy(b, "0");
    return b;
}

static void show_revents(const struct pollfd *p, int n)
{
    for (int i = 0; i < n; i++)
        out("  pollfd[%d] revents %s", i, fmt_events((unsigned)p[i].revents));
}

static int getint(int fd, int level, int opt)
{
    int v = -12345;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, opt, &v, &len) < 0)
        return -errno;
    return v;
}

static void show_fl(const char *what, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    out("  %s: O_NONBLOCK %s, FD_CLOEXEC %s", what, (fl >= 0 && (fl & O_NONBLOCK)) ? "set" : "clear",
        (fdfl >= 0 && (fdfl & FD_CLOEXEC)) ? "set" : "clear");
}

static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) != 1)
        die("wait_readable");
}

static void send_to(int fd, unsigned short port, const char *msg)
{
    struct sockaddr_in a = lo(port);
    if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a, sizeof a) != (ssize_t)strlen(msg))
        die("sendto helper");
}

/* ---- sections ---------------------------------------------------------- */

static int tcp_listener(const char *name)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket helper");
    bind_named(l, name);
    if (listen(l, 16) < 0)
        die("listen helper");
    return l;
}

static void tcp_stream(void)
{
    section("tcp stream");
    int l = FD(socket(AF_INET, SOCK_STREAM, 0));
    int one = 1, v;
    NUM(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    out("  SO_REUSEADDR %d", getint(l, SOL_SOCKET, SO_REUSEADDR));
    struct sockaddr_in a = lo(0);
    NUM(bind(l, (struct sockaddr *)&a, sizeof a));
    name_port(local_port(l), "L");
    show_sockname("l", l);
    out("  SO_ACCEPTCONN %d", getint(l, SOL_SOCKET, SO_ACCEPTCONN));
    NUM(listen(l, 8));
    out("  SO_ACCEPTCONN %d", getint(l, SOL_SOCKET, SO_ACCEPTCONN));

    int c = FD(socket(AF_INET, SOCK_STREAM, 0));
    show_peername("c before connect", c);
    struct sockaddr_in la = lo(local_port(l));
    NUM(connect(c, (struct sockaddr *)&la, sizeof la));
    name_port(local_port(c), "C");
    show_sockname("c", c);
    show_peername("c", c);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int s = FD(accept(l, (struct sockaddr *)&ss, &sl));
    out("  accept peer %s", fmt_addr(&ss, sl));
    show_sockname("s", s);
    show_peername("s", s);

    char buf[128];
    long n;
    NUM(write(c, "hello", 5));
    struct pollfd p = {.fd = s, .events = POLLIN | POLLOUT};
    NUM(poll(&p, 1, WAIT_MS));
    show_revents(&p, 1);
    NUM(ioctl(s, FIONREAD, &v));
    out("  FIONREAD %d", v);
    n = NUM(recv(s, buf, 3, MSG_PEEK));
    show_data("peek", buf, n);
    n = NUM(read(s, buf, sizeof buf));
    show_data("read", buf, n);
    NUM(recv(s, buf, sizeof buf, MSG_DONTWAIT));

    struct iovec wv[3] = {{"abc", 3}, {"def", 3}, {"gh", 2}};
    NUM(writev(c, wv, 3));
    wait_readable(s);
    char r1[4], r2[16];
    struct iovec rv[2] = {{r1, sizeof r1}, {r2, sizeof r2}};
    n = NUM(readv(s, rv, 2));
    show_data("readv[0]", r1, n < 4 ? n : 4);
    show_data("readv[1]", r2, n > 4 ? n - 4 : 0);

    NUM(send(s, "pong", 4, 0));
    n = NUM(recv(c, buf, sizeof buf, 0));
    show_data("recv", buf, n);

    struct iovec mv[2] = {{"x", 1}, {"yz", 2}};
    struct msghdr mh = {.msg_iov = mv, .msg_iovlen = 2};
    NUM(sendmsg(c, &mh, 0));
    wait_readable(s);
    struct sockaddr_storage from;
    struct iovec iv = {buf, sizeof buf};
    struct msghdr rh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iv, .msg_iovlen = 1};
    n = NUM(recvmsg(s, &rh, 0));
    show_data("recvmsg", buf, n);
    out("  msg_namelen %u msg_flags 0x%x", (unsigned)rh.msg_namelen, (unsigned)rh.msg_flags);

    NUM(sendto(c, "to", 2, 0, NULL, 0));
    sl = sizeof from;
    n = NUM(recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &sl));
    show_data("recvfrom", buf, n);
    out("  addrlen %u", (unsigned)sl);

    section("tcp sockopts");
    NUM(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    out("  TCP_NODELAY %d", getint(c, IPPROTO_TCP, TCP_NODELAY));
    NUM(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
    out("  SO_KEEPALIVE %d", getint(c, SOL_SOCKET, SO_KEEPALIVE));
    out("  SO_TYPE %d SO_DOMAIN %d SO_PROTOCOL %d SO_ERROR %d", getint(c, SOL_SOCKET, SO_TYPE),
        getint(c, SOL_SOCKET, SO_DOMAIN), getint(c, SOL_SOCKET, SO_PROTOCOL), getint(c, SOL_SOCKET, SO_ERROR));
    int tos = 0x10;
    NUM(setsockopt(c, IPPROTO_IP, IP_TOS, &tos, sizeof tos));
    out("  IP_TOS 0x%x", getint(c, IPPROTO_IP, IP_TOS));
    struct linger lg = {.l_onoff = 1, .l_linger = 3};
    NUM(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    struct linger lg2;
    socklen_t ol = sizeof lg2;
    NUM(getsockopt(c, SOL_SOCKET, SO_LINGER, &lg2, &ol));
    out("  SO_LINGER onoff %d linger %d len %u", lg2.l_onoff, lg2.l_linger, (unsigned)ol);
    lg.l_onoff = 0;
    NUM(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    struct timeval tv = {.tv_sec = 1, .tv_usec = 500000};
    NUM(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    struct timeval tv2;
    ol = sizeof tv2;
    NUM(getsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv2, &ol));
    out("  SO_RCVTIMEO %ld.%06ld", (long)tv2.tv_sec, (long)tv2.tv_usec);
    int rb = 65536;
    NUM(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb));
    out("  SO_RCVBUF %d", getint(c, SOL_SOCKET, SO_RCVBUF));
    /* Short optlen on get: the kernel copies fewer bytes and reports it. */
    v = 0;
    ol = 2;
    NUM(getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &ol));
    out("  short getsockopt len %u", (unsigned)ol);

    section("tcp shutdown");
    NUM(shutdown(c, SHUT_WR));
    n = NUM(read(s, buf, sizeof buf));
    struct pollfd ps = {.fd = s, .events = POLLIN | POLLRDHUP};
    NUM(poll(&ps, 1, WAIT_MS));
    show_revents(&ps, 1);
    NUM(write(s, "bye", 3));
    n = NUM(read(c, buf, sizeof buf));
    show_data("read", buf, n);
    NUM(shutdown(s, SHUT_RDWR));
    NUM(read(c, buf, sizeof buf));
    NUM(shutdown(c, 99));
    NUM(close(s));
    NUM(close(c));
    NUM(close(c));
    NUM(close(l));
}

static void tcp_nonblocking(void)
{
    section("tcp non-blocking connect and accept4");
    int l = tcp_listener("L2");
    struct sockaddr_in la = lo(local_port(l));
    int c = FD(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    show_fl("c", c);
    NUM(connect(c, (struct sockaddr *)&la, sizeof la));
    struct pollfd p = {.fd = c, .events = POLLOUT};
    NUM(poll(&p, 1, WAIT_MS));
    show_revents(&p, 1);
    out("  SO_ERROR %s", ename(getint(c, SOL_SOCKET, SO_ERROR)));
    NUM(connect(c, (struct sockaddr *)&la, sizeof la));

    int s = FD(accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
    show_fl("accept4(NONBLOCK|CLOEXEC)", s);
    char buf[64];
    NUM(read(s, buf, sizeof buf));
    NUM(accept4(l, NULL, NULL, 0x1));

    int on = 1, off = 0;
    NUM(ioctl(l, FIONBIO, &on));
    NUM(accept4(l, NULL, NULL, SOCK_NONBLOCK));
    NUM(accept(l, NULL, NULL));
    NUM(ioctl(l, FIONBIO, &off));

    int c2 = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(connect(c2, (struct sockaddr *)&la, sizeof la));
    int s2 = FD(accept4(l, NULL, NULL, 0));
    show_fl("accept4(0)", s2);
    int c3 = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(connect(c3, (struct sockaddr *)&la, sizeof la));
    int s3 = FD(accept4(l, NULL, NULL, SOCK_CLOEXEC));
    show_fl("accept4(CLOEXEC)", s3);
    NUM(close(c3));
    NUM(close(s3));
    NUM(close(c2));
    NUM(close(s2));
    NUM(close(c));
    NUM(close(s));

    section("tcp connection refused");
    /* A bound TCP socket that does not listen answers SYN with RST. */
    int r = FD(socket(AF_INET, SOCK_STREAM, 0));
    bind_named(r, "R");
    struct sockaddr_in ra = lo(local_port(r));
    int d = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(connect(d, (struct sockaddr *)&ra, sizeof ra));
    NUM(close(d));
    int e = FD(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    NUM(connect(e, (struct sockaddr *)&ra, sizeof ra));
    struct pollfd pe = {.fd = e, .events = POLLOUT};
    NUM(poll(&pe, 1, WAIT_MS));
    show_revents(&pe, 1);
    out("  SO_ERROR %s", ename(getint(e, SOL_SOCKET, SO_ERROR)));
    out("  SO_ERROR again %d", getint(e, SOL_SOCKET, SO_ERROR));
    NUM(close(e));
    NUM(close(r));
    NUM(close(l));
}

static void udp(void)
{
    section("udp");
    int u1 = FD(socket(AF_INET, SOCK_DGRAM, 0));
    struct sockaddr_in a = lo(0);
    NUM(bind(u1, (struct sockaddr *)&a, sizeof a));
    name_port(local_port(u1), "U1");
    int u2 = FD(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    show_fl("u2", u2);
    bind_named(u2, "U2");
    struct sockaddr_in a1 = lo(local_port(u1));
    char buf[128];
    long n;
    struct sockaddr_storage from;
    socklen_t fl;

    NUM(sendto(u2, "one", 3, 0, (struct sockaddr *)&a1, sizeof a1));
    fl = sizeof from;
    n = NUM(recvfrom(u1, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl));
    show_data("recvfrom", buf, n);
    out("  from %s", fmt_addr(&from, fl));

    NUM(sendto(u2, "0123456789", 10, 0, (struct sockaddr *)&a1, sizeof a1));
    n = NUM(recv(u1, buf, 4, MSG_TRUNC));
    show_data("recv MSG_TRUNC", buf, 4);

    NUM(sendto(u2, "abcdefghij", 10, 0, (struct sockaddr *)&a1, sizeof a1));
    struct iovec iv = {buf, 4};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iv, .msg_iovlen = 1};
    n = NUM(recvmsg(u1, &mh, 0));
    show_data("recvmsg", buf, n);
    out("  from %s msg_flags%s", fmt_addr(&from, mh.msg_namelen), (mh.msg_flags & MSG_TRUNC) ? " MSG_TRUNC" : " 0");

    NUM(sendto(u2, "peek", 4, 0, (struct sockaddr *)&a1, sizeof a1));
    wait_readable(u1);
    n = NUM(recv(u1, buf, sizeof buf, MSG_PEEK));
    show_data("peek", buf, n);
    int v = -1;
    NUM(ioctl(u1, FIONREAD, &v));
    out("  FIONREAD %d", v);
    n = NUM(recv(u1, buf, sizeof buf, 0));
    show_data("recv", buf, n);
    NUM(recv(u1, buf, sizeof buf, MSG_DONTWAIT));
    NUM(ioctl(u1, FIONREAD, &v));
    out("  FIONREAD %d", v);

    struct iovec sv[2] = {{"ms", 2}, {"g!", 2}};
    struct msghdr sh = {.msg_name = &a1, .msg_namelen = sizeof a1, .msg_iov = sv, .msg_iovlen = 2};
    NUM(sendmsg(u2, &sh, 0));
    iv.iov_len = sizeof buf;
    mh.msg_namelen = sizeof from;
    n = NUM(recvmsg(u1, &mh, 0));
    show_data("recvmsg", buf, n);
    out("  from %s", fmt_addr(&from, mh.msg_namelen));

    section("udp sendmmsg recvmmsg");
    const char *words[3] = {"alpha", "beta", "gamma"};
    struct iovec wiov[3];
    struct mmsghdr wm[3];
    memset(wm, 0, sizeof wm);
    for (int i = 0; i < 3; i++) {
        wiov[i].iov_base = (void *)words[i];
        wiov[i].iov_len = strlen(words[i]);
        wm[i].msg_hdr.msg_name = &a1;
        wm[i].msg_hdr.msg_namelen = sizeof a1;
        wm[i].msg_hdr.msg_iov = &wiov[i];
        wm[i].msg_hdr.msg_iovlen = 1;
    }
    NUM(sendmmsg(u2, wm, 3, 0));
    for (int i = 0; i < 3; i++)
        out("  sent[%d] msg_len %u", i, wm[i].msg_len);
    char rbuf[3][32];
    struct iovec riov[3];
    struct mmsghdr rm[3];
    struct sockaddr_in rfrom[3];
    memset(rm, 0, sizeof rm);
    for (int i = 0; i < 3; i++) {
        riov[i].iov_base = rbuf[i];
        riov[i].iov_len = sizeof rbuf[i];
        rm[i].msg_hdr.msg_name = &rfrom[i];
        rm[i].msg_hdr.msg_namelen = sizeof rfrom[i];
        rm[i].msg_hdr.msg_iov = &riov[i];
        rm[i].msg_hdr.msg_iovlen = 1;
    }
    /* Blocking, no timeout: returns only when all three have arrived. */
    n = NUM(recvmmsg(u1, rm, 3, 0, NULL));
    for (int i = 0; i < n; i++) {
        out("  rm[%d] msg_len %u from %s", i, rm[i].msg_len, fmt_addr(&rfrom[i], rm[i].msg_hdr.msg_namelen));
        show_data("rm", rbuf[i], rm[i].msg_len);
    }
    NUM(recvmmsg(u1, rm, 3, MSG_DONTWAIT, NULL));
    NUM(sendmmsg(u2, wm, 0, 0));

    NUM(sendto(u2, "peek-mmsg", 9, 0, (struct sockaddr *)&a1, sizeof a1));
    wait_readable(u1);
    /* Peeking never consumes: both slots get the same datagram. */
    n = NUM(recvmmsg(u1, rm, 2, MSG_PEEK | MSG_DONTWAIT, NULL));
    for (int i = 0; i < n; i++)
        show_data("peeked", rbuf[i], rm[i].msg_len);
    riov[0].iov_len = 4;
    rm[0].msg_hdr.msg_namelen = sizeof rfrom[0];
    n = NUM(recvmmsg(u1, rm, 1, MSG_TRUNC, NULL));
    out("  msg_len %u msg_flags%s", rm[0].msg_len, (rm[0].msg_hdr.msg_flags & MSG_TRUNC) ? " MSG_TRUNC" : " 0");
    show_data("truncated", rbuf[0], 4);
    riov[0].iov_len = sizeof rbuf[0];

    section("udp connected");
    show_peername("u2", u2);
    NUM(connect(u2, (struct sockaddr *)&a1, sizeof a1));
    show_peername("u2", u2);
    NUM(send(u2, "conn", 4, 0));
    NUM(write(u2, "wr", 2));
    struct iovec wv2[2] = {{"v1", 2}, {"v2", 2}};
    NUM(writev(u2, wv2, 2));
    n = NUM(recv(u1, buf, sizeof buf, 0));
    show_data("recv", buf, n);
    n = NUM(read(u1, buf, sizeof buf));
    show_data("read", buf, n);
    char q1[3], q2[8];
    struct iovec rv[2] = {{q1, sizeof q1}, {q2, sizeof q2}};
    n = NUM(readv(u1, rv, 2));
    show_data("readv[0]", q1, n < 3 ? n : 3);
    show_data("readv[1]", q2, n > 3 ? n - 3 : 0);
    NUM(send(u1, "x", 1, 0));
    struct sockaddr_in unspec = {.sin_family = AF_UNSPEC};
    NUM(connect(u2, (struct sockaddr *)&unspec, sizeof unspec));
    show_peername("u2 after AF_UNSPEC", u2);
    struct sockaddr_in six = a1;
    six.sin_family = AF_INET6;
    NUM(sendto(u2, "x", 1, 0, (struct sockaddr *)&six, sizeof six));
    NUM(sendto(u2, "x", 1, 0, (struct sockaddr *)&a1, 3));
    NUM(listen(u1, 1));
    NUM(accept(u1, NULL, NULL));
    out("  SO_TYPE %d", getint(u1, SOL_SOCKET, SO_TYPE));

    section("udp port unreachable");
    int dead = socket(AF_INET, SOCK_DGRAM, 0);
    bind_named(dead, "DEAD");
    struct sockaddr_in da = lo(local_port(dead));
    close(dead);
    NUM(connect(u2, (struct sockaddr *)&da, sizeof da));
    NUM(send(u2, "void", 4, 0));
    struct pollfd pu = {.fd = u2, .events = POLLIN};
    NUM(poll(&pu, 1, WAIT_MS));
    show_revents(&pu, 1);
    NUM(recv(u2, buf, sizeof buf, 0));
    out("  SO_ERROR after %d", getint(u2, SOL_SOCKET, SO_ERROR));

    NUM(close(u2));
    NUM(close(u1));
}

static void unix_pair(void)
{
    section("socketpair");
    int sv[2];
    NUM(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    char buf[32];
    NUM(send(sv[0], "unix", 4, 0));
    long n = NUM(recv(sv[1], buf, sizeof buf, 0));
    show_data("recv", buf, n);
    show_sockname("sv[0]", sv[0]);
    NUM(close(sv[0]));
    NUM(read(sv[1], buf, sizeof buf));
    NUM(close(sv[1]));
    NUM(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv));
    show_fl("dgram pair", sv[0]);
    NUM(write(sv[1], "dg", 2));
    n = NUM(read(sv[0], buf, sizeof buf));
    show_data("read", buf, n);
    NUM(close(sv[0]));
    NUM(close(sv[1]));
    NUM(socketpair(AF_INET, SOCK_STREAM, 0, sv));
}

static void fcntl_ioctl(void)
{
    section("fcntl and ioctl");
    int s = FD(socket(AF_INET, SOCK_STREAM, 0));
    out("  F_GETFL 0x%x", fcntl(s, F_GETFL));
    NUM(fcntl(s, F_SETFL, O_NONBLOCK));
    out("  F_GETFL 0x%x", fcntl(s, F_GETFL));
    int off = 0, on = 1;
    NUM(ioctl(s, FIONBIO, &off));
    out("  F_GETFL 0x%x", fcntl(s, F_GETFL));
    NUM(ioctl(s, FIONBIO, &on));
    out("  F_GETFL 0x%x", fcntl(s, F_GETFL));
    NUM(fcntl(s, F_SETFL, 0));
    NUM(fcntl(s, F_GETFD));
    NUM(fcntl(s, F_SETFD, FD_CLOEXEC));
    NUM(fcntl(s, F_GETFD));
    NUM(fcntl(s, F_SETFD, 0));

    int d = fcntl(s, F_DUPFD, 100);
    out("fcntl(s, F_DUPFD, 100) %s", d >= 100 ? ">= 100" : ename(errno));
    NUM(fcntl(d, F_GETFD));
    /* File status flags live in the open file description: dups share them. */
    NUM(fcntl(d, F_SETFL, O_NONBLOCK));
    show_fl("s after F_SETFL on its dup", s);
    int dc = fcntl(s, F_DUPFD_CLOEXEC, 200);
    out("fcntl(s, F_DUPFD_CLOEXEC, 200) %s", dc >= 200 ? ">= 200" : ename(errno));
    NUM(fcntl(dc, F_GETFD));
    out("  SO_TYPE via F_DUPFD_CLOEXEC copy %d", getint(dc, SOL_SOCKET, SO_TYPE));
    int v = -1;
    NUM(ioctl(s, FIONREAD, &v));
    out("  FIONREAD %d", v);
    NUM(ioctl(s, FIONBIO, NULL));
    NUM(fcntl(-1, F_GETFL));
    NUM(fcntl(UNUSED_FD, F_GETFD));
    NUM(ioctl(UNUSED_FD, FIONBIO, &on));
    NUM(close(dc));
    NUM(close(d));
    NUM(close(s));
}

static void dups(void)
{
    section("dup dup2 dup3");
    int u = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(u, "D");
    int sender = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(sender, "DS");
    int d = FD(dup(u));
    show_sockname("dup", d);
    NUM(close(u));
    send_to(sender, local_port(d), "via dup");
    char buf[64];
    long n = NUM(recv(d, buf, sizeof buf, 0));
    show_data("recv on dup after close of original", buf, n);

    out("dup2(d, d) %s", dup2(d, d) == d ? "= d" : "!= d");
    NUM(dup2(-1, d));
    NUM(dup2(d, -1));
    NUM(dup3(d, d, 0));
    int t = FD(socket(AF_INET, SOCK_STREAM, 0));
    out("dup2(d, t) %s", dup2(d, t) == t ? "= t" : ename(errno));
    out("  SO_TYPE of t %d", getint(t, SOL_SOCKET, SO_TYPE));
    show_sockname("t", t);
    send_to(sender, local_port(d), "via dup2");
    n = NUM(recv(t, buf, sizeof buf, 0));
    show_data("recv on dup2 target", buf, n);
    int t3 = FD(socket(AF_INET, SOCK_DGRAM, 0));
    out("dup3(d, t3, O_CLOEXEC) %s", dup3(d, t3, O_CLOEXEC) == t3 ? "= t3" : ename(errno));
    NUM(fcntl(t3, F_GETFD));
    NUM(dup3(d, t3, 0x4));
    NUM(dup(UNUSED_FD));
    NUM(close(t3));
    NUM(close(t));
    NUM(close(d));
    NUM(close(sender));
}

/* A null pointer the compiler cannot see, for the EFAULT check. */
static struct pollfd *volatile null_fds;

static void multiplexing(void)
{
    section("poll ppoll select pselect");
    int rd = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(rd, "PR");
    int idle = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(idle, "PI");
    int snd = FD(socket(AF_INET, SOCK_DGRAM, 0));
    char buf[64];
    send_to(snd, local_port(rd), "ready");
    /* The unused fd reports POLLNVAL at once: have the datagram there first. */
    wait_readable(rd);
    struct pollfd p[4] = {
        {.fd = rd, .events = POLLIN},
        {.fd = idle, .events = POLLIN},
        {.fd = -1, .events = POLLIN},
        {.fd = UNUSED_FD, .events = POLLIN},
    };
    NUM(poll(p, 4, WAIT_MS));
    show_revents(p, 4);
    NUM(poll(&p[1], 1, 0));
    struct pollfd pw = {.fd = idle, .events = POLLIN | POLLOUT};
    NUM(poll(&pw, 1, 0));
    show_revents(&pw, 1);
    struct timespec ts = {.tv_sec = 5};
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    NUM(ppoll(p, 2, &ts, &mask));
    show_revents(p, 2);
    NUM(ppoll(p, 1, NULL, NULL));
    struct timespec zero = {0};
    NUM(ppoll(&p[1], 1, &zero, NULL));
    NUM(poll(null_fds, 1, 0));

    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(rd, &r);
    FD_SET(idle, &r);
    FD_SET(idle, &w);
    int nfds = (rd > idle ? rd : idle) + 1;
    struct timeval tv = {.tv_sec = 5};
    NUM(select(nfds, &r, &w, NULL, &tv));
    out("  read: rd %d idle %d; write: idle %d", FD_ISSET(rd, &r), FD_ISSET(idle, &r), FD_ISSET(idle, &w));
    FD_ZERO(&r);
    FD_SET(idle, &r);
    struct timeval tz = {0};
    NUM(select(idle + 1, &r, NULL, NULL, &tz));
    /* A just-closed fd: select ignores fds beyond the fd table's size, so not UNUSED_FD. */
    int gone = socket(AF_INET, SOCK_DGRAM, 0);
    close(gone);
    FD_ZERO(&r);
    FD_SET(gone, &r);
    tz.tv_usec = 0;
    NUM(select(gone + 1, &r, NULL, NULL, &tz));
    NUM(select(-1, NULL, NULL, NULL, &tz));
    FD_ZERO(&r);
    FD_SET(rd, &r);
    FD_SET(idle, &r);
    NUM(pselect(nfds, &r, NULL, NULL, &ts, &mask));
    out("  read: rd %d idle %d", FD_ISSET(rd, &r), FD_ISSET(idle, &r));
    NUM(recv(rd, buf, sizeof buf, 0));

    section("epoll");
    NUM(epoll_create(0));
    NUM(epoll_create(-1));
    int ep = FD(epoll_create(1));
    NUM(fcntl(ep, F_GETFD));
    int ep2 = FD(epoll_create1(EPOLL_CLOEXEC));
    NUM(fcntl(ep2, F_GETFD));
    NUM(epoll_create1(0x1));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_MOD, idle, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_DEL, idle, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, UNUSED_FD, &ev));
    NUM(epoll_ctl(UNUSED_FD, EPOLL_CTL_ADD, rd, &ev));
    NUM(epoll_ctl(rd, EPOLL_CTL_ADD, idle, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
    NUM(epoll_ctl(ep, 99, idle, &ev));
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, idle, NULL));
    int file = open("/proc/self/exe", O_RDONLY);
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, file, &ev));
    close(file);
    struct epoll_event evw = {.events = EPOLLOUT, .data.u64 = 2};
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, idle, &evw));

    struct epoll_event got[8];
    send_to(snd, local_port(rd), "e1");
    /* The write side is ready at once; make sure the datagram is there too. */
    wait_readable(rd);
    long n = NUM(epoll_wait(ep, got, 8, WAIT_MS));
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++)
            if (got[j].data.u64 < got[i].data.u64) {
                struct epoll_event t = got[i];
                got[i] = got[j];
                got[j] = t;
            }
    for (long i = 0; i < n; i++)
        out("  event data %llu events %s", (unsigned long long)got[i].data.u64, fmt_events(got[i].events));
    NUM(epoll_wait(ep, got, 0, 0));
    NUM(epoll_wait(rd, got, 8, 0));
    NUM(epoll_wait(-1, got, 8, 0));
    NUM(epoll_pwait(ep, got, 8, WAIT_MS, &mask));
    n = NUM(recv(rd, buf, sizeof buf, 0));
    show_data("recv", buf, n);
    n = NUM(epoll_pwait2(ep, got, 8, &zero, NULL));
    for (long i = 0; i < n; i++)
        out("  event data %llu events %s", (unsigned long long)got[i].data.u64, fmt_events(got[i].events));
    NUM(epoll_pwait2(ep, got, 8, &ts, &mask));

    section("epoll edge-triggered and oneshot");
    NUM(epoll_ctl(ep, EPOLL_CTL_DEL, idle, NULL));
    ev.events = EPOLLIN | EPOLLET;
    NUM(epoll_ctl(ep, EPOLL_CTL_MOD, rd, &ev));
    send_to(snd, local_port(rd), "edge");
    n = NUM(epoll_wait(ep, got, 8, WAIT_MS));
    for (long i = 0; i < n; i++)
        out("  event data %llu events %s", (unsigned long long)got[i].data.u64, fmt_events(got[i].events));
    NUM(epoll_wait(ep, got, 8, 0));
    NUM(recv(rd, buf, sizeof buf, 0));
    evw.events = EPOLLOUT | EPOLLONESHOT;
    NUM(epoll_ctl(ep2, EPOLL_CTL_ADD, idle, &evw));
    NUM(epoll_wait(ep2, got, 8, WAIT_MS));
    NUM(epoll_wait(ep2, got, 8, 0));
    NUM(epoll_ctl(ep2, EPOLL_CTL_MOD, idle, &evw));
    NUM(epoll_wait(ep2, got, 8, WAIT_MS));

    section("epoll and dup: registrations belong to the open socket");
    ev.events = EPOLLIN;
    NUM(epoll_ctl(ep, EPOLL_CTL_DEL, rd, NULL));
    int orig = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(orig, "EO");
    int copy = FD(dup(orig));
    ev.data.u64 = 7;
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, orig, &ev));
    NUM(close(orig));
    send_to(snd, local_port(copy), "still-watched");
    n = NUM(epoll_wait(ep, got, 8, WAIT_MS));
    for (long i = 0; i < n; i++)
        out("  event data %llu events %s", (unsigned long long)got[i].data.u64, fmt_events(got[i].events));
    NUM(epoll_ctl(ep, EPOLL_CTL_DEL, copy, NULL));
    NUM(recv(copy, buf, sizeof buf, 0));
    NUM(close(copy));
    NUM(epoll_wait(ep, got, 8, 0));

    NUM(close(ep2));
    NUM(close(ep));
    NUM(close(snd));
    NUM(close(idle));
    NUM(close(rd));
}

/* Run /bin/sh printing $LD_PRELOAD and a sluice setting through exec variant `how`; report what the child saw. */
static void exec_env(const char *how)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        die("pipe");
    char *argv[] = {"sh", "-c", "echo \"LD_PRELOAD=$LD_PRELOAD SLUICE_OFFLOAD=$SLUICE_OFFLOAD\"", NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", "SCRUBBED=1", NULL};
    pid_t pid = strcmp(how, "vfork+execve") == 0 ? vfork() : fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        if (strcmp(how, "execve") == 0 || strcmp(how, "vfork+execve") == 0)
            execve("/bin/sh", argv, envp);
        else if (strcmp(how, "execle") == 0)
            execle("/bin/sh", "sh", "-c", argv[2], (char *)NULL, envp);
        else if (strcmp(how, "execvpe") == 0)
            execvpe("sh", argv, envp);
        else if (strcmp(how, "execvp") == 0)
            execvp("sh", argv);
        _exit(127);
    }
    close(pfd[1]);
    char buf[512];
    long total = 0, n;
    while (total < (long)sizeof buf - 1 && (n = read(pfd[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    if (total > 0 && buf[total - 1] == '\n')
        buf[total - 1] = 0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    out("%s child exit %d", how, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    out("ENV: %s %s", how, buf);
}

static void processes(void)
{
    section("fork");
    int f = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(f, "F");
    int inh = FD(socket(AF_INET, SOCK_DGRAM, 0));
    pid_t pid = fork();
    if (pid == 0) {
        /* The child does socket work of its own and through an inherited fd. */
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = lo(local_port(f));
        int ok = s >= 0 && sendto(s, "child-new", 9, 0, (struct sockaddr *)&a, sizeof a) == 9 &&
                 sendto(inh, "child-inherited", 15, 0, (struct sockaddr *)&a, sizeof a) == 15 && close(s) == 0;
        _exit(ok ? 7 : 1);
    }
    int st;
    NUM(waitpid(pid, &st, 0) == pid);
    out("  child exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char b1[64] = {0}, b2[64] = {0};
    NUM(recv(f, b1, sizeof b1 - 1, 0));
    NUM(recv(f, b2, sizeof b2 - 1, 0));
    /* Two datagrams from two sockets: report them in a fixed order. */
    if (strcmp(b1, b2) > 0)
        out("  got \"%s\" and \"%s\"", b2, b1);
    else
        out("  got \"%s\" and \"%s\"", b1, b2);
    NUM(close(inh));
    NUM(close(f));

    section("vfork and exec");
    pid = vfork();
    if (pid == 0) {
        char *argv[] = {"sh", "-c", "exit 3", NULL};
        execve("/bin/sh", argv, environ);
        _exit(127);
    }
    NUM(waitpid(pid, &st, 0) == pid);
    out("  child exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    exec_env("execve");
    exec_env("vfork+execve");
    exec_env("execle");
    exec_env("execvpe");
    exec_env("execvp");
}

/* ---- signals and timeouts: blocking calls must return EINTR or restart as the kernel does ---- */

static volatile sig_atomic_t alarms;
static int alarm_fd = -1;
static struct sockaddr_in alarm_dst;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
    /* sendto is async-signal-safe: the restarted call gets something to return. */
    if (alarm_fd >= 0)
        sendto(alarm_fd, "from-handler", 12, MSG_DONTWAIT, (struct sockaddr *)&alarm_dst, sizeof alarm_dst);
}

static volatile sig_atomic_t pipes;
static void on_pipe(int sig)
{
    (void)sig;
    pipes++;
}

/* A periodic SIGALRM, so a signal lands inside the blocking call however late it starts. */
static void arm(int restart, int send_from, unsigned short port)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    alarm_fd = send_from;
    alarm_dst = lo(port);
    alarms = 0;
    struct itimerval it = {.it_interval = {0, 20000}, .it_value = {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm(void)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    alarm_fd = -1;
}

static void drain(int fd)
{
    char buf[64];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        ;
}

static void signals(void)
{
    section("signals and timeouts");
    int u = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(u, "S");
    int snd = FD(socket(AF_INET, SOCK_DGRAM, 0));
    char buf[64];
    struct pollfd p = {.fd = u, .events = POLLIN};

    arm(0, -1, 0);
    NUM(recv(u, buf, sizeof buf, 0));
    disarm();
    out("  handler ran %s", alarms > 0 ? "yes" : "no");
    arm(0, -1, 0);
    NUM(poll(&p, 1, -1));
    disarm();
    int ep = FD(epoll_create1(0));
    struct epoll_event ev = {.events = EPOLLIN}, got;
    NUM(epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev));
    /* epoll_wait is never restarted, SA_RESTART or not. */
    arm(1, -1, 0);
    NUM(epoll_wait(ep, &got, 1, -1));
    disarm();
    NUM(close(ep));
    fd_set r;
    FD_ZERO(&r);
    FD_SET(u, &r);
    arm(1, -1, 0);
    NUM(select(u + 1, &r, NULL, NULL, NULL));
    disarm();

    /* With SA_RESTART a blocking recv resumes and returns what the handler sent. */
    arm(1, snd, local_port(u));
    long n = NUM(recv(u, buf, sizeof buf, 0));
    disarm();
    show_data("restarted recv", buf, n);
    drain(u);

    /* A fresh socket: a late datagram from the handler cannot reach it. */
    int t = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(t, "T");
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
    NUM(setsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    NUM(recv(t, buf, sizeof buf, 0));
    NUM(read(t, buf, sizeof buf));
    NUM(close(t));

    int l = tcp_listener("SL");
    struct sockaddr_in la = lo(local_port(l));
    int c = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(connect(c, (struct sockaddr *)&la, sizeof la));
    int s = FD(accept(l, NULL, NULL));
    NUM(send(c, "wait", 4, 0));
    NUM(send(c, "all", 3, 0));
    NUM(send(c, "!", 1, 0));
    n = NUM(recv(s, buf, 8, MSG_WAITALL));
    show_data("MSG_WAITALL", buf, n);

    struct sigaction sp, old;
    memset(&sp, 0, sizeof sp);
    sp.sa_handler = on_pipe;
    sigaction(SIGPIPE, &sp, &old);
    NUM(shutdown(c, SHUT_WR));
    NUM(send(c, "x", 1, 0));
    out("  SIGPIPE delivered %d", (int)pipes);
    NUM(send(c, "x", 1, MSG_NOSIGNAL));
    NUM(write(c, "x", 1));
    out("  SIGPIPE delivered %d", (int)pipes);
    sigaction(SIGPIPE, &old, NULL);

    NUM(close(s));
    NUM(close(c));
    NUM(close(l));
    NUM(close(snd));
    NUM(close(u));
}

/* Lengths the compiler cannot see, so that fortify calls the _chk variants. */
static volatile size_t vlen = 64;
static volatile nfds_t vnfds = 1;

static void chk(void)
{
    section("fortified _chk variants");
    int u = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(u, "K");
    int snd = FD(socket(AF_INET, SOCK_DGRAM, 0));
    bind_named(snd, "KS");
    char buf[64];
    struct pollfd p[1] = {{.fd = u, .events = POLLIN}};
    send_to(snd, local_port(u), "chk-read");
    NUM(poll(p, vnfds, WAIT_MS));
    show_revents(p, 1);
    long n = NUM(read(u, buf, vlen));
    show_data("__read_chk", buf, n);
    send_to(snd, local_port(u), "chk-recv");
    n = NUM(recv(u, buf, vlen, 0));
    show_data("__recv_chk", buf, n);
    send_to(snd, local_port(u), "chk-recvfrom");
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    n = NUM(recvfrom(u, buf, vlen, 0, (struct sockaddr *)&from, &fl));
    show_data("__recvfrom_chk", buf, n);
    out("  from %s", fmt_addr(&from, fl));
    NUM(recv(u, buf, vlen, MSG_DONTWAIT));
    NUM(close(snd));
    NUM(close(u));
}

static void misuse(void)
{
    section("misuse: bad fds");
    char buf[64];
    struct sockaddr_in a = lo(0);
    socklen_t al = sizeof a;
    int one = 1;
    NUM(send(-1, "x", 1, MSG_NOSIGNAL));
    NUM(recv(-1, buf, sizeof buf, 0));
    NUM(bind(-1, (struct sockaddr *)&a, sizeof a));
    NUM(listen(-1, 1));
    NUM(close(-1));
    NUM(read(UNUSED_FD, buf, sizeof buf));
    NUM(write(UNUSED_FD, "x", 1));
    NUM(accept(UNUSED_FD, NULL, NULL));
    NUM(connect(UNUSED_FD, (struct sockaddr *)&a, sizeof a));
    NUM(getsockname(UNUSED_FD, (struct sockaddr *)&a, &al));
    NUM(setsockopt(UNUSED_FD, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    NUM(shutdown(UNUSED_FD, SHUT_RDWR));
    int closed = FD(socket(AF_INET, SOCK_DGRAM, 0));
    NUM(close(closed));
    NUM(sendto(closed, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    NUM(getpeername(closed, (struct sockaddr *)&a, &al));

    section("misuse: not a socket");
    int pfd[2];
    NUM(pipe(pfd));
    int pr = pfd[0];
    struct iovec iv = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iv, .msg_iovlen = 1};
    struct mmsghdr mm = {.msg_hdr = mh};
    int v;
    socklen_t vl = sizeof v;
    NUM(bind(pr, (struct sockaddr *)&a, sizeof a));
    NUM(connect(pr, (struct sockaddr *)&a, sizeof a));
    NUM(listen(pr, 1));
    NUM(accept(pr, NULL, NULL));
    NUM(accept4(pr, NULL, NULL, SOCK_NONBLOCK));
    NUM(getsockname(pr, (struct sockaddr *)&a, &al));
    NUM(getpeername(pr, (struct sockaddr *)&a, &al));
    NUM(getsockopt(pr, SOL_SOCKET, SO_TYPE, &v, &vl));
    NUM(setsockopt(pr, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    NUM(shutdown(pr, SHUT_RD));
    NUM(send(pfd[1], "x", 1, MSG_NOSIGNAL));
    NUM(sendto(pfd[1], "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    NUM(sendmsg(pfd[1], &mh, 0));
    NUM(sendmmsg(pfd[1], &mm, 1, 0));
    NUM(recv(pr, buf, sizeof buf, MSG_DONTWAIT));
    NUM(recvfrom(pr, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL));
    NUM(recvmsg(pr, &mh, MSG_DONTWAIT));
    NUM(recvmmsg(pr, &mm, 1, MSG_DONTWAIT, NULL));
    NUM(write(pfd[1], "pipe", 4));
    long n = NUM(read(pr, buf, sizeof buf));
    show_data("pipe read", buf, n);
    NUM(close(pfd[0]));
    NUM(close(pfd[1]));

    section("misuse: bad pointers and lengths");
    int u = FD(socket(AF_INET, SOCK_DGRAM, 0));
    NUM(bind(u, NULL, sizeof a));
    NUM(bind(u, (struct sockaddr *)&a, 4));
    NUM(bind(u, (struct sockaddr *)&a, 0));
    struct sockaddr_in far = a;
    inet_pton(AF_INET, "192.0.2.1", &far.sin_addr);
    NUM(bind(u, (struct sockaddr *)&far, sizeof far));
    bind_named(u, "M");
    NUM(bind(u, (struct sockaddr *)&a, sizeof a));
    NUM(connect(u, NULL, sizeof a));
    NUM(connect(u, (struct sockaddr *)&a, 2));
    NUM(getsockname(u, NULL, &al));
    NUM(getsockname(u, (struct sockaddr *)&a, NULL));
    al = (socklen_t)-1;
    NUM(getsockname(u, (struct sockaddr *)&a, &al));
    memset(&a, 0, sizeof a);
    al = 4;
    NUM(getsockname(u, (struct sockaddr *)&a, &al));
    out("  short getsockname: len %u family %d port %s", (unsigned)al, a.sin_family, port_name(ntohs(a.sin_port)));
    NUM(setsockopt(u, SOL_SOCKET, SO_REUSEADDR, &one, 2));
    NUM(setsockopt(u, SOL_SOCKET, SO_REUSEADDR, NULL, sizeof one));
    vl = sizeof v;
    NUM(getsockopt(u, SOL_SOCKET, SO_TYPE, NULL, &vl));
    vl = (socklen_t)-1;
    NUM(getsockopt(u, SOL_SOCKET, SO_TYPE, &v, &vl));
    vl = sizeof v;
    NUM(getsockopt(u, SOL_SOCKET, 12345, &v, &vl));
    NUM(setsockopt(u, 12345, 1, &one, sizeof one));
    NUM(getsockopt(u, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
    struct sockaddr_in self = lo(local_port(u));
    NUM(sendto(u, "x", 1, 0, (struct sockaddr *)&self, 3));
    NUM(sendto(u, NULL, 5, 0, (struct sockaddr *)&self, sizeof self));
    NUM(sendto(u, "fault", 5, 0, (struct sockaddr *)&self, sizeof self));
    wait_readable(u);
    NUM(recv(u, NULL, 10, 0));
    NUM(recv(u, buf, sizeof buf, MSG_DONTWAIT));
    NUM(sendmsg(u, NULL, 0));
    NUM(recvmsg(u, NULL, MSG_DONTWAIT));
    NUM(socket(AF_INET, 999, 0));
    NUM(socket(12345, SOCK_STREAM, 0));
    NUM(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    NUM(close(u));

    section("misuse: wrong socket state");
    int t = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(send(t, "x", 1, MSG_NOSIGNAL));
    NUM(recv(t, buf, sizeof buf, MSG_DONTWAIT));
    NUM(recv(t, buf, sizeof buf, 0));
    NUM(getpeername(t, (struct sockaddr *)&a, &al));
    NUM(shutdown(t, SHUT_RDWR));
    NUM(accept(t, NULL, NULL));
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    NUM(write(t, "x", 1));
    sigaction(SIGPIPE, &old, NULL);
    int l = tcp_listener("ML");
    struct sockaddr_in la = lo(local_port(l));
    NUM(accept(t, NULL, NULL));
    NUM(connect(l, (struct sockaddr *)&la, sizeof la));
    int t2 = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(bind(t2, (struct sockaddr *)&la, sizeof la));
    NUM(connect(t, (struct sockaddr *)&la, sizeof la));
    NUM(listen(t, 1));
    /* The failed shutdown above still shut the sending side. */
    NUM(send(t, NULL, 5, MSG_NOSIGNAL));
    int s = FD(accept(l, NULL, NULL));
    int t4 = FD(socket(AF_INET, SOCK_STREAM, 0));
    NUM(connect(t4, (struct sockaddr *)&la, sizeof la));
    NUM(send(t4, NULL, 5, MSG_NOSIGNAL));
    NUM(close(t4));
    NUM(close(s));
    NUM(close(t2));
    NUM(close(t));
    NUM(close(l));
}

int main(void)
{
    /* Nothing may depend on stdout's buffering mode (pipe vs. terminal). */
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    section("start");
    NUM(fcntl(UNUSED_FD, F_GETFD));
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int mapped = 0;
    while (maps && fgets(line, sizeof line, maps))
        if (strstr(line, "libsluice.so"))
            mapped = 1;
    if (maps)
        fclose(maps);
    out("ENV: libsluice.so mapped %s", mapped ? "yes" : "no");

    tcp_stream();
    tcp_nonblocking();
    udp();
    unix_pair();
    fcntl_ioctl();
    dups();
    multiplexing();
    processes();
    signals();
    chk();
    misuse();
    section("end");
    return 0;
}
