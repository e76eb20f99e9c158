package syscount

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCountsOwnCalls: 1,000 getppid calls on a locked thread count 1,000
// and a few more (the counter's own reads).
func TestCountsOwnCalls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (perf_event_open of a tracepoint)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := Thread(0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.Count()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		unix.Getppid()
	}
	after, err := c.Count()
	if err != nil {
		t.Fatal(err)
	}
	if n := after - before; n < 1000 || n > 1010 {
		t.Errorf("counted %d system calls for 1,000 getppid", n)
	}
}

// TestFilter: a filter on the system call number counts only those calls.
func TestFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (perf_event_open of a tracepoint)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := ThreadFilter(0, false, fmt.Sprintf("id == %d", unix.SYS_GETPPID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 100; i++ {
		unix.Getppid()
		unix.Getpid()
	}
	if n, err := c.Count(); err != nil || n != 100 {
		t.Errorf("counted %d getppid calls (%v), want 100", n, err)
	}
}

// TestReturnsOwnCalls: ThreadReturns counts returns with a filter on the
// return value: 1,000 getppid return our parent's pid, and the counter's
// own reads (read(2) of 8 bytes) return 8.
func TestReturnsOwnCalls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (perf_event_open of a tracepoint)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := ThreadReturns(0, false, fmt.Sprintf("id == %d && ret == %d", unix.SYS_GETPPID, os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 1000; i++ {
		unix.Getppid()
	}
	unix.Getpid()
	n, err := c.Count()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Errorf("counted %d returns of getppid, want 1,000", n)
	}
}
