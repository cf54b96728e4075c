/* A pty pair inside the dumped tree (test tty_pairs).
 *
 * pty_pair DIR: the workload (a session leader without a terminal, started by setsid) opens
 * /dev/ptmx and its slave twice (the first open makes it the controlling terminal), sets the
 * slave's termios (canonical, no echo, OPOST|ONLCR, VERASE ^H) and window size (33x101),
 * turns on packet mode, forks a child that keeps a duplicate of the master, and queues data
 * both ways: "hello\n" written by the master (slave's input), "world\n" by the slave
 * (master's input, "world\r\n" after ONLCR). Writes "child=PID" and "ready index=N" to
 * DIR/report, waits for DIR/go, then checks everything again: same /dev/pts/N, termios,
 * window size, packet mode, controlling terminal, the queued data read exactly once each
 * way, and a new exchange both ways. Writes "result ok" or "result FAIL ...".
 * pty_pair DIR UID: the same, run as UID (uid and gid) once the pair is set up, before the
 * fork, with /dev/tty open too (restored by opening it in the session and installing it in
 * the task after its credentials are restored); checks it is the terminal of its session. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

static char report[4096];

static void line(const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(report, "a");
	if (!f)
		exit(3);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

#define FAIL(...)                                                   \
	do {                                                        \
		char m[512];                                        \
		snprintf(m, sizeof(m), __VA_ARGS__);                \
		line("result FAIL %s (errno %d)", m, errno);        \
		return 1;                                           \
	} while (0)

/* Reads what is queued on fd now (non-blocking), at most n bytes. */
static int drain(int fd, char *buf, int n)
{
	int fl = fcntl(fd, F_GETFL), got = 0, r;
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	usleep(50000);
	while (got < n && (r = read(fd, buf + got, n - got)) > 0)
		got += r;
	fcntl(fd, F_SETFL, fl);
	return got;
}

static int expect(int fd, const char *want, int len, const char *what)
{
	char buf[256];
	int got = drain(fd, buf, sizeof(buf));
	if (got != len || memcmp(buf, want, len)) {
		char shown[600];
		int i, o = 0;
		for (i = 0; i < got && o < 500; i++)
			o += snprintf(shown + o, sizeof(shown) - o,
				      buf[i] >= 32 && buf[i] < 127 ? "%c" : "\\x%02x",
				      (unsigned char)buf[i]);
		shown[o] = 0;
		line("result FAIL %s: got %d bytes \"%s\"", what, got, shown);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int m, s1, s2, one = 1, pkt = 0, n, devtty = -1;
	unsigned int index, after;
	char go[4096], name[64];
	struct termios t, t2;
	struct winsize ws = { .ws_row = 33, .ws_col = 101 }, ws2;
	pid_t child, sid;

	if (argc < 2)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	m = open("/dev/ptmx", O_RDWR);
	if (m < 0 || grantpt(m) || unlockpt(m) || ioctl(m, TIOCGPTN, &index))
		FAIL("ptmx");
	snprintf(name, sizeof(name), "/dev/pts/%u", index);
	s1 = open(name, O_RDWR); /* becomes the controlling terminal */
	s2 = open(name, O_RDWR | O_NOCTTY);
	if (s1 < 0 || s2 < 0)
		FAIL("open %s", name);
	tcgetattr(s1, &t);
	t.c_lflag |= ICANON;
	t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
	t.c_oflag |= OPOST | ONLCR;
	t.c_cc[VERASE] = 8;
	if (tcsetattr(s1, TCSANOW, &t) || ioctl(s1, TIOCSWINSZ, &ws) || ioctl(m, TIOCPKT, &one))
		FAIL("settings");
	if (argc > 2) {
		unsigned int uid = atoi(argv[2]);
		devtty = open("/dev/tty", O_RDWR);
		if (devtty < 0)
			FAIL("open /dev/tty");
		if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
			FAIL("drop to uid %u", uid);
	}
	child = fork();
	if (child == 0) {
		int keep = dup(m);
		(void)keep;
		for (;;)
			pause();
	}
	if (write(m, "hello\n", 6) != 6 || write(s2, "world\n", 6) != 6)
		FAIL("queue data");
	line("child=%d", child);
	line("ready index=%u", index);
	while (access(go, F_OK))
		usleep(20000);

	if (ioctl(m, TIOCGPTN, &after) || after != index)
		FAIL("index %u after the restore, %u before", after, index);
	{
		struct stat st;
		if (fstat(s1, &st) || minor(st.st_rdev) != index % 256 || strcmp(ptsname(m), name))
			FAIL("slave is not %s", name);
	}
	if (tcgetattr(s2, &t2) || t2.c_lflag != t.c_lflag || t2.c_oflag != t.c_oflag ||
	    t2.c_iflag != t.c_iflag || t2.c_cc[VERASE] != 8)
		FAIL("termios lflag %o/%o oflag %o/%o", t2.c_lflag, t.c_lflag, t2.c_oflag, t.c_oflag);
	if (ioctl(m, TIOCGWINSZ, &ws2) || ws2.ws_row != 33 || ws2.ws_col != 101)
		FAIL("window size %ux%u", ws2.ws_row, ws2.ws_col);
	if (ioctl(m, TIOCGPKT, &pkt) || !pkt)
		FAIL("packet mode off");
	if (ioctl(s1, TIOCGSID, &sid) || sid != getsid(0))
		FAIL("%s is not the controlling terminal of session %d", name, getsid(0));
	if (devtty >= 0) {
		struct stat st;
		pid_t tsid;
		if (fstat(devtty, &st) || st.st_rdev != makedev(5, 0) || ioctl(devtty, TIOCGSID, &tsid) ||
		    tsid != getsid(0))
			FAIL("/dev/tty is not the terminal of session %d", getsid(0));
	}
	if (expect(s1, "hello\n", 6, "queued for the slave"))
		return 1;
	if (expect(m, "\0world\r\n", 8, "queued for the master"))
		return 1;
	n = write(m, "again\n", 6) + write(s2, "back\n", 5);
	if (n != 11)
		FAIL("write after the restore");
	if (expect(s2, "again\n", 6, "new data for the slave"))
		return 1;
	if (expect(m, "\0back\r\n", 7, "new data for the master"))
		return 1;
	kill(child, SIGKILL);
	line("result ok");
	return 0;
}
