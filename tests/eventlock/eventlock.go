// Package eventlock serialises the tests, in any package of this module,
// that flood the machine with process events, or that fail when someone
// else floods it: a 4 KiB netlink buffer that must overflow exactly once, a
// table of credential changes that two sources must both see. go test runs
// the test binaries of several packages at once (internal/kernel's overflow
// tests beside internal/bpfevents' storms), and several suites may run on
// one machine: a storm in one overflows the other's socket.
//
// Hold takes an exclusive flock(2) on /run/lock/cgre-events.lock for the
// rest of the test. It needs write access to /run/lock; without it (tests
// run unprivileged, where the tests that storm skip anyway) it logs why and
// holds nothing. Test-only.
package eventlock

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Path is the lock file shared by every package's storming tests.
const Path = "/run/lock/cgre-events.lock"

// Hold blocks until no other holder runs, and releases at tb's cleanup.
func Hold(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile(Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		tb.Logf("eventlock: %v: not serialised with other storming tests", err)
		return
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		tb.Logf("eventlock: waiting for another test that storms (%s)", Path)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			tb.Fatalf("eventlock: flock %s: %v", Path, err)
		}
	}
	tb.Cleanup(func() { f.Close() }) // closing the descriptor releases the lock
}
