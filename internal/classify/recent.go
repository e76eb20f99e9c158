package classify

import (
	"sync"
	"sync/atomic"
	"time"
)

// Issue 19, item 4: a task whose credentials change while a reload is in
// progress must end where the rules that end up in force put it. An
// in-place rewrite of the rules file (truncate, then write) is seen half
// done: the daemon loads the empty or partial file, and tasks classified
// by those rules (0 of 5 in the reproduction) were never looked at again
// once the whole file was loaded.
//
// So the rules a reload puts in force are new for settleWindow: while they
// are, the engine remembers the tasks it classifies for an event (their
// credentials changed, they ran a program, they were forked during a
// move). When a reload replaces rules that are still new, those tasks are
// classified again by the rules now in force (Engine.SetRules, by the
// rescan loop); rules that had been in force longer, and the rules the
// daemon started with, are settled, and a reload leaves the tasks they
// placed where they are, as every running task (libcgroup's behaviour;
// see --reclassify for the rest).
//
// A source that filters in the kernel (Filter) would never report a task
// whose ids only the next rules name, so while the rules are new the
// engine sets its filter to every credential change (Names.Any), as the
// proc connector reports them, and narrows it to the rules' names when the
// window closes (Engine.settleFilter): a reload costs the BPF source a
// minute of the proc connector's credential events.
//
// recentTasks is that memory. Its states:
//
//	closed --open (SetRules)--> open: record adds pids, exited drops them
//	open --settleWindow passes--> closed (the set is dropped)
//	open --open (SetRules)--> open, and the pids recorded so far are returned
//	open --record when max pids are held--> open+lost: nothing more is
//	    recorded; open then returns lost, and the caller rescans everything
//
// Cost: record is one atomic load while closed (almost always), a map
// insertion under a lock while open; exited one atomic load while empty.
type recentTasks struct {
	max    int
	window time.Duration
	// closed, when set, is called (without mu) after the window closed by
	// itself: the rules in force are settled.
	closed func()

	open atomic.Bool
	n    atomic.Int64 // len(pids)

	mu    sync.Mutex
	pids  map[int32]struct{}
	lost  bool
	gen   uint64      // which opening the timer closes
	timer *time.Timer // closes the window
}

// settleWindow is how long the rules put in force by a reload count as
// new, and maxRecent how many tasks are remembered meanwhile.
const (
	settleWindow = time.Minute
	maxRecent    = 65536
)

func newRecentTasks(max int, window time.Duration) *recentTasks {
	return &recentTasks{max: max, window: window, pids: make(map[int32]struct{})}
}

// record remembers pid while the window is open.
func (r *recentTasks) record(pid int32) {
	if !r.open.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.open.Load() || r.lost {
		return
	}
	if _, ok := r.pids[pid]; ok {
		return
	}
	if len(r.pids) >= r.max {
		r.lost = true
		return
	}
	r.pids[pid] = struct{}{}
	r.n.Store(int64(len(r.pids)))
}

// exited forgets a process that exited.
func (r *recentTasks) exited(pid int32) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	delete(r.pids, pid)
	r.n.Store(int64(len(r.pids)))
	r.mu.Unlock()
}

// reopen starts a new window (new rules are in force) and returns the pids
// recorded in the one it ends, if that one was still open: the tasks the
// replaced rules classified while they were new. lost says that more were
// classified than could be remembered.
func (r *recentTasks) reopen() (pids []int32, lost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open.Load() {
		pids = make([]int32, 0, len(r.pids))
		for pid := range r.pids {
			pids = append(pids, pid)
		}
		lost = r.lost
	}
	r.reset()
	r.open.Store(true)
	r.gen++
	gen := r.gen
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer = time.AfterFunc(r.window, func() {
		if r.close(gen) && r.closed != nil {
			r.closed()
		}
	})
	return pids, lost
}

// close ends the window opened as gen (unless another opened since): the
// rules in force are settled. It reports whether it closed it.
func (r *recentTasks) close(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return false
	}
	r.open.Store(false)
	r.reset()
	return true
}

// stop ends the window for good (the engine stops).
func (r *recentTasks) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if r.timer != nil {
		r.timer.Stop()
	}
	r.open.Store(false)
	r.reset()
}

// reset empties the set (r.mu is held); a large map is dropped so that its
// memory can be returned.
func (r *recentTasks) reset() {
	if len(r.pids) > 1024 {
		r.pids = make(map[int32]struct{})
	} else {
		clear(r.pids)
	}
	r.lost = false
	r.n.Store(0)
}

// recheckRecent is SetRules' part after a reload: a new window, and the
// tasks recorded in the one it ends handed to the rescan loop (all of them,
// by a rescan, if there were too many to remember).
func (e *Engine) recheckRecent() {
	pids, lost := e.recent.reopen()
	switch {
	case lost:
		e.log.Warnf("more than %d tasks were classified by the rules just replaced while they were new: every task is classified again (rescan)", maxRecent)
		e.RequestRescan()
	case len(pids) > 0:
		e.recheckMu.Lock()
		e.rechecks = append(e.rechecks, pids...)
		e.recheckMu.Unlock()
		select {
		case e.recheck <- struct{}{}:
		default:
		}
	}
}
