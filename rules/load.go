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

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
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
	var pol *trust.Policy
	if b.opt.CheckTrust {
		pol = &b.opt.trust
	}
	data, err := readFile(name, pol)
	if err != nil {
		b.add(name, 0, Error, err.Error(), err)
		return
	}
	b.parseFile(name, data)
}

// readFile reads a rules file. The file is opened first and checked through
// its descriptor, so that what is checked is what is read. O_NONBLOCK keeps
// a FIFO named as the rules file from hanging the daemon in open(2). With a
// policy, the file and every directory on its path must be trusted.
func readFile(name string, pol *trust.Policy) ([]byte, error) {
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
	if pol != nil {
		if err := pol.Check(name, trust.MetaOf(fi)); err != nil {
			return nil, fmt.Errorf("%w: %w", errUntrusted, err)
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

// errUntrusted is wrapped by every trust refusal (which also matches
// trust.ErrUntrusted): the file's owner or mode, or a directory on its way
// from "/" that someone other than root could change (see package trust).
var errUntrusted = errors.New("untrusted rules file")

// unwrapPath drops the *PathError layer: diagnostics name the file already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func errText(err error) string { return unwrapPath(err).Error() }
