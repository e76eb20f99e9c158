package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInvalidPID is returned by Move for a pid <= 0: writing "0" to
// cgroup.procs would move the daemon itself.
var ErrInvalidPID = errors.New("invalid pid")

// ErrControllers is matched (errors.Is) by Create's error when the cgroup
// exists but some requested v2 controllers could not be enabled on the way
// to it. Moves into the cgroup still work; the controllers are just not
// in effect there.
var ErrControllers = errors.New("cgroup controllers not enabled")

// ControllerError details ErrControllers.
type ControllerError struct {
	Path     string            // the cgroup Create was asked for
	Failures []ControllerIssue // one per controller, at the highest ancestor where it failed
}

// ControllerIssue is one controller that could not be enabled.
type ControllerIssue struct {
	Controller string
	Cgroup     string // the ancestor whose cgroup.subtree_control it was to be enabled in
	Err        error  // ErrNotAvailable, or the write's error (EBUSY: the ancestor has processes)
}

// ErrNotAvailable: the controller is not in the ancestor's cgroup.controllers
// (not enabled further up, outside the part of the tree we may change, or
// bound to a v1 hierarchy).
var ErrNotAvailable = errors.New("not in cgroup.controllers")

func (e *ControllerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cgroupfs: %s: controllers not enabled:", e.Path)
	for _, f := range e.Failures {
		fmt.Fprintf(&b, " %s (in %s: %v)", f.Controller, f.Cgroup, f.Err)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrControllers) hold.
func (e *ControllerError) Is(target error) bool { return target == ErrControllers }

// Unwrap exposes the individual causes.
func (e *ControllerError) Unwrap() []error {
	out := make([]error, 0, len(e.Failures))
	for _, f := range e.Failures {
		out = append(out, f.Err)
	}
	return out
}

// Mover creates cgroups and moves processes. Safe for concurrent use.
//
// A move is one write(2) of the pid to the destination's cgroup.procs, on a
// descriptor opened once and kept (see fdCache); the first move into a
// cgroup costs one open(2) more. Nothing is retried here: EINVAL (a task
// still being created) is the caller's to retry, at a time of its choosing.
type Mover struct {
	below string // --cgroup-root: v2 controllers are only enabled at or below it
	fds   *fdCache

	maxOpen int             // WithMaxOpen
	report  func(*Shortage) // WithShortageReport
}

// MoverOption configures a Mover.
type MoverOption func(*Mover)

// WithCgroupRoot restricts Create's enabling of v2 controllers to the
// cgroups at or below root (the daemon's --cgroup-root), so that nothing
// above the delegated sub-tree is changed.
func WithCgroupRoot(root string) MoverOption {
	return func(m *Mover) { m.below = root }
}

// WithMaxOpen bounds the cgroup.procs descriptors kept open (default
// DefaultMaxOpen(): half of the open-file limit); the least recently used
// one is closed beyond it.
func WithMaxOpen(n int) MoverOption {
	return func(m *Mover) { m.maxOpen = n }
}

// WithShortageReport has report called when the process runs out of
// descriptors opening a cgroup.procs file (see Shortage), at most once a
// second: the daemon logs it as an error. report must not block.
func WithShortageReport(report func(*Shortage)) MoverOption {
	return func(m *Mover) { m.report = report }
}

// NewMover returns a Mover. It serves any hierarchy: each call names its
// own.
func NewMover(opts ...MoverOption) *Mover {
	m := &Mover{below: "/"}
	for _, o := range opts {
		o(m)
	}
	m.fds = newFDCache(m.maxOpen)
	m.fds.report = m.report
	return m
}

// Shed is for a descriptor shortage seen elsewhere in the process (a /proc
// read, a directory listing): the least recently used half of the cached
// descriptors is dropped and the bound lowered, as after an open of
// cgroup.procs that failed (see Move), so that the rest of the process gets
// them. It returns how many descriptors it closed at once (those in use are
// closed by their last holder).
func (m *Mover) Shed() (closed int) {
	closed, _ = m.fds.shed()
	return closed
}

// MaxOpen is the current bound on the cgroup.procs descriptors kept open:
// WithMaxOpen's, lowered by shortages (see Shortage).
func (m *Mover) MaxOpen() int {
	m.fds.mu.Lock()
	defer m.fds.mu.Unlock()
	return m.fds.max
}

// Move writes pid to cgroup.procs of path in h: every thread of the
// process moves. path is absolute within the hierarchy (e.g.
// "/cgre-test-x/default"). In the steady state (descriptor cached) it makes
// one system call and does not allocate.
//
// Errors wrap the kernel's cause and name the pid and cgroup:
// errors.Is(err, unix.ESRCH) when the task is gone; unix.EINVAL when it is
// still being created (TASK_NEW: retry shortly) or, in a v1 cpu hierarchy,
// when it is a realtime task and the cgroup has no rt_runtime; unix.ENOENT
// (and fs.ErrNotExist) when the cgroup is missing; unix.EBUSY in v2 when the
// cgroup has controllers enabled for its children (no internal processes).
//
// A cached descriptor of a cgroup that was removed fails with ENODEV: Move
// then drops it and opens the path once more (the cgroup may have been
// created again under the same name); if that fails too, the error is
// returned, matching unix.ENOENT as well when the cgroup is gone.
//
// An open that fails for lack of descriptors (EMFILE, ENFILE) closes the
// least recently used half of the cached ones and is tried once more; if
// that fails too, the error matches ErrOutOfDescriptors (and the kernel's
// errno): nothing was moved, and the caller should treat the move as a lost
// event (the daemon rescans /proc).
func (m *Mover) Move(h *Hierarchy, path string, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroupfs: move pid %d to %s:%s: %w", pid, h.Name(), path, ErrInvalidPID)
	}
	key := fileKey{h, path}
	file := func() (string, error) {
		d, err := h.dir(path)
		if err != nil {
			return "", err
		}
		return d + "/cgroup.procs", nil
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var f *procsFile
		f, err = m.fds.acquire(key, file)
		if err != nil {
			if errors.Is(err, ErrOutsideMount) {
				return fmt.Errorf("cgroupfs: move pid %d: %w", pid, err)
			}
			break // open failed: ENOENT for a missing cgroup
		}
		err = m.fds.write(f.fd, pid)
		if err == unix.ENODEV {
			// The cgroup was removed since the descriptor was opened.
			m.fds.drop(f)
		}
		m.fds.release(f)
		if err != unix.ENODEV {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case err == unix.ENODEV:
		return fmt.Errorf("cgroupfs: move pid %d to %s:%s: cgroup removed: %w (%w)", pid, h.Name(), path, unix.ENOENT, err)
	}
	return fmt.Errorf("cgroupfs: move pid %d to %s:%s: %w", pid, h.Name(), path, err)
}

// Cached reports whether a move into (h, path) would write through a cached
// descriptor (one system call, no open).
func (m *Mover) Cached(h *Hierarchy, path string) bool {
	m.fds.mu.Lock()
	_, ok := m.fds.files[fileKey{h, path}]
	m.fds.mu.Unlock()
	return ok
}

// Forget closes the cached descriptor of (h, path), if any (after ENOENT,
// say). Moves into it reopen it.
func (m *Mover) Forget(h *Hierarchy, path string) {
	m.fds.forget(fileKey{h, path})
}

// Close closes every cached descriptor (a descriptor in use by a move is
// closed when that move is done). The Mover stays usable: later moves open
// their descriptors again.
func (m *Mover) Close() error {
	m.fds.clear()
	return nil
}

// OpenFiles returns the number of cgroup.procs descriptors the Mover holds
// open: cached ones, and evicted ones a move still writes to.
func (m *Mover) OpenFiles() int {
	_, n := m.fds.stats()
	return n
}

// Exists reports whether cgroup path exists in h.
func (m *Mover) Exists(h *Hierarchy, path string) bool {
	d, err := h.dir(path)
	if err != nil {
		return false
	}
	return unix.Access(d+"/cgroup.procs", unix.F_OK) == nil
}

// Create makes cgroup path, and its missing parents, in h.
//
// v1: mkdir only, except that in a hierarchy with the cpuset controller
// every directory on the way whose cpuset.cpus or cpuset.mems is empty
// (new ones, unless the parent has cgroup.clone_children set) gets its
// parent's values, without which moves into it fail with ENOSPC.
//
// v2: the controllers named (those that resolved to h; "unified", "*" and
// "name=X" are ignored) are enabled in the cgroup.subtree_control of every
// ancestor from the hierarchy root (or from the WithCgroupRoot directory)
// down to path's parent, each only if not yet enabled. A controller that
// cannot be enabled makes the returned error match ErrControllers (a
// *ControllerError), but the directories are still created. Nothing above
// the WithCgroupRoot directory is ever written.
func (m *Mover) Create(h *Hierarchy, path string, controllers []string) error {
	rel, err := h.Rel(path)
	if err != nil {
		return err
	}
	var want []string
	if h.Version == V2 {
		for _, c := range controllers {
			if c != "" && c != "*" && c != Unified && !strings.HasPrefix(c, "name=") && !slices.Contains(want, c) {
				want = append(want, c)
			}
		}
	}
	cpuset := h.Version == V1 && h.has("cpuset")
	var issues []ControllerIssue
	failed := map[string]bool{}
	// Walk from the mount's root down: cgPath is the cgroup path (our
	// namespace's frame), d its directory.
	cgPath := strings.TrimRight(h.Root, "/")
	parent := h.Mountpoint
	comps := strings.Split(strings.Trim(rel, "/"), "/")
	if rel == "/" {
		comps = nil
	}
	for _, c := range comps {
		parentCg := cgPath
		if parentCg == "" {
			parentCg = "/"
		}
		cgPath += "/" + c
		d := filepath.Join(parent, c)
		if len(want) > 0 && Within(parentCg, m.below) {
			for _, ctl := range want {
				if failed[ctl] {
					continue
				}
				if err := enableController(parent, ctl); err != nil {
					failed[ctl] = true
					issues = append(issues, ControllerIssue{Controller: ctl, Cgroup: parentCg, Err: err})
				}
			}
		}
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroupfs: create %s:%s: %w", h.Name(), path, err)
		}
		if cpuset {
			if err := initCpuset(parent, d); err != nil {
				return fmt.Errorf("cgroupfs: create %s:%s: %w", h.Name(), path, err)
			}
		}
		parent = d
	}
	// Controllers requested but never attempted: the whole chain is above
	// the cgroup root, so they are only in effect if already available.
	if len(want) > 0 && len(comps) > 0 {
		pd := filepath.Dir(parent)
		pcg := filepath.Dir(cgPath)
		if !Within(pcg, m.below) {
			for _, ctl := range want {
				if ok, err := hasToken(filepath.Join(pd, "cgroup.subtree_control"), ctl); err != nil || !ok {
					if err == nil {
						err = ErrNotAvailable
					}
					issues = append(issues, ControllerIssue{Controller: ctl, Cgroup: pcg, Err: err})
				}
			}
		}
	}
	if len(issues) > 0 {
		return &ControllerError{Path: path, Failures: issues}
	}
	return nil
}

// enableController enables ctl in dir's cgroup.subtree_control unless it is
// already, or returns ErrNotAvailable when dir's cgroup.controllers lacks
// it.
func enableController(dir, ctl string) error {
	on, err := hasToken(filepath.Join(dir, "cgroup.subtree_control"), ctl)
	if err != nil {
		return err
	}
	if on {
		return nil
	}
	avail, err := hasToken(filepath.Join(dir, "cgroup.controllers"), ctl)
	if err != nil {
		return err
	}
	if !avail {
		return ErrNotAvailable
	}
	return writeFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+ctl))
}

func hasToken(file, tok string) (bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return false, err
	}
	for _, f := range bytes.Fields(b) {
		if string(f) == tok {
			return true, nil
		}
	}
	return false, nil
}

// writeFile writes to an existing cgroup file (never creates one: on a
// cgroup filesystem a missing file means a missing cgroup or controller).
// O_TRUNC is ignored by cgroupfs but keeps plain-file fixtures exact.
func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// initCpuset copies cpuset.cpus and cpuset.mems from parent to dir where
// dir's are empty. A mount with the noprefix option names them cpus/mems.
func initCpuset(parent, dir string) error {
	for _, names := range [][2]string{{"cpuset.cpus", "cpus"}, {"cpuset.mems", "mems"}} {
		name := names[0]
		cur, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			name = names[1]
			cur, err = os.ReadFile(filepath.Join(dir, name))
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(cur)) > 0 {
			continue
		}
		val, err := os.ReadFile(filepath.Join(parent, name))
		if err != nil {
			return err
		}
		val = bytes.TrimSpace(val)
		if len(val) == 0 {
			return fmt.Errorf("%s: parent has an empty %s", parent, name)
		}
		if err := writeFile(filepath.Join(dir, name), val); err != nil {
			return err
		}
	}
	return nil
}
