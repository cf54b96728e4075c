/* A thread that spends nearly all its time inside an rseq critical section (test rseq_cs).
 *
 * rseq_cs DIR: drops glibc's rseq registration, registers its own struct rseq and runs a
 * section whose body is a long floating-point loop, again and again. At the end of a
 * section that completed normally it checks that struct rseq.rseq_cs still points at the
 * section: the kernel clears it only when it sees the thread outside the section, so a
 * cleared pointer means the thread went on in a section the kernel had forgotten (a dump
 * that froze it inside the section and a restore that resumed it there). An aborted section
 * (preemption, signal, or a restore that sent it to its abort handler) is fine. Writes
 * "ready" to DIR/report, waits for DIR/go, runs 20 more sections and writes "result ok
 * aborts=N" or "result FAIL ...". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

static char report[4096];

static void line(const char *msg, long n)
{
	FILE *f = fopen(report, "a");
	if (!f)
		_exit(3);
	if (n < 0)
		fprintf(f, "%s\n", msg);
	else
		fprintf(f, "%s%ld\n", msg, n);
	fclose(f);
}

static struct rseq area __attribute__((aligned(32)));

/* 0: completed with rseq_cs intact, 1: aborted, -1: completed with rseq_cs cleared. */
static int section(void)
{
	uint64_t seen = 0, ours = 0;
	double x = 1e16, y = -1;

	__asm__ __volatile__ goto(
		".pushsection __rseq_cs_table, \"aw\"\n\t"
		".balign 32\n\t"
		"3:\n\t"
		".long 0, 0\n\t"
		".quad 1f, (2f-1f), 4f\n\t"
		".popsection\n\t"
		"fldl %[x]\n\t"
		"leaq 3b(%%rip), %%rax\n\t"
		"1:\n\t"
		"movq %%rax, %[cs]\n\t"
		"mov $20000000, %%rcx\n\t"
		"5:\n\t"
		"fsqrt\n\t"
		"dec %%rcx\n\t"
		"jnz 5b\n\t"
		"movq %%rax, %[ours]\n\t"
		"movq %[cs], %%rax\n\t"
		"movq %%rax, %[seen]\n\t"
		"fstpl %[y]\n\t"
		"2:\n\t"
		".pushsection __rseq_abort, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"
		".long 0x53053053\n\t"
		"4:\n\t"
		"fstpl %[y]\n\t"
		"jmp %l[aborted]\n\t"
		".popsection\n\t"
		:
		: [cs] "m"(area.rseq_cs), [seen] "m"(seen), [ours] "m"(ours), [x] "m"(x),
		  [y] "m"(y)
		: "memory", "cc", "rax", "rcx", "st"
		: aborted);
	__asm__ __volatile__("" ::: "memory");
	return seen == ours ? 0 : -1;
aborted:
	__asm__ __volatile__("" ::: "memory");
	return 1;
}

int main(int argc, char **argv)
{
	char go[4096];
	long aborts = 0, i;
	int r;

	if (argc < 2)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	if (__rseq_size > 0) {
		unsigned int size = __rseq_size < 32 ? 32 : __rseq_size;
		syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, size,
			RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
	}
	if (syscall(SYS_rseq, &area, sizeof(area), 0, 0x53053053)) {
		line("result FAIL register rseq, errno ", errno);
		return 1;
	}
	line("ready", -1);
	while (access(go, F_OK)) {
		r = section();
		if (r < 0) {
			line("result FAIL rseq_cs cleared inside the section before the restore", -1);
			return 1;
		}
		aborts += r;
	}
	for (i = 0; i < 20; i++) {
		r = section();
		if (r < 0) {
			line("result FAIL rseq_cs cleared inside the section, section ", i);
			return 1;
		}
		aborts += r;
	}
	line("result ok aborts=", aborts);
	return 0;
}
