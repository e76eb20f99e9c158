/*
 * cgre-floor UID ROOT CPU_PROCS V2_PROCS SECONDS
 *
 * The benchmark's floor: the least work a rules daemon can do for the
 * latency tool's tasks, to show what this machine allows. It listens to the
 * kernel's proc connector and, for each UID event whose new effective uid is
 * UID, reads /proc/PID/cgroup, and only if the task's cpu (v1) cgroup is
 * ROOT or below it, reads /proc/PID/status (as a daemon must, for the
 * gid) and writes the pid into CPU_PROCS and V2_PROCS, two cgroup.procs
 * files opened once at start. No rules, no logging, no queue, one thread.
 * The benchmark runs it instead of the daemon, with ROOT the test directory
 * and the files those of the test's destination: it can only ever move the
 * test's own tasks (UID is a test user) within the test directory.
 *
 * Like the daemon (--sched-slice), it asks for a 100 us scheduler slice
 * (Linux 6.12+; ignored before), so that it preempts a busy task as soon as
 * an event wakes it: the comparison is between equals.
 *
 * Standard output: its pid, once it listens. Lifetime: SECONDS, its
 * parent's death (PR_SET_PDEATHSIG), or SIGTERM/SIGKILL.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* struct sched_attr, as in linux/sched/types.h (not in glibc 2.36). */
struct slice_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

int main(int argc, char **argv)
{
	prog = "cgre-floor";
	if (argc != 6) {
		fprintf(stderr, "usage: cgre-floor UID ROOT CPU_PROCS V2_PROCS SECONDS\n");
		return 2;
	}
	uid_t uid = (uid_t)arg_long(argv[1], "uid");
	const char *root = argv[2];
	size_t rootlen = strlen(root);
	long secs = arg_long(argv[5], "seconds");
	if (rootlen < 2 || root[0] != '/' || secs < 1 || secs > 600) {
		errno = 0;
		die("ROOT must be an absolute cgroup path below / and SECONDS 1..600");
	}
	die_with_parent(getppid());
	struct slice_attr sa_ = {.size = sizeof sa_, .policy = 0 /* SCHED_OTHER */, .runtime = 100000};
	(void)syscall(SYS_sched_setattr, 0, &sa_, 0);
	alarm((unsigned)secs);

	int cpufd = open(argv[3], O_WRONLY | O_CLOEXEC);
	int v2fd = open(argv[4], O_WRONLY | O_CLOEXEC);
	if (cpufd < 0 || v2fd < 0)
		die("opening %s and %s", argv[3], argv[4]);

	int s = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (s < 0)
		die("socket");
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
	if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("bind");
	static char buf[8192] __attribute__((aligned(8)));
	struct nlmsghdr *nh = (struct nlmsghdr *)buf;
	struct cn_msg *cn = NLMSG_DATA(nh);
	memset(buf, 0, sizeof buf);
	nh->nlmsg_len = NLMSG_LENGTH(sizeof *cn + sizeof(int));
	nh->nlmsg_type = NLMSG_DONE;
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->len = sizeof(int);
	*(int *)cn->data = PROC_CN_MCAST_LISTEN;
	if (send(s, nh, nh->nlmsg_len, 0) < 0)
		die("subscribing");
	printf("%d\n", (int)getpid());
	fflush(stdout);

	static char text[8192];
	for (;;) {
		ssize_t n = recv(s, buf, sizeof buf, 0);
		if (n < (ssize_t)(NLMSG_LENGTH(sizeof *cn) + sizeof(struct proc_event)))
			continue; /* errors (ENOBUFS), acks, short messages */
		struct proc_event *ev = (struct proc_event *)((struct cn_msg *)NLMSG_DATA(nh))->data;
		if (ev->what != PROC_EVENT_UID || ev->event_data.id.e.euid != uid)
			continue;
		int pid = ev->event_data.id.process_tgid;
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, text, sizeof text - 1);
		close(fd);
		if (k <= 0)
			continue;
		text[k] = 0;
		char *l = strstr(text, ":cpu:");
		if (!l)
			continue;
		l += 5;
		if (strncmp(l, root, rootlen) != 0 || (l[rootlen] != '/' && l[rootlen] != '\n'))
			continue; /* not the test's: never touched */
		snprintf(path, sizeof path, "/proc/%d/status", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)!read(fd, text, sizeof text);
			close(fd);
		}
		char ps[16];
		int pl = snprintf(ps, sizeof ps, "%d", pid);
		(void)!write(cpufd, ps, (size_t)pl);
		(void)!write(v2fd, ps, (size_t)pl);
	}
}
