package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
)

// fakeProcRoot is a /proc whose mountinfo lists no cgroup hierarchy: the
// daemon then stops with a fatal error after its log is set up, without
// touching the machine.
func fakeProcRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	line := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
	if err := os.WriteFile(filepath.Join(root, "self", "mountinfo"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestFatalErrorReachesLog: the error that ends the daemon is in its log
// file (issue #13: the file was closed before the error was logged) and on
// standard error, and in the log on standard output with -f -.
func TestFatalErrorReachesLog(t *testing.T) {
	const fatal = "no cgroup hierarchy is mounted"
	args := func(logfile string) []string {
		return []string{"-n", "-f", logfile, "--proc-root", fakeProcRoot(t), "--sched-slice", "0", "-c", "/nonexistent/cgrules.conf"}
	}
	t.Run("file", func(t *testing.T) {
		logfile := filepath.Join(t.TempDir(), "d.log")
		var stdout, stderr bytes.Buffer
		if code := realMain(args(logfile), &stdout, &stderr); code != 1 {
			t.Fatalf("exit status %d, want 1; stderr %q", code, stderr.String())
		}
		data, err := os.ReadFile(logfile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "level=error") || !strings.Contains(string(data), fatal) {
			t.Errorf("log file lacks the fatal error %q:\n%s", fatal, data)
		}
		if !strings.Contains(stderr.String(), fatal) || strings.Contains(stderr.String(), "Failed to write to log") {
			t.Errorf("stderr %q, want the fatal error alone", stderr.String())
		}
	})
	t.Run("stdout", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := realMain(args("-"), &stdout, &stderr); code != 1 {
			t.Fatalf("exit status %d, want 1", code)
		}
		if !strings.Contains(stdout.String(), "level=error") || !strings.Contains(stdout.String(), fatal) {
			t.Errorf("stdout log lacks the fatal error %q:\n%s", fatal, stdout.String())
		}
	})
}

// TestOpenLog: what the log file may be. The test's own uid stands in for
// root (its files are its own, as root's are the daemon's).
func TestOpenLog(t *testing.T) {
	own := &trust.Policy{Owner: uint32(os.Geteuid())}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the log path
		pol     *trust.Policy
		wantErr string // "" = opened
	}{
		{name: "new file", pol: own, setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "new.log") }},
		{name: "existing file", pol: own, setup: func(t *testing.T, dir string) string {
			return write(t, filepath.Join(dir, "old.log"), 0o640)
		}},
		{name: "symlink to a file", setup: func(t *testing.T, dir string) string {
			target := write(t, filepath.Join(dir, "target"), 0o640)
			link := filepath.Join(dir, "x.log")
			must(t, os.Symlink(target, link))
			return link
		}, wantErr: "it is a symbolic link"},
		{name: "FIFO", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo.log")
			must(t, syscall.Mkfifo(p, 0o640))
			return p
		}, wantErr: "not a regular file (a FIFO or a device)"},
		{name: "FIFO with a reader", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo.log")
			must(t, syscall.Mkfifo(p, 0o640))
			r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			must(t, err)
			t.Cleanup(func() { r.Close() })
			return p
		}, wantErr: "not a regular file (p---------)"},
		{name: "directory", setup: func(t *testing.T, dir string) string { return dir }, wantErr: "is a directory"},
		{name: "hard link", setup: func(t *testing.T, dir string) string {
			target := write(t, filepath.Join(dir, "target"), 0o640)
			must(t, os.Link(target, filepath.Join(dir, "x.log")))
			return filepath.Join(dir, "x.log")
		}, wantErr: "refused: it has 2 hard links"},
		{name: "group-writable file", pol: own, setup: func(t *testing.T, dir string) string {
			return write(t, filepath.Join(dir, "x.log"), 0o660)
		}, wantErr: "refused, not trusted: writable by group or others (mode 0660)"},
		{name: "group-writable file, not checked", setup: func(t *testing.T, dir string) string {
			return write(t, filepath.Join(dir, "x.log"), 0o660)
		}},
		{name: "world-writable directory", pol: own, setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "w")
			must(t, os.Mkdir(d, 0o777))
			must(t, os.Chmod(d, 0o777))
			return filepath.Join(d, "x.log")
		}, wantErr: "is writable by group or others (mode 0777) without the sticky bit"},
		{name: "sticky directory", pol: own, setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "s")
			must(t, os.Mkdir(d, 0o777))
			must(t, os.Chmod(d, 0o777|os.ModeSticky))
			return filepath.Join(d, "x.log")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t, t.TempDir())
			done := make(chan struct{})
			var f *os.File
			var err error
			go func() {
				f, err = openLog(p, tc.pol)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("openLog(%s) blocked", p)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("line\n"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("log %s: %v %v", p, fi, err)
			}
		})
	}
}

// TestLogReopen: after the log file is renamed away, Reopen continues the
// log in a new file of the same name (logrotate without copytruncate).
func TestLogReopen(t *testing.T) {
	dir := t.TempDir()
	logfile := filepath.Join(dir, "d.log")
	o := defaultOptions()
	o.logfile = logfile
	log, out, err := newLogger(&o, true, nil, nil, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	log.Error("before rotation")
	must(t, os.Rename(logfile, logfile+".1"))
	log.Error("renamed, not reopened")
	if err := out.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Error("after rotation")
	old, _ := os.ReadFile(logfile + ".1")
	cur, _ := os.ReadFile(logfile)
	if !strings.Contains(string(old), "before rotation") || !strings.Contains(string(old), "renamed, not reopened") || strings.Contains(string(old), "after rotation") {
		t.Errorf("rotated file:\n%s", old)
	}
	if !strings.Contains(string(cur), "after rotation") || strings.Contains(string(cur), "before rotation") {
		t.Errorf("new file:\n%s", cur)
	}
	// A failed reopen keeps the old file.
	must(t, os.Remove(logfile))
	must(t, os.Mkdir(logfile, 0o755))
	if err := out.Reopen(); err == nil {
		t.Fatal("reopening onto a directory succeeded")
	}
	log.Error("still here")
	if cur, _ := os.ReadFile(logfile + ".1"); strings.Contains(string(cur), "still here") {
		t.Errorf("log went back to the rotated file")
	}
	if err := out.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Errorf("close: %v", err)
	}
}

func write(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	must(t, os.WriteFile(p, []byte("x\n"), mode))
	must(t, os.Chmod(p, mode))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLogLinesBounded: no log line grows with what it quotes (issue #13: a
// 10 MB destination gave lines of 31 MB).
func TestLogLinesBounded(t *testing.T) {
	o := defaultOptions()
	o.logfile = "-"
	var stdout bytes.Buffer
	log, out, err := newLogger(&o, true, &stdout, nil, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	big := strings.Repeat("é", 1<<20)
	log.WithField("dest", big).WithField("pid", 7).WithError(errors.New(big)).Error(big)
	line := stdout.String()
	if n := len(line); n > 4*maxLogText+1024 {
		t.Fatalf("log line of %d bytes", n)
	}
	if strings.Count(line, "bytes cut]") != 3 || !strings.Contains(line, "pid=7") {
		t.Errorf("line not cut as expected: %.300s", line)
	}
	stdout.Reset()
	log.WithField("dest", "/a/b").Error("short")
	if strings.Contains(stdout.String(), "cut]") || !strings.Contains(stdout.String(), "dest=/a/b") {
		t.Errorf("short line changed: %s", stdout.String())
	}
}
