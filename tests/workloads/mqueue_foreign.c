/* A queue of another IPC namespace held by a task of criu's: mqueue_foreign REPORT TRIGGER.
 * A child unshares its IPC namespace, creates a queue there and waits; the parent takes
 * the child's fd with pidfd_getfd, then the child exits. criu-rs must refuse the dump (it
 * would recreate the queue in its own namespace). Writes "ready PID", waits until TRIGGER
 * exists, checks its queue still holds its message, writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *report;

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
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid();
    int ready[2];
    if (pipe(ready)) fail("pipe");
    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        if (unshare(CLONE_NEWIPC)) _exit(3);
        struct mq_attr a = {0, 2, 16, 0};
        mqd_t q = mq_open("/criu-rs-foreign", O_CREAT | O_RDWR, 0600, &a);
        if (q == (mqd_t)-1 || mq_send(q, "far", 3, 1)) _exit(4);
        if (dup2(q, 10) != 10 || write(ready[1], "x", 1) != 1) _exit(5);
        pause();
        _exit(0);
    }
    char c;
    if (read(ready[0], &c, 1) != 1) fail("child did not set up its queue");
    int pidfd = syscall(SYS_pidfd_open, child, 0);
    int q = syscall(SYS_pidfd_getfd, pidfd, 10, 0);
    if (pidfd < 0 || q < 0) fail("pidfd_getfd");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(pidfd);
    close(ready[0]);
    close(ready[1]);

    char line[64];
    snprintf(line, sizeof line, "ready %d", getpid());
    say(line);
    struct timespec ts = {0, 10000000};
    while (access(argv[2], F_OK)) nanosleep(&ts, NULL);
    char buf[16];
    unsigned prio;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
    if (n != 3 || prio != 1) fail("the foreign queue lost its message");
    say("ok");
    return 0;
}
