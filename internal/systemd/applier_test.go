package systemd

import (
	"sync"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// completions records what an applier hands back to the engine.
type completions struct {
	mu   sync.Mutex
	got  []classify.Applied
	done chan struct{}
}

func (c *completions) Done(p *classify.Placement, a classify.Applied) {
	c.mu.Lock()
	c.got = append(c.got, a)
	c.mu.Unlock()
	c.done <- struct{}{}
}

func slicePlacement(pid int) *classify.Placement {
	return &classify.Placement{
		PID:  pid,
		Task: rules.Task{PID: pid, UID: 1000},
		Decision: classify.Decision{Moves: []classify.Move{{
			Path: "/batch.slice/batch-alice.slice", Target: &rules.Target{Slice: true},
		}}},
	}
}

// TestApplier: the applier takes slice decisions only; Apply never
// blocks and hands the placement to the placer (Pending), which reports
// back through the Completion (here: not placed, the manager being
// unreachable; repaired by Repair once it answers); a full queue is Lost,
// for the engine's rescan.
func TestApplier(t *testing.T) {
	a := NewApplier(ApplierConfig{Placer: PlacerConfig{Client: unreachableClient(t), Workers: 1, Queue: 1, Retries: 1, Backoff: time.Hour}})
	defer a.Close()
	raw := classify.Decision{Moves: []classify.Move{{Path: "/x", Target: &rules.Target{}}}}
	if a.Takes(&raw) || a.Takes(&classify.Decision{}) || !a.Takes(&slicePlacement(1).Decision) {
		t.Error("Takes: want slice decisions only")
	}
	if !a.Cheap(slicePlacement(1)) {
		t.Error("Apply makes no call: it is cheap")
	}
	c := &completions{done: make(chan struct{}, 4)}
	start := time.Now()
	if res := a.Apply(slicePlacement(101), c); !res.Pending || res.Lost {
		t.Fatalf("first Apply: %+v, want pending", res)
	}
	// The placement waits for its retry (an hour): the queue stays full.
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().Retries == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if res := a.Apply(slicePlacement(102), c); !res.Lost || res.Pending {
		t.Errorf("Apply with the queue full: %+v, want lost", res)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Apply took %v", d)
	}
	a.Close() // ends the waiting placement: handed back, not placed
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("no completion")
	}
	if len(c.got) != 1 || c.got[0].Moved != 0 || c.got[0].Pending || c.got[0].Lost {
		t.Errorf("completions %+v", c.got)
	}
	st := a.Stats()
	if st.Refused != 1 || st.Closed != 1 || st.Submitted != 1 {
		t.Errorf("stats %+v", st)
	}
}
