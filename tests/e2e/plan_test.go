package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The rules of libcgroup's documented test plan for cgrulesengd, with the
// suite's names: sjo → cgresjo, cgtest → cgrecgtest, @cgroup → @cgrecgroup,
// peter → cgrepeter (never created), @root → @cgreroot. Real root is never a
// ruled identity; "*" is acceptable because --cgroup-root confines the
// daemon to the test directory. The line numbers are the plan's: cgresjo
// is line 1, cgrepeter line 5.
const planRules = `cgresjo      cpu          default
cgrecgtest   cpu          cgtest
%            memory       default
@cgrecgroup  cpu,memory   cgtest
cgrepeter    cpu          test1
%            memory       test2
@cgreroot    *            default
*            *            default
`

// TestDocumentedPlan runs libcgroup's test plan: six uid/gid changes, each
// checked in /proc/PID/cgroup for the cpu, memory and pids hierarchies and
// the cgroup2 one (unified). test1 and test2 do not exist: the cgrepeter rule
// and its "%" line must be skipped.
func TestDocumentedPlan(t *testing.T) {
	requireDaemon(t)
	hiers := []string{"cpu", "memory", "pids", "unified"}
	identities(t)
	e := newEnv(t, hiers, "default", "cgtest")
	e.writeRules(planRules)

	t.Run("check", func(t *testing.T) {
		// --check reports the unknown user with file:line (line 5) and,
		// since a rule for an unknown user is skipped with a warning,
		// exits 0.
		cmd := exec.Command(daemonBin, "--check", "-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root)
		out, err := cmd.CombinedOutput()
		if !regexp.MustCompile(`cgrules\.conf:5:.*cgrepeter`).Match(out) {
			t.Errorf("%v: no warning naming cgrepeter at cgrules.conf:5; output:\n%s", cmd.Args, out)
		}
		if err != nil {
			t.Errorf("%v: %v (only warnings: want exit 0); output:\n%s", cmd.Args, err, out)
		}
	})

	d := e.startDaemon(dopts{})
	root := e.cg("")
	def := e.cg("default")
	cgt := e.cg("cgtest")
	cases := []struct {
		name string
		o    hopts
		want map[string]string // hierarchy → cgroup; the others stay at root
	}{
		{"uid-cgresjo", hopts{user: "cgresjo"}, map[string]string{"cpu": def}},
		{"uid-cgreroot", hopts{user: "cgreroot"}, map[string]string{"cpu": cgt, "memory": cgt}},
		{"uid-cgrecgtest", hopts{user: "cgrecgtest"}, map[string]string{"cpu": cgt, "memory": def}},
		{"gid-cgreroot", hopts{group: "cgreroot"}, map[string]string{"cpu": def, "memory": def, "pids": def, "unified": def}},
		{"gid-cgrecgroup", hopts{group: "cgrecgroup"}, map[string]string{"cpu": cgt, "memory": cgt}},
		{"gid-cgreusers", hopts{group: "cgreusers"}, map[string]string{"cpu": def, "memory": def, "pids": def, "unified": def}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := *e
			e.t = t
			h := e.harness(c.o)
			for _, hier := range hiers {
				if want, ok := c.want[hier]; ok {
					waitCgroup(t, h.pid, hier, want, 2*time.Second)
				}
			}
			for _, hier := range hiers {
				if _, ok := c.want[hier]; !ok {
					expectCgroupStays(t, h.pid, hier, root, 300*time.Millisecond)
				}
			}
			if c.name == "uid-cgresjo" {
				// Each move is logged at info with pid, rule (file:line),
				// controller and destination.
				pidRe := regexp.MustCompile(`\bpid=` + strconv.Itoa(h.pid) + `( |$)`)
				ctrlRe := regexp.MustCompile(`\bcontroller="?cpu"?( |$)`)
				line := d.waitLogFunc(0, func(l string) bool {
					return strings.Contains(l, "level=info ") && pidRe.MatchString(l) && ctrlRe.MatchString(l)
				}, fmt.Sprintf("at info level with pid=%d and controller=cpu", h.pid), time.Second)
				for _, re := range []string{
					`\brule="?[^ ]*cgrules\.conf:1"?( |$)`,
					`\bdest="?` + regexp.QuoteMeta(def) + `"?( |$)`,
				} {
					if !regexp.MustCompile(re).MatchString(line) {
						t.Errorf("move log line does not match %s: %s", re, line)
					}
				}
			}
			h.stop()
		})
	}
}

// TestCheckRejectsBrokenRules: --check fails on an unknown option word and
// names the line.
func TestCheckRejectsBrokenRules(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "default")
	e.writeRules("cgresjo cpu default\ncgrecgtest cpu default nosuchoption\n")
	cmd := exec.Command(daemonBin, "--check", "-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("%v: exit 0, want a failure; output:\n%s", cmd.Args, out)
	}
	if !strings.Contains(string(out), "cgrules.conf:2:") {
		t.Errorf("%v: output does not name cgrules.conf:2:\n%s", cmd.Args, out)
	}
}
