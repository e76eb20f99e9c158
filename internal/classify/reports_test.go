package classify

import (
	"testing"
	"time"
)

func TestReportLimiter(t *testing.T) {
	r := newReportLimiter[string](time.Minute, 3)
	t0 := time.Unix(1000, 0)
	step := func(k string, at time.Duration, wantOK bool, wantSuppressed int) {
		t.Helper()
		n, ok := r.allow(k, t0.Add(at))
		if ok != wantOK || n != wantSuppressed {
			t.Fatalf("allow(%s, +%v) = %d, %v; want %d, %v", k, at, n, ok, wantSuppressed, wantOK)
		}
	}
	step("a", 0, true, 0)
	step("a", time.Second, false, 0)
	step("a", 2*time.Second, false, 0)
	step("b", 2*time.Second, true, 0) // per key
	step("a", time.Minute, true, 2)   // the interval has passed: logged, with the count
	step("a", time.Minute+time.Second, false, 0)
	r.forget("a") // seen to be fine again: the next failure is reported at once
	step("a", time.Minute+2*time.Second, true, 0)
	r.reset()
	step("a", time.Minute+3*time.Second, true, 0)
	step("b", time.Minute+3*time.Second, true, 0)
	// The bound: a fourth key makes room without losing its first report.
	step("c", time.Minute+4*time.Second, true, 0)
	step("d", time.Minute+5*time.Second, true, 0)
	if len(r.seen) > 3 {
		t.Errorf("%d keys remembered, bound 3", len(r.seen))
	}
	r.reset()
	r.forget("nothing") // no-op when empty
	if r.n.Load() != 0 {
		t.Errorf("count %d after reset", r.n.Load())
	}
}
