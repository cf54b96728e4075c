/* Runs as pid 1 of a new pid namespace (the test starts it with `unshare --pid --fork`).
 * Builds a tree and records, in each task's own memory, the pids it sees:
 *   root (1): session leader; a pipe's read end; a zombie child Z (exit code 7) it does
 *             not reap before the restore; an orphan O2 it inherited (its parent exited).
 *   A:        child of the root with a thread T and a child G.
 *   G:        grandchild; writes "G-ok" into the pipe after its own check.
 * Writes "ready A T G Z O2" (pids inside the namespace), waits for TRIGGER to exist, then
 * every task checks getpid(), getppid() (and T its gettid()) against what it recorded; the
 * root collects A's and O2's verdicts (exit status), Z's exit code and G's pipe message and
 * writes "ok" or "FAIL: why". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *report, *trigger;

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

static void wait_trigger(void)
{
	struct stat st;
	while (stat(trigger, &st) != 0)
		usleep(20000);
}

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static pid_t t_tid;
static volatile int t_ok = -1;

static void *thread_main(void *arg)
{
	(void)arg;
	t_tid = my_tid();
	wait_trigger();
	t_ok = my_tid() == t_tid && getpid() != t_tid;
	return NULL;
}

/* A: a thread and a child G; exit 0 when all of them check out. */
static int run_a(int pipe_w)
{
	pid_t me = getpid(), parent = getppid(), g;
	pthread_t th;
	int st;
	if (pthread_create(&th, NULL, thread_main, NULL))
		return 10;
	g = fork();
	if (g == 0) {
		pid_t gme = getpid(), gparent = getppid();
		wait_trigger();
		if (getpid() != gme || getppid() != gparent || gparent != me)
			_exit(1);
		if (write(pipe_w, "G-ok", 4) != 4)
			_exit(2);
		_exit(0);
	}
	while (!t_tid)
		usleep(1000);
	/* Its pids, for the root's ready line (a pipe to the root would do too). */
	{
		char path[256];
		FILE *f;
		snprintf(path, sizeof(path), "%s.a", report);
		f = fopen(path, "w");
		if (!f)
			return 11;
		fprintf(f, "%d %d %d\n", me, t_tid, g);
		fclose(f);
	}
	wait_trigger();
	pthread_join(th, NULL);
	if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 12;
	if (getpid() != me || getppid() != parent || parent != 1)
		return 13;
	return t_ok == 1 ? 0 : 14;
}

int main(int argc, char **argv)
{
	int p[2], st;
	pid_t a, z, o, o2 = 0;
	char buf[16] = "";
	int ap[2];
	if (argc < 3)
		return 2;
	report = argv[1];
	trigger = argv[2];
	if (getpid() != 1) {
		say("FAIL: setup: pid %d, not 1 (run me in a new pid namespace)", getpid());
		return 1;
	}
	setsid();
	if (pipe(p) || pipe(ap))
		return 3;
	a = fork();
	if (a == 0) {
		close(p[0]);
		_exit(run_a(p[1]));
	}
	close(p[1]);
	z = fork();
	if (z == 0)
		_exit(7);
	/* O exits at once: its child O2 becomes ours (pid 1 reaps orphans). */
	o = fork();
	if (o == 0) {
		pid_t c = fork();
		if (c == 0) {
			pid_t me = getpid();
			while (getppid() != 1)
				usleep(1000);
			wait_trigger();
			_exit(getpid() == me && getppid() == 1 ? 0 : 1);
		}
		if (write(ap[1], &c, sizeof(c)) != sizeof(c))
			_exit(3);
		_exit(0);
	}
	if (waitpid(o, &st, 0) != o || read(ap[0], &o2, sizeof(o2)) != sizeof(o2))
		return 4;
	/* Z is a zombie now (never waited for before the restore). */
	{
		char path[256], line[128] = "";
		FILE *f = NULL;
		snprintf(path, sizeof(path), "%s.a", report);
		while (!(f = fopen(path, "r")))
			usleep(1000);
		while (!fgets(line, sizeof(line), f)) {
			fclose(f);
			usleep(1000);
			f = fopen(path, "r");
			if (!f)
				return 5;
		}
		fclose(f);
		line[strcspn(line, "\n")] = 0;
		/* Z has exited, still unreaped (/proc is criu's here, not the namespace's). */
		{
			siginfo_t si;
			if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
				return 7;
		}
		/* "ready A T G" from A's file, then Z and O2. */
		{
			int pa, pt, pg;
			if (sscanf(line, "%d %d %d", &pa, &pt, &pg) != 3 || pa != a)
				return 6;
			say("ready %d %d %d %d %d", pa, pt, pg, z, o2);
		}
	}
	wait_trigger();
	if (getpid() != 1 || getppid() != 0) {
		say("FAIL: root sees pid %d, ppid %d", getpid(), getppid());
		return 1;
	}
	if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("FAIL: A (%d) status %#x", a, st);
		return 1;
	}
	if (waitpid(z, &st, WNOHANG) != z || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
		say("FAIL: zombie %d status %#x", z, st);
		return 1;
	}
	if (waitpid(o2, &st, 0) != o2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("FAIL: orphan %d status %#x", o2, st);
		return 1;
	}
	if (read(p[0], buf, sizeof(buf) - 1) != 4 || strcmp(buf, "G-ok") != 0) {
		say("FAIL: pipe from G: %s", buf);
		return 1;
	}
	say("ok");
	/* The tree runs on: the test ends it. */
	for (;;)
		pause();
}
