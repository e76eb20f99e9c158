package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

// Usage is what the tasks of one cgroup use, as far as its hierarchy tells:
// a v1 hierarchy knows CPU time only with cpuacct and memory only with the
// memory controller; cgroup2 always knows CPU time (cpu.stat is a core
// file) and memory once the memory controller is enabled for the cgroup.
type Usage struct {
	Tasks       int     // processes in the cgroup itself (not its descendants)
	CPUSeconds  float64 // CPU time of the cgroup and its descendants
	MemoryBytes uint64  // memory charged to the cgroup and its descendants
	HasCPU      bool
	HasMemory   bool
}

// UsageReader reads Usage with containerd/cgroups v3, at scrape time.
// Safe for concurrent use.
type UsageReader struct {
	v1 map[*cgroupfs.Hierarchy]cgroup1.Hierarchy
}

// procsSubsystem counts a v1 hierarchy's processes whatever its
// controllers: containerd only needs a name and the mapping from a cgroup
// path to its directory.
type procsSubsystem struct {
	name  cgroup1.Name
	mount string
}

func (s procsSubsystem) Name() cgroup1.Name { return s.name }

func (s procsSubsystem) Path(p string) string { return filepath.Join(s.mount, p) }

// NewUsageReader prepares the v1 hierarchies of l. containerd's v1
// statistics controllers find their hierarchy as <root>/<controller> (the
// layout of systemd machines, where co-mounted controllers get symlinks);
// a statistic whose controller is not reachable that way is left out
// (Usage.HasCPU or HasMemory false), the task count always works.
func NewUsageReader(l *cgroupfs.Layout) *UsageReader {
	r := &UsageReader{v1: map[*cgroupfs.Hierarchy]cgroup1.Hierarchy{}}
	for _, h := range l.Hierarchies {
		if h.Version != cgroupfs.V1 {
			continue
		}
		subs := []cgroup1.Subsystem{procsSubsystem{name: cgroup1.Name(h.Name()), mount: h.Mountpoint}}
		root := filepath.Dir(h.Mountpoint)
		reachable := func(ctrl string) bool {
			if !slices.Contains(h.Controllers, ctrl) {
				return false
			}
			a, err1 := filepath.EvalSymlinks(filepath.Join(root, ctrl))
			b, err2 := filepath.EvalSymlinks(h.Mountpoint)
			return err1 == nil && err2 == nil && a == b
		}
		if reachable("cpuacct") {
			subs = append(subs, cgroup1.NewCpuacct(root))
		}
		if reachable("memory") {
			subs = append(subs, cgroup1.NewMemory(root))
		}
		r.v1[h] = func() ([]cgroup1.Subsystem, error) { return subs, nil }
	}
	return r
}

// ErrNoCgroup is matched by Read's error when the cgroup does not exist.
var ErrNoCgroup = errors.New("cgroup does not exist")

// Read returns the usage of cgroup path (absolute in h's namespace view, as
// the engine's destinations are) in h.
func (r *UsageReader) Read(h *cgroupfs.Hierarchy, path string) (Usage, error) {
	rel, err := h.Rel(path)
	if err != nil {
		return Usage{}, err
	}
	if h.Version == cgroupfs.V2 {
		return readV2(h, rel, path)
	}
	hier, ok := r.v1[h]
	if !ok {
		return Usage{}, fmt.Errorf("metrics: %s is not a hierarchy of the layout", h.Mountpoint)
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(rel), cgroup1.WithHierarchy(hier))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			err = ErrNoCgroup
		}
		return Usage{}, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	procs, err := cg.Processes(cgroup1.Name(h.Name()), false)
	if err != nil {
		return Usage{}, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	u := Usage{Tasks: len(procs)}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return u, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	subs, _ := hier()
	for _, s := range subs {
		switch s.Name() {
		case cgroup1.Cpuacct:
			if st.CPU != nil && st.CPU.Usage != nil {
				u.CPUSeconds, u.HasCPU = float64(st.CPU.Usage.Total)/1e9, true
			}
		case cgroup1.Memory:
			if st.Memory != nil && st.Memory.Usage != nil {
				u.MemoryBytes, u.HasMemory = st.Memory.Usage.Usage, true
			}
		}
	}
	return u, nil
}

func readV2(h *cgroupfs.Hierarchy, rel, path string) (Usage, error) {
	mgr, err := cgroup2.Load(rel, cgroup2.WithMountpoint(h.Mountpoint))
	if err != nil {
		return Usage{}, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	procs, err := mgr.Procs(false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNoCgroup, err)
		}
		return Usage{}, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	u := Usage{Tasks: len(procs)}
	st, err := mgr.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory)
	if err != nil {
		return u, fmt.Errorf("metrics: %s:%s: %w", h.Name(), path, err)
	}
	if st.CPU != nil {
		u.CPUSeconds, u.HasCPU = float64(st.CPU.UsageUsec)/1e6, true
	}
	// memory.current exists only where the memory controller is enabled;
	// containerd then reads it as 0, indistinguishable from an empty cgroup,
	// so look for the file itself.
	if st.Memory != nil && fileExists(filepath.Join(h.Mountpoint, rel, "memory.current")) {
		u.MemoryBytes, u.HasMemory = st.Memory.Usage, true
	}
	return u, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
