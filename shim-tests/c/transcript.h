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

#endif
