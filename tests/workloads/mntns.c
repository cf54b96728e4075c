/* A root in a mount namespace of its own (tests/tests/mntns.rs).
 * mntns REPORT TRIGGER DIR [FSTYPE]: unshares its mount namespace (everything private),
 * mounts under DIR a tmpfs (t) it fills, binds DIR/host on b and read-only on ro, mounts
 * proc on p (and, with FSTYPE, a mount of that type on x, which the dump must refuse);
 * keeps a.txt of the tmpfs open at offset 5 and works in DIR/t. Writes "ready" to REPORT,
 * waits for TRIGGER, then checks everything and writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *report;

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int fd = open(report, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0)
		exit(2);
	dprintf(fd, "%s\n", buf);
	close(fd);
}

#define FAIL(...)                  \
	do {                       \
		say("FAIL: " __VA_ARGS__); \
		exit(1);           \
	} while (0)

static void put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		FAIL("write %s: %m", path);
	fchmod(fd, mode);
	close(fd);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long fl, const char *opt)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, fl, opt))
		FAIL("mount %s on %s: %m", src, dst);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	report = argv[1];
	const char *trigger = argv[2], *dir = argv[3];
	char p[4096], t[4096];

	setsid(); /* a session of its own: restored without --shell-job */
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		FAIL("unshare: %m");
	snprintf(t, sizeof(t), "%s/t", dir);
	mnt("wltmp", t, "tmpfs", MS_NOSUID, "size=1m,mode=751");
	snprintf(p, sizeof(p), "%s/host", dir);
	char b[4096], ro[4096], pr[4096];
	snprintf(b, sizeof(b), "%s/b", dir);
	snprintf(ro, sizeof(ro), "%s/ro", dir);
	snprintf(pr, sizeof(pr), "%s/p", dir);
	mnt(p, b, NULL, MS_BIND, NULL);
	mnt(p, ro, NULL, MS_BIND, NULL);
	if (mount(NULL, ro, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL))
		FAIL("remount ro: %m");
	mnt("proc", pr, "proc", MS_NOEXEC, NULL);
	if (argc > 4) {
		snprintf(p, sizeof(p), "%s/x", dir);
		mnt("odd", p, argv[4], 0, NULL);
	}

	if (chdir(t))
		FAIL("chdir: %m");
	put("a.txt", "hello tmpfs", 0600);
	mkdir("sub", 0750);
	put("sub/b", "bee", 0640);
	if (symlink("a.txt", "link"))
		FAIL("symlink: %m");
	int fd = open("a.txt", O_RDWR);
	char buf[64] = {0};
	if (fd < 0 || read(fd, buf, 5) != 5)
		FAIL("open/read a.txt: %m");
	say("ready");

	while (access(trigger, F_OK))
		usleep(20000);

	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n != 6 || memcmp(buf, " tmpfs", 6))
		FAIL("fd read after restore gave %zd bytes '%.*s'", n, (int)(n > 0 ? n : 0), buf);
	if (!getcwd(p, sizeof(p)) || strcmp(p, t))
		FAIL("cwd is %s, not %s", p, t);
	struct stat st;
	if (stat("sub/b", &st) || (st.st_mode & 07777) != 0640 || st.st_size != 3)
		FAIL("sub/b: mode %o size %lld", st.st_mode & 07777, (long long)st.st_size);
	if (stat(".", &st) || (st.st_mode & 07777) != 0751)
		FAIL("tmpfs root mode %o", st.st_mode & 07777);
	ssize_t l = readlink("link", buf, sizeof(buf) - 1);
	if (l != 5 || memcmp(buf, "a.txt", 5))
		FAIL("link");
	snprintf(p, sizeof(p), "%s/hostfile", b);
	int h = open(p, O_RDONLY);
	if (h < 0 || read(h, buf, 4) != 4 || memcmp(buf, "host", 4))
		FAIL("bind: %s: %m", p);
	close(h);
	snprintf(p, sizeof(p), "%s/new", ro);
	if (open(p, O_WRONLY | O_CREAT, 0600) >= 0 || errno != EROFS)
		FAIL("the read-only bind is writable (%m)");
	snprintf(p, sizeof(p), "%s/self/stat", pr);
	if (access(p, R_OK))
		FAIL("proc: %s: %m", p);
	say("ok");
	return 0;
}
