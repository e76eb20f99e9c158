// Package bpfevents is the daemon's second source of process events: BPF
// programs that watch forks, execs, exits and credential changes in the
// kernel and report only what a rule may act on, through a ring buffer. It
// produces the same kernel.Event values as the proc connector (package
// kernel), under the same Read/Close contract, so the engine cannot tell
// the two apart; the proc connector remains the fallback wherever this
// source cannot run.
//
// # What the kernel reports
//
// The proc connector hands the daemon every fork, exec, credential change
// and exit on the machine. Here the kernel knows what user space told it
// (SetFilter, and the marks) and reports:
//
//   - UID and GID events when a task's euid or egid changes and the new
//     euid or egid is one the rules name (Filter.UIDs, Filter.GIDs, or
//     Filter.Any). The process becomes hot in the kernel before the event
//     is out.
//   - EXEC events when the program's name (the comm, or the base name of
//     the file run: for a script, its interpreter) passes the rules'
//     process-name prefilter (Filter.Processes, Filter.AllExecs), or when
//     the program the task leaves did (its comm: a process rule may have
//     put it where it is, and a child runs its parent's program until it
//     execs). The process becomes hot.
//   - FORK events of hot processes not yet settled by user space (Settled;
//     for Config.HotTTL at most), and of sticky processes whose mark
//     children inherit; the child inherits the mark, so grandchildren are
//     followed too.
//   - EXIT events of processes user space tracks: hot, sticky, or watched
//     (WatchExit). A process's marks go when it exits; a stale mark of a
//     pid goes when the pid is reused.
//
// Sticky processes (MarkSticky) report no UID, GID or EXEC events, except
// that a mark made by a user other than root reports the credential changes
// (a set-user-ID program ends such a mark; user space decides).
//
// A Filter is a rule list's Names (package rules). While rules are
// replaced, the filter in force must let through what either list needs:
// SetFilter(old.Union(new)), swap, SetFilter(new). The control calls are
// those of package classify's Filter interface: the engine drives them.
//
// # Hooks
//
// Forks, execs and exits come from BTF raw tracepoints (tp_btf:
// sched_process_fork, sched_process_exec, sched_process_exit); the name a
// task leaves in an exec from task_rename, which fires while its comm is
// still the old one. No
// tracepoint fires when credentials change (the proc connector reports from
// commit_creds), so the source hooks commit_creds itself (fentry and fexit)
// where the kernel allows it, probed once per process. Where it does not
// (kernel lockdown refuses fentry, as on this project's machines), credential
// changes are caught where they can happen: the return of every set*id
// system call (the sys_exit raw tracepoint, filtered in the program by
// system call number: x86-64, x32 and i386, whose 16-bit and 32-bit calls
// the per-call syscalls:* tracepoints do not see), and execs of set-user-ID
// and set-group-ID programs (sched_process_exec: the kernel flags such an
// exec with PER_CLEAR_ON_SETID). No other path changes a task's uids or
// gids: setgroups, capset, keyctl, unshare and setns commit credentials with
// the same ids. Hooks tells which set is in use.
//
// # Loss
//
// An event the programs cannot reserve in the ring buffer, or a mark they
// cannot store (a full table), is counted in the kernel. Read checks the
// count after each batch of records and, when it grew, appends one
// kernel.EventOverflow: every loss counted before the marker happened
// before the check, so a /proc rescan started when the consumer reaches the
// marker sees what the lost events would have said. A mark user space
// cannot store fails with ErrFull, which the caller treats the same way.
// All maps are bounded (Config).
//
// # Privileges
//
// Loading and attaching tracing programs needs CAP_BPF and CAP_PERFMON
// (Linux 5.8+), or CAP_SYS_ADMIN, and a kernel with BTF
// (/sys/kernel/btf/vmlinux) and BPF ring buffers (5.8+); the object is
// built for x86-64. The process must be in the initial pid namespace: the
// programs report the kernel's pids, which a container's /proc does not
// show (the proc connector refuses such a listener too). Open says why it
// cannot run with a *NotSupportedError (Reason: ReasonArch,
// ReasonPIDNamespace, ReasonNoPrivilege, ReasonNoBTF, ReasonNoRingBuffer,
// ReasonRefused), found once and cached: the caller falls back to the proc
// connector and logs the reason. An open Source holds about 20
// descriptors: its maps, the links that keep its programs attached (the
// programs' own descriptors are closed once attached) and the ring
// buffer's poller. The kernel charges the maps to the
// process's memory cgroup (MapMemory reports them; before Linux 5.11, to
// RLIMIT_MEMLOCK, which Open raises).
//
// # Concurrency
//
// Read must be called from one goroutine at a time (the reader); it sleeps
// in epoll_wait(2) with no timeout, and makes one system call per wake-up.
// Close, Stats, MapMemory, SetFilter and the marks (MarkHot, Settled, Cool,
// MarkSticky, Unsticky, WatchExit, UnwatchExit) are safe from any
// goroutine; each mark is one bpf(2) call, SetFilter a few. Close wakes a
// blocked Read at once, which returns kernel.ErrClosed; later control calls
// return ErrClosed.
//
// The programs are compiled from events.bpf.c (and kernel.bpf.h) by bpf2go
// and committed: see gen.go.
package bpfevents
