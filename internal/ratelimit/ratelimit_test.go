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
