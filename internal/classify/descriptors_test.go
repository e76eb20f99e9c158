package classify

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/rules"
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

// emfileResolver fails the look-ups of uids with EMFILE while failing is
// set, as rules.NSS does during a shortage.
type emfileResolver struct {
	rules.Resolver
	failing atomic.Bool
}

func (r *emfileResolver) UserByID(uid uint32) (rules.User, error) {
	if r.failing.Load() {
		return rules.User{}, fmt.Errorf("uid %d: out of file descriptors: %w", uid, unix.EMFILE)
	}
	return r.Resolver.UserByID(uid)
}

// TestEngineOutOfDescriptors: a task read, a move, or a name look-up for a
// %u destination that fails with EMFILE is a lost event: an error is
// logged (once a second at most), counted (descriptor_shortages, and a
// move's as move_failures{cause="descriptors"}), and a rescan repairs it
// once descriptors are free again, however long the shortage lasts; the
// rescans it asks for are spaced.
func TestEngineOutOfDescriptors(t *testing.T) {
	for _, where := range []string{"read", "move", "expand"} {
		t.Run(where, func(t *testing.T) {
			f := newFixture(t, "alice cpu users/alice\n", Config{})
			res := &emfileResolver{Resolver: testResolver()}
			if where == "expand" {
				list, diags, err := rules.Parse("test.conf", []byte("alice cpu users/%u\n"), rules.Options{Resolver: res, Controllers: f.e.cfg.Layout.Controllers()})
				if err != nil {
					t.Fatalf("parse: %v (%v)", err, diags)
				}
				f.e.SetRules(list, res)
			}
			f.tasks.add(100, 1000, "/")
			tasks := &emfileTasks{fakeTasks: f.tasks, pid: 100}
			f.e.cfg.Tasks = tasks
			setFailing := func(on bool) {
				switch where {
				case "read":
					tasks.set(on)
					return
				case "expand":
					res.failing.Store(on)
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
			if strings.Contains(l, "cannot expand destination") {
				t.Errorf("a look-up that failed for lack of descriptors was reported as a bad destination:\n%s", l)
			}
			s := f.e.Stats()
			if s.DescriptorShortages < 2 {
				t.Errorf("DescriptorShortages = %d, want the event's and the rescan's", s.DescriptorShortages)
			}
			wantFailed := uint64(0)
			if where == "move" {
				wantFailed = s.DescriptorShortages
			}
			if s.Failed[FailedDescriptors] != wantFailed || s.Failed[FailedOther] != 0 {
				t.Errorf("Failed = %v, want %d moves failed for descriptors and none other", s.Failed, wantFailed)
			}
			// Every loss gave the Mover's cached descriptors back to the
			// rest of the process (a /proc read frees none itself).
			f.mover.mu.Lock()
			sheds := f.mover.sheds
			f.mover.mu.Unlock()
			if uint64(sheds) != s.DescriptorShortages {
				t.Errorf("the Mover shed %d times for %d shortages", sheds, s.DescriptorShortages)
			}
		})
	}
}
