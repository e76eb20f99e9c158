package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse is wrapped by Listen's error when another process (another
// daemon) accepts connections on the path.
var ErrInUse = errors.New("another process serves the socket")

// maxPathLen is the room in sockaddr_un.sun_path, less the NUL.
const maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// Listener is a listening socket created by Listen.
type Listener struct {
	*net.UnixListener
	path     string
	dev, ino uint64 // the socket file Listen created
	once     sync.Once
	err      error
}

// Path is the socket file's path.
func (l *Listener) Path() string { return l.path }

// Listen creates a listening Unix stream socket at path with permission
// mode, owned by uid:gid (-1 leaves the daemon's own id); see the package
// documentation for an existing file at path.
func Listen(path string, mode os.FileMode, uid, gid int) (*Listener, error) {
	if err := checkExisting(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	if len(tmp) > maxPathLen {
		return nil, fmt.Errorf("socket %s: the path is too long for a Unix socket (at most %d bytes, with room for a temporary name %d bytes longer)",
			path, maxPathLen, len(tmp)-len(path))
	}
	// A leftover of an earlier daemon that had this pid and crashed here.
	if fi, err := os.Lstat(tmp); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(tmp)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Lchown(tmp, uid, gid); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(tmp, &st); err != nil {
		return fail(fmt.Errorf("lstat %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &Listener{UnixListener: ln, path: path, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// checkExisting returns nil when path is free or holds a stale socket.
func checkExisting(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("socket %s: %w", path, err)
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("socket %s: it exists and is not a socket (%v): not replaced", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return nil // stale: nobody listens
		}
		return fmt.Errorf("socket %s: it exists and cannot be probed: %w", path, err)
	}
	defer c.Close()
	who := "a process"
	if cred, err := PeerCred(c.(*net.UnixConn)); err == nil {
		who = fmt.Sprintf("pid %d (uid %d)", cred.Pid, cred.Uid)
	}
	return fmt.Errorf("socket %s: %w: %s accepts connections on it; stop it first", path, ErrInUse, who)
}

// Close stops listening and deletes the socket file if it is still the one
// Listen created (another daemon may have replaced it since). Later calls
// return the first result.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if err := l.remove(); err != nil && l.err == nil {
			l.err = err
		}
	})
	return l.err
}

func (l *Listener) remove() error {
	var st unix.Stat_t
	if err := unix.Lstat(l.path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("socket: lstat %s: %w", l.path, err)
	}
	if uint64(st.Dev) != l.dev || uint64(st.Ino) != l.ino {
		return nil
	}
	if err := os.Remove(l.path); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	return nil
}
