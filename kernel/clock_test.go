package kernel

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestNow: Now reads CLOCK_MONOTONIC, the clock of event timestamps,
// without going backwards.
func TestNow(t *testing.T) {
	var ts unix.Timespec
	prev := Now()
	for range 1000 {
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		now := Now()
		if now < prev {
			t.Fatalf("Now went back: %d after %d", now, prev)
		}
		prev = now
		// The runtime's clock and the system call read the same clock: the
		// offset taken at start-up holds to within scheduling noise.
		if d := int64(now) - ts.Nano(); d < -int64(1e6) || d > int64(50e6) {
			t.Fatalf("Now = %d, CLOCK_MONOTONIC = %d: %d ns apart", now, ts.Nano(), d)
		}
	}
}
