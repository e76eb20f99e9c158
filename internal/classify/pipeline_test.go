package classify

import (
	"sync"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// reads counts the status and cgroup reads of each pid.
func (f *fakeTasks) reads(pid int) (status, cgroups int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusReads[pid], f.cgReads[pid]
}

// TestEngineHandOffCarriesTheRead: when the reader finds a move not cheap
// (the destination's descriptor is not open yet), the worker it hands the
// job to applies what the reader read and decided, without reading /proc
// again; unless an event for the task came meanwhile, which makes the
// worker read it again.
func TestEngineHandOffCarriesTheRead(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.e.HandleBatch([]kernel.Event{*uidEvent(100)}) // the reader reads, decides, hands off
	if s := f.e.Stats(); s.Inline != 0 || len(f.e.fast) != 1 {
		t.Fatalf("after the batch: Inline = %d, %d likely jobs queued; want 0 and 1 (handed off)", s.Inline, len(f.e.fast))
	}
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if status, cgroups := f.tasks.reads(100); status != 1 || cgroups != 1 {
		t.Errorf("status read %d times, cgroups %d times; want once each (the worker used the reader's read)", status, cgroups)
	}

	g := newFixture(t, "alice cpu users/alice\n", Config{})
	g.tasks.add(101, 1000, "/")
	g.e.HandleBatch([]kernel.Event{*uidEvent(101)})
	g.e.Handle(uidEvent(101)) // another thread's change: the carried read is stale
	g.e.Start()
	defer g.e.Stop()
	waitFor(t, "move", func() bool { return g.tasks.where(101, g.cpu) == "/users/alice" })
	if status, _ := g.tasks.reads(101); status != 2 {
		t.Errorf("status read %d times; want twice (an event came after the hand-off)", status)
	}
	if s := g.e.Stats(); s.Coalesced != 1 {
		t.Errorf("Coalesced = %d, want 1", s.Coalesced)
	}
}

// asyncApplier takes the decisions of one rule line and completes them when
// the test says (a stand-in for placement through systemd).
type asyncApplier struct {
	line int
	mu   sync.Mutex
	took []*Placement
}

func (a *asyncApplier) Takes(d *Decision) bool { return d.Rule.Line == a.line }
func (a *asyncApplier) Cheap(*Placement) bool  { return false }
func (a *asyncApplier) Apply(p *Placement, done Completion) Applied {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.took = append(a.took, p.Clone())
	return Applied{Pending: true}
}

func (a *asyncApplier) taken() []*Placement {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*Placement(nil), a.took...)
}

// TestEngineAsyncApplier: a decision taken by an asynchronous applier is
// placed by it, never by the event reader; the task stays hot until the
// applier reports back, so a child forked meanwhile is followed (and
// placed by the same applier); then the time the applier gives is what
// later forks are compared with; the move counts as any other.
func TestEngineAsyncApplier(t *testing.T) {
	a := &asyncApplier{line: 2}
	f := newFixture(t, "alice cpu users/alice\nbob cpu slow\n", Config{Appliers: []Applier{a}})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(200, 1001, "/")
	f.tasks.add(201, 1001, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.HandleBatch([]kernel.Event{{What: kernel.EventUID, PID: 200, TGID: 200, EUID: 1001, Timestamp: kernel.Now()}})
	waitFor(t, "the applier took bob's task", func() bool { return len(a.taken()) == 1 })
	if h, _ := f.e.hot.get(200); h.state != hotRunning {
		t.Fatalf("pid 200 is %s while its placement is in flight, want running", h.state)
	}
	f.e.Handle(forkEvent(200, 201, kernel.Now()))
	waitFor(t, "the child taken too", func() bool { return len(a.taken()) == 2 })
	p := a.taken()[0]
	if p.PID != 200 || p.Task.UID != 1001 || len(p.Decision.Moves) != 1 || p.Decision.Moves[0].Path != "/slow" {
		t.Fatalf("placement %+v", p)
	}
	// Alice's rule is the cgroupfs writes'.
	f.e.Handle(uidEvent(100))
	waitFor(t, "alice's task moved by cgroupfs", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if got := f.tasks.where(200, f.cpu); got != "/" {
		t.Errorf("bob's task written to %s by cgroupfs", got)
	}

	placed := kernel.Now()
	f.e.done.Done(p, Applied{Moved: 1, At: placed})
	if h, _ := f.e.hot.get(200); h.state != hotDone || h.doneAt != placed {
		t.Fatalf("after Done: %+v, want done at %d", h, placed)
	}
	slack := uint64(f.e.cfg.ForkSlack)
	f.e.Handle(forkEvent(200, 202, placed+slack+1)) // forked after the placement: inherits it
	f.e.Handle(forkEvent(200, 203, placed-1))       // forked before it
	if s := f.e.Stats(); s.ForksFollowed != 2 || s.Moved[MovedCredentials] != 2 {
		t.Errorf("ForksFollowed = %d, Moved[credentials] = %d; want 2 (201, 203) and 2 (alice's and bob's)", s.ForksFollowed, s.Moved[MovedCredentials])
	}
	if l := f.e.Latency(); l.Count != 1 {
		t.Errorf("latency observations %d, want 1 (bob's, from its event to the applier's time)", l.Count)
	}
}
