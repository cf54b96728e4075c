/* Unix sockets with data in flight, for the unix_sockets test.
 *
 * Sets up stream, datagram and seqpacket socketpairs (one end in a child), a path-bound
 * stream server with an accepted connection and a pending one, an abstract datagram
 * server with named and unnamed senders, a datagram socket whose file was unlinked (a
 * ghost, another file now at its path), a socket bound to a relative name, options, a shutdown and O_NONBLOCK; queues data
 * everywhere, writes "ready" to REPORT, then waits until the file GO exists (the test
 * dumps, kills and restores it meanwhile). Then it checks every queue, name, option and
 * state against what it set, and writes "ok" or "FAIL <what>" lines, and exits 0 when all
 * passed. Usage: unix_sockets REPORT GO DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#define SO_PASSRIGHTS_ 83

static FILE *report;
static int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(report, "FAIL ");
	vfprintf(report, fmt, ap);
	fprintf(report, " (errno %d)\n", errno);
	va_end(ap);
	fflush(report);
	failures++;
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static void die(const char *what)
{
	fprintf(report, "FAIL setup: %s: %s\n", what, strerror(errno));
	fflush(report);
	exit(2);
}

/* Receives one message and compares it with want (len bytes). */
static void expect_msg(int fd, const char *what, const char *want, size_t len)
{
	static char buf[1 << 17];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == (ssize_t)len && memcmp(buf, want, len) == 0,
	      "%s: got %zd bytes, want %zu", what, n, len);
}

static void expect_empty(int fd, const char *what)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
	CHECK(n < 0 && errno == EAGAIN, "%s: queue not empty after the expected data (%zd)", what, n);
}

static socklen_t sun_of(struct sockaddr_un *a, const char *name, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (abstract) {
		strncpy(a->sun_path + 1, name, sizeof(a->sun_path) - 2);
		return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
	}
	strncpy(a->sun_path, name, sizeof(a->sun_path) - 1);
	return sizeof(*a);
}

static int opt(int fd, int name)
{
	int v = -100;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, name, &v, &l))
		return -200;
	return v;
}

/* Datagram of n bytes of pattern c. */
static char big[70000];

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	report = fopen(argv[1], "a");
	if (!report)
		return 2;
	const char *go = argv[2], *dir = argv[3];
	signal(SIGPIPE, SIG_IGN);
	memset(big, 'z', sizeof(big));

	/* 1. stream socketpair, one end in a child; datagram socketpair likewise. */
	int sp[2], dpc[2], ready[2], shp[2], step[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dpc) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, shp) || pipe(ready) ||
	    pipe(step))
		die("socketpair");
	/* The child's message to sp[0] carries its credentials (SCM_CREDENTIALS). */
	int on = 1;
	if (setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)))
		die("SO_PASSCRED");
	/* The child's datagram to dpc[0] makes an SCM_PIDFD of the child on receipt. */
	int have_scm_pidfd = !setsockopt(dpc[0], SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on));
	if (send(sp[0], "p2c:1", 5, 0) != 5 || send(sp[0], "p2c:2", 5, 0) != 5 ||
	    send(dpc[0], "dg-to-child", 11, 0) != 11)
		die("send to child");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(sp[0]);
		close(dpc[0]);
		if (send(sp[1], "c2p", 3, 0) != 3 || send(dpc[1], "pidfd-msg", 9, 0) != 9)
			die("child send");
		if (write(ready[1], "r", 1) != 1)
			die("child ready");
		while (access(go, F_OK))
			usleep(10000);
		char buf[16] = { 0 };
		/* Stream: no boundaries, the bytes in order. */
		ssize_t n = recv(sp[1], buf, 10, MSG_WAITALL);
		CHECK(n == 10 && !memcmp(buf, "p2c:1p2c:2", 10), "child stream data: %zd '%s'", n, buf);
		expect_msg(dpc[1], "child datagram", "dg-to-child", 11);
		/* Only once the parent read "c2p": a stream glues writes with the same credentials. */
		CHECK(read(step[0], buf, 1) == 1, "child waiting for the parent's read");
		CHECK(send(sp[1], "after", 5, 0) == 5, "child send after restore");
		/* shp[0] is shared with the parent: the same socket in both tasks. */
		CHECK(send(shp[0], "shared", 6, 0) == 6, "child send on the shared socket");
		fflush(report);
		_exit(failures ? 1 : 0);
	}
	close(sp[1]);
	close(dpc[1]);

	/* 2. datagram and seqpacket socketpairs in this process. */
	int dp[2], qp[2], sh[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, qp) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sh))
		die("socketpairs");
	if (send(dp[0], "d1", 2, 0) != 2 || send(dp[0], "", 0, 0) != 0 ||
	    send(dp[0], big, sizeof(big), 0) != sizeof(big) || send(dp[0], "d4", 2, 0) != 2)
		die("datagrams");
	if (send(qp[0], "rec-a", 5, 0) != 5 || send(qp[0], "rec-bb", 6, 0) != 6 ||
	    send(qp[1], "rec-back", 8, 0) != 8)
		die("seqpacket");
	if (send(sh[0], "bye", 3, 0) != 3 || shutdown(sh[0], SHUT_WR))
		die("shutdown");

	/* 3. path-bound stream server: an accepted connection and a pending one. */
	char path[108];
	snprintf(path, sizeof(path), "%s/srv.sock", dir);
	struct sockaddr_un a;
	socklen_t alen = sun_of(&a, path, 0);
	int lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&a, alen) || listen(lsk, 5) || chmod(path, 0640))
		die("server");
	int c1 = socket(AF_UNIX, SOCK_STREAM, 0), c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c1, (struct sockaddr *)&a, alen))
		die("connect c1");
	int a1 = accept(lsk, NULL, NULL);
	if (a1 < 0 || connect(c2, (struct sockaddr *)&a, alen))
		die("accept/connect c2");
	if (send(c1, "hello-a1", 8, 0) != 8 || send(a1, "hi-c1", 5, 0) != 5)
		die("server data");

	/* 4. abstract datagram server, named and unnamed senders. */
	char dname[64], s1name[64];
	snprintf(dname, sizeof(dname), "criu-rs-test-%d-d", getpid());
	snprintf(s1name, sizeof(s1name), "criu-rs-test-%d-s1", getpid());
	struct sockaddr_un da, s1a;
	socklen_t dalen = sun_of(&da, dname, 1), s1len = sun_of(&s1a, s1name, 1);
	int dsrv = socket(AF_UNIX, SOCK_DGRAM, 0), s1 = socket(AF_UNIX, SOCK_DGRAM, 0),
	    s2 = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(dsrv, (struct sockaddr *)&da, dalen) || bind(s1, (struct sockaddr *)&s1a, s1len))
		die("abstract binds");
	if (sendto(s1, "m1", 2, 0, (struct sockaddr *)&da, dalen) != 2 ||
	    sendto(s2, "m2", 2, 0, (struct sockaddr *)&da, dalen) != 2 ||
	    sendto(s1, "m3", 2, 0, (struct sockaddr *)&da, dalen) != 2)
		die("abstract sends");

	/* 4b. a path datagram socket whose file was unlinked (a ghost), with a connected client
	 * and queued data; a regular file now sits at its path. */
	char gpath[108];
	snprintf(gpath, sizeof(gpath), "%s/ghost.sock", dir);
	struct sockaddr_un ga;
	socklen_t galen = sun_of(&ga, gpath, 0);
	int gsrv = socket(AF_UNIX, SOCK_DGRAM, 0), gcli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(gsrv, (struct sockaddr *)&ga, galen) || connect(gcli, (struct sockaddr *)&ga, galen) ||
	    send(gcli, "g1", 2, 0) != 2 || unlink(gpath))
		die("ghost");
	int other = open(gpath, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (other < 0 || write(other, "not a socket", 12) != 12 || close(other))
		die("file at the ghost's path");

	/* 4c. a datagram socket bound to a relative name (from DIR, made the cwd), with a
	 * message queued by a client connected by that name. */
	struct sockaddr_un ra;
	socklen_t ralen = sun_of(&ra, "rel.sock", 0);
	int rsrv = socket(AF_UNIX, SOCK_DGRAM, 0), rcli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (chdir(dir) || bind(rsrv, (struct sockaddr *)&ra, ralen) ||
	    connect(rcli, (struct sockaddr *)&ra, ralen) || send(rcli, "r1", 2, 0) != 2)
		die("relative name");

	/* 5. options and flags, recorded as the kernel reports them. */
	int one = 1, five = 5, seven = 7, low = 3, zero = 0, rcv = 65536;
	struct timeval tmo = { 3, 500000 };
	if (setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_PRIORITY, &five, sizeof(five)) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_MARK, &seven, sizeof(seven)) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_RCVLOWAT, &low, sizeof(low)) ||
	    setsockopt(dp[1], SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) ||
	    setsockopt(dp[0], SOL_SOCKET, SO_PASSSEC, &one, sizeof(one)) ||
	    fcntl(qp[1], F_SETFL, O_NONBLOCK) || fcntl(sp[0], F_SETOWN, getpid()))
		die("options");
	/* One socket behind two fds of this process. */
	int a1dup = dup(a1);
	if (a1dup < 0)
		die("dup");
	int have_pidfd = !setsockopt(dsrv, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof(one));
	int have_rights = !setsockopt(qp[1], SOL_SOCKET, SO_PASSRIGHTS_, &zero, sizeof(zero));
	int rcvbuf = opt(sp[0], SO_RCVBUF), sndbuf = opt(sp[0], SO_SNDBUF);

	char got;
	if (read(ready[0], &got, 1) != 1)
		die("child not ready");
	fprintf(report, "ready\n");
	fflush(report);
	while (access(go, F_OK))
		usleep(10000);

	/* Queues, boundaries, senders. */
	if (have_scm_pidfd) {
		/* The pidfd received with the child's datagram names the restored child. */
		char buf[16] = { 0 }, cbuf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(dpc[0], &mh, MSG_DONTWAIT);
		CHECK(n == 9 && !memcmp(buf, "pidfd-msg", 9), "child's datagram: %zd", n);
		int pidfd = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == 4 /* SCM_PIDFD */)
				memcpy(&pidfd, CMSG_DATA(c), sizeof(int));
		char path[64], info[512] = { 0 };
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
		FILE *f = pidfd >= 0 ? fopen(path, "r") : NULL;
		if (f) {
			size_t r = fread(info, 1, sizeof(info) - 1, f);
			info[r] = 0;
			fclose(f);
		}
		char want[32];
		snprintf(want, sizeof(want), "\nPid:\t%d\n", child);
		CHECK(pidfd >= 0 && strstr(info, want), "SCM_PIDFD of the child (fd %d): %s", pidfd, info);
	}
	{
		/* The child's message, with the child's credentials. */
		char buf[8] = { 0 }, cbuf[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(sp[0], &mh, MSG_DONTWAIT);
		CHECK(n == 3 && !memcmp(buf, "c2p", 3), "stream from child: %zd", n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		struct ucred uc = { 0 };
		if (c && c->cmsg_type == SCM_CREDENTIALS)
			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
		CHECK(uc.pid == child && uc.uid == getuid() && uc.gid == getgid(),
		      "child's credentials: pid %d (child %d) uid %u gid %u", uc.pid, child, uc.uid, uc.gid);
	}
	CHECK(write(step[1], "s", 1) == 1, "letting the child send again");
	expect_msg(dp[1], "datagram 1", "d1", 2);
	expect_msg(dp[1], "datagram 2 (empty)", "", 0);
	expect_msg(dp[1], "datagram 3 (70000 bytes)", big, sizeof(big));
	expect_msg(dp[1], "datagram 4", "d4", 2);
	expect_empty(dp[1], "datagram pair");
	expect_msg(qp[1], "record a", "rec-a", 5);
	expect_msg(qp[1], "record bb", "rec-bb", 6);
	expect_msg(qp[0], "record back", "rec-back", 8);
	expect_msg(sh[1], "data before shutdown", "bye", 3);
	{
		char c;
		CHECK(recv(sh[1], &c, 1, MSG_DONTWAIT) == 0, "EOF after the peer's SHUT_WR");
		CHECK(send(sh[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "send after SHUT_WR");
	}
	expect_msg(a1, "accepted connection", "hello-a1", 8);
	expect_msg(c1, "client", "hi-c1", 5);
	for (int i = 1; i <= 3; i++) {
		char buf[8] = { 0 };
		struct sockaddr_un from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(dsrv, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		char want[3] = { 'm', (char)('0' + i), 0 };
		CHECK(n == 2 && !strcmp(buf, want), "abstract datagram %d: %zd '%s'", i, n, buf);
		if (i == 2)
			CHECK(flen <= sizeof(sa_family_t), "unnamed sender: address length %u", flen);
		else
			CHECK(flen == s1len && !memcmp(&from, &s1a, s1len), "datagram %d: sender name (len %u)", i, flen);
	}

	/* The ghost: its queue, its connected client, its name; the other file untouched. */
	expect_msg(gsrv, "ghost's queue", "g1", 2);
	CHECK(send(gcli, "g2", 2, 0) == 2, "send to the ghost");
	expect_msg(gsrv, "ghost after restore", "g2", 2);
	{
		struct sockaddr_un gn;
		socklen_t gl = sizeof(gn);
		CHECK(!getsockname(gsrv, (struct sockaddr *)&gn, &gl) && !strcmp(gn.sun_path, gpath), "ghost's name");
		struct stat gs;
		CHECK(!lstat(gpath, &gs) && S_ISREG(gs.st_mode) && gs.st_size == 12, "the file at the ghost's path");
	}

	/* The relative name. */
	expect_msg(rsrv, "relative socket's queue", "r1", 2);
	CHECK(send(rcli, "r2", 2, 0) == 2, "send to the relative socket");
	expect_msg(rsrv, "relative socket after restore", "r2", 2);
	{
		struct sockaddr_un rn;
		socklen_t rl = sizeof(rn);
		CHECK(!getsockname(rsrv, (struct sockaddr *)&rn, &rl) && !strcmp(rn.sun_path, "rel.sock"),
		      "relative name kept: %s", rn.sun_path);
	}

	/* Names. */
	struct sockaddr_un n1;
	socklen_t n1len = sizeof(n1);
	CHECK(!getsockname(a1, (struct sockaddr *)&n1, &n1len) && !strcmp(n1.sun_path, path), "accepted socket's name");
	n1len = sizeof(n1);
	CHECK(!getpeername(c1, (struct sockaddr *)&n1, &n1len) && !strcmp(n1.sun_path, path), "client's peer name");
	n1len = sizeof(n1);
	CHECK(!getsockname(dsrv, (struct sockaddr *)&n1, &n1len) && n1len == dalen && !memcmp(&n1, &da, dalen), "abstract name");
	struct stat st;
	CHECK(!stat(path, &st) && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0640, "socket file mode %o", st.st_mode);

	/* Options and flags. */
	CHECK(opt(sp[0], SO_PASSCRED) == 1, "SO_PASSCRED");
	CHECK(opt(sp[0], SO_RCVBUF) == rcvbuf, "SO_RCVBUF %d, was %d", opt(sp[0], SO_RCVBUF), rcvbuf);
	CHECK(opt(sp[0], SO_SNDBUF) == sndbuf, "SO_SNDBUF %d, was %d", opt(sp[0], SO_SNDBUF), sndbuf);
	CHECK(opt(sp[0], SO_PRIORITY) == 5, "SO_PRIORITY");
	CHECK(opt(sp[0], SO_MARK) == 7, "SO_MARK");
	CHECK(opt(sp[0], SO_RCVLOWAT) == 3, "SO_RCVLOWAT");
	CHECK(opt(dp[1], SO_PEEK_OFF) >= 0, "SO_PEEK_OFF enabled");
	CHECK(opt(dp[0], SO_PEEK_OFF) == -1, "SO_PEEK_OFF disabled");
	if (have_pidfd)
		CHECK(opt(dsrv, SO_PASSPIDFD) == 1, "SO_PASSPIDFD");
	if (have_rights)
		CHECK(opt(qp[1], SO_PASSRIGHTS_) == 0, "SO_PASSRIGHTS");
	{
		struct timeval t;
		socklen_t l = sizeof(t);
		CHECK(!getsockopt(sp[0], SOL_SOCKET, SO_SNDTIMEO, &t, &l) && t.tv_sec == 3 && t.tv_usec == 500000, "SO_SNDTIMEO");
	}
	CHECK(fcntl(qp[1], F_GETFL) & O_NONBLOCK, "O_NONBLOCK");
	CHECK(opt(dp[0], SO_PASSSEC) == 1, "SO_PASSSEC");
	CHECK(fcntl(sp[0], F_GETOWN) == getpid(), "F_SETOWN owner %d", fcntl(sp[0], F_GETOWN));
	{
		struct stat x, y;
		CHECK(!fstat(a1, &x) && !fstat(a1dup, &y) && x.st_ino == y.st_ino, "two fds, one socket");
		CHECK(send(a1dup, "via-dup", 7, 0) == 7, "send through the second fd");
		expect_msg(c1, "data sent through the second fd", "via-dup", 7);
	}
	CHECK(!(fcntl(qp[0], F_GETFL) & O_NONBLOCK), "blocking end");

	/* The pending connection is accepted now and carries data sent after the restore. */
	CHECK(send(c2, "late", 4, 0) == 4, "pending client send");
	int a2 = accept4(lsk, NULL, NULL, SOCK_NONBLOCK);
	CHECK(a2 >= 0, "accept of the pending connection");
	if (a2 >= 0) {
		usleep(1000);
		expect_msg(a2, "pending connection's data", "late", 4);
	}
	/* A new connection works too. */
	int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(!connect(c3, (struct sockaddr *)&a, alen), "new connection to the server");

	/* The child. */
	int status = 0;
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "child status %#x", status);
	{
		char buf[8] = { 0 };
		ssize_t n = recv(sp[0], buf, 5, MSG_WAITALL);
		CHECK(n == 5 && !memcmp(buf, "after", 5), "child's data after restore: %zd", n);
		expect_msg(shp[1], "message through the socket both tasks hold", "shared", 6);
		CHECK(send(shp[0], "parent-too", 10, 0) == 10, "parent send on the shared socket");
		expect_msg(shp[1], "the parent's message on the shared socket", "parent-too", 10);
	}
	fprintf(report, failures ? "done failures=%d\n" : "ok\n", failures);
	fflush(report);
	return failures ? 1 : 0;
}
