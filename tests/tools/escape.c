/*
 * cgre-escape UID NCHILDREN SECONDS
 *
 * The fork race of issue #4. Started as root (already placed in a test
 * cgroup), it changes its real, effective and saved uid to UID and, with no
 * other system call in between, forks NCHILDREN children. Each child at
 * once forks a middle process which forks a grandchild and _exits: a double
 * fork, so that by the time the daemon looks the grandchild's parent is gone
 * (it is re-parented to init or the nearest subreaper, never to this tool).
 * Children and grandchildren report their pids through a pipe, then idle.
 *
 * Standard output (line-buffered): this process's pid alone on the first
 * line, then "T NS", the CLOCK_MONOTONIC time taken right before the
 * setresuid call, then, as the reports arrive, "C PID" for each child and
 * "G PID" for each grandchild, then "done". With NCHILDREN 0 it is a plain
 * "change uid, print the pid, idle" task.
 *
 * Lifetime: the tool idles until SIGTERM/SIGKILL, its parent's death
 * (PR_SET_PDEATHSIG) or SECONDS (alarm). Its descendants block reading a
 * lifeline pipe whose only writer is the tool: when the tool is gone they
 * read end-of-file and exit; each also has its own alarm of SECONDS.
 */
#include "common.h"

#include <poll.h>
#include <sys/wait.h>

struct report {
	int32_t kind; /* 'C' or 'G' */
	int32_t pid;
};

static int rep[2], life[2];
static unsigned seconds;

/* idle_until_orphaned blocks until the tool (the lifeline's writer) is gone. */
static void __attribute__((noreturn)) idle_until_orphaned(void)
{
	char c;
	alarm(seconds);
	while (read(life[0], &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void report_self(int kind)
{
	struct report r = {kind, (int32_t)getpid()};
	if (write_all(rep[1], &r, sizeof r) < 0)
		_exit(4);
}

int main(int argc, char **argv)
{
	prog = "cgre-escape";
	if (argc != 4) {
		fprintf(stderr, "usage: cgre-escape UID NCHILDREN SECONDS\n");
		return 2;
	}
	uid_t uid = (uid_t)arg_long(argv[1], "uid");
	long n = arg_long(argv[2], "child count");
	seconds = (unsigned)arg_long(argv[3], "seconds");
	if (n < 0 || n > 10000)
		die("child count %ld out of range", n);

	pid_t ppid = getppid();
	if (pipe(rep) < 0 || pipe(life) < 0)
		die("pipe");
	signal(SIGCHLD, SIG_IGN); /* nobody waits for the children */
	alarm(seconds);

	long forked = 0;
	int err = 0;

	int64_t t0 = now_ns();
	if (setresuid(uid, uid, uid) < 0)
		die("setresuid(%u)", (unsigned)uid);
	for (long i = 0; i < n; i++) {
		pid_t c = fork();
		if (c == 0) {
			/* Child: double-fork at once. */
			pid_t m = fork();
			if (m == 0) {
				/* Middle: fork the grandchild and vanish. */
				if (fork() == 0) {
					close(life[1]);
					report_self('G');
					idle_until_orphaned();
				}
				_exit(0);
			}
			close(life[1]);
			if (m < 0)
				_exit(5);
			report_self('C');
			idle_until_orphaned();
		}
		if (c < 0) {
			err = errno;
			break;
		}
		forked++;
	}
	die_with_parent(ppid);
	close(life[0]);
	if (err) {
		errno = err;
		die("fork (after %ld children)", forked);
	}

	setvbuf(stdout, NULL, _IOLBF, 0); /* each line as soon as it is known */
	printf("%d\nT %lld\n", (int)getpid(), (long long)t0);

	/* Collect 2 reports per child; give up after 10 s. */
	long want = 2 * forked, got = 0;
	int64_t deadline = now_ns() + 10 * 1000000000LL;
	while (got < want) {
		int64_t left = deadline - now_ns();
		if (left <= 0)
			die("only %ld of %ld reports arrived", got, want);
		struct pollfd pfd = {rep[0], POLLIN, 0};
		int r = poll(&pfd, 1, (int)(left / 1000000 + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("poll");
		if (r == 0)
			continue;
		struct report rp;
		ssize_t k = read(rep[0], &rp, sizeof rp);
		if (k != (ssize_t)sizeof rp)
			die("short report (%zd bytes)", k);
		printf("%c %d\n", (char)rp.kind, (int)rp.pid);
		got++;
	}
	printf("done\n");
	fflush(stdout);
	close(rep[0]);
	close(rep[1]);

	for (;;)
		pause(); /* SIGTERM, SIGKILL or SIGALRM end it */
}
