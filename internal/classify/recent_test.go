package classify

import (
	"slices"
	"testing"
	"time"
)

// TestRecentTasks: the states of recentTasks (recent.go).
func TestRecentTasks(t *testing.T) {
	r := newRecentTasks(3, time.Hour)
	defer r.stop()
	r.record(1) // closed: nothing
	if pids, lost := r.reopen(); pids != nil || lost {
		t.Fatalf("first reopen = %v, %v; want nothing (no window was open)", pids, lost)
	}
	r.record(1)
	r.record(2)
	r.record(2)
	r.record(3)
	r.exited(3) // exited: forgotten
	pids, lost := r.reopen()
	slices.Sort(pids)
	if !slices.Equal(pids, []int32{1, 2}) || lost {
		t.Errorf("reopen = %v, %v; want [1 2], false", pids, lost)
	}
	for pid := int32(10); pid < 15; pid++ {
		r.record(pid)
	}
	if pids, lost := r.reopen(); len(pids) != 3 || !lost {
		t.Errorf("reopen after 5 records with room for 3 = %v, %v; want 3 pids, lost", pids, lost)
	}
	if pids, lost := r.reopen(); len(pids) != 0 || lost {
		t.Errorf("reopen with nothing recorded = %v, %v", pids, lost)
	}

	// The window passes: the rules are settled, nothing is returned.
	s := newRecentTasks(10, 10*time.Millisecond)
	defer s.stop()
	s.reopen()
	s.record(1)
	time.Sleep(50 * time.Millisecond)
	s.record(2) // closed
	if pids, lost := s.reopen(); pids != nil || lost {
		t.Errorf("reopen after the window = %v, %v; want nothing", pids, lost)
	}
	if s.n.Load() != 0 {
		t.Errorf("%d pids held by a new window", s.n.Load())
	}
}

// TestEngineReloadRechecks (issue 19, item 4): the rules file is seen
// half-written (no rule), tasks change uid meanwhile, then the whole file
// is loaded: those tasks end where the rules now in force put them (before:
// never moved). A task the rules the daemon started with classified stays
// where they put it, and so does one classified by rules that had been in
// force longer than the window when a reload replaced them.
func TestEngineReloadRechecks(t *testing.T) {
	f := newFixture(t, "alice cpu old\n", Config{})
	f.tasks.add(50, 1000, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(50))
	waitFor(t, "moved by the first rules", func() bool { return f.tasks.where(50, f.cpu) == "/old" })

	f.e.SetRules(mustParse(t, f.e.cfg.Layout, ""), testResolver()) // truncated
	for pid := 100; pid < 105; pid++ {
		f.tasks.add(pid, 1000, "/")
		f.e.Handle(uidEvent(pid))
	}
	waitFor(t, "no rule for the five", func() bool { return f.e.Stats().LeftAlone[LeftNoRule] >= 5 })
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu new\n"), testResolver()) // written
	waitFor(t, "the five moved by the rules now in force", func() bool {
		for pid := 100; pid < 105; pid++ {
			if f.tasks.where(pid, f.cpu) != "/new" {
				return false
			}
		}
		return true
	})
	s := f.e.Stats()
	if s.Moved[MovedReload] < 5 || s.Rechecked < 5 {
		t.Errorf("Moved[reload] = %d, Rechecked = %d; want at least 5 each", s.Moved[MovedReload], s.Rechecked)
	}
	if got := f.tasks.where(50, f.cpu); got != "/old" {
		t.Errorf("the task the start-up rules classified moved to %s", got)
	}
	// A third reload, quick again: the five were checked again by the
	// second one's rules while they were new, so they follow once more.
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu newer\n"), testResolver())
	waitFor(t, "the five follow the next quick reload", func() bool { return f.tasks.where(104, f.cpu) == "/newer" })

	// Settled rules: a task they classified stays.
	f.e.recent.stop()
	f.e.recent.window = 20 * time.Millisecond
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu old\n"), testResolver())
	f.tasks.add(200, 1000, "/")
	f.e.Handle(uidEvent(200))
	waitFor(t, "moved", func() bool { return f.tasks.where(200, f.cpu) == "/old" })
	time.Sleep(60 * time.Millisecond) // the rules settle
	before := f.e.Stats().Rechecked
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu new\n"), testResolver())
	time.Sleep(50 * time.Millisecond)
	if got := f.tasks.where(200, f.cpu); got != "/old" {
		t.Errorf("a task classified by settled rules moved to %s at the reload", got)
	}
	if n := f.e.Stats().Rechecked; n != before {
		t.Errorf("%d tasks checked again after settled rules were replaced", n-before)
	}
}

// TestEngineReclassify: Reclassify classifies every running task by the
// rules in force, once, and returns what it did; sticky tasks stay.
func TestEngineReclassify(t *testing.T) {
	f, st := newStickyFixture(t, "alice cpu old\n")
	for _, pid := range []int{100, 101} {
		f.tasks.add(pid, 1000, "/old")
		st.starts[pid] = 10
	}
	f.tasks.add(102, 0, "/") // no rule
	mustMark(t, f.e, 101, 10, false)
	f.e.Start()
	defer f.e.Stop()
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu new\n"), testResolver())
	time.Sleep(20 * time.Millisecond)
	if got := f.tasks.where(100, f.cpu); got != "/old" {
		t.Fatalf("the reload moved a running task to %s", got)
	}
	r, ok := f.e.Reclassify()
	if !ok || r.Tasks != 3 || r.Moved != 1 {
		t.Errorf("Reclassify = %+v, %v; want 3 tasks looked at, 1 moved", r, ok)
	}
	if got := f.tasks.where(100, f.cpu); got != "/new" {
		t.Errorf("task 100 in %s after Reclassify, want /new", got)
	}
	if got := f.tasks.where(101, f.cpu); got != "/old" {
		t.Errorf("the sticky task moved to %s", got)
	}
	s := f.e.Stats()
	if s.Moved[MovedReclassify] != 1 || s.Reclassifications != 1 {
		t.Errorf("Moved[reclassify] = %d, Reclassifications = %d; want 1 and 1", s.Moved[MovedReclassify], s.Reclassifications)
	}
}

// TestEngineReclassifyStopped: Reclassify returns when the engine stops.
func TestEngineReclassifyStopped(t *testing.T) {
	f := newFixture(t, "alice cpu old\n", Config{})
	f.e.Start()
	f.e.Stop()
	if _, ok := f.e.Reclassify(); ok {
		t.Error("Reclassify of a stopped engine reported success")
	}
}

// BenchmarkRecentTasks: what the memory of recent tasks adds to an event
// that queues a classification and to the process's EXIT: one atomic load
// each once the rules are settled (window=closed, the steady state), a
// lock and a map operation each during the minute after a reload.
func BenchmarkRecentTasks(b *testing.B) {
	for _, open := range []bool{false, true} {
		name := "window=closed"
		if open {
			name = "window=open"
		}
		b.Run(name, func(b *testing.B) {
			r := newRecentTasks(maxRecent, time.Hour)
			defer r.stop()
			if open {
				r.reopen()
			}
			b.ReportAllocs()
			pid := int32(0)
			for b.Loop() {
				pid = (pid + 1) % 30000
				r.record(pid)
				r.exited(pid)
			}
		})
	}
}
