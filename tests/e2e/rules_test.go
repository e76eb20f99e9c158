package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestProcessRuleOnExec: a user:process rule applies when the user's process
// execs the program; the same user's other processes take the next rule.
func TestProcessRuleOnExec(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "sleepers", "default")
	e.writeRules("cgresjo:sleep  cpu  sleepers\ncgresjo  cpu  default\n")
	e.startDaemon(dopts{})

	t.Run("exec-sleep", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo", exec: []string{"/bin/sleep", "300"}})
		waitCgroup(t, h.pid, "cpu", e.cg("sleepers"), 2*time.Second)
		expectCgroupStays(t, h.pid, "cpu", e.cg("sleepers"), 300*time.Millisecond)
	})
	t.Run("no-exec", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo"})
		waitCgroup(t, h.pid, "cpu", e.cg("default"), 2*time.Second)
		expectCgroupStays(t, h.pid, "cpu", e.cg("default"), 300*time.Millisecond)
	})
}

// TestProcessRuleExecAway: a process a process rule moved is classified
// again when it execs a program no rule names, and so is its child (which
// ran the named program until its own exec): both go where the user's rule
// says, as libcgroup classifies every exec.
func TestProcessRuleExecAway(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "shells", "default")
	e.writeRules("cgresjo:sh  cpu  shells\ncgresjo  cpu  default\n")
	e.startDaemon(dopts{})
	dir, err := os.MkdirTemp("", "cgre-flag-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(dir, "go")
	// sh (a named program) starts a child that execs sleep, then waits for
	// the flag and execs tail.
	script := "sleep 300 & while [ ! -e " + flag + " ]; do sleep 0.05; done; exec tail -f /dev/null"
	h := e.harness(hopts{user: "cgresjo", exec: []string{"/bin/sh", "-c", script}})
	waitCgroup(t, h.pid, "cpu", e.cg("shells"), 2*time.Second)
	child := 0
	deadline := time.Now().Add(2 * time.Second)
	for child == 0 && time.Now().Before(deadline) {
		kids, _ := os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/task/" + strconv.Itoa(h.pid) + "/children")
		for _, f := range regexp.MustCompile(`\d+`).FindAll(kids, -1) {
			if cmd, _ := os.ReadFile("/proc/" + string(f) + "/cmdline"); string(cmd) == "sleep\x00300\x00" {
				child, _ = strconv.Atoi(string(f))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("the shell's sleep 300 child did not show up")
	}
	t.Cleanup(func() { killAndWaitGone(child, syscall.SIGKILL, 5*time.Second) })
	waitCgroup(t, child, "cpu", e.cg("default"), 2*time.Second)
	expectCgroupStays(t, h.pid, "cpu", e.cg("shells"), 200*time.Millisecond)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitCgroup(t, h.pid, "cpu", e.cg("default"), 2*time.Second)
}

// TestTemplateCreatesCgroups: a %u destination is created by the daemon, in
// a cgroup v1 hierarchy and in the cgroup2 one.
func TestTemplateCreatesCgroups(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"})
	e.writeRules("cgresjo  cpu,unified  users/%u\n")
	e.startDaemon(dopts{})
	for _, h := range []string{"cpu", "unified"} {
		if _, err := os.Stat(e.path(h, "users/cgresjo")); err == nil {
			t.Fatalf("%s: users/cgresjo exists before any process needed it", h)
		}
	}
	h := e.harness(hopts{user: "cgresjo"})
	for _, hier := range []string{"cpu", "unified"} {
		waitCgroup(t, h.pid, hier, e.cg("users/cgresjo"), 2*time.Second)
		if fi, err := os.Stat(e.path(hier, "users/cgresjo")); err != nil || !fi.IsDir() {
			t.Errorf("%s: %s: %v", hier, e.path(hier, "users/cgresjo"), err)
		}
	}
	// Another user's process is not moved by this rule.
	h2 := e.harness(hopts{user: "cgrecgtest"})
	expectCgroupStays(t, h2.pid, "cpu", e.cg(""), 500*time.Millisecond)
	if _, err := os.Stat(e.path("cpu", "users/cgrecgtest")); err == nil {
		t.Errorf("users/cgrecgtest was created")
	}
}

// TestStartupClassification: a process that changed its uid before the
// daemon started is moved by the start-up scan, by the time the daemon is
// ready.
func TestStartupClassification(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "default")
	e.writeRules("cgresjo  cpu,unified  default\n")
	h := e.harness(hopts{user: "cgresjo"})
	other := e.harness(hopts{user: "cgrecgtest"})
	expectCgroupStays(t, h.pid, "cpu", e.cg(""), 100*time.Millisecond)
	e.startDaemon(dopts{})
	// Ready means the start-up scan is done: allow only a short grace.
	waitCgroup(t, h.pid, "cpu", e.cg("default"), 500*time.Millisecond)
	waitCgroup(t, h.pid, "unified", e.cg("default"), 500*time.Millisecond)
	expectCgroupStays(t, other.pid, "cpu", e.cg(""), 300*time.Millisecond)
}

// TestOutsideCgroupRootUntouched: a process outside --cgroup-root (left in
// the test process's own cgroups) is not moved, even though rules match it;
// a process inside is moved by the same rules at the same time.
func TestOutsideCgroupRootUntouched(t *testing.T) {
	requireDaemon(t)
	identities(t)
	hiers := []string{"cpu", "memory", "pids", "unified"}
	e := newEnv(t, hiers, "default")
	e.writeRules("cgresjo  *  default\n*  *  default\n")
	e.startDaemon(dopts{})

	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	outside := e.harness(hopts{user: "cgresjo", outside: true})
	inside := e.harness(hopts{user: "cgresjo"})
	for _, hier := range hiers {
		waitCgroup(t, inside.pid, hier, e.cg("default"), 2*time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	got, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(outside.pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(self) {
		t.Errorf("the process outside --cgroup-root was moved:\n/proc/%d/cgroup:\n%s\nwant (the test's own):\n%s", outside.pid, got, self)
	}
}

// TestMultiThreadedSetuid: a multi-threaded process that changes its uid
// (glibc's setresuid signals every other thread first and changes the
// calling, main, thread last; the kernel reports one UID event per thread)
// is classified by its new credentials only: no rule matching its old
// identity (here "*", which matches the root it was) may act on it while
// the change is half done.
func TestMultiThreadedSetuid(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "memory"}, "sjo", "other")
	e.writeRules("cgresjo  cpu  sjo\n*  memory  other\n")
	e.startDaemon(dopts{})
	for i := 0; i < 5; i++ {
		h := e.harness(hopts{user: "cgresjo"})
		waitCgroup(t, h.pid, "cpu", e.cg("sjo"), 2*time.Second)
		expectCgroupStays(t, h.pid, "memory", e.cg(""), 200*time.Millisecond)
		h.stop()
	}
}

// TestMissingDestinationReportedAgain: a destination that is removed,
// recreated and removed again is reported missing each time it goes
// missing (issue #13: the second time tasks stayed behind without a word).
func TestMissingDestinationReportedAgain(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"})
	e.writeRules("cgresjo  cpu  fixed\n")
	d := e.startDaemon(dopts{})
	missing := regexp.MustCompile(`level=error.*destination cgroup does not exist.*dest=/cgre-e2e-[0-9a-f]+/fixed`)

	from := d.logSize()
	h := e.harness(hopts{user: "cgresjo"})
	d.waitLog(from, missing, 3*time.Second)
	h.stop()

	e.mkdir("fixed")
	h = e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("fixed"), 2*time.Second)
	h.stop()
	if err := removeCgroupTree(e.path("cpu", "fixed"), 3*time.Second); err != nil {
		t.Fatal(err)
	}

	from = d.logSize()
	h = e.harness(hopts{user: "cgresjo"})
	d.waitLog(from, missing, 3*time.Second)
	expectCgroupStays(t, h.pid, "cpu", e.cg(""), 100*time.Millisecond)
}
