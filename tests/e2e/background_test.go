package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBackgroundMode: without -n the command returns with status 0 once the
// background daemon is ready; the pidfile names the daemon, a live process
// other than the starter, which does its job. It is stopped by that pid.
func TestBackgroundMode(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "default")
	e.writeRules("cgresjo  cpu  default\n")
	pidfile := filepath.Join(e.dir, "cgrulesengd.pid")
	logfile := filepath.Join(e.dir, "cgrulesengd.log")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBin, e.daemonArgs(pidfile, logfile)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The daemon must not keep the starter's output open: Run would wait
	// for it. WaitDelay bounds that wait.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	starter := cmd.Process.Pid

	// Whatever happened, stop a daemon that the pidfile names.
	var daemonPid int
	t.Cleanup(func() {
		if daemonPid == 0 {
			data, _ := os.ReadFile(pidfile)
			daemonPid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		if daemonPid > 0 && daemonPid != os.Getpid() && isDaemon(daemonPid) {
			if !killAndWaitGone(daemonPid, syscall.SIGTERM, 10*time.Second) {
				t.Errorf("cleanup: daemon pid %d did not stop", daemonPid)
			}
		}
		if t.Failed() {
			log, _ := os.ReadFile(logfile)
			t.Logf("starter output:\n%s\ndaemon log:\n%s", out.String(), log)
		}
	})

	if errors.Is(err, exec.ErrWaitDelay) {
		// It exited 0 but something (the daemon) kept its output open.
		t.Errorf("%v: the background daemon keeps the starter's standard output or error open", cmd.Args)
	} else if err != nil {
		t.Fatalf("%v: %v after %v", cmd.Args, err, time.Since(start))
	}
	data, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("no pidfile when the starter returned: %v", err)
	}
	daemonPid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || daemonPid <= 0 {
		t.Fatalf("pidfile content %q", data)
	}
	if daemonPid == starter {
		t.Fatalf("the pidfile names the starter (pid %d), not a background daemon", starter)
	}
	if !isDaemon(daemonPid) {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(daemonPid) + "/exe")
		t.Fatalf("pid %d from the pidfile is not a running cgrulesengd (exe %q)", daemonPid, exe)
	}

	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("default"), 2*time.Second)

	if !killAndWaitGone(daemonPid, syscall.SIGTERM, 10*time.Second) {
		t.Fatalf("the daemon (pid %d) did not stop on SIGTERM", daemonPid)
	}
	daemonPid = -1
	// It removes its pidfile when it exits (it may be reaped a moment
	// before or after the file goes).
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := os.Stat(pidfile); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("pidfile still there after the background daemon stopped")
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isDaemon reports whether pid runs the daemon binary built for the tests.
func isDaemon(pid int) bool {
	if processGone(pid) {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == daemonBin
}

// TestBackgroundFatalErrorLogged: a background daemon that cannot start
// (its pidfile is a directory) says why in its log file, not only to the
// starter (issue #13: the log file was closed before the error that ended
// the daemon was written to it).
func TestBackgroundFatalErrorLogged(t *testing.T) {
	requireDaemon(t)
	e := newEnv(t, []string{"cpu"})
	e.writeRules("cgrepeter  cpu  nowhere\n") // no such user: no rule in force
	pidfile := filepath.Join(e.dir, "pid.d")
	if err := os.Mkdir(pidfile, 0o755); err != nil {
		t.Fatal(err)
	}
	logdir := filepath.Join(e.dir, "log")
	if err := os.Mkdir(logdir, 0o755); err != nil {
		t.Fatal(err)
	}
	logfile := filepath.Join(logdir, "cgrulesengd.log")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBin, e.daemonArgs(pidfile, logfile)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("%v: %v, want exit status 1; output:\n%s", cmd.Args, err, out)
	}
	if !strings.Contains(string(out), "writing pidfile") {
		t.Errorf("the starter did not report the pidfile error:\n%s", out)
	}
	log, err := os.ReadFile(logfile)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "level=error") && strings.Contains(line, "writing pidfile") {
			found = true
		}
	}
	if !found {
		t.Errorf("the log file has no error line about the pidfile:\n%s", log)
	}
}
