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
// usually drop such events silently.
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
// concurrent use by any number of goroutines. Read buffers come from a
// sync.Pool so that per-event lookups do not allocate large buffers.
//
// Performance: a Task lookup reads two small files (status and stat) with
// raw open/read/close system calls into a pooled buffer; no bufio.Scanner,
// no *os.File (whose poller registration costs extra system calls).
package proc
