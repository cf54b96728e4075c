/* io_uring rings through checkpoint/restore, checked by the workload itself (liburing).
 *
 * usage: io_uring REPORT MODE
 *   MODE: plain | sqpoll | single | inflight | registered | regpipe | eventfd | fork |
 *         forkfd | restricted | nosqarray | forkissuer
 * Before the dump: ROUNDS rounds of a file write + read and a pipe write + read through the
 * ring, each CQE counted and each byte checked; then two NOPs completed and left unreaped
 * (user_data 101, 102) and one NOP prepared but not submitted (user_data 103). "inflight"
 * also leaves a read on an idle pipe in flight; "registered" registers a file table
 * (file, empty slot, socket) and a buffer table (buffer, empty slot, buffer) and each
 * round also writes and reads the file and writes the socket through them (fixed files,
 * WRITE_FIXED/READ_FIXED); "regpipe" registers a pipe end, "eventfd" an eventfd. Writes
 * "ready <pid>" to REPORT and waits for REPORT.go. After it: the two CQEs are still there,
 * the kernel's SQ head and CQ tail are where they were, the prepared NOP submits and
 * completes, and more rounds work with the same counters going on. Writes "ok" or
 * "bad <what>"; then leaves two CQEs and an SQE again, writes "again <pid>" and waits for
 * REPORT.go2 (then REPORT.go3, ...) for the next dump and restore, until killed.
 * "fork" forks a child after the first rounds: from then on the child
 * submits every request (its rounds' file and pipe I/O into its own buffers, the two NOPs
 * and the prepared one) and the parent reaps and checks the CQEs, in turns through two
 * pipes; the child checks its data. "forkfd" forks a child that unmaps the ring and only
 * holds its fd: after the restore it must still be the parent's ring (same inode, same
 * counters in its fdinfo). The ready line is then "ready <pid> <child pid>".
 * "restricted" sets the ring up disabled, restricts it to the opcodes and flags used and
 * enables it; "nosqarray" also keeps a second ring set up with IORING_SETUP_NO_SQARRAY
 * (raw system calls), through which two NOPs went. "forkissuer" sets up a disabled
 * SINGLE_ISSUER + DEFER_TASKRUN ring and forks: the parent only holds and maps it, the
 * child enables it (so the child is its submitter) and does everything else, naming the
 * parent in its lines ("ready <parent> <child>", "again <parent>"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUNDS 300

static const char *report;
static struct io_uring ring;
static int file_fd, pipe_fds[2], idle_pipe[2], socks[2];
static unsigned submitted, completed, per_round = 4;
static int registered;
/* fork modes: the child's pid, the pipes to it and back, whether this is the child */
static pid_t child;
static int to_child[2], to_parent[2], forkfd;
/* the registered buffers: slots 0 and 2 (slot 1 is empty) */
static char fixed_bufs[2][4096] __attribute__((aligned(4096)));

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

static void bad(const char *fmt, ...)
{
	char line[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	say("bad %s", line);
	for (;;)
		pause();
}

static struct io_uring_sqe *sqe(void)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	if (!s)
		bad("no sqe");
	return s;
}

/* With SQPOLL the kernel thread posts a batch's CQEs before it advances the SQ head, and
 * liburing's submit counts every SQE the head has not passed yet: wait (bounded) until the
 * head has caught up with what was flushed, so counts and head checks are exact. */
static void sq_settle(void)
{
	if (!(ring.flags & IORING_SETUP_SQPOLL))
		return;
	for (int i = 0; i < 200000; i++) {
		if (io_uring_smp_load_acquire(ring.sq.khead) == ring.sq.sqe_head)
			return;
		if (i > 1000)
			usleep(10);
	}
	bad("sq head %u stuck behind %u", *ring.sq.khead, ring.sq.sqe_head);
}

/* The same from the kernel's side only (the parent of the fork modes, whose own SQ state is
 * not the submitter's): the SQ thread has taken everything published. */
static void sq_settle_kernel(void)
{
	for (int i = 0; i < 200000; i++) {
		if (io_uring_smp_load_acquire(ring.sq.khead) == io_uring_smp_load_acquire(ring.sq.ktail))
			return;
		if (i > 1000)
			usleep(10);
	}
	bad("sq head %u stuck behind tail %u", *ring.sq.khead, *ring.sq.ktail);
}

/* Submits what is prepared and waits for `want` CQEs, checking each one's result. */
static void run(unsigned n, unsigned want, const int *results, const unsigned long long *ids)
{
	sq_settle();
	int r = io_uring_submit_and_wait(&ring, want);
	if (r != (int)n)
		bad("submit gave %d of %u", r, n);
	submitted += n;
	for (unsigned i = 0; i < want; i++) {
		struct io_uring_cqe *c;
		if (io_uring_wait_cqe(&ring, &c))
			bad("wait_cqe");
		unsigned j = 0;
		while (j < want && ids[j] != c->user_data)
			j++;
		if (j == want || c->res != results[j])
			bad("cqe %llu res %d", (unsigned long long)c->user_data, c->res);
		io_uring_cqe_seen(&ring, c);
		completed++;
	}
}

static void round_trip(unsigned k)
{
	char out[64], in[64] = {0}, pin[64] = {0};
	int len = snprintf(out, sizeof(out), "round %u of the ring", k);
	/* file: write then read back (linked so the read sees the write) */
	struct io_uring_sqe *s = sqe();
	io_uring_prep_write(s, file_fd, out, len, (k % 16) * 64);
	s->flags |= IOSQE_IO_LINK;
	s->user_data = 1;
	s = sqe();
	io_uring_prep_read(s, file_fd, in, len, (k % 16) * 64);
	s->user_data = 2;
	int res[2] = {len, len};
	unsigned long long ids[2] = {1, 2};
	run(2, 2, res, ids);
	if (memcmp(in, out, len))
		bad("file data round %u", k);
	/* pipe: write then read */
	s = sqe();
	io_uring_prep_write(s, pipe_fds[1], out, len, 0);
	s->flags |= IOSQE_IO_LINK;
	s->user_data = 3;
	s = sqe();
	io_uring_prep_read(s, pipe_fds[0], pin, len, 0);
	s->user_data = 4;
	unsigned long long pids[2] = {3, 4};
	run(2, 2, res, pids);
	if (memcmp(pin, out, len))
		bad("pipe data round %u", k);
	if (!registered)
		return;
	/* fixed file slot 0 with fixed buffers 0 (write) and 2 (read), past the plain rounds */
	memcpy(fixed_bufs[0], out, len);
	memset(fixed_bufs[1], 0, len);
	s = sqe();
	io_uring_prep_write_fixed(s, 0, fixed_bufs[0], len, 8192 + (k % 16) * 64, 0);
	s->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
	s->user_data = 5;
	s = sqe();
	io_uring_prep_read_fixed(s, 0, fixed_bufs[1], len, 8192 + (k % 16) * 64, 2);
	s->flags |= IOSQE_FIXED_FILE;
	s->user_data = 6;
	unsigned long long fids[2] = {5, 6};
	run(2, 2, res, fids);
	if (memcmp(fixed_bufs[1], out, len))
		bad("fixed file data round %u", k);
	/* the socket through fixed file slot 2, read back from its peer */
	char sin[64] = {0};
	s = sqe();
	io_uring_prep_write(s, 2, out, len, 0);
	s->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
	s->user_data = 7;
	s = sqe();
	io_uring_prep_read(s, socks[1], sin, len, 0);
	s->user_data = 8;
	unsigned long long sids[2] = {7, 8};
	run(2, 2, res, sids);
	if (memcmp(sin, out, len))
		bad("socket data round %u", k);
}


/* fork modes: one message each way (a command or an answer, 4 bytes) */
static void send_u32(int fd, unsigned v)
{
	if (write(fd, &v, 4) != 4)
		bad("pipe write");
}

static unsigned recv_u32(int fd)
{
	unsigned v;
	ssize_t n;
	do
		n = read(fd, &v, 4);
	while (n < 0 && errno == EINTR);
	if (n != 4)
		bad("pipe read %zd", n);
	return v;
}

enum { CMD_ROUND = 0, CMD_NOPS = 1u << 30, CMD_PREPARED = 2u << 30, CMD_CHECK = 3u << 30 };

/* The child (fork): submits what the parent asks for, the parent reaps; then
 * (CMD_CHECK) checks the data its reads brought. Never returns. */
static void child_loop(void)
{
	static char out[64], in[64], pin[64];
	int len = 0;
	for (;;) {
		unsigned cmd = recv_u32(to_child[0]);
		unsigned k = cmd & ~(3u << 30);
		unsigned n = 0;
		switch (cmd & (3u << 30)) {
		case CMD_ROUND: {
			len = snprintf(out, sizeof(out), "child round %u of the ring", k);
			memset(in, 0, sizeof(in));
			memset(pin, 0, sizeof(pin));
			struct io_uring_sqe *s = sqe();
			io_uring_prep_write(s, file_fd, out, len, (k % 16) * 64);
			s->flags |= IOSQE_IO_LINK;
			s->user_data = 1;
			s = sqe();
			io_uring_prep_read(s, file_fd, in, len, (k % 16) * 64);
			s->user_data = 2;
			s = sqe();
			io_uring_prep_write(s, pipe_fds[1], out, len, 0);
			s->flags |= IOSQE_IO_LINK;
			s->user_data = 3;
			s = sqe();
			io_uring_prep_read(s, pipe_fds[0], pin, len, 0);
			s->user_data = 4;
			n = 4;
			break;
		}
		case CMD_NOPS:
			for (int i = 0; i < 2; i++) {
				struct io_uring_sqe *s = sqe();
				io_uring_prep_nop(s);
				s->user_data = 101 + i;
			}
			n = 2;
			break;
		case CMD_PREPARED:
			/* the NOP prepared before the dump (user_data 103) */
			n = 1;
			break;
		case CMD_CHECK:
			send_u32(to_parent[1], memcmp(in, out, len) || memcmp(pin, out, len));
			continue;
		}
		sq_settle();
		int r = io_uring_submit(&ring);
		send_u32(to_parent[1], r == (int)n ? 0 : 1000 + r);
		if (cmd == CMD_NOPS) {
			/* the one SQE written, not submitted */
			sq_settle();
			struct io_uring_sqe *s = sqe();
			io_uring_prep_nop(s);
			s->user_data = 103;
		}
	}
}

/* The parent's side of one child request: ask, then reap `want` CQEs (ids and results). */
static void by_child(unsigned cmd, unsigned want, const int *results, const unsigned long long *ids)
{
	send_u32(to_child[1], cmd);
	unsigned r = recv_u32(to_parent[0]);
	if (r)
		bad("child submit %u: %u", cmd, r);
	submitted += want;
	for (unsigned i = 0; i < want; i++) {
		struct io_uring_cqe *c;
		if (io_uring_wait_cqe(&ring, &c))
			bad("wait_cqe (child's)");
		unsigned j = 0;
		while (j < want && ids[j] != c->user_data)
			j++;
		if (j == want || c->res != results[j])
			bad("child's cqe %llu res %d", (unsigned long long)c->user_data, c->res);
		io_uring_cqe_seen(&ring, c);
		completed++;
	}
}

/* A round through the child: its file and pipe I/O reaped here, its data checked there. */
static void child_round(unsigned k)
{
	char out[64];
	int len = snprintf(out, sizeof(out), "child round %u of the ring", k);
	int res[4] = {len, len, len, len};
	unsigned long long ids[4] = {1, 2, 3, 4};
	by_child(CMD_ROUND | k, 4, res, ids);
	send_u32(to_child[1], CMD_CHECK);
	if (recv_u32(to_parent[0]))
		bad("child data round %u", k);
}

/* forkfd: the child keeps the ring's fd only; it answers each request with its ring's inode
 * and the SqHead its fdinfo shows. */
static void fd_holder_loop(int rfd)
{
	if (munmap(ring.sq.ring_ptr, ring.sq.ring_sz) || munmap(ring.sq.sqes, ring.sq.ring_entries * sizeof(struct io_uring_sqe)))
		bad("munmap in child");
	for (;;) {
		recv_u32(to_child[0]);
		struct stat st;
		char path[64], line[128];
		unsigned head = ~0u;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", rfd);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "SqHead: %u", &head) == 1)
				break;
		if (f)
			fclose(f);
		send_u32(to_parent[1], fstat(rfd, &st) ? 0 : (unsigned)st.st_ino);
		send_u32(to_parent[1], head);
	}
}

/* forkfd: the child's fd must be this ring (same inode, same counters). */
static void check_fd_holder(void)
{
	struct stat st;
	if (fstat(ring.ring_fd, &st))
		bad("fstat ring");
	send_u32(to_child[1], 0);
	unsigned ino = recv_u32(to_parent[0]), head = recv_u32(to_parent[0]);
	if (ino != (unsigned)st.st_ino || head != *ring.sq.khead)
		bad("child's ring fd: inode %u (ours %u), SqHead %u (ours %u)", ino, (unsigned)st.st_ino, head, *ring.sq.khead);
}

static void start_child(const char *mode)
{
	if (pipe(to_child) || pipe(to_parent))
		bad("pipes");
	child = fork();
	if (child < 0)
		bad("fork");
	if (child == 0) {
		if (forkfd)
			fd_holder_loop(ring.ring_fd);
		child_loop();
	}
	(void)mode;
}


#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif

/* nosqarray: a second ring without an SQ array (SQE index = ring position), two NOPs
 * submitted at positions 0 and 1 and reaped, through raw system calls. */
static int no_sqarray_ring(void)
{
	struct io_uring_params q;
	memset(&q, 0, sizeof(q));
	q.flags = IORING_SETUP_NO_SQARRAY;
	int fd = syscall(__NR_io_uring_setup, 4, &q);
	if (fd < 0)
		bad("io_uring_setup(NO_SQARRAY): %s", strerror(errno));
	size_t rlen = q.cq_off.cqes + q.cq_entries * sizeof(struct io_uring_cqe);
	char *r = mmap(NULL, rlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
	struct io_uring_sqe *sq = mmap(NULL, q.sq_entries * sizeof(*sq), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (r == MAP_FAILED || sq == MAP_FAILED)
		bad("mmap NO_SQARRAY ring");
	for (int i = 0; i < 2; i++) {
		memset(&sq[i], 0, sizeof(sq[i]));
		sq[i].opcode = IORING_OP_NOP;
		sq[i].user_data = 300 + i;
	}
	io_uring_smp_store_release((unsigned *)(r + q.sq_off.tail), 2);
	if (syscall(__NR_io_uring_enter, fd, 2, 2, IORING_ENTER_GETEVENTS, NULL, 0) != 2)
		bad("io_uring_enter(NO_SQARRAY): %s", strerror(errno));
	if (*(unsigned *)(r + q.cq_off.tail) != 2)
		bad("NO_SQARRAY ring: %u CQEs", *(unsigned *)(r + q.cq_off.tail));
	io_uring_smp_store_release((unsigned *)(r + q.cq_off.head), 2);
	return fd;
}

/* restricted: the opcodes and SQE flags the rounds use, nothing else (no registrations). */
static void restrict_ring(void)
{
	struct io_uring_restriction res[4];
	memset(res, 0, sizeof(res));
	unsigned char ops[3] = {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_NOP};
	for (int i = 0; i < 3; i++) {
		res[i].opcode = IORING_RESTRICTION_SQE_OP;
		res[i].sqe_op = ops[i];
	}
	res[3].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	res[3].sqe_flags = IOSQE_IO_LINK;
	/* raw calls: Debian 12's liburing.so lacks the two wrappers its header declares */
	if (syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_RESTRICTIONS, res, 4))
		bad("register_restrictions: %s", strerror(errno));
	if (syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0))
		bad("enable_rings: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	report = argv[1];
	const char *mode = argv[2];
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int forked = !strcmp(mode, "fork") || !strcmp(mode, "forkfd");
	forkfd = !strcmp(mode, "forkfd");
	if (!strcmp(mode, "sqpoll")) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 100;
	} else if (!strcmp(mode, "single")) {
		p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	} else if (!strcmp(mode, "restricted")) {
		p.flags = IORING_SETUP_R_DISABLED;
	} else if (!strcmp(mode, "forkissuer")) {
		p.flags = IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	}
	int r = io_uring_queue_init_params(8, &ring, &p);
	if (r)
		bad("queue_init %d", r);
	if (!strcmp(mode, "restricted"))
		restrict_ring();
	int parent = getpid();
	if (!strcmp(mode, "forkissuer")) {
		child = fork();
		if (child < 0)
			bad("fork");
		if (child > 0)
			for (;;)
				pause();
		child = getpid();
		/* enabling makes this task the ring's single issuer */
		if (syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0))
			bad("enable_rings: %s", strerror(errno));
	}
	if (!strcmp(mode, "nosqarray"))
		no_sqarray_ring();
	char path[4096];
	snprintf(path, sizeof(path), "%s.data", report);
	file_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file_fd < 0 || pipe(pipe_fds) || pipe(idle_pipe))
		bad("setup fds");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, socks))
		bad("socketpair");
	if (!strcmp(mode, "registered")) {
		int table[3] = {file_fd, -1, socks[0]};
		struct iovec iov[3] = {{fixed_bufs[0], 4096}, {NULL, 0}, {fixed_bufs[1], 4096}};
		if (io_uring_register_files(&ring, table, 3))
			bad("register_files");
		if (io_uring_register_buffers(&ring, iov, 3))
			bad("register_buffers");
		registered = 1;
		per_round = 8;
	}
	if (!strcmp(mode, "regpipe") && io_uring_register_files(&ring, pipe_fds, 1))
		bad("register_files (pipe)");
	if (!strcmp(mode, "eventfd")) {
		int e = eventfd(0, 0);
		if (e < 0 || io_uring_register_eventfd(&ring, e))
			bad("register_eventfd");
	}
	for (unsigned k = 0; k < ROUNDS; k++)
		round_trip(k);
	if (forked) {
		/* the child starts from the parent's SQ state: nothing is pending */
		start_child(mode);
		if (!forkfd)
			per_round = 4;
	}
	int via_child = forked && !forkfd;
	char idle_buf[16] = {0};
	if (!strcmp(mode, "inflight")) {
		struct io_uring_sqe *s = sqe();
		io_uring_prep_read(s, idle_pipe[0], idle_buf, 5, 0);
		s->user_data = 200;
		if (io_uring_submit(&ring) != 1)
			bad("submit idle read");
		submitted++;
	}
	/* Each phase (one per dump and restore): two completions left in the CQ ring and one
	 * SQE written, not submitted; "ready" (first) or "again" (later phases) and a wait for
	 * REPORT.go (REPORT.go2, ...); then the checks and more rounds. */
	for (unsigned phase = 0;; phase++) {
		if (via_child) {
			/* the child submits them and prepares 103; they stay in the CQ ring */
			send_u32(to_child[1], CMD_NOPS);
			if (recv_u32(to_parent[0]))
				bad("child nops");
			submitted += 2;
			while (io_uring_cq_ready(&ring) < 2)
				usleep(1000);
		} else {
			for (int i = 0; i < 2; i++) {
				struct io_uring_sqe *s = sqe();
				io_uring_prep_nop(s);
				s->user_data = 101 + i;
			}
			if (io_uring_submit_and_wait(&ring, 2) != 2)
				bad("nops");
			submitted += 2;
			sq_settle();
			/* and one SQE written, not submitted */
			struct io_uring_sqe *s = sqe();
			io_uring_prep_nop(s);
			s->user_data = 103;
		}
		sq_settle_kernel();
		unsigned head0 = *ring.sq.khead, ctail0 = *ring.cq.ktail;
		if (forkfd)
			check_fd_holder();
		if (phase == 0 && child)
			say("ready %d %d", parent, child);
		else if (phase == 0)
			say("ready %d", parent);
		else
			say("again %d", parent);
		char go[4200];
		if (phase == 0)
			snprintf(go, sizeof(go), "%s.go", report);
		else
			snprintf(go, sizeof(go), "%s.go%u", report, phase + 1);
		struct stat st;
		while (stat(go, &st))
			usleep(10000);

		if (*ring.sq.khead != head0 || *ring.cq.ktail != ctail0)
			bad("counters sq head %u/%u cq tail %u/%u", *ring.sq.khead, head0, *ring.cq.ktail, ctail0);
		if (io_uring_cq_ready(&ring) != 2)
			bad("%u cqes ready, not 2", io_uring_cq_ready(&ring));
		for (int i = 0; i < 2; i++) {
			struct io_uring_cqe *c;
			if (io_uring_peek_cqe(&ring, &c) || c->user_data != 101ULL + i || c->res)
				bad("kept cqe %d", i);
			io_uring_cqe_seen(&ring, c);
		}
		if (!strcmp(mode, "inflight") && phase == 0) {
			/* still the same process (the dump was refused): finish the read */
			if (write(idle_pipe[1], "hello", 5) != 5)
				bad("idle write");
			struct io_uring_cqe *c;
			if (io_uring_wait_cqe(&ring, &c) || c->user_data != 200 || c->res != 5 || memcmp(idle_buf, "hello", 5))
				bad("idle read");
			io_uring_cqe_seen(&ring, c);
		}
		if (forkfd)
			check_fd_holder();
		int zero = 0;
		unsigned long long id = 103;
		if (via_child)
			by_child(CMD_PREPARED, 1, &zero, &id);
		else
			run(1, 1, &zero, &id);
		for (unsigned k = 0; k < ROUNDS; k++) {
			if (via_child)
				child_round(ROUNDS + k);
			else
				round_trip(ROUNDS + k);
		}
		if (via_child)
			sq_settle_kernel();
		else
			sq_settle();
		if (*ring.sq.khead != head0 + 1 + per_round * ROUNDS)
			bad("sq head %u after", *ring.sq.khead);
		say("ok %u %u", submitted, completed);
	}
}
