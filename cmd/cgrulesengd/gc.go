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

// gcPercent is the GOGC value that puts the heap goal at live+heapHeadroom:
// the goal is max(live × (1+p/100), heapMinimum × p/100).
func gcPercent(live uint64) int {
	return int(max(100*heapHeadroom/max(live, heapMinimum), minGCPercent))
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
