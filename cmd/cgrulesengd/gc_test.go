package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// TestGCPercent: for live heaps from none to 5 MB, the heap goal the
// runtime itself derives (runtime/metrics /gc/heap/goal:bytes) from the
// percentage the daemon sets after a collection is the live heap plus the
// headroom, within one percent step of the percentage, or the floor
// minGCPercent above it (a heap of 5 MB or more, 8 MB always).
func TestGCPercent(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: the daemon leaves the collector alone")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	var ballast []byte
	for _, size := range []int{0, 100 << 10, 400 << 10, 1 << 20, 1536 << 10, 3 << 20, 4 << 20, 5 << 20, 8 << 20} {
		ballast = make([]byte, size)
		live, pct := releaseMemory()
		_, roots := heapNow()
		metrics.Read(goal)
		got := goal[0].Value.Uint64()
		runtime.KeepAlive(ballast)
		if size == 8<<20 {
			if pct != minGCPercent {
				t.Errorf("an 8 MB live heap: GOGC=%d, want the floor %d", pct, minGCPercent)
			}
			continue
		}
		want := live + heapHeadroom
		if pct == minGCPercent { // a heap of 5 MB or more: the floor
			want = live + (live+roots)*minGCPercent/100
		}
		step := max(live+roots, heapMinimum) / 100 // one percent step
		if got+step < want || got > want+step {
			t.Errorf("live %d KB (roots %d KB): GOGC=%d gives the runtime a goal of %d KB, want %d KB (± %d KB)",
				live>>10, roots>>10, pct, got>>10, want>>10, step>>10)
		}
	}
}
