#!/usr/bin/env bash
# Proves liballocount counts exactly: builds it and a small C program, runs the program with the
# library preloaded, and the program checks the deltas of its own counter file across windows in
# which it makes a known set of allocations (single- and multi-threaded, across fork, and the
# backtrace log with its every/limit). Exits non-zero on any miscount. Needs only cc and glibc.
# ALLOCOUNT_KEEP=1 leaves the scratch directory (the probe, its counter files, the stack logs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/allocount-selftest.XXXXXX")"
trap '[[ -n "${ALLOCOUNT_KEEP:-}" ]] || rm -rf "$work"' EXIT

cc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$work/liballocount.so" "$here/allocount.c" -ldl

cat >"$work/probe.c" <<'EOF'
/* Each check reads the counter file before and after a window of known allocations; nothing
 * in a window may allocate except what it means to count (so no printf inside one). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct counters {
    _Atomic uint64_t magic, pid, allocations, frees, bytes, armed, stacks;
};
struct snapshot { uint64_t allocations, frees, bytes; };

static int failures;
static void *volatile sink; /* keeps the compiler from eliding malloc/free pairs */

static struct counters *open_counters(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/allocount.%d", getenv("ALLOCOUNT_DIR"), (int)getpid());
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror(path); exit(2); }
    struct counters *c = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c == MAP_FAILED) { perror("mmap"); exit(2); }
    if (memcmp((const void *)&c->magic, "ALLOCNT1", 8) != 0 || c->pid != (uint64_t)getpid()) {
        fprintf(stderr, "FAIL bad header in %s\n", path);
        exit(1);
    }
    return c;
}

static struct snapshot take(struct counters *c) {
    return (struct snapshot){c->allocations, c->frees, c->bytes};
}

static void expect(const char *what, struct snapshot before, struct snapshot after,
                   uint64_t allocations, uint64_t frees, uint64_t bytes) {
    uint64_t a = after.allocations - before.allocations, f = after.frees - before.frees,
             b = after.bytes - before.bytes;
    int ok = a == allocations && f == frees && b == bytes;
    printf("%s %-28s allocations %6llu frees %6llu bytes %8llu", ok ? "ok  " : "FAIL", what,
           (unsigned long long)a, (unsigned long long)f, (unsigned long long)b);
    if (!ok) {
        printf("  (expected %llu %llu %llu)", (unsigned long long)allocations,
               (unsigned long long)frees, (unsigned long long)bytes);
        failures++;
    }
    printf("\n");
}

static void check(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

static pthread_barrier_t start_line;
static atomic_int finished;
enum { THREADS = 4, PER_THREAD = 25000 };

static void *hammer(void *unused) {
    (void)unused;
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < PER_THREAD; i++) {
        /* A pointer of this thread's own: the shared `sink` would let one thread free another's
         * block (a double free, caught only when glibc's bins happen to show it). */
        void *volatile mine = malloc(24);
        free(mine);
    }
    atomic_fetch_add(&finished, 1);
    return NULL;
}

/* A named frame for the backtrace log to show. */
__attribute__((noinline)) void probe_marker_site(int count) {
    for (int i = 0; i < count; i++) {
        sink = malloc(77);
        free(sink);
    }
}

static void basic(struct counters *c) {
    struct snapshot s0, s1;
    void *p, *q;

    s0 = take(c);
    for (int i = 0; i < 1000; i++) { sink = malloc(100); free(sink); }
    s1 = take(c);
    expect("1000 malloc+free", s0, s1, 1000, 1000, 100000);

    s0 = take(c);
    for (int i = 0; i < 10; i++) { sink = calloc(4, 25); free(sink); }
    s1 = take(c);
    expect("10 calloc+free", s0, s1, 10, 10, 1000);

    /* realloc: from NULL (1 alloc), grow (1 alloc + the old block's free), shrink (same),
     * to zero (glibc frees, returns NULL: 1 free); reallocarray grows once more. */
    s0 = take(c);
    p = realloc(NULL, 10);
    p = realloc(p, 5000);
    p = realloc(p, 20);
    p = reallocarray(p, 10, 30);
    q = realloc(p, 0);
    s1 = take(c);
    expect("realloc chain", s0, s1, 4, 4, 10 + 5000 + 20 + 300);
    check("realloc(p, 0) returns NULL", q == NULL);

    s0 = take(c);
    int bad = posix_memalign(&p, 3, 64);
    volatile size_t half = SIZE_MAX / 2; /* volatile: known at compile time, gcc warns */
    void *huge = calloc(half, 4);
    void *wrapped = reallocarray(NULL, half, 4);
    free(NULL);
    s1 = take(c);
    expect("failures count nothing", s0, s1, 0, 0, 0);
    check("posix_memalign(align 3) is EINVAL", bad == EINVAL);
    check("overflowing calloc/reallocarray fail", huge == NULL && wrapped == NULL);

    s0 = take(c);
    int good = posix_memalign(&p, 64, 200);
    void *a = aligned_alloc(256, 512);
    void *m = memalign(128, 100);
    void *v = valloc(100);
    void *pv = pvalloc(100);
    char *copy = strdup("counted through glibc's own call to malloc");
    size_t usable = malloc_usable_size(a);
    free(p); free(a); free(m); free(v); free(pv); free(copy);
    s1 = take(c);
    expect("aligned family + strdup", s0, s1, 6, 6, 200 + 512 + 100 + 100 + 100 + 43);
    check("posix_memalign 64-aligned", good == 0 && ((uintptr_t)p & 63) == 0);
    check("aligned_alloc/memalign/valloc aligned",
          ((uintptr_t)a & 255) == 0 && ((uintptr_t)m & 127) == 0 && ((uintptr_t)v & 4095) == 0);
    check("malloc_usable_size still works", usable >= 512);

    /* Live blocks: allocations - frees moves by exactly what is still held. */
    s0 = take(c);
    void *held[5];
    for (int i = 0; i < 5; i++) held[i] = malloc(8);
    s1 = take(c);
    for (int i = 0; i < 5; i++) free(held[i]);
    expect("5 held", s0, s1, 5, 0, 40);
}

static void threads(struct counters *c) {
    pthread_t ids[THREADS];
    pthread_barrier_init(&start_line, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++) pthread_create(&ids[i], NULL, hammer, NULL);
    /* Thread creation allocates (its TLS vector): the window opens only once all are waiting. */
    while (c->allocations == 0) {}
    struct snapshot s0 = take(c);
    pthread_barrier_wait(&start_line);
    while (atomic_load(&finished) < THREADS) {}
    struct snapshot s1 = take(c);
    for (int i = 0; i < THREADS; i++) pthread_join(ids[i], NULL);
    expect("4 threads x 25000", s0, s1, THREADS * PER_THREAD, THREADS * PER_THREAD,
           24ull * THREADS * PER_THREAD);
}

static void forked(struct counters *c) {
    fflush(stdout);
    struct snapshot s0 = take(c);
    pid_t child = fork();
    if (child == 0) {
        /* The child has a file of its own, starting at zero, and its own verdict. */
        failures = 0;
        struct counters *mine = open_counters();
        struct snapshot b = take(mine);
        for (int i = 0; i < 7; i++) { sink = malloc(10); free(sink); }
        struct snapshot a = take(mine);
        expect("fork child's own file", b, a, 7, 7, 70);
        fflush(stdout);
        _exit(failures ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    struct snapshot s1 = take(c);
    check("fork child passed", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect("parent untouched by child", s0, s1, 0, 0, 0);
}

/* Needs ALLOCOUNT_STACKS and ALLOCOUNT_STACK_LIMIT=5 (EVERY unset): 3 stacks, then 10 more
 * allocations of which only 2 fit the limit, then nothing once disarmed. */
static void stacks(struct counters *c) {
    c->armed = 1;
    probe_marker_site(3);
    c->armed = 0;
    check("3 armed allocations, 3 stacks", c->stacks == 3);
    c->armed = 1;
    probe_marker_site(10);
    c->armed = 0;
    check("limit 5 holds", c->stacks == 5);
    probe_marker_site(10);
    check("disarmed writes none", c->stacks == 5);
}

/* Needs ALLOCOUNT_STACK_EVERY=4: 20 armed allocations give 5 stacks. */
static void every(struct counters *c) {
    c->armed = 1;
    probe_marker_site(20);
    c->armed = 0;
    check("every 4th of 20 armed, 5 stacks", c->stacks == 5);
}

int main(int argc, char **argv) {
    printf("probe pid %d\n", (int)getpid()); /* stdout's buffer is allocated here, not in a window */
    struct counters *c = open_counters();
    const char *mode = argc > 1 ? argv[1] : "counts";
    if (strcmp(mode, "counts") == 0) {
        basic(c);
        threads(c);
        forked(c);
    } else if (strcmp(mode, "stacks") == 0) {
        stacks(c);
    } else if (strcmp(mode, "every") == 0) {
        every(c);
    }
    return failures ? 1 : 0;
}
EOF
# -rdynamic: the backtrace log names the probe's functions; -fno-builtin: no malloc/free elided.
cc -O1 -fno-builtin -rdynamic -pthread -o "$work/probe" "$work/probe.c"

lib="$work/liballocount.so"
mkdir -p "$work/counts"
ALLOCOUNT_DIR="$work/counts" LD_PRELOAD="$lib" "$work/probe" counts | tee "$work/counts.out"

# Read from outside, after the fact: header and a non-zero total (the probe's own + startup's).
probe_pid="$(sed -n 's/^probe pid //p' "$work/counts.out")"
pid_file="allocount.$probe_pid"
magic="$(head -c 8 "$work/counts/$pid_file")"
[[ "$magic" == "ALLOCNT1" ]] || { echo "FAIL magic '$magic'"; exit 1; }
read -r pid allocations frees bytes < <(od -A n -t u8 -w32 -j 8 -N 32 "$work/counts/$pid_file")
[[ "$pid" == "$probe_pid" ]] || { echo "FAIL pid $pid in $pid_file"; exit 1; }
echo "ok   outside read of $pid_file: allocations $allocations frees $frees bytes $bytes"
(( allocations > 101000 )) || { echo "FAIL whole-run allocations $allocations"; exit 1; }
[[ "$(ls "$work/counts" | wc -l)" == 2 ]] || { echo "FAIL expected the probe's and its fork child's files"; exit 1; }

mkdir -p "$work/stacks"
ALLOCOUNT_DIR="$work/stacks" ALLOCOUNT_STACKS="$work/stacks.log" ALLOCOUNT_STACK_LIMIT=5 \
    LD_PRELOAD="$lib" "$work/probe" stacks
separators="$(grep -c '^-- allocount malloc 77$' "$work/stacks.log")"
[[ "$separators" == 5 ]] || { echo "FAIL $separators stacks in the log, expected 5"; exit 1; }
# The first frame of each stack is the caller of malloc, not this library.
first="$(head -n 1 "$work/stacks.log")"
[[ "$first" == *probe_marker_site* ]] || { echo "FAIL first frame '$first'"; exit 1; }
echo "ok   log: 5 stacks, first frame $first"

mkdir -p "$work/every"
ALLOCOUNT_DIR="$work/every" ALLOCOUNT_STACKS="$work/every.log" ALLOCOUNT_STACK_EVERY=4 \
    LD_PRELOAD="$lib" "$work/probe" every
[[ "$(grep -c '^-- allocount ' "$work/every.log")" == 5 ]] || { echo "FAIL every.log"; exit 1; }

# Without ALLOCOUNT_DIR the library must stay out of the way (no file, no crash).
LD_PRELOAD="$lib" /bin/true
echo "selftest passed"
