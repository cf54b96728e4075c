/* A queue with a SIGEV_THREAD notification (the C library's netlink socket and helper
 * thread), which criu-rs refuses to dump: mqueue_thread REPORT TRIGGER. Writes "ready PID",
 * waits until TRIGGER exists, then checks that its registration is still in place and a
 * send still notifies its thread; writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *report;
static char name[64];
static volatile int notified;

static void say(const char *text) {
    FILE *f = fopen(report, "a");
    if (!f) exit(2);
    fprintf(f, "%s\n", text);
    fclose(f);
}

static void fail(const char *why) {
    char buf[256];
    snprintf(buf, sizeof buf, "FAIL: %s (errno %d)", why, errno);
    say(buf);
    mq_unlink(name);
    exit(1);
}

static void on_message(union sigval v) {
    notified = v.sival_int;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid();
    snprintf(name, sizeof name, "/criu-rs-wlt-%d", getpid());
    struct mq_attr a = {0, 2, 16, 0};
    mq_unlink(name);
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &a);
    if (q == (mqd_t)-1) fail("mq_open");
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = on_message;
    ev.sigev_value.sival_int = 99;
    if (mq_notify(q, &ev)) fail("mq_notify");
    char line[64];
    snprintf(line, sizeof line, "ready %d", getpid());
    say(line);
    struct timespec ts = {0, 10000000};
    while (access(argv[2], F_OK)) nanosleep(&ts, NULL);
    struct sigevent none = {0};
    none.sigev_notify = SIGEV_NONE;
    if (mq_notify(q, &none) == 0 || errno != EBUSY) fail("registration gone");
    if (mq_send(q, "x", 1, 0)) fail("mq_send");
    for (int i = 0; i < 200 && !notified; i++) nanosleep(&ts, NULL);
    if (notified != 99) fail("no thread notification");
    mq_unlink(name);
    say("ok");
    return 0;
}
