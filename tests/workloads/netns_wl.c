/* A tree root in a network namespace of its own (test `netns`).
 *
 * argv: REPORT TRIGGER. It unshares its network namespace and reports "ns PID"; the test
 * then sets the namespace up (loopback up with an extra address, a veth end with addresses
 * and a route) and writes one byte to TRIGGER. It makes a unix socketpair with "hello"
 * queued, a TCP listener and a UDP socket on port 7000/7001 of every address, a loopback
 * TCP connection to its own listener, and reports "ready". It then serves: each TCP
 * connection gets "tcp:" + what it sent, each datagram "udp:" + itself. When TRIGGER holds
 * two bytes (after the restore) it checks the socketpair both ways, the loopback
 * connection both ways, new connections to 127.0.0.1 and to the extra loopback address
 * 10.99.0.1, and a connection out over the veth to the test's listener at 10.77.0.1:7100;
 * it reports "ok" or "fail: why", and serves on. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *report;

static void say(const char *fmt, ...)
{
	FILE *f = fopen(report, "a");
	va_list ap;

	if (!f)
		exit(2);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static long trigger_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_size;
}

static int bound(int type, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, type, 0), one = 1;

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (void *)&a, sizeof(a)))
		return -1;
	if (type == SOCK_STREAM && listen(s, 16))
		return -1;
	return s;
}

static int connect_to(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, ip, &a.sin_addr);
	if (s < 0 || connect(s, (void *)&a, sizeof(a))) {
		if (s >= 0)
			close(s);
		return -1;
	}
	return s;
}

/* Writes `msg` on `a` and expects it on `b`. */
static int carries(int a, int b, const char *msg)
{
	char buf[64] = {};
	size_t n = strlen(msg);

	if (write(a, msg, n) != (ssize_t)n)
		return 0;
	return read(b, buf, sizeof(buf) - 1) == (ssize_t)n && !memcmp(buf, msg, n);
}

/* A new connection to ip:7000, accepted here: data both ways. */
static int via_listener(int lsk, const char *ip)
{
	int c = connect_to(ip, 7000), a, ok;

	if (c < 0)
		return 0;
	a = accept(lsk, NULL, NULL);
	ok = a >= 0 && carries(c, a, "ping") && carries(a, c, "pong");
	close(c);
	if (a >= 0)
		close(a);
	return ok;
}

static const char *check(int sp[2], int lsk, int lo_c, int lo_a)
{
	char buf[64] = {};
	int s;

	if (read(sp[1], buf, 5) != 5 || memcmp(buf, "hello", 5))
		return "socketpair lost its queued data";
	if (!carries(sp[1], sp[0], "back") || !carries(sp[0], sp[1], "forth"))
		return "socketpair";
	if (!carries(lo_c, lo_a, "c2a") || !carries(lo_a, lo_c, "a2c"))
		return "established loopback connection";
	if (!via_listener(lsk, "127.0.0.1"))
		return "loopback 127.0.0.1";
	if (!via_listener(lsk, "10.99.0.1"))
		return "extra loopback address 10.99.0.1";
	s = connect_to("10.77.0.1", 7100);
	if (s < 0)
		return "connecting out over the veth to 10.77.0.1:7100";
	if (write(s, "from-ns", 7) != 7)
		return "writing out over the veth";
	memset(buf, 0, sizeof(buf));
	if (read(s, buf, sizeof(buf) - 1) != 7 || strcmp(buf, "host-ok"))
		return "the host's answer over the veth";
	close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	int sp[2], lsk, usk, lo_c, lo_a, checked = 0;

	if (argc < 3)
		return 2;
	report = argv[1];
	/* A session of its own: the restore recreates it (no --shell-job). */
	setsid();
	if (unshare(CLONE_NEWNET)) {
		say("fail: unshare %s", strerror(errno));
		return 1;
	}
	say("ns %d", getpid());
	while (trigger_size(argv[2]) < 1)
		usleep(10000);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || write(sp[0], "hello", 5) != 5) {
		say("fail: socketpair");
		return 1;
	}
	lsk = bound(SOCK_STREAM, 7000);
	usk = bound(SOCK_DGRAM, 7001);
	lo_c = connect_to("127.0.0.1", 7000);
	lo_a = lo_c < 0 ? -1 : accept(lsk, NULL, NULL);
	if (lsk < 0 || usk < 0 || lo_a < 0) {
		say("fail: sockets %s", strerror(errno));
		return 1;
	}
	say("ready");
	for (;;) {
		struct pollfd p[2] = { { .fd = lsk, .events = POLLIN }, { .fd = usk, .events = POLLIN } };
		char buf[128] = "tcp:";
		ssize_t n;

		if (poll(p, 2, 20) < 0 && errno != EINTR)
			return 1;
		if (p[0].revents & POLLIN) {
			int c = accept(lsk, NULL, NULL);

			if (c >= 0) {
				n = read(c, buf + 4, sizeof(buf) - 5);
				if (n > 0 && write(c, buf, n + 4) != n + 4)
					say("fail: tcp echo");
				close(c);
			}
		}
		if (p[1].revents & POLLIN) {
			struct sockaddr_in from;
			socklen_t len = sizeof(from);

			memcpy(buf, "udp:", 4);
			n = recvfrom(usk, buf + 4, sizeof(buf) - 5, 0, (void *)&from, &len);
			if (n > 0)
				sendto(usk, buf, n + 4, 0, (void *)&from, len);
		}
		if (!checked && trigger_size(argv[2]) >= 2) {
			const char *why = check(sp, lsk, lo_c, lo_a);

			checked = 1;
			if (why)
				say("fail: %s", why);
			else
				say("ok");
		}
	}
}
