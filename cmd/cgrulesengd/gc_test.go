package main

import "testing"

// TestGCPercent: for every live heap size the daemon meets, the heap goal
// the runtime derives from the percentage is the live heap plus the
// headroom (within the rounding of a whole percentage), or for huge heaps
// +minGCPercent.
func TestGCPercent(t *testing.T) {
	for _, live := range []uint64{0, 100 << 10, 400 << 10, 1 << 20, 1536 << 10, 3 << 20, 4 << 20, 5 << 20} {
		p := gcPercent(live)
		goal := heapGoal(live, p)
		want := live + heapHeadroom
		slack := max(live, heapMinimum) / 100 // one percent step
		if goal+slack < want || goal > want+slack {
			t.Errorf("live %d KB: GOGC=%d gives a goal of %d KB, want %d KB", live>>10, p, goal>>10, want>>10)
		}
	}
	if p := gcPercent(8 << 20); p != minGCPercent { // +6%: clamped to +10%
		t.Errorf("an 8 MB live heap: GOGC=%d, want the floor %d", p, minGCPercent)
	}
}
