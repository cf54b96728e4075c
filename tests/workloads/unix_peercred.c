/*
 * SO_PEERCRED and SO_PEERPIDFD of unix sockets across a dump and restore.
 *
 * Usage: unix_peercred REPORT GO
 *
 * P (root) makes a socketpair shared with its child A, and an abstract listener. A turns
 * into uid 1001 / gid 2001, makes a socketpair shared with its child B, and connects
 * twice to P's listener: P accepts the first connection before the dump, the second one
 * waits in the listener's queue and is accepted after the restore. Every task records
 * what the kernel names as each socket's peer (pid, uid, gid; the pid of the
 * SO_PEERPIDFD pidfd from its fdinfo), checks it against what the kernel must answer
 * (both socketpair ends: the task that called socketpair; an accepted connection: the
 * task that connected; the connecting end: the task that called listen), writes
 * "ready" (P, once all are set up), waits for the file GO (P; then it wakes A and B
 * through pipes), checks again and writes "ok NAME" or "FAIL ..." lines; P writes "end"
 * once its children have exited.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static int report = -1;
static int failures;

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(report, buf, n) != n)
		_exit(3);
}

static void die(const char *what)
{
	say("FAIL setup: %s: %s\n", what, strerror(errno));
	_exit(2);
}

/* The pid a pidfd names ("Pid:" of its fdinfo; -1 for an exited process). */
static int pidfd_pid(int pidfd)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1000;
	int pid = -1000;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

/* The socket's peer as the kernel reports it, checked against the expected one. */
static void check(const char *who, const char *what, int fd, int pid, int uid, int gid)
{
	struct ucred c;
	socklen_t len = sizeof(c);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len)) {
		say("FAIL %s %s: SO_PEERCRED: %s\n", who, what, strerror(errno));
		failures++;
		return;
	}
	int pidfd;
	len = sizeof(pidfd);
	int ppid = -2000;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		ppid = pidfd_pid(pidfd);
		close(pidfd);
	}
	if ((int)c.pid != pid || (int)c.uid != uid || (int)c.gid != gid || ppid != pid) {
		say("FAIL %s %s: peer pid %d uid %d gid %d pidfd pid %d, want pid %d uid %d gid %d\n",
		    who, what, c.pid, c.uid, c.gid, ppid, pid, uid, gid);
		failures++;
	}
}

static void wait_byte(int fd)
{
	char b;
	while (read(fd, &b, 1) != 1)
		if (errno != EINTR)
			die("read (wake-up pipe)");
}

static void post(int fd)
{
	if (write(fd, "x", 1) != 1)
		die("write (pipe)");
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	report = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (report < 0)
		return 2;
	const char *go = argv[2];
	int p = getpid();
	int sp0[2], ready[2], wake_a[2], wake_b[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp0) || pipe(ready) || pipe(wake_a) ||
	    pipe(wake_b))
		die("socketpair/pipe");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int alen = offsetof(struct sockaddr_un, sun_path) + 1 +
		   snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "criu-rs-peercred-%d", p);
	int lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&addr, alen) || listen(lsk, 8))
		die("listener");

	int a = fork();
	if (a < 0)
		die("fork A");
	if (a == 0) {
		close(sp0[0]);
		close(lsk);
		if (setresgid(2001, 2001, 2001) || setresuid(1001, 1001, 1001))
			die("setresuid (A)");
		int me = getpid(), sp1[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp1))
			die("socketpair (A)");
		int b = fork();
		if (b < 0)
			die("fork B");
		if (b == 0) {
			close(sp1[0]);
			check("B", "socketpair of A", sp1[1], me, 1001, 2001);
			post(ready[1]);
			wait_byte(wake_b[0]);
			check("B", "socketpair of A", sp1[1], me, 1001, 2001);
			say(failures ? "FAIL B\n" : "ok B\n");
			_exit(failures != 0);
		}
		close(sp1[1]);
		int c1 = socket(AF_UNIX, SOCK_STREAM, 0), c2 = socket(AF_UNIX, SOCK_STREAM, 0);
		if (c1 < 0 || c2 < 0 || connect(c1, (struct sockaddr *)&addr, alen) ||
		    connect(c2, (struct sockaddr *)&addr, alen))
			die("connect (A)");
		check("A", "socketpair of P", sp0[1], p, 0, 0);
		check("A", "own socketpair", sp1[0], me, 1001, 2001);
		check("A", "accepted connection", c1, p, 0, 0);
		check("A", "pending connection", c2, p, 0, 0);
		post(ready[1]);
		wait_byte(wake_a[0]);
		check("A", "socketpair of P", sp0[1], p, 0, 0);
		check("A", "own socketpair", sp1[0], me, 1001, 2001);
		check("A", "accepted connection", c1, p, 0, 0);
		check("A", "pending connection", c2, p, 0, 0);
		if (write(c2, "hi", 2) != 2)
			die("write (A, pending connection)");
		int st;
		if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st))
			failures++;
		say(failures ? "FAIL A\n" : "ok A\n");
		_exit(failures != 0);
	}
	close(sp0[1]);
	wait_byte(ready[0]);
	wait_byte(ready[0]);
	int s1 = accept(lsk, NULL, NULL);
	if (s1 < 0)
		die("accept");
	check("P", "own socketpair", sp0[0], p, 0, 0);
	check("P", "accepted connection", s1, a, 1001, 2001);
	check("P", "listener", lsk, p, 0, 0);
	say("ready\n");
	while (access(go, F_OK))
		usleep(10000);
	check("P", "own socketpair", sp0[0], p, 0, 0);
	check("P", "accepted connection", s1, a, 1001, 2001);
	check("P", "listener", lsk, p, 0, 0);
	post(wake_b[1]);
	post(wake_a[1]);
	int s2 = accept(lsk, NULL, NULL);
	if (s2 < 0)
		die("accept (after restore)");
	check("P", "connection accepted after restore", s2, a, 1001, 2001);
	char buf[2];
	if (read(s2, buf, 2) != 2 || memcmp(buf, "hi", 2))
		say("FAIL P: no data on the connection accepted after restore\n"), failures++;
	int st;
	if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st))
		failures++;
	say(failures ? "FAIL P\n" : "ok P\n");
	say("end\n");
	return failures != 0;
}
