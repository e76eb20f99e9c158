package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
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

// TestServeOutOfDescriptors: with every descriptor of the process taken
// but the one the client's connect uses, the server still accepts it (with
// its spare) and serves it, and takes the spare back once it is done.
func TestServeOutOfDescriptors(t *testing.T) {
	ln, err := Listen(filepath.Join(t.TempDir(), "s.sock"), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := Serve(ln, 2, func(c *net.UnixConn) {
		_, _ = c.Write([]byte("hi"))
		<-release
	}, nil)
	defer srv.Close()
	if !srv.spare.Held() {
		t.Fatal("no spare descriptor")
	}
	fdtest.Exhaust(t, 1)
	c, err := net.Dial("unix", ln.Path())
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "hi" {
		t.Errorf("a client with no descriptor free for the server: %q, %v", b[:n], err)
	}
	if srv.spare.Held() {
		t.Error("served, but the spare is still held: the test did not run the server out of descriptors")
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); !srv.spare.Held(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spare was not taken back after the connection closed")
		}
	}
}

// TestPeerCheck: root only by default; Allowed decides otherwise; a refused
// peer is reported with its uid and pid.
func TestPeerCheck(t *testing.T) {
	ln, err := Listen(filepath.Join(t.TempDir(), "s.sock"), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan *net.UnixConn)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	admit := func(p PeerCheck) bool {
		c, err := net.Dial("unix", ln.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := <-conns
		defer s.Close()
		return p.Admit(s)
	}
	uid, pid := uint32(os.Getuid()), int32(os.Getpid())
	var refused []int64
	report := func(u uint32, p int32) { refused = append(refused, int64(u), int64(p)) }
	if got := admit(PeerCheck{Refused: report}); got != (uid == 0) {
		t.Errorf("default check admits uid %d: %v", uid, got)
	}
	if got := admit(PeerCheck{Allowed: func(u uint32) bool { return u == uid }, Refused: report}); !got {
		t.Error("Allowed said yes, Admit said no")
	}
	refused = nil
	if admit(PeerCheck{Allowed: func(uint32) bool { return false }, Refused: report}) {
		t.Error("Allowed said no, Admit said yes")
	}
	if len(refused) != 2 || refused[0] != int64(uid) || refused[1] != int64(pid) {
		t.Errorf("refusal reported as %v, want uid %d pid %d", refused, uid, pid)
	}
}

// TestServeAcceptErrorsRateLimited: with no descriptor free and the spare
// in use, every accept fails; the server tries again every 100 ms but
// reports once a second, with the count of the failures in between.
func TestServeAcceptErrorsRateLimited(t *testing.T) {
	ln, err := Listen(filepath.Join(t.TempDir(), "s.sock"), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	var reports []string
	srv := Serve(ln, 4, func(c *net.UnixConn) { <-release }, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, err.Error())
	})
	defer srv.Close()
	defer close(release)
	// The client sockets are made before the descriptors run out, and
	// connected after: connect(2) needs no descriptor, while every accept
	// does. (Dialling after Exhaust raced with the server: an accept that
	// ran between two dials took the last free descriptor, and the second
	// dial failed.)
	var clients [2]int
	for i := range clients {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = fd
		defer unix.Close(fd)
	}
	fdtest.Exhaust(t, 0)
	for _, fd := range clients { // the first takes the spare, the second waits
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: ln.Path()}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(reports) < 1 || len(reports) > 2 {
		t.Fatalf("%d reports of failed accepts in 1.5 s, want 1 or 2: %q", len(reports), reports)
	}
	if !strings.Contains(reports[0], "too many open files") {
		t.Errorf("report %q does not say why", reports[0])
	}
	if len(reports) == 2 && !strings.Contains(reports[1], "more failed accepts since the last report") {
		t.Errorf("second report %q does not count the ones left out", reports[1])
	}
}
