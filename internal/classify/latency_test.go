package classify

import (
	"testing"
	"time"
)

func TestLatencyHist(t *testing.T) {
	var h latencyHist
	for _, d := range []time.Duration{
		-time.Microsecond, 0, 50 * time.Microsecond, // bucket 0 (<= 50 µs)
		51 * time.Microsecond,                   // bucket 1
		time.Millisecond,                        // bucket 6 (<= 1 ms)
		time.Second, 2 * time.Second, time.Hour, // 12 (<= 1 s), then above every bound
	} {
		h.observe(d)
	}
	l := h.snapshot()
	want := map[int]uint64{0: 3, 1: 1, 6: 1, 12: 1, 13: 2}
	for i, n := range l.Counts {
		if n != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, n, want[i])
		}
	}
	if l.Count != 8 {
		t.Errorf("Count %d, want 8", l.Count)
	}
	if wantSum := 50*time.Microsecond + 51*time.Microsecond + time.Millisecond + 3*time.Second + time.Hour; l.Sum != wantSum {
		t.Errorf("Sum %v, want %v", l.Sum, wantSum)
	}
	if n := testing.AllocsPerRun(100, func() { h.observe(300 * time.Microsecond) }); n != 0 {
		t.Errorf("observe allocates %v times", n)
	}
}
