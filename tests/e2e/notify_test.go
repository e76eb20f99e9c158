package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A notification received on the test's NOTIFY_SOCKET.
type notification struct {
	text    string
	pid     int    // the sender, from SCM_CREDENTIALS
	pidfile string // the daemon's pidfile at the moment it arrived ("" = none)
}

// notifySocket is a systemd-style notification socket: a datagram socket
// that learns each sender's pid. Every message is read as soon as it
// arrives, and the pidfile is read at that moment.
type notifySocket struct {
	path string
	msgs chan notification
}

func newNotifySocket(t *testing.T, pidfile string) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgre-notify-") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan notification, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		for {
			nb, noob, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				close(n.msgs)
				return
			}
			m := notification{text: string(buf[:nb])}
			if data, err := os.ReadFile(pidfile); err == nil {
				m.pidfile = strings.TrimSpace(string(data))
			}
			if scms, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil {
				for _, s := range scms {
					if cred, err := unix.ParseUnixCredentials(&s); err == nil {
						m.pid = int(cred.Pid)
					}
				}
			}
			n.msgs <- m
		}
	}()
	return n
}

// next returns the next notification, failing the test after timeout.
func (n *notifySocket) next(t *testing.T, timeout time.Duration) notification {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			t.Fatal("notification socket closed")
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no notification within %v", timeout)
	}
	return notification{}
}

// expect returns the next notification whose first line is first; any
// other notification before it (only STATUS= refreshes may come between)
// fails the test.
func (n *notifySocket) expect(t *testing.T, first string, timeout time.Duration) notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := n.next(t, time.Until(deadline))
		line, _, _ := strings.Cut(m.text, "\n")
		if line == first {
			return m
		}
		if !strings.HasPrefix(line, "STATUS=") {
			t.Fatalf("got notification %q, want %s", m.text, first)
		}
	}
}

func monotonicUsec() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()) / 1000
}

// checkReloading checks a RELOADING=1 notification: MONOTONIC_USEC is a
// CLOCK_MONOTONIC time between after and now.
func checkReloading(t *testing.T, m notification, after uint64) {
	t.Helper()
	var usec string
	for _, l := range strings.Split(m.text, "\n") {
		if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
			usec = v
		}
	}
	n, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || n < after || n > monotonicUsec() {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC time in µs after %d: %q", usec, after, m.text)
	}
}

// TestNotifyReadiness: with NOTIFY_SOCKET the daemon's first notification
// is READY=1, sent by the daemon's own pid once it is ready (the pidfile,
// written when it is subscribed and has scanned /proc, already names it),
// and a setuid made right after READY=1 is classified. Every reload, by
// signal or by an edit of the rules (and a failed one too), is framed by
// RELOADING=1 (with MONOTONIC_USEC) and READY=1, after which the new rules
// are in force at once. SIGTERM sends STOPPING=1.
func TestNotifyReadiness(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "new", "newer")
	e.writeRules("cgresjo  cpu  old\n")
	pidfile := filepath.Join(e.dir, "run", "cgrulesengd.pid")
	n := newNotifySocket(t, pidfile)
	d := e.startDaemon(dopts{env: []string{"NOTIFY_SOCKET=" + n.path}})

	m := n.next(t, 5*time.Second)
	if !strings.HasPrefix(m.text, "READY=1\n") {
		t.Fatalf("first notification %q, want READY=1 first", m.text)
	}
	if m.pid != d.pid {
		t.Errorf("READY=1 sent by pid %d, want the daemon's (main) pid %d", m.pid, d.pid)
	}
	if m.pidfile != strconv.Itoa(d.pid) {
		t.Errorf("READY=1 arrived before the daemon was ready: the pidfile held %q, want %d", m.pidfile, d.pid)
	}
	if !strings.Contains(m.text, "\nSTATUS=1 rules loaded, ") {
		t.Errorf("READY=1 without the STATUS= line: %q", m.text)
	}
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	// A reload by signal: the rules are the same, the framing is checked.
	t0 := monotonicUsec()
	d.signal(syscall.SIGUSR2)
	checkReloading(t, n.expect(t, "RELOADING=1", 3*time.Second), t0)
	m = n.expect(t, "READY=1", 3*time.Second)
	if !strings.Contains(m.text, "STATUS=1 rules loaded, 1 tasks moved,") {
		t.Errorf("READY=1 after the reload: %q", m.text)
	}

	// A reload by an edit: once READY=1 is back, the new rule applies to
	// the very next setuid.
	t0 = monotonicUsec()
	e.replaceRules("cgresjo  cpu  new\n")
	checkReloading(t, n.expect(t, "RELOADING=1", 3*time.Second), t0)
	n.expect(t, "READY=1", 3*time.Second)
	h2 := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h2.pid, "cpu", e.cg("new"), 2*time.Second)

	// A failed reload keeps the rules and says so.
	e.replaceRules("cgresjo  cpu  newer  nosuchoption\n")
	n.expect(t, "RELOADING=1", 3*time.Second)
	m = n.expect(t, "READY=1", 3*time.Second)
	if !strings.Contains(m.text, "STATUS=reload failed, previous rules kept: 1 rules loaded") {
		t.Errorf("READY=1 after a failed reload: %q", m.text)
	}

	d.signal(syscall.SIGTERM)
	m = n.expect(t, "STOPPING=1", 5*time.Second)
	if m.pid != d.pid {
		t.Errorf("STOPPING=1 sent by pid %d, want %d", m.pid, d.pid)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// TestNotifyForeground: under a service manager (NOTIFY_SOCKET set) the
// daemon started without -n stays in the foreground, as Type=notify needs:
// the process started is the one that reports READY=1 and keeps running.
// With broken rules it exits 1 without READY=1, its STATUS= naming the
// file and line.
func TestNotifyForeground(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old")
	e.writeRules("cgresjo  cpu  old\n")
	run := filepath.Join(e.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(run, "cgrulesengd.pid")
	start := func(n *notifySocket) (*exec.Cmd, chan struct{}, *bytes.Buffer) {
		cmd := exec.Command(daemonBin, e.daemonArgs(pidfile, filepath.Join(run, "cgrulesengd.log"))...)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			select {
			case <-done:
			default:
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}
		})
		return cmd, done, &out
	}

	n := newNotifySocket(t, pidfile)
	cmd, done, out := start(n)
	m := n.expect(t, "READY=1", 10*time.Second)
	if m.pid != cmd.Process.Pid || m.pidfile != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("READY=1 from pid %d with pidfile %q; want both to be the started process %d (no detaching)", m.pid, m.pidfile, cmd.Process.Pid)
	}
	select {
	case <-done:
		t.Fatalf("the started process exited (%v) although it is the daemon; output: %s", cmd.ProcessState, out)
	case <-time.After(200 * time.Millisecond):
	}
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-done

	e.writeRules("cgresjo  cpu  old  nosuchoption\n")
	n2 := newNotifySocket(t, pidfile)
	cmd, done, out = start(n2)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon with broken rules did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d with broken rules, want 1; output: %s", code, out)
	}
	var got []string
	for {
		select {
		case m := <-n2.msgs:
			got = append(got, m.text)
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
	want := "STATUS=failed: loading rules: " + e.rules + ":1:"
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("notifications of a failed start: %q, want one starting %q (and no READY=1)", got, want)
	}
}
