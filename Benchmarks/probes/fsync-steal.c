// Does a stream of fdatasyncs take CPU time from other threads, on this CPU or another?
// One thread writes 4 KiB over a preallocated 1 MiB file and calls fdatasync, 3,000 times
// (or, with a third argument, sleeps 100 us instead: the control); a second thread spins on
// the clock and adds up every gap over 20 us it sees. Each thread is pinned to a CPU.
//   cc -O2 -pthread -o /tmp/fsync-steal Benchmarks/probes/fsync-steal.c
//   /tmp/fsync-steal SYNC_CPU SPIN_CPU [idle]      (run it from a directory on the disk to test)
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { operations = 3000, block_bytes = 4096, blocks = 256, gap_ns = 20000 };

static atomic_int finished;
static int sync_cpu, idle;
static long long sync_elapsed_ns;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *syncer(void *unused) {
    (void)unused;
    pin(sync_cpu);
    int fd = open("fsync-steal.dat", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); exit(1); }
    char block[block_bytes];
    memset(block, 1, sizeof block);
    for (int i = 0; i < blocks; i++) pwrite(fd, block, sizeof block, (off_t)i * block_bytes);
    fsync(fd);  // the file is written whole first: the loop below changes no file size
    long long start = now_ns();
    for (int i = 0; i < operations; i++) {
        if (idle) {
            struct timespec nap = {0, 100000};
            nanosleep(&nap, NULL);
        } else {
            pwrite(fd, block, sizeof block, (off_t)(i % blocks) * block_bytes);
            fdatasync(fd);
        }
    }
    sync_elapsed_ns = now_ns() - start;
    atomic_store(&finished, 1);
    close(fd);
    unlink("fsync-steal.dat");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s SYNC_CPU SPIN_CPU [idle]\n", argv[0]); return 2; }
    sync_cpu = atoi(argv[1]);
    int spin_cpu = atoi(argv[2]);
    idle = argc > 3;
    pin(spin_cpu);
    pthread_t thread;
    long long last = now_ns(), start = last, lost = 0, longest = 0, gaps = 0;
    pthread_create(&thread, NULL, syncer, NULL);
    while (!atomic_load(&finished)) {
        long long now = now_ns(), gap = now - last;
        if (gap > gap_ns) {
            gaps++;
            lost += gap;
            if (gap > longest) longest = gap;
        }
        last = now;
    }
    long long total = now_ns() - start;
    pthread_join(thread, NULL);
    printf("%s on cpu%d, spinner on cpu%d: %.1f us per operation; the spinner lost %.1f%% of %.2f s "
           "in %lld gaps over 20 us (longest %lld us)\n", idle ? "sleeps" : "fdatasyncs", sync_cpu, spin_cpu,
           sync_elapsed_ns / 1000.0 / operations, 100.0 * lost / total, total / 1e9, gaps, longest / 1000);
    return 0;
}
