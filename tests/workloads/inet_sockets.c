/* Inet sockets across a dump (plugin `inet`). The root (server) and its child (client)
 * hold a TCP connection over loopback; before the dump each writes to the other without
 * reading until its send queue and the other's receive queue are full, so bytes sit queued
 * in both directions (sent-unacknowledged and not-yet-sent). The root also holds a listening
 * socket, a dual-stack IPv6 listener, a V6ONLY one, a UDP socket with datagrams queued by two
 * of the child's UDP sockets (one datagram empty) and a UDP socket connected to one of them.
 * After the restore (the "go" file appears), each side writes the rest of its stream and
 * reads the other's whole stream, byte by byte checked against a generator (nothing lost,
 * duplicated or reordered); the root checks the datagrams, their senders and the options,
 * then accepts new connections the child makes to both listeners. A corked UDP socket with a
 * pending datagram comes back corked, the datagram dropped (nothing can read it at dump). Each side writes
 * "ok server" / "ok client" to the report, or "FAIL ..." with the reason.
 * usage: inet_sockets REPORT GO (GO holds "restored" after a restore)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOTAL (6u << 20) /* bytes each side sends */

static const char *report, *gofile;

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	FILE *f = fopen(report, "a");
	if (f) {
		fprintf(f, "%s\n", buf);
		fclose(f);
	}
}

#define FAIL(...)                                                                  \
	do {                                                                       \
		char m_[300];                                                      \
		snprintf(m_, sizeof(m_), __VA_ARGS__);                             \
		say("FAIL %s: %s (errno %d %s)", who, m_, errno, strerror(errno)); \
		exit(1);                                                           \
	} while (0)

static const char *who = "setup";

static uint8_t gen(uint32_t i, int side)
{
	uint32_t x = i * 2654435761u + (uint32_t)side * 40503u;
	x ^= x >> 15;
	return (uint8_t)(x ^ (i >> 8));
}

static int restored; /* the go file says "restored": the tree went through a restore */

static void wait_go(void)
{
	struct stat st;
	while (stat(gofile, &st) != 0)
		usleep(10000);
	char buf[16] = { 0 };
	FILE *f = fopen(gofile, "r");
	if (f) {
		restored = fread(buf, 1, sizeof(buf) - 1, f) >= 8 && !strncmp(buf, "restored", 8);
		fclose(f);
	}
}

static int tcp_listener(int family, int v6only, struct sockaddr_storage *ss, socklen_t *len)
{
	int s = socket(family, SOCK_STREAM, 0), one = 1;
	if (s < 0)
		FAIL("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		if (setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)))
			FAIL("v6only");
		struct sockaddr_in6 *a = (void *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_any;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*a);
	}
	if (bind(s, (void *)ss, *len) || listen(s, 7))
		FAIL("bind/listen");
	if (getsockname(s, (void *)ss, len))
		FAIL("getsockname");
	return s;
}

static uint16_t port_of(int s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(s, (void *)&ss, &len);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void set_nonblock(int s, int on)
{
	int fl = fcntl(s, F_GETFL);
	fcntl(s, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Writes without reading until the socket refuses more; returns the bytes written. */
static uint32_t fill(int s, int side)
{
	uint8_t buf[4096];
	uint32_t sent = 0;
	for (;;) {
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = gen(sent + k, side);
		ssize_t n = send(s, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			usleep(50000);
			n = send(s, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return sent;
		}
		if (n < 0)
			FAIL("fill send");
		sent += n;
	}
}

/* Sends the rest of this side's stream and checks the whole stream of the other side. */
static void exchange(int s, int side, uint32_t sent)
{
	uint32_t got = 0;
	uint8_t buf[8192];
	set_nonblock(s, 1);
	while (sent < TOTAL || got < TOTAL) {
		struct pollfd p = { .fd = s, .events = POLLIN | (sent < TOTAL ? POLLOUT : 0) };
		if (poll(&p, 1, 20000) <= 0)
			FAIL("stalled: sent %u received %u of %u", sent, got, TOTAL);
		if (p.revents & POLLIN) {
			ssize_t n = recv(s, buf, sizeof(buf), 0);
			if (n == 0)
				FAIL("EOF after %u bytes", got);
			if (n < 0 && errno != EAGAIN)
				FAIL("recv after %u bytes", got);
			for (ssize_t k = 0; k < n; k++)
				if (buf[k] != gen(got + k, !side))
					FAIL("byte %u is %u, want %u", got + (uint32_t)k, buf[k],
					     gen(got + k, !side));
			if (n > 0)
				got += n;
			if (got > TOTAL)
				FAIL("%u bytes received, more than %u", got, TOTAL);
		}
		if ((p.revents & POLLOUT) && sent < TOTAL) {
			size_t want = TOTAL - sent < sizeof(buf) ? TOTAL - sent : sizeof(buf);
			for (size_t k = 0; k < want; k++)
				buf[k] = gen(sent + k, side);
			ssize_t n = send(s, buf, want, 0);
			if (n < 0 && errno != EAGAIN)
				FAIL("send after %u bytes", sent);
			if (n > 0)
				sent += n;
		}
		if (p.revents & (POLLERR | POLLHUP))
			FAIL("connection error after sent %u received %u", sent, got);
	}
}

static int udp_bound(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (s < 0 || bind(s, (void *)&a, sizeof(a)))
		FAIL("udp bind");
	return s;
}

static void to_port(int s, uint16_t port, const char *msg, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (sendto(s, msg, len, 0, (void *)&a, sizeof(a)) != (ssize_t)len)
		FAIL("sendto");
}

static void expect_dgram(int s, const char *want, size_t len, uint16_t from)
{
	char buf[64];
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	ssize_t n = recvfrom(s, buf, sizeof(buf), MSG_DONTWAIT, (void *)&a, &alen);
	if (n != (ssize_t)len || memcmp(buf, want, len))
		FAIL("datagram %zd bytes, want %zu of \"%s\"", n, len, want);
	if (ntohs(a.sin_port) != from || a.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		FAIL("datagram \"%s\" from port %u, want %u", want, ntohs(a.sin_port), from);
}

static int getint(int s, int level, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(s, level, opt, &v, &l))
		FAIL("getsockopt %d/%d", level, opt);
	return v;
}

static void connect_to(int family, uint16_t port)
{
	int c = socket(family, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 b = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				  .sin6_addr = in6addr_loopback };
	int r = family == AF_INET ? connect(c, (void *)&a, sizeof(a)) : connect(c, (void *)&b, sizeof(b));
	if (r)
		FAIL("connect to new port %u", port);
	if (write(c, "hi", 2) != 2)
		FAIL("write hi");
	close(c);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	report = argv[1];
	gofile = argv[2];
	struct sockaddr_storage ls, l6, l6only;
	socklen_t len;
	int lsk = tcp_listener(AF_INET, 0, &ls, &len);
	int l6sk = tcp_listener(AF_INET6, 0, &l6, &len);
	int l6o = tcp_listener(AF_INET6, 1, &l6only, &len);
	uint16_t lport = port_of(lsk), l6port = port_of(l6sk);
	int udp = udp_bound(), udpc = udp_bound();
	int tos = 0x10;
	setsockopt(udp, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	uint16_t uport = port_of(udp), ucport = port_of(udpc);
	int corked = udp_bound(), cork_rx = udp_bound(), on = 1;
	if (setsockopt(corked, IPPROTO_UDP, UDP_CORK, &on, sizeof(on)))
		FAIL("UDP_CORK");
	to_port(corked, port_of(cork_rx), "pending", 7);
	int sync[2];
	if (pipe(sync))
		FAIL("pipe");

	pid_t child = fork();
	if (child == 0) {
		who = "client";
		int c = socket(AF_INET, SOCK_STREAM, 0), one = 1, idle = 77;
		if (connect(c, (void *)&ls, sizeof(struct sockaddr_in)))
			FAIL("connect");
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		int u1 = udp_bound(), u2 = udp_bound();
		uint16_t p1 = port_of(u1), p2 = port_of(u2);
		/* The root's connected UDP socket talks to u1. */
		to_port(u1, uport, "one", 3);
		to_port(u2, uport, "twotwo", 6);
		to_port(u1, uport, "", 0);
		to_port(u1, ucport, "conn", 4);
		char line[64];
		snprintf(line, sizeof(line), "%u %u\n", p1, p2);
		if (write(sync[1], line, strlen(line)) < 0)
			FAIL("sync");
		uint32_t sent = fill(c, 1);
		say("filled client %u", sent);
		wait_go();
		if (getint(c, IPPROTO_TCP, TCP_NODELAY) != 1 || getint(c, SOL_SOCKET, SO_KEEPALIVE) != 1 ||
		    getint(c, IPPROTO_TCP, TCP_KEEPIDLE) != 77)
			FAIL("TCP options lost");
		exchange(c, 1, sent);
		connect_to(AF_INET, lport);
		connect_to(AF_INET, l6port); /* the dual-stack listener takes IPv4 */
		say("ok client");
		return 0;
	}
	who = "server";
	char line[64] = { 0 };
	if (read(sync[0], line, sizeof(line) - 1) <= 0)
		FAIL("sync read");
	unsigned p1, p2;
	if (sscanf(line, "%u %u", &p1, &p2) != 2)
		FAIL("sync parse");
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(p1),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	/* Connected after the datagram from u1 arrived: it stays queued. */
	if (connect(udpc, (void *)&peer, sizeof(peer)))
		FAIL("udp connect");
	int s = accept(lsk, NULL, NULL);
	if (s < 0)
		FAIL("accept");
	uint32_t sent = fill(s, 0);
	say("filled server %u", sent);
	wait_go();
	expect_dgram(udp, "one", 3, p1);
	expect_dgram(udp, "twotwo", 6, p2);
	expect_dgram(udp, "", 0, p1);
	expect_dgram(udpc, "conn", 4, p1);
	if (getint(udp, IPPROTO_IP, IP_TOS) != 0x10)
		FAIL("IP_TOS lost");
	if (getint(l6sk, IPPROTO_IPV6, IPV6_V6ONLY) != 0 || getint(l6o, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
		FAIL("IPV6_V6ONLY lost");
	if (port_of(udpc) != ucport || port_of(udp) != uport)
		FAIL("UDP ports changed");
	if (getint(corked, IPPROTO_UDP, UDP_CORK) != 1)
		FAIL("UDP_CORK lost");
	int off = 0;
	setsockopt(corked, IPPROTO_UDP, UDP_CORK, &off, sizeof(off));
	if (restored) {
		char junk[16];
		if (recv(cork_rx, junk, sizeof(junk), MSG_DONTWAIT) != -1 || errno != EAGAIN)
			FAIL("the corked datagram was not dropped");
	} else {
		/* A dump that left the tree running changed nothing: the datagram goes out. */
		expect_dgram(cork_rx, "pending", 7, port_of(corked));
	}
	to_port(corked, port_of(cork_rx), "after", 5);
	expect_dgram(cork_rx, "after", 5, port_of(corked));
	exchange(s, 0, sent);
	for (int k = 0; k < 2; k++) {
		int l = k == 0 ? lsk : l6sk;
		int a = accept(l, NULL, NULL);
		char hi[3] = { 0 };
		if (a < 0 || read(a, hi, 2) != 2 || strcmp(hi, "hi"))
			FAIL("accept after restore on listener %d", k);
		close(a);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		FAIL("client exited with %d", status);
	say("ok server");
	return 0;
}
