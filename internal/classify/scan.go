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
		}
	}
}

// Scan classifies every task on the machine, synchronously (start-up).
func (e *Engine) Scan() (tasks, moved int) {
	var st workState
	return e.scan(&st, reasonScan)
}

// scan classifies every task; why is reasonScan or reasonRepair. Each task
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
