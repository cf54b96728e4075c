/* A memcached client over one unix-socket connection, kept open across a dump and restore.
 * Each round reads key "c<ID>" (it must hold the previous round's number, stored maybe
 * before the dump), sets it to the round number and increments a shared counter "hits",
 * checking every answer; every 20 rounds it appends "<ID> <round>
 * ok" to REPORT, or "FAIL ..." and exits 1 at the first wrong answer.
 * Usage: mc_client SOCKET ID REPORT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static FILE *report;
static int id;

static void fail(const char *what, const char *got)
{
	fprintf(report, "FAIL client %d: %s: '%s' (errno %d)\n", id, what, got ? got : "", errno);
	fflush(report);
	exit(1);
}

/* Sends req and reads until the answer ends with end (or fails). */
static void ask(int fd, const char *req, const char *end, char *buf, size_t cap)
{
	size_t len = strlen(req), have = 0;
	while (len) {
		ssize_t n = write(fd, req, len);
		if (n <= 0) {
			if (errno == EINTR)
				continue;
			fail("write", req);
		}
		req += n;
		len -= n;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, cap - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail("read", buf);
		have += n;
		buf[have] = 0;
		if (have >= strlen(end) && !strcmp(buf + have - strlen(end), end))
			return;
		if (have == cap - 1)
			fail("answer too long", buf);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	id = atoi(argv[2]);
	report = fopen(argv[3], "a");
	if (!report)
		return 2;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strncpy(a.sun_path, argv[1], sizeof(a.sun_path) - 1);
	int fd = -1;
	for (int tries = 0; tries < 500; tries++) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (!connect(fd, (struct sockaddr *)&a, sizeof(a)))
			break;
		close(fd);
		fd = -1;
		usleep(10000);
	}
	if (fd < 0)
		fail("connect", argv[1]);
	char buf[512], req[128], want[128];
	for (long round = 1;; round++) {
		char val[32], prev[32];
		int vlen = snprintf(val, sizeof(val), "%ld", round);
		int plen = snprintf(prev, sizeof(prev), "%ld", round - 1);
		/* What the previous round stored, maybe before the dump. */
		snprintf(req, sizeof(req), "get c%d\r\n", id);
		ask(fd, req, "END\r\n", buf, sizeof(buf));
		if (round == 1)
			snprintf(want, sizeof(want), "END\r\n");
		else
			snprintf(want, sizeof(want), "VALUE c%d 0 %d\r\n%s\r\nEND\r\n", id, plen, prev);
		if (strcmp(buf, want))
			fail("get of the previous round's value", buf);
		snprintf(req, sizeof(req), "set c%d 0 0 %d\r\n%s\r\n", id, vlen, val);
		ask(fd, req, "\r\n", buf, sizeof(buf));
		if (strcmp(buf, "STORED\r\n"))
			fail("set", buf);
		ask(fd, "incr hits 1\r\n", "\r\n", buf, sizeof(buf));
		if (!strncmp(buf, "NOT_FOUND", 9)) {
			ask(fd, "add hits 0 0 1\r\n0\r\n", "\r\n", buf, sizeof(buf));
			ask(fd, "incr hits 1\r\n", "\r\n", buf, sizeof(buf));
		}
		if (buf[0] < '0' || buf[0] > '9')
			fail("incr", buf);
		if (round % 20 == 0) {
			fprintf(report, "%d %ld ok\n", id, round);
			fflush(report);
		}
		usleep(2000);
	}
}
