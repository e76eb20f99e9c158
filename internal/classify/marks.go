package classify

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Sticky marks: the processes that libcgroup's cgexec and cgclassify asked
// the daemon to leave alone (libcgroup's "unchanged processes"). The socket
// server (package sticky) adds and cancels them; the engine consults them on
// the reader goroutine for every UID, GID and EXEC event and in every
// classification, passes them on at FORK and drops them at EXIT.
//
// A mark belongs to a thread group (a process): every thread of a marked
// process is covered, including threads created later, because the engine
// handles and moves whole processes (events name their thread group).
//
// The states of one pid, and what moves it between them:
//
//	unmarked --add(flags 0)--> marked            --add(any flags)--> marked (first flags kept)
//	unmarked --add(flags 1)--> marked+children   --add(any flags)--> marked+children
//	marked+children --FORK of a child stamped at or after the mark--> the child: marked+children
//	marked* --cancel (flags 2), EXIT, prune (gone, or the pid now names another process)--> unmarked
//	marked* --add or FORK for a new process on the same pid (the old one's EXIT was missed)--> replaced
//
// Identity. Pids are reused, and an EXIT event can be lost (a netlink
// overflow). So that a mark never passes to the next process given the same
// pid, each mark remembers which process it was made for: a mark made
// through the socket holds the process's start time (/proc/PID/stat field
// 22, clock ticks after boot), read by the server; a mark inherited at
// FORK holds the FORK event's timestamp instead (reading /proc on the
// reader goroutine is not allowed), and the child's start time is at most
// that. The event path checks nothing of this (no system call per event):
// a FORK for a marked pid stamped after the mark proves the old process is
// gone, EXIT drops marks, and prune, run by every scan (start-up and the
// rescan after an overflow), re-reads the start time of every marked pid
// and drops the marks of processes that are gone or were replaced. An
// inherited mark's process is recognised by "started no later than its
// FORK" (to the 10 ms of a clock tick), and from then on by its start time.
//
// Who made it (issue 19, item 6). A user other than root may mark only its
// own processes (the socket server checks that the real, effective and
// saved uids are all the client's), so that it cannot keep another user's
// process, or a set-uid program it runs, out of that user's rules. The
// mark remembers the client's uid (by; 0: root), and an inherited mark its
// parent's: a user's mark is dropped as soon as the task's uids are no
// longer all that user's (a UID event, or a classification that reads
// them: see Marks.skipCreds and Marks.holds), so the set-uid program is
// classified by the rules. A mark made by root stays whatever the task
// becomes (cgexec run by root: the program stays where it was put).
type mark struct {
	start    uint64 // the process's start time (clock ticks after boot); valid when exact
	at       uint64 // CLOCK_MONOTONIC ns: when the mark was made, or the FORK's timestamp if inherited
	by       uint32 // uid of the client that made it (0: root), inherited at FORK
	children bool   // CGROUP_DAEMON_UNCHANGE_CHILDREN: children forked from now on inherit the mark
	exact    bool   // start is known; false for a mark inherited at FORK and not yet verified by prune
}

// same reports whether the process that now has the pid, started at start
// (clock ticks after boot), is the one the mark was made for. tick converts
// a CLOCK_MONOTONIC time to clock ticks after boot.
func (m mark) same(start uint64, tick func(mono uint64) uint64) bool {
	if m.exact {
		return m.start == start
	}
	// A child starts before its FORK event is stamped; a process that got
	// the pid later started later.
	return start <= tick(m.at)
}

// markResult says what add did.
type markResult uint8

const (
	markAdded    markResult = iota + 1 // the pid was not marked
	markKept                           // already marked for this process: the first flags stay
	markReplaced                       // a stale mark of an earlier process on the pid was replaced
	markFull                           // the table is full: nothing was marked
)

// ErrMarksFull is returned by Marks.Mark when the table of sticky marks
// holds Config.MaxMarks entries.
var ErrMarksFull = errors.New("the table of sticky marks is full")

// markTable is the table of sticky marks. It is safe for concurrent use.
// The event path (sticky, inherit, exit) reads n without the lock, so that a
// daemon without marks pays one atomic load per event; with marks, each
// method holds mu for one or two map operations (and a call to the filter,
// which is cheap), never across a system call of its own or I/O, so a
// socket client cannot hold up the reader.
type markTable struct {
	n    *atomic.Uint64 // len(m); the engine's StickyMarks counter
	mu   sync.Mutex
	m    map[int32]mark
	max  int
	peak int // largest len(m) since the map was last rebuilt (see prune)

	filter *filterLink // told of every mark made and dropped (under mu); may be nil
}

func newMarkTable(max int) *markTable {
	return &markTable{m: make(map[int32]mark), max: max, n: new(atomic.Uint64)}
}

func (t *markTable) len() int { return int(t.n.Load()) }

// sticky reports whether pid is marked. Event path.
func (t *markTable) sticky(pid int32) bool {
	if t.n.Load() == 0 {
		return false
	}
	t.mu.Lock()
	_, ok := t.m[pid]
	t.mu.Unlock()
	return ok
}

// put stores a mark; the caller holds mu and has checked the bound.
func (t *markTable) put(pid int32, m mark) {
	t.m[pid] = m
	if n := len(t.m); n > t.peak {
		t.peak = n
	}
	t.n.Store(uint64(len(t.m)))
	if t.filter != nil {
		t.filter.check(t.filter.f.MarkSticky(pid, m.children, m.by))
	}
}

func (t *markTable) del(pid int32) {
	delete(t.m, pid)
	t.n.Store(uint64(len(t.m)))
	if t.filter != nil {
		t.filter.check(t.filter.f.Unsticky(pid))
	}
}

// attach makes f the table's filter and tells it every mark held now.
func (t *markTable) attach(l *filterLink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.filter = l
	for pid, m := range t.m {
		l.check(l.f.MarkSticky(pid, m.children, m.by))
	}
}

// add marks, for the client with uid by, the process that has pid and
// started at start (clock ticks after boot), at CLOCK_MONOTONIC time now.
// tick is as for mark.same.
func (t *markTable) add(pid int32, start uint64, children bool, by uint32, now uint64, tick func(uint64) uint64) markResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	res := markAdded
	if old, ok := t.m[pid]; ok {
		if old.same(start, tick) {
			if !old.exact {
				// Verified now: remember the start time.
				old.start, old.exact = start, true
				t.m[pid] = old
			}
			return markKept
		}
		res = markReplaced
	} else if len(t.m) >= t.max {
		return markFull
	}
	t.put(pid, mark{start: start, at: now, by: by, children: children, exact: true})
	return res
}

// by returns the uid of whoever made pid's mark (0: root), and whether pid
// is marked. Event path.
func (t *markTable) by(pid int32) (by uint32, marked bool) {
	if t.n.Load() == 0 {
		return 0, false
	}
	t.mu.Lock()
	m, ok := t.m[pid]
	t.mu.Unlock()
	return m.by, ok
}

// dropUnlessOwned drops pid's mark when a user other than root made it and
// the uids given (the task's, as an event or /proc says) are not all that
// user's; it reports whether it dropped it.
func (t *markTable) dropUnlessOwned(pid int32, uids ...uint32) bool {
	if t.n.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[pid]
	if !ok || m.by == 0 {
		return false
	}
	for _, u := range uids {
		if u != m.by {
			t.del(pid)
			return true
		}
	}
	return false
}

// remove drops pid's mark (cancel, EXIT); it reports whether there was one.
// exited: the process's EXIT was reported, and a source that reports EXITs
// dropped its mark itself (the pid may already be a new process's), so the
// filter is not told.
func (t *markTable) remove(pid int32, exited bool) bool {
	if t.n.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[pid]; !ok {
		return false
	}
	if exited {
		delete(t.m, pid)
		t.n.Store(uint64(len(t.m)))
		return true
	}
	t.del(pid)
	return true
}

// removeIf drops pid's mark only if it was made for the process that
// started at start.
func (t *markTable) removeIf(pid int32, start uint64, tick func(uint64) uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.m[pid]; ok && m.same(start, tick) {
		t.del(pid)
		return true
	}
	return false
}

// forkResult says what fork did for the child.
type forkResult uint8

const (
	forkNone      forkResult = iota // the child is not marked
	forkInherited                   // the child inherited its parent's mark
	forkFull                        // the child should have inherited, but the table is full
)

// fork handles the FORK of process child by process parent, stamped ts
// (CLOCK_MONOTONIC ns). stale reports that the child's pid held the mark of
// an earlier process, which fork dropped. Event path: map operations only.
func (t *markTable) fork(parent, child int32, ts uint64) (res forkResult, stale bool) {
	if t.n.Load() == 0 {
		return forkNone, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[child]; ok && old.at < ts {
		// The kernel reports a FORK for a new process: whatever had this
		// pid before is gone, and its EXIT was missed.
		t.del(child)
		stale = true
	}
	p, ok := t.m[parent]
	if !ok || !p.children || ts < p.at {
		return forkNone, stale
	}
	if _, ok := t.m[child]; ok {
		// Marked through the socket after this FORK (the reader lags
		// behind): that mark came first here, and keeps its flags.
		return forkNone, stale
	}
	if len(t.m) >= t.max {
		return forkFull, stale
	}
	t.put(child, mark{at: ts, by: p.by, children: true})
	return forkInherited, stale
}

// markSnap is a mark with its pid, as prune sees it.
type markSnap struct {
	pid int32
	m   mark
}

// prune drops the marks whose process is gone or was replaced by another on
// the same pid, and records the start time of inherited marks whose process
// is still there. startOf returns a pid's current start time, or an error;
// gone(err) says whether that error means there is no such process (other
// errors keep the mark). It reads /proc without holding the lock and applies
// its decisions only to marks that did not change meanwhile. It returns the
// dropped pids.
func (t *markTable) prune(startOf func(pid int32) (uint64, error), gone func(error) bool, tick func(uint64) uint64) []int32 {
	if t.n.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	snap := make([]markSnap, 0, len(t.m))
	for pid, m := range t.m {
		snap = append(snap, markSnap{pid, m})
	}
	t.mu.Unlock()

	type verdict struct {
		markSnap
		drop  bool
		start uint64
	}
	var out []verdict
	for _, s := range snap {
		start, err := startOf(s.pid)
		switch {
		case err != nil && gone(err):
			out = append(out, verdict{s, true, 0})
		case err != nil:
			// Cannot tell (EACCES, say): keep it.
		case !s.m.same(start, tick):
			out = append(out, verdict{s, true, 0})
		case !s.m.exact:
			out = append(out, verdict{s, false, start})
		}
	}

	var dropped []int32
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range out {
		cur, ok := t.m[v.pid]
		if !ok || cur != v.m {
			continue // changed meanwhile: the event path or a client knows better
		}
		if v.drop {
			t.del(v.pid)
			dropped = append(dropped, v.pid)
			continue
		}
		cur.start, cur.exact = v.start, true
		t.m[v.pid] = cur
	}
	// Go maps never shrink: after a burst of inherited marks has exited,
	// rebuild the map so that its memory can be returned.
	t.m, t.peak, _ = shrink(t.m, t.peak)
	return dropped
}
