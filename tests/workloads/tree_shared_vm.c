/* Processes sharing one address space without being threads.
 * Usage: tree_shared_vm vm|vfork DIR (DIR absolute).
 *
 * vm: the root A clones B with CLONE_VM|CLONE_SIGHAND and C with CLONE_VM alone (all three
 * share memory; A and B share signal handlers, C has its own), and B forks D (a plain fork:
 * D has a private copy of the memory). Every process bumps its tick slot in the (shared)
 * memory every 20 ms. Before the dump B and C report "pre ok" once they see A's ticks move
 * and the handlers they expect. Once DIR/go exists (the test creates it after the restore)
 * A installs a new SIGUSR1 handler, then sets `phase` to 2 in memory:
 *   - B reports "post mem ok" on seeing phase 2 (only shared memory shows it), "post
 *     sighand shared" when its SIGUSR1 handler is A's new one, "post signal ok" once a
 *     SIGUSR1 it sends itself ran that handler, and "post thread ok" once its thread (a
 *     CLONE_THREAD clone, reported as "thread TID") ticks on;
 *   - C reports "post mem ok" and "post sighand own" (its handler is still its own);
 *   - D reports "post private ok" when, 300 ms after go, its copy still says phase 1;
 *   - A reports "post ticks ok" once B's and C's ticks moved after go (they write into the
 *     memory A reads).
 *
 * vfork: the root vfork()s; the child reports "vfork child PID" and ticks until DIR/stop
 * exists, then _exits; the parent then reports "parent resumed" and ticks.
 *
 * Every report line is one open/write/close of DIR/report, so the report is no fd of the
 * tree; lines are formatted by hand (no stdio: the sharers have one libc state). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *dir;
static volatile long ticks[5];
static volatile int phase = 1;
static volatile long hits_new[4];

enum { SLOT_A, SLOT_B, SLOT_C, SLOT_D, SLOT_T };
/* The stack of B's thread, allocated by A (B must not call malloc: its libc state is A's). */
static char *t_stack;
#define T_STACK_SIZE (1 << 18)
static volatile pid_t pids[4];

static long my_pid(void) { return syscall(SYS_getpid); }

static size_t put(char *buf, size_t at, const char *s) {
    size_t n = strlen(s);
    memcpy(buf + at, s, n);
    return at + n;
}

static size_t put_num(char *buf, size_t at, long v) {
    char tmp[24];
    int n = 0;
    if (v == 0) tmp[n++] = '0';
    while (v > 0) {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    }
    while (n > 0) buf[at++] = tmp[--n];
    return at;
}

static void path_of(char *buf, const char *name) {
    size_t at = put(buf, 0, dir);
    at = put(buf, at, "/");
    at = put(buf, at, name);
    buf[at] = 0;
}

/* Appends "WHAT PID\n". */
static void report(const char *what, long pid) {
    char path[4096], line[128];
    size_t n = put(line, 0, what);
    n = put(line, n, " ");
    n = put_num(line, n, pid);
    n = put(line, n, "\n");
    path_of(path, "report");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) syscall(SYS_exit_group, 3);
    if (write(fd, line, n) != (ssize_t)n) syscall(SYS_exit_group, 3);
    close(fd);
}

static int exists(const char *name) {
    char p[4096];
    path_of(p, name);
    return access(p, F_OK) == 0;
}

static int slot_of(long pid) {
    for (int i = 0; i < 4; i++)
        if (pids[i] == pid) return i;
    return -1;
}

static void h_old(int sig) { (void)sig; }
static void h_c(int sig) { (void)sig; }
static void h_new(int sig) {
    (void)sig;
    int s = slot_of(my_pid());
    if (s >= 0) hits_new[s]++;
}

static void (*handler_now(void))(int) {
    struct sigaction sa;
    if (sigaction(SIGUSR1, NULL, &sa)) return NULL;
    return sa.sa_handler;
}

static void set_handler(void (*h)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    if (sigaction(SIGUSR1, &sa, NULL)) syscall(SYS_exit_group, 4);
}

static void nap(void) { usleep(20000); }

static int d_main(void) {
    long me = my_pid();
    int pre = 0, go_seen = 0, post = 0;
    for (;;) {
        ticks[SLOT_D]++;
        if (!pre) { report("pre ok", me); pre = 1; }
        if (!post && exists("go")) {
            if (go_seen++ == 15) {
                report(phase == 1 ? "post private ok" : "post private broken", me);
                post = 1;
            }
        }
        nap();
    }
}

static int t_main(void *arg) {
    (void)arg;
    for (;;) {
        ticks[SLOT_T]++;
        nap();
    }
}

static int b_main(void *arg) {
    (void)arg;
    long me = my_pid();
    pids[SLOT_B] = me;
    /* A plain fork (the raw syscall: glibc's fork would write B's tid into the TCB it
     * shares with A). */
    long d = syscall(SYS_fork);
    if (d == 0) {
        pids[SLOT_D] = my_pid();
        return d_main();
    }
    if (d < 0) syscall(SYS_exit_group, 5);
    report("child D", d);
    /* A thread of B (CLONE_THREAD): restored inside B's shared address space. */
    long t = clone(t_main, t_stack + T_STACK_SIZE,
                   CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, NULL);
    if (t < 0) syscall(SYS_exit_group, 5);
    report("thread", t);
    long seen = ticks[SLOT_A], t_at = -1;
    int pre = 0, mem = 0, sh = 0, sig = 0, thr = 0;
    for (;;) {
        ticks[SLOT_B]++;
        if (!pre && ticks[SLOT_A] > seen + 2 && handler_now() == h_old) {
            report("pre ok", me);
            pre = 1;
        }
        if (phase == 2) {
            if (!mem) { report("post mem ok", me); mem = 1; }
            if (!sh && handler_now() == h_new) {
                report("post sighand shared", me);
                sh = 1;
                syscall(SYS_kill, me, SIGUSR1);
            }
            if (sh && !sig && hits_new[SLOT_B] > 0) { report("post signal ok", me); sig = 1; }
            if (t_at < 0) t_at = ticks[SLOT_T];
            if (!thr && ticks[SLOT_T] > t_at + 2) { report("post thread ok", me); thr = 1; }
        }
        nap();
    }
}

static int c_main(void *arg) {
    (void)arg;
    long me = my_pid();
    pids[SLOT_C] = me;
    set_handler(h_c);
    long seen = ticks[SLOT_A];
    int pre = 0, mem = 0, own = 0;
    for (;;) {
        ticks[SLOT_C]++;
        if (!pre && ticks[SLOT_A] > seen + 2 && handler_now() == h_c) {
            report("pre ok", me);
            pre = 1;
        }
        if (phase == 2) {
            if (!mem) { report("post mem ok", me); mem = 1; }
            if (!own && handler_now() == h_c) { report("post sighand own", me); own = 1; }
        }
        nap();
    }
}

static pid_t clone_on_new_stack(int (*fn)(void *), int flags) {
    size_t size = 1 << 20;
    char *stack = malloc(size);
    if (!stack) syscall(SYS_exit_group, 6);
    return clone(fn, stack + size, flags | SIGCHLD, NULL);
}

static int vm_main(void) {
    long me = my_pid();
    pids[SLOT_A] = me;
    set_handler(h_old);
    t_stack = malloc(T_STACK_SIZE);
    if (!t_stack) return 6;
    pid_t b = clone_on_new_stack(b_main, CLONE_VM | CLONE_SIGHAND);
    if (b < 0) return 7;
    report("child B", b);
    pid_t c = clone_on_new_stack(c_main, CLONE_VM);
    if (c < 0) return 7;
    report("child C", c);
    long b_at = 0, c_at = 0;
    int go = 0, post = 0;
    for (;;) {
        ticks[SLOT_A]++;
        /* C's own handler must not have reached A's table. */
        if (!go && handler_now() != h_old) report("handler leaked", me);
        if (!go && exists("go")) {
            set_handler(h_new);
            b_at = ticks[SLOT_B];
            c_at = ticks[SLOT_C];
            phase = 2;
            go = 1;
        }
        if (go && !post && ticks[SLOT_B] > b_at + 2 && ticks[SLOT_C] > c_at + 2) {
            report("post ticks ok", me);
            post = 1;
        }
        nap();
    }
}

static int vfork_main(void) {
    pid_t p = vfork();
    if (p == 0) {
        report("vfork child", my_pid());
        while (!exists("stop")) {
            report("tick", my_pid());
            nap();
        }
        _exit(0);
    }
    if (p < 0) return 8;
    report("parent resumed", my_pid());
    for (;;) {
        report("tick", my_pid());
        nap();
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    dir = argv[2];
    setsid();
    if (strcmp(argv[1], "vm") == 0) return vm_main();
    if (strcmp(argv[1], "vfork") == 0) return vfork_main();
    return 2;
}
