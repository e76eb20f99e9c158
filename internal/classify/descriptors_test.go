package classify

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// emfileTasks fails the Task reads of pid with EMFILE while failing is set.
type emfileTasks struct {
	*fakeTasks
	pid     int
	mu      sync.Mutex
	failing bool
}

func (f *emfileTasks) Task(pid int) (proc.Task, error) {
	f.mu.Lock()
	failing := f.failing && pid == f.pid
	f.mu.Unlock()
	if failing {
		return proc.Task{}, fmt.Errorf("proc: pid %d: status: %w", pid, unix.EMFILE)
	}
	return f.fakeTasks.Task(pid)
}

func (f *emfileTasks) set(failing bool) {
	f.mu.Lock()
	f.failing = failing
	f.mu.Unlock()
}

// TestEngineOutOfDescriptors: a task read or a move that fails with EMFILE
// is a lost event: an error is logged (once a second at most) and a rescan
// repairs it once descriptors are free again, however long the shortage
// lasts; the rescans it asks for are spaced.
func TestEngineOutOfDescriptors(t *testing.T) {
	for _, where := range []string{"read", "move"} {
		t.Run(where, func(t *testing.T) {
			f := newFixture(t, "alice cpu users/alice\n", Config{})
			f.tasks.add(100, 1000, "/")
			tasks := &emfileTasks{fakeTasks: f.tasks, pid: 100}
			f.e.cfg.Tasks = tasks
			setFailing := func(on bool) {
				if where == "read" {
					tasks.set(on)
					return
				}
				f.mover.mu.Lock()
				f.mover.fail = nil
				if on {
					f.mover.fail = unix.EMFILE
				}
				f.mover.mu.Unlock()
			}
			setFailing(true)
			f.e.Start()
			defer f.e.Stop()
			start := time.Now()
			f.e.Handle(uidEvent(100))
			waitFor(t, "a rescan", func() bool { return f.e.Stats().Rescans >= 1 })
			// The shortage lasts: the rescan fails too and asks for another,
			// a second later, not at once.
			time.Sleep(300 * time.Millisecond)
			if n := f.e.Stats().Rescans; n != 1 {
				t.Errorf("%d rescans within 300 ms of a lasting shortage, want 1", n)
			}
			if got := f.tasks.where(100, f.cpu); got != "/" {
				t.Fatalf("moved to %s during the shortage", got)
			}
			setFailing(false)
			waitFor(t, "the repair", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
			if took := time.Since(start); took < fdRepairSpacing {
				t.Errorf("repaired after %v, before the spacing of %v", took, fdRepairSpacing)
			}
			l := f.log.String()
			if n := strings.Count(l, `level=error msg="out of file descriptors: a task was not classified, rescanning /proc`); n != 1 {
				t.Errorf("shortage logged %d times at error level, want 1 (rate-limited):\n%s", n, l)
			}
			if !strings.Contains(l, "too many open files") || !strings.Contains(l, "pid=100") {
				t.Errorf("the log line does not name the pid and the cause:\n%s", l)
			}
		})
	}
}
