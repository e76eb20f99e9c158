// Package e2e holds the end-to-end tests of cgrulesengd: they build the
// daemon and the setuid harness (tests/setuid), create their own users and
// groups (names starting with "cgre") and their own cgroups (one directory
// /cgre-e2e-<random> per hierarchy they use), start the daemon confined to
// that directory with --cgroup-root, and check in /proc/PID/cgroup where the
// harness processes end up.
//
// The fork-race tests use small C programs (tests/tools: escape, storm,
// latency, floor, burst; Go cannot fork without exec), which TestMain compiles with
// gcc -O2 -Wall into its temporary directory; without gcc those tests skip.
// The tools are started like the harness (sh joins the test cgroups, then
// execs them), change their own credentials, stop by themselves after a
// bounded time and die with their parent; whatever they leave in the test
// cgroups is killed by pid in cleanup.
//
// BenchmarkE2E (make bench-e2e) is issue #4's end-to-end measurement; it
// reports and never fails on a target. So does BenchmarkSystemd, issue 20's.
//
// The tests of slice destinations (issue 20: systemd_test.go,
// systemd_place_test.go) boot a real systemd as PID 1 of its own
// namespaces for each test (tests/sdbox) and remove it at the end; the
// daemon stays on the host with --systemd-bus at the box's proxied private
// socket, and their tasks run in services of the box (the test's binaries
// are bound into it), named on the host through sdbox's pid helpers.
//
// The tests need root and a cgroup v1 hybrid layout with cgroup2 at
// /sys/fs/cgroup/unified (pure cgroup v2 is produced for the daemon alone in
// a private mount namespace). Without root every test is skipped.
//
// Safety: tests touch only what they create, stop only the processes they
// started, by pid, and clean up users, groups, cgroups and processes even
// when they fail (t.Cleanup). Harness processes get SIGKILL if the test
// binary dies (PR_SET_PDEATHSIG), and so do daemons started in the
// foreground. Runs are serialised with an flock on /run/lock/cgre-e2e.lock;
// at start a run removes what a crashed run left: the suite's fixed users
// and groups, /cgre-e2e-* cgroup directories (after killing the suite's own
// harness and tool processes inside them) and orphaned daemons confined to
// a /cgre-e2e-* root.
//
// Event source: CGRE_E2E_EVENTS=bpf or netlink runs every daemon of the
// suite with --events=bpf or --events=netlink (sources_test.go); make
// test-e2e runs the whole suite once with each. A BPF run on a machine that
// cannot load the BPF source is skipped, saying why.
//
// Run as root:
//
//	go test ./tests/... -v -count=1
//	CGRE_E2E_EVENTS=bpf go test ./tests/... -count=1
package e2e
