package classify

import (
	"time"

	"github.com/sirupsen/logrus"
)

// RequestRescan asks for a full /proc reconciliation. Requests made while one
// is pending coalesce; a request made during a rescan causes one more. The
// rescan reads every task after the request was made, so a request made
// when the loss is over (for the kernel: at the EventOverflow marker, which
// kernel.Conn delivers once the queue is drained) covers every lost event.
func (e *Engine) RequestRescan() {
	select {
	case e.rescan <- struct{}{}:
	default:
	}
}

func (e *Engine) rescanLoop() {
	defer e.wg.Done()
	var st workState
	for {
		select {
		case <-e.stop:
			return
		case <-e.rescan:
			start := time.Now()
			n, moved := e.scan(&st, reasonRepair)
			e.stats.Rescans.Add(1)
			e.log.WithFields(logrus.Fields{"tasks": n, "moved": moved, "took": time.Since(start).Round(time.Microsecond)}).Info("rescan done")
		case <-e.recheck:
			e.recheckMu.Lock()
			pids := e.rechecks
			e.rechecks = nil
			e.recheckMu.Unlock()
			start := time.Now()
			e.recheckAll(&st, pids)
			e.log.WithFields(logrus.Fields{"tasks": len(pids), "took": time.Since(start).Round(time.Microsecond)}).
				Info("reload: the tasks the replaced rules classified while they were new were classified again (moved: moved_tasks{reason=\"reload\"})")
		case done := <-e.reclassify:
			start := time.Now()
			n, moved := e.scan(&st, reasonReclassify)
			e.stats.Reclassifications.Add(1)
			r := Reclassified{Tasks: n, Moved: moved, Took: time.Since(start)}
			e.log.WithFields(logrus.Fields{"tasks": n, "moved": moved, "took": r.Took.Round(time.Microsecond)}).Info("every task classified again")
			done <- r
		}
	}
}

// Reclassified is what a reclassification did.
type Reclassified struct {
	Tasks, Moved int // tasks looked at, and moved
	Took         time.Duration
}

// Reclassify classifies every running task again by the rules in force,
// as the start-up scan does (sticky tasks stay; a task the user put below
// its destination stays), and returns once that is done; ok is false when
// the engine stopped first, or has not started. It runs on the rescan
// loop's goroutine, one at a time.
func (e *Engine) Reclassify() (r Reclassified, ok bool) {
	if !e.started.Load() {
		return r, false
	}
	done := make(chan Reclassified, 1)
	select {
	case e.reclassify <- done:
	case <-e.stop:
		return r, false
	}
	select {
	case r = <-done:
		return r, true
	case <-e.stop:
		return r, false
	}
}

// recheckAll classifies pids again (after a reload: recent.go) on this
// goroutine, each as an event's job would be. A pid a worker is busy with
// is run again by that worker once it is done (hotTable.noted), with the
// rules now in force; one queued already runs with them too.
func (e *Engine) recheckAll(st *workState, pids []int32) {
	for _, pid := range pids {
		select {
		case <-e.stop:
			return
		default:
		}
		e.stats.Rechecked.Add(1)
		j := job{pid: pid, why: reasonReload, prio: true}
		if e.note(j, pid) {
			e.run(st, &j)
		}
	}
}

// Scan classifies every task on the machine, synchronously (start-up).
func (e *Engine) Scan() (tasks, moved int) {
	var st workState
	return e.scan(&st, reasonScan)
}

// scan classifies every task; why is reasonScan, reasonRepair or
// reasonReclassify. Each task
// is hot while it is classified, so that forks racing with its move are
// followed; a task a worker owns is left to it (see hotTable.scanClaimed).
func (e *Engine) scan(st *workState, why reason) (tasks, moved int) {
	e.marks.prune(e.cfg.Tasks)
	pids, err := e.cfg.Tasks.PIDs()
	if err != nil {
		e.stats.Errors.Add(1)
		if outOfDescriptors(err) { // descriptors.go
			e.lostForDescriptors(0, err)
			return 0, 0
		}
		e.log.Errorf("rescan: %v", err)
		return 0, 0
	}
	for _, pid := range pids {
		select {
		case <-e.stop:
			return tasks, moved
		default:
		}
		claimed, m := e.runScan(st, int32(pid), why)
		if claimed {
			tasks++
		}
		if m {
			moved++
		}
	}
	e.stats.Scanned.Add(uint64(tasks))
	return tasks, moved
}

// followChildren classifies the current children of a task the start-up or
// repair scan just moved: children it listed before their parent and
// classified by their own ids stay, but ones forked since are still in the
// old cgroups. After a move by an event, children need no look-up: their
// FORK events, queued by the kernel after the event that made the parent
// hot, are followed by fork().
func (e *Engine) followChildren(pid int) {
	kids, err := e.cfg.Tasks.Children(pid)
	if err != nil {
		return
	}
	for _, k := range kids {
		e.stats.ChildrenFollowed.Add(1)
		if j := (job{pid: int32(k), why: reasonChild, prio: true}); e.note(j, j.pid) {
			e.push(j)
		}
	}
}
