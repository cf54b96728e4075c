/* Unix sockets whose peers are outside the dumped tree, for the unix_external test (the
 * test process holds the peers): a datagram socket connected to the test's socket bound at
 * DGRAM_PATH (--ext-unix-sk), and a stream socket connected to the test's listener at
 * STREAM_PATH, its accepted end writing "q" into it (--external unix[INO]).
 * Sends "before" on the datagram socket, writes "ready INO" (INO: the stream socket's
 * inode) to REPORT, waits until GO exists (dumped, killed, restored meanwhile), then checks:
 * the datagram socket is connected to DGRAM_PATH again and sends "after"; the stream
 * socket holds "q", then ends (its peer could not come back), writes fail with EPIPE.
 * Writes "ok" or "FAIL <what>" lines. Usage: unix_external REPORT GO DGRAM_PATH STREAM_PATH */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
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

static int connected(int type, const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(report, "FAIL setup: connect %s: %s\n", path, strerror(errno));
		fflush(report);
		exit(2);
	}
	return s;
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	report = fopen(argv[1], "a");
	if (!report)
		return 2;
	const char *go = argv[2], *dpath = argv[3], *spath = argv[4];
	signal(SIGPIPE, SIG_IGN);
	int d = connected(SOCK_DGRAM, dpath);
	int s = connected(SOCK_STREAM, spath);
	struct stat st;
	if (send(d, "before", 6, 0) != 6 || fstat(s, &st))
		return 2;
	fprintf(report, "ready %lu\n", (unsigned long)st.st_ino);
	fflush(report);
	while (access(go, F_OK))
		usleep(10000);

	struct sockaddr_un a;
	socklen_t len = sizeof(a);
	CHECK(!getpeername(d, (struct sockaddr *)&a, &len) && !strcmp(a.sun_path, dpath),
	      "datagram socket connected to %s again", dpath);
	CHECK(send(d, "after", 5, 0) == 5, "send on the datagram socket");
	char buf[8] = { 0 };
	CHECK(recv(s, buf, sizeof(buf), MSG_DONTWAIT) == 1 && buf[0] == 'q', "stream queue");
	CHECK(recv(s, buf, sizeof(buf), MSG_DONTWAIT) == 0, "stream ends after its queue");
	CHECK(send(s, "x", 1, 0) < 0 && errno == EPIPE, "stream write fails with EPIPE");
	fprintf(report, failures ? "FAIL\n" : "ok\n");
	fflush(report);
	return failures ? 1 : 0;
}
