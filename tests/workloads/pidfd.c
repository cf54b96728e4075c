/* pidfds across a dump and restore (test pidfd_restore).
 *
 * Usage: pidfd MODE WORKDIR. Writes WORKDIR/report.
 * MODE "tree": the parent holds pidfds of
 *   - a live child A (PIDFD_NONBLOCK, also registered in an epoll), which holds an eventfd
 *     (counter 5) and a pidfd of its parent;
 *   - one of its own threads T (PIDFD_THREAD);
 *   - a child R that exited with 42 and was reaped (two pidfds, opened separately);
 *   - a child Z that exited with 3, left a zombie.
 * It reports "ready A T R Z", then waits for WORKDIR/go (made after the restore) and checks
 * every answer: "result ok" or "result FAIL <what>".
 * MODE "outside": holds a pidfd of pid 1 (not in its tree), reports "ready", sleeps.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Debian 12's headers predate these (Linux 6.9 / 6.13 / 6.15). */
#define PIDFD_THREAD O_EXCL
#define PIDFD_NONBLOCK O_NONBLOCK
struct pidfd_info_v0 {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define PIDFD_GET_INFO_V0 _IOWR(0xFF, 11, struct pidfd_info_v0)
#define PIDFD_INFO_EXIT (1ULL << 3)

static char report[4096];
static volatile pid_t usr1_tid;
static pid_t thread_tid;

static void say(const char *fmt, ...)
{
	FILE *f = fopen(report, "a");
	va_list ap;
	if (!f)
		exit(90);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static int pidfd_open(pid_t pid, unsigned flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

static int send_sig(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* The value of "key:" in /proc/self/fdinfo/FD, or LONG_MIN. */
static long fdinfo(int fd, const char *key)
{
	char path[64], line[256];
	long v = -99999;
	size_t n = strlen(key);
	FILE *f;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return v;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 0);
	fclose(f);
	return v;
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void on_usr1(int sig)
{
	(void)sig;
	usr1_tid = gettid();
}

static void *thread_main(void *arg)
{
	(void)arg;
	thread_tid = gettid();
	for (;;)
		pause();
	return NULL;
}

/* Child A: waits for SIGUSR2, then exits 0 when its pidfd of the parent is right. */
static void child_a(int parent_fd)
{
	sigset_t set;
	int sig;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int efd = eventfd(5, 0);
	if (efd != 10 && dup2(efd, 10) != 10)
		_exit(20);
	say("child-ready");
	while (sigwait(&set, &sig))
		;
	if (fdinfo(parent_fd, "Pid") != getppid())
		_exit(21);
	if (send_sig(parent_fd, 0))
		_exit(22);
	if (readable(parent_fd, 0))
		_exit(23);
	_exit(0);
}

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			say("result FAIL " __VA_ARGS__);                                     \
			return 1;                                                            \
		}                                                                            \
	} while (0)

static int check(int fa, int ep, int ft, int fr, int fr2, int fz, pid_t a, pid_t z)
{
	struct pidfd_info_v0 info;
	struct stat s1, s2;
	siginfo_t si;

	/* Live child: same target, flags kept, pidfd_getfd, signal, waitid. */
	CHECK(fdinfo(fa, "Pid") == a, "A Pid %ld", fdinfo(fa, "Pid"));
	CHECK(fcntl(fa, F_GETFL) & O_NONBLOCK, "A lost PIDFD_NONBLOCK");
	CHECK(!readable(fa, 0), "A reads as exited");
	int got = syscall(SYS_pidfd_getfd, fa, 10, 0);
	CHECK(got >= 0, "pidfd_getfd: %s", strerror(errno));
	CHECK(fdinfo(got, "eventfd-count") == 5, "A's eventfd count %ld", fdinfo(got, "eventfd-count"));
	memset(&si, 0, sizeof(si));
	CHECK(waitid(P_PIDFD, fa, &si, WEXITED) == -1 && errno == EAGAIN,
	      "waitid on a nonblocking pidfd of a live child did not say EAGAIN");
	CHECK(send_sig(fa, SIGUSR2) == 0, "pidfd_send_signal A: %s", strerror(errno));
	/* The epoll watches the restored pidfd, not a stand-in. */
	struct epoll_event ev;
	CHECK(epoll_wait(ep, &ev, 1, 10000) == 1 && ev.data.fd == fa, "epoll missed A's exit");
	CHECK(waitid(P_PIDFD, fa, &si, WEXITED) == 0, "waitid A: %s", strerror(errno));
	CHECK(si.si_pid == a && si.si_code == CLD_EXITED && si.si_status == 0,
	      "A ended with code %d status %d (its own check failed if CLD_EXITED)", si.si_code,
	      si.si_status);

	/* Thread: PIDFD_THREAD kept, a signal reaches that very thread. */
	CHECK(fcntl(ft, F_GETFL) & PIDFD_THREAD, "T lost PIDFD_THREAD");
	CHECK(fdinfo(ft, "Pid") == thread_tid, "T Pid %ld, want %d", fdinfo(ft, "Pid"), thread_tid);
	CHECK(send_sig(ft, SIGUSR1) == 0, "pidfd_send_signal T: %s", strerror(errno));
	for (int i = 0; i < 500 && !usr1_tid; i++)
		usleep(10000);
	CHECK(usr1_tid == thread_tid, "SIGUSR1 went to %d, not %d", usr1_tid, thread_tid);

	/* Reaped child: still exited, ESRCH, same exit status, one inode for both pidfds. */
	CHECK(fdinfo(fr, "Pid") == -1, "R Pid %ld", fdinfo(fr, "Pid"));
	CHECK(readable(fr, 0), "R not readable");
	CHECK(send_sig(fr, 0) == -1 && errno == ESRCH, "R signal: %s", strerror(errno));
	memset(&info, 0, sizeof(info));
	info.mask = PIDFD_INFO_EXIT;
	CHECK(ioctl(fr, PIDFD_GET_INFO_V0, &info) == 0, "PIDFD_GET_INFO R: %s", strerror(errno));
	CHECK((info.mask & PIDFD_INFO_EXIT) && info.exit_code == (42 << 8), "R exit %#x",
	      info.exit_code);
	CHECK(fstat(fr, &s1) == 0 && fstat(fr2, &s2) == 0 && s1.st_ino == s2.st_ino,
	      "R's two pidfds differ");

	/* Zombie: readable, reaped through its pidfd with its status. */
	CHECK(fdinfo(fz, "Pid") == z, "Z Pid %ld", fdinfo(fz, "Pid"));
	CHECK(readable(fz, 0), "Z not readable");
	memset(&si, 0, sizeof(si));
	CHECK(waitid(P_PIDFD, fz, &si, WEXITED) == 0, "waitid Z: %s", strerror(errno));
	CHECK(si.si_pid == z && si.si_code == CLD_EXITED && si.si_status == 3,
	      "Z ended with code %d status %d", si.si_code, si.si_status);
	CHECK(fdinfo(fz, "Pid") == -1, "Z still there after waitid");
	return 0;
}

int main(int argc, char **argv)
{
	char go[4096];
	sigset_t usr1;
	if (argc != 3)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[2]);
	snprintf(go, sizeof(go), "%s/go", argv[2]);
	/* Its own session: a restore without --shell-job recreates only sessions of the tree. */
	setsid();

	if (!strcmp(argv[1], "outside")) {
		int fd = pidfd_open(1, 0);
		if (fd < 0)
			return 3;
		say("ready %d", fd);
		for (;;)
			pause();
	}

	/* Only thread T takes SIGUSR1. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	signal(SIGUSR1, on_usr1);
	pthread_t th;
	if (pthread_create(&th, NULL, thread_main, NULL))
		return 4;
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	while (!thread_tid)
		usleep(1000);
	int ft = pidfd_open(thread_tid, PIDFD_THREAD);

	int self = pidfd_open(getpid(), 0);
	pid_t a = fork();
	if (a == 0)
		child_a(self);
	close(self);
	int fa = pidfd_open(a, PIDFD_NONBLOCK);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fa };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fa, &ev))
		return 6;

	pid_t r = fork();
	if (r == 0)
		_exit(42);
	int fr = pidfd_open(r, 0), fr2 = pidfd_open(r, PIDFD_NONBLOCK);
	waitpid(r, NULL, 0);

	pid_t z = fork();
	if (z == 0)
		_exit(3);
	int fz = pidfd_open(z, 0);
	if (ft < 0 || fa < 0 || fr < 0 || fr2 < 0 || fz < 0)
		return 5;
	readable(fz, 10000);

	say("ready %d %d %d %d", a, thread_tid, r, z);
	while (access(go, F_OK))
		usleep(20000);
	if (check(fa, ep, ft, fr, fr2, fz, a, z) == 0)
		say("result ok");
	for (;;)
		pause();
}
