/*
 * allocount: counts every heap allocation of a whole process, for issue 22's goal of zero heap
 * allocations per record in the running relay. Preloaded (LD_PRELOAD) into the process under
 * test; the counters live in a shared file so a reader (allegro-bench's `allocs` scenario) can take
 * them before and after a window of steady load without a thread or a socket in the target.
 *
 *   build: cc -O2 -shared -fPIC -o liballocount.so allocount.c -ldl
 *   run:   ALLOCOUNT_DIR=/some/dir LD_PRELOAD=/path/liballocount.so allegro relay ...
 *   test:  bash selftest.sh
 *
 * glibc on Linux, x86_64 or aarch64 (both little-endian, so the counters are written natively).
 *
 * Environment (read once, in the constructor):
 *   ALLOCOUNT_DIR          directory (must exist) for the counter file $ALLOCOUNT_DIR/allocount.<pid>.
 *                          Unset: the process still runs, its counts just have nowhere to go.
 *   ALLOCOUNT_STACKS       file to append allocation backtraces to while the file's `armed` word is
 *                          non-zero (needs ALLOCOUNT_DIR, which holds that word).
 *   ALLOCOUNT_STACK_EVERY  write the stack of every Nth allocation seen while armed (default 1).
 *   ALLOCOUNT_STACK_LIMIT  stop after this many stacks in the process's life (default 2000): a
 *                          forgotten armed word must not fill the disk.
 *
 * Counter file: 4096 bytes, little-endian u64 at each offset.
 *    0  magic "ALLOCNT1" (the 8 ASCII bytes); stored last, so a reader that sees it sees a pid
 *    8  pid of the process writing this file
 *   16  allocations: calls that returned new memory (malloc, calloc, posix_memalign, aligned_alloc,
 *       memalign, valloc, pvalloc), plus every successful realloc/reallocarray that returns a
 *       block (growing, shrinking, moved or not, or from NULL). Failed calls are not counted.
 *   24  frees: free of a non-NULL pointer, plus the old block of every successful realloc from a
 *       non-NULL pointer, plus realloc(p, 0) (glibc frees p). So allocations - frees = live blocks
 *       (give or take the few blocks this library's own setup made uncounted and glibc frees later).
 *   32  bytes requested by the counted allocations (not the allocator's rounded-up sizes)
 *   40  armed: written by the reader; non-zero turns on the backtrace log (ALLOCOUNT_STACKS)
 *   48  stacks: backtraces claimed so far (each one is written right after it is claimed)
 *   56- reserved, zero
 *
 * What is counted: everything that reaches malloc and friends through the dynamic linker, which
 * covers the program, the Swift runtime (swift_slowAlloc calls malloc@plt, or posix_memalign@plt
 * when the alignment mask is over 7), libstdc++'s operator new (malloc@plt, aligned_alloc@plt),
 * libdispatch, Foundation and glibc itself (its internal calls go through the PLT so that malloc
 * can be replaced). Not counted: mmap/brk made directly, swift_task_alloc inside a slab it already
 * has (the slab itself is a malloc), and the few allocations this library makes for itself.
 * Allocations made before the constructor maps the file (ld.so, libc and other libraries' early
 * initialisation) are counted in static memory and added in when the file is mapped.
 *
 * Processes: each process writes its own file, named by its pid. After fork() the child stops
 * writing its parent's file and starts one of its own at zero; exec starts the pid's file again at
 * zero (the new image runs this constructor again). A vfork child that allocates before exec
 * (it should not) is counted in its parent. Files are left in place at exit so the last counts
 * can still be read; whoever set ALLOCOUNT_DIR removes them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* glibc's own entry points: calling them directly (not dlsym(RTLD_NEXT)) means no bootstrap
 * problem, since dlsym can itself allocate before we could answer it. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *old, size_t size);
extern void __libc_free(void *block);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

#define FILE_BYTES 4096
#define PATH_BYTES 4096
#define STACK_FRAMES 64
/* Frames of this library on top of every backtrace: record_stack and the interposed function. */
#define OWN_FRAMES 2

struct counters {
    _Atomic uint64_t magic;
    _Atomic uint64_t pid;
    _Atomic uint64_t allocations;
    _Atomic uint64_t frees;
    _Atomic uint64_t bytes;
    _Atomic uint64_t armed;
    _Atomic uint64_t stacks;
};
_Static_assert(offsetof(struct counters, stacks) == 48, "the file layout above is a contract");
_Static_assert(sizeof(struct counters) <= FILE_BYTES, "counters must fit the file");

/* Where counts go until (and unless) the file is mapped; drained into the file when it is. */
static struct counters early;
static struct counters *_Atomic live = &early;

/* Set while this library works for itself (setup, writing a stack), so what glibc allocates for
 * it is neither counted nor traced. initial-exec: the general TLS model may call malloc on first
 * access from a thread, which would recurse. */
static __thread int busy __attribute__((tls_model("initial-exec")));

static char dir_path[PATH_BYTES];
static int stack_fd = -1;
static uint64_t stack_every = 1;
static uint64_t stack_limit = 2000;
static _Atomic uint64_t armed_seen;
/* Serialises whole stacks in the log: backtrace_symbols_fd writes frame by frame. */
static atomic_flag stack_lock = ATOMIC_FLAG_INIT;

#define RELAXED memory_order_relaxed

static void add(_Atomic uint64_t *counter, uint64_t amount) {
    atomic_fetch_add_explicit(counter, amount, RELAXED);
}

/* Decimal without printf: printf may allocate, and this runs where nothing may. Returns the end. */
static char *put_uint(char *out, uint64_t value) {
    char digits[20];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (count > 0) *out++ = digits[--count];
    return out;
}

static char *put_str(char *out, const char *end, const char *text) {
    while (*text && out < end) *out++ = *text++;
    return out;
}

static void complain(const char *what, const char *path, int error) {
    char line[PATH_BYTES + 128];
    char *end = line + sizeof line - 24;
    char *out = put_str(line, end, "allocount: ");
    out = put_str(out, end, what);
    out = put_str(out, end, " ");
    out = put_str(out, end, path);
    out = put_str(out, end, ": errno ");
    out = put_uint(out, (uint64_t)error);
    *out++ = '\n';
    ssize_t ignored = write(2, line, (size_t)(out - line));
    (void)ignored;
}

/* Creates and maps this pid's file and moves the counts kept so far into it. Syscalls only, so
 * it is also safe in a fork child. */
static void map_counters(pid_t pid) {
    char path[PATH_BYTES + 32];
    char *out = put_str(path, path + PATH_BYTES, dir_path);
    out = put_str(out, path + sizeof path - 21, "/allocount.");
    out = put_uint(out, (uint64_t)pid);
    *out = '\0';
    /* O_TRUNC: after exec the same pid starts again at zero rather than adding to a dead image. */
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        complain("cannot create", path, errno);
        return;
    }
    if (ftruncate(fd, FILE_BYTES) != 0) {
        complain("cannot size", path, errno);
        close(fd);
        return;
    }
    void *mapped = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int map_error = errno;
    close(fd);
    if (mapped == MAP_FAILED) {
        complain("cannot map", path, map_error);
        return;
    }
    struct counters *file = mapped;
    atomic_store_explicit(&file->pid, (uint64_t)pid, RELAXED);
    atomic_store_explicit(&live, file, memory_order_release);
    /* Swap first, drain second: a count that lands in `early` after the swap is still moved,
     * and only a thread still holding the old pointer after the drain could lose one, which the
     * constructor's single-threaded start rules out. */
    add(&file->allocations, atomic_exchange(&early.allocations, 0));
    add(&file->frees, atomic_exchange(&early.frees, 0));
    add(&file->bytes, atomic_exchange(&early.bytes, 0));
    uint64_t magic;
    memcpy(&magic, "ALLOCNT1", sizeof magic);
    atomic_store_explicit(&file->magic, magic, memory_order_release);
}

static __attribute__((noinline)) void record_stack(struct counters *c, const char *what, size_t size) {
    if (atomic_fetch_add_explicit(&armed_seen, 1, RELAXED) % stack_every != 0) return;
    uint64_t claimed = atomic_load_explicit(&c->stacks, RELAXED);
    do {
        if (claimed >= stack_limit) return;
    } while (!atomic_compare_exchange_weak_explicit(&c->stacks, &claimed, claimed + 1, RELAXED, RELAXED));
    busy = 1;
    void *frames[STACK_FRAMES];
    int depth = backtrace(frames, STACK_FRAMES);
    char line[96];
    char *out = put_str(line, line + 40, "-- allocount ");
    out = put_str(out, line + 60, what);
    *out++ = ' ';
    out = put_uint(out, size);
    *out++ = '\n';
    /* Spin, not a mutex: held only for a few writes, and an atomic flag needs nothing at fork. */
    while (atomic_flag_test_and_set_explicit(&stack_lock, memory_order_acquire)) sched_yield();
    if (depth > OWN_FRAMES) backtrace_symbols_fd(frames + OWN_FRAMES, depth - OWN_FRAMES, stack_fd);
    ssize_t ignored = write(stack_fd, line, (size_t)(out - line));
    (void)ignored;
    atomic_flag_clear_explicit(&stack_lock, memory_order_release);
    busy = 0;
}

static inline void counted(const char *what, size_t size) {
    struct counters *c = atomic_load_explicit(&live, memory_order_acquire);
    add(&c->allocations, 1);
    add(&c->bytes, size);
    if (stack_fd >= 0 && atomic_load_explicit(&c->armed, RELAXED) != 0) record_stack(c, what, size);
}

static inline void freed(void) {
    add(&atomic_load_explicit(&live, memory_order_acquire)->frees, 1);
}

void *malloc(size_t size) {
    void *block = __libc_malloc(size);
    if (block && !busy) counted("malloc", size);
    return block;
}

void *calloc(size_t count, size_t size) {
    void *block = __libc_calloc(count, size);
    /* Success means count * size did not overflow. */
    if (block && !busy) counted("calloc", count * size);
    return block;
}

/* One body for realloc and reallocarray so both have the same frame count above the caller. */
static inline void *resize(void *old, size_t size, const char *what) {
    void *block = __libc_realloc(old, size);
    if (busy) return block;
    if (block) {
        if (old) freed();
        counted(what, size);
    } else if (old && size == 0) {
        freed(); /* glibc's realloc(p, 0) frees p and returns NULL */
    }
    return block;
}

void *realloc(void *old, size_t size) {
    return resize(old, size, "realloc");
}

void *reallocarray(void *old, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return resize(old, total, "reallocarray");
}

void free(void *block) {
    if (block && !busy) freed();
    __libc_free(block);
}

/* glibc 2.40's C23 frees: nothing here calls them on glibc 2.36, but a newer libstdc++ might
 * send sized deletes there, and then they must not slip past the count. */
void free_sized(void *block, size_t size) {
    (void)size;
    free(block);
}

void free_aligned_sized(void *block, size_t alignment, size_t size) {
    (void)alignment;
    (void)size;
    free(block);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    /* POSIX: a power of two multiple of sizeof(void *), checked before anything is allocated. */
    if (alignment == 0 || alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    int saved = errno;
    void *block = __libc_memalign(alignment, size);
    if (!block) {
        errno = saved; /* posix_memalign reports by its result, not errno */
        return ENOMEM;
    }
    if (!busy) counted("posix_memalign", size);
    *result = block;
    return 0;
}

/* glibc 2.36's aligned_alloc is memalign itself (same address in libc.so.6). */
void *aligned_alloc(size_t alignment, size_t size) {
    void *block = __libc_memalign(alignment, size);
    if (block && !busy) counted("aligned_alloc", size);
    return block;
}

void *memalign(size_t alignment, size_t size) {
    void *block = __libc_memalign(alignment, size);
    if (block && !busy) counted("memalign", size);
    return block;
}

void *valloc(size_t size) {
    void *block = __libc_valloc(size);
    if (block && !busy) counted("valloc", size);
    return block;
}

void *pvalloc(size_t size) {
    void *block = __libc_pvalloc(size);
    if (block && !busy) counted("pvalloc", size);
    return block;
}

/* malloc_usable_size is left to glibc: every block handed out is glibc's own, unchanged. */

static void after_fork_child(void) {
    struct counters *parent = atomic_load_explicit(&live, memory_order_acquire);
    atomic_store_explicit(&live, &early, memory_order_release);
    atomic_store_explicit(&early.allocations, 0, RELAXED);
    atomic_store_explicit(&early.frees, 0, RELAXED);
    atomic_store_explicit(&early.bytes, 0, RELAXED);
    /* A thread of the parent may have held it at fork; that thread does not exist here. */
    atomic_flag_clear(&stack_lock);
    if (parent != &early) {
        munmap(parent, FILE_BYTES);
        map_counters(getpid());
    }
}

static uint64_t env_count(const char *name, uint64_t fallback) {
    const char *text = getenv(name);
    if (!text || !*text) return fallback;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    return (*end == '\0' && value > 0) ? (uint64_t)value : fallback;
}

__attribute__((constructor)) static void allocount_start(void) {
    busy = 1;
    const char *dir = getenv("ALLOCOUNT_DIR");
    if (dir && *dir) {
        if (strlen(dir) >= PATH_BYTES) {
            complain("directory name too long", "ALLOCOUNT_DIR", ENAMETOOLONG);
        } else {
            strcpy(dir_path, dir);
            map_counters(getpid());
        }
    }
    const char *stacks = getenv("ALLOCOUNT_STACKS");
    if (stacks && *stacks && atomic_load(&live) != &early) {
        stack_every = env_count("ALLOCOUNT_STACK_EVERY", 1);
        stack_limit = env_count("ALLOCOUNT_STACK_LIMIT", 2000);
        /* The first backtrace() loads libgcc_s (dlopen, malloc): do it now, not on the hot path. */
        void *frames[4];
        backtrace(frames, 4);
        stack_fd = open(stacks, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (stack_fd < 0) complain("cannot open", stacks, errno);
    }
    /* Registering may allocate; that is setup, hence inside busy. */
    pthread_atfork(NULL, NULL, after_fork_child);
    busy = 0;
}
