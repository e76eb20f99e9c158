/*
 * cgre-sticky: the sticky socket tests' helper (tests/e2e/sticky_test.go).
 *
 * cgre-sticky client SOCKET PID FLAGS [UID GID]
 *   A raw client of the sticky socket, speaking as libcgroup's
 *   cgroup_register_unchanged_process does: connect, write the pid (4 bytes),
 *   write the flags (4 bytes), read the 18-byte reply. With UID and GID it
 *   first becomes that user (supplementary groups: GID alone, real,
 *   effective and saved ids), so that the daemon sees that uid in
 *   SO_PEERCRED and the socket file's group decides whether it may connect.
 *   Prints one line: "reply" (SUCCESS_STORE_PID), "closed N" (the daemon
 *   closed after N bytes of something else) or "connect ERRNO-NAME".
 *   Exit status 0 for any of these; 2 for a usage or setup error.
 *
 * cgre-sticky reuse PID UID SECONDS
 *   Started as root, already placed in a test cgroup: creates a child with
 *   exactly pid PID (clone3 with set_tid, Linux 5.5+, CAP_SYS_ADMIN), which
 *   changes its real, effective and saved uid to UID and idles. Standard
 *   output: this process's pid, then "C PID" once the child has changed its
 *   uid, or "E ERRNO-NAME" when the pid could not be had (EEXIST: taken).
 *   Both die with their parent (PR_SET_PDEATHSIG) or after SECONDS.
 */
#include "common.h"

#include <grp.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

static int client(int argc, char **argv)
{
	if (argc != 5 && argc != 7) {
		fprintf(stderr, "usage: cgre-sticky client SOCKET PID FLAGS [UID GID]\n");
		return 2;
	}
	const char *path = argv[2];
	int32_t pid = (int32_t)arg_long(argv[3], "pid");
	int32_t flags = (int32_t)arg_long(argv[4], "flags");
	if (argc == 7) {
		uid_t uid = (uid_t)arg_long(argv[5], "uid");
		gid_t gid = (gid_t)arg_long(argv[6], "gid");
		if (setgroups(1, &gid) < 0)
			die("setgroups(%u)", (unsigned)gid);
		if (setresgid(gid, gid, gid) < 0)
			die("setresgid(%u)", (unsigned)gid);
		if (setresuid(uid, uid, uid) < 0)
			die("setresuid(%u)", (unsigned)uid);
	}
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path)
		die("socket path too long");
	strcpy(addr.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
		printf("connect %s\n", strerrorname_np(errno));
		return 0;
	}
	if (write_all(s, &pid, sizeof pid) < 0 || write_all(s, &flags, sizeof flags) < 0) {
		printf("closed 0\n");
		return 0;
	}
	char buf[64];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(s, buf + got, sizeof buf - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof buf)
			break;
	}
	static const char reply[] = "SUCCESS_STORE_PID";
	if (got == sizeof reply && memcmp(buf, reply, sizeof reply) == 0)
		printf("reply\n");
	else
		printf("closed %zu\n", got);
	return 0;
}

static int reuse(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: cgre-sticky reuse PID UID SECONDS\n");
		return 2;
	}
	pid_t want = (pid_t)arg_long(argv[2], "pid");
	uid_t uid = (uid_t)arg_long(argv[3], "uid");
	unsigned seconds = (unsigned)arg_long(argv[4], "seconds");
	pid_t ppid = getppid();
	die_with_parent(ppid);
	alarm(seconds);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%d\n", (int)getpid());
	fflush(stdout);

	pid_t self = getpid();
	struct clone_args args = {
		.exit_signal = SIGCHLD,
		.set_tid = (uint64_t)(uintptr_t)&want,
		.set_tid_size = 1,
	};
	long c = syscall(SYS_clone3, &args, sizeof args);
	if (c < 0) {
		printf("E %s\n", strerrorname_np(errno));
		pause();
		return 0;
	}
	if (c == 0) {
		/* The child: a new process with pid want. */
		die_with_parent(self);
		alarm(seconds);
		if (setresuid(uid, uid, uid) < 0)
			die("setresuid(%u)", (unsigned)uid);
		die_with_parent(self); /* the credential change cleared it */
		printf("C %d\n", (int)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	for (;;) {
		int st;
		if (waitpid((pid_t)c, &st, 0) == (pid_t)c)
			return 0;
		if (errno != EINTR)
			die("waitpid");
	}
}

int main(int argc, char **argv)
{
	prog = "cgre-sticky";
	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return client(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "reuse") == 0)
		return reuse(argc, argv);
	fprintf(stderr, "usage: cgre-sticky client SOCKET PID FLAGS [UID GID]\n"
			"       cgre-sticky reuse PID UID SECONDS\n");
	return 2;
}
