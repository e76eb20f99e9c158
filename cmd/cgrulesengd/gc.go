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

// gcPercent is the GOGC value p that puts the heap goal at live+heapHeadroom.
// The runtime computes the goal as max(live + (live+roots) × p/100,
// heapMinimum × p/100), where roots are the stacks and globals it scans
// (/gc/scan/stack:bytes and /gc/scan/globals:bytes: the daemon's globals
// are a good part of its small heaps): p = 100 H/(live+roots) makes the first term that, p =
// 100 (live+H)/heapMinimum the second; the smaller of the two is the one
// whose term wins the max. TestGCPercent checks it against the runtime's
// own goal. (Taking H/max(live, heapMinimum) instead, as a first version
// did, left small rule sets a goal of heapMinimum × p/100, 86 KB above a
// 400 KB live heap: a collection every few dozen moves.)
func gcPercent(live, roots uint64) int {
	p := 100 * (live + heapHeadroom) / heapMinimum
	if live+roots > 0 {
		p = min(p, 100*heapHeadroom/(live+roots))
	}
	return int(max(p, minGCPercent))
}

// heapNow reads the live heap (as of the last collection) and the roots
// the collector scans besides it.
func heapNow() (live, roots uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			continue
		}
		if i == 0 {
			live = s[i].Value.Uint64()
		} else {
			roots += s[i].Value.Uint64()
		}
	}
	return live, roots
}

// tuneGC sets the collector's goal from the live heap, measured after a
// collection (call it right after debug.FreeOSMemory). A GOGC set in the
// environment is left alone. It returns the live heap and the percentage
// in force.
func tuneGC() (live uint64, pct int) {
	live, roots := heapNow()
	if v, set := os.LookupEnv("GOGC"); set {
		if n, err := strconv.Atoi(v); err == nil {
			return live, n
		}
		return live, -1 // "off"
	}
	pct = gcPercent(live, roots)
	debug.SetGCPercent(pct)
	return live, pct
}
