/*
 * Storage faults for Tests/integration/test_storage_faults.py: an LD_PRELOAD
 * shim that makes the file system under one directory misbehave the way a failing disk does, at
 * the system calls SQLite makes, while berthd runs.
 *
 *   BERTH_FAULT_DIR   only descriptors whose path (from /proc/self/fd) is under this directory
 *                     are touched: the socket, stderr and the journal never are.
 *   BERTH_FAULT_FILE  read on every call; its first word picks the fault, none when it is missing:
 *     erofs   the file system went read-only: writes, truncates, syncs and opens for writing fail
 *             with EROFS (what the kernel does after errors=remount-ro);
 *     eio     every fsync/fdatasync fails with EIO (a failing device: the classic fsync error);
 *     enospc  writes and truncates fail with ENOSPC (the test prefers a real full tmpfs; this is
 *             its fallback where mounting one is not allowed).
 *
 * Reads, locks and the shared-memory index (mmap) are left alone, so reads keep working, as they
 * do on a read-only or full disk.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum fault { NONE, FAULT_EROFS, FAULT_EIO, FAULT_ENOSPC };

/* The control file, read with raw system calls so the shim never calls itself. */
static enum fault current_fault(void) {
    const char *file = getenv("BERTH_FAULT_FILE");
    if (!file) return NONE;
    int saved = errno;
    char buf[16] = {0};
    long fd = syscall(SYS_openat, AT_FDCWD, file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)syscall(SYS_read, fd, buf, sizeof buf - 1);
        (void)syscall(SYS_close, fd);
    }
    errno = saved;
    if (strncmp(buf, "erofs", 5) == 0) return FAULT_EROFS;
    if (strncmp(buf, "eio", 3) == 0) return FAULT_EIO;
    if (strncmp(buf, "enospc", 6) == 0) return FAULT_ENOSPC;
    return NONE;
}

static int under_dir(const char *path) {
    const char *dir = getenv("BERTH_FAULT_DIR");
    if (!dir || !path) return 0;
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int fd_under_dir(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int saved = errno;
    long len = syscall(SYS_readlinkat, AT_FDCWD, link, path, sizeof path - 1);
    errno = saved;
    if (len <= 0) return 0;
    path[len] = '\0';
    return under_dir(path);
}

/* The fault a call on `fd` gets, for a write-like call (`sync` for fsync/fdatasync). */
static int injected_errno(int fd, int sync) {
    enum fault f = current_fault();
    if (f == NONE || !fd_under_dir(fd)) return 0;
    switch (f) {
    case FAULT_EROFS: return EROFS;
    case FAULT_EIO: return sync ? EIO : 0;
    case FAULT_ENOSPC: return sync ? 0 : ENOSPC;
    default: return 0;
    }
}

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)
#define FAIL_WITH(e) do { errno = (e); return -1; } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    int e = injected_errno(fd, 0);
    if (e) FAIL_WITH(e);
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    int e = injected_errno(fd, 0);
    if (e) FAIL_WITH(e);
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64);
    int e = injected_errno(fd, 0);
    if (e) FAIL_WITH(e);
    return real_pwrite64(fd, buf, count, offset);
}

int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    int e = injected_errno(fd, 0);
    if (e) FAIL_WITH(e);
    return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    REAL(ftruncate64);
    int e = injected_errno(fd, 0);
    if (e) FAIL_WITH(e);
    return real_ftruncate64(fd, length);
}

int fsync(int fd) {
    REAL(fsync);
    int e = injected_errno(fd, 1);
    if (e) FAIL_WITH(e);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    int e = injected_errno(fd, 1);
    if (e) FAIL_WITH(e);
    return real_fdatasync(fd);
}

/* Opening for writing on a read-only file system fails; SQLite then retries read-only. */
static int open_refused(const char *path, int flags) {
    if (!(flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC))) return 0;
    return current_fault() == FAULT_EROFS && under_dir(path);
}

int open(const char *path, int flags, ...) {
    REAL(open);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (open_refused(path, flags)) FAIL_WITH(EROFS);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    REAL(open64);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (open_refused(path, flags)) FAIL_WITH(EROFS);
    return real_open64(path, flags, mode);
}
