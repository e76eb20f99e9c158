package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadEnv starts a daemon whose rules send cgresjo's processes to cpu
// cgroup "old", and checks that they do.
func reloadEnv(t *testing.T) (*env, *daemon) {
	t.Helper()
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "new", "newer")
	e.writeRules("cgresjo  cpu  old\n")
	d := e.startDaemon(dopts{})
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)
	return e, d
}

// signalReload checks that sig makes the daemon load its rules again when
// nothing it could watch changed: the rules name a user, cgrenobody, that
// does not exist when the daemon starts (the rule is skipped) and is created
// afterwards; names are resolved at load, so only a reload brings the rule
// into force.
func signalReload(t *testing.T, sig syscall.Signal) *daemon {
	t.Helper()
	requireDaemon(t)
	identities(t, "cgrenobody")
	e := newEnv(t, []string{"cpu"}, "old", "new")
	e.writeRules("cgrenobody  cpu  new\ncgresjo  cpu  old\n")
	d := e.startDaemon(dopts{})
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	addUser(t, "cgrenobody")
	before := e.harness(hopts{user: "cgrenobody"})
	time.Sleep(300 * time.Millisecond)
	if got, _, _ := cgroupOf(before.pid, "cpu"); got != e.cg("") {
		t.Logf("note: cgrenobody's process went to %s before any reload (names resolved at event time?); the reload check below proves less", got)
	}
	before.stop()

	d.signal(sig)
	e.eventually(hopts{user: "cgrenobody"}, "cpu", e.cg("new"), 3*time.Second)
	// The old rules' other line still applies.
	h2 := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h2.pid, "cpu", e.cg("old"), 2*time.Second)
	return d
}

func TestReloadSIGUSR2(t *testing.T) {
	signalReload(t, syscall.SIGUSR2)
}

func TestReloadSIGHUP(t *testing.T) {
	d := signalReload(t, syscall.SIGHUP)
	// SIGHUP does not stop it (libcgroup's did).
	time.Sleep(200 * time.Millisecond)
	select {
	case <-d.done:
		t.Fatalf("the daemon exited after SIGHUP: %v", d.cmd.ProcessState)
	default:
	}
}

// TestSignalReopensLog: after the log file is renamed away (logrotate
// without copytruncate), SIGHUP and SIGUSR2 make the daemon continue its
// log in a new file of the same name.
func TestSignalReopensLog(t *testing.T) {
	requireDaemon(t)
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t, []string{"cpu"})
			e.writeRules("cgrepeter  cpu  nowhere\n") // no such user: no rule in force
			d := e.startDaemon(dopts{})
			rotated := d.logfile + ".1"
			if err := os.Rename(d.logfile, rotated); err != nil {
				t.Fatal(err)
			}
			d.signal(sig)
			d.waitLog(0, regexp.MustCompile(`reloading rules`), 3*time.Second)
			old, err := os.ReadFile(rotated)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(old), "ready") || strings.Contains(string(old), "reloading rules") {
				t.Errorf("the rotated log should end before the signal:\n%s", old)
			}
		})
	}
}

// TestReloadEditInPlace: rewriting the rules file in place (same inode) is
// seen by the daemon's watch, twice in a row.
func TestReloadEditInPlace(t *testing.T) {
	e, _ := reloadEnv(t)
	// Same inode: open with O_TRUNC and write.
	f, err := os.OpenFile(e.rules, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("cgresjo  cpu  new\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("new"), 3*time.Second)
	// And a second edit is seen too (the watch survives the first).
	e.writeRules("cgresjo  cpu  newer\n")
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("newer"), 3*time.Second)
}

// TestReloadSymlinkTargetEdit: when the rules file and a drop-in are
// symbolic links, editing their targets in place reloads (issue #13: only
// re-pointing the link did).
func TestReloadSymlinkTargetEdit(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "new", "newer")
	real := filepath.Join(e.dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(real, "cgrules.conf")
	dropin := filepath.Join(real, "dropin")
	for p, content := range map[string]string{target: "cgresjo  cpu  old\n", dropin: "# nothing yet\n"} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, e.rules); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dropin, filepath.Join(e.confDir, "link.conf")); err != nil {
		t.Fatal(err)
	}
	e.startDaemon(dopts{})
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	inPlace := func(p, content string) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	inPlace(target, "cgresjo  cpu  new\n")
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("new"), 3*time.Second)
	// The drop-in's target: its rule applies to a user the main file does
	// not name.
	inPlace(dropin, "cgrecgtest  cpu  newer\n")
	e.eventually(hopts{user: "cgrecgtest"}, "cpu", e.cg("newer"), 3*time.Second)
}

func TestReloadRenameOver(t *testing.T) {
	e, _ := reloadEnv(t)
	e.replaceRules("cgresjo  cpu  new\n")
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("new"), 3*time.Second)
	// The watch follows the new file: a second rename is seen too.
	e.replaceRules("cgresjo  cpu  newer\n")
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("newer"), 3*time.Second)
}

// TestReloadBrokenEditKeepsOldRules: an edit that does not load (an unknown
// option word) is logged as file:line at error level and the old rules stay
// in force, for file edits and for signals; fixing the file loads it.
func TestReloadBrokenEditKeepsOldRules(t *testing.T) {
	e, d := reloadEnv(t)
	errLine := regexp.MustCompile(`level=error.*cgrules\.conf:2:`)

	broken := "cgrecgtest  cpu  new\ncgresjo  cpu  new  nosuchoption\n"
	from := d.logSize()
	e.replaceRules(broken)
	d.waitLog(from, errLine, 3*time.Second)
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)
	expectCgroupStays(t, h.pid, "cpu", e.cg("old"), 300*time.Millisecond)
	// Nothing of the broken file is in force (no partial list): its first
	// line would move cgrecgtest.
	h2 := e.harness(hopts{user: "cgrecgtest"})
	expectCgroupStays(t, h2.pid, "cpu", e.cg(""), 500*time.Millisecond)

	from = d.logSize()
	d.signal(syscall.SIGUSR2)
	d.waitLog(from, errLine, 3*time.Second)
	h3 := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h3.pid, "cpu", e.cg("old"), 2*time.Second)

	e.replaceRules("cgresjo  cpu  new\n")
	e.eventually(hopts{user: "cgresjo"}, "cpu", e.cg("new"), 3*time.Second)
}

// TestStopSIGTERM: SIGTERM stops the daemon with status 0, removes the
// pidfile and logs the counters.
func TestStopSIGTERM(t *testing.T) {
	_, d := reloadEnv(t)
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0 (%v)", code, d.cmd.ProcessState)
	}
	if _, err := os.Stat(d.pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile %s still there after SIGTERM (stat: %v)", d.pidfile, err)
	}
	stats := regexp.MustCompile(`level=info msg="?stats"? `)
	var line string
	for _, l := range strings.Split(d.log(), "\n") {
		if stats.MatchString(l) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no stats line (level=info msg=stats ...) in the log:\n%s", d.log())
	}
	for _, c := range []string{"handled_events", "event_overflows", "repair_scans", "moves"} {
		if !regexp.MustCompile(`\b` + c + `=\d+`).MatchString(line) {
			t.Errorf("stats line has no %s= counter: %s", c, line)
		}
	}
	// One process was moved before the stop.
	if m := regexp.MustCompile(`\bmoves=(\d+)`).FindStringSubmatch(line); m != nil && m[1] == "0" {
		t.Errorf("stats line says moves=0 after a move: %s", line)
	}
}

// TestStopSIGINT: SIGINT also stops it cleanly.
func TestStopSIGINT(t *testing.T) {
	_, d := reloadEnv(t)
	d.signal(syscall.SIGINT)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit within 10s of SIGINT")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", code)
	}
	if _, err := os.Stat(d.pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile still there after SIGINT (stat: %v)", err)
	}
}

// TestSignalBurst (issue 19): with reloads slow (20,000 rules), a burst of
// 30 rounds of SIGUSR2, SIGHUP and SIGUSR1 gives at most one more reload
// than the one it starts (they were queued, one per signal up to a buffer
// of 8, the rest dropped), and a SIGTERM sent right after such a burst
// stops the daemon (it shared that buffer and was dropped with the rest).
func TestSignalBurst(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old")
	e.writeRules(fillerRules(20000) + "cgresjo  cpu  old\n")
	d := e.startDaemon(dopts{})
	burst := func() {
		for i := 0; i < 30; i++ {
			for _, s := range []syscall.Signal{syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGUSR1} {
				if err := syscall.Kill(d.pid, s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	reloads := regexp.MustCompile(`msg="reloading rules"`)
	done := regexp.MustCompile(`msg="rules reloaded"`)
	from := d.logSize()
	start := time.Now()
	burst()
	// Wait until the reloads are over: one done, and no other started for
	// twice as long as it took.
	d.waitLog(from, done, 30*time.Second)
	took := time.Since(start)
	for n := -1; ; {
		time.Sleep(2 * took)
		got := len(reloads.FindAllString(d.log()[from:], -1))
		if got == n {
			break
		}
		n = got
	}
	log := d.log()[from:]
	n := len(reloads.FindAllString(log, -1))
	t.Logf("%d reloads for 90 reload signals; the first took %v", n, took.Round(time.Millisecond))
	if n < 1 || n > 2 {
		t.Errorf("%d reloads for a burst of 90 reload signals, want 1 or 2 (one, and at most one more):\n%s", n, log)
	}
	if !strings.Contains(log, `msg=stats`) {
		t.Errorf("no stats line after the SIGUSR1s:\n%s", log)
	}

	burst()
	stopAt := time.Now()
	if code := d.stop(); code != 0 { // fails after 10 s
		t.Errorf("exit status %d after SIGTERM", code)
	}
	t.Logf("stopped %v after the SIGTERM that followed a burst", time.Since(stopAt).Round(time.Millisecond))
}
