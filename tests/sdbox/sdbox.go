package sdbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped by Boot's errors that mean "this machine cannot
// host a box" (not root, a tool missing, namespaces or mounts refused):
// tests skip on it rather than fail.
var ErrUnsupported = errors.New("cannot boot a systemd box here")

// Prefix starts the names of everything a box creates: its cgroup in the
// host's cgroup2 hierarchy and its temporary directory.
const Prefix = "cgre-sdbox-"

// lockFile serialises boxes across processes (see the package doc).
const lockFile = "/run/lock/cgre-sdbox.lock"

// Options configure a box.
type Options struct {
	// Units are extra files for the box's /etc/systemd/system, by path
	// relative to it ("batch-.slice.d/50-weight.conf"): unit files,
	// drop-ins, wants links are not supported (write a [Install]-less unit
	// and start it with Systemctl).
	Units map[string]string
	// BootTimeout bounds the boot (default 60 s: under load systemd takes
	// over 10 s).
	BootTimeout time.Duration
	// Logf, if set, receives progress lines (boot time, power-off time).
	Logf func(format string, args ...any)
	// Binds are host directories bind-mounted read-only at the same path
	// inside the box, after its own /tmp and /run: programs a test built
	// into a temporary directory, which the box's tmpfs would hide.
	Binds []string
	// HostDir is the host directory the box's own directory (its
	// overlay's tmpfs, the proxied socket of PrivateAddress) is made in
	// (default os.TempDir(); a daemon run with PrivateTmp needs one it
	// sees, such as /run).
	HostDir string
}

// Box is a booted systemd.
type Box struct {
	// PID is the host pid of the box's PID 1 (systemd).
	PID int
	// Cgroup is the box's cgroup as a host directory
	// (/sys/fs/cgroup/unified/cgre-sdbox-x, or /sys/fs/cgroup/cgre-sdbox-x
	// on a pure cgroup2 host); the box's "/" cgroup.
	Cgroup string
	// CgroupPath is the same cgroup as a path in the host's cgroup2
	// hierarchy ("/cgre-sdbox-x"), the frame of /proc/PID/cgroup's "0::"
	// line on the host.
	CgroupPath string
	// PrivateAddress is a D-Bus address from the host to the manager's
	// private socket through systemd-socket-proxyd (no Hello).
	PrivateAddress string
	// SystemBusAddress is a D-Bus address from the host to the box's
	// system bus (dbus-daemon, socket-activated: Hello first).
	SystemBusAddress string
	// BootTime is the time from starting unshare to
	// "systemctl is-system-running --wait" returning.
	BootTime time.Duration

	dir     string // host temporary directory
	cmd     *exec.Cmd
	exited  chan struct{} // closed when unshare has exited
	lock    *os.File
	logf    func(format string, args ...any)
	mu      sync.Mutex
	closed  bool
	closeEr error
}

// Start boots a box for a test and removes it when the test ends. It skips
// the test, saying why, when the machine cannot host a box.
func Start(tb testing.TB, opt Options) *Box {
	tb.Helper()
	if opt.Logf == nil {
		opt.Logf = tb.Logf
	}
	b, err := Boot(opt)
	if errors.Is(err, ErrUnsupported) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("removing the systemd box: %v", err)
		}
	})
	return b
}

// Boot boots a box and waits until its manager is running. On any error
// everything it created is removed.
func Boot(opt Options) (_ *Box, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root (namespaces, mounts, cgroups)", ErrUnsupported)
	}
	for _, tool := range []string{"unshare", "nsenter", "mount", "pivot_root", "mknod"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found (util-linux; scripts/test-deps.sh installs it)", ErrUnsupported, tool)
		}
	}
	for _, f := range []string{"/lib/systemd/systemd", "/lib/systemd/systemd-socket-proxyd"} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w: %s: %w (the systemd package; scripts/test-deps.sh installs it)", ErrUnsupported, f, err)
		}
	}
	if opt.BootTimeout <= 0 {
		opt.BootTimeout = 60 * time.Second
	}
	logf := opt.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	lock, err := takeLock()
	if err != nil {
		return nil, err
	}
	b := &Box{lock: lock, logf: logf, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			if cerr := b.Close(); cerr != nil {
				err = fmt.Errorf("%w (and removing the box: %v)", err, cerr)
			}
		}
	}()
	for _, d := range opt.Binds {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("sdbox: bind %q: not an absolute path", d)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("sdbox: bind %q: not a directory (%v)", d, err)
		}
	}
	if opt.HostDir == "" {
		opt.HostDir = os.TempDir()
	}
	removeStale(root, []string{os.TempDir(), opt.HostDir}, logf)

	name := Prefix + randomHex()
	b.Cgroup = filepath.Join(root, name)
	b.CgroupPath = "/" + name
	if err := os.Mkdir(b.Cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("%w: creating the box's cgroup: %w", ErrUnsupported, err)
	}
	b.dir, err = os.MkdirTemp(opt.HostDir, name+".")
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	for _, d := range []string{"mnt", "sock", "units"} {
		if err := os.Mkdir(filepath.Join(b.dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("sdbox: %w", err)
		}
	}
	for rel, content := range opt.Units {
		p := filepath.Join(b.dir, "units", filepath.Clean("/"+rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("sdbox: unit %s: %w", rel, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("sdbox: unit %s: %w", rel, err)
		}
	}
	b.PrivateAddress = "unix:path=" + filepath.Join(b.dir, "sock", "private")

	cg, err := os.Open(b.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	defer cg.Close()
	start := time.Now()
	b.cmd = exec.Command("unshare", "--pid", "--fork", "--mount", "--cgroup", "--uts", "--ipc", "--net",
		"--kill-child", "sh", "-c", insideScript, "sh", b.dir)
	b.cmd.Args = append(b.cmd.Args, opt.Binds...)
	var out lockedBuffer
	b.cmd.Stdout, b.cmd.Stderr = &out, &out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:      true,
		Pdeathsig:   syscall.SIGKILL,
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
	}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting unshare in %s: %w", ErrUnsupported, b.Cgroup, err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.exited)
	}()
	deadline := time.Now().Add(opt.BootTimeout)
	// PID 1 is unshare's child.
	for b.PID == 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sdbox: no PID 1 after %v: %s", opt.BootTimeout, out.String())
		}
		select {
		case <-b.exited:
			return nil, unshareFailed(out.String())
		case <-time.After(5 * time.Millisecond):
		}
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", b.cmd.Process.Pid, b.cmd.Process.Pid))
		if f := strings.Fields(string(c)); len(f) > 0 {
			b.PID, _ = strconv.Atoi(f[0])
		}
	}
	b.SystemBusAddress = fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", b.PID)
	// Until the shell has exec'd systemd, nsenter would join namespaces
	// that are still being set up: wait for PID 1's executable.
	for {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", b.PID)); strings.HasSuffix(exe, "/systemd") {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sdbox: PID 1 did not exec systemd within %v: %s", opt.BootTimeout, out.String())
		}
		select {
		case <-b.exited:
			return nil, unshareFailed(out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	// systemctl reports "offline" until the manager listens on its
	// private socket.
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/systemd/private", b.PID)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sdbox: the box's manager did not open its private socket within %v: %s", opt.BootTimeout, out.String())
		}
		select {
		case <-b.exited:
			return nil, fmt.Errorf("sdbox: the box exited while booting: %s", out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	state, err := b.command(ctx, "systemctl", "is-system-running", "--wait").Output()
	st := strings.TrimSpace(string(state))
	if st != "running" {
		failed, _ := b.Systemctl("--failed", "--no-legend", "--plain")
		return nil, fmt.Errorf("sdbox: the box's manager is %q, not running (%v); failed units: %s; output: %s", st, err, failed, out.String())
	}
	b.BootTime = time.Since(start)
	// The proxy's socket exists once sockets.target is reached, which
	// is before "running"; check rather than assume.
	if _, err := os.Stat(filepath.Join(b.dir, "sock", "private")); err != nil {
		return nil, fmt.Errorf("sdbox: the proxied private socket: %w", err)
	}
	logf("sdbox: systemd booted as PID 1 (host pid %d) in %v, cgroup %s", b.PID, b.BootTime.Round(time.Millisecond), b.CgroupPath)
	return b, nil
}

// unshareFailed explains an unshare that exited before PID 1 ran systemd.
func unshareFailed(out string) error {
	if strings.Contains(out, "Operation not permitted") || strings.Contains(out, "Permission denied") {
		return fmt.Errorf("%w: the kernel refused the namespaces or mounts: %s", ErrUnsupported, strings.TrimSpace(out))
	}
	return fmt.Errorf("sdbox: the box's set-up failed: %s", strings.TrimSpace(out))
}

// command is a command run in every namespace of the box (nsenter forks
// into the pid namespace, so the manager sees it as one of its own).
func (b *Box) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(b.PID), "-m", "-p", "-u", "-i", "-n", "-C",
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LC_ALL=C"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// nsenter forks the command into the box's pid namespace: the context
	// kills nsenter only, and the command would keep the output pipes
	// open. Its end comes with the box's (the namespace's init exits).
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command inside the box and returns its combined output; the
// error names the command and includes the output.
func (b *Box) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := b.command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in the box: %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Systemctl runs systemctl inside the box.
func (b *Box) Systemctl(args ...string) (string, error) {
	return b.Run(append([]string{"systemctl", "--no-pager"}, args...)...)
}

// Show returns one property of a unit as systemctl show prints it.
func (b *Box) Show(unit, prop string) (string, error) {
	out, err := b.Systemctl("show", "-p", prop, "--value", unit)
	return strings.TrimSpace(out), err
}

// HostCgroup returns the host directory of a cgroup of the box, given as
// the box sees it ("/system.slice/x.service").
func (b *Box) HostCgroup(boxPath string) string {
	return filepath.Join(b.Cgroup, filepath.Clean("/"+boxPath))
}

// HostPIDs lists, in host pids, the processes of a cgroup of the box,
// given as the box sees it ("/system.slice/x.service").
func (b *Box) HostPIDs(boxPath string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(b.HostCgroup(boxPath), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("sdbox: cgroup.procs of %s: %w", boxPath, err)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// BoxCgroupOf returns where a host pid sits in the box's cgroup tree ("/x.slice/y.scope"),
// from its /proc/PID/cgroup "0::" line on the host; an error if it is
// outside the box.
func (b *Box) BoxCgroupOf(hostPID int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", hostPID))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			if p == b.CgroupPath {
				return "/", nil
			}
			if rest, ok := strings.CutPrefix(p, b.CgroupPath+"/"); ok {
				return "/" + rest, nil
			}
			return "", fmt.Errorf("sdbox: pid %d is in %s, outside the box %s", hostPID, p, b.CgroupPath)
		}
	}
	return "", fmt.Errorf("sdbox: pid %d has no cgroup2 line", hostPID)
}

// HostPID returns the host pid of the box's process boxPID (a pid as the
// box sees it, such as a unit's MainPID): the host process whose
// innermost NSpid entry is boxPID, in the box's pid namespace.
func (b *Box) HostPID(boxPID int) (int, error) {
	boxNS, err := os.Stat(fmt.Sprintf("/proc/%d/ns/pid", b.PID))
	if err != nil {
		return 0, fmt.Errorf("sdbox: the box's pid namespace: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("sdbox: %w", err)
	}
	want := "\t" + strconv.Itoa(boxPID) + "\n"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		i := bytes.Index(status, []byte("NSpid:"))
		if i < 0 {
			continue
		}
		line := status[i:]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j+1]
		}
		if !bytes.HasSuffix(line, []byte(want)) || len(bytes.Fields(line)) != 3 {
			continue
		}
		if ns, err := os.Stat("/proc/" + e.Name() + "/ns/pid"); err == nil && os.SameFile(ns, boxNS) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("sdbox: no process with pid %d in the box", boxPID)
}

// ReadFile reads a file of the box by its path inside ("/run/x"), through
// its PID 1's root.
func (b *Box) ReadFile(boxPath string) ([]byte, error) {
	return os.ReadFile(fmt.Sprintf("/proc/%d/root%s", b.PID, filepath.Clean("/"+boxPath)))
}

// Close powers the box off and removes everything it created. It is
// idempotent; the first call's result is returned again.
func (b *Box) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.closeEr
	}
	b.closed = true
	b.closeEr = b.teardown()
	if b.lock != nil {
		b.lock.Close()
	}
	return b.closeEr
}

func (b *Box) teardown() error {
	var errs []error
	if b.cmd != nil && b.cmd.Process != nil {
		start := time.Now()
		gone := false
		if b.PID != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_ = b.command(ctx, "systemctl", "poweroff", "--no-block").Run()
			cancel()
			select {
			case <-b.exited:
				gone = true
				b.logf("sdbox: powered off in %v", time.Since(start).Round(time.Millisecond))
			case <-time.After(20 * time.Second):
			}
		}
		if !gone {
			// Our own unshare, by pid; its --kill-child ends PID 1, and
			// the kernel the rest of the pid namespace.
			_ = b.cmd.Process.Signal(syscall.SIGKILL)
			select {
			case <-b.exited:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("unshare (pid %d) did not exit after SIGKILL", b.cmd.Process.Pid))
			}
		}
	}
	if b.Cgroup != "" {
		if err := removeCgroup(b.Cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if b.dir != "" {
		// The tmpfs and bind mounts were in the box's mount namespace,
		// gone with it: what is left is plain directories and the
		// socket file.
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup kills whatever is left in a box's cgroup (only the box's
// processes can be there) and removes it, children first.
func removeCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for populated(dir) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			return fmt.Errorf("sdbox: killing what is left in %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sdbox: %s still has processes 10 s after cgroup.kill", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("sdbox: rmdir %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

func populated(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(data, []byte("populated 1"))
}

// removeStale removes the boxes a killed run left (under the lock no other
// box runs, so every cgre-sdbox-* cgroup is a leftover), and their
// directories in dirs.
func removeStale(root string, dirs []string, logf func(string, ...any)) {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), Prefix) {
			err := removeCgroup(filepath.Join(root, e.Name()))
			logf("sdbox: removed a box left by an earlier run, %s (%v)", e.Name(), err)
		}
	}
	for _, dir := range dirs {
		left, _ := filepath.Glob(filepath.Join(dir, Prefix+"*"))
		for _, d := range left {
			_ = os.RemoveAll(d)
		}
	}
}

// takeLock waits for the machine's box lock.
func takeLock() (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockFile), 0o755); err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("sdbox: flock %s: %w", lockFile, err)
	}
	return f, nil
}

// cgroup2Mount finds the host's cgroup2 mount (/sys/fs/cgroup on a pure v2
// machine, /sys/fs/cgroup/unified on a hybrid one).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("sdbox: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
				return unescapeMount(fields[4]), nil
			}
		}
	}
	return "", fmt.Errorf("%w: no cgroup2 hierarchy mounted", ErrUnsupported)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a blank).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func randomHex() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// lockedBuffer collects a command's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 64<<10 {
		return len(p), nil
	}
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
