/* An LD_PRELOAD shim for the write-fault tests: the first write(2) of at least 4 kB to a file
 * whose path contains $JOBLAKE_TEST_FAIL_WRITE fails with ENOSPC, as a disk that was briefly
 * full would make it fail; every other write goes through. Built by the test with `cc`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failed;

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_write)
        real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *want = getenv("JOBLAKE_TEST_FAIL_WRITE");
    if (want && count >= 4096 && !__atomic_load_n(&failed, __ATOMIC_SEQ_CST)) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, path, sizeof path - 1);
        if (len > 0) {
            path[len] = '\0';
            if (strstr(path, want) && !__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST)) {
                fprintf(stderr, "failwrite: write to %s fails with ENOSPC\n", path);
                errno = ENOSPC;
                return -1;
            }
        }
    }
    return real_write(fd, buf, count);
}
