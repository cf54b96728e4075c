/* A parent and a child created with clone(CLONE_FILES) or clone(CLONE_FS) (not threads: no
 * CLONE_VM). Usage: tree_shared files|fs DIR (DIR absolute).
 *
 * Before the dump the parent opens DIR/before at fd 99 (files) or chdir()s to DIR/pre (fs);
 * the child reports "pre ok" once it sees that change. Once DIR/go exists (the test creates
 * it after the restore) the parent opens DIR/target at fd 100 (files) or chdir()s to
 * DIR/post (fs); the child reports "post ok" once it sees it, which only a table or
 * fs_struct still shared after the restore allows. Both append "tick PID" every 50 ms.
 * Every report line is one open/write/close, so the report is no fd of the tree. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;
static int files_mode;

static void report(const char *fmt, long v) {
    char path[4096], line[128];
    snprintf(path, sizeof path, "%s/report", dir);
    int n = snprintf(line, sizeof line, fmt, v);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) exit(3);
    if (write(fd, line, n) != n) exit(3);
    close(fd);
}

static void path_of(char *buf, const char *name) { snprintf(buf, 4096, "%s/%s", dir, name); }

/* Whether fd `fd` is open on file `name` of DIR. */
static int fd_is(int fd, const char *name) {
    char p[4096];
    struct stat a, b;
    path_of(p, name);
    return fstat(fd, &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int cwd_is(const char *name) {
    char p[4096], cwd[4096];
    path_of(p, name);
    return getcwd(cwd, sizeof cwd) && strcmp(cwd, p) == 0;
}

static int child_main(void *arg) {
    (void)arg;
    int pre = 0, post = 0;
    for (;;) {
        int p = files_mode ? fd_is(99, "before") : cwd_is("pre");
        int q = files_mode ? fd_is(100, "target") : cwd_is("post");
        if (p && !pre) { report("pre ok %ld\n", getpid()); pre = 1; }
        if (q && !post) { report("post ok %ld\n", getpid()); post = 1; }
        report("tick %ld\n", getpid());
        usleep(50000);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 || dir) return 2;
    files_mode = strcmp(argv[1], "files") == 0;
    if (!files_mode && strcmp(argv[1], "fs") != 0) return 2;
    dir = argv[2];
    setsid();
    char p[4096];
    const char *subdirs[] = {"pre", "post"};
    for (int i = 0; i < 2; i++) {
        path_of(p, subdirs[i]);
        mkdir(p, 0700);
    }
    size_t stack_size = 1 << 20;
    char *stack = malloc(stack_size);
    if (!stack) return 4;
    int flags = (files_mode ? CLONE_FILES : CLONE_FS) | SIGCHLD;
    pid_t child = clone(child_main, stack + stack_size, flags, NULL);
    if (child < 0) return 5;
    report("child %ld\n", child);
    if (files_mode) {
        path_of(p, "before");
        int fd = open(p, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || dup2(fd, 99) != 99) return 6;
        close(fd);
    } else {
        path_of(p, "pre");
        if (chdir(p)) return 6;
    }
    int done = 0;
    for (;;) {
        path_of(p, "go");
        if (!done && access(p, F_OK) == 0) {
            if (files_mode) {
                path_of(p, "target");
                int fd = open(p, O_RDWR | O_CREAT, 0600);
                if (fd < 0 || dup2(fd, 100) != 100) return 7;
                close(fd);
            } else {
                path_of(p, "post");
                if (chdir(p)) return 7;
            }
            done = 1;
        }
        report("tick %ld\n", getpid());
        usleep(50000);
    }
}
