package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 19, item 4: what a reload means for tasks that are running.

// TestReloadHalfWritten: an in-place rewrite of the rules file (truncate,
// then write, as `cat > cgrules.conf` or a tool that does not rename) is
// seen half done: the daemon loads the empty file, 0 rules, and says so
// at warning level. Tasks whose uid changes in that window must be
// classified by the rules that end up in force once the file is written
// (before: 0 of 5 were, ever).
func TestReloadHalfWritten(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "new")
	e.writeRules("cgresjo  cpu  old\n")
	d := e.startDaemon(dopts{})
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	from := d.logSize()
	f, err := os.OpenFile(e.rules, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.waitLog(from, regexp.MustCompile(`msg="rules reloaded".* rules=0\b`), 5*time.Second)
	const n = 5
	var tasks []*harness
	for range n {
		tasks = append(tasks, e.harness(hopts{user: "cgresjo"}))
	}
	time.Sleep(300 * time.Millisecond) // no rule: they stay where they are
	for _, h := range tasks {
		if got, _, _ := cgroupOf(h.pid, "cpu"); got != e.cg("") {
			t.Fatalf("pid %d was moved to %s while no rule was in force", h.pid, got)
		}
	}
	if _, err := f.WriteString("cgresjo  cpu  new\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	moved := 0
	deadline := time.Now().Add(5 * time.Second)
	for _, h := range tasks {
		for {
			got, _, _ := cgroupOf(h.pid, "cpu")
			if got == e.cg("new") {
				moved++
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("%d of %d tasks that changed uid while the rules file was empty were moved once it was written", moved, n)
	if moved != n {
		t.Errorf("%d of %d tasks moved to %s", moved, n, e.cg("new"))
	}
	if warn := regexp.MustCompile(`level=warning msg="rules reloaded with no rule \(1 before\)`); !warn.MatchString(d.log()[from:]) {
		t.Errorf("no warning about the reload that left no rule; log:\n%s", d.log()[from:])
	}
	// The task classified before the rewrite stays where the old rules put
	// it: a reload does not move running tasks (without
	// --reclassify-on-reload).
	expectCgroupStays(t, h.pid, "cpu", e.cg("old"), 300*time.Millisecond)
}

// reclassifyEnv: rules send cgresjo's tasks to "old"; a running task of
// cgresjo there, and another one marked sticky by root (as cgexec run by
// root marks) in "special". The rules are then edited to say "new".
func reclassifyEnv(t *testing.T, extra ...string) (e *env, d *daemon, plain, sticky *harness) {
	t.Helper()
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e = newEnv(t, []string{"cpu"}, "old", "new", "special")
	e.writeRules("cgresjo  cpu  old\n")
	d = e.startDaemon(dopts{extra: extra})
	plain = e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, plain.pid, "cpu", e.cg("old"), 2*time.Second)
	sticky = e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, sticky.pid, "cpu", e.cg("old"), 2*time.Second)
	if got := stickyClient(t, e.socketPath(), sticky.pid, 0, "0", "0"); got != "reply" {
		t.Fatalf("root marking pid %d: %q", sticky.pid, got)
	}
	placeIn(t, sticky.pid, e.path("cpu", "special"))
	from := d.logSize()
	e.replaceRules("cgresjo  cpu  new\n")
	d.waitLog(from, regexp.MustCompile(`msg="rules reloaded".* rules=1\b`), 5*time.Second)
	return e, d, plain, sticky
}

// TestReloadLeavesRunningTasks: by default a reload changes what happens
// at the next credential change or exec, not where running tasks are (as
// libcgroup); cgrulesengd --reclassify asks the running daemon, through
// its root-only status socket, to classify every running task again by
// the rules in force, once; a sticky task stays where it was put.
func TestReloadLeavesRunningTasks(t *testing.T) {
	e, _, plain, sticky := reclassifyEnv(t)
	expectCgroupStays(t, plain.pid, "cpu", e.cg("old"), 700*time.Millisecond)

	out, err := exec.Command(daemonBin, "--reclassify", "--status-socket", e.statusPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("--reclassify: %v\n%s", err, out)
	}
	t.Logf("--reclassify: %s", strings.TrimSpace(string(out)))
	if !regexp.MustCompile(`classified again: [1-9][0-9]* tasks looked at, [1-9][0-9]* moved`).Match(out) {
		t.Errorf("--reclassify says %q, want the tasks looked at and moved", out)
	}
	waitCgroup(t, plain.pid, "cpu", e.cg("new"), 2*time.Second)
	expectCgroupStays(t, sticky.pid, "cpu", e.cg("special"), 300*time.Millisecond)

	// No daemon: exit 3, as --status.
	if out, err := exec.Command(daemonBin, "--reclassify", "--status-socket", e.statusPath()+".none").CombinedOutput(); exitCode(err) != 3 {
		t.Errorf("--reclassify with no daemon: %v (want exit 3)\n%s", err, out)
	}
}

// TestReloadReclassifies: with --reclassify-on-reload every reload that
// loads also classifies the running tasks again; sticky tasks stay.
func TestReloadReclassifies(t *testing.T) {
	e, _, plain, sticky := reclassifyEnv(t, "--reclassify-on-reload")
	waitCgroup(t, plain.pid, "cpu", e.cg("new"), 3*time.Second)
	expectCgroupStays(t, sticky.pid, "cpu", e.cg("special"), 300*time.Millisecond)
}
