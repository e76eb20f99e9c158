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
	"sync"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// maxHandles bounds the handle cache. Template destinations (%u, %p...)
// can name an unbounded number of cgroups; when the bound is reached the
// cache is simply emptied (a reload costs one lstat for v1, nothing for
// v2), which keeps the code trivial and the memory bounded.
const maxHandles = 4096

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
type Mover struct {
	below string // --cgroup-root: v2 controllers are only enabled at or below it

	hmu   sync.Mutex
	hiers map[*Hierarchy]cgroup1.Hierarchy // built once per v1 hierarchy

	mu    sync.RWMutex
	cache map[handleKey]handle
}

type handleKey struct {
	h    *Hierarchy
	path string
}

type handle struct {
	v1 cgroup1.Cgroup
	v2 *cgroup2.Manager
}

// MoverOption configures a Mover.
type MoverOption func(*Mover)

// WithCgroupRoot restricts Create's enabling of v2 controllers to the
// cgroups at or below root (the daemon's --cgroup-root), so that nothing
// above the delegated sub-tree is changed.
func WithCgroupRoot(root string) MoverOption {
	return func(m *Mover) { m.below = root }
}

// NewMover returns a Mover for the hierarchies of l.
func NewMover(l *Layout, opts ...MoverOption) *Mover {
	m := &Mover{below: "/", hiers: map[*Hierarchy]cgroup1.Hierarchy{}, cache: map[handleKey]handle{}}
	for _, o := range opts {
		o(m)
	}
	if l != nil {
		for _, h := range l.Hierarchies {
			if h.Version == V1 {
				m.hiers[h] = v1Hierarchy(h)
			}
		}
	}
	return m
}

// subsystem is a cgroup1.Subsystem (and its unexported pather interface,
// Path) for one v1 hierarchy of the Layout. containerd's own subsystems
// come from cgroup1.Default, which re-parses /proc/self/mountinfo on
// every Load; this one knows its mountpoint.
type subsystem struct {
	name  cgroup1.Name
	mount string
}

func (s subsystem) Name() cgroup1.Name { return s.name }

// Path maps a path relative to the mount (as given to cgroup1.StaticPath)
// to the directory.
func (s subsystem) Path(p string) string { return filepath.Join(s.mount, p) }

func v1Hierarchy(h *Hierarchy) cgroup1.Hierarchy {
	subs := []cgroup1.Subsystem{subsystem{name: cgroup1.Name(h.Name()), mount: h.Mountpoint}}
	return func() ([]cgroup1.Subsystem, error) { return subs, nil }
}

func (m *Mover) v1Hier(h *Hierarchy) cgroup1.Hierarchy {
	m.hmu.Lock()
	defer m.hmu.Unlock()
	hier, ok := m.hiers[h]
	if !ok { // a Hierarchy that was not in the Layout given to NewMover
		hier = v1Hierarchy(h)
		m.hiers[h] = hier
	}
	return hier
}

// handle returns the cached containerd handle for (h, path), loading it on
// a miss.
func (m *Mover) handle(h *Hierarchy, path string) (handle, error) {
	key := handleKey{h, path}
	m.mu.RLock()
	hd, ok := m.cache[key]
	m.mu.RUnlock()
	if ok {
		return hd, nil
	}
	rel, err := h.rel(path)
	if err != nil {
		return hd, err
	}
	switch h.Version {
	case V1:
		cg, err := cgroup1.Load(cgroup1.StaticPath(rel), cgroup1.WithHierarchy(m.v1Hier(h)))
		if err != nil {
			if errors.Is(err, cgroup1.ErrCgroupDeleted) {
				err = fmt.Errorf("%w: %w", err, unix.ENOENT)
			}
			return hd, fmt.Errorf("cgroupfs: load %s:%s: %w", h.Name(), path, err)
		}
		hd.v1 = cg
	case V2:
		// cgroup2.Load does no I/O: a missing cgroup shows up as
		// ENOENT on the first write.
		mgr, err := cgroup2.Load(rel, cgroup2.WithMountpoint(h.Mountpoint))
		if err != nil {
			return hd, fmt.Errorf("cgroupfs: load %s:%s: %w", h.Name(), path, err)
		}
		hd.v2 = mgr
	default:
		return hd, fmt.Errorf("cgroupfs: hierarchy %q has unknown version %d", h.Mountpoint, h.Version)
	}
	m.mu.Lock()
	if len(m.cache) >= maxHandles {
		clear(m.cache)
	}
	m.cache[key] = hd
	m.mu.Unlock()
	return hd, nil
}

// Move writes pid to cgroup.procs of path in h: every thread of the
// process moves. path is absolute within the hierarchy (e.g.
// "/cgre-test-x/default").
//
// Errors wrap the kernel's cause and name the pid and cgroup:
// errors.Is(err, unix.ESRCH) when the task is gone; unix.EINVAL when it is
// still being created (TASK_NEW: retry shortly) or, in a v1 cpu hierarchy,
// when it is a realtime task and the cgroup has no rt_runtime;
// fs.ErrNotExist / unix.ENOENT when the cgroup is missing (its cached
// handle is dropped); unix.EBUSY in v2 when the cgroup has controllers
// enabled for its children (no internal processes).
//
// In v1, containerd retries EINVAL itself 5 times, 30 ms apart, holding the
// handle's mutex: a Move may block for 150 ms and delay other moves into
// the same cgroup. v2 writes once.
func (m *Mover) Move(h *Hierarchy, path string, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroupfs: move pid %d to %s:%s: %w", pid, h.Name(), path, ErrInvalidPID)
	}
	hd, err := m.handle(h, path)
	if err != nil {
		return fmt.Errorf("cgroupfs: move pid %d: %w", pid, err)
	}
	if hd.v1 != nil {
		err = hd.v1.AddProc(uint64(pid))
	} else {
		err = hd.v2.AddProc(uint64(pid))
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			m.Forget(h, path)
		}
		return fmt.Errorf("cgroupfs: move pid %d to %s:%s: %w", pid, h.Name(), path, err)
	}
	return nil
}

// Forget drops the cached handle of (h, path), e.g. after ENOENT.
func (m *Mover) Forget(h *Hierarchy, path string) {
	m.mu.Lock()
	delete(m.cache, handleKey{h, path})
	m.mu.Unlock()
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
//
// containerd is not used here: cgroup1.New only does MkdirAll for
// subsystems like ours, and cgroup2.NewManager enables controllers from
// the mount's root regardless of a delegated root and removes the new
// directory when that fails.
func (m *Mover) Create(h *Hierarchy, path string, controllers []string) error {
	rel, err := h.rel(path)
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
