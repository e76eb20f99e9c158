// Package classify decides which cgroups a task belongs in and moves it there.
//
// An Engine takes kernel events from one reader goroutine (Run, which reads
// a Source such as a *kernel.Conn and hands each read to HandleBatch;
// Handle takes a single event; events.go) and turns each UID, GID and EXEC
// event, and each FORK of a process it is busy with, into a job: the
// classification of one task. A classification runs four steps, each a
// small function in the file of its name (pipeline.go ties them together):
//
//	read    (read.go)    the task's ids from /proc/PID/status, and only
//	                     when a rule may match them its cgroups and, when
//	                     rules name processes, its process name
//	decide  (decide.go)  the rule and the moves (decide is pure; an
//	                     ignore_rt rule reads the scheduling policy)
//	apply   (apply.go)   the moves, by the Applier that takes the decision:
//	                     the engine's own cgroup.procs writes
//	                     (apply_cgroupfs.go) unless Config.Appliers has one
//	report  (report.go)  counters, latency, rule hits, log lines
//
// Who does the work: at the end of each read, classifications whose task
// exited within the same read are dropped. The read's one likely job (its
// event's new ids are named by a rule, and no other likely job waits), or
// its only job when nothing is queued or running, is run by the reader
// itself when that is cheap (Applier.Cheap: for cgroupfs, every
// destination's descriptor is open and no cgroup must be created). When it
// is not, the reader hands the job to a worker with what it read and
// decided (the worker does not read /proc again, unless an event for the
// task came meanwhile). Everything else goes to a small pool of workers
// through two bounded queues, likely jobs first (Config.HandOff sends
// everything there). A full queue is counted and repaired by a full /proc
// rescan (scan.go), exactly as a kernel overflow (EventOverflow, which
// kernel.Conn delivers once its queue is drained) is. Under a storm the
// reader pauses briefly between reads so that each wake-up handles a batch,
// and outside a storm it yields its processor every few milliseconds, after
// a batch, so that the Go runtime does not take the processor away from it
// in its next receive (source.go).
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
// processes (hot.go: queued, handed off, being classified or placed, or
// moved in the last few seconds, with the CLOCK_MONOTONIC time of the
// move; its states are a hotState). A FORK event whose parent is hot and
// whose timestamp is earlier than the parent's move (plus a small slack)
// makes the child hot and classifies it too; because the kernel queues a
// child's FORK event before the child can run, this follows double forks
// whose middle process has already exited. The children of a task moved by
// a scan are listed in /proc and classified as well (their FORK events may
// predate the subscription or the loss the scan repairs).
//
// Reloads (recent.go): SetRules after Start is a reload. The tasks
// classified for an event while the rules in force were new (less than a
// minute old) are classified again by the rules that replace them, so that
// a rules file seen half-written does not leave them unclassified; tasks
// placed by settled rules stay where they are, unless Reclassify is asked
// for (a scan of every task by the rules in force, on the rescan loop, as
// a repair scan runs).
//
// Recurring reports (a missing destination, a failed move, a destination
// that cannot be expanded or created) are limited per rule target and
// hierarchy (reportKey), never by what a user chooses (a pid, a process
// name a template expands), and counted in Stats.Errors; classifications
// lost for lack of descriptors (descriptors.go) are counted and repaired
// by a rescan.
//
// Sticky processes (libcgroup's cgexec and cgclassify --sticky): Marks
// (sticky.go; the table and its states in marks.go) is the type the daemon
// hands to package sticky's socket server, which calls Mark, Unmark, Forget
// and Refused. The engine consults the marks on every UID, GID and EXEC
// event, in every classification and in every scan; a mark with children
// is passed on at FORK, EXIT drops it, and scans drop marks whose pid now
// names another process (by start time). Consulting them costs the event
// path no system call and no allocation. A mark made by a user other than
// root is dropped when the process's uids stop being all that user's, so
// that a set-uid program it runs is classified by the rules.
//
// Extension points.
//
// A second way to apply a decision (issue 20, systemd slices): an Applier
// in Config.Appliers. The engine asks each, in order, whether it Takes a
// decision (the cgroupfs writes take the rest); the event reader applies a
// decision itself only when the applier says it is Cheap, otherwise a
// worker does. A slow applier (a D-Bus round trip) returns
// Applied{Pending: true} from Apply, after queueing a Clone of the
// Placement on a bounded queue of its own, and later calls Completion.Done
// exactly once, with the CLOCK_MONOTONIC time the task was placed: until
// then the task stays hot (its forks are followed) and that time is what
// its later FORKs are compared with, as for a cgroup.procs write. A full
// queue is Applied{Lost: true}, repaired by a rescan; retries of a failed
// call are the applier's own (bounded), and an EINVAL-like "not yet" is
// Applied{Retry: true}, retried by the engine.
//
// Slice destinations (rules.Resolved.Slice, issue 20) are decided here and
// applied by package systemd's Applier, which the daemon adds when
// --systemd places them. A slice rule's decision is one Move in the
// cgroup2 hierarchy to the slice's cgroup below Config.SliceRoot (the
// service manager's tree in our cgroup2 view: "/", or a container
// manager's cgroup), with the rule's Target (Target.Slice): the task is in
// place, or ignore holds, when it is at or below the slice (in the scope
// the manager put it in, or in any unit of that slice). The manager
// places the task, not our writes, so --cgroup-root does not confine
// slice destinations: with SliceRoot set, a task visible in the cgroup2
// hierarchy is read wherever it is, and a raw rule's decision for a task
// outside --cgroup-root is Decision.OutOfScope (counted as left alone out
// of scope, as before). The applier's Done reports the time the manager
// finished the move, so the fork race is followed as for our writes; the
// report logs such a move as "placed task" with its unit.
//
// A second event source (issue 21, eBPF): any Source. A source that
// filters in the kernel also implements Filter (the control calls of
// package bpfevents: SetFilter, MarkHot, Settled, Cool, MarkSticky,
// Unsticky); Run finds it by type assertion and tells it the names the
// rules match (rules.Names, whose fields are bpfevents.Filter's) on every
// SetRules, which processes are hot, when their classification ended
// (settled) and when they stop being hot, the sticky marks (with their
// children flag), and so which processes' EXITs are needed; never what the
// source did itself when it reported an event (the hot mark of a process
// whose event it reported, the marks of one whose EXIT it reported). A
// refused call is counted and repaired by a rescan. The netlink source does not
// implement it and receives every event.
//
// Allocation: a classification allocates nothing in the steady state; each
// goroutine that classifies keeps its own scratch (workState). A hand-off
// from the reader to a worker copies the placement.
//
// Privileges: reading /proc/PID of other users' tasks and writing
// cgroup.procs need root (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE for
// /proc/PID/exe). The decision logic (decide) is pure and needs none.
//
// Concurrency: Run, Handle and HandleBatch must be called from a single
// goroutine (the reader). SetRules, RequestRescan, Reclassify, Stats,
// Scan, RuleHits, Destinations and the methods of Marks are safe from any
// goroutine (Reclassify does nothing before Start); the
// tables' locks are held only for map operations (and the Filter's cheap
// calls). An Applier's Apply is called from the workers, the scans and the
// reader; Completion.Done may be called from any goroutine.
package classify
