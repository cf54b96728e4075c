/* timerfds across a dump and restore (test timerfd_restore).
 *
 * Usage: timerfd WORKDIR. Writes WORKDIR/report. Arms, without ever reading them before the
 * restore:
 *   - P: periodic CLOCK_MONOTONIC, TFD_NONBLOCK, period 100 ms from T0;
 *   - O: one-shot CLOCK_MONOTONIC due at T0 + 1.5 s (pending at the dump);
 *   - F: one-shot CLOCK_BOOTTIME of 20 ms, fired before the dump, its tick unread;
 *   - A: CLOCK_REALTIME, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, due at R0 + 3 s.
 * Reports "ready", waits for WORKDIR/go, then checks what the kernel would answer had the
 * process only been frozen in between: P holds every expiry since T0 and keeps its phase, O
 * and A fire at their deadlines (at once with one tick if already past), F gives its tick.
 * Reports "result ok" or "result FAIL <what>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define PERIOD (100 * MS)

static char report[4096];

static void say(const char *fmt, ...)
{
	FILE *f = fopen(report, "a");
	va_list ap;
	if (!f)
		exit(90);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static int64_t now(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static struct timespec ts(int64_t ns)
{
	struct timespec t = { ns / 1000000000LL, ns % 1000000000LL };
	return t;
}

static int arm(int clock, int flags, int64_t value, int64_t interval, int setflags)
{
	int fd = timerfd_create(clock, flags);
	struct itimerspec it = { .it_value = ts(value), .it_interval = ts(interval) };
	if (fd < 0 || timerfd_settime(fd, setflags, &it, NULL))
		exit(3);
	return fd;
}

/* Blocks until FD is readable (at most MS_MAX), then reads it: the ticks, or -errno. */
static int64_t wait_read(int fd, int ms_max)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t n;
	if (poll(&p, 1, ms_max) != 1)
		return -ETIMEDOUT;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return -errno;
	return n;
}

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			say("result FAIL " __VA_ARGS__);                                     \
			return 1;                                                            \
		}                                                                            \
	} while (0)

static int check(int p, int o, int f, int a, int64_t t0, int64_t r0)
{
	uint64_t n;
	struct itimerspec cur;

	/* F: its unread tick, at once (and P is still nonblocking). */
	CHECK(read(f, &n, sizeof(n)) == sizeof(n) && n == 1, "F read %s %llu", strerror(errno),
	      (unsigned long long)n);

	/* P: every expiry since T0 (one either way for the instants of the reads). */
	int64_t t = now(CLOCK_MONOTONIC);
	CHECK(read(p, &n, sizeof(n)) == sizeof(n), "P read: %s", strerror(errno));
	int64_t want = (t - t0) / PERIOD;
	CHECK((int64_t)n >= want - 1 && (int64_t)n <= want + 1, "P gave %llu ticks, want %lld",
	      (unsigned long long)n, (long long)want);
	CHECK(fcntl(p, F_GETFL) & O_NONBLOCK, "P lost TFD_NONBLOCK");
	CHECK(read(p, &n, sizeof(n)) == -1 && errno == EAGAIN, "P second read: %s",
	      strerror(errno));
	/* Its next expiries keep the period and the phase of T0. */
	for (int i = 0; i < 3; i++) {
		CHECK(wait_read(p, 1000) == 1, "P tick %d missing", i);
		int64_t phase = (now(CLOCK_MONOTONIC) - t0) % PERIOD;
		CHECK(phase < 30 * MS, "P fired %lld ms off its phase", (long long)(phase / MS));
	}

	/* A: same absolute deadline and flags. */
	CHECK(timerfd_gettime(a, &cur) == 0, "A gettime: %s", strerror(errno));
	int64_t left = cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec;
	int64_t a_due = r0 + 3000 * MS, rnow = now(CLOCK_REALTIME);
	if (a_due > rnow + 10 * MS)
		CHECK(llabs(left - (a_due - rnow)) < 10 * MS, "A has %lld ms left, want %lld",
		      (long long)(left / MS), (long long)((a_due - rnow) / MS));
	CHECK(wait_read(a, 10000) == 1, "A did not fire once");
	CHECK(now(CLOCK_REALTIME) >= a_due - 5 * MS, "A fired early");

	/* O: at its deadline, once. */
	int64_t o_due = t0 + 1500 * MS;
	CHECK(wait_read(o, 10000) == 1, "O did not fire once");
	CHECK(now(CLOCK_MONOTONIC) >= o_due - 5 * MS, "O fired early");
	CHECK(timerfd_gettime(o, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
	      "O still armed");
	return 0;
}

int main(int argc, char **argv)
{
	char go[4096];
	if (argc != 2)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	/* Its own session: a restore without --shell-job recreates only sessions of the tree. */
	setsid();

	int64_t t0 = now(CLOCK_MONOTONIC), r0 = now(CLOCK_REALTIME);
	int p = arm(CLOCK_MONOTONIC, TFD_NONBLOCK, PERIOD, PERIOD, 0);
	int o = arm(CLOCK_MONOTONIC, 0, 1500 * MS, 0, 0);
	int f = arm(CLOCK_BOOTTIME, TFD_NONBLOCK, 20 * MS, 0, 0);
	int a = arm(CLOCK_REALTIME, 0, r0 + 3000 * MS, 0,
		    TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
	usleep(50000);
	say("ready");
	while (access(go, F_OK))
		usleep(20000);
	if (check(p, o, f, a, t0, r0) == 0)
		say("result ok");
	for (;;)
		pause();
}
