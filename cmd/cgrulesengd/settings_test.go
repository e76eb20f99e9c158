package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckSettings: --check-settings accepts files only their owner (root,
// or the test's own user when not root) can write, and a missing one;
// refuses with status 6 a file or directory others can write, naming it
// and the fix; a FIFO is an error (status 1), opened without blocking.
func TestCheckSettings(t *testing.T) {
	dir := t.TempDir() // mode 0700, the test's own: trusted, as is /tmp (sticky)
	etc := filepath.Join(dir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(etc, "cgred")
	if err := os.WriteFile(file, []byte("OPTIONS=-v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(etc, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(files ...string) (int, string) {
		var stderr bytes.Buffer
		rc := runCheckSettings(&stderr, files)
		return rc, stderr.String()
	}
	if rc, out := check(file, filepath.Join(etc, "missing")); rc != 0 || out != "" {
		t.Errorf("trusted and missing files: status %d, stderr %q", rc, out)
	}
	for _, c := range []struct {
		name string
		mode os.FileMode
		on   string
		want string
	}{
		{"world-writable file", 0o666, file, "settings file " + file + " refused: writable by group or others (mode 0666)"},
		{"group-writable file", 0o620, file, "refused: writable by group or others (mode 0620)"},
		{"directory others can write", 0o777, etc, "refused: directory " + etc + " is writable by group or others (mode 0777) without the sticky bit"},
	} {
		orig := os.FileMode(0o644)
		if c.on == etc {
			orig = 0o755
		}
		if err := os.Chmod(c.on, c.mode); err != nil {
			t.Fatal(err)
		}
		rc, out := check(filepath.Join(etc, "missing"), file)
		if rc != exitUntrustedSettings || !strings.Contains(out, c.want) ||
			!strings.Contains(out, "chown root "+file+"; chmod go-w "+file) {
			t.Errorf("%s: status %d, want %d; stderr %q, want %q", c.name, rc, exitUntrustedSettings, out, c.want)
		}
		if err := os.Chmod(c.on, orig); err != nil {
			t.Fatal(err)
		}
	}
	if rc, out := check(fifo); rc != 1 || !strings.Contains(out, "not a regular file") {
		t.Errorf("a FIFO: status %d, stderr %q", rc, out)
	}
	// Through realMain, as the unit runs it.
	var stdout, stderr bytes.Buffer
	if rc := realMain([]string{"--check-settings=" + file}, &stdout, &stderr); rc != 0 {
		t.Errorf("realMain --check-settings: status %d, stderr %q", rc, stderr.String())
	}
}
