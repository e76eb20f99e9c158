package systemd

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// BenchmarkIntegrationGranularity measures the two ways of placing a
// burst of tasks of one user into a slice (issue 20): one transient scope
// per process (StartTransientUnit for each task), or one delegated scope
// per (slice, user) that the first task starts and later tasks join
// (AttachProcessesToUnit). For bursts of 100 and 1,000 tasks, 1 and 8 calls
// in flight, it reports the latency of each placement (call to done: the
// start job's JobRemoved, or the attach's reply) p50/p90/p99, the burst's
// wall time, the manager's CPU and ours per placement, the manager's
// memory growth, and how long `systemctl list-units` and `daemon-reload`
// take with the units in place. Run as root:
//
//	go test -run '^$' -bench Granularity -benchtime 1x ./internal/systemd/
//
// Each row boots its own box (same conditions; about 1 s).
func BenchmarkIntegrationGranularity(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, inFlight := range []int{1, 8} {
			for _, mode := range []string{"scope-per-process", "delegated-scope-per-user"} {
				b.Run(fmt.Sprintf("%s/tasks=%d/in-flight=%d", mode, n, inFlight), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						measureGranularity(b, mode, n, inFlight)
					}
				})
			}
		}
	}
}

func measureGranularity(b *testing.B, mode string, n, inFlight int) {
	box := sdbox.Start(b, sdbox.Options{})
	eventlock.Hold(b) // up to 1,000 forks: not beside the tests that count events
	c := dialBox(b, box.PrivateAddress)
	pids := startTasks(b, box, "cgre-burst", n)
	slice := "batch-cgre.slice"
	ctx := context.Background()

	lat := make([]time.Duration, n)
	var mu sync.Mutex
	var errs []error
	mgrCPU0, mgrRSS0 := procCPU(b, box.PID), procRSS(b, box.PID)
	var ru0 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	next := 0
	if mode == "delegated-scope-per-user" {
		t0 := time.Now()
		if _, err := c.StartScope(ctx, "cgre-user.scope", pids[:1], ScopeOptions{Slice: slice, Delegate: true}); err != nil {
			b.Fatal(err)
		}
		lat[0] = time.Since(t0)
		next = 1
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				var err error
				if mode == "scope-per-process" {
					_, err = c.StartScope(ctx, fmt.Sprintf("cgre-p%d.scope", pids[i]), pids[i:i+1], ScopeOptions{Slice: slice})
				} else {
					_, err = c.Attach(ctx, "cgre-user.scope", "", pids[i:i+1])
				}
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := next; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	var ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	mgrCPU := procCPU(b, box.PID) - mgrCPU0
	mgrRSS := procRSS(b, box.PID) - mgrRSS0
	if len(errs) > 0 {
		b.Fatalf("%d of %d placements failed, first: %v", len(errs), n, errs[0])
	}
	// Every task is in the slice, as the kernel says.
	for _, p := range pids {
		where, err := box.BoxCgroupOf(p)
		if err != nil || !strings.HasPrefix(where, "/batch.slice/batch-cgre.slice/") {
			b.Fatalf("pid %d in %q (%v)", p, where, err)
		}
	}
	ours := time.Duration((ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano()))
	t0 := time.Now()
	units, err := box.Systemctl("list-units", "--no-legend", "--plain", "--all", "cgre-*.scope")
	if err != nil {
		b.Fatal(err)
	}
	listTime := time.Since(t0)
	t0 = time.Now()
	if _, err := box.Systemctl("daemon-reload"); err != nil {
		b.Fatal(err)
	}
	reloadTime := time.Since(t0)
	t0 = time.Now()
	if _, err := box.Systemctl("stop", slice); err != nil {
		b.Fatal(err)
	}
	stopTime := time.Since(t0)

	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[int(f*float64(n-1))] }
	b.ReportMetric(float64(q(0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(q(0.9).Microseconds()), "p90-µs")
	b.ReportMetric(float64(q(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(wall.Microseconds())/float64(n), "wall-µs/task")
	b.ReportMetric(float64(mgrCPU.Microseconds())/float64(n), "systemd-cpu-µs/task")
	b.ReportMetric(float64(ours.Microseconds())/float64(n), "client-cpu-µs/task")
	b.ReportMetric(float64(mgrRSS)/float64(n), "systemd-rss-B/task")
	b.Logf("%s, %d tasks, %d in flight: p50 %v p90 %v p99 %v max %v; burst %v; systemd CPU %v (%v/task), RSS +%d KiB; client CPU %v; %d scopes; list-units %v, daemon-reload %v, stopping the slice %v",
		mode, n, inFlight, q(0.5), q(0.9), q(0.99), lat[n-1], wall.Round(time.Millisecond), mgrCPU, mgrCPU/time.Duration(n), mgrRSS>>10, ours,
		len(strings.Split(strings.TrimSpace(units), "\n")), listTime.Round(time.Millisecond), reloadTime.Round(time.Millisecond), stopTime.Round(time.Millisecond))
}

// procCPU is a process's user+system CPU time.
func procCPU(tb testing.TB, pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procRSS is a process's resident set in bytes.
func procRSS(tb testing.TB, pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
