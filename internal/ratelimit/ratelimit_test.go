package ratelimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at         time.Duration
		ok         bool
		suppressed int
	}
	for _, c := range []struct {
		name  string
		l     *Limiter
		steps []step
	}{
		{"zero value: one per second", &Limiter{}, []step{
			{0, true, 0}, {100 * time.Millisecond, false, 0}, {900 * time.Millisecond, false, 0},
			{time.Second, true, 2}, {1500 * time.Millisecond, false, 0}, {5 * time.Second, true, 1},
		}},
		{"burst of 3 per 100 ms", &Limiter{Burst: 3, Window: 100 * time.Millisecond}, []step{
			{0, true, 0}, {time.Millisecond, true, 0}, {2 * time.Millisecond, true, 0},
			{3 * time.Millisecond, false, 0}, {4 * time.Millisecond, false, 0},
			{100 * time.Millisecond, true, 2}, {101 * time.Millisecond, true, 0},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i, s := range c.steps {
				n, ok := c.l.Allow(t0.Add(s.at))
				if ok != s.ok || n != s.suppressed {
					t.Errorf("step %d (+%v): Allow = %d, %v; want %d, %v", i, s.at, n, ok, s.suppressed, s.ok)
				}
			}
		})
	}
}

func TestKeyed(t *testing.T) {
	r := &Keyed[string]{Window: time.Minute, Max: 3}
	t0 := time.Unix(1000, 0)
	step := func(k string, at time.Duration, wantOK bool, wantSuppressed int) {
		t.Helper()
		n, ok := r.Allow(k, t0.Add(at))
		if ok != wantOK || n != wantSuppressed {
			t.Fatalf("Allow(%s, +%v) = %d, %v; want %d, %v", k, at, n, ok, wantSuppressed, wantOK)
		}
	}
	step("a", 0, true, 0)
	step("a", time.Second, false, 0)
	step("a", 2*time.Second, false, 0)
	step("b", 2*time.Second, true, 0) // per key
	step("a", time.Minute, true, 2)   // the interval has passed: logged, with the count
	step("a", time.Minute+time.Second, false, 0)
	r.Forget("a") // seen to be fine again: the next failure is reported at once
	step("a", time.Minute+2*time.Second, true, 0)
	r.Reset()
	step("a", time.Minute+3*time.Second, true, 0)
	step("b", time.Minute+3*time.Second, true, 0)
	// The bound: a fourth key makes room without losing its first report.
	step("c", time.Minute+4*time.Second, true, 0)
	step("d", time.Minute+5*time.Second, true, 0)
	if len(r.keys) > 3 {
		t.Errorf("%d keys remembered, bound 3", len(r.keys))
	}
	r.Reset()
	r.Forget("nothing") // no-op when empty
	if r.n.Load() != 0 {
		t.Errorf("count %d after reset", r.n.Load())
	}
}
