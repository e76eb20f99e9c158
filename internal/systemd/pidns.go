package systemd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// nsGetParent is ioctl_ns(2)'s NS_GET_PARENT, _IO(0xb7, 0x2): the parent
// of a pid namespace, as a new descriptor.
const nsGetParent = 0xb702

// parseNSpid returns the pids of a task in each pid namespace it belongs
// to, from the outermost (the reader's) in, from the bytes of
// /proc/PID/status ("NSpid:\t1234\t56\t7"). Pure.
func parseNSpid(status []byte) ([]int, error) {
	for len(status) > 0 {
		line := status
		if i := bytes.IndexByte(status, '\n'); i >= 0 {
			line, status = status[:i], status[i+1:]
		} else {
			status = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("NSpid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("empty NSpid line")
		}
		pids := make([]int, len(f))
		for i, s := range f {
			p, err := strconv.Atoi(string(s))
			if err != nil || p <= 0 {
				return nil, fmt.Errorf("bad NSpid entry %q", s)
			}
			pids[i] = p
		}
		return pids, nil
	}
	return nil, fmt.Errorf("no NSpid line")
}

// nsID identifies a namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{uint64(st.Dev), st.Ino}, nil
}

// PIDNamespace translates the daemon's pids into a manager's pid namespace.
// The zero value is not usable: make one with NewPIDNamespace.
type PIDNamespace struct {
	proc  string // the /proc the daemon sees
	depth int    // how many levels below the daemon's namespace the manager's is
	id    nsID   // the manager's namespace
	same  bool   // the manager's namespace is the daemon's: pids are the same
	peer  int    // the process it was made from (the socket's peer)
}

// NewPIDNamespace describes the pid namespace of process peer (a pid in
// the daemon's namespace: the manager itself, or any process of the
// manager's namespace, such as the proxy of a proxied socket or the
// namespace's bus daemon), read under procRoot ("/proc").
func NewPIDNamespace(procRoot string, peer int) (*PIDNamespace, error) {
	status, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(peer), "status"))
	if err != nil {
		return nil, fmt.Errorf("the manager's peer process: %w", err)
	}
	nspid, err := parseNSpid(status)
	if err != nil {
		return nil, fmt.Errorf("%s/%d/status: %w", procRoot, peer, err)
	}
	id, err := statNS(filepath.Join(procRoot, strconv.Itoa(peer), "ns", "pid"))
	if err != nil {
		return nil, fmt.Errorf("the manager's pid namespace: %w", err)
	}
	self, err := statNS(filepath.Join(procRoot, "self", "ns", "pid"))
	if err != nil {
		return nil, fmt.Errorf("the daemon's pid namespace: %w", err)
	}
	return &PIDNamespace{proc: procRoot, depth: len(nspid) - 1, id: id, same: id == self, peer: peer}, nil
}

// Depth is how many pid namespaces below the daemon's the manager lives (0:
// the same one).
func (n *PIDNamespace) Depth() int { return n.depth }

// Translate returns the pid the manager knows task pid (a pid of the
// daemon's namespace) by: the NSpid entry at the manager's depth, after
// checking that the task's namespace is the manager's or below it. A task
// elsewhere (an ancestor namespace, or a sibling container) is an error
// wrapping ErrOutsideNamespace; a task that is gone wraps ErrTaskGone.
func (n *PIDNamespace) Translate(pid int) (int, error) {
	if n.same {
		return pid, nil
	}
	dir := filepath.Join(n.proc, strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		if os.IsNotExist(err) {
			return 0, fmt.Errorf("%w: no %s", ErrTaskGone, dir)
		}
		return 0, err
	}
	nspid, err := parseNSpid(status)
	if err != nil {
		return 0, fmt.Errorf("%s/status: %w", dir, err)
	}
	if len(nspid)-1 < n.depth {
		return 0, fmt.Errorf("%w: pid %d lives %d pid namespaces deep, the manager %d", ErrOutsideNamespace, pid, len(nspid)-1, n.depth)
	}
	// Same depth is not the same namespace (two containers side by side):
	// compare the task's namespace, or its ancestor at the manager's
	// depth, with the manager's.
	ok, err := n.contains(dir, len(nspid)-1-n.depth)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: pid %d is in another pid namespace at the manager's depth", ErrOutsideNamespace, pid)
	}
	return nspid[n.depth], nil
}

// contains reports whether the pid namespace up levels above the one of
// the task in dir is the manager's.
func (n *PIDNamespace) contains(dir string, up int) (bool, error) {
	if up == 0 {
		id, err := statNS(filepath.Join(dir, "ns", "pid"))
		if err != nil {
			if os.IsNotExist(err) {
				return false, fmt.Errorf("%w: %s", ErrTaskGone, dir)
			}
			return false, err
		}
		return id == n.id, nil
	}
	fd, err := unix.Open(filepath.Join(dir, "ns", "pid"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT || err == unix.ESRCH {
			return false, fmt.Errorf("%w: %s", ErrTaskGone, dir)
		}
		return false, fmt.Errorf("opening %s/ns/pid: %w", dir, err)
	}
	for ; up > 0; up-- {
		parent, err := unix.IoctlRetInt(fd, nsGetParent)
		unix.Close(fd)
		if err != nil {
			return false, fmt.Errorf("NS_GET_PARENT of %s's pid namespace: %w", dir, err)
		}
		fd = parent
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	return nsID{uint64(st.Dev), st.Ino} == n.id, nil
}
