// Package cgroupfs knows where the cgroup hierarchies are mounted, where a
// task sits in each of them, and how to create cgroups and move processes.
//
// Discover reads /proc/self/mountinfo once and builds a Layout: the cgroup
// v1 hierarchies (one per set of co-mounted controllers, named "name=X"
// hierarchies included) and the cgroup2 ("unified") hierarchy. Mode tells
// "v1", "hybrid" or "v2". Controllers lists the names a rule may use and
// Resolve maps such a name to hierarchies. TaskPath picks a task's path
// in one hierarchy out of its /proc/PID/cgroup lines, and Within compares
// cgroup paths; both run per event and do not allocate.
//
// Paths: every cgroup path in this package is absolute within its
// hierarchy as seen from the daemon's cgroup namespace, the same frame as
// /proc/PID/cgroup and mountinfo's root field. A mount whose root is not
// "/" (a bind mount of a sub-tree) only gives access to paths at or below
// its root; others are rejected with ErrOutsideMount.
//
// Mover creates cgroups and moves processes (writes to cgroup.procs: all
// threads move) using github.com/containerd/cgroups/v3 with hierarchies
// built once from the Layout, so nothing re-reads mountinfo per move.
// Loaded handles are cached per (hierarchy, path) and dropped when a
// cgroup turns out to be gone.
//
// Privileges: Discover needs nothing special. Create and Move need write
// access to the cgroup directories, i.e. root (or a delegated sub-tree).
// Moving another user's process additionally needs root in v1, and in v2
// write access to the common ancestor's cgroup.procs.
//
// Concurrency: a Layout is read-only after Discover and may be shared. A
// Mover is safe for concurrent use. Moves into the same v1 cgroup are
// serialised by containerd's per-handle mutex, which is held during its
// EINVAL retries (up to 5 x 30 ms): run Move on worker goroutines, never
// on the netlink reader's.
package cgroupfs
