package classify

import (
	"sync"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// The hot table holds the processes the engine is busy with or has just
// moved. It exists for fork races: a child forked before its parent's move
// inherits the old cgroups, and the kernel queues the child's FORK event
// after the parent's credential change, so a FORK whose parent is hot is
// followed (follows).
//
// A process's entry is in one of the states of hotState; every change goes
// through one of the transitions below, each under the table's mutex
// (TestHotTransitions walks them all, one row each):
//
//	noted       an event (a scan, a followed fork) wants the pid classified:
//	            absent or done -> queued (the caller queues a job);
//	            queued -> queued (coalesced); handedOff -> queued (coalesced:
//	            the read the job carries is stale now); running -> running,
//	            once more afterwards (again)
//	claimed     a worker takes the job: queued -> running (it reads the
//	            task), handedOff -> running (it applies the read it
//	            carries); an exited process is dropped instead
//	handedOff   the event reader found the move not cheap and hands its
//	            read to a worker: running -> handedOff (-> queued when an
//	            event came meanwhile)
//	finished    the classification ended: running -> queued (again, or a
//	            retry after EINVAL) or done (with the time of the move,
//	            for FORKs)
//	exited      the kernel reported the process's EXIT: done entries are
//	            dropped, others marked and dropped when they end
//	expired     the sweeper drops done entries older than the window
//
// and, for the /proc scans, scanClaimed and scanFinished, which skip a pid
// a worker owns but make a running one run again.
type hotTable struct {
	mu   sync.Mutex
	m    map[int32]hotEntry
	max  int // bound on len(m): a full table is repaired like an overflow
	peak int // largest len(m) since the last rebuild

	// filter, when not nil, is told when a pid becomes hot, is settled and
	// stops being hot (see Filter); it is called under mu, and is cheap.
	filter *filterLink

	// done is signalled (never blocking) when an entry becomes done: the
	// sweeper, asleep while the table is empty, has something to expire.
	done chan struct{}
}

// hotState is where a process is in the table.
type hotState uint8

const (
	hotAbsent    hotState = iota // not in the table
	hotQueued                    // a job will read and classify the task
	hotHandedOff                 // a job carries the event reader's read and decision: it only applies them
	hotRunning                   // being classified, or its placement is in flight
	hotDone                      // classified; its FORKs are followed for a while
)

func (s hotState) String() string {
	return [...]string{"absent", "queued", "handedOff", "running", "done"}[s]
}

type hotEntry struct {
	state  hotState
	again  bool   // running: an event came meanwhile, classify once more
	exited bool   // EXIT seen while queued/running: drop when it ends
	doneAt uint64 // done: CLOCK_MONOTONIC ns when the classification ended (the move's time)
	tid    int32  // thread (not the main one) that reported the latest UID/GID change
	moved  bool   // the daemon moved this task while it was hot (see decide's exact)
	asOf   uint64 // with a filter: CLOCK_MONOTONIC ns of the claim, before /proc was read (Filter.Settled)
}

// A multi-threaded setuid (glibc, Go, Java) changes the threads one at a
// time and the kernel reports each; until the last one, /proc/PID/status
// (the main thread) may still show the old ids. The thread that reported
// the change has the new ones, so its status is read instead (hotEntry.tid).
// (Taking the ids from the event itself is wrong when the reader lags
// behind: by the time it runs, the pid may belong to another process.)

func newHotTable(max int) *hotTable {
	return &hotTable{m: make(map[int32]hotEntry), max: max, done: make(chan struct{}, 1)}
}

// noteResult says what noted did.
type noteResult uint8

const (
	noteQueued    noteResult = iota // newly queued: the caller must queue a job
	noteCoalesced                   // already queued: nothing to do
	noteAgain                       // running: it will run once more
	noteFull                        // the table is full: nothing noted
)

// noted records that pid must be classified, for an event reported by
// thread tid (tid == pid or 0: the main thread). reported: the event
// source reported the event (a UID, GID or EXEC, or the FORK of a child it
// followed): a Filter source marked the process hot itself, and is not
// told again.
func (t *hotTable) noted(pid, tid int32, reported bool) noteResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.m[pid]
	if ok && h.exited {
		// The pid was reused after its process exited (the kernel reported
		// that EXIT before this event): nothing of the old entry applies
		// to the new process.
		h = hotEntry{state: h.state, again: h.state == hotRunning}
	}
	if tid != pid && tid > 0 {
		h.tid = tid
	}
	switch h.state {
	case hotQueued, hotHandedOff:
		h.state = hotQueued
		t.m[pid] = h
		return noteCoalesced
	case hotRunning:
		h.again = true
		t.m[pid] = h
		return noteAgain
	}
	if !ok && len(t.m) >= t.max {
		return noteFull
	}
	h.state, h.again, h.exited = hotQueued, false, false
	t.storeQuiet(pid, h, reported)
	return noteQueued
}

// claim is what a worker learns when it takes a job.
type claim struct {
	tid   int32 // the thread whose ids to read (0: the main thread)
	exact bool  // the daemon moved the task while it was hot (see decide)
	// carried: the job's read and decision still hold (handed off by the
	// event reader, no event since); otherwise the task is read again.
	carried bool
}

// claimed marks a queued pid running for a worker. ok is false, and the
// entry gone, when the process exited after the events that queued it:
// there is nothing left to move.
func (t *hotTable) claimed(pid int32) (c claim, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	if h.exited {
		t.drop(pid)
		return claim{}, false
	}
	c = claim{tid: h.tid, exact: h.moved, carried: h.state == hotHandedOff}
	if t.filter != nil && !c.carried {
		h.asOf = kernel.Now() // a carried read keeps the reader's
	}
	// The thread is consumed by this run: later events name their own.
	h.state, h.tid = hotRunning, 0
	t.store(pid, h)
	return c, true
}

// handedOff ends the event reader's run of a claimed pid whose move was not
// cheap: a worker takes the job with the read it carries (handedOff), or,
// when an event or a scan came meanwhile, reads the task again (queued).
func (t *hotTable) handedOff(pid, tid int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	h.state = hotHandedOff
	if h.again {
		h.state, h.again = hotQueued, false
	}
	if h.tid == 0 {
		h.tid = tid
	}
	t.store(pid, h)
}

// outcome is how a classification ended, for the hot table.
type outcome struct {
	moved bool // at least one move was made
	retry bool // EINVAL: the task is still being set up; classify it again later
}

// finishResult says what comes after a classification.
type finishResult uint8

const (
	finishDone  finishResult = iota // done: nothing queued
	finishAgain                     // queued again: an event came meanwhile; queue a job now
	finishRetry                     // queued for a retry (EINVAL): queue a job later
)

// finished ends the classification of a running pid claimed with tid; at is
// the CLOCK_MONOTONIC time of its move (or of the end, when nothing moved).
func (t *hotTable) finished(pid, tid int32, out outcome, at uint64) finishResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	h.moved = h.moved || out.moved
	res := finishDone
	switch {
	case out.retry:
		// Still being created: stay hot (queued) so its forks are followed.
		h.state, h.again = hotQueued, false
		if h.tid == 0 {
			h.tid = tid
		}
		res = finishRetry
	case h.again && !h.exited:
		h.state, h.again = hotQueued, false
		res = finishAgain
	default:
		h.state, h.doneAt = hotDone, at
	}
	if h.state == hotDone && h.exited {
		t.drop(pid)
	} else {
		t.store(pid, h)
	}
	return res
}

// scanClaimed marks pid running for a /proc scan, unless a worker owns it
// (queued, handed off or running): a queued job reads the task when it
// runs, after the scan's moment; a running one may have read it before the
// events the scan stands in for were lost, so it is made to run once more.
// exact is as for claimed.
func (t *hotTable) scanClaimed(pid int32) (exact, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, busy := t.m[pid]
	if busy && h.state != hotDone {
		if h.state == hotRunning && !h.again {
			h.again = true
			t.m[pid] = h
		}
		return false, false
	}
	h.state = hotRunning
	h.tid = 0
	if t.filter != nil {
		h.asOf = kernel.Now()
	}
	t.store(pid, h)
	return h.moved, true
}

// scanFinished ends a scan's classification of pid. An event that came
// meanwhile queues it again (finishAgain); a retry keeps it queued
// (finishRetry); otherwise a task moved (or to be retried) stays done for
// its FORKs, and one left alone leaves the table, to keep it small.
func (t *hotTable) scanFinished(pid int32, out outcome, at uint64) finishResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	moved := h.moved || out.moved
	switch {
	case h.again && !h.exited:
		h.state, h.again = hotQueued, false
		t.m[pid] = h
		return finishAgain
	case out.retry && !h.exited:
		t.m[pid] = hotEntry{state: hotQueued, moved: moved}
		return finishRetry
	case out.moved || out.retry || h.again:
		t.store(pid, hotEntry{state: hotDone, doneAt: at, moved: moved, asOf: h.asOf})
	default:
		t.drop(pid)
	}
	return finishDone
}

// exited records the process's EXIT. Its FORK events were queued by the
// kernel before its EXIT, so they have been handled already.
func (t *hotTable) exited(pid int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.m[pid]; ok {
		h.exited = true
		t.m[pid] = h
		if h.state == hotDone {
			t.drop(pid)
		}
	}
}

// dropExitedQueued drops pid if it waits for a worker and has exited (its
// EXIT came in the same read as the event that queued it) and reports
// whether it did.
func (t *hotTable) dropExitedQueued(pid int32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.m[pid]; ok && h.exited && (h.state == hotQueued || h.state == hotHandedOff) {
		t.drop(pid)
		return true
	}
	return false
}

// forget drops pid (its job could not be queued: nothing will run for it).
func (t *hotTable) forget(pid int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drop(pid)
}

// follows reports whether a child that parent forked at CLOCK_MONOTONIC
// time ts must be classified: the parent is queued, handed off or running,
// or was classified no earlier than slack ns before ts (a fork stamped
// before the move, or so close after it that the clocks cannot tell).
func (t *hotTable) follows(parent int32, ts, slack uint64) bool {
	t.mu.Lock()
	h, ok := t.m[parent]
	t.mu.Unlock()
	if !ok {
		return false
	}
	if h.state == hotDone {
		return h.doneAt != 0 && ts < h.doneAt+slack
	}
	return true
}

// expired drops the done entries older than window ns at now. It reports
// whether it rebuilt the map to give memory back (Go maps never shrink):
// when the table has fallen to an eighth of a peak of at least 1,024.
func (t *hotTable) expired(now, window uint64) (rebuilt bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, h := range t.m {
		if h.state == hotDone && now-h.doneAt > window {
			t.drop(pid)
		}
	}
	t.m, t.peak, rebuilt = shrink(t.m, t.peak)
	return rebuilt
}

// shrink returns a copy of m, and its size as the new peak, when m has
// fallen to an eighth of a peak of at least 1,024 entries (Go maps never
// shrink: the copy lets the memory of the old one be returned); otherwise
// m and peak unchanged.
func shrink[K comparable, V any](m map[K]V, peak int) (map[K]V, int, bool) {
	if peak < 1024 || len(m) > peak/8 {
		return m, peak, false
	}
	fresh := make(map[K]V, len(m))
	for k, v := range m {
		fresh[k] = v
	}
	return fresh, len(fresh), true
}

// empty reports whether the table holds no entry.
func (t *hotTable) empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m) == 0
}

// store writes an entry, tracks the peak size and tells the filter what
// the change means for the process's FORKs and EXIT. t.mu is held.
func (t *hotTable) store(pid int32, h hotEntry) { t.storeQuiet(pid, h, false) }

// storeQuiet is store; marked: the source marked the process hot itself,
// so the filter is not told it became hot.
func (t *hotTable) storeQuiet(pid int32, h hotEntry, marked bool) {
	old, had := t.m[pid]
	t.m[pid] = h
	if n := len(t.m); n > t.peak {
		t.peak = n
	}
	if h.state == hotDone {
		select {
		case t.done <- struct{}{}:
		default:
		}
	}
	if t.filter == nil {
		return
	}
	switch {
	case h.state == hotDone && (old.state != hotDone || old.doneAt != h.doneAt):
		t.filter.check(t.filter.f.Settled(pid, h.asOf, h.doneAt))
	case h.state != hotDone && (!had || old.state == hotDone) && !marked:
		t.filter.check(t.filter.f.MarkHot(pid))
	}
}

// drop deletes an entry and tells the filter, unless the process exited:
// a source that reports EXITs dropped its marks itself then, and the pid
// may already belong to a new process the source marked. t.mu is held.
func (t *hotTable) drop(pid int32) {
	h, ok := t.m[pid]
	if !ok {
		return
	}
	delete(t.m, pid)
	if t.filter != nil && !h.exited {
		t.filter.check(t.filter.f.Cool(pid))
	}
}

// attach makes l the table's filter and tells it every entry held now.
func (t *hotTable) attach(l *filterLink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.filter = l
	for pid, h := range t.m {
		l.check(l.f.MarkHot(pid))
		if h.state == hotDone {
			l.check(l.f.Settled(pid, h.asOf, h.doneAt))
		}
	}
}
