package kernel

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNow: Now reads CLOCK_MONOTONIC, the clock of event timestamps: a
// reading of the clock by system call falls between two calls of Now, and
// Now never goes back.
func TestNow(t *testing.T) {
	var ts unix.Timespec
	prev := Now()
	for i := 0; i < 200; i++ {
		before := Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		after := Now()
		k := uint64(ts.Nano())
		// Allow a millisecond for the offset taken at start-up.
		if k+uint64(time.Millisecond) < before || k > after+uint64(time.Millisecond) {
			t.Fatalf("CLOCK_MONOTONIC %d outside [%d, %d]", k, before, after)
		}
		if before < prev || after < before {
			t.Fatalf("Now went back: %d, %d, %d", prev, before, after)
		}
		prev = after
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
