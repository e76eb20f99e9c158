// Package fdtest runs a test out of file descriptors, for real: the tests
// of the packages that must cope with EMFILE (cgroupfs, proc, fdreserve,
// unixsock, metrics) use it, as mdlayher/netlink's tests use nltest. It is
// imported by tests only.
//
// Exhaust changes the process's open-file limit, which every goroutine
// shares: tests that call it must not run in parallel with others.
package fdtest

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Exhaust lowers the soft open-file limit to room descriptors above the
// highest one open now, and fills every free number below the new limit
// but room with descriptors on /dev/null (the kernel hands out the lowest
// free number, so holes below the highest would otherwise be free too).
// So exactly room more descriptors can be opened. Cleanup closes them and
// restores the limit.
func Exhaust(t testing.TB, room int) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	var filled []int
	t.Cleanup(func() {
		for _, fd := range filled {
			_ = unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Errorf("restoring the open-file limit: %v", err)
		}
	})
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd > highest {
			_ = unix.Close(fd)
			break
		}
		filled = append(filled, fd)
	}
	low := lim
	low.Cur = uint64(highest + 1 + room)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
}
