package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHybridV1AndUnified: on this hybrid machine the rules name cgroup v1
// controllers and the cgroup2 hierarchy by its pseudo-controller name
// "unified"; each rule moves the task in the hierarchies it names only.
func TestHybridV1AndUnified(t *testing.T) {
	requireDaemon(t)
	identities(t)
	hiers := []string{"cpu", "memory", "pids", "unified"}
	e := newEnv(t, hiers, "v1", "v2", "both")
	e.writeRules("cgresjo  unified  v2\n" +
		"cgrecgtest  cpu,pids  v1\n" +
		"cgreroot  memory,unified  both\n")
	e.startDaemon(dopts{})
	root := e.cg("")
	cases := []struct {
		user string
		want map[string]string
	}{
		{"cgresjo", map[string]string{"unified": e.cg("v2")}},
		{"cgrecgtest", map[string]string{"cpu": e.cg("v1"), "pids": e.cg("v1")}},
		{"cgreroot", map[string]string{"memory": e.cg("both"), "unified": e.cg("both")}},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(hopts{user: c.user})
			for hier, want := range c.want {
				waitCgroup(t, h.pid, hier, want, 2*time.Second)
			}
			for _, hier := range hiers {
				if _, ok := c.want[hier]; !ok {
					expectCgroupStays(t, h.pid, hier, root, 300*time.Millisecond)
				}
			}
		})
	}
}

// TestPureV2: the daemon runs where only cgroup2 is mounted, at
// /sys/fs/cgroup (a private mount namespace; the hierarchy is the one the
// test sees at /sys/fs/cgroup/unified). Every controller name resolves to
// it; "*" too; templates are created in it.
func TestPureV2(t *testing.T) {
	requireDaemon(t)
	requireHierarchies(t, "unified")
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1)")
	}
	identities(t)
	e := newEnv(t, []string{"unified"}, "default", "cgtest")

	// The namespace trick gives the daemon the very hierarchy the test
	// sees: a directory made here is visible there.
	out, err := exec.Command("unshare", "-m", "/bin/sh", "-c",
		strings.Replace(pureV2Script, `exec "$0" "$@"`, `test -d "/sys/fs/cgroup$0/default" && cat /proc/self/mountinfo`, 1),
		e.root).CombinedOutput()
	if err != nil {
		t.Fatalf("the pure cgroup v2 namespace does not show %s/default: %v\n%s", e.root, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " - cgroup ") {
			t.Fatalf("a cgroup v1 hierarchy is still mounted in the pure v2 namespace: %s", line)
		}
	}

	e.writeRules("cgresjo  cpu  default\n" +
		"cgrecgtest  memory,cpu  cgtest\n" +
		"cgreroot  pids  users/%u\n" +
		"@cgreusers  *  default\n")
	d := e.startDaemon(dopts{pureV2: true})

	cases := []struct {
		name string
		o    hopts
		want string
	}{
		{"uid-cgresjo", hopts{user: "cgresjo"}, e.cg("default")},
		{"uid-cgrecgtest", hopts{user: "cgrecgtest"}, e.cg("cgtest")},
		{"template", hopts{user: "cgreroot"}, e.cg("users/cgreroot")},
		{"gid-cgreusers-star", hopts{group: "cgreusers"}, e.cg("default")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(c.o)
			waitCgroup(t, h.pid, "unified", c.want, 2*time.Second)
		})
	}
	if _, err := os.Stat(e.path("unified", "users/cgreroot")); err != nil {
		t.Errorf("template cgroup: %v", err)
	}
	t.Run("no-match", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgrenobody"})
		expectCgroupStays(t, h.pid, "unified", e.cg(""), 500*time.Millisecond)
	})
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}
