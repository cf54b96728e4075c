/* seccomp across a checkpoint: seccomp_modes REPORT TRIGGER.
 * Three tasks, each in a seccomp state CRIU restores:
 * - this process: a thread with a filter of its own (prctl fails with errno 77 there),
 *   installed without TSYNC, so the leader shows no seccomp at all;
 * - child "tsync": a filter installed before its thread existed, so both threads share it;
 *   after the restore it adds a second filter with SECCOMP_FILTER_FLAG_TSYNC, which the
 *   kernel only accepts when the threads still share the first one;
 * - child "strict": in seccomp strict mode, waiting in read(); it answers one byte and
 *   leaves with exit().
 * Writes "ready PID TSYNC STRICT", waits until TRIGGER exists, checks, writes "ok" or
 * "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

#define FAIL(...) do { char b_[256]; snprintf(b_, sizeof b_, __VA_ARGS__); \
    say("FAIL: %s (errno %d)", b_, errno); exit(1); } while (0)

/* Makes syscall `nr` fail with `err`; returns seccomp()'s answer. */
static long deny(int nr, int err, unsigned flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {.len = sizeof f / sizeof f[0], .filter = f};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}

static int seccomp_mode(pid_t pid) {
    char path[64], line[256];
    int mode = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Seccomp:\t%d", &mode) == 1) break;
    fclose(f);
    return mode;
}

static int own_in[2], own_out[2];

/* The thread with its own filter: answers whether prctl still fails with 77 there. */
static void *own_filter(void *arg) {
    char c;
    if (deny(SYS_prctl, 77, 0)) c = 'i';
    else {
        write(own_out[1], "r", 1);
        read(own_in[0], &c, 1);
        c = (prctl(PR_GET_DUMPABLE) == -1 && errno == 77) ? 'y' : 'n';
    }
    write(own_out[1], &c, 1);
    return arg;
}

static int ts_go[2];

/* A thread of the tsync child: after the TSYNC filter, getpgid must fail with 78. */
static void *tsync_thread(void *arg) {
    char c;
    read(ts_go[0], &c, 1);
    return (void *)(long)(getpgid(0) == -1 && errno == 78 ? 0 : 1);
}

/* The tsync child: 'y' on `out` when the TSYNC filter reached both threads. */
static void tsync_child(int in, int out) {
    if (deny(SYS_getppid, 79, 0)) _exit(3);
    if (pipe(ts_go)) _exit(3);
    pthread_t th;
    if (pthread_create(&th, NULL, tsync_thread, NULL)) _exit(3);
    char c;
    write(out, "r", 1);
    read(in, &c, 1);
    long r = deny(SYS_getpgid, 78, SECCOMP_FILTER_FLAG_TSYNC);
    write(ts_go[1], "g", 1);
    void *res;
    pthread_join(th, &res);
    long pp = syscall(SYS_getppid);
    c = r != 0 ? 't' : res ? 'n' : (pp == -1 && errno == 79) ? 'y' : 'o';
    write(out, &c, 1);
    _exit(0);
}

/* The strict child: only read, write and exit from here on. */
static void strict_child(int in, int out) {
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) _exit(3);
    char c;
    write(out, "r", 1);
    if (read(in, &c, 1) != 1) syscall(SYS_exit, 4);
    c = 'y';
    write(out, &c, 1);
    syscall(SYS_exit, 0);
}

static pid_t child(void (*fn)(int, int), int *in, int *out) {
    int a[2], b[2];
    if (pipe(a) || pipe(b)) FAIL("pipe");
    pid_t pid = fork();
    if (pid < 0) FAIL("fork");
    if (pid == 0) {
        close(a[1]);
        close(b[0]);
        fn(a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    *in = a[1];
    *out = b[0];
    char c;
    if (read(*out, &c, 1) != 1 || c != 'r') FAIL("child %d did not start", pid);
    return pid;
}

static void expect_answer(const char *who, int in, int out, pid_t pid) {
    char c = 'g';
    if (write(in, &c, 1) != 1) FAIL("%s: write", who);
    if (read(out, &c, 1) != 1) FAIL("%s: no answer", who);
    if (c != 'y') FAIL("%s: answered %c", who, c);
    int st;
    if (pid > 0 && (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)))
        FAIL("%s: exit status %#x", who, st);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid(); /* a session of its own: restore recreates it (no --shell-job) */
    const char *trigger = argv[2];
    int ts_in, ts_out, st_in, st_out;
    pid_t ts = child(tsync_child, &ts_in, &ts_out);
    pid_t st = child(strict_child, &st_in, &st_out);
    if (pipe(own_in) || pipe(own_out)) FAIL("pipe");
    pthread_t th;
    if (pthread_create(&th, NULL, own_filter, NULL)) FAIL("pthread_create");
    char c;
    if (read(own_out[0], &c, 1) != 1 || c != 'r') FAIL("filtered thread: %c", c);

    say("ready %d %d %d", getpid(), ts, st);
    struct timespec tw = {0, 10000000};
    while (access(trigger, F_OK)) nanosleep(&tw, NULL);

    if (seccomp_mode(getpid()) != 0) FAIL("leader seccomp mode %d", seccomp_mode(getpid()));
    if (prctl(PR_GET_DUMPABLE) < 0) FAIL("prctl filtered in the leader");
    expect_answer("thread with its own filter", own_in[1], own_out[0], 0);
    pthread_join(th, NULL);
    if (seccomp_mode(st) != 1) FAIL("strict child's seccomp mode %d", seccomp_mode(st));
    expect_answer("strict child", st_in, st_out, st);
    expect_answer("tsync child", ts_in, ts_out, ts);
    say("ok");
    return 0;
}
