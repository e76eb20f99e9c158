package systemd

import (
	"sync/atomic"
	"time"
)

// HistogramBounds are the upper bounds of the placer's latency buckets:
// an attach takes a few hundred microseconds, a new scope a few
// milliseconds, a burst tens, and a manager that re-executes or stalls
// seconds.
var HistogramBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, time.Second,
	5 * time.Second,
}

// Histogram is a snapshot of a latency histogram: Counts[i] observations
// took at most HistogramBounds[i] (and more than the bound before); the
// last entry counts those above every bound.
type Histogram struct {
	Counts [len(HistogramBounds) + 1]uint64
	Count  uint64
	Sum    time.Duration
	Max    time.Duration
}

// histogram counts with atomics: observing takes no lock.
type histogram struct {
	counts [len(HistogramBounds) + 1]atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(HistogramBounds) && d > HistogramBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum, s.Max = time.Duration(h.sum.Load()), time.Duration(h.max.Load())
	return s
}

// Quantile estimates the q-quantile (0 < q <= 1) as the upper bound of
// the bucket it falls in (Max above the last bound); 0 when empty.
func (s Histogram) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(s.Count) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range s.Counts {
		seen += c
		if seen >= rank {
			if i < len(HistogramBounds) {
				return min(HistogramBounds[i], s.Max)
			}
			return s.Max
		}
	}
	return s.Max
}
