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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
int pipe2(int pipefd[2], int flags);

/* Bytes waiting in a socket's receive queue (FIONREAD), 0 when the call fails. */
static inline int allegro_pending_input(int fd) {
    int count = 0;
    return ioctl(fd, FIONREAD, &count) == 0 ? count : 0;
}

/* Sets the calling thread's timer slack (prctl is variadic, which Swift does not import).
 * Returns 0, or -1 with errno set. */
static inline int allegro_set_timer_slack(unsigned long nanos) {
    return prctl(PR_SET_TIMERSLACK, nanos, 0UL, 0UL, 0UL);
}

/* The calling thread's timer slack in nanoseconds, or -1 with errno set. */
static inline long allegro_timer_slack(void) {
    return (long)prctl(PR_GET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL);
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Starts the program at `path` (absolute: no PATH search after fork) with `argv` and `envp` in a
 * process group of its own, its standard input, output and error on the three descriptors given,
 * in `directory` (NULL: the caller's), every other descriptor closed at exec, every signal's
 * disposition and the signal mask back to the defaults. Returns the child's pid, or -1 with
 * *error_out set: the errno of pipe2 or fork, or the child's own errno when chdir or execve
 * failed (reported over a close-on-exec pipe, so success means the program is running).
 *
 * Between fork and execve the child calls only async-signal-safe functions; every signal is
 * blocked in the calling thread around fork, so no handler of the parent runs in the child. */
static inline pid_t allegro_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd,
                                  int err_fd, const char *directory, int *error_out) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) { *error_out = errno; return -1; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        setpgid(0, 0);
        if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) goto failed;
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            struct rlimit limit;
            long top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? (long)limit.rlim_cur : 65536;
            for (long fd = 3; fd < top; fd++) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        }
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, 0);
        if (directory != 0 && chdir(directory) != 0) goto failed;
        execve(path, argv, envp);
    failed:;
        int code = errno;
        ssize_t ignored = write(report[1], &code, sizeof code);
        (void)ignored;
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) setpgid(pid, pid);   /* also from here, so the group exists before any kill */
    pthread_sigmask(SIG_SETMASK, &old, 0);
    close(report[1]);
    if (pid < 0) { close(report[0]); *error_out = fork_errno; return -1; }
    int child_errno = 0;
    ssize_t got;
    do { got = read(report[0], &child_errno, sizeof child_errno); } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof child_errno) {
        while (waitpid(pid, 0, 0) < 0 && errno == EINTR) {}
        *error_out = child_errno;
        return -1;
    }
    return pid;
}


/* Waits until process `pid` has ended, without reaping it (waitid with WNOWAIT): its pid, which is
 * also its process group's id, stays reserved until the caller reaps it, so what is left of the
 * group can be signalled with no risk of reaching a later process. *code is the exit status, or
 * the signal when *signaled is 1. Returns 0, or -1 with errno set. */
static inline int allegro_wait_ended(pid_t pid, int *code, int *signaled) {
    siginfo_t info;
    info.si_pid = 0;
    info.si_status = 0;
    info.si_code = 0;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) != 0) return -1;
    *code = info.si_status;
    *signaled = (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) ? 1 : 0;
    return 0;
}

#endif
