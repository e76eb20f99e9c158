/*
 * Shared helpers of the end-to-end suite's C tools in tests/tools.
 *
 * The tools exist because Go cannot fork without exec: they fork, change
 * credentials and double-fork at exactly the moments the tests need. They
 * are started by root, already placed in a test cgroup, and change their
 * own credentials with setresuid(2). Each one is bounded in time (it exits
 * by itself) and dies with its parent (PR_SET_PDEATHSIG).
 */
#ifndef CGRE_TOOLS_COMMON_H
#define CGRE_TOOLS_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "tool";

static inline void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (errno)
		fprintf(stderr, ": %s", strerror(errno));
	fputc('\n', stderr);
	exit(2);
}

static inline long arg_long(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s)
		die("bad %s %s", what, s);
	return v;
}

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * die_with_parent asks for SIGKILL when the parent (ppid, read before any
 * credential change, which clears the setting) exits, and exits at once if
 * it is already gone.
 */
static inline void die_with_parent(pid_t ppid)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die("prctl(PR_SET_PDEATHSIG)");
	if (getppid() != ppid)
		_exit(3);
}

/* write_all writes the whole buffer (pipes: records up to PIPE_BUF are atomic). */
static inline int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

#endif
