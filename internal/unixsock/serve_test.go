package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeBoundAndClose: at most max connections are handled at once, and
// Close ends the ones being handled, waits for them and removes the file.
func TestServeBoundAndClose(t *testing.T) {
	ln, err := Listen(filepath.Join(t.TempDir(), "s.sock"), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	var active, peak atomic.Int32
	srv := Serve(ln, 2, func(c *net.UnixConn) {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		var b [1]byte
		_, _ = c.Read(b[:]) // until the client or Close ends it
		active.Add(-1)
	}, nil)
	for i := 0; i < 5; i++ {
		c, err := net.Dial("unix", ln.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if p := peak.Load(); p != 2 {
		t.Errorf("%d connections handled at once, want the bound 2", p)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the connections being handled")
	}
	if n := active.Load(); n != 0 {
		t.Errorf("%d handlers still running after Close", n)
	}
	if _, err := os.Lstat(ln.Path()); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
