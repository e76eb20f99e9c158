package classify

import (
	"runtime"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// The event reader's side of the engine: each kernel event becomes at most
// one job (a classification to run), queued for the workers or, at the end
// of a batch, run by the reader itself when that is cheap. Nothing here
// reads /proc or blocks.

// job is one classification to run.
type job struct {
	pid     int32
	why     reason
	attempt uint8
	// prio: the job likely leads to a move (the event's new ids are named
	// by a rule, a process rule's EXEC, a followed child, a retry). It is
	// only a hint, from the event's ids, which a lagging reader cannot
	// trust: it orders the work, the classification reads the task.
	prio bool
	// scan: the job is a scan's, claimed with hotTable.scanClaimed (it
	// never waits in a queue; its retries are ordinary jobs).
	scan bool
	ts   uint64 // CLOCK_MONOTONIC ns of the event, for the latency histogram; 0: none
	tid  int32  // the thread whose ids were read (set when claimed)
	// carried is the event reader's read and decision, when it handed the
	// job to a worker because the move was not cheap: the worker applies
	// it unless the task changed since (hotTable.claimed says).
	carried *Placement
}

// Handle takes one event from the netlink reader and hands any
// classification it calls for to a worker. It never blocks.
func (e *Engine) Handle(ev *kernel.Event) {
	e.stats.Events.Add(1)
	if k := kindOf(ev.What); k >= 0 {
		e.stats.EventsByKind[k].Add(1)
	}
	e.handle(ev)
}

// kindOf is the Stats.EventsByKind index of an event type, -1 for others.
func kindOf(w kernel.What) int {
	switch w {
	case kernel.EventFork:
		return KindFork
	case kernel.EventExec:
		return KindExec
	case kernel.EventUID:
		return KindUID
	case kernel.EventGID:
		return KindGID
	case kernel.EventExit:
		return KindExit
	case kernel.EventOverflow:
		return KindOverflow
	}
	return -1
}

func (e *Engine) handle(ev *kernel.Event) {
	switch ev.What {
	case kernel.EventUID, kernel.EventGID:
		e.creds(ev)
	case kernel.EventExec:
		e.exec(ev)
	case kernel.EventFork:
		if ev.PID != ev.TGID {
			// A new thread: a cgroup.procs write moves every thread of the
			// process, including this one, so there is nothing to follow.
			return
		}
		e.fork(ev)
	case kernel.EventExit:
		if ev.PID == ev.TGID {
			e.exit(ev.TGID)
		}
	case kernel.EventOverflow:
		e.stats.Overflows.Add(1)
		if n, ok := e.overflowLog.Allow(time.Now()); ok {
			e.log.WithField(ratelimit.NotLogged, n).Warn("kernel events were lost (the event source overflowed): rescanning /proc")
		}
		e.RequestRescan()
	}
}

// creds queues the classification of a task whose ids changed.
func (e *Engine) creds(ev *kernel.Event) {
	e.stats.Creds.Add(1)
	if e.marks.skipCreds(ev) {
		return
	}
	prio := false
	if rs := e.rs.Load(); rs != nil {
		if ev.What == kernel.EventUID {
			prio = rs.list.NamesUser(ev.EUID)
		} else {
			prio = rs.list.NamesGroup(ev.EGID)
		}
	}
	e.queue(job{pid: ev.TGID, why: reasonCreds, ts: ev.Timestamp, prio: prio}, ev.PID)
}

// exec queues the classification of a task that ran a program, when rules
// name programs.
func (e *Engine) exec(ev *kernel.Event) {
	rs := e.rs.Load()
	if rs == nil || !rs.list.NeedsProcess() || e.marks.skip(ev.TGID) {
		return
	}
	e.stats.Execs.Add(1)
	e.queue(job{pid: ev.TGID, why: reasonExec, ts: ev.Timestamp, prio: true}, ev.TGID)
}

// fork follows a child forked before its parent's move (see hot.go), unless
// it inherited a sticky mark.
func (e *Engine) fork(ev *kernel.Event) {
	if e.marks.fork(ev) {
		return
	}
	if e.hot.follows(ev.ParentTGID, ev.Timestamp, uint64(e.cfg.ForkSlack)) {
		e.stats.ForksFollowed.Add(1)
		e.queue(job{pid: ev.TGID, why: reasonFork, prio: true}, ev.TGID)
	}
}

// exit drops a finished process from the hot table and its sticky mark.
// Its FORK events were queued by the kernel before its EXIT, so they have
// been handled already.
func (e *Engine) exit(pid int32) {
	e.marks.exit(pid)
	e.hot.exited(pid)
	e.recent.exited(pid)
}

// note marks j's pid hot for an event reported by thread tid and reports
// whether a job must be queued for it: not when one is queued already (a
// multi-threaded setuid reports once per thread) or running (it will run
// again), nor when the table is full (repaired by a rescan).
func (e *Engine) note(j job, tid int32) bool {
	if j.pid <= 0 {
		return false
	}
	e.recent.record(j.pid)
	reported := j.why == reasonCreds || j.why == reasonExec || j.why == reasonFork
	switch e.hot.noted(j.pid, tid, reported) {
	case noteCoalesced:
		e.stats.Coalesced.Add(1)
		return false
	case noteAgain:
		return false
	case noteFull:
		e.queueFull()
		return false
	}
	return true
}

// queue is note for the reader: inside HandleBatch the job waits in
// e.pending for the end of the batch, otherwise it goes to the workers.
// (Workers and scans never touch e.pending: they note and push.)
func (e *Engine) queue(j job, tid int32) {
	if !e.note(j, tid) {
		return
	}
	if e.inBatch {
		e.pending = append(e.pending, j)
		return
	}
	e.push(j)
}

// HandleBatch is Handle for every event of one read. Classifications are
// decided at the end of the batch, and dropped for a process whose EXIT is
// in the same batch: under a fork storm most credential changes belong to
// tasks that are already gone, and waking a worker for each cost more than
// the events themselves.
//
// What remains is handed to the workers, except in the common idle case:
// one classification, no job queued and no worker busy. The reader then
// classifies the task itself (inline), which spares the wake-up of a
// worker's thread (a futex and a cross-CPU wake, ~30 µs on a VM), as long
// as it is cheap (Applier.Cheap: for the cgroupfs writes, the
// destinations' descriptors are open and no cgroup must be created;
// otherwise the job goes to a worker after all, with what the reader read
// and decided), and an EINVAL goes to the retry queue. Reading
// /proc/PID/cgroup and status and writing cgroup.procs take some tens of
// µs, during which the kernel keeps queueing events. Config.HandOff turns
// this off. Same contract as Handle.
func (e *Engine) HandleBatch(evs []kernel.Event) {
	e.stats.Events.Add(uint64(len(evs)))
	var kinds [NumKinds]uint64 // counted here, published once per batch
	e.inBatch = true
	for i := range evs {
		if k := kindOf(evs[i].What); k >= 0 {
			kinds[k]++
		}
		e.handle(&evs[i])
	}
	e.inBatch = false
	for k, n := range kinds {
		if n > 0 {
			e.stats.EventsByKind[k].Add(n)
		}
	}
	pending := e.dropExited(e.pending)
	e.pending = e.pending[:0]
	if pick := e.inlinePick(pending); pick >= 0 {
		if !e.runInline(&pending[pick]) {
			pending[pick].pid = 0 // done
		}
	}
	pushed := false
	for _, j := range pending {
		if j.pid != 0 {
			e.push(j)
			pushed = true
		}
	}
	if pushed {
		// Let the worker run now on this thread rather than wait for
		// another one to be woken (tens of µs on a virtual machine): the
		// reader loses nothing, the kernel keeps queueing its events.
		runtime.Gosched()
	}
}

// dropExited removes from a batch's jobs those whose process exited in the
// same batch, in place.
func (e *Engine) dropExited(pending []job) []job {
	n := 0
	for _, j := range pending {
		if e.hot.dropExitedQueued(j.pid) {
			e.stats.Gone.Add(1)
			continue
		}
		pending[n] = j
		n++
	}
	return pending[:n]
}

// inlinePick is the batch's job the reader runs itself, -1 for none: the
// one likely job (unless likely jobs wait already), or the only job when
// nothing at all is queued or running.
func (e *Engine) inlinePick(pending []job) int {
	if e.cfg.HandOff || len(e.fast) > 0 {
		return -1
	}
	nprio, first := 0, -1
	for i := range pending {
		if pending[i].prio {
			nprio++
			if first < 0 {
				first = i
			}
		}
	}
	switch {
	case nprio == 1:
		return first
	case len(pending) == 1 && len(e.jobs) == 0 && e.busy.Load() == 0:
		return 0
	}
	return -1
}

// runInline runs j on the reader (see HandleBatch). It reports whether it
// handed j off: the move was not cheap, and j, now carrying what the
// reader read and decided, is for the caller to push.
func (e *Engine) runInline(j *job) (handedOff bool) {
	e.inline.inline = true
	handedOff = e.run(&e.inline, j)
	e.inline.inline = false
	if !handedOff {
		e.stats.Inline.Add(1)
	}
	return handedOff
}
