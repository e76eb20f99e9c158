// Package systemd places tasks into slices the systemd way, through the
// service manager over D-Bus (github.com/coreos/go-systemd/v22/dbus on
// github.com/godbus/dbus/v5), so that the kernel, GetUnitByPID and
// `systemctl status` agree on where a task is; and it answers the
// questions the daemon asks about a systemd machine.
//
//   - Client (client.go) is a connection to one manager: its private socket
//     /run/systemd/private by default, or any unix:path= address (a socket
//     proxied to the private one, which needs no Hello, or a message bus,
//     which does: told apart by asking the manager for its Version before
//     any Hello, since a bus daemon drops such a client and the manager
//     never answers a Hello). The connection is re-established on the
//     next call after it drops (daemon-reexec closes every client).
//     StartScope creates a transient scope in a slice holding given tasks
//     and waits for its start job (JobRemoved); Attach moves tasks into an
//     existing delegated unit; UnitOf is GetUnitByPID.
//   - Pids: the daemon lives in the initial pid namespace; the manager may
//     not (a system container, the tests' sdbox). The manager's namespace
//     is the namespace of the socket's peer (SO_PEERCRED: the manager, the
//     proxy of a proxied socket or the bus daemon, all in it), and a task
//     is named by its /proc/PID/status NSpid entry at that depth, after
//     checking (the ns/pid inode, through NS_GET_PARENT for deeper tasks)
//     that the task's namespace is the manager's or below it: a task
//     elsewhere is ErrOutsideNamespace, never misplaced. Where the manager
//     takes PIDFDs (systemd 255+; probed once per connection with an empty
//     list, which systemd 252 refuses by name) scopes get pidfds, so that
//     a reused pid is never placed; descriptors only reach a manager that
//     serves the socket itself, not through a proxy.
//   - Placer (placer.go) is the asynchronous placer the engine uses: one
//     delegated scope per (slice, user), started by the user's first task
//     there and joined by the next ones (measured against one scope per
//     process: docs/performance.md). Submit never blocks; a bounded number
//     of workers bounds the calls in flight; placements wait per scope and
//     one call serves all those waiting when it starts (the children a
//     task forked before its move join its scope together); placements
//     that meet an unreachable manager are retried on timers a bounded
//     number of times, and once the manager answers again (a later call,
//     or the placer's probe) Reachable asks the caller to repair what was
//     given up; everything is counted (Stats, with histograms of the call
//     and placement latencies, histogram.go).
//   - Applier (applier.go) is the engine's classify.Applier for decisions
//     whose destination is a slice: Apply only submits to the Placer (no
//     call on the event reader; Cheap), a full queue is Applied.Lost (the
//     engine rescans), and each outcome goes back through the engine's
//     Completion with the time the manager reported the move (on
//     CLOCK_MONOTONIC), so that the engine follows the task's forks until
//     then; placements given up while the manager was unreachable are
//     repaired by a rescan (ApplierConfig.Repair) once it answers.
//     Failures are logged a few times a minute per kind.
//   - The manager's view: CgroupRoot is its root cgroup as a path of the
//     daemon's cgroup2 hierarchy (its namespace's PID 1 in /init.scope),
//     so that a slice's cgroup can be found from the daemon.
//   - Detect (detect.go) is --systemd=auto's probe: PID 1 is a booted
//     systemd and the cgroup2 hierarchy is its own; Managed tells whether a
//     raw destination lies in a cgroup systemd manages (not below a
//     delegated cgroup, marked with the trusted.delegate xattr, nor below
//     --cgroup-root).
//
// Unit names (escaping, slice nesting, validity) are package unitname's,
// which the rules parser shares. Errors are *Error values wrapping one of
// the Err* kinds (ErrUnreachable, ErrOutsideNamespace, ErrTaskGone,
// ErrUnitExists, ErrNoUnit, ErrNotDelegated, ErrJobFailed, ErrInvalid,
// ErrBusy, ErrClosed) and the D-Bus error.
//
// Privileges: the manager's private socket is root's (mode 0600), and
// placing another user's task needs root on the manager's side; reading
// another user's /proc/PID/status and ns/pid, and the trusted.* xattrs
// (CAP_SYS_ADMIN), need root here. Detect needs none.
//
// Concurrency: Client, Placer, Applier and their methods are safe for
// concurrent use. Client calls block for at most Config.CallTimeout and
// must not run on the event reader; go-systemd serialises the
// StartTransientUnit calls of one connection (its job listener's lock),
// attaches run concurrently (the Placer's, one scope at a time).
// Placer.Submit and Applier.Apply never block and may be called from the
// reader; Done callbacks (and Applier's completions) run on the placer's
// workers.
package systemd
