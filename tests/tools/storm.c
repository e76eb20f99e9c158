/*
 * cgre-storm [-p NPROCS] [-s SECONDS] [-u UID] [-f]
 *
 * A fork storm for the overflow test and the benchmark: NPROCS (default 2)
 * worker processes create short-lived child processes as fast as they can
 * for SECONDS (default 3) seconds. Each child exits at once (_exit) or, with
 * -u, first changes its real, effective and saved uid to UID: a fork/setuid
 * storm in which every child costs the kernel a FORK, a UID and an EXIT
 * event.
 *
 * Children are made with vfork(2) unless -f is given: on the 2-vCPU test VM
 * a fork(2) costs about 0.8 ms (copy-on-write page faults under the
 * hypervisor: ~1,200 forks/s per process), a vfork about 30 µs (~30,000/s),
 * and the kernel reports both alike (FORK, UID, EXIT events for a new
 * process with its own pid). The child only calls setresuid (the raw system
 * call) and _exit. Children are reaped by the kernel (SIGCHLD ignored).
 *
 * Standard output: this process's pid on the first line once the workers
 * run, then, when the storm is over, "forks N seconds S" (totals).
 *
 * Lifetime: SECONDS, or the death of its parent (PR_SET_PDEATHSIG; the
 * workers die with the leader the same way), or SIGKILL. SIGTERM ends the
 * storm early: the totals are still printed.
 */
#include "common.h"

#include <sys/syscall.h>
#include <sys/wait.h>

#define MAX_PROCS 16

static volatile sig_atomic_t stopping;
static pid_t workers[MAX_PROCS];
static long nworkers;

/* A worker's SIGTERM: end the storm early, report as usual. */
static void on_term_worker(int sig)
{
	(void)sig;
	stopping = 1;
}

/* The leader's SIGTERM: pass it on to the workers. */
static void on_term_leader(int sig)
{
	(void)sig;
	for (long i = 0; i < nworkers; i++)
		kill(workers[i], SIGTERM);
}

static void handle(int sig, void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0)
		die("sigaction");
}

static void __attribute__((noreturn)) worker(int out, int64_t deadline, int setuid_to, uid_t uid, int use_fork)
{
	uint64_t forks = 0;
	while (!stopping && now_ns() < deadline) {
		for (int k = 0; k < 64; k++) {
			pid_t c = use_fork ? fork() : vfork();
			if (c == 0) {
				if (setuid_to)
					(void)syscall(SYS_setresuid, uid, uid, uid);
				_exit(0);
			}
			if (c < 0) {
				if (errno == EAGAIN || errno == ENOMEM) {
					usleep(1000);
					continue;
				}
				_exit(5);
			}
			forks++;
		}
	}
	(void)write_all(out, &forks, sizeof forks);
	_exit(0);
}

int main(int argc, char **argv)
{
	prog = "cgre-storm";
	long nprocs = 2, secs = 3;
	int setuid_to = 0, use_fork = 0, opt;
	uid_t uid = 0;
	while ((opt = getopt(argc, argv, "p:s:u:f")) != -1) {
		switch (opt) {
		case 'p':
			nprocs = arg_long(optarg, "process count");
			break;
		case 's':
			secs = arg_long(optarg, "seconds");
			break;
		case 'u':
			setuid_to = 1;
			uid = (uid_t)arg_long(optarg, "uid");
			break;
		case 'f':
			use_fork = 1;
			break;
		default:
			fprintf(stderr, "usage: cgre-storm [-p NPROCS] [-s SECONDS] [-u UID] [-f]\n");
			return 2;
		}
	}
	if (optind != argc || nprocs < 1 || nprocs > MAX_PROCS || secs < 1 || secs > 600) {
		errno = 0;
		die("usage: cgre-storm [-p NPROCS(1..%d)] [-s SECONDS(1..600)] [-u UID] [-f]", MAX_PROCS);
	}

	pid_t self = getpid();
	die_with_parent(getppid());
	alarm((unsigned)secs + 30);

	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	int64_t start = now_ns();
	int64_t deadline = start + secs * 1000000000LL;
	/* Blocked until the workers are known, so that it reaches them all. */
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	handle(SIGTERM, on_term_leader);
	for (long i = 0; i < nprocs; i++) {
		pid_t w = fork();
		if (w == 0) {
			handle(SIGTERM, on_term_worker);
			sigprocmask(SIG_SETMASK, &old, NULL);
			die_with_parent(self);
			alarm((unsigned)secs + 30);
			signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
			close(p[0]);
			worker(p[1], deadline, setuid_to, uid, use_fork);
		}
		if (w < 0)
			die("fork (worker %ld)", i);
		workers[nworkers++] = w;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	printf("%d\n", (int)self);
	fflush(stdout);

	uint64_t total = 0, n;
	long got = 0;
	ssize_t k;
	while ((k = read(p[0], &n, sizeof n)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k != (ssize_t)sizeof n) {
			errno = 0;
			die("short read from a worker");
		}
		total += n;
		got++;
	}
	while (wait(NULL) > 0 || errno == EINTR)
		;
	if (got != nprocs) {
		errno = 0;
		die("only %ld of %ld workers reported", got, nprocs);
	}
	printf("forks %llu seconds %.3f\n", (unsigned long long)total, (double)(now_ns() - start) / 1e9);
	fflush(stdout);
	return 0;
}
