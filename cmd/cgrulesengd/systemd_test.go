package main

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// notifySocket listens where NOTIFY_SOCKET points for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func nextMessage(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestSDNotifierSequence(t *testing.T) {
	c := notifySocket(t)
	s := newSDNotifier(nil)
	if !underServiceManager() {
		t.Fatal("underServiceManager() false with NOTIFY_SOCKET set")
	}
	s.ready(classify.New(classify.Config{}), 3)
	if got, want := nextMessage(t, c), "READY=1\nSTATUS=3 rules loaded, 0 tasks moved, 0 overflows repaired (0 rescans)"; got != want {
		t.Errorf("ready: got %q, want %q", got, want)
	}

	before := kernel.Now() / 1000
	s.reloading()
	msg := nextMessage(t, c)
	after := kernel.Now() / 1000
	usec, ok := strings.CutPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("reloading: got %q", msg)
	}
	if n, err := strconv.ParseUint(usec, 10, 64); err != nil || n < before || n > after {
		t.Errorf("MONOTONIC_USEC=%s, want a CLOCK_MONOTONIC time in µs between %d and %d", usec, before, after)
	}
	s.reloaded(4, nil)
	if got := nextMessage(t, c); !strings.HasPrefix(got, "READY=1\nSTATUS=4 rules loaded,") {
		t.Errorf("reloaded: got %q", got)
	}
	s.reloading()
	_ = nextMessage(t, c)
	s.reloaded(4, errors.New("x"))
	if got := nextMessage(t, c); !strings.HasPrefix(got, "READY=1\nSTATUS=reload failed, previous rules kept: 4 rules loaded,") {
		t.Errorf("failed reload: got %q", got)
	}
	s.stopping()
	if got := nextMessage(t, c); !strings.HasPrefix(got, "STOPPING=1") {
		t.Errorf("stopping: got %q", got)
	}
	s.failed(errors.New("loading rules: a.conf:3: bad\nb.conf:1: worse"))
	if got, want := nextMessage(t, c), "STATUS=failed: loading rules: a.conf:3: bad; b.conf:1: worse"; got != want {
		t.Errorf("failed: got %q, want %q", got, want)
	}
}

// Without NOTIFY_SOCKET nothing is sent and nothing fails, also before the
// engine exists (a start-up failure) and on a nil notifier.
func TestSDNotifierOff(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	s := newSDNotifier(nil)
	s.reloading()
	s.reloaded(1, nil)
	s.ready(classify.New(classify.Config{}), 1)
	s.stopping()
	s.failed(errors.New("x"))
	var none *sdNotifier
	none.reloading()
	none.reloaded(1, nil)
	none.stopping()
	none.failed(errors.New("x"))
	if underServiceManager() {
		t.Error("underServiceManager() true without NOTIFY_SOCKET")
	}
}
