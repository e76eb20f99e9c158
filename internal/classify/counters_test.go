package classify

import (
	"fmt"
	"io"
	"reflect"
	"strings"
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
	if _, err := f.e.Marks().Mark(104, 0, false, 0); err != nil {
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

// TestCountsTable: every value of Counts is one row of the table, named
// once, with its help; a group's rows share their help and label; a
// snapshot copies every row, and the log line shows every row.
func TestCountsTable(t *testing.T) {
	var c Counts[uint64]
	rows := c.table()
	byAddr := map[*uint64]string{}
	keys, series := map[string]bool{}, map[string]bool{}
	groups := map[string]Def{}
	for _, r := range rows {
		if other, dup := byAddr[r.v]; dup {
			t.Errorf("rows %s and %s share a value", other, r.Key())
		}
		byAddr[r.v] = r.Key()
		if keys[r.Key()] {
			t.Errorf("two rows named %s", r.Key())
		}
		keys[r.Key()] = true
		if r.Help == "" || r.Name == "" {
			t.Errorf("row %+v lacks a name or help", r.Def)
		}
		s := r.Series() + "{" + r.Label + "=" + r.Name + "}"
		if series[s] {
			t.Errorf("two rows for the series %s", s)
		}
		series[s] = true
		if r.Group == "" {
			continue
		}
		if g, ok := groups[r.Group]; ok && (g.Help != r.Help || g.Label != r.Label || g.Kind != r.Kind) {
			t.Errorf("group %s: rows %+v and %+v differ", r.Group, g, r.Def)
		}
		groups[r.Group] = r.Def
	}
	// Every uint64 of the struct has its row.
	n := 0
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		addrs := []*uint64{}
		switch f.Kind() {
		case reflect.Uint64:
			addrs = append(addrs, f.Addr().Interface().(*uint64))
		case reflect.Array:
			for j := 0; j < f.Len(); j++ {
				addrs = append(addrs, f.Index(j).Addr().Interface().(*uint64))
			}
		default:
			t.Fatalf("field %s of kind %s", v.Type().Field(i).Name, f.Kind())
		}
		for j, a := range addrs {
			n++
			if _, ok := byAddr[a]; !ok {
				t.Errorf("Counts.%s[%d] has no row in the table", v.Type().Field(i).Name, j)
			}
		}
	}
	if n != len(rows) || len(Defs()) != n {
		t.Errorf("%d values, %d rows, %d Defs", n, len(rows), len(Defs()))
	}

	e := New(Config{Log: quietLogger(io.Discard)})
	for i, r := range e.stats.table() {
		r.v.Store(uint64(i + 1))
	}
	s := e.Stats()
	var line []string
	for i, val := range s.Values() {
		if val.Value != uint64(i+1) || val.Def != rows[i].Def {
			t.Errorf("snapshot row %d: %+v = %d, want %+v = %d", i, val.Def, val.Value, rows[i].Def, i+1)
		}
		line = append(line, fmt.Sprintf("%s=%d", val.Key(), i+1))
	}
	if got := s.String(); got != strings.Join(line, " ") {
		t.Errorf("String() = %q", got)
	}
}
