/* Files under /proc/PID of the tree across a checkpoint: proc_files REPORT TRIGGER.
 * Forks a child that sleeps, then holds /proc/CHILD/stat (read up to offset 5),
 * /proc/SELF/maps (close-on-exec) and /proc/SELF/fdinfo/N of a nonblocking pipe end.
 * Writes "ready PID CHILD", waits until TRIGGER exists, then checks: the stat fd is still
 * at offset 5 and reads the live child's stat (its pid, its name); the maps fd reads this
 * process's maps (its stack, its executable) and kept FD_CLOEXEC; the fdinfo fd shows the
 * pipe end's flags with O_NONBLOCK. Writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define FAIL(...) do { char b_[256]; snprintf(b_, sizeof b_, __VA_ARGS__); \
    say("FAIL: %s (errno %d)", b_, errno); exit(1); } while (0)

static char buf[1 << 16];

/* The whole file from offset 0, NUL-terminated. */
static const char *whole(int fd, const char *what) {
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) FAIL("pread %s: %zd", what, n);
    buf[n] = 0;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    const char *trigger = argv[2];
    setsid(); /* a session of its own: restore recreates it (no --shell-job) */
    pid_t child = fork();
    if (child < 0) return 3;
    if (child == 0) {
        for (;;) pause();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", child);
    int stat_fd = open(path, O_RDONLY);
    if (stat_fd < 0) FAIL("open %s", path);
    char head[5];
    if (read(stat_fd, head, sizeof head) != sizeof head) FAIL("read %s", path);
    snprintf(path, sizeof path, "/proc/%d/maps", getpid());
    int maps_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (maps_fd < 0) FAIL("open %s", path);
    int p[2];
    if (pipe2(p, O_NONBLOCK)) FAIL("pipe2");
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", getpid(), p[0]);
    int info_fd = open(path, O_RDONLY);
    if (info_fd < 0) FAIL("open %s", path);
    say("ready %d %d", getpid(), child);

    struct timespec ts = {0, 20 * 1000 * 1000};
    while (access(trigger, F_OK)) nanosleep(&ts, NULL);

    off_t off = lseek(stat_fd, 0, SEEK_CUR);
    if (off != 5) FAIL("stat fd at offset %lld, not 5", (long long)off);
    char want[64];
    snprintf(want, sizeof want, "%d (proc_files) ", child);
    if (strncmp(whole(stat_fd, "child stat"), want, strlen(want)))
        FAIL("child stat reads '%.40s', wanted '%s'", buf, want);
    const char *maps = whole(maps_fd, "maps");
    if (!strstr(maps, "[stack]") || !strstr(maps, "/proc_files"))
        FAIL("maps fd does not read our maps: '%.80s'", maps);
    int fdfl = fcntl(maps_fd, F_GETFD);
    if (!(fdfl & FD_CLOEXEC)) FAIL("maps fd lost FD_CLOEXEC (%#x)", fdfl);
    const char *info = whole(info_fd, "fdinfo");
    const char *flags = strstr(info, "flags:");
    if (!flags) FAIL("fdinfo reads '%.60s'", info);
    unsigned long fl = strtoul(flags + 6, NULL, 8);
    if (!(fl & O_NONBLOCK)) FAIL("fdinfo flags %lo without O_NONBLOCK", fl);
    kill(child, SIGKILL);
    say("ok");
    return 0;
}
