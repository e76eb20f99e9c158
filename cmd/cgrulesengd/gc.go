package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
)

// The daemon's anonymous memory is its Go heap, and the heap grows to the
// collector's goal before a collection: with the default GOGC=100 that is
// twice the live heap, and the live heap is mostly the rules (~360 bytes
// each: 3.6 MB for 10,000). Garbage made under a storm (log lines at info
// level, errors for tasks gone before they were read) then took the
// resident heap up by the size of the rules, and the scavenger keeps what
// the goal allows. Go also never aims below a minimum heap of 4 MB ×
// GOGC/100, which for a small rule set dwarfs the live heap. So the goal is
// set to the live heap plus a fixed headroom instead: a collection of a
// few MB of live heap costs a few milliseconds, and what the daemon
// allocates per second, even under a storm, is far less than the headroom.
const (
	heapHeadroom = 512 << 10
	heapMinimum  = 4 << 20 // the runtime's minimum heap goal at GOGC=100
	minGCPercent = 10      // very large rule sets: collect at +10%, not continuously
)

// gcPercent is the GOGC value p that puts the heap goal, which the runtime
// computes as max(live × (1+p/100), heapMinimum × p/100), at
// live+heapHeadroom: p = H/live makes the first term that, p =
// (live+H)/heapMinimum the second; the smaller of the two is the one whose
// term wins the max. (Taking H/max(live, heapMinimum) instead, as a first
// version did, left small rule sets a goal of heapMinimum × p/100, 86 KB
// above a 400 KB live heap: a collection every few dozen moves.)
func gcPercent(live uint64) int {
	p := 100 * (live + heapHeadroom) / heapMinimum
	if live > 0 {
		p = min(p, 100*heapHeadroom/live)
	}
	return int(max(p, minGCPercent))
}

// heapGoal is the runtime's heap goal for a live heap and a GOGC value.
func heapGoal(live uint64, pct int) uint64 {
	return max(live*uint64(100+pct)/100, heapMinimum*uint64(pct)/100)
}

// tuneGC sets the collector's goal from the live heap, measured after a
// collection (call it right after debug.FreeOSMemory). A GOGC set in the
// environment is left alone. It returns the live heap and the percentage
// in force.
func tuneGC() (live uint64, pct int) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	if v, set := os.LookupEnv("GOGC"); set {
		if n, err := strconv.Atoi(v); err == nil {
			return live, n
		}
		return live, -1 // "off"
	}
	pct = gcPercent(live)
	debug.SetGCPercent(pct)
	return live, pct
}
