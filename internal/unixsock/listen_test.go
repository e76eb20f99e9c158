package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// accepting serves ln by writing "hi" to every client, until ln closes.
func accepting(ln *Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
}

func greet(t *testing.T, path string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	b := make([]byte, 2)
	n, _ := c.Read(b)
	return string(b[:n])
}

func TestListenModeOwnerAndRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want a socket with 0600", fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %v, want only the socket (no temporary name left)", entries)
	}
	accepting(ln)
	if got := greet(t, path); got != "hi" {
		t.Errorf("served %q", got)
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a daemon that died: the file stays, nobody listens
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	accepting(ln)
	if got := greet(t, path); got != "hi" {
		t.Errorf("served %q after replacing a stale socket", got)
	}
}

func TestListenLiveSocketIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepting(ln)
	_, err = Listen(path, 0o600, -1, -1)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Listen: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	if got := greet(t, path); got != "hi" {
		t.Errorf("the first listener serves %q after the second's attempt", got)
	}
}

func TestListenLeavesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, 0o600, -1, -1); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Errorf("the regular file was changed: %q", b)
	}
	long := filepath.Join(dir, strings.Repeat("x", 100))
	if _, err := Listen(long, 0o600, -1, -1); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("Listen on a %d-byte path: %v", len(long), err)
	}
}

// TestCloseKeepsAnotherSocket: if another daemon replaced the socket file,
// Close leaves that one alone.
func TestCloseKeepsAnotherSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + ".other", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetUnlinkOnClose(false)
	if err := os.Rename(path+".other", path); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed the other daemon's socket: %v", err)
	}
}

func TestPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		cred, err := PeerCred(c)
		if err == nil && (int(cred.Pid) != os.Getpid() || int(cred.Uid) != os.Geteuid()) {
			err = fmt.Errorf("peer pid %d uid %d, want %d %d", cred.Pid, cred.Uid, os.Getpid(), os.Geteuid())
		}
		got <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-got; err != nil {
		t.Error(err)
	}
}
