package kernel

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now is CLOCK_MONOTONIC in ns: the clock of Event.Timestamp, for
// comparing event times with the caller's. unix.ClockGettime is a real
// system call; the runtime's monotonic clock (behind time.Since) reads the
// same clock through the vDSO, so it is read once and offset from then on.
func Now() uint64 {
	return monoBase + uint64(time.Since(monoStart))
}

var monoBase, monoStart = func() (uint64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}()
