package classify

import (
	"sync"
)

// The hot table holds the processes the engine is busy with or has just
// moved: queued (a classification is waiting for a worker or a retry),
// running (being classified), or done (classified; its FORK events are
// still followed for a while). It exists for fork races: a child forked
// before its parent's move inherits the old cgroups, and the kernel queues
// the child's FORK event after the parent's credential change, so a FORK
// whose parent is hot is followed.
//
// Every change goes through one of its transitions, each under the table's
// mutex:
//
//	noted     an event (or a scan, a retry, a followed fork) wants the pid
//	          classified: absent or done -> queued (the caller queues a job);
//	          queued -> queued (coalesced); running -> running, again
//	claimed   a worker takes the job: queued -> running; an exited process
//	          is dropped instead
//	finished  the classification ended: running -> queued (again, or
//	          retry after EINVAL) or done (with the time, for FORKs)
//	exited    the kernel reported the process's EXIT: done entries are
//	          dropped, others marked and dropped when they finish
//	expired   the sweeper drops done entries older than the window
//
// and, for the /proc scans, scanClaimed and scanFinished, which skip a pid
// a worker owns but make a running one run again.
type hotTable struct {
	mu   sync.Mutex
	m    map[int32]hotEntry
	max  int // bound on len(m): a full table is repaired like an overflow
	peak int // largest len(m) since the last rebuild
}

// hot table states
const (
	stQueued uint8 = iota + 1
	stRunning
	stDone
)

type hotEntry struct {
	state  uint8
	again  bool   // a new event arrived while running: classify once more
	exited bool   // EXIT seen while queued/running: drop on completion
	doneAt uint64 // CLOCK_MONOTONIC ns when the classification finished
	tid    int32  // thread (not the main one) that reported the latest UID/GID change
	moved  bool   // the daemon moved this task while it was hot
}

// A multi-threaded setuid (glibc, Go, Java) changes the threads one at a
// time and the kernel reports each; until the last one, /proc/PID/status
// (the main thread) may still show the old ids. The thread that reported
// the change has the new ones, so its status is read instead (hotEntry.tid).
// (Taking the ids from the event itself is wrong when the reader lags
// behind: by the time it runs, the pid may belong to another process.)

func newHotTable(max int) *hotTable {
	return &hotTable{m: make(map[int32]hotEntry), max: max}
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
// thread tid (tid == pid or 0: the main thread).
func (t *hotTable) noted(pid, tid int32) noteResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.m[pid]
	if ok && h.exited {
		// The pid was reused after its process exited (the kernel reported
		// that EXIT before this event): nothing of the old entry applies
		// to the new process.
		h = hotEntry{state: h.state}
		if h.state == stRunning {
			h.again = true
		}
	}
	if tid != pid && tid > 0 {
		h.tid = tid
	}
	if ok {
		switch h.state {
		case stQueued:
			t.m[pid] = h
			return noteCoalesced
		case stRunning:
			h.again = true
			t.m[pid] = h
			return noteAgain
		}
	}
	if !ok && len(t.m) >= t.max {
		return noteFull
	}
	h.state, h.again, h.exited = stQueued, false, false
	t.store(pid, h)
	return noteQueued
}

// claimed marks a queued pid running for a worker and returns the thread
// whose ids to read and whether the daemon moved the task while it was hot
// (see decide's exact). ok is false, and the entry gone, when the process
// exited after the events that queued it: there is nothing left to move.
func (t *hotTable) claimed(pid int32) (tid int32, exact, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	if h.exited {
		delete(t.m, pid)
		return 0, false, false
	}
	h.state = stRunning
	// The thread is consumed by this run: later events name their own.
	tid, exact = h.tid, h.moved
	h.tid = 0
	t.store(pid, h)
	return tid, exact, true
}

// finishResult says what comes after a classification.
type finishResult uint8

const (
	finishDone  finishResult = iota // done: nothing queued
	finishAgain                     // queued again: an event came meanwhile; queue a job now
	finishRetry                     // queued for a retry (EINVAL): queue a job later
)

// finished ends the classification of a running pid claimed with tid:
// moved says it was moved, retry that the move must be retried (the task
// was still being created); now is the CLOCK_MONOTONIC time.
func (t *hotTable) finished(pid, tid int32, moved, retry bool, now uint64) finishResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	h.moved = h.moved || moved
	res := finishDone
	switch {
	case retry:
		// Still being created: stay hot (queued) so its forks are followed.
		h.state, h.again = stQueued, false
		if h.tid == 0 {
			h.tid = tid
		}
		res = finishRetry
	case h.again && !h.exited:
		h.state, h.again = stQueued, false
		res = finishAgain
	default:
		h.state, h.doneAt = stDone, now
	}
	if h.state == stDone && h.exited {
		delete(t.m, pid)
	} else {
		t.store(pid, h)
	}
	return res
}

// scanClaimed marks pid running for a /proc scan, unless a worker owns it
// (queued or running): a queued job reads the task when it runs, after the
// scan's moment; a running one may have read it before the events the scan
// stands in for were lost, so it is made to run once more. exact is as for
// claimed.
func (t *hotTable) scanClaimed(pid int32) (exact, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, busy := t.m[pid]
	if busy && h.state != stDone {
		if h.state == stRunning && !h.again {
			h.again = true
			t.m[pid] = h
		}
		return false, false
	}
	h.state = stRunning
	h.tid = 0
	t.store(pid, h)
	return h.moved, true
}

// scanFinished ends a scan's classification of pid. An event that came
// meanwhile queues it again (finishAgain); a retry keeps it queued
// (finishRetry); otherwise a task moved (or to be retried) stays done for
// its FORKs, and one left alone leaves the table, to keep it small.
func (t *hotTable) scanFinished(pid int32, moved, retry bool, now uint64) finishResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[pid]
	switch {
	case h.again && !h.exited:
		h.state, h.again = stQueued, false
		t.m[pid] = h
		return finishAgain
	case retry && !h.exited:
		t.m[pid] = hotEntry{state: stQueued, moved: h.moved || moved}
		return finishRetry
	case moved || retry || h.again:
		t.m[pid] = hotEntry{state: stDone, doneAt: now, moved: h.moved || moved}
	default:
		delete(t.m, pid)
	}
	return finishDone
}

// exited records the process's EXIT. Its FORK events were queued by the
// kernel before its EXIT, so they have been handled already.
func (t *hotTable) exited(pid int32) {
	t.mu.Lock()
	if h, ok := t.m[pid]; ok {
		if h.state == stDone {
			delete(t.m, pid)
		} else {
			h.exited = true
			t.m[pid] = h
		}
	}
	t.mu.Unlock()
}

// dropExitedQueued drops pid if it is queued and has exited (its EXIT came
// in the same read as the event that queued it) and reports whether it did.
func (t *hotTable) dropExitedQueued(pid int32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.m[pid]; ok && h.exited && h.state == stQueued {
		delete(t.m, pid)
		return true
	}
	return false
}

// forget drops pid (its job could not be queued: nothing will run for it).
func (t *hotTable) forget(pid int32) {
	t.mu.Lock()
	delete(t.m, pid)
	t.mu.Unlock()
}

// follows reports whether a child that parent forked at CLOCK_MONOTONIC
// time ts must be classified: the parent is queued or running, or was
// classified no earlier than slack ns before ts (a fork stamped before the
// move, or so close after it that the clocks cannot tell).
func (t *hotTable) follows(parent int32, ts, slack uint64) bool {
	t.mu.Lock()
	h, ok := t.m[parent]
	t.mu.Unlock()
	if !ok {
		return false
	}
	switch h.state {
	case stQueued, stRunning:
		return true
	case stDone:
		return h.doneAt != 0 && ts < h.doneAt+slack
	}
	return false
}

// expired drops the done entries older than window ns at now. It reports
// whether it rebuilt the map to give memory back (Go maps never shrink):
// when the table has fallen to an eighth of a peak of at least 1,024.
func (t *hotTable) expired(now, window uint64) (rebuilt bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, h := range t.m {
		if h.state == stDone && now-h.doneAt > window {
			delete(t.m, pid)
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

// store writes an entry and tracks the peak size. t.mu is held.
func (t *hotTable) store(pid int32, h hotEntry) {
	t.m[pid] = h
	if n := len(t.m); n > t.peak {
		t.peak = n
	}
}

// len is the number of entries.
func (t *hotTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// get returns pid's entry (for tests).
func (t *hotTable) get(pid int32) (hotEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.m[pid]
	return h, ok
}
