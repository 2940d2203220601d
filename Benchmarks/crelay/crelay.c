/*
 * crelay: the trivial two-hop floor for allegro-bench (issue 22, goal 4). It does the least a relay
 * can: bytes read from a producer are written, unchanged, to every collector. No parsing, no
 * ring, no disk, no acks. Allegro's live delivery is compared against it: what a relay costs on
 * these cores beyond moving bytes through the kernel twice.
 *
 *   build: cc -O2 -o crelay crelay.c
 *   run:   crelay COLLECTOR_PORT PRODUCER_PORT   (both on 127.0.0.1; SIGTERM stops it)
 *
 * The harness sends PUBLISH frames from one producer and its collector reads them as frames, so
 * byte forwarding keeps frames whole. With several producers their bytes would interleave
 * mid-frame: the harness uses one.
 *
 * Limits: 64 collectors (more are closed at once); one 64 KiB read buffer. Collector sockets are blocking: a collector that stops reading stops the relay, which
 * for a floor measurement is the honest behaviour (nothing is buffered on its behalf).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_COLLECTORS 64
#define MAX_EVENTS 64
#define BUFFER_BYTES 65536

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes all of `bytes` to a blocking socket; -1 when the peer is gone. */
static int write_all(int fd, const char *bytes, size_t count) {
    while (count > 0) {
        ssize_t written = send(fd, bytes, count, MSG_NOSIGNAL);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        bytes += written;
        count -= (size_t)written;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: crelay COLLECTOR_PORT PRODUCER_PORT\n");
        return 2;
    }
    int collector_listener = listen_on(atoi(argv[1]));
    int producer_listener = listen_on(atoi(argv[2]));
    int poller = epoll_create1(EPOLL_CLOEXEC);
    if (collector_listener < 0 || producer_listener < 0 || poller < 0) {
        perror("crelay: listen");
        return 1;
    }
    struct epoll_event event = {.events = EPOLLIN};
    event.data.fd = collector_listener;
    epoll_ctl(poller, EPOLL_CTL_ADD, collector_listener, &event);
    event.data.fd = producer_listener;
    epoll_ctl(poller, EPOLL_CTL_ADD, producer_listener, &event);

    int collectors[MAX_COLLECTORS];
    int collector_count = 0;
    static char buffer[BUFFER_BYTES];
    struct epoll_event ready[MAX_EVENTS];
    int one = 1;
    for (;;) {
        int count = epoll_wait(poller, ready, MAX_EVENTS, -1);
        if (count < 0) {
            if (errno == EINTR) continue;
            perror("crelay: epoll_wait");
            return 1;
        }
        for (int i = 0; i < count; i++) {
            int fd = ready[i].data.fd;
            if (fd == collector_listener || fd == producer_listener) {
                int accepted = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                if (accepted < 0) continue;
                setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (fd == collector_listener) {
                    if (collector_count == MAX_COLLECTORS) {
                        close(accepted);
                        continue;
                    }
                    collectors[collector_count++] = accepted;
                } else {
                    struct epoll_event producer = {.events = EPOLLIN, .data.fd = accepted};
                    if (epoll_ctl(poller, EPOLL_CTL_ADD, accepted, &producer) != 0) close(accepted);
                }
                continue;
            }
            ssize_t got = recv(fd, buffer, sizeof buffer, 0);
            if (got <= 0) {
                if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
                epoll_ctl(poller, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                continue;
            }
            for (int c = 0; c < collector_count;) {
                if (write_all(collectors[c], buffer, (size_t)got) != 0) {
                    close(collectors[c]);
                    collectors[c] = collectors[--collector_count];
                } else {
                    c++;
                }
            }
        }
    }
}
