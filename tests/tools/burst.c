/*
 * cgre-burst UID NCHILDREN SECONDS [STEP]
 *
 * A burst of credential changes at a moment the test chooses. Started as
 * root (already placed in a test cgroup), it waits for SIGUSR1; then it
 * forks NCHILDREN children at once, and child i changes its real,
 * effective and saved uid to UID + i*STEP (STEP 0, the default: all to
 * UID; 1: a distinct uid each, which needs no user to exist) and idles.
 * The tool itself keeps its uid.
 * Used by the overflow-gap test: the burst is fired a few milliseconds after
 * the daemon resumes reading a netlink queue that overflowed, so that the
 * children's UID events fall in the window in which the kernel drops every
 * event for that socket.
 *
 * Standard output (line-buffered): this process's pid alone on the first
 * line once it waits for the signal, then "T NS", the CLOCK_MONOTONIC time
 * right after the signal arrived, then "C PID" for each child, then "done".
 *
 * Lifetime: as cgre-escape: the tool idles until SIGTERM/SIGKILL, its
 * parent's death (PR_SET_PDEATHSIG) or SECONDS (alarm); the children block
 * reading a lifeline pipe whose only writer is the tool and exit when it is
 * gone, or after their own alarm of SECONDS.
 */
#include "common.h"

#define MAX_CHILDREN 5000

int main(int argc, char **argv)
{
	prog = "cgre-burst";
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: cgre-burst UID NCHILDREN SECONDS [STEP]\n");
		return 2;
	}
	uid_t uid = (uid_t)arg_long(argv[1], "uid");
	long n = arg_long(argv[2], "child count");
	unsigned seconds = (unsigned)arg_long(argv[3], "seconds");
	long step = argc == 5 ? arg_long(argv[4], "step") : 0;
	if (n < 1 || n > MAX_CHILDREN)
		die("child count %ld out of range", n);
	if (step < 0 || step > 1000000)
		die("step %ld out of range", step);

	die_with_parent(getppid());
	int life[2];
	if (pipe(life) < 0)
		die("pipe");
	signal(SIGCHLD, SIG_IGN); /* nobody waits for the children */
	alarm(seconds);

	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL) < 0)
		die("sigprocmask");
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%d\n", (int)getpid());

	int sig;
	if (sigwait(&usr1, &sig) != 0)
		die("sigwait");
	int64_t t0 = now_ns();
	static pid_t kids[MAX_CHILDREN];
	for (long i = 0; i < n; i++) {
		pid_t c = fork();
		if (c == 0) {
			char ch;
			close(life[1]);
			uid_t u = uid + (uid_t)(i * step);
			if (setresuid(u, u, u) < 0)
				_exit(6);
			alarm(seconds);
			while (read(life[0], &ch, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		if (c < 0)
			die("fork (after %ld children)", i);
		kids[i] = c;
	}
	close(life[0]);
	printf("T %lld\n", (long long)t0);
	for (long i = 0; i < n; i++)
		printf("C %d\n", (int)kids[i]);
	printf("done\n");
	fflush(stdout);

	for (;;)
		pause(); /* SIGTERM, SIGKILL or SIGALRM end it */
}
