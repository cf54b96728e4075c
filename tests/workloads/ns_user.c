/* A tree in a user namespace of its own, a rootless container's shape: the launcher (host
 * root) forks A, which unshares a user namespace; the launcher writes its maps
 * ("0 100000 65536" for uids and gids) and A becomes uid/gid 0 inside, unshares a pid
 * namespace (owned by the user namespace) and forks ROOT, its pid 1, which forks SUB.
 * Usage: ns_user REPORT TRIGGER OWNED
 * OWNED is a file the test created and gave to host uid 100000; ROOT keeps it open.
 * REPORT must exist and be writable by host uid 100000 (the test makes it so).
 * A writes "ready ROOT" (ROOT's pid on the host) once SUB exists; after TRIGGER exists
 * ROOT and SUB check: real,
 * effective and saved uid and gid 0, no supplementary groups, /proc/self/uid_map and
 * gid_map "0 100000 65536", and (ROOT) its open file owned by uid 0 as seen inside.
 * ROOT writes "ok" or "FAIL: why" (SUB's check is its exit status). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP "0 100000 65536"

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

/* NULL when /proc/self/NAME is exactly one extent equal to MAP. */
static const char *check_map(const char *name, char *buf, size_t n)
{
	unsigned a, b, c, d;
	char path[64], extra[8];
	FILE *f;
	int got;

	snprintf(path, sizeof(path), "/proc/self/%s", name);
	f = fopen(path, "r");
	if (!f) {
		snprintf(buf, n, "%s: %s", path, strerror(errno));
		return buf;
	}
	got = fscanf(f, "%u %u %u", &a, &b, &c);
	d = fscanf(f, "%7s", extra) == 1;
	fclose(f);
	if (got != 3 || d || a != 0 || b != 100000 || c != 65536) {
		snprintf(buf, n, "%s is not \"" MAP "\" (%d fields: %u %u %u)", path, got, a, b, c);
		return buf;
	}
	return NULL;
}

static const char *check_ids(char *buf, size_t n)
{
	uid_t r, e, s;
	gid_t gr, ge, gs;
	const char *why;

	getresuid(&r, &e, &s);
	getresgid(&gr, &ge, &gs);
	if (r || e || s || gr || ge || gs) {
		snprintf(buf, n, "uids %u %u %u gids %u %u %u, not 0", r, e, s, gr, ge, gs);
		return buf;
	}
	if (getgroups(0, NULL) != 0) {
		snprintf(buf, n, "%d supplementary groups", getgroups(0, NULL));
		return buf;
	}
	why = check_map("uid_map", buf, n);
	return why ? why : check_map("gid_map", buf, n);
}

static void wait_trigger(const char *trigger)
{
	struct stat st;
	while (stat(trigger, &st) < 0)
		usleep(10000);
}

/* R: pid 1 of the pid namespace, the tree's root. */
static int tree_main(int ready, const char *trigger, const char *owned)
{
	char buf[256], c = 0;
	const char *why;
	struct stat st;
	int status, fd;
	pid_t sub;

	/* A session of its own: the tree is restored without --shell-job. */
	if (setsid() < 0)
		die("setsid");
	fd = open(owned, O_RDWR);
	if (fd < 0)
		die("open OWNED");
	sub = fork();
	if (sub < 0)
		die("fork");
	if (sub == 0) {
		close(ready);
		close(fd);
		wait_trigger(trigger);
		exit(check_ids(buf, sizeof(buf)) ? 1 : 0);
	}
	if ((why = check_ids(buf, sizeof(buf))))
		say("FAIL: before the dump: %s", why);
	if (write(ready, &c, 1) != 1)
		die("telling A");
	close(ready);
	wait_trigger(trigger);
	why = check_ids(buf, sizeof(buf));
	if (!why && fstat(fd, &st) == 0 && (st.st_uid != 0 || st.st_gid != 0)) {
		snprintf(buf, sizeof(buf), "OWNED is %u:%u inside, not 0:0", st.st_uid, st.st_gid);
		why = buf;
	}
	if (waitpid(sub, &status, 0) != sub)
		die("waitpid");
	if (why)
		say("FAIL: root: %s", why);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		say("FAIL: sub's ids (status %#x)", status);
	else
		say("ok");
	return 0;
}

/* A: makes the user namespace (the launcher writes its maps) and a pid namespace inside it,
 * forks R into both and reports R's pid as the host sees it. */
static int root_main(int sync_in, int sync_out, const char *trigger, const char *owned)
{
	int ready[2], status;
	char c = 0;
	pid_t r;

	if (unshare(CLONE_NEWUSER))
		die("unshare(CLONE_NEWUSER)");
	if (write(sync_out, &c, 1) != 1 || read(sync_in, &c, 1) != 1)
		die("sync with the launcher");
	close(sync_in);
	close(sync_out);
	if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0))
		die("becoming root in the namespace");
	if (unshare(CLONE_NEWPID))
		die("unshare(CLONE_NEWPID)");
	if (pipe(ready))
		die("pipe");
	r = fork();
	if (r < 0)
		die("fork");
	if (r == 0) {
		close(ready[0]);
		exit(tree_main(ready[1], trigger, owned));
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		die("waiting for R");
	close(ready[0]);
	say("ready %d", r);
	waitpid(r, &status, 0);
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int to_root[2], from_root[2], status;
	char path[64], c;
	pid_t root;

	if (argc < 4)
		return 2;
	report = argv[1];
	if (pipe(to_root) || pipe(from_root))
		die("pipe");
	root = fork();
	if (root < 0)
		die("fork");
	if (root == 0) {
		close(to_root[1]);
		close(from_root[0]);
		return root_main(to_root[0], from_root[1], argv[2], argv[3]);
	}
	close(to_root[0]);
	close(from_root[1]);
	if (read(from_root[0], &c, 1) != 1)
		die("waiting for the root's user namespace");
	snprintf(path, sizeof(path), "/proc/%d/uid_map", root);
	if (write_file(path, MAP "\n"))
		die("writing uid_map");
	snprintf(path, sizeof(path), "/proc/%d/gid_map", root);
	if (write_file(path, MAP "\n"))
		die("writing gid_map");
	if (write(to_root[1], &c, 1) != 1)
		die("releasing the root");
	close(to_root[1]);
	close(from_root[0]);
	waitpid(root, &status, 0);
	return 0;
}
