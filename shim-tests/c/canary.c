/*
 * A deliberately wrong interposer, used to prove that the conformance harness
 * notices a hook that changes what the application observes: getpeername on
 * an unconnected socket reports EINVAL instead of the kernel's ENOTCONN.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    int (*real)(int, struct sockaddr *, socklen_t *) =
        (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "getpeername");
    int r = real(fd, addr, len);
    if (r < 0 && errno == ENOTCONN)
        errno = EINVAL;
    return r;
}
