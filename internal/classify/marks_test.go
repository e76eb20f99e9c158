package classify

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// tick10ms is a bootTicks stand-in for the table tests: boot time equals
// monotonic time.
func tick10ms(mono uint64) uint64 { return mono / 1e7 }

const sec = uint64(time.Second)

// TestMarksStateMachine walks the states of marks.go's diagram, one step per
// row, on one table.
func TestMarksStateMachine(t *testing.T) {
	tb := newMarkTable(3)
	type step struct {
		name  string
		do    func() string // returns what happened, compared with want
		want  string
		state map[int32]bool // pid -> children, after the step
	}
	add := func(pid int32, start uint64, children bool, now uint64) func() string {
		return func() string {
			return [...]string{"", "added", "kept", "replaced", "full"}[tb.add(pid, start, children, 0, now, tick10ms)]
		}
	}
	fork := func(parent, child int32, ts uint64) func() string {
		return func() string {
			res, stale := tb.fork(parent, child, ts)
			return fmt.Sprintf("%s stale=%v", [...]string{"none", "inherited", "full"}[res], stale)
		}
	}
	remove := func(pid int32) func() string { return func() string { return fmt.Sprint(tb.remove(pid, false)) } }
	removeIf := func(pid int32, start uint64) func() string {
		return func() string { return fmt.Sprint(tb.removeIf(pid, start, tick10ms)) }
	}
	steps := []step{
		{"flags 0", add(100, 5, false, 10*sec), "added", map[int32]bool{100: false}},
		{"same process again with flags 1: first flags stay", add(100, 5, true, 11*sec), "kept", map[int32]bool{100: false}},
		{"flags 0 does not pass to children", fork(100, 101, 12*sec), "none stale=false", map[int32]bool{100: false}},
		{"flags 1", add(200, 7, true, 20*sec), "added", map[int32]bool{100: false, 200: true}},
		{"child forked before the mark does not inherit", fork(200, 201, 19*sec), "none stale=false", map[int32]bool{100: false, 200: true}},
		{"child forked after it inherits", fork(200, 202, 21*sec), "inherited stale=false", map[int32]bool{100: false, 200: true, 202: true}},
		{"table full: no more marks", add(300, 1, false, 22*sec), "full", map[int32]bool{100: false, 200: true, 202: true}},
		{"table full: no inheritance", fork(202, 203, 23*sec), "full stale=false", map[int32]bool{100: false, 200: true, 202: true}},
		{"inherited mark: a client marking the same child keeps it", add(202, 2100, false, 24*sec), "kept", map[int32]bool{100: false, 200: true, 202: true}},
		{"another process on a marked pid (EXIT missed): replaced", add(100, 9, false, 25*sec), "replaced", map[int32]bool{100: false, 200: true, 202: true}},
		{"removeIf for another process keeps the mark", removeIf(100, 5), "false", map[int32]bool{100: false, 200: true, 202: true}},
		{"removeIf for this process drops it", removeIf(100, 9), "true", map[int32]bool{200: true, 202: true}},
		{"FORK of a new process on a marked pid: the stale mark goes", fork(1, 202, 30*sec), "none stale=true", map[int32]bool{200: true}},
		{"a mark made after the FORK it lags behind stays", add(400, 3, false, 40*sec), "added", map[int32]bool{200: true, 400: false}},
		{"FORK stamped before that mark", fork(1, 400, 39*sec), "none stale=false", map[int32]bool{200: true, 400: false}},
		{"and a sticky parent's FORK does not overwrite it", fork(200, 400, 39*sec), "none stale=false", map[int32]bool{200: true, 400: false}},
		{"cancel", remove(200), "true", map[int32]bool{400: false}},
		{"cancel an unmarked pid", remove(200), "false", map[int32]bool{400: false}},
		{"EXIT", remove(400), "true", map[int32]bool{}},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %q, want %q", s.name, got, s.want)
		}
		got := map[int32]bool{}
		for pid, m := range tb.m {
			got[pid] = m.children
		}
		if fmt.Sprint(got) != fmt.Sprint(s.state) || tb.len() != len(s.state) {
			t.Fatalf("%s: table %v (len %d), want %v", s.name, got, tb.len(), s.state)
		}
		for pid := range s.state {
			if !tb.sticky(pid) {
				t.Fatalf("%s: sticky(%d) false", s.name, pid)
			}
		}
		if tb.sticky(999) {
			t.Fatalf("%s: sticky(999) true", s.name)
		}
	}
}

// TestMarksPrune: the rescan's clean-up drops marks of processes that are
// gone or replaced (by start time), keeps the others, and pins the start
// time of an inherited mark whose process is still there.
func TestMarksPrune(t *testing.T) {
	tb := newMarkTable(100)
	tb.add(1, 50, false, 0, 1*sec, tick10ms) // alive, same start
	tb.add(2, 50, false, 0, 1*sec, tick10ms) // gone
	tb.add(3, 50, false, 0, 1*sec, tick10ms) // pid reused: another start time
	tb.add(4, 50, true, 0, 1*sec, tick10ms)  // unreadable (EACCES): kept
	tb.fork(4, 5, 2*sec)                     // inherited at 2 s (tick 200); child started at tick 199: same process
	tb.fork(4, 6, 2*sec)                     // inherited; the pid now has a process started at tick 201: replaced
	tb.add(7, 50, false, 0, 1*sec, tick10ms) // a zombie: gone
	starts := map[int32]uint64{1: 50, 3: 51, 5: 199, 6: 201}
	startOf := func(pid int32) (uint64, error) {
		switch pid {
		case 4:
			return 0, unix.EACCES
		case 7:
			return 0, fmt.Errorf("pid 7: exited (a zombie): %w", unix.ESRCH)
		}
		if s, ok := starts[pid]; ok {
			return s, nil
		}
		return 0, fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	gone := func(err error) bool { return errors.Is(err, unix.ESRCH) }
	dropped := tb.prune(startOf, gone, tick10ms)
	slices.Sort(dropped)
	if want := []int32{2, 3, 6, 7}; !slices.Equal(dropped, want) {
		t.Errorf("dropped %v, want %v", dropped, want)
	}
	for _, pid := range []int32{1, 4, 5} {
		if !tb.sticky(pid) {
			t.Errorf("pid %d lost its mark", pid)
		}
	}
	if m := tb.m[5]; !m.exact || m.start != 199 {
		t.Errorf("inherited mark of pid 5 after prune: %+v, want its start time (199) pinned", m)
	}
	if tb.len() != 3 {
		t.Errorf("len %d, want 3", tb.len())
	}
}

// TestMarksPruneKeepsWhatChanged: a mark changed while prune read /proc (a
// client re-marked the pid for a new process) is not dropped on the strength
// of the old reading.
func TestMarksPruneKeepsWhatChanged(t *testing.T) {
	tb := newMarkTable(10)
	tb.add(1, 50, false, 0, 1*sec, tick10ms)
	startOf := func(pid int32) (uint64, error) {
		// While prune reads, the old process exits and a new one on the
		// same pid is marked.
		tb.remove(1, false)
		tb.add(1, 60, false, 0, 2*sec, tick10ms)
		return 0, unix.ESRCH
	}
	if dropped := tb.prune(startOf, func(error) bool { return true }, tick10ms); len(dropped) != 0 {
		t.Errorf("dropped %v, want none", dropped)
	}
	if m := tb.m[1]; m.start != 60 {
		t.Errorf("mark %+v, want the new process's (start 60)", m)
	}
}

// TestMarksPruneShrinks: after a burst of marks has gone, the map is
// rebuilt.
func TestMarksPruneShrinks(t *testing.T) {
	tb := newMarkTable(1 << 20)
	for pid := int32(1); pid <= 2048; pid++ {
		tb.add(pid, 1, false, 0, sec, tick10ms)
	}
	for pid := int32(2); pid <= 2048; pid++ {
		tb.remove(pid, false)
	}
	tb.prune(func(int32) (uint64, error) { return 1, nil }, func(error) bool { return false }, tick10ms)
	if tb.peak != 1 || tb.len() != 1 || !tb.sticky(1) {
		t.Errorf("after prune: peak %d, len %d, sticky(1) %v; want 1, 1, true", tb.peak, tb.len(), tb.sticky(1))
	}
}

// stickyFixture is an engine fixture whose tasks also report start times,
// as proc.FS does, so that scans prune marks.
type stickyTasks struct {
	*fakeTasks
	starts map[int]uint64
}

func (s *stickyTasks) StartTime(pid int) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[pid]; !ok {
		return 0, fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	return s.starts[pid], nil
}

func newStickyFixture(t *testing.T, rules string) (*engineFixture, *stickyTasks) {
	f := newFixture(t, rules, Config{})
	st := &stickyTasks{fakeTasks: f.tasks, starts: map[int]uint64{}}
	f.e.cfg.Tasks = st
	return f, st
}

func exitEvent(pid int) *kernel.Event {
	return &kernel.Event{What: kernel.EventExit, PID: int32(pid), TGID: int32(pid)}
}

func mustMark(t *testing.T, e *Engine, pid int32, start uint64, children bool) {
	t.Helper()
	if added, err := e.Marks().Mark(pid, start, children, 0); err != nil || !added {
		t.Fatalf("Mark(%d): added %v, %v", pid, added, err)
	}
}

// TestEngineStickyEvents: a marked task's UID, GID and EXEC events are not
// acted on; with flags 0 its children are classified, with flags 1 they
// (and their children) are not; a cancel and an EXIT end the mark; the
// counters and the debug log say so.
func TestEngineStickyEvents(t *testing.T) {
	f, _ := newStickyFixture(t, "alice cpu users/alice\nalice:prog cpu progs\n")
	for _, pid := range []int{100, 101, 200, 201, 202, 300} {
		f.tasks.add(pid, 1000, "/special")
	}
	f.e.Start()
	defer f.e.Stop()

	mustMark(t, f.e, 100, 1, false) // cgexec
	mustMark(t, f.e, 200, 1, true)  // cgexec --sticky
	f.e.Handle(uidEvent(100))
	f.e.Handle(&kernel.Event{What: kernel.EventGID, PID: 100, TGID: 100})
	f.e.Handle(&kernel.Event{What: kernel.EventExec, PID: 100, TGID: 100})
	f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 105, TGID: 100}) // another thread of it
	f.e.Handle(forkEvent(100, 101, kernel.Now()))
	f.e.Handle(uidEvent(101)) // its child changes uid: classified
	f.e.Handle(forkEvent(200, 201, kernel.Now()))
	f.e.Handle(forkEvent(201, 202, kernel.Now()))
	f.e.Handle(uidEvent(200))
	f.e.Handle(uidEvent(201))
	f.e.Handle(uidEvent(202))
	f.e.Handle(uidEvent(300)) // not marked at all
	waitFor(t, "unmarked tasks moved", func() bool {
		return f.tasks.where(101, f.cpu) == "/users/alice" && f.tasks.where(300, f.cpu) == "/users/alice"
	})
	time.Sleep(20 * time.Millisecond)
	for _, pid := range []int{100, 200, 201, 202} {
		if got := f.tasks.where(pid, f.cpu); got != "/special" {
			t.Errorf("sticky pid %d moved to %s", pid, got)
		}
	}
	s := f.e.Stats()
	if s.StickyMarks != 4 || s.StickyAdded != 4 || s.StickySkipped != 7 {
		t.Errorf("stats %s; want sticky_marks=4 sticky_added=4 sticky_skipped=7", s)
	}

	// Cancel: the next event is acted on. EXIT: the mark is gone.
	if !f.e.Marks().Unmark(100) {
		t.Fatal("Unmark(100) found no mark")
	}
	f.e.Handle(uidEvent(100))
	waitFor(t, "cancelled task moved", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	f.e.Handle(exitEvent(201))
	if f.e.Marks().Sticky(201) {
		t.Error("pid 201 still sticky after its EXIT")
	}
	if !f.e.Marks().Sticky(202) {
		t.Error("pid 202 lost its mark with its parent's EXIT")
	}
	l := f.log.String()
	for _, want := range []string{
		`msg="sticky: marked" by=socket children=false pid=100`,
		`msg="sticky: marked" by=fork children=true parent=200 pid=201`,
		`msg="sticky: unmarked" pid=100 reason=cancel`,
		`msg="sticky: unmarked" pid=201 reason=exit`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log has no line with %s:\n%s", want, l)
		}
	}
	if !strings.Contains(s.String(), "sticky_marks=4 sticky_added=4") {
		t.Errorf("Stats.String() lacks the sticky counters: %s", s)
	}
}

// TestEngineStickyUserMark (issue 19, item 6): a mark made by a user other
// than root (the socket's peer check let it mark only its own process) is
// dropped when the task's uids stop being all that user's: a set-uid
// program of another user that it runs is then classified by the rules,
// whether the UID event is seen or was lost (the next classification or
// scan reads the uids). A UID event that leaves the uids that user's keeps
// the mark; a mark made by root stays whatever the task becomes; with
// children, a child inherits who made the mark.
func TestEngineStickyUserMark(t *testing.T) {
	f, st := newStickyFixture(t, "bob cpu users/bob\n")
	const alice, bob = 1000, 1001
	for _, pid := range []int{100, 101, 102, 200, 201, 300} {
		f.tasks.add(pid, alice, "/special")
		st.starts[pid] = 10
	}
	f.e.Start()
	defer f.e.Stop()
	mark := func(pid int32, children bool, by uint32) {
		t.Helper()
		if added, err := f.e.Marks().Mark(pid, 10, children, by); err != nil || !added {
			t.Fatalf("Mark(%d): %v, %v", pid, added, err)
		}
	}
	setuid := func(pid int) *kernel.Event { // exec of a set-uid program of bob's
		f.tasks.setEUID(pid, bob)
		return &kernel.Event{What: kernel.EventUID, PID: int32(pid), TGID: int32(pid), RUID: alice, EUID: bob}
	}
	mark(100, false, alice) // cgexec run by alice
	mark(101, false, 0)     // cgexec run by root
	mark(102, false, alice)
	mark(200, true, alice) // cgexec --sticky run by alice
	mark(300, false, alice)

	// Its own uids again (setresuid among them): the mark holds.
	f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 102, TGID: 102, RUID: alice, EUID: alice})
	f.e.Handle(setuid(100))
	f.e.Handle(setuid(101))
	f.e.Handle(forkEvent(200, 201, kernel.Now()))
	f.e.Handle(setuid(201))
	waitFor(t, "the set-uid programs of user marks moved", func() bool {
		return f.tasks.where(100, f.cpu) == "/users/bob" && f.tasks.where(201, f.cpu) == "/users/bob"
	})
	time.Sleep(20 * time.Millisecond)
	if got := f.tasks.where(101, f.cpu); got != "/special" {
		t.Errorf("root's mark: the set-uid program moved to %s", got)
	}
	for _, pid := range []int32{101, 102, 200} {
		if !f.e.Marks().Sticky(pid) {
			t.Errorf("pid %d lost its mark", pid)
		}
	}
	for _, pid := range []int32{100, 201} {
		if f.e.Marks().Sticky(pid) {
			t.Errorf("pid %d keeps a user's mark after its uid changed", pid)
		}
	}

	// The UID event was lost (an overflow): the rescan reads the uids.
	f.tasks.setEUID(300, bob)
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	waitFor(t, "the rescan moved it", func() bool { return f.tasks.where(300, f.cpu) == "/users/bob" })

	l := f.log.String()
	for _, want := range []string{
		`msg="sticky: unmarked" pid=100 reason=uid_change`,
		`msg="sticky: marked" by=fork children=true parent=200 pid=201`,
		`msg="sticky: unmarked" pid=201 reason=uid_change`,
		`msg="sticky: unmarked" pid=300 reason=uid_change`,
		`msg="sticky: marked" by=socket children=false pid=101 replaced_stale=false requester_uid=0`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log has no line with %s:\n%s", want, l)
		}
	}
}

// TestEngineStickyScans: the start-up scan and a rescan leave marked tasks
// alone; a queued job whose task was marked before it ran moves nothing; a
// mark left by a process whose EXIT was lost is dropped by the rescan, and
// the process that now has the pid is classified.
func TestEngineStickyScans(t *testing.T) {
	f, st := newStickyFixture(t, "alice cpu users/alice\n")
	f.tasks.add(100, 1000, "/special")
	f.tasks.add(101, 1000, "/special")
	st.starts[100], st.starts[101] = 10, 10
	mustMark(t, f.e, 100, 10, false)
	if _, moved := f.e.Scan(); moved != 1 {
		t.Fatalf("start-up scan moved %d tasks, want 1 (the unmarked one)", moved)
	}
	if got := f.tasks.where(100, f.cpu); got != "/special" {
		t.Errorf("start-up scan moved the sticky task to %s", got)
	}

	// Queued before the mark, run after it: nothing moves.
	f.tasks.add(102, 1000, "/special")
	f.e.Handle(uidEvent(102))
	st.starts[102] = 10
	mustMark(t, f.e, 102, 10, false)
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "queued job skipped", func() bool { return f.e.Stats().StickySkipped >= 2 })

	// Pid 100 exits unseen (overflow) and is reused by a ruled process.
	st.mu.Lock()
	st.starts[100] = 99
	st.mu.Unlock()
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	waitFor(t, "the reused pid classified by the rescan", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if f.e.Marks().Sticky(100) {
		t.Error("the stale mark of pid 100 survived the rescan")
	}
	if got := f.tasks.where(102, f.cpu); got != "/special" {
		t.Errorf("the rescan moved the sticky task 102 to %s", got)
	}
	if !strings.Contains(f.log.String(), `msg="sticky: unmarked" pid=100 reason=stale`) {
		t.Errorf("no stale unmark logged:\n%s", f.log.String())
	}
}

// TestEngineStickyFull: with the table full, a client's mark is refused
// with ErrMarksFull and a sticky parent's child is classified by the rules.
func TestEngineStickyFull(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{MaxMarks: 1})
	f.tasks.add(100, 1000, "/special")
	f.tasks.add(101, 1000, "/special")
	mustMark(t, f.e, 100, 1, true)
	if _, err := f.e.Marks().Mark(101, 1, false, 0); !errors.Is(err, ErrMarksFull) {
		t.Fatalf("Mark with a full table: %v, want ErrMarksFull", err)
	}
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(forkEvent(100, 101, kernel.Now()))
	f.e.Handle(uidEvent(101))
	waitFor(t, "child classified", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.StickyFull != 2 {
		t.Errorf("StickyFull = %d, want 2", s.StickyFull)
	}
	if !strings.Contains(f.log.String(), "the table of marks is full") {
		t.Errorf("no warning about the full table:\n%s", f.log.String())
	}
}

// TestStickyEventPathAllocs: with marks held, handling UID, GID, EXEC, FORK
// and EXIT events of sticky and other tasks allocates nothing (the reader's
// hot path).
func TestStickyEventPathAllocs(t *testing.T) {
	f := newFixture(t, "alice:prog cpu users/alice\n", Config{})
	for pid := int32(1000); pid < 1100; pid++ {
		mustMark(t, f.e, pid, 1, false)
	}
	evs := []kernel.Event{
		*uidEvent(1000), {What: kernel.EventGID, PID: 1001, TGID: 1001}, {What: kernel.EventExec, PID: 1002, TGID: 1002},
		*forkEvent(1003, 5000, kernel.Now()), *exitEvent(5000), *exitEvent(4000),
	}
	if n := testing.AllocsPerRun(100, func() { f.e.HandleBatch(evs) }); n != 0 {
		t.Errorf("%v allocations per batch of sticky events, want 0", n)
	}
}

// BenchmarkHandleSticky: the cost the marks add to an event that is not
// sticky, with no marks (one atomic load) and with 1,000 marks (a lock and a
// map look-up).
func BenchmarkHandleSticky(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("marks=%d", n), func(b *testing.B) {
			e := New(Config{Log: quietLogger(io.Discard)})
			e.log.SetLevel(logrus.ErrorLevel)
			for pid := 0; pid < n; pid++ {
				_, _ = e.Marks().Mark(int32(100000+pid), 1, false, 0)
			}
			ev := forkEvent(1, 2, 1)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				e.handle(ev)
			}
		})
	}
}
