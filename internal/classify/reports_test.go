package classify

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReportsBoundedPerRule (issue 19, item 5): a user chooses its process
// names and how many processes it starts, so a report about a template's
// destination (%p here) is limited per rule target, not per process or
// per expanded destination: 50 processes with 50 names that fail the same
// way are 50 errors counted and one line logged, per kind of failure;
// once the interval has passed, the next line says how many were left out.
// Before, "cannot expand destination" and "creating destination" were
// logged every time, and the failed moves and missing destinations once
// per process or destination.
func TestReportsBoundedPerRule(t *testing.T) {
	const n = 50
	for _, c := range []struct {
		name    string
		long    bool                   // process names too long for a cgroup name
		setup   func(f *engineFixture) // the failure
		reports map[string]int         // log lines and how many of each
		errors  uint64                 // Stats.Errors per process
		limiter func(f *engineFixture) *time.Duration
	}{
		{"cannot expand", true, func(*engineFixture) {},
			map[string]int{"cannot expand destination": 1}, 1,
			func(f *engineFixture) *time.Duration { return &f.e.expandErrs.Window }},
		{"cannot move", false, func(f *engineFixture) { f.mover.fail = unix.EBUSY },
			map[string]int{"cannot move task": 1}, 1,
			func(f *engineFixture) *time.Duration { return &f.e.moveErrs.Window }},
		{"cannot create", false, func(f *engineFixture) { f.mover.exists = map[string]bool{}; f.mover.noCreate = unix.EAGAIN },
			map[string]int{"creating destination": 1, "destination cgroup does not exist": 1}, 1,
			func(f *engineFixture) *time.Duration { return &f.e.createErrs.Window }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "alice cpu procs/%p\n", Config{})
			c.setup(f)
			for i := range n {
				pid := 100 + i
				f.tasks.add(pid, 1000, "/")
				name := "/usr/bin/job" + strconv.Itoa(i)
				if c.long {
					name = "/x/" + strings.Repeat("p", 300) + strconv.Itoa(i)
				}
				f.tasks.setProcess(pid, name)
			}
			f.e.Start()
			defer f.e.Stop()
			for i := range n {
				f.e.Handle(uidEvent(100 + i))
			}
			waitFor(t, "every failure counted", func() bool { return f.e.Stats().Errors == c.errors*n })
			for what, want := range c.reports {
				if got := strings.Count(f.log.String(), what); got != want {
					t.Errorf("%q logged %d times for %d processes, want %d:\n%s", what, got, n, want, f.log.String())
				}
			}
			if !strings.Contains(f.log.String(), `rule="test.conf:1"`) {
				t.Errorf("the line does not name the rule:\n%s", f.log.String())
			}
			// After the interval, the next failure is logged with the count.
			waitFor(t, "workers idle", func() bool { return f.e.busy.Load() == 0 })
			*c.limiter(f) = time.Millisecond
			f.e.missing.Window = time.Millisecond
			time.Sleep(5 * time.Millisecond)
			f.tasks.add(200, 1000, "/")
			f.tasks.setProcess(200, "/usr/bin/job-last"+strings.Repeat("q", 300*btoi(c.long)))
			f.e.Handle(uidEvent(200))
			waitFor(t, "the last failure counted", func() bool { return f.e.Stats().Errors == c.errors*(n+1) })
			if !strings.Contains(f.log.String(), "not_logged="+strconv.Itoa(n-1)) {
				t.Errorf("the line after the interval does not count the %d left out:\n%s", n-1, f.log.String())
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
