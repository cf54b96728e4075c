/* A tree in a time namespace of its own: the launcher unshares one, sets its offsets
 * (monotonic +10 days, boottime +20 days) and forks ROOT into it; ROOT forks SUB. Usage:
 *   ns_time REPORT TRIGGER [nested]
 * With "nested", ROOT itself unshares another time namespace that only its children would
 * get (time_for_children != time), a tree CRIU refuses to dump.
 * ROOT writes "ready ROOT SUB MONO BOOT" (its clocks in seconds), waits for TRIGGER to
 * exist, then both read their clocks again: each clock must not have gone back and must
 * have advanced by no more than the real time that passed (plus a second); the offsets
 * must still show (boottime - monotonic above 10 days). ROOT writes "ok" or "FAIL: why"
 * (SUB's check is its exit status). The launcher waits for ROOT and exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define DAY 86400LL

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

static void die(const char *what)
{
	say("FAIL: setup: %s: %s", what, strerror(errno));
	exit(1);
}

static double now(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

struct clocks {
	double mono, boot, real;
};

static struct clocks read_clocks(void)
{
	struct clocks c = { now(CLOCK_MONOTONIC), now(CLOCK_BOOTTIME), now(CLOCK_REALTIME) };
	return c;
}

/* NULL when after is a plausible continuation of before. */
static const char *check(struct clocks before, struct clocks after, char *buf, size_t n)
{
	double real = after.real - before.real + 1.0;
	double dm = after.mono - before.mono, db = after.boot - before.boot;
	if (dm < 0 || dm > real || db < 0 || db > real) {
		snprintf(buf, n, "clocks jumped: monotonic %+.3f s, boottime %+.3f s in %.3f s real",
			 dm, db, real - 1.0);
		return buf;
	}
	if (after.boot - after.mono < 10 * DAY - 1) {
		snprintf(buf, n, "offsets lost: boottime %.3f - monotonic %.3f", after.boot, after.mono);
		return buf;
	}
	return NULL;
}

static void wait_trigger(const char *trigger)
{
	struct stat st;
	while (stat(trigger, &st) < 0)
		usleep(10000);
}

static int sub_main(const char *trigger)
{
	struct clocks before = read_clocks(), after;
	char buf[256];
	wait_trigger(trigger);
	after = read_clocks();
	return check(before, after, buf, sizeof(buf)) ? 1 : 0;
}

static int root_main(const char *trigger, int nested)
{
	struct clocks before, after;
	const char *why;
	char buf[256];
	int status;
	pid_t sub;

	/* A session of its own: the tree is restored without --shell-job. */
	if (setsid() < 0)
		die("setsid");
	before = read_clocks();
	sub = fork();
	if (sub < 0)
		die("fork");
	if (sub == 0)
		exit(sub_main(trigger));
	if (nested && unshare(CLONE_NEWTIME))
		die("unshare(CLONE_NEWTIME) for the children");
	say("ready %d %d %.0f %.0f", getpid(), sub, before.mono, before.boot);
	wait_trigger(trigger);
	after = read_clocks();
	why = check(before, after, buf, sizeof(buf));
	if (waitpid(sub, &status, 0) != sub)
		die("waitpid");
	if (why)
		say("FAIL: root: %s", why);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		say("FAIL: sub's clocks (status %#x)", status);
	else
		say("ok");
	return 0;
}

int main(int argc, char **argv)
{
	const char *offsets = "monotonic 864000 0\nboottime 1728000 0\n";
	int fd, status;
	pid_t root;

	if (argc < 3)
		return 2;
	report = argv[1];
	if (unshare(CLONE_NEWTIME))
		die("unshare(CLONE_NEWTIME)");
	fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0 || write(fd, offsets, strlen(offsets)) != (ssize_t)strlen(offsets))
		die("writing /proc/self/timens_offsets");
	close(fd);
	root = fork();
	if (root < 0)
		die("fork");
	if (root == 0)
		return root_main(argv[2], argc > 3 && !strcmp(argv[3], "nested"));
	waitpid(root, &status, 0);
	return 0;
}
