package classify

import (
	"errors"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// Marks are the sticky marks as the sticky socket's server sees them (it
// implements sticky.Marks): Mark, Unmark and Forget are called from the
// server's goroutines, Refused counts what it turned down. The engine owns
// the Marks (Engine.Marks) and consults them on its event path: skip, fork
// and exit cost one atomic load while no process is marked, and a short
// critical section otherwise; every scan calls prune. The table and the
// states of a mark are in marks.go.
type Marks struct {
	t     *markTable
	log   *logrus.Logger
	max   int
	stats *counters // the engine's: the sticky ones, and LeftAlone[LeftSticky]

	fullLog ratelimit.Limiter
}

func newMarks(max int, log *logrus.Logger, stats *counters) *Marks {
	t := newMarkTable(max)
	t.n = &stats.StickyMarks
	return &Marks{t: t, log: log, max: max, stats: stats}
}

// ticksPerSecond is USER_HZ, the unit of /proc/PID/stat's start time: 100
// on every architecture Go runs on under Linux.
const ticksPerSecond = 100

// startTimes is what prune needs from Config.Tasks (proc.FS has it): the
// start time of a process, ESRCH once it is gone.
type startTimes interface {
	StartTime(pid int) (uint64, error)
}

// Mark records that process pid, which started at start (clock ticks after
// boot: /proc/PID/stat's starttime, as proc.FS.Ident reads it), is sticky:
// its UID, GID and EXEC events are not acted on and no scan moves it; with
// children, the processes it forks from now on are sticky too, and so on
// down. by is the uid of the client that asked (0: root): a mark made by
// another user is dropped once the process's uids are no longer all that
// user's (see mark). A pid already marked for this process keeps its first
// flags (added is false); a mark left on the pid by an earlier process is
// replaced. The error is ErrMarksFull when Config.MaxMarks marks are held.
// Safe for concurrent use; it does no I/O.
func (m *Marks) Mark(pid int32, start uint64, children bool, by uint32) (added bool, err error) {
	res := m.t.add(pid, start, children, by, kernel.Now(), bootTicks())
	switch res {
	case markFull:
		m.stats.StickyFull.Add(1)
		return false, ErrMarksFull
	case markKept:
		if m.log.IsLevelEnabled(logrus.DebugLevel) {
			m.log.WithFields(logrus.Fields{"pid": pid}).Debug("sticky: already marked, its first flags stay")
		}
		return false, nil
	}
	m.stats.StickyAdded.Add(1)
	if m.log.IsLevelEnabled(logrus.DebugLevel) {
		m.log.WithFields(logrus.Fields{"pid": pid, "children": children, "by": "socket", "requester_uid": by, "replaced_stale": res == markReplaced}).Debug("sticky: marked")
	}
	return true, nil
}

// Unmark cancels pid's mark (libcgroup's CGROUP_DAEMON_CANCEL_UNCHANGE_PROCESS):
// later events are acted on again. It reports whether pid was marked.
func (m *Marks) Unmark(pid int32) bool {
	ok := m.t.remove(pid, false)
	if ok {
		m.logUnmark(pid, "cancel")
	}
	return ok
}

// Forget drops pid's mark if it was made for the process that started at
// start, and only then: the socket's server calls it when the process it
// has just marked turns out to have exited meanwhile, so that the mark is
// not left for the next process that gets the pid.
func (m *Marks) Forget(pid int32, start uint64) {
	if m.t.removeIf(pid, start, bootTicks()) {
		m.logUnmark(pid, "gone")
	}
}

// Refused counts a sticky socket request that was refused (not allowed for
// the client, malformed, or not answered in time).
func (m *Marks) Refused() { m.stats.StickyRefused.Add(1) }

// Sticky reports whether pid is marked.
func (m *Marks) Sticky(pid int32) bool { return m.t.sticky(pid) }

// skip reports whether pid is marked, counting the skip. Event path and
// classifications.
func (m *Marks) skip(pid int32) bool {
	if !m.t.sticky(pid) {
		return false
	}
	m.stats.StickySkipped.Add(1)
	m.stats.LeftAlone[LeftSticky].Add(1)
	return true
}

// skipCreds is skip for a UID or GID event: a mark made by a user other
// than root is dropped, and the event acted on, when the event's uids are
// not that user's (the task ran a set-uid program of another user).
func (m *Marks) skipCreds(ev *kernel.Event) bool {
	if ev.What == kernel.EventUID && m.t.dropUnlessOwned(ev.TGID, ev.RUID, ev.EUID) {
		m.logUnmark(ev.TGID, "uid_change")
		return false
	}
	return m.skip(ev.TGID)
}

// holds is skip for a classification (an event's, a scan's): a mark made
// by a user other than root is checked against the task's uids first,
// read with task (only for such a mark), so that a UID event lost in an
// overflow does not keep the mark on a set-uid program.
func (m *Marks) holds(pid int32, task func() (ruid, euid uint32, err error)) bool {
	by, ok := m.t.by(pid)
	if !ok {
		return false
	}
	if by != 0 {
		if ruid, euid, err := task(); err == nil && m.t.dropUnlessOwned(pid, ruid, euid) {
			m.logUnmark(pid, "uid_change")
			return false
		}
	}
	return m.skip(pid)
}

// fork passes a mark with children on to a new process and drops a stale
// mark of its pid; it reports whether the child is now marked (it must not
// be followed, then). Event path.
func (m *Marks) fork(ev *kernel.Event) bool {
	res, stale := m.t.fork(ev.ParentTGID, ev.TGID, ev.Timestamp)
	if stale {
		m.logUnmark(ev.TGID, "stale")
	}
	switch res {
	case forkInherited:
		m.stats.StickyAdded.Add(1)
		if m.log.IsLevelEnabled(logrus.DebugLevel) {
			m.log.WithFields(logrus.Fields{"pid": ev.TGID, "parent": ev.ParentTGID, "children": true, "by": "fork"}).Debug("sticky: marked")
		}
		return true
	case forkFull:
		m.stats.StickyFull.Add(1)
		if n, ok := m.fullLog.Allow(time.Now()); ok {
			m.log.WithFields(logrus.Fields{"pid": ev.TGID, "parent": ev.ParentTGID, "max": m.max, ratelimit.NotLogged: n}).
				Warn("sticky: the table of marks is full: a child of a sticky process is classified by the rules")
		}
	}
	return false
}

// exit drops the mark of a process that exited. Event path.
func (m *Marks) exit(pid int32) {
	if m.t.remove(pid, true) {
		m.logUnmark(pid, "exit")
	}
}

func (m *Marks) logUnmark(pid int32, reason string) {
	if m.log.IsLevelEnabled(logrus.DebugLevel) {
		m.log.WithFields(logrus.Fields{"pid": pid, "reason": reason}).Debug("sticky: unmarked")
	}
}

// prune drops the marks of processes that are gone or whose pid now names
// another process (an EXIT lost in an overflow), before a scan. tasks
// gives start times when it can (proc.FS does).
func (m *Marks) prune(tasks Tasks) {
	st, ok := tasks.(startTimes)
	if !ok || m.t.len() == 0 {
		return
	}
	startOf := func(pid int32) (uint64, error) { return st.StartTime(int(pid)) }
	gone := func(err error) bool { return errors.Is(err, unix.ESRCH) || isNotExist(err) }
	for _, pid := range m.t.prune(startOf, gone, bootTicks()) {
		m.logUnmark(pid, "stale")
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
