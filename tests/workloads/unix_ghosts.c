/* Ghost unix sockets (their file unlinked or replaced) sharing a path with other files, for
 * the unix_ghosts test (the shapes of CRIU's zdtm del_standalone_un, fifo_upon_unix_socket00
 * and sk-unix01).
 *
 * 1. A stream listener L1 bound at DIR/sock, its file renamed aside; listener L2 bound at
 *    the same path (a client connected to it and accepted), then L1's file renamed back:
 *    L2 is a ghost while live L1 holds the path; a client waits in L1's accept queue.
 * 2. A datagram socket bound at DIR/fifo with a connected sender, its file unlinked and a
 *    FIFO made at the path, opened O_RDWR.
 * 3. A datagram socket bound at DIR/sub/g with a connected sender, its file unlinked and
 *    the directory DIR/sub removed.
 * Writes "ready" to REPORT, waits until GO exists (dumped, killed and restored meanwhile),
 * then checks every socket and file, writing "ok" or "FAIL <what>" lines.
 * Usage: unix_ghosts REPORT GO DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

static struct sockaddr_un addr_of(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		die("path too long");
	strcpy(a.sun_path, path);
	return a;
}

static int bound(int type, const char *path)
{
	struct sockaddr_un a = addr_of(path);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)))
		die(path);
	return s;
}

static int connected(int type, const char *path)
{
	struct sockaddr_un a = addr_of(path);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		die(path);
	return s;
}

/* One byte from `from` arrives at `to`. */
static void passes(int from, int to, const char *what)
{
	char c = 'x', r = 0;
	CHECK(send(from, &c, 1, 0) == 1, "%s: send", what);
	CHECK(recv(to, &r, 1, MSG_DONTWAIT) == 1 && r == 'x', "%s: recv", what);
}

/* getsockname of `fd` is `path`. */
static void named(int fd, const char *path, const char *what)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);
	CHECK(!getsockname(fd, (struct sockaddr *)&a, &len) && !strcmp(a.sun_path, path),
	      "%s: name", what);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	report = fopen(argv[1], "a");
	if (!report)
		return 2;
	const char *go = argv[2], *dir = argv[3];
	char sock[256], aside[256], fifo[256], sub[256], g[256];
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(aside, sizeof(aside), "%s/aside", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(g, sizeof(g), "%s/sub/g", dir);

	/* 1. */
	int l1 = bound(SOCK_STREAM, sock);
	if (listen(l1, 4) || rename(sock, aside))
		die("listen/rename l1");
	int l2 = bound(SOCK_STREAM, sock);
	if (listen(l2, 4))
		die("listen l2");
	int c2 = connected(SOCK_STREAM, sock);
	int a2 = accept(l2, NULL, NULL);
	if (a2 < 0 || rename(aside, sock))
		die("accept/rename back");
	int p1 = connected(SOCK_STREAM, sock);
	struct stat l1st;
	if (stat(sock, &l1st))
		die("stat l1");

	/* 2. */
	int d1 = bound(SOCK_DGRAM, fifo);
	int d2 = connected(SOCK_DGRAM, fifo);
	if (unlink(fifo) || mkfifo(fifo, 0600))
		die("fifo");
	int ff = open(fifo, O_RDWR);
	if (ff < 0)
		die("open fifo");

	/* 3. */
	if (mkdir(sub, 0700))
		die("mkdir sub");
	int g1 = bound(SOCK_DGRAM, g);
	int g2 = connected(SOCK_DGRAM, g);
	if (unlink(g) || rmdir(sub))
		die("unlink/rmdir sub");

	fprintf(report, "ready\n");
	fflush(report);
	while (access(go, F_OK))
		usleep(10000);

	/* 1: both listeners named, the path is L1's, c2-a2 connected, p1 waits for L1. */
	named(l1, sock, "live listener");
	named(l2, sock, "ghost listener");
	passes(c2, a2, "client of the ghost listener");
	passes(a2, c2, "accepted from the ghost listener");
	fcntl(l1, F_SETFL, O_NONBLOCK);
	int ap1 = accept(l1, NULL, NULL);
	CHECK(ap1 >= 0, "pending connection of the live listener");
	if (ap1 >= 0)
		passes(p1, ap1, "pending connection, accepted after restore");
	struct stat st;
	CHECK(!stat(sock, &st) && S_ISSOCK(st.st_mode), "socket file at %s", sock);
	int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = addr_of(sock);
	CHECK(!connect(c3, (struct sockaddr *)&sa, sizeof(sa)), "connect to the path");
	int a3 = accept(l1, NULL, NULL);
	CHECK(a3 >= 0, "the path reaches the live listener");
	fcntl(l2, F_SETFL, O_NONBLOCK);
	CHECK(accept(l2, NULL, NULL) < 0 && errno == EAGAIN, "the ghost listener has no client");

	/* 2: the datagram pair works, the FIFO at the path is the one held open. */
	passes(d2, d1, "datagram to the ghost under the FIFO");
	CHECK(!stat(fifo, &st) && S_ISFIFO(st.st_mode), "FIFO at %s", fifo);
	char c = 'f', r = 0;
	CHECK(write(ff, &c, 1) == 1 && read(ff, &r, 1) == 1 && r == 'f', "FIFO round trip");
	int ff2 = open(fifo, O_RDWR | O_NONBLOCK);
	CHECK(ff2 >= 0 && write(ff2, &c, 1) == 1 && read(ff, &r, 1) == 1,
	      "the FIFO at the path is the one held open");

	/* 3: the datagram pair works, the directory is gone again. */
	passes(g2, g1, "datagram to the ghost of a removed directory");
	CHECK(access(sub, F_OK) && errno == ENOENT, "%s is gone", sub);

	fprintf(report, failures ? "FAIL\n" : "ok\n");
	fflush(report);
	return failures ? 1 : 0;
}
