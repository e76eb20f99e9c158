/*
 * cgre-latency [-n COUNT] [-g GAP_US] [-t TIMEOUT_MS] [-d SECONDS] [-s SLEEP_US] [-c|-u] UID DEST
 *
 * Setuid-to-moved latency. Started as root (already placed in a test
 * cgroup), it forks COUNT (default 1000) children one after another. Each
 * child opens /proc/self/cgroup, reads it once, takes t0 =
 * clock_gettime(CLOCK_MONOTONIC) and calls setresuid(UID, UID, UID) (the
 * kernel emits its UID event inside that call, so t0 comes right before
 * it), then spins re-reading the file (pread at offset 0 on the fd opened
 * before) until its cpu line shows DEST (t1) and then until its cgroup2
 * ("0::") line does too (t2), reports t1-t0 and t2-t0 through a pipe, and
 * exits. A child not moved within TIMEOUT_MS (default 1000) in a hierarchy
 * reports -1 for it: a miss. The parent waits GAP_US microseconds (default
 * 1000) between children so that each one meets an idle daemon. It stops
 * early after SECONDS (default 60) seconds in all. With -s, a child sleeps
 * SLEEP_US microseconds between two reads instead of spinning (to see how
 * much a spinning child, competing for the CPUs, delays the daemon). With
 * -c only the cpu line is waited for (t2 = t1): for a daemon that does not
 * move tasks in cgroup2 (libcgroup's). With -u only the cgroup2 line is
 * (t1 = t2): for a task placed by systemd into a scope (DEST is then the
 * scope's cgroup as the task's cgroup namespace shows it), and for the raw
 * cgroup2 write it is compared with.
 *
 * Standard output: this process's pid on the first line, then one line
 * "CPU_NS ALL_NS PID" per child (-1 for a miss), then "done".
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

struct sample {
	int64_t cpu, all;
};

/*
 * in_place reports whether the /proc/PID/cgroup text buf puts the task in
 * dest for the v1 controller "cpu" (v2 == 0) or in the cgroup2 line (v2).
 */
static int in_place(const char *buf, const char *dest, int v2)
{
	const char *line = buf;
	size_t dl = strlen(dest);
	while (*line) {
		const char *nl = strchr(line, '\n');
		const char *end = nl ? nl : line + strlen(line);
		const char *c1 = memchr(line, ':', (size_t)(end - line));
		const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
		if (c2) {
			const char *path = c2 + 1;
			int match = 0;
			if (v2) {
				match = c1 - line == 1 && line[0] == '0' && c2 == c1 + 1;
			} else {
				/* controller list c1+1 .. c2, comma separated */
				const char *p = c1 + 1;
				while (p < c2) {
					const char *q = memchr(p, ',', (size_t)(c2 - p));
					if (!q)
						q = c2;
					if (q - p == 3 && memcmp(p, "cpu", 3) == 0)
						match = 1;
					p = q + 1;
				}
			}
			if (match)
				return (size_t)(end - path) == dl && memcmp(path, dest, dl) == 0;
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	return 0;
}

static long sleep_us;
static int cpu_only, unified_only;

static void __attribute__((noreturn)) child(int out, uid_t uid, const char *dest, int64_t timeout)
{
	static char buf[8192];
	struct sample s = {-1, -1};
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		_exit(6);
	if (pread(fd, buf, sizeof buf - 1, 0) <= 0) /* warm up */
		_exit(6);
	int64_t t0 = now_ns();
	if (setresuid(uid, uid, uid) < 0)
		_exit(7);
	int cpu_done = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
		int64_t t = now_ns();
		if (n <= 0)
			_exit(6);
		buf[n] = 0;
		if (unified_only) {
			if (in_place(buf, dest, 1)) {
				s.cpu = s.all = t - t0;
				break;
			}
		} else if (!cpu_done && in_place(buf, dest, 0)) {
			s.cpu = t - t0;
			cpu_done = 1;
			if (cpu_only) {
				s.all = s.cpu;
				break;
			}
		}
		if (cpu_done && in_place(buf, dest, 1)) {
			s.all = t - t0;
			break;
		}
		if (t - t0 > timeout)
			break;
		if (sleep_us > 0)
			usleep((useconds_t)sleep_us);
	}
	if (write_all(out, &s, sizeof s) < 0)
		_exit(8);
	_exit(0);
}

int main(int argc, char **argv)
{
	prog = "cgre-latency";
	long count = 1000, gap_us = 1000, timeout_ms = 1000, secs = 60;
	int opt;
	while ((opt = getopt(argc, argv, "n:g:t:d:s:cu")) != -1) {
		switch (opt) {
		case 'n':
			count = arg_long(optarg, "count");
			break;
		case 'g':
			gap_us = arg_long(optarg, "gap");
			break;
		case 't':
			timeout_ms = arg_long(optarg, "timeout");
			break;
		case 'd':
			secs = arg_long(optarg, "seconds");
			break;
		case 's':
			sleep_us = arg_long(optarg, "sleep");
			break;
		case 'c':
			cpu_only = 1;
			break;
		case 'u':
			unified_only = 1;
			break;
		default:
			fprintf(stderr, "usage: cgre-latency [-n COUNT] [-g GAP_US] [-t TIMEOUT_MS] [-d SECONDS] [-s SLEEP_US] [-c|-u] UID DEST\n");
			return 2;
		}
	}
	if (argc - optind != 2 || (cpu_only && unified_only) || count < 1 || gap_us < 0 || timeout_ms < 1 || secs < 1 || secs > 600 || sleep_us < 0) {
		errno = 0;
		die("usage: cgre-latency [-n COUNT] [-g GAP_US] [-t TIMEOUT_MS] [-d SECONDS(1..600)] [-s SLEEP_US] [-c|-u] UID DEST");
	}
	uid_t uid = (uid_t)arg_long(argv[optind], "uid");
	const char *dest = argv[optind + 1];

	die_with_parent(getppid());
	alarm((unsigned)secs + 30);
	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	printf("%d\n", (int)getpid());
	fflush(stdout);

	int64_t deadline = now_ns() + secs * 1000000000LL;
	for (long i = 0; i < count && now_ns() < deadline; i++) {
		pid_t c = fork();
		if (c == 0) {
			close(p[0]);
			child(p[1], uid, dest, timeout_ms * 1000000LL);
		}
		if (c < 0)
			die("fork");
		int st;
		while (waitpid(c, &st, 0) < 0)
			if (errno != EINTR)
				die("waitpid");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			errno = 0;
			die("child %d failed (status 0x%x)", (int)c, st);
		}
		struct sample s;
		if (read(p[0], &s, sizeof s) != (ssize_t)sizeof s)
			die("reading a sample");
		printf("%lld %lld %d\n", (long long)s.cpu, (long long)s.all, (int)c);
		if (gap_us > 0)
			usleep((useconds_t)gap_us);
	}
	printf("done\n");
	fflush(stdout);
	return 0;
}
