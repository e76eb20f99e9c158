package sticky

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPath is where libcgroup's clients connect (CGRULE_CGRED_SOCKET_PATH,
// compiled into libcgroup).
const DefaultPath = "/var/run/cgred.socket"

// Mode is the socket file's permission: the owner and the group may
// connect (libcgroup's 0660).
const Mode = 0o660

// ErrInUse is wrapped by Listen's error when another process (another
// daemon) accepts connections on the path.
var ErrInUse = errors.New("another process serves the sticky socket")

// maxPathLen is the room in sockaddr_un.sun_path, less the NUL.
const maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// socketFile identifies the socket file this server created, so that Close
// removes it only if it is still that file.
type socketFile struct{ dev, ino uint64 }

// listen creates a listening Unix stream socket at path, mode Mode, owned
// by uid:gid (-1 leaves the daemon's own id).
//
// A socket file already at path is probed with a connect: if a process
// accepts, another daemon is serving it, and listen fails with ErrInUse,
// naming that process (its pid from SO_PEERCRED); if nobody listens
// (ECONNREFUSED), the file was left by a daemon that is gone and is
// replaced. Anything else at path (a regular file, a directory) is not
// touched: an error.
//
// The socket is bound under a temporary name in the same directory, given
// its mode and owner, then renamed over path, so that a client never finds
// a socket with other permissions, and the replacement of a stale file is
// atomic.
func listen(path string, uid, gid int) (*net.UnixListener, socketFile, error) {
	if err := checkExisting(path); err != nil {
		return nil, socketFile{}, err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	if len(tmp) > maxPathLen {
		return nil, socketFile{}, fmt.Errorf("sticky socket %s: the path is too long for a Unix socket (at most %d bytes, with room for a temporary name %d bytes longer)",
			path, maxPathLen, len(tmp)-len(path))
	}
	// A leftover of an earlier daemon that had this pid and crashed here.
	if fi, err := os.Lstat(tmp); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(tmp)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, socketFile{}, fmt.Errorf("sticky socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, socketFile, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, socketFile{}, fmt.Errorf("sticky socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, Mode); err != nil {
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
	return ln, socketFile{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// checkExisting returns nil when path is free or holds a stale socket.
func checkExisting(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("sticky socket: %w", err)
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("sticky socket: %s exists and is not a socket (%v): not replaced", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return nil // stale: nobody listens
		}
		return fmt.Errorf("sticky socket: %s exists and cannot be probed: %w", path, err)
	}
	defer c.Close()
	who := "a process"
	if cred, err := peerCred(c.(*net.UnixConn)); err == nil {
		who = fmt.Sprintf("pid %d (uid %d)", cred.Pid, cred.Uid)
	}
	return fmt.Errorf("%w: %s accepts connections on %s; stop it first (or give this daemon another --socket)", ErrInUse, who, path)
}

// remove deletes the socket file at path if it is still the one listen
// created (another daemon may have replaced it since).
func (f socketFile) remove(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("sticky socket: lstat %s: %w", path, err)
	}
	if uint64(st.Dev) != f.dev || uint64(st.Ino) != f.ino {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("sticky socket: %w", err)
	}
	return nil
}

// peerCred returns the credentials of the process at the other end of c
// (SO_PEERCRED: the connecting process, as of its connect; for a client,
// the process that called listen).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}
