// Package proc reads what the rules engine needs to know about tasks from a
// procfs tree: credentials, comm, scheduling policy and kernel-thread flag
// (Task), libcgroup's "process name" (ProcName), the list of processes
// (PIDs), children and threads, /proc/PID/cgroup (Cgroups), and what names
// one process over time and who runs it (Ident, StartTime: a pid with its
// start time, for the sticky marks).
//
// Every filesystem root is a parameter (NewFS("/proc") in production, a
// fixture tree under testdata/ in tests); nothing is mocked. Each public
// reader is a thin wrapper around a pure parser (parseStatus, parseStat,
// parseCgroup) that is table-tested on fixtures and fuzzed.
//
// Errors name the pid and the file and wrap the cause with %w. A task that
// has gone away (ENOENT on /proc/PID or one of its files, or ESRCH from the
// kernel) is reported so that errors.Is(err, unix.ESRCH) holds; callers
// usually drop such events silently. A read that fails because the process
// is out of descriptors keeps the kernel's errno (errors.Is(err,
// unix.EMFILE) or unix.ENFILE, never ESRCH): the task was not read, and a
// caller that drops it loses an event (the engine repairs it with a
// rescan).
//
// Privileges: status, stat, cmdline, cgroup, task/*/children are readable by
// anyone (unless procfs is mounted with hidepid=, in which case PIDs and the
// readers only see what the caller may see). /proc/PID/exe and
// /proc/PID/cwd need ptrace-read access to the task: as root they almost
// always work, but may still fail with EACCES (on the reference machine
// even root gets EACCES on /proc/1/exe). ProcName then falls back to comm,
// exactly as libcgroup does for any readlink failure, so an unprivileged
// caller sees comm as the process name of other users' tasks.
//
// Concurrency: FS is a small immutable value; all methods are safe for
// concurrent use by any number of goroutines. Each call takes a scratch
// (read buffer, path buffer, caches) from a sync.Pool for its duration.
//
// Performance: a Task lookup reads one small file (status; stat only on
// kernels whose status lacks "Kthread:"), a Cgroups lookup one, each with
// three raw system calls (openat, read, close) into the pooled buffer: no
// *os.File (whose poller registration costs extra system calls), and paths
// built NUL-terminated in the scratch (x/sys/unix would copy each path
// string into a new allocation). The files read this way end at a short
// read, which saves the read that would return 0. Comm and exe strings are
// interned and parsed /proc/PID/cgroup lines are shared by tasks whose
// files read the same, so Task, Cgroups, ThreadCreds and RealTime allocate
// nothing in the steady state; the lines returned by Cgroups must
// therefore not be modified.
package proc
