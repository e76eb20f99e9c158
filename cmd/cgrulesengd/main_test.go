package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRaiseOpenFileLimit: the soft open-file limit ends at the hard one.
func TestRaiseOpenFileLimit(t *testing.T) {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
	if orig.Max < 512 {
		t.Skipf("hard open-file limit %d: too low to lower the soft one for the test", orig.Max)
	}
	low := orig
	low.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if err := raiseOpenFileLimit(); err != nil {
		t.Fatal(err)
	}
	var got unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &got); err != nil {
		t.Fatal(err)
	}
	if got.Cur != orig.Max || got.Max != orig.Max {
		t.Errorf("limit %d/%d after raising, want %d/%d", got.Cur, got.Max, orig.Max, orig.Max)
	}
}
