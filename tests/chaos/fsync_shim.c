/*
 * fsync_shim.c - an LD_PRELOAD shim that models power loss for tests/chaos/test_power_loss.py.
 *
 * Model: after a power cut, a file holds exactly what it held at its last successful fsync or
 * fdatasync; every write after that is lost, and a file never synced is lost entirely. The shim
 * keeps that durable image next to each tracked file: whenever a tracked file is synced, it copies
 * the file's whole contents to "<path>.synced" (written to a temporary name, then renamed, so the
 * image is replaced atomically and a SIGKILL mid-copy leaves the previous image). The test kills
 * the process, puts the images in place of the live files and restarts: that is the disk as a
 * power cut at the kill moment would leave it, with every unsynced write dropped.
 *
 * SQLite on Linux makes a file durable with fdatasync() (fsync() where fdatasync is missing) and
 * uses no other durability call for the database or its WAL (no O_SYNC/O_DSYNC opens, no msync,
 * no sync_file_range; the -shm WAL index is rebuilt from the WAL after a crash). Those other calls
 * are intercepted only to report them as "unmodelled": if a future SQLite used them, the test
 * fails instead of trusting a model that no longer fits.
 *
 * Tracked files: basenames listed in FSYNC_SHIM_FILES (colon-separated, default
 * "node.db:node.db-wal"), found with readlink(/proc/self/fd/N). The copy reads through the same
 * file descriptor with copy_file_range/pread: opening and closing another descriptor on the
 * database would drop SQLite's POSIX advisory locks.
 *
 * Environment:
 *   FSYNC_SHIM_LOG      file to append one line per event to: "<pid> <event> <details>".
 *   FSYNC_SHIM_FILES    tracked basenames (see above).
 *   FSYNC_SHIM_CONTROL  a directory the test writes control files into:
 *     freeze   once it exists, syncs still reach the disk but no longer update the durable
 *              images: a disk that ignores flushes, i.e. what synchronous=OFF would give.
 *     kill-at  "<k> before|after": SIGKILL this process at the k-th tracked sync after the file
 *              is first seen, either before the sync reaches the disk (a power cut during the
 *              fsync) or after its image is recorded but before the caller learns of it.
 *
 * Build: cc -shared -fPIC -O2 -o fsync_shim.so fsync_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_TRACKED 8

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_msync)(void *, size_t, int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static char control_dir[PATH_MAX];
static char tracked[MAX_TRACKED][NAME_MAX + 1];
static int n_tracked;
static long sync_count;  /* tracked syncs in this process */
static int frozen;
static long kill_at = -1; /* absolute sync number, once kill-at has been read */
static int kill_after;    /* 0: before the sync reaches the disk, 1: after it is recorded */

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...) {
    if (log_fd < 0)
        return;
    char line[PATH_MAX + 256];
    int head = snprintf(line, sizeof line, "%ld ", (long)getpid());
    va_list args;
    va_start(args, fmt);
    int body = vsnprintf(line + head, sizeof line - (size_t)head - 1, fmt, args);
    va_end(args);
    size_t len = (size_t)head + (body < 0 ? 0 : (size_t)body);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(log_fd, line, len); /* O_APPEND: one write, one whole line */
    (void)ignored;
}

#define RESOLVE(name) \
    do { \
        if (!real_##name) \
            *(void **)(&real_##name) = dlsym(RTLD_NEXT, #name); \
    } while (0)

__attribute__((constructor)) static void shim_init(void) {
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(syncfs);
    RESOLVE(sync);
    RESOLVE(msync);
    RESOLVE(sync_file_range);
    const char *log_path = getenv("FSYNC_SHIM_LOG");
    if (log_path && *log_path)
        log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    const char *control = getenv("FSYNC_SHIM_CONTROL");
    if (control && strlen(control) < sizeof control_dir - 16)
        strcpy(control_dir, control);
    const char *files = getenv("FSYNC_SHIM_FILES");
    char list[1024];
    snprintf(list, sizeof list, "%s", files && *files ? files : "node.db:node.db-wal");
    char *save = NULL;
    for (char *name = strtok_r(list, ":", &save); name && n_tracked < MAX_TRACKED;
         name = strtok_r(NULL, ":", &save))
        snprintf(tracked[n_tracked++], sizeof tracked[0], "%s", name);
    logf_("loaded tracked=%s", files && *files ? files : "node.db:node.db-wal");
}

/* The path behind fd if its basename is tracked; NULL otherwise. */
static const char *tracked_path(int fd, char *path, size_t size, const char **base) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n <= 0)
        return NULL;
    path[n] = '\0';
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    for (int i = 0; i < n_tracked; i++)
        if (strcmp(*base, tracked[i]) == 0)
            return path;
    return NULL;
}

static void read_controls(void) {
    if (!control_dir[0])
        return;
    char file[PATH_MAX + 16];
    struct stat st;
    if (!frozen) {
        snprintf(file, sizeof file, "%s/freeze", control_dir);
        if (stat(file, &st) == 0) {
            frozen = 1;
            logf_("freeze after-sync=%ld", sync_count - 1);
        }
    }
    if (kill_at < 0) {
        snprintf(file, sizeof file, "%s/kill-at", control_dir);
        FILE *f = fopen(file, "re");
        if (f) {
            long k = 0;
            char when[16] = "";
            if (fscanf(f, "%ld %15s", &k, when) == 2 && k > 0) {
                kill_at = sync_count - 1 + k;
                kill_after = strcmp(when, "after") == 0;
                logf_("armed kill-at=%ld %s", kill_at, kill_after ? "after" : "before");
            }
            fclose(f);
        }
    }
}

/* Copy fd's whole contents to "<path>.synced" atomically; 0 on success. */
static int record(int fd, const char *path, const char *base, long n, const char *how) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    char tmp[PATH_MAX + 64], image[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.synced.tmp", path);
    snprintf(image, sizeof image, "%s.synced", path);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        return -1;
    off_t offset = 0;
    int fallback = 0;
    while (offset < st.st_size && !fallback) {
        ssize_t done = copy_file_range(fd, &offset, out, NULL, (size_t)(st.st_size - offset), 0);
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
                         errno == EOPNOTSUPP)) {
            fallback = 1;
            break;
        }
        if (done < 0) {
            close(out);
            return -1;
        }
        if (done == 0)
            break;
    }
    if (fallback) {
        char buffer[1 << 16];
        while (offset < st.st_size) {
            ssize_t got = pread(fd, buffer, sizeof buffer, offset);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                break;
            for (ssize_t put = 0; put < got;) {
                ssize_t w = write(out, buffer + put, (size_t)(got - put));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    close(out);
                    return -1;
                }
                put += w;
            }
            offset += got;
        }
    }
    if (close(out) != 0 || rename(tmp, image) != 0)
        return -1;
    logf_("sync n=%ld call=%s file=%s size=%lld", n, how, base, (long long)offset);
    return 0;
}

static int durable(int fd, int (*real)(int), const char *how) {
    char path[PATH_MAX];
    const char *base = NULL;
    if (!real)
        return errno = ENOSYS, -1;
    if (!tracked_path(fd, path, sizeof path, &base))
        return real(fd);
    pthread_mutex_lock(&lock);
    long n = ++sync_count;
    read_controls();
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & (O_SYNC | O_DSYNC)))
        logf_("unmodelled o_sync file=%s", base);
    if (kill_at >= 0 && n >= kill_at && !kill_after) {
        logf_("kill n=%ld before file=%s", n, base);
        kill(getpid(), SIGKILL);
        for (;;)
            pause();
    }
    int rc = real(fd);
    int saved = errno;
    if (rc == 0) {
        if (frozen)
            logf_("frozen n=%ld call=%s file=%s", n, how, base);
        else if (record(fd, path, base, n, how) != 0)
            logf_("error n=%ld file=%s errno=%d", n, base, errno);
    }
    if (kill_at >= 0 && n >= kill_at && kill_after) {
        logf_("kill n=%ld after file=%s", n, base);
        kill(getpid(), SIGKILL);
        for (;;)
            pause();
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int fsync(int fd) {
    RESOLVE(fsync);
    return durable(fd, real_fsync, "fsync");
}

int fdatasync(int fd) {
    RESOLVE(fdatasync);
    return durable(fd, real_fdatasync, "fdatasync");
}

/* --- calls the model does not cover: reported, then passed through ---------------------------- */

int syncfs(int fd) {
    RESOLVE(syncfs);
    logf_("unmodelled syncfs fd=%d", fd);
    return real_syncfs ? real_syncfs(fd) : (errno = ENOSYS, -1);
}

void sync(void) {
    RESOLVE(sync);
    logf_("unmodelled sync");
    if (real_sync)
        real_sync();
}

int msync(void *addr, size_t length, int flags) {
    RESOLVE(msync);
    logf_("unmodelled msync length=%zu", length);
    return real_msync ? real_msync(addr, length, flags) : (errno = ENOSYS, -1);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    RESOLVE(sync_file_range);
    char path[PATH_MAX];
    const char *base = NULL;
    if (tracked_path(fd, path, sizeof path, &base))
        logf_("unmodelled sync_file_range file=%s", base);
    return real_sync_file_range ? real_sync_file_range(fd, offset, nbytes, flags)
                                : (errno = ENOSYS, -1);
}
