/* Secret memory (memfd_secret) in every form, checked by the workload itself after restore.
 *
 * usage: secretmem REPORT SEED
 * Object A (fd kept open at FD_A, no close-on-exec, SIZE_A bytes) is mapped twice: M1 (all
 * of it, read-write) and M2 (pages 2-3, read-only). Object B (close-on-exec fd, closed after
 * mapping) is mapped as C. Contents are a pattern derived from SEED. A child forked after
 * the mappings shares M1, M2 and C, and maps pages 4-5 of A again itself from the inherited
 * fd (M3). Object D (SIZE_D bytes, over two 1 MiB chunks, fd closed, inherited by the
 * child too) is checked by the parent. Both write "ready <role> <pid>" to REPORT and wait for
 * REPORT.go (created after the restore); then each checks every byte (never printing any),
 * the parent checks the fd (link, size, flags) and maps it again, and a token the parent
 * writes into M1 must reach the child (one shared object) and the child's answer the parent.
 * Each writes "ok <role>" or "bad <role> <what>" and idles until killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL
#define SIZE_A (6 * PAGE)
#define SIZE_B (3 * PAGE)
/* More than two of criu's 1 MiB chunks: dumped and restored in three pieces. */
#define SIZE_D (640 * PAGE)
#define FD_A 7
#define TOKEN_OFF (SIZE_A - 64)

static const char *report;
static uint64_t seed;

static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	int fd = open(report, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd >= 0) {
		dprintf(fd, "%s\n", line);
		close(fd);
	}
}

static unsigned char pattern(uint64_t obj, uint64_t i)
{
	uint64_t x = (seed ^ (obj << 56)) + i * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ULL;
	return (unsigned char)(x >> 32);
}

static void fill(unsigned char *p, size_t len, uint64_t obj, uint64_t from)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(obj, from + i);
}

/* First offset in [0, len) that differs, skipping the token area of object A; -1: none. */
static long differs(const unsigned char *p, size_t len, uint64_t obj, uint64_t from)
{
	for (size_t i = 0; i < len; i++) {
		if (obj == 0 && from + i >= TOKEN_OFF)
			continue;
		if (p[i] != pattern(obj, from + i))
			return (long)i;
	}
	return -1;
}

static int secretmem(int flags)
{
	return (int)syscall(SYS_memfd_secret, flags);
}

static int wait_go(void)
{
	char go[4096];
	snprintf(go, sizeof(go), "%s.go", report);
	while (access(go, F_OK) != 0)
		usleep(10000);
	return 0;
}

static int prot_of(void *addr, char *perms)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long s, e;
	int found = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) == 3 && s == (unsigned long)addr) {
			found = 1;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static volatile uint64_t *word(unsigned char *m1, size_t off)
{
	return (volatile uint64_t *)(m1 + off);
}

static int wait_word(unsigned char *m1, size_t off, uint64_t want)
{
	for (int i = 0; i < 1000; i++) {
		if (*word(m1, off) == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	report = argv[1];
	seed = strtoull(argv[2], NULL, 0);

	int a = secretmem(0);
	if (a < 0) {
		perror("memfd_secret");
		return 3;
	}
	if (dup2(a, FD_A) != FD_A || ftruncate(FD_A, SIZE_A) != 0)
		return 4;
	close(a);
	unsigned char *m1 = mmap(NULL, SIZE_A, PROT_READ | PROT_WRITE, MAP_SHARED, FD_A, 0);
	if (m1 == MAP_FAILED)
		return 5;
	fill(m1, SIZE_A, 0, 0);
	memset(m1 + TOKEN_OFF, 0, 64);
	unsigned char *m2 = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, FD_A, 2 * PAGE);
	int b = secretmem(O_CLOEXEC);
	if (m2 == MAP_FAILED || b < 0 || ftruncate(b, SIZE_B) != 0)
		return 6;
	unsigned char *c = mmap(NULL, SIZE_B, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
	if (c == MAP_FAILED)
		return 7;
	fill(c, SIZE_B, 1, 0);
	close(b);
	int d = secretmem(O_CLOEXEC);
	if (d < 0 || ftruncate(d, SIZE_D) != 0)
		return 10;
	unsigned char *big = mmap(NULL, SIZE_D, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
	if (big == MAP_FAILED)
		return 11;
	fill(big, SIZE_D, 2, 0);
	close(d);

	pid_t child = fork();
	if (child < 0)
		return 8;
	unsigned char *m3 = NULL;
	if (child == 0) {
		m3 = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, FD_A, 4 * PAGE);
		if (m3 == MAP_FAILED)
			return 9;
	}
	const char *role = child == 0 ? "child" : "parent";
	say("ready %s %d", role, getpid());
	wait_go();

	long at;
	if ((at = differs(m1, SIZE_A, 0, 0)) >= 0) {
		say("bad %s M1 differs at %ld", role, at);
	} else if ((at = differs(c, SIZE_B, 1, 0)) >= 0) {
		say("bad %s C differs at %ld", role, at);
	} else if (child == 0) {
		/* The parent's token through the shared object (seen in our own mapping M3),
		 * then our answer. */
		if ((at = differs(m3, 2 * PAGE, 0, 4 * PAGE)) >= 0)
			say("bad child M3 differs at %ld", at);
		else if (!wait_word(m3, TOKEN_OFF - 4 * PAGE, seed ^ 0x70c3))
			say("bad child no token from the parent");
		else {
			*word(m1, TOKEN_OFF + 8) = seed ^ 0xa5;
			say("ok child");
		}
	} else {
		char perms[8] = "";
		struct stat st;
		char link[64] = "";
		int fdflags = fcntl(FD_A, F_GETFD);
		ssize_t n = readlink("/proc/self/fd/7", link, sizeof(link) - 1);
		if (n > 0)
			link[n] = 0;
		unsigned char *again = mmap(NULL, SIZE_A, PROT_READ, MAP_SHARED, FD_A, 0);
		if ((at = differs(m2, 2 * PAGE, 0, 2 * PAGE)) >= 0)
			say("bad parent M2 differs at %ld", at);
		else if ((at = differs(big, SIZE_D, 2, 0)) >= 0)
			say("bad parent D differs at %ld", at);
		else if (!prot_of(m2, perms) || strcmp(perms, "r--s") != 0)
			say("bad parent M2 is %s, not r--s", perms);
		else if (strcmp(link, "/secretmem (deleted)") != 0)
			say("bad parent fd 7 is %s", link);
		else if (fstat(FD_A, &st) != 0 || st.st_size != (off_t)SIZE_A)
			say("bad parent fd 7 size %ld", (long)st.st_size);
		else if (fdflags != 0)
			say("bad parent fd 7 flags %d", fdflags);
		else if (again == MAP_FAILED || differs(again, SIZE_A, 0, 0) >= 0)
			say("bad parent the fd does not map the same contents");
		else if (fcntl(3, F_GETFD) != -1 || fcntl(4, F_GETFD) != -1)
			say("bad parent a closed fd came back");
		else {
			*word(m1, TOKEN_OFF) = seed ^ 0x70c3;
			if (*word(again, TOKEN_OFF) != (seed ^ 0x70c3))
				say("bad parent the fd's new mapping misses the token");
			else if (!wait_word(m1, TOKEN_OFF + 8, seed ^ 0xa5))
				say("bad parent no answer from the child");
			else
				say("ok parent");
		}
	}
	for (;;)
		pause();
}
