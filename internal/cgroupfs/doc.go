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
// Mover creates cgroups and moves processes. A move is one write(2) of the
// pid to the destination's cgroup.procs (all threads move), on a descriptor
// opened with a raw open(2) the first time and kept: never an *os.File,
// whose registration with the runtime's poller (cgroupfs files are
// pollable) costs two epoll_ctl calls and wakes the poller's thread. The
// descriptors are cached per (hierarchy, path) in a bounded LRU cache (a
// template such as %u can name a cgroup per user), are never closed while
// a move writes to them, and are all closed by Mover.Close. The bound is
// half of the process's open-file limit (RLIMIT_NOFILE; MaxOpenFor, at
// most MaxOpenCap), so that the rest of the daemon always has the other
// half; WithMaxOpen sets another. A write through the descriptor of a
// removed cgroup fails with ENODEV: the descriptor is dropped and the path
// opened once more, and if that fails the cgroup is reported missing
// (ENOENT). An open that fails with EMFILE or ENFILE closes the least
// recently used half of the cached descriptors, lowers the bound to what
// is left (it grows back by one per later open; Shortage, reported through
// WithShortageReport at most once a second) and is tried once more; if
// that fails too, Move's error matches ErrOutOfDescriptors: the move is
// lost, and the caller repairs it like any lost event. Mover.Shed does the
// same for a shortage the caller met elsewhere (a /proc read). Nothing else is retried or waited for: EINVAL (a task
// still being created) goes back to the caller at once.
//
// Privileges: Discover needs nothing special. Create and Move need write
// access to the cgroup directories, i.e. root (or a delegated sub-tree).
// Moving another user's process additionally needs root in v1, and in v2
// write access to the common ancestor's cgroup.procs.
//
// Concurrency: a Layout is read-only after Discover and may be shared. A
// Mover is safe for concurrent use; moves hold its cache's mutex only to
// look a descriptor up, never across a system call. A cached Move does not
// block beyond its one write, so it may run on any goroutine; Create
// (mkdir, controller files) is slower and belongs on workers.
package cgroupfs
