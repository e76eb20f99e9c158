package rules

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxFileSize bounds what Load reads from one file. A rules file is a few
// kilobytes; anything this large is a mistake (or /dev/zero behind a symlink).
const maxFileSize = 64 << 20

// Load reads mainFile, then the regular files of dropinDir whose names end in
// ".conf", in lexical (byte) order, as one list. A missing main file is an
// error; a missing directory is not. Names starting with "." are skipped
// (editor lock and swap files); so are entries that are not regular files
// (with a warning), following symlinks.
//
// Every problem of every file is reported; any error diagnostic fails the
// load as a whole and returns a *LoadError and no list.
func Load(mainFile, dropinDir string, opt Options) (*List, Diagnostics, error) {
	b, err := newBuilder(opt)
	if err != nil {
		return fail(mainFile, err)
	}
	b.loadFile(mainFile)
	if dropinDir != "" {
		ents, err := os.ReadDir(dropinDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			b.add(dropinDir, 0, Error, "cannot read directory: "+errText(err), err)
		}
		// ReadDir sorts by name: that is the lexical order.
		for _, e := range ents {
			name := e.Name()
			if !strings.HasSuffix(name, ".conf") || strings.HasPrefix(name, ".") {
				continue
			}
			p := filepath.Join(dropinDir, name)
			if !e.Type().IsRegular() {
				fi, err := os.Stat(p)
				if err != nil || !fi.Mode().IsRegular() {
					why := "not a regular file"
					if err != nil {
						why = errText(err)
					}
					b.add(p, 0, Warning, "skipped: "+why, nil)
					continue
				}
			}
			b.loadFile(p)
		}
	}
	return b.finish()
}

// loadFile reads one file, checks trust if asked, and parses it.
func (b *builder) loadFile(name string) {
	data, err := readFile(name, b.opt.CheckTrust, b.opt.stat)
	if err != nil {
		b.add(name, 0, Error, err.Error(), err)
		return
	}
	b.parseFile(name, data)
}

// fileMeta is what the trust check needs to know about a path.
type fileMeta struct {
	uid  uint32
	mode fs.FileMode
}

// statFunc returns the owner and mode of path, following symlinks.
type statFunc func(path string) (fileMeta, error)

func osStat(path string) (fileMeta, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileMeta{}, err
	}
	return metaOf(fi), nil
}

func metaOf(fi fs.FileInfo) fileMeta {
	m := fileMeta{mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.uid = st.Uid
	}
	return m
}

// readFile reads a rules file. The file is opened first and checked through
// its descriptor, so that what is checked is what is read. O_NONBLOCK keeps
// a FIFO named as the rules file from hanging the daemon in open(2). stat,
// when not nil, replaces every look-up of the trust check (tests).
func readFile(name string, trust bool, stat statFunc) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open: %w", unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot stat: %w", unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if trust {
		meta := metaOf(fi)
		if stat == nil {
			stat = osStat
		} else if meta, err = stat(name); err != nil {
			return nil, fmt.Errorf("cannot stat: %w", unwrapPath(err))
		}
		if err := checkTrust(name, meta, stat); err != nil {
			return nil, err
		}
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("file too large (%d bytes, limit %d)", fi.Size(), maxFileSize)
	}
	// Sized from stat (plus one byte to see growth) so that a large file is
	// read without repeated reallocation.
	data := make([]byte, 0, fi.Size()+1)
	data, err = readAllInto(data, io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", unwrapPath(err))
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("file too large (limit %d bytes)", maxFileSize)
	}
	return data, nil
}

// readAllInto is io.ReadAll into a caller-sized buffer.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// errUntrusted is wrapped by every trust refusal.
var errUntrusted = errors.New("untrusted rules file")

// checkTrust applies the rule gLExec applies to what root runs: the file must
// be owned by root and not writable by group or others, and its directory
// must not let anyone but root replace it. A directory owned by another user
// is refused even without its write bit, because its owner can chmod it; a
// group- or world-writable directory is accepted only with the sticky bit
// and a root owner (like /tmp: others cannot rename or remove root's file).
// When the path goes through symlinks, the directory of the link and that of
// the resolved file are both checked.
func checkTrust(name string, file fileMeta, stat statFunc) error {
	switch {
	case file.uid != 0:
		return fmt.Errorf("%w: owned by uid %d, not root", errUntrusted, file.uid)
	case file.mode.Perm()&0o022 != 0:
		return fmt.Errorf("%w: writable by group or others (mode %04o)", errUntrusted, file.mode.Perm())
	}
	dirs := []string{filepath.Dir(name)}
	if real, err := filepath.EvalSymlinks(name); err == nil {
		if d := filepath.Dir(real); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		m, err := stat(d)
		if err != nil {
			return fmt.Errorf("%w: cannot stat its directory %s: %w", errUntrusted, d, unwrapPath(err))
		}
		switch {
		case m.uid != 0:
			return fmt.Errorf("%w: its directory %s is owned by uid %d, not root", errUntrusted, d, m.uid)
		case m.mode.Perm()&0o022 != 0 && m.mode&fs.ModeSticky == 0:
			return fmt.Errorf("%w: its directory %s is writable by group or others (mode %04o) without the sticky bit", errUntrusted, d, m.mode.Perm())
		}
	}
	return nil
}

// unwrapPath drops the *PathError layer: diagnostics name the file already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func errText(err error) string { return unwrapPath(err).Error() }
