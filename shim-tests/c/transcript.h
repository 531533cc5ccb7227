/*
 * Printing a canonical transcript, shared by the C probes (conform.c, udp_probe.c): one line
 * per observation, errno values by name.
 */
#ifndef SLUICE_TRANSCRIPT_H
#define SLUICE_TRANSCRIPT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One line, written and flushed at once, so fork() never duplicates buffered output. */
static void out(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* The errno's name (EAGAIN, ...), the same whatever the locale. */
static const char *ename(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* Helpers below are static inline: a probe that does not use them gets no warning. */

/* Poll or epoll event bits by name ("POLLIN|POLLOUT", "0"), in a fixed order. */
static inline const char *event_names(unsigned bits, int epoll_style, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *poll, *epoll;
    } names[] = {
        {0x001, "POLLIN", "EPOLLIN"},     {0x002, "POLLPRI", "EPOLLPRI"},
        {0x004, "POLLOUT", "EPOLLOUT"},   {0x008, "POLLERR", "EPOLLERR"},
        {0x010, "POLLHUP", "EPOLLHUP"},   {0x020, "POLLNVAL", "EPOLLNVAL"},
        {0x040, "POLLRDNORM", "EPOLLRDNORM"}, {0x080, "POLLRDBAND", "EPOLLRDBAND"},
        {0x100, "POLLWRNORM", "EPOLLWRNORM"}, {0x200, "POLLWRBAND", "EPOLLWRBAND"},
        {0x2000, "POLLRDHUP", "EPOLLRDHUP"},
    };
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(bits & names[i].bit))
            continue;
        bits &= ~names[i].bit;
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
                                 used ? "|" : "", epoll_style ? names[i].epoll : names[i].poll);
    }
    if (bits)
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s0x%x",
                                 used ? "|" : "", bits);
    if (!used)
        snprintf(buf, len, "0");
    return buf;
}

#endif
