/* Device faults for the randomized runs (tests/sim/faultshim.py builds this and preloads it into a daemon).
 *
 * A 16-byte control file, named by OAIOD_SIM_FAULTS and mapped shared, holds two int64 the driver changes while
 * the daemon runs:
 *   offset_ns  added to the wall clock (CLOCK_REALTIME and its coarse variant, gettimeofday, time): a clock jump;
 *   disk_full  when not 0, every write to a regular file fails with ENOSPC: a full disk (but standard output and
 *              error, the test's record of the run, which lies on another disk in spirit).
 * Only these calls are wrapped: monotonic clocks and sleeping stay real (libfaketime's wrapping of sleeps breaks
 * CPython's time.sleep), and sockets, pipes and terminals keep working when the disk is full.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct control {
    volatile int64_t offset_ns;
    volatile int64_t disk_full;
};

static struct control *control_map;
static int control_tried;

static struct control *control(void) {
    if (!__atomic_load_n(&control_tried, __ATOMIC_ACQUIRE)) {
        const char *path = getenv("OAIOD_SIM_FAULTS");
        if (path != NULL) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                void *map = mmap(NULL, sizeof(struct control), PROT_READ, MAP_SHARED, fd, 0);
                close(fd);
                if (map != MAP_FAILED) __atomic_store_n(&control_map, (struct control *)map, __ATOMIC_RELEASE);
            }
        }
        __atomic_store_n(&control_tried, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&control_map, __ATOMIC_ACQUIRE);
}

static int64_t offset(void) {
    struct control *c = control();
    return c == NULL ? 0 : c->offset_ns;
}

static int full(int fd) {
    struct control *c = control();
    struct stat st;
    if (c == NULL || !c->disk_full || fd <= 2) return 0;  /* stdout, stderr: the test's logs, another disk */
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

#define REAL(name) static __typeof__(name) *real; if (real == NULL) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)
#define NOSPACE(fd) if (full(fd)) { errno = ENOSPC; return -1; }

int clock_gettime(clockid_t id, struct timespec *ts) {
    REAL(clock_gettime);
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + offset();
        ts->tv_sec = ns / 1000000000;
        ts->tv_nsec = ns % 1000000000;
    }
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    REAL(gettimeofday);
    int rc = real(tv, tz);
    if (rc == 0) {
        int64_t us = (int64_t)tv->tv_sec * 1000000 + tv->tv_usec + offset() / 1000;
        tv->tv_sec = us / 1000000;
        tv->tv_usec = us % 1000000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}

ssize_t write(int fd, const void *buf, size_t n) { REAL(write); if (n) { NOSPACE(fd) } return real(fd, buf, n); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) { REAL(pwrite); if (n) { NOSPACE(fd) } return real(fd, buf, n, at); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t at) { REAL(pwrite64); if (n) { NOSPACE(fd) } return real(fd, buf, n, at); }
ssize_t writev(int fd, const struct iovec *v, int k) { REAL(writev); NOSPACE(fd) return real(fd, v, k); }
ssize_t pwritev(int fd, const struct iovec *v, int k, off_t at) { REAL(pwritev); NOSPACE(fd) return real(fd, v, k, at); }
ssize_t sendfile(int out, int in, off_t *at, size_t n) { REAL(sendfile); NOSPACE(out) return real(out, in, at, n); }
ssize_t sendfile64(int out, int in, off64_t *at, size_t n) { REAL(sendfile64); NOSPACE(out) return real(out, in, at, n); }
ssize_t copy_file_range(int in, off64_t *a, int out, off64_t *b, size_t n, unsigned int f) {
    REAL(copy_file_range); NOSPACE(out) return real(in, a, out, b, n, f);
}
int fallocate(int fd, int mode, off_t at, off_t n) { REAL(fallocate); NOSPACE(fd) return real(fd, mode, at, n); }
int posix_fallocate(int fd, off_t at, off_t n) { REAL(posix_fallocate); if (full(fd)) return ENOSPC; return real(fd, at, n); }
