package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// procIDs reads the Uid and Gid lines (real, effective, saved, fs) of every
// thread of pid.
func procIDs(t *testing.T, pid int) (uids, gids []string) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // a thread that just ended
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				uids = append(uids, strings.Join(strings.Fields(v), " "))
			}
			if v, ok := strings.CutPrefix(line, "Gid:"); ok {
				gids = append(gids, strings.Join(strings.Fields(v), " "))
			}
		}
	}
	return uids, gids
}

func allEqual(t *testing.T, what string, got []string, want string) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s: no threads", what)
	}
	for _, g := range got {
		if g != want {
			t.Errorf("%s: a thread has %q, want %q (all: %q)", what, g, want, got)
			return
		}
	}
}

// TestHarness checks the setuid harness itself (no daemon): uid and gid
// changes on every thread, real/effective/saved/fs alike, -g alone, both,
// the default (root), -exec keeping the pid, placement in the test
// directory, and errors.
func TestHarness(t *testing.T) {
	requireRoot(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"})
	sjo, err := user.Lookup("cgresjo")
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroup("cgrecgroup")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(id string) string { return strings.Repeat(id+" ", 3) + id }

	t.Run("user", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo"})
		uids, gids := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids(sjo.Uid))
		allEqual(t, "gid", gids, ids("0"))
		for _, hier := range []string{"cpu", "unified"} {
			waitCgroup(t, h.pid, hier, e.cg(""), 0)
		}
	})
	t.Run("numeric-user", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: sjo.Uid})
		uids, _ := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids(sjo.Uid))
	})
	t.Run("group-only", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{group: "cgrecgroup"})
		uids, gids := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids("0"))
		allEqual(t, "gid", gids, ids(grp.Gid))
	})
	t.Run("both", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo", group: "cgrecgroup"})
		uids, gids := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids(sjo.Uid))
		allEqual(t, "gid", gids, ids(grp.Gid))
	})
	t.Run("default-root", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{})
		uids, _ := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids("0"))
	})
	t.Run("exec", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo", exec: []string{"/bin/sleep", "300"}})
		deadline := time.Now().Add(2 * time.Second)
		for exeBase(h.pid) != "sleep" {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d did not exec sleep (exe %s)", h.pid, exeBase(h.pid))
			}
			time.Sleep(10 * time.Millisecond)
		}
		uids, _ := procIDs(t, h.pid)
		allEqual(t, "uid", uids, ids(sjo.Uid))
		if args := cmdline(h.pid); len(args) != 2 || args[1] != "300" {
			t.Errorf("cmdline %q", args)
		}
	})
	t.Run("sigterm-exit-0", func(t *testing.T) {
		e := *e
		e.t = t
		h := e.harness(hopts{user: "cgresjo"})
		h.stop()
		if code := h.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"-u", "cgrepeter"},
			{"-g", "cgrenosuchgroup"},
			{"-bogus"},
			{"extra"},
			{"-exec"},
			{"-u", "cgresjo", "-exec", filepath.Join(t.TempDir(), "nonexistent")},
		} {
			cmd := exec.Command(harnessBin, args...)
			out, err := cmd.Output()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Errorf("setuid %q: %v, want exit status 1", args, err)
				continue
			}
			if len(out) != 0 {
				t.Errorf("setuid %q printed %q on stdout", args, out)
			}
			if len(ee.Stderr) == 0 {
				t.Errorf("setuid %q: no message on stderr", args)
			}
		}
	})
	t.Run("help", func(t *testing.T) {
		out, err := exec.Command(harnessBin, "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-exec") || !strings.Contains(string(out), "-die-with-parent") {
			t.Errorf("setuid -h: %v\n%s", err, out)
		}
	})
}
