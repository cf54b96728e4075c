/* Deleted and odd files across a checkpoint (CRIU's zdtm ghost_holes_large00, unlink_fstat03,
 * symlink01, proc-self, memfd04/05), one scenario per including file, which defines one of
 * ODD_SPARSE, ODD_LINKED, ODD_SYMLINK, ODD_NSFILE, ODD_MEMFD_EXEC. Run as NAME REPORT TRIGGER:
 * sets the scenario up in REPORT's directory, writes "ready PID", waits until TRIGGER
 * exists, checks itself and writes "ok" or "FAIL: why".
 * - sparse: a 1 GiB + 8 KiB file with 4 KiB of data at each end, unlinked; after: same size,
 *   same data, still 8 KiB of blocks (holes kept).
 * - linked: DIR/data opened, hard-linked as DIR/data.link, DIR/data unlinked, 1000 bytes
 *   written; after: same inode as DIR/data.link, 1000 bytes, offset 1000.
 * - symlink: DIR/sym -> DIR/target held with O_PATH|O_NOFOLLOW, DIR/sym unlinked; after: still
 *   a symlink, readlinkat gives DIR/target.
 * - nsfile: /proc/self/ns/net held open; after: same inode as /proc/self/ns/net now.
 * - memfd_exec: a memfd holding a shell script (exit 7), reopened read-only, that reopen
 *   mapped private and the memfd mapped shared; execveat of the memfd works before, and
 *   after (no ETXTBSY: nothing holds the memfd open for writing but its own description). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *report;

static void say(const char *fmt, ...) {
    FILE *f = fopen(report, "a");
    if (!f) exit(2);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

#define FAIL(...) do { char b_[9000]; snprintf(b_, sizeof b_, __VA_ARGS__); \
    say("FAIL: %s (errno %d)", b_, errno); exit(1); } while (0)

static char dir[4096];
static __attribute__((unused)) char path_a[4200], path_b[4200];
static int fd_a;
static __attribute__((unused)) struct stat st_before;

#define HOLE (1LL << 30)
#define CHUNK 4096

static __attribute__((unused)) void fill(unsigned char *b, int seed) {
    for (int i = 0; i < CHUNK; i++) b[i] = (unsigned char)(i * 7 + seed);
}

#ifdef ODD_SPARSE
static void setup(void) {
    unsigned char b[CHUNK];
    snprintf(path_a, sizeof path_a, "%s/sparse", dir);
    fd_a = open(path_a, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd_a < 0) FAIL("open %s", path_a);
    if (unlink(path_a)) FAIL("unlink");
    fill(b, 1);
    if (pwrite(fd_a, b, CHUNK, 0) != CHUNK) FAIL("pwrite 1");
    fill(b, 2);
    if (pwrite(fd_a, b, CHUNK, CHUNK + HOLE) != CHUNK) FAIL("pwrite 2");
    if (fstat(fd_a, &st_before)) FAIL("fstat");
}
static void check(void) {
    unsigned char b[CHUNK], want[CHUNK];
    struct stat st;
    if (fstat(fd_a, &st)) FAIL("fstat");
    if (st.st_size != 2 * CHUNK + HOLE) FAIL("size %lld", (long long)st.st_size);
    if (st.st_nlink != 0) FAIL("nlink %lu", (unsigned long)st.st_nlink);
    if (st.st_blocks != st_before.st_blocks)
        FAIL("%lld blocks, had %lld (holes lost?)", (long long)st.st_blocks,
             (long long)st_before.st_blocks);
    fill(want, 1);
    if (pread(fd_a, b, CHUNK, 0) != CHUNK || memcmp(b, want, CHUNK)) FAIL("data 1");
    fill(want, 2);
    if (pread(fd_a, b, CHUNK, CHUNK + HOLE) != CHUNK || memcmp(b, want, CHUNK)) FAIL("data 2");
    if (lseek(fd_a, 0, SEEK_HOLE) != CHUNK) FAIL("no hole after the first block");
}
#endif

#ifdef ODD_LINKED
static void setup(void) {
    char b[1000];
    snprintf(path_a, sizeof path_a, "%s/data", dir);
    snprintf(path_b, sizeof path_b, "%s/data.link", dir);
    fd_a = open(path_a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_a < 0) FAIL("open %s", path_a);
    unlink(path_b);
    if (link(path_a, path_b)) FAIL("link");
    if (unlink(path_a)) FAIL("unlink");
    memset(b, 'x', sizeof b);
    if (write(fd_a, b, sizeof b) != sizeof b) FAIL("write");
    if (fstat(fd_a, &st_before)) FAIL("fstat");
}
static void check(void) {
    struct stat st, other;
    if (fstat(fd_a, &st)) FAIL("fstat");
    if (stat(path_b, &other)) FAIL("stat %s", path_b);
    if (st.st_ino != other.st_ino || st.st_dev != other.st_dev) FAIL("not the linked file");
    if (st.st_ino != st_before.st_ino) FAIL("inode changed");
    if (st.st_size != 1000) FAIL("size %lld", (long long)st.st_size);
    if (st.st_nlink != 1) FAIL("%lu links, want 1", (unsigned long)st.st_nlink);
    if (lseek(fd_a, 0, SEEK_CUR) != 1000) FAIL("offset");
    if ((fcntl(fd_a, F_GETFL) & O_ACCMODE) != O_WRONLY) FAIL("access mode");
}
#endif

#ifdef ODD_SYMLINK
static void setup(void) {
    snprintf(path_a, sizeof path_a, "%s/sym", dir);
    snprintf(path_b, sizeof path_b, "%s/target", dir);
    int t = creat(path_b, 0644);
    if (t < 0) FAIL("creat");
    close(t);
    if (symlink(path_b, path_a)) FAIL("symlink");
    fd_a = open(path_a, O_PATH | O_NOFOLLOW);
    if (fd_a < 0) FAIL("open O_PATH");
    if (unlink(path_a)) FAIL("unlink");
}
static void check(void) {
    struct stat st;
    char got[4200];
    if (fstat(fd_a, &st)) FAIL("fstat");
    if (!S_ISLNK(st.st_mode)) FAIL("mode %o is no symlink", st.st_mode);
    ssize_t n = readlinkat(fd_a, "", got, sizeof got - 1);
    if (n < 0) FAIL("readlinkat");
    got[n] = 0;
    if (strcmp(got, path_b)) FAIL("points to %s, want %s", got, path_b);
    if (!(fcntl(fd_a, F_GETFL) & O_PATH)) FAIL("no longer O_PATH");
}
#endif

#ifdef ODD_NSFILE
static void setup(void) {
    fd_a = open("/proc/self/ns/net", O_RDONLY);
    if (fd_a < 0) FAIL("open ns");
    if (fstat(fd_a, &st_before)) FAIL("fstat");
}
static void check(void) {
    struct stat st, now;
    if (fstat(fd_a, &st)) FAIL("fstat");
    if (stat("/proc/self/ns/net", &now)) FAIL("stat ns");
    if (st.st_ino != now.st_ino || st.st_ino != st_before.st_ino) FAIL("another namespace");
    if (setns(fd_a, CLONE_NEWNET)) FAIL("setns");
}
#endif

#ifdef ODD_MEMFD_EXEC
static const char script[] = "#!/bin/sh\nexit 7\n";
static int exec_status(void) {
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = {"script", NULL}, *envp[] = {NULL};
        syscall(SYS_execveat, fd_a, "", argv, envp, AT_EMPTY_PATH);
        _exit(100 + errno);
    }
    int status;
    if (waitpid(p, &status, 0) != p) FAIL("waitpid");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
static void setup(void) {
    char proc[64];
    fd_a = memfd_create("script", 0);
    if (fd_a < 0) FAIL("memfd_create");
    if (write(fd_a, script, sizeof script - 1) != sizeof script - 1) FAIL("write");
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd_a);
    int ro = open(proc, O_RDONLY);
    if (ro < 0) FAIL("reopen read-only");
    if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0) == MAP_FAILED) FAIL("mmap");
    if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd_a, 0) == MAP_FAILED) FAIL("mmap");
    int s = exec_status();
    if (s != 7) FAIL("execveat before the dump: status %d", s);
}
static void check(void) {
    int s = exec_status();
    if (s == 100 + ETXTBSY) FAIL("execveat: ETXTBSY (the memfd is held open for writing)");
    if (s != 7) FAIL("execveat: status %d", s);
}
#endif

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    const char *trigger = argv[2];
    char tmp[sizeof dir];
    snprintf(tmp, sizeof tmp, "%s", report);
    snprintf(dir, sizeof dir, "%s", dirname(tmp));
    setup();
    say("ready %d", getpid());
    struct timespec ts = {0, 10 * 1000 * 1000};
    while (access(trigger, F_OK)) nanosleep(&ts, NULL);
    check();
    say("ok");
    return 0;
}
