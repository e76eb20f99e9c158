package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// Issue 20: slice destinations placed through a real systemd. systemd is
// not PID 1 here, so each test boots its own manager as PID 1 of its own
// namespaces (tests/sdbox) and removes it at the end; the daemon runs on
// the host (the proc connector talks to the initial pid namespace only)
// with --systemd-bus at the box's proxied private socket.

// sdEnv is an end-to-end environment with a real systemd: the suite's
// users, created before the box boots (so that its overlay of the host's
// /etc/passwd has them), a test directory in the host's cgroup2 hierarchy
// for raw destinations, and a box that sees the test's binaries and rules
// (bound read-only at their host paths).
type sdEnv struct {
	*env
	box *sdbox.Box
}

func newSDEnv(t testing.TB, o sdbox.Options) *sdEnv {
	t.Helper()
	requireDaemon(t)
	requireHierarchies(t, "unified")
	identities(t)
	e := newEnv(t, []string{"unified"})
	o.Binds = append(o.Binds, filepath.Dir(daemonBin), e.dir)
	if o.HostDir == "" {
		o.HostDir = "/run"
	}
	return &sdEnv{env: e, box: sdbox.Start(t, o)}
}

// logSize is the length of the environment's daemon log so far (every
// daemon of the environment appends to the same file), for waitLog.
func (s *sdEnv) logSize() int {
	data, _ := os.ReadFile(filepath.Join(s.dir, "run", "cgrulesengd.log"))
	return len(data)
}

// busArgs are the daemon's options for the box's manager.
func (s *sdEnv) busArgs() []string {
	return []string{"--systemd=on", "--systemd-bus", s.box.PrivateAddress}
}

// uid is a suite user's uid.
func uid(t testing.TB, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Uid
}

// runDaemon runs the daemon in the foreground until it exits by itself
// (a start that fails), with a deadline, and returns its exit status and
// output.
func runDaemon(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(daemonBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	close(done)
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, string(out)
}

// TestSystemdBadBus: a --systemd-bus that is not an address is a usage
// error (exit 2); one that names no socket, or a socket that does not speak
// D-Bus, fails the start (exit 1) naming the address, within the call
// timeout; --systemd-bus with --systemd=off is a usage error. No box.
func TestSystemdBadBus(t *testing.T) {
	requireDaemon(t)
	e := newEnv(t, []string{"unified"})
	e.writeRules("cgresjo  unified  a\n")
	base := []string{"-n", "-f", "-", "-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root,
		"--socket=", "--status-socket=", "--sched-slice=0"}

	for _, c := range []struct {
		bus, mode, want string
		code            int
	}{
		{"tcp:host=127.0.0.1,port=1", "on", "only unix:path=FILE", 2},
		{"unix:path=relative/private", "on", "must be absolute", 2},
		{"unix:path=/run/x", "off", "goes with --systemd=on or auto, not off", 2},
		{"unix:path=" + filepath.Join(e.dir, "nothing-here"), "on", "connect: no such file or directory", 1},
	} {
		code, out := runDaemon(t, append(base, "--systemd="+c.mode, "--systemd-bus="+c.bus)...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("--systemd=%s --systemd-bus=%s: exit %d, want %d and %q:\n%s", c.mode, c.bus, code, c.code, c.want, out)
		}
		if c.code == 1 && !strings.Contains(out, c.bus) {
			t.Errorf("--systemd-bus=%s: the error does not name the address:\n%s", c.bus, out)
		}
	}

	// A socket that is not D-Bus: it accepts and says something else.
	sock := filepath.Join(e.dir, "not-dbus")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	start := time.Now()
	code, out := runDaemon(t, append(base, "--systemd=on", "--systemd-bus=unix:path="+sock)...)
	if code != 1 || !strings.Contains(out, "unix:path="+sock) || !strings.Contains(out, "systemd unreachable") {
		t.Errorf("a socket that is not D-Bus: exit %d, want 1 naming it as unreachable:\n%s", code, out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the start took %v to fail", took)
	}
}

// TestSystemdOffSliceRules: with systemd off (--systemd=off, or auto on
// this machine, whose PID 1 is not systemd) a slice destination is an
// error at load naming file:line and why; --check says the same; a reload
// that brings one keeps the rules in force.
func TestSystemdOffSliceRules(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"unified"}, "raw")
	e.writeRules("cgresjo  unified  raw\n@cgrecgroup  *  batch-%u.slice\n")
	base := []string{"-n", "-f", "-", "-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root,
		"--socket=", "--status-socket=", "--sched-slice=0"}
	lineRe := regexp.QuoteMeta(e.rules) + `:2: destination "batch-%u\.slice" names a systemd slice .* but systemd does not place tasks here \(`
	for _, c := range []struct {
		mode, why string
	}{
		{"off", `--systemd=off\)`},
		{"auto", `--systemd=auto: PID 1 is ".*", not systemd\)`},
	} {
		code, out := runDaemon(t, append(base, "--systemd="+c.mode)...)
		if code != 1 || !regexp.MustCompile(lineRe+c.why).MatchString(out) {
			t.Errorf("daemon --systemd=%s: exit %d, want 1 and %s%s:\n%s", c.mode, code, lineRe, c.why, out)
		}
		cmd := exec.Command(daemonBin, "--check", "--systemd="+c.mode, "-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root)
		out2, err := cmd.CombinedOutput()
		if err == nil || !regexp.MustCompile(lineRe+c.why).Match(out2) {
			t.Errorf("--check --systemd=%s: %v, want exit 1 and %s%s:\n%s", c.mode, err, lineRe, c.why, out2)
		}
	}

	// A running daemon (raw rules only) keeps them when a reload brings a
	// slice destination.
	e.writeRules("cgresjo  unified  raw\n")
	d := e.startDaemon(dopts{extra: []string{"--systemd=off"}})
	from := d.logSize()
	e.replaceRules("cgresjo  unified  raw\n@cgrecgroup  *  batch-%u.slice\n")
	d.waitLog(from, regexp.MustCompile(`reload failed, the 1 rules loaded before stay in force`), 10*time.Second)
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "unified", e.cg("raw"), 2*time.Second)
}

// TestSystemdConnect: the daemon on the host reaches a manager in its own
// pid namespace through either kind of address (the proxied private
// socket, no Hello; the box's system bus, Hello first), logs what
// --systemd resolved to, loads a slice rule, and still moves tasks to raw
// destinations. Without --systemd the same host (PID 1 is not systemd)
// refuses slice rules, and says why in the log.
func TestSystemdConnect(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.mkdir("raw")
	s.writeRules("cgresjo  unified  raw\n@cgrecgroup  *  batch-%u.slice\n")
	for _, addr := range []string{s.box.PrivateAddress, s.box.SystemBusAddress} {
		from := s.logSize()
		d := s.startDaemon(dopts{extra: []string{"--systemd=on", "--systemd-bus", addr}})
		line := d.waitLog(from, regexp.MustCompile(`systemd: slice destinations are placed through the service manager`), 5*time.Second)
		for _, want := range []string{"at " + addr, "--systemd=on; this machine: PID 1 is", "manager_pid_ns_depth=1"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: the log line does not say %q: %s", addr, want, line)
			}
		}
		d.waitLog(from, regexp.MustCompile(`msg=ready .*rules=2`), 5*time.Second)
		h := s.harness(hopts{user: "cgresjo"})
		waitCgroup(t, h.pid, "unified", s.cg("raw"), 2*time.Second)
		h.stop()
		if code := d.stop(); code != 0 {
			t.Errorf("%s: exit %d after SIGTERM", addr, code)
		}
	}
	s.writeRules("cgresjo  unified  raw\n")
	from := s.logSize()
	d := s.startDaemon(dopts{})
	d.waitLog(from, regexp.MustCompile(`systemd: slice destinations are refused \(--systemd=auto: PID 1 is \\?".*\\?", not systemd\)`), 5*time.Second)
}

// TestSystemdLoadWarnings: on a systemd machine (the box: the daemon and
// --check run inside it, where PID 1 is a booted systemd owning the
// cgroup2 tree, so --systemd=auto turns on), a raw destination in a cgroup
// systemd manages is a warning naming file:line and what to write
// instead, from --check and from the daemon at load; one below a delegated
// cgroup (Delegate=yes: trusted.delegate) or a slice destination is not;
// --explain names the slice and the scope. On the host, where PID 1 is not
// systemd, the same rules get no such warning.
func TestSystemdLoadWarnings(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	if _, err := s.box.Run("systemd-run", "--quiet", "--unit=cgre-deleg", "--property=Delegate=yes", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	s.writeRules(`cgresjo      cpu     system.slice/cgre-raw
cgrecgtest   *       system.slice/cgre-deleg.service/jobs/%u
@cgrecgroup  *       batch-%u.slice
cgreroot     memory  users/%u
`)
	warned := func(out string) map[int]bool {
		m := map[int]bool{}
		for _, l := range regexp.MustCompile(regexp.QuoteMeta(s.rules)+`:(\d):.* which systemd manages: .*write a slice destination .* instead, or keep raw destinations below a delegated cgroup \(a unit with Delegate=yes\) and give that cgroup as --cgroup-root`).FindAllStringSubmatch(out, -1) {
			var n int
			fmt.Sscan(l[1], &n)
			m[n] = true
		}
		return m
	}
	want := map[int]bool{1: true, 4: true}
	out, err := s.box.Run(daemonBin, "--check", "-c", s.rules, "--config-dir", s.confDir)
	if err != nil || fmt.Sprint(warned(out)) != fmt.Sprint(want) {
		t.Errorf("--check in the box: %v; warned lines %v, want %v:\n%s", err, warned(out), want, out)
	}
	if !strings.Contains(out, "4 rules loaded, 2 warnings") {
		t.Errorf("--check in the box: want 4 rules and 2 warnings:\n%s", out)
	}
	out, err = s.box.Run(daemonBin, "--explain", "--user", "cgreroot", "-c", s.rules, "--config-dir", s.confDir)
	scope := "cgrulesengd-batch-cgreroot-" + uid(t, "cgreroot") + ".scope"
	if err != nil || !strings.Contains(out, "systemd slice batch-cgreroot.slice: the service manager puts the task into scope "+scope) ||
		!strings.Contains(out, "*\t/batch.slice/batch-cgreroot.slice/"+scope+"\n") {
		t.Errorf("--explain in the box: %v:\n%s", err, out)
	}

	// The daemon inside the box: it detects systemd, connects to the
	// manager's own private socket, loads the rules with the same
	// warnings, and then cannot subscribe to the kernel (the proc
	// connector answers the initial pid namespace only), which ends it
	// before it moves anything.
	out, err = s.box.Run(daemonBin, "-n", "-f", "-", "-vv", "-c", s.rules, "--config-dir", s.confDir,
		"--socket=", "--status-socket=", "--sched-slice=0")
	if err == nil || !strings.Contains(out, "subscribing to the kernel's process events") {
		t.Errorf("the daemon in the box should fail to subscribe; got %v:\n%s", err, out)
	}
	if !regexp.MustCompile(`systemd: slice destinations are placed through the service manager at unix:path=/run/systemd/private \(--systemd=auto: PID 1 is systemd, booted, in /init.scope`).MatchString(out) {
		t.Errorf("the daemon in the box did not log the detection:\n%s", out)
	}
	if fmt.Sprint(warned(out)) != fmt.Sprint(want) {
		t.Errorf("the daemon in the box warned about lines %v, want %v:\n%s", warned(out), want, out)
	}

	// On the host, PID 1 is not systemd: no warning, and the slice rule
	// needs --systemd=on.
	cmd := exec.Command(daemonBin, "--check", "--systemd=on", "-c", s.rules, "--config-dir", s.confDir)
	hostOut, err := cmd.CombinedOutput()
	if err != nil || len(warned(string(hostOut))) != 0 || !strings.Contains(string(hostOut), "4 rules loaded, 0 warnings") {
		t.Errorf("--check on the host: %v:\n%s", err, hostOut)
	}
	if _, err := os.Stat(s.box.HostCgroup("/system.slice/cgre-raw")); err == nil {
		t.Errorf("something created the raw destination in the box")
	}
}
