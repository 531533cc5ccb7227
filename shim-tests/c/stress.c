/*
 * Multi-threaded fd churn under the preload: every thread creates, binds,
 * duplicates and closes sockets as fast as it can, checking every result and
 * that the fd table stays consistent (a dup'd fd keeps working after the
 * original is closed; dup2 onto a live fd really replaces it).
 *
 * usage: stress THREADS ITERATIONS [FORKS]
 * With FORKS, the main thread also forks that many times while the workers
 * churn; each child does socket work of its own and exits. A child that hangs
 * (a lock held across fork by another thread) is reported and killed.
 * Prints "stress ok: ..." and exits 0, or prints the first failed check and
 * exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int iterations;
static int forking;

static void fail(int thread, int iter, const char *what)
{
    const char *e = strerrorname_np(errno);
    fprintf(stderr, "stress FAILED: thread %d iteration %d: %s (errno %s)\n", thread, iter, what, e ? e : "0");
    exit(1);
}

static unsigned short port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0 || a.sin_family != AF_INET)
        return 0;
    return ntohs(a.sin_port);
}

static void *churn(void *arg)
{
    int t = (int)(long)arg;
    for (int i = 0; i < iterations; i++) {
#define CHECK(cond, what)                                                                                      \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            fail(t, i, what);                                                                                  \
    } while (0)
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        CHECK(u >= 0, "socket");
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(u, (struct sockaddr *)&a, sizeof a) == 0, "bind");
        unsigned short port = port_of(u);
        CHECK(port != 0, "getsockname after bind");

        int d = dup(u);
        CHECK(d >= 0 && d != u, "dup");
        CHECK(port_of(d) == port, "dup shares the bound address");

        int sp[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
        CHECK(sp[0] != u && sp[0] != d && sp[1] != u && sp[1] != d, "socketpair fds distinct from live fds");
        /* Replace one end of the pair with the UDP socket. */
        CHECK(dup2(d, sp[0]) == sp[0], "dup2 onto a live fd");
        CHECK(port_of(sp[0]) == port, "dup2 target is the UDP socket now");
        int type = 0;
        socklen_t tl = sizeof type;
        CHECK(getsockopt(sp[0], SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM, "SO_TYPE of dup2 target");
        /* The unix peer was closed by dup2, so its partner sees a broken pipe
         * (unless a concurrently forked child still holds a copy of it). */
        errno = 0;
        CHECK(forking || (send(sp[1], "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE),
              "send to the replaced pair end");

        CHECK(close(u) == 0, "close original");
        char msg[32], got[32];
        int len = snprintf(msg, sizeof msg, "t%d-i%d", t, i);
        a.sin_port = htons(port);
        CHECK(sendto(d, msg, len, 0, (struct sockaddr *)&a, sizeof a) == len, "sendto via dup after close");
        ssize_t n = recv(sp[0], got, sizeof got, 0);
        CHECK(n == len && memcmp(got, msg, len) == 0, "recv via dup2 target");
        CHECK(close(d) == 0, "close dup");
        CHECK(port_of(sp[0]) == port, "dup2 target still works after the other copies closed");
        CHECK(close(sp[0]) == 0, "close dup2 target");
        CHECK(close(sp[1]) == 0, "close pair end");
#undef CHECK
    }
    return NULL;
}

/* In the child of a fork taken while other threads were inside the hooks. */
static int child_socket_work(void)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u < 0)
        return 1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(u, (struct sockaddr *)&a, sizeof a) != 0 || port_of(u) == 0)
        return 2;
    int d = dup(u);
    if (d < 0 || port_of(d) != port_of(u) || close(u) != 0 || close(d) != 0)
        return 3;
    return 0;
}

static void fork_while_churning(int forks)
{
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0)
            fail(-1, f, "fork");
        if (pid == 0)
            _exit(child_socket_work());
        /* Wait up to 10 s: a child stuck on a lock copied in a locked state never exits. */
        int st = 0;
        struct timespec tick = {0, 1000000};
        int waited_ms = 0;
        pid_t r;
        while ((r = waitpid(pid, &st, WNOHANG)) == 0 && waited_ms < 10000) {
            nanosleep(&tick, NULL);
            waited_ms++;
        }
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            errno = 0;
            fail(-1, f, "forked child hung (deadlock after fork?)");
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            errno = 0;
            fail(-1, f, WIFEXITED(st) ? "forked child's socket work failed" : "forked child died by a signal");
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: stress THREADS ITERATIONS [FORKS]\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    iterations = atoi(argv[2]);
    int forks = argc == 4 ? atoi(argv[3]) : 0;
    forking = forks > 0;
    if (threads < 1 || threads > 64 || iterations < 1 || forks < 0) {
        fprintf(stderr, "stress: bad arguments\n");
        return 2;
    }
    pthread_t tid[64];
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, churn, (void *)(long)t) != 0) {
            fprintf(stderr, "stress: pthread_create failed\n");
            return 1;
        }
    fork_while_churning(forks);
    for (int t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    if (forks)
        printf("stress ok: threads=%d iterations=%d forks=%d\n", threads, iterations, forks);
    else
        printf("stress ok: threads=%d iterations=%d\n", threads, iterations);
    return 0;
}
