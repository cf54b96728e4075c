/* POSIX message queues across a checkpoint: mqueue REPORT TRIGGER.
 * Sets up a named queue with messages of mixed priorities (opened twice: nonblocking
 * read-write and blocking read-only), an unlinked queue held open with messages, an empty
 * queue with an mq_notify SIGEV_SIGNAL registration (SIGUSR1, value 4242), a queue holding
 * a message with a SIGEV_SIGNAL registration (SIGUSR2, value 77) and one holding messages
 * with a SIGEV_NONE registration; a child process shares every description. Writes
 * "ready PID CHILD" to REPORT, waits until TRIGGER exists (created after the dump, or after
 * the restore), then checks everything itself (the child its share first) and writes "ok"
 * or "FAIL: why" and exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *report;
static char named[64], ghost[64], notified[64], full[64], silent[64];
static volatile sig_atomic_t got_signal, got_code, got_value, got_usr2, usr2_value;

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

static void fail(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("FAIL: %s (errno %d)", buf, errno);
    mq_unlink(named);
    mq_unlink(notified);
    mq_unlink(full);
    mq_unlink(silent);
    exit(1);
}

static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    got_signal++;
    got_code = si->si_code;
    got_value = si->si_value.sival_int;
}

static void on_usr2(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_code == SI_MESGQ) usr2_value = si->si_value.sival_int;
    got_usr2++;
}

static void pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static mqd_t make(const char *name, int flags, long maxmsg, long msgsize) {
    struct mq_attr a = {0, maxmsg, msgsize, 0};
    mq_unlink(name);
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | flags, 0640, &a);
    if (q == (mqd_t)-1) fail("mq_open %s", name);
    return q;
}

static void send(mqd_t q, const char *text, unsigned prio) {
    if (mq_send(q, text, strlen(text), prio)) fail("mq_send %s", text);
}

/* Receives one message and checks its text and priority. */
static void expect(mqd_t q, const char *what, const char *text, unsigned prio) {
    char buf[256];
    unsigned p = 99;
    ssize_t n = mq_receive(q, buf, sizeof buf, &p);
    if (n < 0) fail("%s: mq_receive, wanted %s", what, text);
    buf[n] = 0;
    if (strcmp(buf, text) || p != prio)
        fail("%s: got \"%s\" prio %u, wanted \"%s\" prio %u", what, buf, p, text, prio);
}

static void expect_attr(mqd_t q, const char *what, long flags, long maxmsg, long msgsize, long cur) {
    struct mq_attr a;
    if (mq_getattr(q, &a)) fail("%s: mq_getattr", what);
    if (a.mq_flags != flags || a.mq_maxmsg != maxmsg || a.mq_msgsize != msgsize || a.mq_curmsgs != cur)
        fail("%s: attr flags %ld maxmsg %ld msgsize %ld curmsgs %ld, wanted %ld %ld %ld %ld", what,
             a.mq_flags, a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, flags, maxmsg, msgsize, cur);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    report = argv[1];
    setsid(); /* a session of its own: restore recreates it (no --shell-job) */
    const char *trigger = argv[2];
    pid_t me = getpid();
    snprintf(named, sizeof named, "/criu-rs-wl-%d", me);
    snprintf(ghost, sizeof ghost, "/criu-rs-wlg-%d", me);
    snprintf(notified, sizeof notified, "/criu-rs-wln-%d", me);
    snprintf(full, sizeof full, "/criu-rs-wlf-%d", me);
    snprintf(silent, sizeof silent, "/criu-rs-wls-%d", me);

    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_sigaction = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);

    mqd_t q = make(named, O_RDWR | O_NONBLOCK, 8, 64);
    send(q, "low-a", 1);
    send(q, "high", 9);
    send(q, "low-b", 1);
    send(q, "mid", 5);
    mqd_t reader = mq_open(named, O_RDONLY);
    if (reader == (mqd_t)-1) fail("second mq_open");

    mqd_t g = make(ghost, O_RDWR, 4, 32);
    send(g, "ghost-a", 2);
    send(g, "ghost-b", 7);
    if (mq_unlink(ghost)) fail("mq_unlink ghost");
    if (fchown(g, 1234, 5678) || fchmod(g, 0604)) fail("fchown/fchmod ghost");

    mqd_t n = make(notified, O_RDWR | O_NONBLOCK, 2, 16);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = 4242;
    if (mq_notify(n, &ev)) fail("mq_notify");

    mqd_t f = make(full, O_RDWR | O_NONBLOCK, 2, 16);
    send(f, "m1", 4);
    struct sigevent ev2 = {0};
    ev2.sigev_notify = SIGEV_SIGNAL;
    ev2.sigev_signo = SIGUSR2;
    ev2.sigev_value.sival_int = 77;
    if (mq_notify(f, &ev2)) fail("mq_notify full");

    mqd_t z = make(silent, O_RDWR | O_NONBLOCK, 3, 16);
    send(z, "z1", 0);
    send(z, "z2", 2);
    struct sigevent none = {0};
    none.sigev_notify = SIGEV_NONE;
    if (mq_notify(z, &none)) fail("mq_notify none");

    /* The child shares every description; after the trigger it checks what it can see
     * without taking a message (the parent checks the messages) and exits 0 or 3. */
    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        while (access(trigger, F_OK)) pause_ms(10);
        struct mq_attr a;
        int qfl = fcntl(q, F_GETFL);
        if (mq_getattr(g, &a) || a.mq_maxmsg != 4 || a.mq_curmsgs != 2) _exit(3);
        if (!(qfl & O_NONBLOCK) || mq_getattr(q, &a) || a.mq_curmsgs != 4) _exit(3);
        /* The parent's registration is there for the child too: it cannot register. */
        struct sigevent mine = {0};
        mine.sigev_notify = SIGEV_NONE;
        if (mq_notify(n, &mine) == 0 || errno != EBUSY) _exit(3);
        _exit(0);
    }

    say("ready %d %d", me, child);
    while (access(trigger, F_OK)) pause_ms(10);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
        fail("child status %#x", status);

    /* The dump fired nothing into us and left the registration in place. */
    if (got_signal) fail("a notification arrived before any send (%d)", (int)got_signal);
    if (mq_notify(n, &ev) == 0 || errno != EBUSY) fail("registration gone: mq_notify did not say EBUSY");

    expect_attr(q, "named", O_NONBLOCK, 8, 64, 4);
    int fl = fcntl(reader, F_GETFL);
    if ((fl & O_ACCMODE) != O_RDONLY || (fl & O_NONBLOCK)) fail("reader flags %#x", fl);
    expect_attr(reader, "reader", 0, 8, 64, 4);
    expect(reader, "named", "high", 9);
    expect(q, "named", "mid", 5);
    expect(reader, "named", "low-a", 1);
    expect(q, "named", "low-b", 1);
    char buf[64];
    if (mq_receive(q, buf, sizeof buf, NULL) != -1 || errno != EAGAIN) fail("named: not empty/nonblocking");

    expect_attr(g, "unlinked", 0, 4, 32, 2);
    struct stat st;
    if (fstat(g, &st) || st.st_uid != 1234 || st.st_gid != 5678 || (st.st_mode & 07777) != 0604)
        fail("unlinked: owner %d:%d mode %o", (int)st.st_uid, (int)st.st_gid, st.st_mode & 07777);
    if (mq_open(ghost, O_RDONLY) != (mqd_t)-1 || errno != ENOENT) fail("unlinked queue has a name again");
    expect(g, "unlinked", "ghost-b", 7);
    expect(g, "unlinked", "ghost-a", 2);
    send(g, "still-works", 3);
    expect(g, "unlinked", "still-works", 3);

    /* The next send into the empty queue notifies us, with our value. */
    send(n, "wake", 0);
    for (int i = 0; i < 200 && !got_signal; i++) pause_ms(10);
    if (got_signal != 1) fail("notification count %d after a send", (int)got_signal);
    if (got_code != SI_MESGQ || got_value != 4242)
        fail("notification si_code %d value %d, wanted %d 4242", (int)got_code, (int)got_value, SI_MESGQ);
    expect(n, "notified", "wake", 0);

    /* A registration on a queue that held a message at the dump is still there. */
    if (got_usr2) fail("SIGUSR2 arrived before any send");
    expect(f, "full", "m1", 4);
    send(f, "m2", 1);
    for (int i = 0; i < 200 && !got_usr2; i++) pause_ms(10);
    if (got_usr2 != 1 || usr2_value != 77) fail("full: notification %d value %d", (int)got_usr2, (int)usr2_value);

    /* SIGEV_NONE: still registered (EBUSY), messages in order. */
    if (mq_notify(z, &none) == 0 || errno != EBUSY) fail("SIGEV_NONE registration gone");
    expect(z, "silent", "z2", 2);
    expect(z, "silent", "z1", 0);

    mq_unlink(named);
    mq_unlink(notified);
    mq_unlink(full);
    mq_unlink(silent);
    say("ok");
    return 0;
}
