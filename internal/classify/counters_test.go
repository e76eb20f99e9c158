package classify

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// TestCountersByEventKind: every kernel event is counted by its kind, in
// a batch and alone.
func TestCountersByEventKind(t *testing.T) {
	f := newFixture(t, "bob cpu b\n", Config{})
	f.e.HandleBatch([]kernel.Event{
		{What: kernel.EventFork, PID: 10, TGID: 10, ParentPID: 1, ParentTGID: 1},
		{What: kernel.EventExec, PID: 10, TGID: 10},
		{What: kernel.EventUID, PID: 10, TGID: 10},
		{What: kernel.EventUID, PID: 10, TGID: 10},
		{What: kernel.EventGID, PID: 10, TGID: 10},
		{What: kernel.EventExit, PID: 10, TGID: 10},
		{What: kernel.EventComm, PID: 10, TGID: 10}, // not a kind of its own
	})
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	want := [NumKinds]uint64{KindFork: 1, KindExec: 1, KindUID: 2, KindGID: 1, KindExit: 1, KindOverflow: 1}
	if got := f.e.Stats().EventsByKind; got != want {
		t.Errorf("EventsByKind = %v, want %v", got, want)
	}
}

// TestCountersMoved: a move is counted once per task by the reason it was
// looked at, and a credential change's move is timed from its event.
func TestCountersMoved(t *testing.T) {
	f := newFixture(t, "alice:prog cpu progs\nalice cpu users/alice\n", Config{})
	f.tasks.add(1, 1000, "/")   // start-up scan
	f.tasks.add(100, 1000, "/") // credentials
	f.tasks.add(101, 1000, "/") // its child, forked before the move
	f.tasks.add(200, 1000, "/") // exec
	f.tasks.mu.Lock()
	t200 := f.tasks.tasks[200]
	t200.Process = "/usr/bin/prog"
	f.tasks.tasks[200] = t200
	f.tasks.mu.Unlock()
	f.e.Scan()
	f.e.Start()
	defer f.e.Stop()
	if got := f.e.Stats().Moved[MovedStartupScan]; got != 4 {
		t.Fatalf("Moved[startup_scan] = %d, want 4 (every task of alice)", got)
	}
	for _, pid := range []int{100, 101, 200} {
		f.mover.mu.Lock()
		f.tasks.mu.Lock()
		for h := range f.tasks.cgroups[pid] {
			f.tasks.cgroups[pid][h] = "/"
		}
		f.tasks.mu.Unlock()
		f.mover.mu.Unlock()
	}
	ev := uidEvent(100)
	ev.Timestamp = kernel.Now() - uint64(2*time.Millisecond)
	f.e.Handle(ev)
	f.e.Handle(forkEvent(100, 101, kernel.Now()))
	f.e.Handle(&kernel.Event{What: kernel.EventExec, PID: 200, TGID: 200, Timestamp: kernel.Now()})
	waitFor(t, "three moves", func() bool {
		s := f.e.Stats()
		return s.Moved[MovedCredentials] == 1 && s.Moved[MovedForkRace] == 1 && s.Moved[MovedExec] == 1
	})
	l := f.e.Latency()
	if l.Count != 2 {
		t.Errorf("latency observations %d, want 2 (the credential change and the exec; not the fork)", l.Count)
	}
	if l.Sum < 2*time.Millisecond {
		t.Errorf("latency sum %v: the credential change was stamped 2 ms before", l.Sum)
	}
	// A repair scan: the task went back to / while events were lost.
	f.tasks.mu.Lock()
	for h := range f.tasks.cgroups[1] {
		f.tasks.cgroups[1][h] = "/"
	}
	f.tasks.mu.Unlock()
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	waitFor(t, "repair scan move", func() bool { return f.e.Stats().Moved[MovedRepairScan] == 1 })

	hits := f.e.RuleHits()
	if len(hits) != 2 || hits[0].Rule.Line != 1 || hits[1].Rule.Line != 2 {
		t.Fatalf("RuleHits = %+v, want the two rules in file order", hits)
	}
	if hits[0].Hits == 0 || hits[1].Hits == 0 {
		t.Errorf("rule hits %d and %d: both rules decided moves", hits[0].Hits, hits[1].Hits)
	}
	dests, n := f.e.Destinations(10)
	if n != 2 || len(dests) != 2 {
		t.Errorf("Destinations = %v, %d; want the cpu hierarchy's /progs and /users/alice", dests, n)
	}
	for _, d := range dests {
		if d.H != f.cpu || (d.Path != "/progs" && d.Path != "/users/alice") {
			t.Errorf("destination %s:%s", d.H.Name(), d.Path)
		}
	}
}

// TestCountersFailed: each failed write is counted by its cause.
func TestCountersFailed(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(f *engineFixture)
		cause int
	}{
		{"task gone", func(f *engineFixture) { f.mover.fail = unix.ESRCH }, FailedTaskGone},
		{"cgroup missing", func(f *engineFixture) { f.mover.exists = map[string]bool{} }, FailedCgroupMissing},
		{"EINVAL retries exhausted", func(f *engineFixture) { f.mover.setEINVAL(100, 100) }, FailedRetries},
		{"other", func(f *engineFixture) { f.mover.fail = unix.EBUSY }, FailedOther},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "alice cpu users/alice\n", Config{Retries: 1})
			f.tasks.add(100, 1000, "/")
			c.setup(f)
			f.e.Start()
			defer f.e.Stop()
			f.e.Handle(uidEvent(100))
			waitFor(t, "the failure counted", func() bool { return f.e.Stats().Failed[c.cause] > 0 })
			time.Sleep(50 * time.Millisecond)
			s := f.e.Stats()
			for cause, n := range s.Failed {
				if cause != c.cause && n != 0 {
					t.Errorf("Failed[%s] = %d, want 0", FailCauseNames[cause], n)
				}
			}
			if s.Moved != ([NumMoveReasons]uint64{}) {
				t.Errorf("Moved = %v after failures only", s.Moved)
			}
		})
	}
}

// TestCountersLeftAlone: a classification that moves nothing is counted by
// why.
func TestCountersLeftAlone(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice ignore\nbob cpu users/bob\n", Config{Root: "/scope"})
	f.tasks.add(100, 1000, "/scope/users/alice/job") // ignore holds
	f.tasks.add(101, 1001, "/scope/users/bob")       // in place
	f.tasks.add(102, 1002, "/scope")                 // no rule for uid 1002
	f.tasks.add(103, 1001, "/elsewhere")             // out of scope
	f.tasks.add(104, 1001, "/scope")                 // sticky
	if _, err := f.e.Marks().Mark(104, 0, false); err != nil {
		t.Fatal(err)
	}
	f.e.Start()
	defer f.e.Stop()
	for pid := 100; pid <= 104; pid++ {
		f.e.Handle(uidEvent(pid))
	}
	want := [NumLeftReasons]uint64{LeftIgnore: 1, LeftInPlace: 1, LeftNoRule: 1, LeftOutOfScope: 1, LeftSticky: 1}
	waitFor(t, "every task looked at", func() bool { return f.e.Stats().LeftAlone == want })
	if s := f.e.Stats(); s.Moves != 0 {
		t.Errorf("%d moves, want none", s.Moves)
	}
}

// TestCountersSameAtEveryLevel: a task that no rule can match by its ids
// is counted as no_rule whatever the log level, even when it is also
// outside the daemon's scope (at debug level it was counted out_of_scope:
// the extra reads for the debug line decided the count).
func TestCountersSameAtEveryLevel(t *testing.T) {
	for _, level := range []logrus.Level{logrus.ErrorLevel, logrus.InfoLevel, logrus.DebugLevel} {
		t.Run(level.String(), func(t *testing.T) {
			f := newFixture(t, "alice cpu users/alice\n", Config{Root: "/scope"})
			f.e.log.SetLevel(level)
			f.tasks.add(100, 1002, "/elsewhere") // no rule for uid 1002, and out of scope
			f.tasks.add(101, 1000, "/elsewhere") // alice, out of scope
			f.e.Start()
			defer f.e.Stop()
			f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 100, TGID: 100, EUID: 1002})
			f.e.Handle(uidEvent(101))
			want := [NumLeftReasons]uint64{LeftNoRule: 1, LeftOutOfScope: 1}
			waitFor(t, "both tasks looked at", func() bool {
				s := f.e.Stats().LeftAlone
				return s[LeftNoRule]+s[LeftOutOfScope] == 2
			})
			if got := f.e.Stats().LeftAlone; got != want {
				t.Errorf("LeftAlone = %v at level %s, want %v", got, level, want)
			}
		})
	}
}
