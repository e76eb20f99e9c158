/*
 * setid OP... : the coverage tests' helper. Runs its operations in order,
 * each one system call (through glibc, or raw where said), and exits 0, or
 * 2 with a message when one fails. Built by the tests, as a native binary
 * and, where gcc -m32 works, as a static i386 one (compat system calls).
 *
 *   uid N | reuid R E | resuid R E S | fsuid N      setuid(2) and kin
 *   gid N | regid R E | resgid R E S | fsgid N      setgid(2) and kin
 *   groups N                                        setgroups(1, {N})
 *   uid16 N | resuid16 R E S | gid16 N | resgid16 R E S
 *                                                   i386 only: the 16-bit calls
 *   threads N        start N threads that sleep: later set*id calls of glibc
 *                    apply to every thread (one system call per thread)
 *   fork             the rest runs in a child; the parent waits for it
 *   spawn            a child that exits at once; the parent waits, goes on
 *   exec PATH ARG... execv(PATH, {PATH, ARG...}): the rest of the line
 *   sleep MS
 *
 * -1 stands for "unchanged" where the call takes it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *op)
{
	fprintf(stderr, "setid: %s: %s\n", op, strerror(errno));
	exit(2);
}

static long num(char **argv, int i, int argc)
{
	if (i >= argc) {
		fprintf(stderr, "setid: missing argument\n");
		exit(2);
	}
	return strtol(argv[i], NULL, 10);
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *op = argv[i];
		if (!strcmp(op, "uid")) {
			if (setuid(num(argv, ++i, argc)) < 0)
				fail(op);
		} else if (!strcmp(op, "reuid")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc);
			if (setreuid(r, e) < 0)
				fail(op);
		} else if (!strcmp(op, "resuid")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc), s = num(argv, ++i, argc);
			if (setresuid(r, e, s) < 0)
				fail(op);
		} else if (!strcmp(op, "fsuid")) {
			setfsuid(num(argv, ++i, argc));
		} else if (!strcmp(op, "gid")) {
			if (setgid(num(argv, ++i, argc)) < 0)
				fail(op);
		} else if (!strcmp(op, "regid")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc);
			if (setregid(r, e) < 0)
				fail(op);
		} else if (!strcmp(op, "resgid")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc), s = num(argv, ++i, argc);
			if (setresgid(r, e, s) < 0)
				fail(op);
		} else if (!strcmp(op, "fsgid")) {
			setfsgid(num(argv, ++i, argc));
		} else if (!strcmp(op, "groups")) {
			gid_t g = num(argv, ++i, argc);
			if (setgroups(1, &g) < 0)
				fail(op);
#ifdef __i386__
		} else if (!strcmp(op, "uid16")) {
			if (syscall(23 /* setuid */, num(argv, ++i, argc)) < 0)
				fail(op);
		} else if (!strcmp(op, "resuid16")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc), s = num(argv, ++i, argc);
			if (syscall(164 /* setresuid */, r, e, s) < 0)
				fail(op);
		} else if (!strcmp(op, "gid16")) {
			if (syscall(46 /* setgid */, num(argv, ++i, argc)) < 0)
				fail(op);
		} else if (!strcmp(op, "resgid16")) {
			long r = num(argv, ++i, argc), e = num(argv, ++i, argc), s = num(argv, ++i, argc);
			if (syscall(170 /* setresgid */, r, e, s) < 0)
				fail(op);
#endif
		} else if (!strcmp(op, "threads")) {
			long n = num(argv, ++i, argc);
			for (long j = 0; j < n; j++) {
				pthread_t t;
				if ((errno = pthread_create(&t, NULL, sleeper, NULL)))
					fail(op);
			}
		} else if (!strcmp(op, "fork")) {
			pid_t pid = fork();
			if (pid < 0)
				fail(op);
			if (pid > 0) {
				int st;
				if (waitpid(pid, &st, 0) < 0)
					fail("waitpid");
				return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
			}
		} else if (!strcmp(op, "spawn")) {
			pid_t pid = fork();
			if (pid < 0)
				fail(op);
			if (pid == 0)
				_exit(0);
			if (waitpid(pid, NULL, 0) < 0)
				fail("waitpid");
		} else if (!strcmp(op, "exec")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "setid: exec: no path\n");
				return 2;
			}
			execv(argv[i + 1], argv + i + 1);
			fail(op);
		} else if (!strcmp(op, "sleep")) {
			long ms = num(argv, ++i, argc);
			struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
			nanosleep(&ts, NULL);
		} else {
			fprintf(stderr, "setid: unknown operation %s\n", op);
			return 2;
		}
	}
	return 0;
}
