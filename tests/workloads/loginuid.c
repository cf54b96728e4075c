/* The audit login uid through checkpoint/restore, checked by the workload itself.
 *
 * usage: loginuid WORKDIR VALUE
 * Unsets its /proc/self/loginuid, sets it to VALUE, writes "ready" to WORKDIR/report
 * (or "unsupported <why>" when the kernel has no loginuid), waits for WORKDIR/go, then
 * reads it back: "result ok" when it is VALUE, else "result bad <what>". */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char report[4096];

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

static int set(unsigned v)
{
	char buf[16];
	int fd = open("/proc/self/loginuid", O_WRONLY);
	if (fd < 0)
		return -1;
	int n = snprintf(buf, sizeof(buf), "%u", v);
	int r = write(fd, buf, n) == n ? 0 : -1;
	close(fd);
	return r;
}

static long get(void)
{
	char buf[16] = { 0 };
	int fd = open("/proc/self/loginuid", O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
		return -1;
	close(fd);
	return strtol(buf, NULL, 10);
}

int main(int argc, char **argv)
{
	char go[4096];
	if (argc != 3)
		return 2;
	unsigned value = strtoul(argv[2], NULL, 10);
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	if (access("/proc/self/loginuid", F_OK)) {
		say("unsupported no /proc/self/loginuid");
		return 0;
	}
	if (set(4294967295u) || set(value) || get() != value) {
		say("result bad setting the loginuid to %u: %m (now %ld)", value, get());
		return 1;
	}
	say("ready");
	while (access(go, F_OK) != 0)
		usleep(10000);
	long now = get();
	if (now != value)
		say("result bad loginuid %ld after the restore, %u before", now, value);
	else
		say("result ok");
	return 0;
}
