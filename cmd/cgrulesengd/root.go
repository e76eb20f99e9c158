package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

// checkCgroupRoot looks for the --cgroup-root cgroup in every hierarchy.
//
// Missing in all of them is an error: the daemon acts only on tasks below
// the root, no task can be in a cgroup that does not exist, so it would run
// and never do anything; a typo is the likely cause, and a service that
// fails to start says so where a silent one would not. (A root that another
// service creates later is an ordering to fix in the service manager.) On a
// pure v2 machine there is one hierarchy, so missing there is missing
// everywhere.
//
// Missing in some is only a warning, returned as the hierarchies concerned:
// on v1 and hybrid machines a delegated subtree often exists only in the
// hierarchies a site uses (cpu and memory, not freezer), and the daemon then
// acts in those; refusing would break such setups.
func checkCgroupRoot(l *cgroupfs.Layout, root string, exists func(h *cgroupfs.Hierarchy, path string) bool) (missing []string, err error) {
	if root == "/" {
		return nil, nil
	}
	var dirs []string
	for _, h := range l.Hierarchies {
		if !exists(h, root) {
			missing = append(missing, h.Name())
			dirs = append(dirs, filepath.Join(h.Mountpoint, root))
		}
	}
	if len(missing) > 0 && len(missing) == len(l.Hierarchies) {
		return nil, fmt.Errorf("--cgroup-root %s exists in no cgroup hierarchy (looked for %s): no task can be below it, so nothing would ever be moved; create it first or fix the path", root, strings.Join(dirs, ", "))
	}
	return missing, nil
}
