package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitDecision waits until the daemon logged, at debug level, that it
// looked at pid and left it where it is ("task already in place"), so that
// a check that the task stays put follows a decision rather than a slow
// daemon. ignored says whether the line must say ignored=true.
func (d *daemon) waitDecision(pid int, ignored bool, timeout time.Duration) string {
	d.e.t.Helper()
	pidRe := regexp.MustCompile(`\bpid=` + strconv.Itoa(pid) + `( |$)`)
	return d.waitLogFunc(0, func(l string) bool {
		return strings.Contains(l, `msg="task already in place"`) && pidRe.MatchString(l) &&
			strings.Contains(l, "ignored=true") == ignored
	}, fmt.Sprintf(`"task already in place" for pid %d (ignored=%v)`, pid, ignored), timeout)
}

// TestSubCgroupKept: a task already below its rule's destination (a user
// put it into sjo/network) is left there, in a v1 hierarchy (cpu) and in
// cgroup2 alike; a task exactly in sjo too. A task elsewhere, including in
// "sjonet" (whose name starts with "sjo" but which is not below it), is
// moved to sjo.
func TestSubCgroupKept(t *testing.T) {
	requireDaemon(t)
	identities(t)
	hiers := []string{"cpu", "unified"}
	e := newEnv(t, hiers, "sjo/network", "sjonet", "other")
	e.writeRules("cgresjo  cpu,unified  sjo\n")
	d := e.startDaemon(dopts{})

	for _, sub := range []string{"sjo/network", "sjo"} {
		t.Run("stays-in-"+strings.ReplaceAll(sub, "/", "-"), func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(hopts{user: "cgresjo", sub: sub})
			d.waitDecision(h.pid, false, 2*time.Second)
			for _, hier := range hiers {
				expectCgroupStays(t, h.pid, hier, e.cg(sub), 300*time.Millisecond)
			}
		})
	}
	for _, sub := range []string{"", "sjonet", "other"} {
		t.Run("moved-from-"+map[string]string{"": "root"}[sub]+sub, func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(hopts{user: "cgresjo", sub: sub})
			for _, hier := range hiers {
				waitCgroup(t, h.pid, hier, e.cg("sjo"), 2*time.Second)
			}
		})
	}
}

// TestRootDestination: a rule whose destination is the --cgroup-root itself
// ("/", or an empty quoted destination) still moves a task from a
// sub-cgroup up to the root: "at or below the destination" does not apply
// to the root, or no task in scope would ever move. A task at the root is
// left there.
func TestRootDestination(t *testing.T) {
	requireDaemon(t)
	identities(t)
	hiers := []string{"cpu", "unified"}
	e := newEnv(t, hiers, "a/b", "c")
	e.writeRules("cgresjo  cpu,unified  /\ncgrecgtest  cpu,unified  \"\"\n")
	d := e.startDaemon(dopts{})
	for _, c := range []struct{ user, sub string }{
		{"cgresjo", "a/b"}, {"cgresjo", "c"}, {"cgrecgtest", "a/b"}, {"cgrecgtest", "c"},
	} {
		t.Run(c.user+"-from-"+strings.ReplaceAll(c.sub, "/", "-"), func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(hopts{user: c.user, sub: c.sub})
			for _, hier := range hiers {
				waitCgroup(t, h.pid, hier, e.cg(""), 2*time.Second)
			}
		})
	}
	t.Run("stays-at-root", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo"})
		d.waitDecision(h.pid, false, 2*time.Second)
		for _, hier := range hiers {
			expectCgroupStays(t, h.pid, hier, e.cg(""), 300*time.Millisecond)
		}
	})
}

// TestIgnoreRule: with "cgresjo CTRL keep ignore" followed by "cgresjo CTRL
// other", a task of cgresjo at or below keep is left alone (the daemon logs
// ignored=true), and one anywhere else (the root, a sibling, "keepx" whose
// name starts with "keep") falls through to the next rule and is moved to
// other. On cgroup v1 (cpu), on cgroup2 of the hybrid layout (unified), and
// with the daemon seeing cgroup2 alone (pure v2, a private mount
// namespace), where libcgroup's ignore rules do not work.
func TestIgnoreRule(t *testing.T) {
	requireDaemon(t)
	for _, c := range []struct {
		name   string
		hier   string // where the test places and watches tasks
		ctrl   string // what the rules name
		pureV2 bool
	}{
		{"v1-cpu", "cpu", "cpu", false},
		{"v2-unified", "unified", "unified", false},
		{"pure-v2", "unified", "cpu", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.pureV2 {
				if _, err := exec.LookPath("unshare"); err != nil {
					t.Skip("needs unshare(1)")
				}
			}
			identities(t)
			e := newEnv(t, []string{c.hier}, "keep/deeper", "keepx", "sibling", "other")
			e.writeRules(fmt.Sprintf("cgresjo  %s  keep  ignore\ncgresjo  %s  other\n", c.ctrl, c.ctrl))
			d := e.startDaemon(dopts{pureV2: c.pureV2})
			for _, sub := range []string{"keep", "keep/deeper"} {
				t.Run("kept-in-"+strings.ReplaceAll(sub, "/", "-"), func(t *testing.T) {
					e := *e
					e.t = t
					h := e.harness(hopts{user: "cgresjo", sub: sub})
					d.waitDecision(h.pid, true, 2*time.Second)
					expectCgroupStays(t, h.pid, c.hier, e.cg(sub), 300*time.Millisecond)
				})
			}
			for _, sub := range []string{"", "keepx", "sibling"} {
				t.Run("moved-from-"+map[string]string{"": "root"}[sub]+sub, func(t *testing.T) {
					e := *e
					e.t = t
					h := e.harness(hopts{user: "cgresjo", sub: sub})
					waitCgroup(t, h.pid, c.hier, e.cg("other"), 2*time.Second)
				})
			}
		})
	}
}

// TestCgroupNamespace: the daemon never moves a task outside its cgroup
// namespace. It runs as in a container: in its own cgroup namespace rooted
// at the test directory's "ns" cgroup of the unified hierarchy (unshare
// -C), with cgroup2 mounted afresh and --cgroup-root "/", the whole
// namespace. From there the paths of tasks outside "ns" read "/../..." in
// /proc/PID/cgroup (every other task of the machine, and the test's
// "outside" cgroup). A task of the ruled user in "outside" stays there,
// whether it changed its uid before the daemon started (the start-up scan)
// or after (an event); the same user's tasks in "ns/src" are moved to
// "ns/dest" ("/dest" as the daemon sees it), so the daemon did look.
func TestCgroupNamespace(t *testing.T) {
	requireDaemon(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1)")
	}
	identities(t)
	e := newEnv(t, []string{"unified"}, "ns/src", "ns/dest", "outside")
	// The daemon sees cgroup2 alone: "cpu" names it, as on a pure v2
	// machine.
	e.writeRules("cgresjo  cpu  dest\n")
	outsideBefore := e.harness(hopts{user: "cgresjo", sub: "outside"})
	insideBefore := e.harness(hopts{user: "cgresjo", sub: "ns/src"})
	d := e.startDaemon(dopts{cgroupNS: "ns"})
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/cgroup", d.pid)); err != nil {
		t.Fatal(err)
	} else if self, _ := os.Readlink("/proc/self/ns/cgroup"); ns == self {
		t.Fatalf("the daemon runs in the test's cgroup namespace (%s), not its own", ns)
	}

	t.Run("scan", func(t *testing.T) {
		// The scan is over before the pidfile is written.
		waitCgroup(t, insideBefore.pid, "unified", e.cg("ns/dest"), 2*time.Second)
		expectCgroupStays(t, outsideBefore.pid, "unified", e.cg("outside"), 300*time.Millisecond)
	})
	outsideEvent := 0
	t.Run("event", func(t *testing.T) {
		e := *e
		e.t = t
		outside := e.harness(hopts{user: "cgresjo", sub: "outside"})
		outsideEvent = outside.pid
		inside := e.harness(hopts{user: "cgresjo", sub: "ns/src"})
		// The kernel reported outside's setuid first: by the time inside
		// is moved, outside's event has been read and handed to a worker.
		waitCgroup(t, inside.pid, "unified", e.cg("ns/dest"), 2*time.Second)
		expectCgroupStays(t, outside.pid, "unified", e.cg("outside"), 300*time.Millisecond)
	})
	log := d.log()
	if n := strings.Count(log, `msg="moved task"`); n != 2 {
		t.Errorf("the daemon logged %d moves, want 2 (the two tasks in ns/src):\n%s", n, shortLog(log))
	}
	// Staying put is not enough (a move that failed leaves the task in
	// place too): the daemon must not have tried, nor read more of the
	// task than its cgroups (it logs every decision at debug level). With
	// the "/.." check removed, the kernel does move these tasks (as root,
	// from the initial user namespace), and this test fails.
	for _, pid := range []int{outsideBefore.pid, outsideEvent} {
		if re := regexp.MustCompile(`\bpid=` + strconv.Itoa(pid) + `\b`); re.MatchString(log) {
			t.Errorf("the daemon logged about pid %d, which is outside its cgroup namespace:\n%s", pid, shortLog(log))
		}
	}
}
