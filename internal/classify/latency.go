package classify

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the latency histogram's buckets,
// from a credential change (the kernel's event timestamp) to the end of the
// cgroup.procs write that put the task in its last hierarchy. They are
// chosen around what matters on a worker node: tens of microseconds on an
// idle machine, a scheduler tick or two under load, and the long tail.
var LatencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond, 300 * time.Microsecond,
	500 * time.Microsecond, 750 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	time.Second,
}

// latencyHist counts observations per bucket with atomics: observe takes
// no lock and allocates nothing, so moves can record themselves.
type latencyHist struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Uint64                         // ns
}

func (h *latencyHist) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(d))
}

// Latency is a snapshot of the histogram: Counts[i] moves took at most
// LatencyBounds[i] (and more than the bound before); Counts has one more
// entry, for the moves above the last bound.
type Latency struct {
	Counts [len(LatencyBounds) + 1]uint64
	Count  uint64
	Sum    time.Duration
}

func (h *latencyHist) snapshot() Latency {
	var l Latency
	for i := range h.counts {
		l.Counts[i] = h.counts[i].Load()
		l.Count += l.Counts[i]
	}
	l.Sum = time.Duration(h.sum.Load())
	return l
}
