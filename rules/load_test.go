package rules

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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

func TestTrust(t *testing.T) {
	const (
		rootFile = 0o644
		rootDir  = 0o755 | fs.ModeDir
	)
	tests := []struct {
		name     string
		file     fileMeta
		dir      fileMeta
		wantErr  string // "" = trusted
		symlinks bool   // the file is a symlink into "real/", whose meta is realDir
		realDir  fileMeta
	}{
		{name: "root file in root dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, rootDir}},
		{name: "read-only root file", file: fileMeta{0, 0o400}, dir: fileMeta{0, rootDir}},
		{name: "file owned by a user", file: fileMeta{1000, rootFile}, dir: fileMeta{0, rootDir},
			wantErr: "untrusted rules file: owned by uid 1000, not root"},
		{name: "group-writable file", file: fileMeta{0, 0o664}, dir: fileMeta{0, rootDir},
			wantErr: "untrusted rules file: writable by group or others (mode 0664)"},
		{name: "world-writable file", file: fileMeta{0, 0o646}, dir: fileMeta{0, rootDir},
			wantErr: "untrusted rules file: writable by group or others (mode 0646)"},
		{name: "dir owned by a user", file: fileMeta{0, rootFile}, dir: fileMeta{1000, 0o755 | fs.ModeDir},
			wantErr: "untrusted rules file: its directory DIR is owned by uid 1000, not root"},
		{name: "dir owned by a user without write bit", file: fileMeta{0, rootFile}, dir: fileMeta{1000, 0o555 | fs.ModeDir},
			wantErr: "untrusted rules file: its directory DIR is owned by uid 1000, not root"},
		{name: "group-writable dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, 0o775 | fs.ModeDir},
			wantErr: "untrusted rules file: its directory DIR is writable by group or others (mode 0775) without the sticky bit"},
		{name: "world-writable dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, 0o777 | fs.ModeDir},
			wantErr: "untrusted rules file: its directory DIR is writable by group or others (mode 0777) without the sticky bit"},
		{name: "sticky world-writable dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, 0o777 | fs.ModeDir | fs.ModeSticky}},
		{name: "sticky dir owned by a user", file: fileMeta{0, rootFile}, dir: fileMeta{1000, 0o1777 | fs.ModeDir | fs.ModeSticky},
			wantErr: "untrusted rules file: its directory DIR is owned by uid 1000, not root"},
		{name: "symlink into an untrusted dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, rootDir}, symlinks: true,
			realDir: fileMeta{0, 0o777 | fs.ModeDir}, wantErr: "untrusted rules file: its directory REAL is writable by group or others (mode 0777) without the sticky bit"},
		{name: "symlink into a trusted dir", file: fileMeta{0, rootFile}, dir: fileMeta{0, rootDir}, symlinks: true,
			realDir: fileMeta{0, rootDir}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, "etc")
			real := filepath.Join(base, "real")
			name := filepath.Join(dir, "cgrules.conf")
			metas := map[string]fileMeta{dir: tc.dir, name: tc.file}
			if tc.symlinks {
				writeFile(t, filepath.Join(real, "rules"), "alice cpu a\n")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(real, "rules"), name); err != nil {
					t.Fatal(err)
				}
				metas[real] = tc.realDir
			} else {
				writeFile(t, name, "alice cpu a\n")
			}
			opt := testOptions()
			opt.CheckTrust = true
			opt.stat = func(p string) (fileMeta, error) {
				if m, ok := metas[p]; ok {
					return m, nil
				}
				t.Errorf("unexpected stat of %s", p)
				return fileMeta{}, fs.ErrNotExist
			}
			_, ds, err := Load(name, "", opt)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			want := name + ": " + strings.NewReplacer("DIR", dir, "REAL", real).Replace(tc.wantErr)
			if err == nil || len(ds) != 1 || ds[0].String() != want {
				t.Fatalf("got %v / %q, want %q", err, diagStrings(ds), want)
			}
			if !errors.Is(err, errUntrusted) {
				t.Errorf("error does not wrap errUntrusted")
			}
		})
	}
}

// TestTrustNotChecked: without CheckTrust, ownership does not matter (the
// daemon only checks when it runs as root).
func TestTrustNotChecked(t *testing.T) {
	name := filepath.Join(t.TempDir(), "r.conf")
	writeFile(t, name, "alice cpu a\n")
	if err := os.Chmod(name, 0o666); err != nil {
		t.Fatal(err)
	}
	opt := testOptions()
	opt.stat = func(string) (fileMeta, error) { return fileMeta{uid: 1000, mode: 0o666}, nil }
	if _, _, err := Load(name, "", opt); err != nil {
		t.Fatal(err)
	}
}

// TestTrustReal runs the check against the real file system; only root can
// create root-owned files.
func TestTrustReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create root-owned files; TestTrust covers the logic with an injected stat")
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
}
