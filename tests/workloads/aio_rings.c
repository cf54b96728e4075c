/* AIO rings (io_setup) through checkpoint/restore, checked by the workload itself.
 *
 * usage: aio_rings WORKDIR
 * Sets up three rings: "idle" (io_setup(1), never used), "busy" (io_setup(64): nr+2 writes
 * to /dev/null submitted, every second one reaped, so its tail has wrapped behind its head
 * and nr/2 events wait unreaped) and "fresh" (io_setup(8): 3 writes submitted, 1 reaped,
 * tail ahead of head). Each request carries its sequence number in aio_data. Writes
 * "ready" to WORKDIR/report, waits for WORKDIR/go, then checks every ring: same address,
 * same nr/head/tail, io_getevents on the idle one gives 0, the waiting events come out in
 * order with their numbers and results, and new requests complete at the tail. Writes
 * "result ok" or "result bad <what>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct aio_ring {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
	struct io_event io_events[0];
};

struct ring {
	const char *name;
	aio_context_t ctx;
	unsigned nr, head, tail;
	unsigned long long next_data; /* aio_data of the next event to reap */
	unsigned long long submitted;
};

static char report[4096];
static int null_fd;
static char byte = 'x';

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

static void bad(const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	say("result bad %s", what);
	exit(1);
}

static volatile struct aio_ring *hdr(struct ring *r)
{
	return (volatile struct aio_ring *)r->ctx;
}

static void submit(struct ring *r)
{
	struct iocb cb, *cbp = &cb;
	memset(&cb, 0, sizeof(cb));
	cb.aio_fildes = null_fd;
	cb.aio_buf = (unsigned long)&byte;
	cb.aio_nbytes = 1;
	cb.aio_lio_opcode = IOCB_CMD_PWRITE;
	cb.aio_data = r->submitted;
	if (syscall(__NR_io_submit, r->ctx, 1, &cbp) != 1)
		bad("%s: io_submit #%llu: %m", r->name, r->submitted);
	r->submitted++;
}

static void reap(struct ring *r)
{
	struct io_event ev;
	struct timespec ts = { 1, 0 };
	long n = syscall(__NR_io_getevents, r->ctx, 1, 1, &ev, &ts);
	if (n != 1)
		bad("%s: io_getevents gave %ld (%m), expected event %llu", r->name, n, r->next_data);
	if (ev.data != r->next_data || ev.res != 1)
		bad("%s: event data %llu res %lld, expected %llu res 1", r->name,
		    (unsigned long long)ev.data, (long long)ev.res, r->next_data);
	r->next_data++;
}

static void setup(struct ring *r, const char *name, unsigned nr_events)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	if (syscall(__NR_io_setup, nr_events, &r->ctx) < 0)
		bad("%s: io_setup(%u): %m", name, nr_events);
}

static void snapshot(struct ring *r)
{
	r->nr = hdr(r)->nr;
	r->head = hdr(r)->head;
	r->tail = hdr(r)->tail;
}

static void check(struct ring *r)
{
	unsigned nr = hdr(r)->nr, head = hdr(r)->head, tail = hdr(r)->tail;
	if (nr != r->nr || head != r->head || tail != r->tail)
		bad("%s: nr/head/tail %u/%u/%u, before the dump %u/%u/%u", r->name, nr, head, tail,
		    r->nr, r->head, r->tail);
	/* the events waiting, in order, then new ones at the tail */
	while (r->next_data < r->submitted)
		reap(r);
	for (int i = 0; i < 2 * (int)nr; i++) {
		submit(r);
		reap(r);
	}
	submit(r);
	if (hdr(r)->tail != (r->tail + 2 * nr + 1) % nr)
		bad("%s: tail %u after new requests", r->name, hdr(r)->tail);
	reap(r);
}

int main(int argc, char **argv)
{
	struct ring idle, busy, fresh;
	char go[4096];

	if (argc != 2)
		return 2;
	snprintf(report, sizeof(report), "%s/report", argv[1]);
	snprintf(go, sizeof(go), "%s/go", argv[1]);
	null_fd = open("/dev/null", O_WRONLY);
	if (null_fd < 0)
		bad("open /dev/null: %m");

	setup(&idle, "idle", 1);
	setup(&busy, "busy", 64);
	setup(&fresh, "fresh", 8);
	snapshot(&idle);
	unsigned nr = hdr(&busy)->nr;
	for (unsigned i = 0; i < nr + 2; i++) {
		submit(&busy);
		if (i % 2)
			reap(&busy);
	}
	for (int i = 0; i < 3; i++)
		submit(&fresh);
	reap(&fresh);
	snapshot(&busy);
	snapshot(&fresh);
	if (busy.tail >= busy.head || fresh.tail <= fresh.head)
		bad("setup: busy %u/%u fresh %u/%u", busy.head, busy.tail, fresh.head, fresh.tail);

	say("ready %u/%u/%u %u/%u/%u", busy.nr, busy.head, busy.tail, fresh.nr, fresh.head,
	    fresh.tail);
	while (access(go, F_OK) != 0)
		usleep(10000);

	struct io_event ev;
	struct timespec zero = { 0, 0 };
	long n = syscall(__NR_io_getevents, idle.ctx, 0, 1, &ev, &zero);
	if (n != 0)
		bad("idle: io_getevents gave %ld (%m)", n);
	check(&idle);
	check(&busy);
	check(&fresh);
	say("result ok");
	return 0;
}
