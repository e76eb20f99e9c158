// Package sched asks the kernel's fair scheduler (EEVDF, Linux 6.12+) for a
// short time slice for every thread of the calling process.
//
// Why: the daemon's latency from a task's setuid to its move is mostly the
// time the daemon's thread waits for a CPU after the kernel wakes it. When
// the task that changed its uid keeps computing on that CPU (a batch
// payload does), a thread with the default slice (0.7-3 ms, by CPU count)
// waits until the running task's slice ends: measured on a 2-vCPU VM, 10%
// of moves took over 2.5 ms. A shorter requested slice lets the woken
// thread preempt at once (the kernel's PREEMPT_SHORT) without granting it
// more CPU time: its weight, and so its share, stay the same.
//
// SetSlice applies sched_setattr(2) (policy SCHED_OTHER, nice unchanged,
// sched_runtime = the slice) to each thread listed in /proc/self/task.
// Threads created afterwards inherit the setting from their creator, so
// calling it once early, before the process starts its workers, covers the
// process; SetSlice rereads the thread list until it finds no thread it has
// not set, so threads created while it runs are covered too.
//
// # Privileges
//
// None: any process may choose the slice of its own SCHED_OTHER threads
// (the kernel clamps it to 0.1-100 ms). A thread running under another
// policy (SCHED_FIFO, SCHED_BATCH set by an administrator, ...) is left
// alone.
//
// # Kernel support
//
// Kernels before 6.12 accept the call and ignore the slice. SetSlice reads
// the setting back from the first thread and returns ErrNotSupported when
// the kernel did not keep it; the result of that probe is cached.
//
// # Concurrency
//
// SetSlice may be called from any goroutine; calls are serialised.
package sched
