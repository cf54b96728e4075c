/* With a third argument "mixed", the child moves to a UTS namespace of its own (a tree
 * criu refuses to dump).
 * Runs in UTS and IPC namespaces of its own (the test starts it with `unshare -u -i`):
 * sets a host and domain name, changes IPC sysctls, and creates SysV objects with ids that
 * are not the first ones: a shm segment with a pattern (detached), another one kept
 * attached, a message queue holding three messages and a semaphore set with values. A
 * child shares it all. Writes "ready PID CHILD", waits for TRIGGER to exist, then checks
 * everything and writes "ok" or "FAIL: why" (the child's own check is its exit status). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODE "criu-rs-ns-node"
#define DOMAIN "criu-rs.example"
#define SHM_A 10000
#define SHM_B 8192

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

static int write_sysctl(const char *name, const char *value)
{
	char path[128];
	FILE *f;
	snprintf(path, sizeof(path), "/proc/sys/%s", name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(value, f);
	return fclose(f);
}

static int sysctl_is(const char *name, const char *want)
{
	char path[128], buf[128] = "";
	FILE *f;
	snprintf(path, sizeof(path), "/proc/sys/%s", name);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		return 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	/* kernel/sem separates with tabs */
	for (char *p = buf; *p; p++)
		if (*p == '\t')
			*p = ' ';
	return strcmp(buf, want) == 0;
}

static unsigned char pattern(int seg, size_t i)
{
	return (unsigned char)(i * 7 + seg * 13 + 3);
}

struct msgt {
	long mtype;
	char text[64];
};

static const char *texts[3] = { "first message", "2", "the third, longer than the others" };
static const long types[3] = { 5, 1, 9 };
static unsigned short semvals[4] = { 1, 2, 3, 42 };

static int names_ok(void)
{
	char node[128] = "", dom[128] = "";
	return gethostname(node, sizeof(node)) == 0 && getdomainname(dom, sizeof(dom)) == 0 &&
	       strcmp(node, NODE) == 0 && strcmp(dom, DOMAIN) == 0;
}

int main(int argc, char **argv)
{
	int shm_a, shm_b, mq, sem, tmp;
	unsigned char *a, *b;
	struct stat st;
	pid_t child;

	if (argc != 3 && argc != 4)
		return 2;
	report = argv[1];
	setsid(); /* its own session: restored without --shell-job */
	if (sethostname(NODE, strlen(NODE)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		die("names");
	if (write_sysctl("kernel/msgmnb", "12345") || write_sysctl("kernel/shmmni", "2048") ||
	    write_sysctl("kernel/sem", "200 6400 40 100") ||
	    write_sysctl("fs/mqueue/msg_default", "7"))
		die("sysctls");
	/* Used and removed first: the real objects do not get the first ids. */
	tmp = shmget(IPC_PRIVATE, 4096, 0600);
	shmctl(tmp, IPC_RMID, NULL);
	tmp = msgget(IPC_PRIVATE, 0600);
	msgctl(tmp, IPC_RMID, NULL);
	shm_a = shmget(0x5a5a, SHM_A, IPC_CREAT | 0640);
	shm_b = shmget(IPC_PRIVATE, SHM_B, 0600);
	if (shm_a < 0 || shm_b < 0)
		die("shmget");
	a = shmat(shm_a, NULL, 0);
	b = shmat(shm_b, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1)
		die("shmat");
	for (size_t i = 0; i < SHM_A; i++)
		a[i] = pattern(1, i);
	for (size_t i = 0; i < SHM_B; i++)
		b[i] = pattern(2, i);
	shmdt(a); /* segment A lives on unattached; B stays attached */
	mq = msgget(0x1234, IPC_CREAT | 0620);
	if (mq < 0)
		die("msgget");
	struct msqid_ds mds;
	if (msgctl(mq, IPC_STAT, &mds))
		die("msgctl");
	mds.msg_qbytes = 8000;
	if (msgctl(mq, IPC_SET, &mds))
		die("msgctl IPC_SET");
	for (int i = 0; i < 3; i++) {
		struct msgt m = { .mtype = types[i] };
		strcpy(m.text, texts[i]);
		if (msgsnd(mq, &m, strlen(texts[i]), IPC_NOWAIT))
			die("msgsnd");
	}
	sem = semget(IPC_PRIVATE, 4, 0600);
	if (sem < 0 || semctl(sem, 0, SETALL, semvals))
		die("sem");
	int sync[2];
	char byte = 0;
	if (pipe(sync))
		die("pipe");
	child = fork();
	if (child == 0) {
		if (argc == 4 && unshare(CLONE_NEWUTS))
			_exit(3);
		/* ready only once the child is where it stays */
		if (write(sync[1], &byte, 1) != 1)
			_exit(4);
		close(sync[0]);
		close(sync[1]);
		while (stat(argv[2], &st))
			usleep(20000);
		struct sembuf op = { .sem_num = 3, .sem_op = -2, .sem_flg = IPC_NOWAIT };
		/* the same names and set as its parent's */
		_exit(names_ok() && semop(sem, &op, 1) == 0 ? 0 : 1);
	}
	if (read(sync[0], &byte, 1) != 1)
		die("child sync");
	close(sync[0]);
	close(sync[1]);
	say("ready %d %d shm=%d,%d msg=%d sem=%d", getpid(), child, shm_a, shm_b, mq, sem);
	while (stat(argv[2], &st))
		usleep(20000);

	int status;
	const char *bad = NULL;
	char why[160];
	if (!names_ok())
		bad = "host or domain name";
	else if (!sysctl_is("kernel/msgmnb", "12345") || !sysctl_is("kernel/shmmni", "2048") ||
		 !sysctl_is("kernel/sem", "200 6400 40 100") ||
		 !sysctl_is("fs/mqueue/msg_default", "7"))
		bad = "IPC sysctls";
	if (!bad) {
		struct shmid_ds sds;
		a = shmat(shm_a, NULL, SHM_RDONLY);
		if (shmctl(shm_a, IPC_STAT, &sds) || sds.shm_segsz != SHM_A || sds.shm_perm.__key != 0x5a5a ||
		    (sds.shm_perm.mode & 0777) != 0640 || a == (void *)-1)
			bad = "segment A's id, size, key or mode";
		for (size_t i = 0; !bad && i < SHM_A; i++)
			if (a[i] != pattern(1, i))
				bad = "segment A's contents";
		for (size_t i = 0; !bad && i < SHM_B; i++)
			if (b[i] != pattern(2, i))
				bad = "segment B's contents (attached)";
		if (!bad) {
			b[0] ^= 0xff; /* still writable, still the segment */
			unsigned char *b2 = shmat(shm_b, NULL, SHM_RDONLY);
			if (b2 == (void *)-1 || b2[0] != (unsigned char)(pattern(2, 0) ^ 0xff))
				bad = "segment B is not shared with its id";
		}
	}
	if (!bad) {
		if (msgctl(mq, IPC_STAT, &mds) || mds.msg_qnum != 3 || mds.msg_qbytes != 8000 ||
		    mds.msg_perm.__key != 0x1234 || (mds.msg_perm.mode & 0777) != 0620)
			bad = "queue's id, key, mode, qbytes or count";
		for (int i = 0; !bad && i < 3; i++) {
			struct msgt m;
			ssize_t n = msgrcv(mq, &m, sizeof(m.text), 0, IPC_NOWAIT);
			if (n != (ssize_t)strlen(texts[i]) || m.mtype != types[i] ||
			    memcmp(m.text, texts[i], n)) {
				snprintf(why, sizeof(why), "message %d (n=%zd)", i, n);
				bad = why;
			}
		}
	}
	if (!bad && waitpid(child, &status, 0) != child)
		bad = "waiting for the child";
	else if (!bad && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		bad = "the child's names or semaphore";
	if (!bad) {
		unsigned short v[4];
		if (semctl(sem, 0, GETALL, v) || v[0] != 1 || v[1] != 2 || v[2] != 3 || v[3] != 40)
			bad = "semaphore values";
	}
	if (bad)
		say("FAIL: %s", bad);
	else
		say("ok");
	return 0;
}
