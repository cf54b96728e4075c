/* POSIX timers that signal one thread (SIGEV_THREAD_ID) across a checkpoint:
 * timer_thread REPORT TRIGGER.
 * glibc's SIGEV_THREAD timer is a kernel timer signalling its helper thread by tid; a second
 * timer signals a thread of ours with SIGUSR1, which only that thread leaves unblocked.
 * Both fire every 10 ms and count on eventfds. Writes "ready PID", waits until TRIGGER
 * exists, checks that both timers still target their threads (ticks keep arriving, within
 * 2 s, and SIGUSR1 only ever reaches our thread), writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
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

static int efd_glibc, efd_ours;
static volatile pid_t target_tid;
static volatile int wrong_thread;

static void glibc_tick(union sigval v) {
    uint64_t one = 1;
    write(efd_glibc, &one, sizeof one);
}

static void on_usr1(int sig) {
    uint64_t one = 1;
    if (syscall(SYS_gettid) != target_tid) wrong_thread = 1;
    write(efd_ours, &one, sizeof one);
}

static void *target(void *arg) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    target_tid = syscall(SYS_gettid);
    for (;;) pause();
    return arg;
}

static void arm(timer_t t) {
    struct itimerspec its = {{0, 10000000}, {0, 10000000}};
    if (timer_settime(t, 0, &its, NULL)) FAIL("timer_settime");
}

static void wait_tick(int fd, const char *what) {
    struct pollfd p = {fd, POLLIN, 0};
    uint64_t n;
    if (poll(&p, 1, 2000) != 1) FAIL("no tick of the %s timer in 2 s", what);
    if (read(fd, &n, sizeof n) != sizeof n) FAIL("read %s eventfd", what);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid(); /* a session of its own: restore recreates it (no --shell-job) */
    const char *trigger = argv[2];
    efd_glibc = eventfd(0, 0);
    efd_ours = eventfd(0, 0);
    if (efd_glibc < 0 || efd_ours < 0) FAIL("eventfd");

    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, target, NULL)) FAIL("pthread_create");
    while (!target_tid) usleep(1000);

    timer_t tg, to;
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD};
    ev.sigev_notify_function = glibc_tick;
    if (timer_create(CLOCK_MONOTONIC, &ev, &tg)) FAIL("timer_create SIGEV_THREAD");
    struct sigevent et = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1};
    et._sigev_un._tid = target_tid;
    if (timer_create(CLOCK_MONOTONIC, &et, &to)) FAIL("timer_create SIGEV_THREAD_ID");
    arm(tg);
    arm(to);
    wait_tick(efd_glibc, "SIGEV_THREAD");
    wait_tick(efd_ours, "SIGEV_THREAD_ID");

    say("ready %d", getpid());
    struct timespec tw = {0, 10000000};
    while (access(trigger, F_OK)) nanosleep(&tw, NULL);

    for (int i = 0; i < 3; i++) {
        wait_tick(efd_glibc, "SIGEV_THREAD");
        wait_tick(efd_ours, "SIGEV_THREAD_ID");
    }
    if (wrong_thread) FAIL("SIGUSR1 of the timer reached another thread");
    say("ok");
    return 0;
}
