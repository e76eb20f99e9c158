package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUntrusted is matched (errors.Is) by every refusal.
var ErrUntrusted = errors.New("untrusted")

// refusal says why a path is not trusted; its text is the reason alone, so
// that callers can put their own subject in front ("untrusted rules file:").
type refusal struct {
	msg   string
	cause error
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrUntrusted }
func (r *refusal) Unwrap() error        { return r.cause }

func refuse(cause error, format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...), cause: cause}
}

// Meta is what the check needs to know about one file system entry.
type Meta struct {
	UID      uint32
	Mode     fs.FileMode
	Dev, Ino uint64
}

// MetaOf takes the Meta of a stat result (from os.Stat, os.Lstat or
// (*os.File).Stat).
func MetaOf(fi fs.FileInfo) Meta {
	m := Meta{Mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.UID, m.Dev, m.Ino = st.Uid, uint64(st.Dev), st.Ino
	}
	return m
}

// FS is the file system a Policy looks at.
type FS interface {
	// Lstat describes path itself, not what a symbolic link points to.
	Lstat(path string) (Meta, error)
	Readlink(path string) (string, error)
}

type osFS struct{}

func (osFS) Lstat(path string) (Meta, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Meta{}, err
	}
	return MetaOf(fi), nil
}

func (osFS) Readlink(path string) (string, error) { return os.Readlink(path) }

// Policy says whom to trust and where to look. The zero value trusts root
// alone, on the real file system.
type Policy struct {
	// Owner is trusted besides root (0: root alone). A daemon that does
	// not run as root may trust its own uid; tests do.
	Owner uint32
	// FS replaces the real file system (tests).
	FS FS
}

func (p Policy) fsys() FS {
	if p.FS == nil {
		return osFS{}
	}
	return p.FS
}

func (p Policy) trusted(uid uint32) bool { return uid == 0 || uid == p.Owner }

// maxLinks bounds symbolic link resolution, as the kernel does (ELOOP).
const maxLinks = 40

// Check checks the file opened as name, whose descriptor's stat is opened:
// every directory on its path (Path), that the path still leads to that
// file (it was not swapped between the open and the check), and the file
// itself (File). Opening first and checking the descriptor means that what
// is checked is what is read or written.
func (p Policy) Check(name string, opened Meta) error {
	abs, err := filepath.Abs(name)
	if err != nil {
		return refuse(err, "cannot make %s absolute: %v", name, err)
	}
	m, err := p.Path(abs)
	if err != nil {
		return err
	}
	if m.Dev != opened.Dev || m.Ino != opened.Ino {
		return refuse(nil, "%s changed while it was being checked", name)
	}
	return p.File(opened)
}

// File checks a file itself: owned by a trusted user (root) and not
// writable by group or others.
func (p Policy) File(m Meta) error {
	switch {
	case !p.trusted(m.UID):
		return refuse(nil, "owned by uid %d, not root", m.UID)
	case m.Mode.Perm()&0o022 != 0:
		return refuse(nil, "writable by group or others (mode %04o)", m.Mode.Perm())
	}
	return nil
}

// Path walks the absolute path name from "/", component by component,
// following symbolic links as the kernel would, and checks every directory
// it goes through: owned by a trusted user (root), and not writable by group
// or others unless sticky. In a sticky directory writable by others, a
// symbolic link must be owned by a trusted user too (its owner could replace
// it). Path returns the Meta of the entry name finally leads to, which it
// does not check (File does).
//
// A directory owned by another user is refused even without its write bit,
// since its owner can chmod it. Checking the whole path matters because
// whoever may replace any directory on it may substitute the file.
func (p Policy) Path(name string) (Meta, error) {
	if !filepath.IsAbs(name) {
		return Meta{}, refuse(nil, "%q is not an absolute path", name)
	}
	fsys := p.fsys()
	// cur is the directory reached so far: a path without symbolic links
	// whose every directory has been checked.
	cur, shared := "/", false
	enter := func(dir string) error {
		m, err := fsys.Lstat(dir)
		if err != nil {
			return refuse(err, "cannot stat directory %s: %v", dir, unwrapPath(err))
		}
		if err := p.dir(dir, m); err != nil {
			return err
		}
		cur, shared = dir, m.Mode.Perm()&0o022 != 0
		return nil
	}
	if err := enter("/"); err != nil {
		return Meta{}, err
	}
	todo := components(name)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			// cur has no symbolic links, so its lexical parent is its
			// real one (already checked; entered again for shared).
			if err := enter(filepath.Dir(cur)); err != nil {
				return Meta{}, err
			}
			continue
		}
		next := filepath.Join(cur, c)
		m, err := fsys.Lstat(next)
		if err != nil {
			return Meta{}, refuse(err, "cannot stat %s: %v", next, unwrapPath(err))
		}
		switch {
		case m.Mode&fs.ModeSymlink != 0:
			if shared && !p.trusted(m.UID) {
				return Meta{}, refuse(nil, "symbolic link %s, in directory %s that others can write to, is owned by uid %d, not root", next, cur, m.UID)
			}
			if links++; links > maxLinks {
				return Meta{}, refuse(syscall.ELOOP, "too many levels of symbolic links at %s", next)
			}
			target, err := fsys.Readlink(next)
			if err != nil {
				return Meta{}, refuse(err, "cannot read symbolic link %s: %v", next, unwrapPath(err))
			}
			if filepath.IsAbs(target) {
				if err := enter("/"); err != nil {
					return Meta{}, err
				}
			}
			todo = append(components(target), todo...)
		case len(todo) == 0:
			return m, nil
		case !m.Mode.IsDir():
			return Meta{}, refuse(syscall.ENOTDIR, "%s is not a directory", next)
		default:
			if err := p.dir(next, m); err != nil {
				return Meta{}, err
			}
			cur, shared = next, m.Mode.Perm()&0o022 != 0
		}
	}
	// name ended in "/", "." or "..": it names the directory reached.
	return fsys.Lstat(cur)
}

// dir checks one directory on the path.
func (p Policy) dir(name string, m Meta) error {
	switch {
	case !m.Mode.IsDir():
		return refuse(syscall.ENOTDIR, "%s is not a directory", name)
	case !p.trusted(m.UID):
		return refuse(nil, "directory %s is owned by uid %d, not root", name, m.UID)
	case m.Mode.Perm()&0o022 != 0 && m.Mode&fs.ModeSticky == 0:
		return refuse(nil, "directory %s is writable by group or others (mode %04o) without the sticky bit", name, m.Mode.Perm())
	}
	return nil
}

// components splits a path into its names, without empty and "." ones.
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
