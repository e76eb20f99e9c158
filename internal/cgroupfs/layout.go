package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// Version is a cgroup hierarchy's version.
type Version int

const (
	V1 Version = 1
	V2 Version = 2
)

// Unified is the pseudo controller name that designates the cgroup2
// hierarchy itself, whatever controllers it has.
const Unified = "unified"

// v2Standard are the cgroup2 controller names a rule may name on a pure v2
// system even when the kernel does not offer them at the root: a move only
// needs cgroup.procs, which exists in every cgroup.
var v2Standard = []string{"cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc"}

// Hierarchy is one mounted cgroup hierarchy.
type Hierarchy struct {
	Version     Version
	Controllers []string // v1: e.g. ["cpu"], ["cpu","cpuacct"], ["name=systemd"]; v2: <mount>/cgroup.controllers
	Mountpoint  string   // e.g. /sys/fs/cgroup/cpu
	Root        string   // the mount's root within the hierarchy (mountinfo field 4), usually "/"
}

// Name is a short label for logs: the v1 controllers joined with commas,
// or "unified".
func (h *Hierarchy) Name() string {
	if h.Version == V2 {
		return Unified
	}
	return strings.Join(h.Controllers, ",")
}

func (h *Hierarchy) has(controller string) bool {
	return slices.Contains(h.Controllers, controller)
}

// Layout is the set of mounted hierarchies.
type Layout struct {
	Hierarchies []*Hierarchy // v1 ones first (sorted by mountpoint), then the unified one if any
	Unified     *Hierarchy   // nil when there is no cgroup2 mount
}

// Discover parses procRoot/self/mountinfo and reads each cgroup2 mount's
// cgroup.controllers.
//
// A hierarchy mounted several times is kept once: the mount whose root is
// "/" is preferred, then the shortest mountpoint (then the first listed).
// A mount of a sub-tree (root not "/") is used only when it is the sole
// mount of its hierarchy. Mounts hidden by a later mount on top of them
// are ignored.
func Discover(procRoot string) (*Layout, error) {
	return discover(procRoot, "")
}

// discover is Discover with fsRoot prefixed to the mountpoints when reading
// cgroup.controllers (fixture trees in tests).
func discover(procRoot, fsRoot string) (*Layout, error) {
	p := filepath.Join(procRoot, "self", "mountinfo")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("cgroupfs: %w", err)
	}
	defer f.Close()
	ms, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("cgroupfs: %s: %w", p, err)
	}
	return layoutFromMounts(ms, fsRoot)
}

// layoutFromMounts builds a Layout; fsRoot prefixes the mountpoints when
// reading cgroup.controllers (fixture trees in tests, "" in production).
func layoutFromMounts(ms []mount, fsRoot string) (*Layout, error) {
	type cand struct {
		m     mount
		ctrls []string
		order int
	}
	best := map[string]cand{}
	for i, m := range visibleMounts(ms) {
		var key string
		var ctrls []string
		switch m.FSType {
		case "cgroup":
			ctrls = v1Controllers(m.SuperOpts)
			if len(ctrls) == 0 {
				continue // cannot be mounted by the kernel; ignore rather than fail
			}
			sorted := slices.Clone(ctrls)
			slices.Sort(sorted)
			key = "v1:" + strings.Join(sorted, ",")
		case "cgroup2":
			key = "v2"
		default:
			continue
		}
		c := cand{m: m, ctrls: ctrls, order: i}
		old, ok := best[key]
		if !ok || better(c.m, old.m) {
			best[key] = c
		}
	}
	l := &Layout{}
	for key, c := range best {
		h := &Hierarchy{Controllers: c.ctrls, Mountpoint: c.m.Mountpoint, Root: c.m.Root}
		if key == "v2" {
			h.Version = V2
			b, err := os.ReadFile(fsRoot + filepath.Join(c.m.Mountpoint, "cgroup.controllers"))
			if err != nil {
				return nil, fmt.Errorf("cgroupfs: cgroup2 at %s: %w", c.m.Mountpoint, err)
			}
			h.Controllers = strings.Fields(string(b))
			l.Unified = h
			continue
		}
		h.Version = V1
		l.Hierarchies = append(l.Hierarchies, h)
	}
	slices.SortFunc(l.Hierarchies, func(a, b *Hierarchy) int { return strings.Compare(a.Mountpoint, b.Mountpoint) })
	if l.Unified != nil {
		l.Hierarchies = append(l.Hierarchies, l.Unified)
	}
	return l, nil
}

// better reports whether mount a should be preferred over b for the same
// hierarchy.
func better(a, b mount) bool {
	if (a.Root == "/") != (b.Root == "/") {
		return a.Root == "/"
	}
	return len(a.Mountpoint) < len(b.Mountpoint)
}

// v1 returns the number of v1 hierarchies.
func (l *Layout) v1() int {
	if l.Unified != nil {
		return len(l.Hierarchies) - 1
	}
	return len(l.Hierarchies)
}

// Mode is "v1" (only v1 hierarchies), "hybrid" (v1 and a cgroup2 mount),
// "v2" (only a cgroup2 mount) or "none".
func (l *Layout) Mode() string {
	switch v1 := l.v1(); {
	case v1 > 0 && l.Unified != nil:
		return "hybrid"
	case l.Unified != nil:
		return "v2"
	case v1 > 0:
		return "v1"
	}
	return "none"
}

// Controllers returns the sorted names a rule may use: every v1
// controller (named hierarchies as "name=X"); with a cgroup2 mount, its
// controllers not bound to v1 and the pseudo-name "unified"; on pure v2
// also the standard v2 names, even when not enabled.
func (l *Layout) Controllers() []string {
	var out []string
	for _, h := range l.Hierarchies {
		if h.Version == V1 {
			out = append(out, h.Controllers...)
		}
	}
	if l.Unified != nil {
		out = append(out, Unified)
		out = append(out, l.Unified.Controllers...) // bound-to-v1 ones are not listed by the kernel, and deduplicated below anyway
		if l.v1() == 0 {
			out = append(out, v2Standard...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Resolve maps a rule's controller name to hierarchies: "*" to every
// hierarchy once, a v1 controller (or "name=X") to its mount, "unified" to
// the cgroup2 hierarchy; on pure v2 any name the kernel lists or a
// standard v2 name resolves to it; in hybrid mode a name not on v1 but in
// the cgroup2 hierarchy's controllers does. Unknown names give nil.
//
// The result aliases the Layout (no allocation); do not modify it.
func (l *Layout) Resolve(controller string) []*Hierarchy {
	hs := l.Hierarchies
	switch controller {
	case "*":
		return hs[:len(hs):len(hs)]
	case Unified:
		return l.unifiedSlice()
	}
	for i, h := range hs {
		if h.Version == V1 && h.has(controller) {
			return hs[i : i+1 : i+1]
		}
	}
	if l.Unified == nil {
		return nil
	}
	if l.Unified.has(controller) || (l.v1() == 0 && slices.Contains(v2Standard, controller)) {
		return l.unifiedSlice()
	}
	return nil
}

func (l *Layout) unifiedSlice() []*Hierarchy {
	for i, h := range l.Hierarchies {
		if h == l.Unified {
			return l.Hierarchies[i : i+1 : i+1]
		}
	}
	if l.Unified != nil { // a hand-built Layout without it in Hierarchies
		return []*Hierarchy{l.Unified}
	}
	return nil
}

// TaskPath returns the task's cgroup path in h from its /proc/PID/cgroup
// lines: v1 matched by controller set ("name=X" included), v2 by the "0::"
// line. ok is false when the task has no line for h. The path is as the
// kernel shows it relative to the reader's cgroup namespace; a path
// starting with "/.." means the task is outside our cgroup namespace.
func (l *Layout) TaskPath(h *Hierarchy, lines []proc.CgroupLine) (path string, ok bool) {
	for i := range lines {
		ln := &lines[i]
		if h.Version == V2 {
			if ln.ID == 0 && len(ln.Controllers) == 0 {
				return ln.Path, true
			}
			continue
		}
		if ln.ID == 0 || len(ln.Controllers) != len(h.Controllers) {
			continue
		}
		match := true
		for _, c := range h.Controllers {
			if !slices.Contains(ln.Controllers, c) {
				match = false
				break
			}
		}
		if match {
			return ln.Path, true
		}
	}
	return "", false
}

// Within reports whether cgroup path p is at or below dir, comparing whole
// components: "/a/bc" is not within "/a/b". Everything is within "/" (and
// within ""). A trailing slash on dir is ignored.
func Within(p, dir string) bool {
	for len(dir) > 1 && dir[len(dir)-1] == '/' {
		dir = dir[:len(dir)-1]
	}
	if dir == "" || dir == "/" {
		return true
	}
	if len(p) < len(dir) || p[:len(dir)] != dir {
		return false
	}
	return len(p) == len(dir) || p[len(dir)] == '/'
}

// ErrOutsideMount is returned for a cgroup path that the hierarchy's mount
// does not reach (its root is a sub-tree that does not contain the path),
// or that is not a clean absolute path.
var ErrOutsideMount = errors.New("cgroup path not reachable through the mount")

// Rel returns cgroup path p relative to h's mount (absolute, "/" for the
// mount's root). p must be absolute
// and clean: "/../x" paths, which name cgroups outside our cgroup
// namespace, are rejected.
func (h *Hierarchy) Rel(p string) (string, error) {
	if p == "" || p[0] != '/' || filepath.Clean(p) != p {
		return "", fmt.Errorf("cgroupfs: %s: path %q: %w", h.Name(), p, ErrOutsideMount)
	}
	if !Within(p, h.Root) {
		return "", fmt.Errorf("cgroupfs: %s: path %q is outside the mount's root %q: %w", h.Name(), p, h.Root, ErrOutsideMount)
	}
	rel := p[len(strings.TrimRight(h.Root, "/")):]
	if rel == "" {
		rel = "/"
	}
	return rel, nil
}

// dir returns the directory of cgroup path p in h.
func (h *Hierarchy) dir(p string) (string, error) {
	rel, err := h.Rel(p)
	if err != nil {
		return "", err
	}
	return joinMount(h.Mountpoint, rel), nil
}

// joinMount appends an absolute relative path to a mountpoint.
func joinMount(mp, rel string) string {
	mp = strings.TrimRight(mp, "/")
	if rel == "/" {
		if mp == "" {
			return "/"
		}
		return mp
	}
	return mp + rel
}
