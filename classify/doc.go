// Package classify decides which cgroups a task belongs in and moves it there.
//
// An Engine receives proc connector events from one reader goroutine
// (Handle), hands the work to a small pool of worker goroutines through a
// bounded queue, and moves each process with a cgroupfs.Mover. It never
// blocks the caller of Handle: when the queue is full the event is counted
// and a full /proc rescan is requested, exactly as for a kernel overflow.
//
// Fork races: between a task's credential change and its move, children it
// forks inherit the old cgroup. The engine keeps a bounded table of "hot"
// processes (queued, being classified, or moved in the last few seconds, with
// the CLOCK_MONOTONIC time of the move). A FORK event whose parent is hot and
// whose timestamp is earlier than the parent's move (plus a small slack) makes
// the child hot and classifies it too; because the kernel queues a child's
// FORK event before the child can run, this follows double forks whose middle
// process has already exited. After each move the moved task's current
// children are classified as well.
//
// Sticky processes (libcgroup's cgexec and cgclassify --sticky, through
// package sticky's socket): Mark, Unmark and Forget keep a bounded table of
// marks (marks.go) that the engine consults on every UID, GID and EXEC
// event, in every classification and in every scan; a mark with flags 1 is
// passed on at FORK, EXIT drops it, and scans drop marks whose pid now names
// another process (by start time). Consulting it costs the event path no
// system call and no allocation.
//
// Privileges: reading /proc/PID of other users' tasks and writing
// cgroup.procs need root (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE for
// /proc/PID/exe). The decision logic (decide) is pure and needs none.
//
// Concurrency: Handle must be called from a single goroutine. SetRules,
// RequestRescan, Stats, Scan, Mark, Unmark, Forget, Refused and Sticky are
// safe from any goroutine; the marks' lock is held only for map operations.
package classify
