/* Guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13+) through checkpoint/restore,
 * checked by the workload itself.
 *
 * usage: guard_regions WORKDIR
 * Maps 12 pages: anonymous private pages 0-5 and private pages 6-11 of WORKDIR/file, each
 * page filled with its number; installs guards on pages 1, 2, 5, 6, 8, 9 and 11 (page 5
 * also MADV_WIPEONFORK, so a child loses that guard). Writes "ready" (or "unsupported
 * <why>" when the kernel has no guard regions) to WORKDIR/report, waits for WORKDIR/go,
 * then checks that every guarded page faults on a write, every other page holds its
 * number and takes a write, and the same in a forked child (page 5 unguarded there).
 * Writes "result ok" or "result bad <what>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#define PAGES 12
#define PG 4096

static const bool guarded[PAGES] = { 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1 };
static const int wipe_page = 5;
static char report[4096];
static volatile unsigned char *base;
static sigjmp_buf jb;
static volatile sig_atomic_t armed;

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	FILE *f = fopen(report, "a");
	if (!f)
		exit(2);
	fprintf(f, "%s\n", line);
	fclose(f);
}

static void on_segv(int sig)
{
	(void)sig;
	if (armed)
		siglongjmp(jb, 1);
	_exit(3);
}

/* 1 when writing a byte at page i faults */
static int faults(int i)
{
	armed = 1;
	if (sigsetjmp(jb, 1)) {
		armed = 0;
		return 1;
	}
	base[i * PG + 7] = base[i * PG + 7];
	armed = 0;
	return 0;
}

/* NULL when every page is as expected */
static const char *check(bool child, char *why, size_t n)
{
	for (int i = 0; i < PAGES; i++) {
		bool g = guarded[i] && !(child && i == wipe_page);
		if (faults(i) != g) {
			snprintf(why, n, "%s: page %d %s", child ? "child" : "parent", i,
				 g ? "writable, guard lost" : "faults, guard where none was");
			return why;
		}
		if (!g && i != wipe_page && base[i * PG] != i) {
			snprintf(why, n, "%s: page %d holds %d", child ? "child" : "parent", i,
				 base[i * PG]);
			return why;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char path[4096], go[4096], why[256];
	if (argc != 2)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	snprintf(path, sizeof(path), "%s/file", argv[1]);
	signal(SIGSEGV, on_segv);

	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, PAGES * PG) < 0) {
		say("result bad file: %m");
		return 1;
	}
	base = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED ||
	    mmap((void *)(base + 6 * PG), 6 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
		 fd, 6 * PG) == MAP_FAILED) {
		say("result bad mmap: %m");
		return 1;
	}
	for (int i = 0; i < PAGES; i++)
		memset((void *)(base + i * PG), i, PG);
	if (madvise((void *)(base + wipe_page * PG), PG, MADV_WIPEONFORK)) {
		say("result bad MADV_WIPEONFORK: %m");
		return 1;
	}
	for (int i = 0; i < PAGES; i++) {
		if (guarded[i] && madvise((void *)(base + i * PG), PG, MADV_GUARD_INSTALL)) {
			say("unsupported MADV_GUARD_INSTALL: %m");
			return 0;
		}
	}
	if (check(false, why, sizeof(why))) {
		say("result bad before the dump: %s", why);
		return 1;
	}
	say("ready");
	while (access(go, F_OK) != 0)
		usleep(10000);

	if (check(false, why, sizeof(why))) {
		say("result bad %s", why);
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(check(true, why, sizeof(why)) ? 1 : 0);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		say("result bad child: guards wrong after fork (status %#x)", st);
		return 1;
	}
	say("result ok");
	return 0;
}
