package e2e

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cgred service script (init/cgred) driven for real: the script of the
// tree, the daemon built from the tree, a test settings file, and a pidfile
// and lock directory of the test's own (the script's CGRED_* variables), so
// that nothing of the machine's service is touched.

type service struct {
	t        testing.TB
	e        *env
	script   string
	settings string // the settings file
	// settingsPath, when set, is given to the script as CGRED_SETTINGS
	// instead of settings (a link to it, say).
	settingsPath string
	pidfile      string
	lockdir      string
	logfile      string
	daemon       string   // CGRED_DAEMON
	wrap         []string // run the script through this command (unshare ...)
}

// newService prepares the script for e, with settings whose rules are e's,
// confined to e's test directory; stops in cleanup whatever daemon it
// started.
func newService(t testing.TB, e *env) *service {
	t.Helper()
	run := filepath.Join(e.dir, "run")
	s := &service{
		t: t, e: e,
		script:   filepath.Join(moduleDir, "init", "cgred"),
		settings: filepath.Join(e.dir, "settings", "cgred.conf"),
		pidfile:  filepath.Join(run, "cgred.pid"),
		lockdir:  filepath.Join(e.dir, "lock"),
		logfile:  filepath.Join(run, "cgrulesengd.log"),
		daemon:   daemonBin,
	}
	for _, d := range []string{run, s.lockdir, filepath.Dir(s.settings)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.writeSettings("")
	t.Cleanup(func() {
		for _, pid := range s.daemons() {
			t.Logf("cleanup: stopping daemon pid %d", pid)
			killAndWaitGone(pid, syscall.SIGTERM, 10*time.Second)
		}
		if t.Failed() {
			log, _ := os.ReadFile(s.logfile)
			t.Logf("daemon log:\n%s", shortLog(string(log)))
		}
	})
	return s
}

// writeSettings writes the settings file: the test's rules, log and
// confinement, then extra lines (which may override them).
func (s *service) writeSettings(extra string) {
	s.t.Helper()
	content := fmt.Sprintf(`# test settings
CONFIG_FILE="%s"
LOG_FILE="%s"
LOG="-vvv"
NODAEMON=""
SOCKET_USER=""
SOCKET_GROUP=""
OPTIONS="--config-dir=%s --cgroup-root=%s%s"
`, s.e.rules, s.logfile, s.e.confDir, s.e.root, eventsOption()) + extra
	if err := os.WriteFile(s.settings, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// run runs the script with args and returns its output and exit status.
func (s *service) run(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append(append([]string{}, s.wrap...), "/bin/sh", s.script), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"CGRED_DAEMON="+s.daemon,
		"CGRED_PIDFILE="+s.pidfile,
		"CGRED_LOCKDIR="+s.lockdir,
		"CGRED_SETTINGS="+cmp.Or(s.settingsPath, s.settings),
	)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	// A daemon that kept the script's output open would block Wait.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		s.t.Fatalf("%v: %v\nstdout: %s\nstderr: %s", argv, err, o.String(), e.String())
	}
	return o.String(), e.String(), code
}

// must runs the script and fails the test unless it exits with want.
func (s *service) must(want int, args ...string) (stdout, stderr string) {
	s.t.Helper()
	o, e, code := s.run(args...)
	if code != want {
		s.t.Fatalf("cgred %s: exit status %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, o, e)
	}
	return o, e
}

// pid is the pid the pidfile names (0: none).
func (s *service) pid() int {
	data, err := os.ReadFile(s.pidfile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// daemons lists the live daemons started with this service's pidfile (the
// only ones a test may stop).
func (s *service) daemons() []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || processGone(pid) {
			continue
		}
		for _, a := range cmdline(pid) {
			if a == "--pidfile="+s.pidfile {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// requireRunning checks that the pidfile names a live daemon started by
// the script, the only one, and returns its pid.
func (s *service) requireRunning() int {
	s.t.Helper()
	pid := s.pid()
	if pid <= 0 {
		s.t.Fatalf("no pid in %s", s.pidfile)
	}
	if processGone(pid) || exeBase(pid) != filepath.Base(s.daemon) {
		s.t.Fatalf("the pidfile names pid %d, which is not a running daemon (exe %q)", pid, exeBase(pid))
	}
	if all := s.daemons(); len(all) != 1 || all[0] != pid {
		s.t.Fatalf("daemons running with this pidfile: %v, want only %d", all, pid)
	}
	return pid
}

// requireStopped checks that no daemon of this service runs and that its
// pidfile and lock file are gone.
func (s *service) requireStopped() {
	s.t.Helper()
	if all := s.daemons(); len(all) != 0 {
		s.t.Fatalf("daemons still running: %v", all)
	}
	for _, f := range []string{s.pidfile, filepath.Join(s.lockdir, "cgred")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			s.t.Fatalf("%s still there (stat: %v)", f, err)
		}
	}
}

// TestServiceScript: start returns once the daemon is ready (its pidfile
// names it) → status 0 → a setuid task is moved → an edited rule that
// only a reload can bring into force (its user is created after the edit)
// takes effect after flash, same daemon → condrestart restarts it (new
// pid, still working) → stop → status 3, nothing left; condrestart while
// stopped starts nothing.
func TestServiceScript(t *testing.T) {
	requireDaemon(t)
	identities(t, "cgrenobody")
	e := newEnv(t, []string{"cpu"}, "old", "new")
	e.writeRules("cgresjo  cpu  old\n")
	s := newService(t, e)

	s.must(3, "status")
	start := time.Now()
	s.must(0, "start")
	took := time.Since(start)
	// start returned: the daemon must be ready now, no waiting.
	pid := s.requireRunning()
	t.Logf("start returned after %v, daemon pid %d", took.Round(time.Millisecond), pid)
	if _, err := os.Stat(filepath.Join(s.lockdir, "cgred")); err != nil {
		t.Errorf("no lock file after start: %v", err)
	}
	out, _ := s.must(0, "status")
	if !strings.Contains(out, strconv.Itoa(pid)) {
		t.Errorf("status does not name pid %d: %q", pid, out)
	}
	// start when running: 0, and still the same single daemon.
	s.must(0, "start")
	if got := s.requireRunning(); got != pid {
		t.Fatalf("start while running replaced the daemon: pid %d -> %d", pid, got)
	}

	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	// The edit is seen (the daemon watches the file) while cgrenobody does
	// not exist: the rule is skipped. Only a reload after the user exists
	// brings it into force.
	logBefore, _ := os.ReadFile(s.logfile)
	e.replaceRules("cgrenobody  cpu  new\ncgresjo  cpu  old\n")
	waitFileLine(t, s.logfile, len(logBefore), regexp.MustCompile(`rules reloaded.*rules=1\b`), 5*time.Second)
	addUser(t, "cgrenobody")
	before := e.harness(hopts{user: "cgrenobody"})
	expectCgroupStays(t, before.pid, "cpu", e.cg(""), 300*time.Millisecond)
	before.stop()
	s.must(0, "flash")
	e.eventually(hopts{user: "cgrenobody"}, "cpu", e.cg("new"), 3*time.Second)
	if got := s.requireRunning(); got != pid {
		t.Fatalf("flash changed the daemon: pid %d -> %d", pid, got)
	}
	s.must(0, "reload")
	s.must(0, "force-reload")

	s.must(0, "condrestart")
	pid2 := s.requireRunning()
	if pid2 == pid {
		t.Fatalf("condrestart did not restart the daemon (pid still %d)", pid)
	}
	if !processGone(pid) {
		t.Fatalf("the old daemon (pid %d) still runs after condrestart", pid)
	}
	h2 := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h2.pid, "cpu", e.cg("old"), 2*time.Second)
	s.must(0, "try-restart")
	pid3 := s.requireRunning()
	s.must(0, "restart")
	if got := s.requireRunning(); got == pid3 {
		t.Fatalf("restart did not restart the daemon (pid still %d)", got)
	}

	s.must(0, "stop")
	s.requireStopped()
	s.must(3, "status")
	s.must(0, "stop") // stopped already: 0

	s.must(0, "condrestart")
	s.must(0, "try-restart")
	s.requireStopped()
	s.must(3, "status")
	// Nothing moves tasks any more.
	h3 := e.harness(hopts{user: "cgresjo"})
	expectCgroupStays(t, h3.pid, "cpu", e.cg(""), 300*time.Millisecond)
}

// TestServiceScriptBrokenRules: a rules file that does not load makes
// start fail with the daemon's own file:line message, leaves no daemon, no
// pidfile and no lock file.
func TestServiceScriptBrokenRules(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old")
	e.writeRules("cgresjo  cpu  old\ncgresjo  cpu  old  nosuchoption\n")
	s := newService(t, e)
	_, stderr, code := s.run("start")
	if code == 0 {
		t.Fatalf("start with a broken rules file exited 0; stderr: %s", stderr)
	}
	if want := e.rules + ":2:"; !strings.Contains(stderr, want) {
		t.Errorf("start's stderr does not show the daemon's error %q...:\n%s", want, stderr)
	}
	s.requireStopped()
	s.must(3, "status")
}

// TestServiceScriptSettingsErrors: a SOCKET_GROUP or SOCKET_USER that does
// not exist, and a bad flag in OPTIONS, are clear errors (LSB 6: not
// configured) and start nothing.
func TestServiceScriptSettingsErrors(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old")
	e.writeRules("cgresjo  cpu  old\n")
	s := newService(t, e)
	for _, c := range []struct{ extra, want string }{
		{`SOCKET_GROUP="cgrenosuchgroup"`, "SOCKET_GROUP=cgrenosuchgroup: no such group"},
		{`SOCKET_USER="cgrenosuchuser"`, "SOCKET_USER=cgrenosuchuser: no such user"},
		{`OPTIONS="--no-such-flag"`, "unknown option --no-such-flag"},
	} {
		s.writeSettings(c.extra + "\n")
		_, stderr, code := s.run("start")
		if code != 6 {
			t.Errorf("%s: start exited %d, want 6; stderr: %s", c.extra, code, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%s: stderr does not say %q:\n%s", c.extra, c.want, stderr)
		}
		s.requireStopped()
	}
	// A group and user that exist pass the script's check: the start then
	// fails later, in the daemon's own option parsing (so that no daemon,
	// and no sticky socket, is created here).
	s.writeSettings("SOCKET_USER=\"cgresjo\"\nSOCKET_GROUP=\"cgrecgroup\"\nOPTIONS=\"--no-such-flag\"\n")
	_, stderr, code := s.run("start")
	if code != 6 || strings.Contains(stderr, "no such") || !strings.Contains(stderr, "unknown option --no-such-flag") {
		t.Errorf("existing socket user and group: start exited %d (want 6, from the daemon's usage error); stderr:\n%s", code, stderr)
	}
	s.requireStopped()
}

// TestServiceScriptUntrustedSettings (issue 19, item 7): the script runs
// its settings file as root, so a file that someone other than root could
// have written (not owned by root, writable by group or others, in a
// directory others may write, or a link to such a file) is refused with a
// clear message (LSB 6: not configured), and nothing in it runs; once it
// is root's alone, start works.
func TestServiceScriptUntrustedSettings(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old")
	e.writeRules("cgresjo  cpu  old\n")
	s := newService(t, e)
	// Were the file run, this would leave a mark.
	mark := filepath.Join(e.dir, "settings-ran")
	s.writeSettings("touch " + mark + "\n")
	dir := filepath.Dir(s.settings)
	link := filepath.Join(e.dir, "settings-link.conf")
	if err := os.Symlink(s.settings, link); err != nil {
		t.Fatal(err)
	}
	sjo, err := strconv.Atoi(uidOf(t, "cgresjo"))
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := os.Chmod(s.settings, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(s.settings, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s.settingsPath = ""
	}
	for _, c := range []struct {
		name  string
		setup func() error
		want  string
	}{
		{"world-writable", func() error { return os.Chmod(s.settings, 0o666) }, s.settings + " is writable by group or others (mode -rw-rw-rw-)"},
		{"group-writable", func() error { return os.Chmod(s.settings, 0o664) }, s.settings + " is writable by group or others (mode -rw-rw-r--)"},
		{"not root's", func() error { return os.Chown(s.settings, sjo, -1) }, fmt.Sprintf("%s is owned by uid %d, not root", s.settings, sjo)},
		{"writable directory", func() error { return os.Chmod(dir, 0o777) }, "directory " + dir + " is writable by group or others (mode drwxrwxrwx)"},
		{"link to a writable file", func() error { s.settingsPath = link; return os.Chmod(s.settings, 0o646) }, s.settings + " is writable by group or others (mode -rw-r--rw-)"},
	} {
		restore()
		if err := c.setup(); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := s.run("start")
		if code != 6 {
			t.Errorf("%s: start exited %d, want 6; stderr: %s", c.name, code, stderr)
		}
		if !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "runs it as root") {
			t.Errorf("%s: stderr does not say %q:\n%s", c.name, c.want, stderr)
		}
		if _, err := os.Stat(mark); err == nil {
			t.Fatalf("%s: the refused settings file was run", c.name)
		}
		s.requireStopped()
	}
	restore()
	s.must(0, "start")
	s.requireRunning()
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the trusted settings file was not run: %v", err)
	}
	s.must(0, "stop")
	s.requireStopped()
}

// TestServiceScriptCommands: the exit statuses LSB asks for when the daemon
// is not running, and the usage of an unknown command.
func TestServiceScriptCommands(t *testing.T) {
	requireDaemon(t)
	e := newEnv(t, []string{"cpu"})
	e.writeRules("")
	s := newService(t, e)
	_, stderr := s.must(2, "frobnicate")
	if !strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, "flash") {
		t.Errorf("usage on stderr should list flash: %q", stderr)
	}
	s.must(2)
	s.must(7, "flash")
	s.must(7, "reload")
	s.must(0, "stop")
	s.must(3, "status")
	// Dead with a pidfile left: 1; dead with a lock file left: 2. A pid
	// that is not cgrulesengd (this test process) does not count as
	// running.
	if err := os.WriteFile(s.pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(1, "status")
	s.must(7, "flash")
	if err := os.Remove(s.pidfile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.lockdir, "cgred"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(2, "status")
	// stop cleans both up.
	s.must(0, "stop")
	s.requireStopped()
	// No lock directory: no lock file, start and stop still work.
	s.lockdir = filepath.Join(e.dir, "no-such-lock-dir")
	s.must(0, "start")
	s.requireRunning()
	s.must(0, "stop")
	s.requireStopped()
	// The daemon not installed: 5.
	s.daemon = filepath.Join(e.dir, "no-such-daemon")
	s.must(5, "start")
}

// TestServiceScriptPureV2: the script starts the daemon where only cgroup2
// is mounted (libcgroup's refuses without a v1 mount), and it works there.
func TestServiceScriptPureV2(t *testing.T) {
	requireDaemon(t)
	requireHierarchies(t, "unified")
	identities(t)
	e := newEnv(t, []string{"unified"}, "old")
	e.writeRules("cgresjo  cpu  old\n")
	s := newService(t, e)
	s.wrap = []string{"unshare", "-m", "/bin/sh", "-c", pureV2Script}
	s.must(0, "start")
	pid := s.requireRunning()
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid)); err != nil || strings.Contains(string(data), " - cgroup ") {
		t.Fatalf("the daemon does not run on a pure cgroup v2 mount table (err %v)", err)
	}
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "unified", e.cg("old"), 2*time.Second)
	s.wrap = nil
	s.must(0, "stop")
	s.requireStopped()
}

// waitFileLine waits until the part of file after offset from has a line
// matching re.
func waitFileLine(t testing.TB, file string, from int, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(file)
		if from > len(data) {
			from = 0
		}
		if re.Match(data[from:]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q in %s within %v; since offset %d:\n%s", re, file, timeout, from, data[from:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
