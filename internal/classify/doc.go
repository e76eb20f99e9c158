// Package classify decides which cgroups a task belongs in and moves it there.
//
// An Engine takes proc connector events from one reader goroutine (Run,
// which reads a Source such as a *kernel.Conn and hands each read to
// HandleBatch; Handle takes a single event) and classifies the tasks they
// name: it reads the task's ids (/proc/PID/status), stops there when no
// rule can match them, then reads its cgroups and, when rules name
// processes, its procname, decides (decide.go, pure) and moves the process
// with a Mover (one cgroup.procs write per hierarchy).
//
// Who does the work: at the end of each read, classifications whose task
// exited within the same read are dropped. The read's one likely job (its
// event's new ids are named by a rule, and no other likely job waits), or
// its only job when nothing is queued or running, is run by the reader
// itself when that is cheap: every destination's descriptor is open and no
// cgroup must be created. Everything else goes to a small pool of workers
// through two bounded queues, likely jobs first (Config.HandOff sends
// everything there). A full queue is counted and repaired by a full /proc
// rescan, exactly as a kernel overflow (EventOverflow, which kernel.Conn
// delivers once its queue is drained) is. Under a storm the reader pauses
// briefly between reads so that each wake-up handles a batch, and outside a
// storm it yields its processor every few milliseconds, after a batch, so
// that the Go runtime does not take the processor away from it in its next
// receive (reader.go).
//
// Retries: a task still being created fails its move with EINVAL; the job
// then waits in a delayed queue (retry.go), owned by one goroutine and one
// timer, for 10, 20, ... ms, Config.Retries times at most. No goroutine that
// handles events or classifies tasks sleeps for a retry. A realtime task's
// EINVAL (a v1 cpu cgroup without an rt_runtime_us budget) is reported at
// once and not retried; /proc/PID/stat is read only for that and for
// ignore_rt rules.
//
// Fork races: between a task's credential change and its move, children it
// forks inherit the old cgroup. The engine keeps a bounded table of "hot"
// processes (hot.go: queued, being classified, or moved in the last few
// seconds, with the CLOCK_MONOTONIC time of the move). A FORK event whose
// parent is hot and whose timestamp is earlier than the parent's move (plus
// a small slack) makes the child hot and classifies it too; because the
// kernel queues a child's FORK event before the child can run, this follows
// double forks whose middle process has already exited. The children of a
// task moved by a scan are listed in /proc and classified as well (their
// FORK events may predate the subscription or the loss the scan repairs).
//
// Sticky processes (libcgroup's cgexec and cgclassify --sticky, through
// package sticky's socket): Mark, Unmark and Forget keep a bounded table of
// marks (marks.go) that the engine consults on every UID, GID and EXEC
// event, in every classification and in every scan; a mark with flags 1 is
// passed on at FORK, EXIT drops it, and scans drop marks whose pid now names
// another process (by start time). Consulting it costs the event path no
// system call and no allocation.
//
// Allocation: a classification allocates nothing in the steady state; each
// goroutine that classifies keeps its own scratch (workState).
//
// Privileges: reading /proc/PID of other users' tasks and writing
// cgroup.procs need root (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE for
// /proc/PID/exe). The decision logic (decide) is pure and needs none.
//
// Concurrency: Run, Handle and HandleBatch must be called from a single
// goroutine (the reader). SetRules, RequestRescan, Stats, HotLen, Scan,
// Mark, Unmark, Forget, Refused and Sticky are safe from any goroutine; the
// marks' lock is held only for map operations.
package classify
