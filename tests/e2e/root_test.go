package e2e

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCgroupRootMissing: a --cgroup-root that exists in no hierarchy is
// refused at start, on a hybrid machine and on a pure v2 one (issue #13: the
// daemon started and silently did nothing); one that exists in some
// hierarchies only starts, with a warning naming the others.
func TestCgroupRootMissing(t *testing.T) {
	requireDaemon(t)
	hybridAndPureV2(t, func(t *testing.T, pureV2 bool) {
		e := newEnv(t, []string{"cpu"})
		e.writeRules("cgrepeter  cpu  nowhere\n") // no such user: no rule in force
		missing := e.root + "-missing"
		args := append([]string{"-n"}, e.daemonArgs(e.dir+"/pid", e.dir+"/log", "--cgroup-root", missing)...)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var cmd *exec.Cmd
		if pureV2 {
			cmd = exec.CommandContext(ctx, "unshare", append([]string{"-m", "/bin/sh", "-c", pureV2Script, daemonBin}, args...)...)
		} else {
			cmd = exec.CommandContext(ctx, daemonBin, args...)
		}
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%v: %v, want exit status 1; output:\n%s", cmd.Args, err, out)
		}
		if want := "--cgroup-root " + missing + " exists in no cgroup hierarchy"; !strings.Contains(string(out), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	})
	t.Run("in-some", func(t *testing.T) {
		e := newEnv(t, []string{"cpu"}) // the test directory exists in cpu only
		e.writeRules("cgrepeter  cpu  nowhere\n")
		d := e.startDaemon(dopts{})
		// logrus quotes the message: the names appear as \"memory\".
		line := d.waitLog(0, regexp.MustCompile(`level=warning.*--cgroup-root `+e.root+` does not exist in hierarchies \[.*\\"memory\\"`), 2*time.Second)
		if strings.Contains(line, `\"cpu\"`) {
			t.Errorf("the warning names the cpu hierarchy, where the root exists: %s", line)
		}
	})
}
