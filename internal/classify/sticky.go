package classify

import (
	"errors"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// The engine's side of the sticky marks (the table and its states are in
// marks.go). Mark, Unmark and Forget are called by the sticky socket's
// server from its own goroutines; the event path calls stickySkip,
// stickyFork and stickyExit, which cost one atomic load while no process is
// marked, and a short critical section otherwise; scan calls pruneMarks.

// ticksPerSecond is USER_HZ, the unit of /proc/PID/stat's start time: 100
// on every architecture Go runs on under Linux.
const ticksPerSecond = 100

// startTimes is what pruneMarks needs from Config.Tasks (proc.FS has it):
// the start time of a process, ESRCH once it is gone.
type startTimes interface {
	StartTime(pid int) (uint64, error)
}

// Mark records that process pid, which started at start (clock ticks after
// boot: /proc/PID/stat's starttime, as proc.FS.Ident reads it), is sticky:
// its UID, GID and EXEC events are not acted on and no scan moves it; with
// children, the processes it forks from now on are sticky too, and so on
// down. A pid already marked for this process keeps its first flags (added
// is false); a mark left on the pid by an earlier process is replaced. The
// error is ErrMarksFull when Config.MaxMarks marks are held. Safe for
// concurrent use; it does no I/O.
func (e *Engine) Mark(pid int32, start uint64, children bool) (added bool, err error) {
	res := e.marks.add(pid, start, children, kernel.Now(), bootTicks())
	switch res {
	case markFull:
		e.stats.stickyFull.Add(1)
		return false, ErrMarksFull
	case markKept:
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid}).Debug("sticky: already marked, its first flags stay")
		}
		return false, nil
	}
	e.stats.stickyAdded.Add(1)
	if e.log.IsLevelEnabled(logrus.DebugLevel) {
		e.log.WithFields(logrus.Fields{"pid": pid, "children": children, "by": "socket", "replaced_stale": res == markReplaced}).Debug("sticky: marked")
	}
	return true, nil
}

// Unmark cancels pid's mark (libcgroup's CGROUP_DAEMON_CANCEL_UNCHANGE_PROCESS):
// later events are acted on again. It reports whether pid was marked.
func (e *Engine) Unmark(pid int32) bool {
	ok := e.marks.remove(pid)
	if ok {
		e.logUnmark(pid, "cancel")
	}
	return ok
}

// Forget drops pid's mark if it was made for the process that started at
// start, and only then: the socket's server calls it when the process it
// has just marked turns out to have exited meanwhile, so that the mark is
// not left for the next process that gets the pid.
func (e *Engine) Forget(pid int32, start uint64) {
	if e.marks.removeIf(pid, start, bootTicks()) {
		e.logUnmark(pid, "gone")
	}
}

// Refused counts a sticky socket request that was refused (not allowed for
// the client, malformed, or not answered in time).
func (e *Engine) Refused() { e.stats.stickyRefused.Add(1) }

// Sticky reports whether pid is marked.
func (e *Engine) Sticky(pid int32) bool { return e.marks.sticky(pid) }

// stickySkip reports whether pid is marked, counting the skip. Event path
// and classify.
func (e *Engine) stickySkip(pid int32) bool {
	if !e.marks.sticky(pid) {
		return false
	}
	e.stats.stickySkipped.Add(1)
	return true
}

// stickyFork passes a mark with children on to a new process and drops a
// stale mark of its pid; it reports whether the child is now marked (it must
// not be followed, then). Event path.
func (e *Engine) stickyFork(ev *kernel.Event) bool {
	res, stale := e.marks.fork(ev.ParentTGID, ev.TGID, ev.Timestamp)
	if stale {
		e.logUnmark(ev.TGID, "stale")
	}
	switch res {
	case forkInherited:
		e.stats.stickyAdded.Add(1)
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": ev.TGID, "parent": ev.ParentTGID, "children": true, "by": "fork"}).Debug("sticky: marked")
		}
		return true
	case forkFull:
		e.stats.stickyFull.Add(1)
		if n, ok := e.stickyLog.Allow(time.Now()); ok {
			e.log.WithFields(logrus.Fields{"pid": ev.TGID, "parent": ev.ParentTGID, "max": e.cfg.MaxMarks, ratelimit.NotLogged: n}).
				Warn("sticky: the table of marks is full: a child of a sticky process is classified by the rules")
		}
	}
	return false
}

// stickyExit drops the mark of a process that exited. Event path.
func (e *Engine) stickyExit(pid int32) {
	if e.marks.remove(pid) {
		e.logUnmark(pid, "exit")
	}
}

func (e *Engine) logUnmark(pid int32, reason string) {
	if e.log.IsLevelEnabled(logrus.DebugLevel) {
		e.log.WithFields(logrus.Fields{"pid": pid, "reason": reason}).Debug("sticky: unmarked")
	}
}

// pruneMarks drops the marks of processes that are gone or whose pid now
// names another process (an EXIT lost in an overflow), before a scan.
func (e *Engine) pruneMarks() {
	st, ok := e.cfg.Tasks.(startTimes)
	if !ok || e.marks.len() == 0 {
		return
	}
	startOf := func(pid int32) (uint64, error) { return st.StartTime(int(pid)) }
	gone := func(err error) bool { return errors.Is(err, unix.ESRCH) || isNotExist(err) }
	for _, pid := range e.marks.prune(startOf, gone, bootTicks()) {
		e.logUnmark(pid, "stale")
	}
}

// bootTicks returns a conversion from a CLOCK_MONOTONIC time (ns, as in
// event timestamps) to clock ticks after boot (CLOCK_BOOTTIME, the clock
// of /proc/PID/stat's start time). The clocks differ by the time the
// machine was suspended, read once, at the first call.
func bootTicks() func(mono uint64) uint64 {
	var off int64
	have := false
	return func(mono uint64) uint64 {
		if !have {
			var b, m unix.Timespec
			_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &b)
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
			off, have = b.Nano()-m.Nano(), true
		}
		return uint64(int64(mono)+off) / (1e9 / ticksPerSecond)
	}
}
