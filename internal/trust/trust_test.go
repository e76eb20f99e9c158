package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// memFS is a file system in memory: each path has a Meta, symbolic links
// also a target.
type memFS struct {
	meta  map[string]Meta
	links map[string]string
}

func (m memFS) Lstat(p string) (Meta, error) {
	if x, ok := m.meta[p]; ok {
		return x, nil
	}
	return Meta{}, &fs.PathError{Op: "lstat", Path: p, Err: syscall.ENOENT}
}

func (m memFS) Readlink(p string) (string, error) {
	if t, ok := m.links[p]; ok {
		return t, nil
	}
	return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
}

// tree is "/etc/cgrules.conf" in a sane system, plus whatever a case
// changes or adds; entries are "path mode uid [-> target]".
func tree(extra ...string) memFS {
	m := memFS{meta: map[string]Meta{}, links: map[string]string{}}
	base := []string{
		"/ d755 0", "/etc d755 0", "/etc/cgrules.conf f644 0",
		"/tmp d1777 0", "/home d755 0", "/home/u d755 1000",
		"/home/u/sub d755 0", "/home/u/sub/r.conf f644 0",
	}
	ino := uint64(1)
	for _, e := range append(base, extra...) {
		f := strings.Fields(e)
		var mode fs.FileMode
		switch f[1][0] {
		case 'd':
			mode = fs.ModeDir
		case 'l':
			mode = fs.ModeSymlink
		}
		var perm uint32
		for _, c := range f[1][1:] {
			perm = perm*8 + uint32(c-'0')
		}
		mode |= fs.FileMode(perm & 0o777)
		if perm&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		var uid uint32
		for _, c := range f[2] {
			uid = uid*10 + uint32(c-'0')
		}
		ino++
		m.meta[f[0]] = Meta{UID: uid, Mode: mode, Dev: 1, Ino: ino}
		if len(f) == 5 && f[3] == "->" {
			m.links[f[0]] = f[4]
		}
	}
	return m
}

func TestPath(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		extra   []string
		want    string // the entry reached; "" when refused
		wantErr string
	}{
		{name: "root-owned path", path: "/etc/cgrules.conf", want: "/etc/cgrules.conf"},
		{name: "cleaned", path: "//etc/./cgrules.conf", want: "/etc/cgrules.conf"},
		{name: "user-owned directory two levels up", path: "/home/u/sub/r.conf",
			wantErr: "directory /home/u is owned by uid 1000, not root"},
		{name: "user-owned directory without write bit", path: "/x/r.conf", extra: []string{"/x d555 1000", "/x/r.conf f644 0"},
			wantErr: "directory /x is owned by uid 1000, not root"},
		{name: "group-writable parent", path: "/etc/d/r.conf", extra: []string{"/etc/d d775 0", "/etc/d/r.conf f644 0"},
			wantErr: "directory /etc/d is writable by group or others (mode 0775) without the sticky bit"},
		{name: "world-writable root", path: "/etc/cgrules.conf", extra: []string{"/ d777 0"},
			wantErr: "directory / is writable by group or others (mode 0777) without the sticky bit"},
		{name: "user-owned root", path: "/etc/cgrules.conf", extra: []string{"/ d755 7"},
			wantErr: "directory / is owned by uid 7, not root"},
		{name: "sticky world-writable directory", path: "/tmp/r.conf", extra: []string{"/tmp/r.conf f644 0"}, want: "/tmp/r.conf"},
		{name: "sticky directory owned by a user", path: "/s/r.conf", extra: []string{"/s d1777 1000", "/s/r.conf f644 0"},
			wantErr: "directory /s is owned by uid 1000, not root"},
		{name: "user's directory inside a sticky one", path: "/tmp/u/r.conf", extra: []string{"/tmp/u d755 1000", "/tmp/u/r.conf f644 0"},
			wantErr: "directory /tmp/u is owned by uid 1000, not root"},
		{name: "absolute symlink into a trusted tree", path: "/etc/l.conf", extra: []string{"/etc/l.conf l777 0 -> /srv/r.conf", "/srv d755 0", "/srv/r.conf f644 0"},
			want: "/srv/r.conf"},
		{name: "relative symlink", path: "/etc/l.conf", extra: []string{"/etc/l.conf l777 0 -> ../srv/./r.conf", "/srv d755 0", "/srv/r.conf f644 0"},
			want: "/srv/r.conf"},
		{name: "symlink into an untrusted tree", path: "/etc/l.conf", extra: []string{"/etc/l.conf l777 0 -> /home/u/sub/r.conf"},
			wantErr: "directory /home/u is owned by uid 1000, not root"},
		{name: "symlink into a world-writable directory", path: "/etc/l.conf", extra: []string{"/etc/l.conf l777 0 -> /w/r", "/w d777 0", "/w/r f644 0"},
			wantErr: "directory /w is writable by group or others (mode 0777) without the sticky bit"},
		{name: "symlinked directory", path: "/etc/d/r.conf", extra: []string{"/etc/d l777 0 -> /srv/d", "/srv d755 0", "/srv/d d755 0", "/srv/d/r.conf f644 0"},
			want: "/srv/d/r.conf"},
		{name: "symlinked directory into an untrusted tree", path: "/etc/d/r.conf", extra: []string{"/etc/d l777 0 -> /home/u/sub"},
			wantErr: "directory /home/u is owned by uid 1000, not root"},
		{name: "chain of symlinks", path: "/etc/a", extra: []string{"/etc/a l777 0 -> b", "/etc/b l777 0 -> /srv/c", "/srv d755 0", "/srv/c l777 0 -> r", "/srv/r f644 0"},
			want: "/srv/r"},
		{name: "user's symlink in a sticky directory", path: "/tmp/l", extra: []string{"/tmp/l l777 1000 -> /etc/cgrules.conf"},
			wantErr: "symbolic link /tmp/l, in directory /tmp that others can write to, is owned by uid 1000, not root"},
		{name: "root's symlink in a sticky directory", path: "/tmp/l", extra: []string{"/tmp/l l777 0 -> /etc/cgrules.conf"},
			want: "/etc/cgrules.conf"},
		{name: "user's symlink in a root directory", path: "/etc/l", extra: []string{"/etc/l l777 1000 -> cgrules.conf"},
			want: "/etc/cgrules.conf"},
		{name: "symlink loop", path: "/etc/a", extra: []string{"/etc/a l777 0 -> b", "/etc/b l777 0 -> a"},
			wantErr: "too many levels of symbolic links at /etc/"},
		{name: "dot-dot after a symlinked directory", path: "/etc/d/../r.conf", extra: []string{"/etc/d l777 0 -> /srv/d", "/srv d755 0", "/srv/d d755 0", "/srv/r.conf f644 0"},
			want: "/srv/r.conf"},
		{name: "file in the way", path: "/etc/cgrules.conf/x", wantErr: "/etc/cgrules.conf is not a directory"},
		{name: "missing", path: "/etc/none", wantErr: "cannot stat /etc/none: no such file or directory"},
		{name: "relative path", path: "etc/cgrules.conf", wantErr: `"etc/cgrules.conf" is not an absolute path`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := tree(tc.extra...)
			m, err := Policy{FS: fsys}.Path(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error starting %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrUntrusted) {
					t.Errorf("%v does not match ErrUntrusted", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if m != fsys.meta[tc.want] {
				t.Errorf("reached %+v, want %s (%+v)", m, tc.want, fsys.meta[tc.want])
			}
		})
	}
}

func TestFile(t *testing.T) {
	for _, tc := range []struct {
		m       Meta
		owner   uint32
		wantErr string
	}{
		{m: Meta{UID: 0, Mode: 0o644}},
		{m: Meta{UID: 0, Mode: 0o400}},
		{m: Meta{UID: 1000, Mode: 0o644}, wantErr: "owned by uid 1000, not root"},
		{m: Meta{UID: 1000, Mode: 0o644}, owner: 1000},
		{m: Meta{UID: 0, Mode: 0o664}, wantErr: "writable by group or others (mode 0664)"},
		{m: Meta{UID: 0, Mode: 0o646}, wantErr: "writable by group or others (mode 0646)"},
	} {
		err := Policy{Owner: tc.owner}.File(tc.m)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: refused: %v", tc.m, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrUntrusted)):
			t.Errorf("%+v: got %v, want %q", tc.m, err, tc.wantErr)
		}
	}
}

// TestCheck: the path must still lead to the opened file.
func TestCheck(t *testing.T) {
	fsys := tree()
	p := Policy{FS: fsys}
	if err := p.Check("/etc/cgrules.conf", fsys.meta["/etc/cgrules.conf"]); err != nil {
		t.Fatal(err)
	}
	other := fsys.meta["/etc/cgrules.conf"]
	other.Ino++
	if err := p.Check("/etc/cgrules.conf", other); err == nil || !strings.Contains(err.Error(), "changed while it was being checked") {
		t.Errorf("swapped file: got %v", err)
	}
	bad := fsys.meta["/etc/cgrules.conf"]
	bad.Mode = 0o666
	if err := p.Check("/etc/cgrules.conf", bad); err == nil || !errors.Is(err, ErrUntrusted) {
		t.Errorf("world-writable file: got %v", err)
	}
}

// TestPathReal walks the real file system: the test's temporary directory,
// trusted as the test's own (run as root or as nobody alike).
func TestPathReal(t *testing.T) {
	dir := t.TempDir()
	p := Policy{Owner: uint32(os.Geteuid())}
	name := filepath.Join(dir, "r.conf")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("r.conf", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(filepath.Join(dir, "l"), MetaOf(fi)); err != nil {
		// The temporary directory's parents (/tmp, /) may be another
		// story on an odd machine: say which.
		t.Fatalf("own file refused: %v", err)
	}
	if err := os.Chmod(dir, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(name, MetaOf(fi)); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), dir) {
		t.Errorf("group-writable directory: got %v", err)
	}
}
