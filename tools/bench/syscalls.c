/* A system-call-heavy loop on pass-through fds, to measure what the
 * interposer adds to calls it does not offload: each iteration is a
 * send/recv pair on a UNIX socketpair, a write/read pair on a pipe, a
 * getsockopt, an fcntl(F_GETFL) and a poll with zero timeout.
 * Prints the nanoseconds per iteration. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    int sv[2], p[2];
    char buf[64] = {0};
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || pipe(p)) {
        perror("setup");
        return 1;
    }
    struct pollfd pfd = {.fd = sv[1], .events = POLLIN};
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        int v;
        socklen_t l = sizeof v;
        if (send(sv[0], buf, sizeof buf, 0) != sizeof buf) return 2;
        if (poll(&pfd, 1, 0) != 1) return 3;
        if (recv(sv[1], buf, sizeof buf, 0) != sizeof buf) return 4;
        if (write(p[1], buf, 8) != 8 || read(p[0], buf, 8) != 8) return 5;
        if (getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &l) || fcntl(sv[0], F_GETFL) < 0) return 6;
    }
    double t1 = now_ns();
    printf("%.1f\n", (t1 - t0) / iters);
    return 0;
}
