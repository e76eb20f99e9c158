// Package sdbox boots a real systemd as PID 1 of its own pid, mount,
// cgroup, uts, ipc and network namespaces, on a pure cgroup2 tree below a
// cgroup of the test, so that tests can place tasks through a real service
// manager on a machine whose PID 1 is not systemd. It is test-only: the
// unit-level integration tests (internal/systemd) and the end-to-end tests
// (tests/e2e) use it; the daemon never does.
//
// How a box is built (the steps of shared/notes/reference.md, "systemd as PID
// 1 in namespaces"): a cgroup /cgre-sdbox-<random> is created in the host's
// cgroup2 hierarchy and unshare(1) is started directly inside it
// (CLONE_INTO_CGROUP), so that the cgroup namespace's root is that cgroup.
// Inside, a shell makes every mount private, mounts an overlay whose lower
// layer is the host's "/" and whose upper layer is on a tmpfs (every write
// vanishes with the box), then proc (with /proc/sys read-only, so that
// systemd-sysctl and binfmt cannot change the host kernel), /sys
// read-only, cgroup2 with nsdelegate on /sys/fs/cgroup, a private minimal
// /dev (device nodes, a new devpts, a plain file as /dev/console), tmpfs on
// /run and /tmp, bind-mounts a host directory at /run/cgre-host and the
// caller's Options.Binds read-only at their own paths (programs a test
// built into /tmp, which the box's tmpfs hides). It masks
// timers.target (the host's timers would run inside) and the units that
// would reach beyond the box (modprobe@, udev, sysctl, binfmt, pstore,
// timesyncd), writes the caller's unit files, and a socket unit
// cgre-bus-proxy.socket listening on /run/cgre-host/private whose service
// runs systemd-socket-proxyd /run/systemd/private: systemd 252 refuses
// private-socket clients from outside its pid namespace, a client of the
// proxy is the proxy's. Then pivot_root, "mount --make-rshared /" and exec
// of /lib/systemd/systemd --unit=basic.target with container=cgre-sdbox.
// Boot waits for "systemctl is-system-running --wait" run through
// nsenter(1) in every namespace of the box.
//
// From the host, a box offers two bus addresses: PrivateAddress (the proxy:
// systemd's private protocol, no Hello; its socket is in the box's host
// directory, in Options.HostDir, default os.TempDir()) and
// SystemBusAddress (the box's dbus-daemon, through /proc/PID/root: a
// message bus, Hello first). Pids: HostPID turns a pid of the box (a
// unit's MainPID, what a program inside printed) into the host's,
// BoxCgroupOf a host pid into its cgroup as the box sees it, HostPIDs a
// box cgroup into host pids; ReadFile reads a file of the box.
//
// Teardown (Close, and Start's t.Cleanup) powers the box off, waits for its
// PID 1 to exit, and otherwise kills it: SIGKILL to the unshare process the
// box was started from (its --kill-child ends PID 1, and the kernel ends
// the rest of the pid namespace), then cgroup.kill on the box's cgroup, which
// holds only the box's processes. It then removes the box's cgroups and
// temporary directory. Nothing outside the box's cgroup, its temporary
// directory and its private mounts is touched: no host unit, no host mount,
// no process the box did not start. A test binary that dies takes its box
// with it (PR_SET_PDEATHSIG on unshare); a box left by a killed run is
// removed by the next Boot, under the lock.
//
// Only one box runs at a time on a machine: Boot takes an exclusive flock on
// /run/lock/cgre-sdbox.lock and Close releases it (booting systemd is
// CPU-heavy, and the machines are shared).
//
// Privileges: root (namespaces, mounts, cgroups). Boot returns an error
// wrapping ErrUnsupported, which Start turns into a skip with the reason,
// when not root, when a tool is missing, or when the kernel refuses the
// namespaces or mounts.
//
// Concurrency: a Box's methods are safe for concurrent use; Close is
// idempotent.
package sdbox
