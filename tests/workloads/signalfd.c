/* A signalfd across a checkpoint: signalfd REPORT TRIGGER.
 * Blocks SIGUSR1, SIGUSR2 and SIGRTMIN+3, opens a nonblocking signalfd for SIGUSR1 and
 * SIGRTMIN+3, and queues SIGRTMIN+3 (value 77) to itself so that it is pending at the
 * dump. Writes "ready PID", waits until TRIGGER exists, then checks: the pending signal
 * comes out of the signalfd with its value, nothing else is there (EAGAIN: still
 * nonblocking), a SIGUSR1 sent now comes out of it, a SIGUSR2 (not in its mask) does not.
 * Writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
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

static void expect(int fd, int signo, int value) {
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof si);
    if (n != sizeof si) FAIL("read signalfd for signal %d: %zd", signo, n);
    if ((int)si.ssi_signo != signo) FAIL("got signal %u, wanted %d", si.ssi_signo, signo);
    if (value >= 0 && si.ssi_int != value) FAIL("signal %d value %d, wanted %d", signo, si.ssi_int, value);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid(); /* a session of its own: restore recreates it (no --shell-job) */
    const char *trigger = argv[2];
    int rt = SIGRTMIN + 3;
    sigset_t blocked, mask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGUSR2);
    sigaddset(&blocked, rt);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, rt);
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) FAIL("signalfd");
    union sigval v = {.sival_int = 77};
    if (sigqueue(getpid(), rt, v)) FAIL("sigqueue");

    say("ready %d", getpid());
    struct timespec ts = {0, 10000000};
    while (access(trigger, F_OK)) nanosleep(&ts, NULL);

    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (!(fl & O_NONBLOCK) || !(fdfl & FD_CLOEXEC)) FAIL("flags %#x fd flags %#x", fl, fdfl);
    expect(fd, rt, 77);
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != -1 || errno != EAGAIN) FAIL("signalfd not empty or blocking");
    kill(getpid(), SIGUSR2);
    if (read(fd, &si, sizeof si) != -1 || errno != EAGAIN) FAIL("SIGUSR2 came out of the signalfd");
    kill(getpid(), SIGUSR1);
    expect(fd, SIGUSR1, -1);
    say("ok");
    return 0;
}
