/* Plugins that name tasks by pid, in a tree whose root is pid 1 of its own pid namespace
 * (run below `unshare --pid --fork`), or in the caller's namespace (then the checks are the
 * same, with the pids of that namespace).
 *
 * usage: pidns_plugins REPORT TRIGGER
 * The root (this process) holds:
 *   - a pidfd of its child C (which sleeps);
 *   - a datagram socket with SO_PASSCRED holding a message C sent (its credentials);
 *   - a datagram socket with SO_PASSCRED and SO_PASSPIDFD holding a message from a child
 *     E that exited (and was reaped) before the dump;
 *   - a datagram socket holding, in flight only, a pidfd of a child X that exited and was
 *     reaped;
 *   - an epoll watching the socket C wrote to;
 *   - an io_uring ring (liburing) through which a NOP completed;
 *   - a POSIX message queue holding a message, with a SIGUSR2 notification registered.
 * Writes "ready C E X" (pids as this namespace sees them) to REPORT and waits for TRIGGER.
 * After the restore it checks each: the epoll reports the socket; C's message carries C's
 * pid; E's message carries the pid of a process that has exited (not C, not us, no live
 * process), and its SCM_PIDFD is an exited pidfd; the pidfd in flight is an exited pidfd;
 * a NOP completes through the ring; the queued message is there and, the queue empty, a new
 * message raises the notification; the pidfd of C kills C and waitid on it reports C. Then
 * writes "ok E'" (E' the pid E's message names now) or "bad <what>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

static const char *report;

static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	int fd = open(report, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0)
		_exit(3);
	dprintf(fd, "%s\n", line);
	close(fd);
}

static void bad(const char *fmt, ...)
{
	char line[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	say("bad %s (errno %s)", line, strerror(errno));
	exit(1);
}

static int pidfd_open(pid_t pid)
{
	return syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* An exited process's pidfd: signalling it says ESRCH and poll says it is readable. */
static void check_exited_pidfd(int pidfd, const char *what)
{
	if (pidfd_signal(pidfd, 0) == 0 || errno != ESRCH)
		bad("%s: pidfd_send_signal 0 did not say ESRCH", what);
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		bad("%s: the pidfd does not poll as exited", what);
}

/* Receives one datagram on `sock` into `buf`: its credentials and the fds it carries
 * (SCM_RIGHTS or SCM_PIDFD; -1 when none). */
static void recv_one(int sock, char *buf, size_t len, struct ucred *cred, int *rights, int *pidfd)
{
	char cbuf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		bad("recvmsg");
	if (m.msg_flags & MSG_CTRUNC)
		bad("control data truncated");
	buf[n] = 0;
	memset(cred, 0, sizeof(*cred));
	*rights = *pidfd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS)
			memcpy(cred, CMSG_DATA(c), sizeof(*cred));
		else if (c->cmsg_type == SCM_RIGHTS)
			memcpy(rights, CMSG_DATA(c), sizeof(int));
		else if (c->cmsg_type == SCM_PIDFD)
			memcpy(pidfd, CMSG_DATA(c), sizeof(int));
	}
}

static void send_fd(int sock, const char *data, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &m, 0) < 0)
		bad("sendmsg SCM_RIGHTS");
}

static void set_opt(int sock, int opt)
{
	int one = 1;
	if (setsockopt(sock, SOL_SOCKET, opt, &one, sizeof(one)))
		bad("setsockopt %d", opt);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	report = argv[1];
	const char *trigger = argv[2];
	/* A session of its own (the restore refuses a session led outside the tree). */
	setsid();
	int q[2], g[2], f[2], sync[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, q) || socketpair(AF_UNIX, SOCK_DGRAM, 0, g) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, f) || pipe(sync))
		bad("socketpair");
	set_opt(q[0], SO_PASSCRED);
	set_opt(g[0], SO_PASSCRED);
	set_opt(g[0], SO_PASSPIDFD);

	/* C: sends its message, then sleeps until killed. */
	pid_t c = fork();
	if (c < 0)
		bad("fork C");
	if (c == 0) {
		if (send(q[1], "from C", 6, 0) != 6)
			_exit(1);
		if (write(sync[1], "c", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char b;
	if (read(sync[0], &b, 1) != 1)
		bad("C did not send");
	int cfd = pidfd_open(c);
	if (cfd < 0)
		bad("pidfd_open C");

	/* E: sends its message and exits; reaped. */
	pid_t e = fork();
	if (e < 0)
		bad("fork E");
	if (e == 0)
		_exit(send(g[1], "from E", 6, 0) == 6 ? 7 : 1);
	int st;
	if (waitpid(e, &st, 0) != e || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
		bad("E failed");

	/* X: a pidfd of it, in flight only, once it exited and was reaped. */
	pid_t x = fork();
	if (x < 0)
		bad("fork X");
	if (x == 0) {
		if (read(sync[0], &b, 1) != 1)
			_exit(1);
		_exit(5);
	}
	int xfd = pidfd_open(x);
	if (xfd < 0)
		bad("pidfd_open X");
	if (write(sync[1], "x", 1) != 1)
		bad("write sync");
	if (waitpid(x, &st, 0) != x || !WIFEXITED(st) || WEXITSTATUS(st) != 5)
		bad("X failed");
	send_fd(f[1], "pidfd of X", xfd);
	close(xfd);

	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xc0ffee};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev))
		bad("epoll");

	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0))
		bad("io_uring_queue_init");
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	io_uring_prep_nop(s);
	s->user_data = 1;
	struct io_uring_cqe *cqe;
	if (io_uring_submit_and_wait(&ring, 1) != 1 || io_uring_wait_cqe(&ring, &cqe) || cqe->user_data != 1)
		bad("first NOP");
	io_uring_cqe_seen(&ring, cqe);

	char qname[64];
	snprintf(qname, sizeof(qname), "/pidns-plugins-%d", (int)getppid());
	mq_unlink(qname);
	struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 32};
	mqd_t mq = mq_open(qname, O_RDWR | O_CREAT | O_NONBLOCK, 0600, &attr);
	if (mq == (mqd_t)-1)
		bad("mq_open");
	mq_unlink(qname);
	if (mq_send(mq, "queued", 6, 0))
		bad("mq_send");
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
	sev.sigev_value.sival_int = 42;
	if (mq_notify(mq, &sev))
		bad("mq_notify");

	say("ready %d %d %d", (int)c, (int)e, (int)x);
	struct stat sb;
	while (stat(trigger, &sb))
		usleep(20000);

	/* After the restore. */
	struct epoll_event got;
	if (epoll_wait(ep, &got, 1, 0) != 1 || got.data.u64 != 0xc0ffee || !(got.events & EPOLLIN))
		bad("epoll does not report C's socket");

	char buf[64];
	struct ucred cred;
	int rights, pfd;
	recv_one(q[0], buf, sizeof(buf), &cred, &rights, &pfd);
	if (strcmp(buf, "from C") || cred.pid != c)
		bad("C's message says pid %d (want %d): %s", (int)cred.pid, (int)c, buf);

	recv_one(g[0], buf, sizeof(buf), &cred, &rights, &pfd);
	if (strcmp(buf, "from E"))
		bad("E's message: %s", buf);
	if (cred.pid == 0 || cred.pid == c || cred.pid == getpid())
		bad("E's message names pid %d", (int)cred.pid);
	if (kill(cred.pid, 0) == 0 || errno != ESRCH)
		bad("E's message names a live pid %d", (int)cred.pid);
	if (pfd < 0)
		bad("E's message has no SCM_PIDFD");
	check_exited_pidfd(pfd, "SCM_PIDFD of E");
	pid_t e_now = cred.pid;

	recv_one(f[0], buf, sizeof(buf), &cred, &rights, &pfd);
	if (strcmp(buf, "pidfd of X") || rights < 0)
		bad("no pidfd of X in flight: %s", buf);
	check_exited_pidfd(rights, "pidfd of X in flight");

	s = io_uring_get_sqe(&ring);
	io_uring_prep_nop(s);
	s->user_data = 2;
	if (io_uring_submit_and_wait(&ring, 1) != 1 || io_uring_wait_cqe(&ring, &cqe) || cqe->user_data != 2)
		bad("NOP after restore");
	io_uring_cqe_seen(&ring, cqe);

	unsigned prio;
	ssize_t n = mq_receive(mq, buf, sizeof(buf), &prio);
	if (n != 6 || memcmp(buf, "queued", 6))
		bad("queued message");
	if (mq_send(mq, "new", 3, 0))
		bad("mq_send after restore");
	siginfo_t si;
	struct timespec ts = {.tv_sec = 5};
	if (sigtimedwait(&usr2, &si, &ts) != SIGUSR2 || si.si_code != SI_MESGQ || si.si_value.sival_int != 42)
		bad("no queue notification");

	if (pidfd_signal(cfd, SIGTERM))
		bad("pidfd_send_signal to C");
	siginfo_t wi = {0};
	if (waitid(P_PIDFD, cfd, &wi, WEXITED))
		bad("waitid on C's pidfd");
	if (wi.si_pid != c || wi.si_code != CLD_KILLED || wi.si_status != SIGTERM)
		bad("C's pidfd named pid %d (code %d status %d), want %d", (int)wi.si_pid, wi.si_code,
		    wi.si_status, (int)c);
	say("ok %d", (int)e_now);
	return 0;
}
