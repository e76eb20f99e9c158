package main

import "testing"

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 12},                   // the runtime's 4 MB minimum goal scaled down to the headroom
		{1 << 20, 12},             // 3 rules: goal max(1.12 MB, 0.5 MB)
		{4 << 20, 12},             //
		{5 << 20, 10},             // ~10,000 rules: +512 KB
		{9 << 19, 11},             //
		{200 << 20, minGCPercent}, // huge: never below the floor
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d KB) = %d, want %d", c.live>>10, got, c.want)
		}
	}
}
