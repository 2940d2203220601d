// Linux interfaces that `import Glibc` does not expose to Swift.
#ifndef ALLEGRO_SYS_SHIM_H
#define ALLEGRO_SYS_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/ioctl.h>

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* Bytes waiting in a socket's receive queue (FIONREAD), 0 when the call fails. */
static inline int allegro_pending_input(int fd) {
    int count = 0;
    return ioctl(fd, FIONREAD, &count) == 0 ? count : 0;
}
#endif
