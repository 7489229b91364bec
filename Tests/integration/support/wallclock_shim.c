/* A minimal LD_PRELOAD shim that steps CLOCK_REALTIME only, as an NTP or operator step does:
 * clock_gettime(CLOCK_REALTIME*), gettimeofday() and time() return the real time plus an offset
 * (integer seconds) read from the file named by BERTH_WALLCLOCK_OFFSET_FILE on every call, so a
 * test can step a running process's wall clock by rewriting the file. CLOCK_MONOTONIC,
 * CLOCK_BOOTTIME and every timer are left alone.
 *
 * Why not libfaketime (tried first, 0.9.10): it also rewrites timerfd_settime() deadlines of
 * monotonic timers by the realtime offset (even with FAKETIME_DONT_FAKE_MONOTONIC=1), which
 * disarms or postpones Swift concurrency's sleeps in berthd, so no timer fires at all; and a
 * Swift program exec'd directly with it preloaded loses its command-line arguments.
 * See docs/reliability.md. Built by Tests/integration/test_clock_steps.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_seconds(void) {
    static const char *path;
    if (!path) path = getenv("BERTH_WALLCLOCK_OFFSET_FILE");
    if (!path) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtoll(buf, NULL, 10);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset_seconds();
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    static int (*real)(struct timeval *restrict, void *restrict);
    if (!real) real = (int (*)(struct timeval *restrict, void *restrict))dlsym(RTLD_NEXT, "gettimeofday");
    int r = real(tv, tz);
    if (r == 0) tv->tv_sec += offset_seconds();
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
