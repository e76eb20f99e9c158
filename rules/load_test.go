package rules

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDropinOrder(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "cgrules.conf")
	d := filepath.Join(dir, "cgrules.d")
	writeFile(t, main, "alice cpu main\n")
	writeFile(t, filepath.Join(d, "b.conf"), "* cpu b\n")
	writeFile(t, filepath.Join(d, "a.conf"), "bob cpu a\n% memory a2\n")
	writeFile(t, filepath.Join(d, "10-first.conf"), "carol cpu 10\n")
	writeFile(t, filepath.Join(d, "B.conf"), "carol cpu upper\n") // "B" < "a" in byte order
	writeFile(t, filepath.Join(d, "c.conf~"), "bogus\n")
	writeFile(t, filepath.Join(d, "d.conf.bak"), "bogus\n")
	writeFile(t, filepath.Join(d, "e.txt"), "bogus\n")
	writeFile(t, filepath.Join(d, ".hidden.conf"), "bogus\n")
	writeFile(t, filepath.Join(dir, "elsewhere", "real"), "bob cpu linked\n")
	if err := os.Mkdir(filepath.Join(d, "sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere", "real"), filepath.Join(d, "link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(d, "dangling.conf")); err != nil {
		t.Fatal(err)
	}
	l, ds, err := Load(main, d, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Rules() {
		got = append(got, filepath.Base(r.File)+":"+r.Targets[0].Dest)
		if r.Index != len(got)-1 {
			t.Errorf("rule %q has Index %d, want %d", r.Text, r.Index, len(got)-1)
		}
	}
	want := []string{"cgrules.conf:main", "10-first.conf:10", "B.conf:upper", "a.conf:a", "b.conf:b", "link.conf:linked"}
	if !equalStrings(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	wantDiags := []string{
		filepath.Join(d, "dangling.conf") + ": warning: skipped: no such file or directory",
		filepath.Join(d, "sub.conf") + ": warning: skipped: not a regular file",
	}
	if !equalStrings(diagStrings(ds), wantDiags) {
		t.Errorf("diagnostics %q, want %q", diagStrings(ds), wantDiags)
	}
	// First match wins across files: carol's rule in 10-first.conf.
	if r := l.Match(&Task{UID: 1002, GID: 100}); r == nil || r.Targets[0].Dest != "10" {
		t.Errorf("carol matched %v", r)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	writeFile(t, good, "alice cpu a\n")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	writeFile(t, notDir, "")
	tests := []struct {
		name       string
		main, dir  string
		files      map[string]string // extra files under dir
		wantRules  int
		wantDiags  []string
		wantErr    bool
		wantNotExi bool
	}{
		{name: "missing directory is fine", main: good, dir: filepath.Join(dir, "none"), wantRules: 1},
		{name: "no directory", main: good, dir: "", wantRules: 1},
		{name: "missing main file", main: filepath.Join(dir, "none.conf"), dir: filepath.Join(dir, "none"),
			wantErr: true, wantNotExi: true,
			wantDiags: []string{filepath.Join(dir, "none.conf") + ": cannot open: no such file or directory"}},
		{name: "main file is a directory", main: dir, wantErr: true,
			wantDiags: []string{dir + ": not a regular file (d---------)"}},
		{name: "main file is a FIFO", main: fifo, wantErr: true,
			wantDiags: []string{fifo + ": not a regular file (p---------)"}},
		{name: "directory is a file", main: good, dir: notDir, wantErr: true,
			wantDiags: []string{notDir + ": cannot read directory: not a directory"}},
		{name: "% at the top of a drop-in continues nothing", main: good, dir: filepath.Join(dir, "d1"),
			files:   map[string]string{"x.conf": "% memory b\n"},
			wantErr: true, wantDiags: []string{filepath.Join(dir, "d1", "x.conf") + `:1: "%" line with no rule above it in this file: "% memory b"`}},
		{name: "problems of every file are reported", main: good, dir: filepath.Join(dir, "d2"),
			files:   map[string]string{"a.conf": "peter cpu a\n", "b.conf": "alice cpu\n", "c.conf": "bob cpu a bogus\n"},
			wantErr: true, wantDiags: []string{
				filepath.Join(dir, "d2", "a.conf") + `:1: warning: user "peter" not found, rule skipped`,
				filepath.Join(dir, "d2", "b.conf") + `:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`,
				filepath.Join(dir, "d2", "c.conf") + `:1: unknown option "bogus" (known: ignore, ignore_rt)`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, data := range tc.files {
				writeFile(t, filepath.Join(tc.dir, name), data)
			}
			l, ds, err := Load(tc.main, tc.dir, testOptions())
			if !equalStrings(diagStrings(ds), append([]string{}, tc.wantDiags...)) {
				t.Errorf("diagnostics\n got %q\nwant %q", diagStrings(ds), tc.wantDiags)
			}
			if tc.wantErr {
				if err == nil || l != nil {
					t.Fatalf("Load succeeded")
				}
				if tc.wantNotExi && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v is not fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Len() != tc.wantRules {
				t.Errorf("%d rules, want %d", l.Len(), tc.wantRules)
			}
		})
	}
}

// ownTrust is the trust check as the daemon applies it, except that the
// test's own uid counts as root: the test's temporary files are its own
// (root's when run as root, nobody's under test-unprivileged).
func ownTrust() Options {
	opt := testOptions()
	opt.CheckTrust = true
	opt.trust = trust.Policy{Owner: uint32(os.Geteuid())}
	return opt
}

// TestTrust checks the trust check on real files, whose modes the test can
// set as any user; ownership by another user needs root (TestTrustReal) and
// is covered in package trust with a file system in memory.
func TestTrust(t *testing.T) {
	tests := []struct {
		name    string
		file    string                  // the rules file, relative to the test's directory
		setup   func(base string) error // after the file exists
		wantErr string                  // "" = trusted; BASE stands for the test's directory
	}{
		{name: "trusted file", file: "etc/r.conf"},
		{name: "read-only file", file: "etc/r.conf", setup: func(b string) error { return os.Chmod(b+"/etc/r.conf", 0o400) }},
		{name: "group-writable file", file: "etc/r.conf", setup: func(b string) error { return os.Chmod(b+"/etc/r.conf", 0o664) },
			wantErr: "untrusted rules file: writable by group or others (mode 0664)"},
		{name: "world-writable file", file: "etc/r.conf", setup: func(b string) error { return os.Chmod(b+"/etc/r.conf", 0o646) },
			wantErr: "untrusted rules file: writable by group or others (mode 0646)"},
		{name: "group-writable directory", file: "etc/r.conf", setup: func(b string) error { return os.Chmod(b+"/etc", 0o775) },
			wantErr: "untrusted rules file: directory BASE/etc is writable by group or others (mode 0775) without the sticky bit"},
		{name: "sticky world-writable directory", file: "etc/r.conf", setup: func(b string) error { return os.Chmod(b+"/etc", 0o777|fs.ModeSticky) }},
		{name: "world-writable directory two levels up", file: "u/sub/r.conf", setup: func(b string) error { return os.Chmod(b+"/u", 0o777) },
			wantErr: "untrusted rules file: directory BASE/u is writable by group or others (mode 0777) without the sticky bit"},
		{name: "symlink into an untrusted directory", file: "etc/r.conf", setup: func(b string) error {
			if err := os.MkdirAll(b+"/w", 0o777); err != nil {
				return err
			}
			if err := os.Chmod(b+"/w", 0o777); err != nil {
				return err
			}
			if err := os.Rename(b+"/etc/r.conf", b+"/w/r"); err != nil {
				return err
			}
			return os.Symlink("../w/r", b+"/etc/r.conf")
		}, wantErr: "untrusted rules file: directory BASE/w is writable by group or others (mode 0777) without the sticky bit"},
		{name: "symlink into a trusted directory", file: "etc/r.conf", setup: func(b string) error {
			if err := os.MkdirAll(b+"/real", 0o755); err != nil {
				return err
			}
			if err := os.Rename(b+"/etc/r.conf", b+"/real/r"); err != nil {
				return err
			}
			return os.Symlink(b+"/real/r", b+"/etc/r.conf")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(base, tc.file)
			writeFile(t, name, "alice cpu a\n")
			if tc.setup != nil {
				if err := tc.setup(base); err != nil {
					t.Fatal(err)
				}
			}
			_, ds, err := Load(name, "", ownTrust())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			want := name + ": " + strings.ReplaceAll(tc.wantErr, "BASE", base)
			if err == nil || len(ds) != 1 || ds[0].String() != want {
				t.Fatalf("got %v / %q, want %q", err, diagStrings(ds), want)
			}
			if !errors.Is(err, errUntrusted) || !errors.Is(err, trust.ErrUntrusted) {
				t.Errorf("error does not wrap errUntrusted and trust.ErrUntrusted")
			}
		})
	}
}

// TestTrustNotChecked: without CheckTrust, ownership does not matter (the
// daemon only checks when it runs as root).
func TestTrustNotChecked(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "r.conf")
	writeFile(t, name, "alice cpu a\n")
	if err := os.Chmod(name, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(name, "", testOptions()); err != nil {
		t.Fatal(err)
	}
}

// TestTrustReal runs the check against the real file system; only root can
// create root-owned files.
func TestTrustReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create root-owned files; TestTrust and package trust cover the logic")
	}
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "r.conf")
	writeFile(t, name, "alice cpu a\n")
	opt := testOptions()
	opt.CheckTrust = true
	if _, _, err := Load(name, "", opt); err != nil {
		t.Fatalf("trusted file refused: %v", err)
	}
	if err := os.Chmod(name, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(name, "", opt); !errors.Is(err, errUntrusted) {
		t.Fatalf("world-writable file accepted: %v", err)
	}
	if err := os.Chmod(name, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(name, "", opt); !errors.Is(err, errUntrusted) {
		t.Fatalf("file in a world-writable dir accepted: %v", err)
	}
	if err := os.Chmod(dir, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(name, "", opt); err != nil {
		t.Fatalf("file in a sticky dir refused: %v", err)
	}
	if err := os.Chown(name, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(name, "", opt); !errors.Is(err, errUntrusted) {
		t.Fatalf("file owned by nobody accepted: %v", err)
	}

	// A root-owned file in a root-owned directory below a directory that a
	// user owns (issue #13: only the file's own directory was checked): the
	// user can rename sub away and put a directory of their own there. Its
	// drop-ins are refused the same way.
	udir := filepath.Join(t.TempDir(), "udir")
	sub := filepath.Join(udir, "sub")
	deep := filepath.Join(sub, "r.conf")
	writeFile(t, deep, "alice cpu a\n")
	writeFile(t, filepath.Join(sub, "d", "x.conf"), "bob cpu b\n")
	if _, _, err := Load(deep, filepath.Join(sub, "d"), opt); err != nil {
		t.Fatalf("trusted tree refused: %v", err)
	}
	if err := os.Chown(udir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, ds, err := Load(deep, filepath.Join(sub, "d"), opt)
	want := []string{
		deep + ": untrusted rules file: directory " + udir + " is owned by uid 65534, not root",
		filepath.Join(sub, "d", "x.conf") + ": untrusted rules file: directory " + udir + " is owned by uid 65534, not root",
	}
	if !errors.Is(err, errUntrusted) || !equalStrings(diagStrings(ds), want) {
		t.Fatalf("file below a user's directory: got %v / %q, want %q", err, diagStrings(ds), want)
	}
}
