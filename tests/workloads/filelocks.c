/* File locks and leases of every kind, for the filelocks test: run as
 * `filelocks REPORT TRIGGER`. In the report's directory:
 *   lk.posix  POSIX write lock 0-9 and read lock 20-29 of the parent;
 *   lk.child  POSIX write lock 100-EOF of the child (its own description);
 *   lk.ofd    OFD write lock 0-99 and read lock 200-299 (one description);
 *   lk.flock  flock LOCK_EX taken by the parent before fork: the child shares it;
 *   lk.lease  read lease (O_RDONLY);
 *   lk.break  write lease being broken to a read lease (an O_RDONLY opener was refused),
 *             the break signal (SIGIO, F_SETSIG) counted.
 * Writes `ready PID CHILD`, waits for TRIGGER, then checks from a new process (F_GETLK,
 * F_OFD_GETLK, flock) that every lock is there with its owner, that its own locks still
 * unlock and lock again, and that the restore sent no second break signal.
 * Writes `ok` or `FAIL: why`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];
static FILE *report;
static volatile sig_atomic_t sigio_count, sigio_bad_fd;
static int break_fd;

static void fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(report, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(report, fmt, ap);
	va_end(ap);
	fprintf(report, " (errno %d)\n", errno);
	fflush(report);
	exit(1);
}

static const char *path(const char *name)
{
	static char p[4200];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static int open_file(const char *name, int flags)
{
	int fd = open(path(name), flags | O_CREAT, 0644);
	if (fd < 0)
		fail("open %s", name);
	return fd;
}

static void record(int fd, int cmd, short type, off_t start, off_t len, const char *what)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, cmd, &l))
		fail("%s", what);
}

static void on_sigio(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	sigio_count++;
	if (si->si_fd != break_fd)
		sigio_bad_fd = 1;
}

/* What a conflicting write lock over [start, start+len) meets: its type and pid. */
static struct flock probe(const char *name, int cmd, off_t start, off_t len)
{
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	int fd = open(path(name), O_RDWR);
	if (fd < 0 || fcntl(fd, cmd, &l))
		fail("probe %s", name);
	close(fd);
	return l;
}

static void expect(const char *name, int cmd, off_t start, off_t len, short type, pid_t owner)
{
	struct flock l = probe(name, cmd, start, len);
	if (l.l_type != type)
		fail("%s %ld+%ld: lock type %d, expected %d", name, (long)start, (long)len, l.l_type, type);
	if (type != F_UNLCK && owner && l.l_pid != owner)
		fail("%s %ld+%ld: owner %d, expected %d", name, (long)start, (long)len, l.l_pid, owner);
}

/* 0: the flock on lk.flock is free for another description, 1: it is held. */
static int flock_held(void)
{
	int fd = open(path("lk.flock"), O_RDWR);
	int r;
	if (fd < 0)
		fail("open lk.flock");
	r = flock(fd, LOCK_EX | LOCK_NB);
	if (r && errno != EWOULDBLOCK)
		fail("flock probe");
	close(fd);
	return r != 0;
}

/* Run from a new process: none of the locks are its own. */
static void check_from_outside(pid_t parent, pid_t child)
{
	expect("lk.posix", F_GETLK, 0, 10, F_WRLCK, parent);
	expect("lk.posix", F_GETLK, 20, 10, F_RDLCK, parent);
	expect("lk.posix", F_GETLK, 10, 10, F_UNLCK, 0);
	expect("lk.child", F_GETLK, 100, 50, F_WRLCK, child);
	expect("lk.child", F_GETLK, 0, 100, F_UNLCK, 0);
	expect("lk.ofd", F_OFD_GETLK, 0, 100, F_WRLCK, 0);
	expect("lk.ofd", F_OFD_GETLK, 200, 100, F_RDLCK, 0);
	expect("lk.ofd", F_OFD_GETLK, 100, 100, F_UNLCK, 0);
	if (!flock_held())
		fail("lk.flock is not locked");
}

static void in_new_process(void (*check)(pid_t, pid_t), pid_t a, pid_t b)
{
	int status;
	pid_t p = fork();
	if (p < 0)
		fail("fork checker");
	if (p == 0) {
		check(a, b);
		exit(0);
	}
	if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status))
		exit(1); /* the checker wrote the reason */
}

static void posix_unlocked(pid_t a, pid_t b)
{
	(void)a;
	(void)b;
	expect("lk.posix", F_GETLK, 0, 10, F_UNLCK, 0);
	expect("lk.ofd", F_OFD_GETLK, 0, 100, F_UNLCK, 0);
	if (flock_held())
		fail("lk.flock still locked after LOCK_UN");
}

/* The flock's line in our fdinfo names us, as flock(2) in this process would. */
static void flock_owner_is(int fd, pid_t pid)
{
	char p[64], line[256];
	int found = 0;
	FILE *f;
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	f = fopen(p, "r");
	if (!f)
		fail("fdinfo");
	while (fgets(line, sizeof(line), f)) {
		char kind[16], type[16];
		int owner;
		if (sscanf(line, "lock: %*d: %15s %*s %15s %d", kind, type, &owner) == 3 &&
		    !strcmp(kind, "FLOCK") && !strcmp(type, "WRITE") && owner == pid)
			found++;
	}
	fclose(f);
	if (found != 1)
		fail("no FLOCK WRITE line of pid %d in fd %d's fdinfo", pid, fd);
}

int main(int argc, char **argv)
{
	int posix, child_fd, ofd, fl, lease, brk, fd;
	struct sigaction sa = { .sa_sigaction = on_sigio, .sa_flags = SA_SIGINFO };
	pid_t child, me = getpid();
	int pipefd[2];
	char c;

	if (argc != 3)
		return 2;
	setsid(); /* a session of its own: restore recreates it (no --shell-job) */
	report = fopen(argv[1], "w");
	if (!report)
		return 2;
	setvbuf(report, NULL, _IOLBF, 0);
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	*strrchr(dir, '/') = 0;

	posix = open_file("lk.posix", O_RDWR);
	record(posix, F_SETLK, F_WRLCK, 0, 10, "posix write lock");
	record(posix, F_SETLK, F_RDLCK, 20, 10, "posix read lock");
	ofd = open_file("lk.ofd", O_RDWR);
	record(ofd, F_OFD_SETLK, F_WRLCK, 0, 100, "ofd write lock");
	record(ofd, F_OFD_SETLK, F_RDLCK, 200, 100, "ofd read lock");
	fl = open_file("lk.flock", O_RDWR);
	if (flock(fl, LOCK_EX | LOCK_NB))
		fail("flock");
	close(open_file("lk.lease", O_RDONLY));
	lease = open(path("lk.lease"), O_RDONLY);
	if (lease < 0 || fcntl(lease, F_SETLEASE, F_RDLCK))
		fail("read lease");

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGIO, &sa, NULL))
		fail("sigaction");
	brk = open_file("lk.break", O_WRONLY);
	break_fd = brk;
	if (fcntl(brk, F_SETLEASE, F_WRLCK) || fcntl(brk, F_SETSIG, SIGIO))
		fail("write lease");
	fd = open(path("lk.break"), O_RDONLY | O_NONBLOCK);
	if (fd >= 0 || errno != EWOULDBLOCK)
		fail("breaking the write lease did not give EWOULDBLOCK");
	while (!sigio_count)
		usleep(1000);

	if (pipe(pipefd))
		fail("pipe");
	child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		/* Shares lk.flock's description; locks a file of its own. */
		child_fd = open_file("lk.child", O_RDWR);
		record(child_fd, F_SETLK, F_WRLCK, 100, 0, "child's posix lock");
		write(pipefd[1], "r", 1);
		for (;;)
			pause();
	}
	if (read(pipefd[0], &c, 1) != 1)
		fail("child not ready");
	close(pipefd[0]);
	close(pipefd[1]);
	fprintf(report, "ready %d %d\n", me, child);

	while (access(argv[2], F_OK))
		usleep(10000);

	if (getpid() != me)
		fail("pid changed");
	in_new_process(check_from_outside, me, child);
	flock_owner_is(fl, me);
	if (fcntl(lease, F_GETLEASE) != F_RDLCK)
		fail("read lease is %d", fcntl(lease, F_GETLEASE));
	if (fcntl(brk, F_GETLEASE) != F_RDLCK)
		fail("lease being broken reports %d, not its target F_RDLCK", fcntl(brk, F_GETLEASE));
	if (sigio_count != 1 || sigio_bad_fd)
		fail("%d break signals (bad fd: %d): the restore sent one again", sigio_count, sigio_bad_fd);

	/* Our own locks still work: release them, see them gone, take them again. */
	record(posix, F_SETLK, F_UNLCK, 0, 10, "posix unlock");
	record(ofd, F_OFD_SETLK, F_UNLCK, 0, 100, "ofd unlock");
	if (flock(fl, LOCK_UN))
		fail("flock unlock");
	in_new_process(posix_unlocked, 0, 0);
	record(posix, F_SETLK, F_WRLCK, 0, 10, "posix relock");
	record(ofd, F_OFD_SETLK, F_WRLCK, 0, 100, "ofd relock");
	if (flock(fl, LOCK_EX | LOCK_NB))
		fail("flock relock");
	if (fcntl(lease, F_SETLEASE, F_UNLCK) || fcntl(lease, F_SETLEASE, F_RDLCK))
		fail("read lease release and retake");
	in_new_process(check_from_outside, me, child);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	fprintf(report, "ok\n");
	return 0;
}
