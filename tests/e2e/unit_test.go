package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// The systemd unit init/cgred.service. systemd is installed on the test
// machines but is not PID 1, so the unit cannot be started with systemctl;
// and the daemon needs the initial pid and user namespaces (the proc
// connector ignores listeners elsewhere), so systemd-nspawn cannot host it
// either. The unit is checked with systemd-analyze, and each hardening
// setting is applied by its equivalent (a mount namespace, setpriv, a
// libcgroup seccomp filter built from systemd-analyze's own lists) to the
// daemon built from the tree, which must still move ruled tasks.

func unitPath() string { return filepath.Join(moduleDir, "init", "cgred.service") }

func requireTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (.ci/run does)", tool, pkg)
	}
	return p
}

// TestUnitVerify: systemd-analyze verify accepts the unit without a word,
// and systemd-analyze security rates it (logged).
func TestUnitVerify(t *testing.T) {
	requireRoot(t)
	sa := requireTool(t, "systemd-analyze", "systemd")
	// verify checks the executables the unit names: give it this tree's.
	dir := t.TempDir()
	unit := readUnit(t)
	if !strings.Contains(unit, "ExecStart=/usr/sbin/cgrulesengd ") {
		t.Fatalf("the unit's ExecStart does not run /usr/sbin/cgrulesengd")
	}
	local := filepath.Join(dir, "cgred.service")
	if err := os.WriteFile(local, []byte(strings.ReplaceAll(unit, "/usr/sbin/cgrulesengd", daemonBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", local).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", local).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("systemd-analyze security: %s", lines[len(lines)-1])

	// The check can fail: a misspelt setting is reported.
	bad := filepath.Join(dir, "bad", "cgred.service")
	_ = os.Mkdir(filepath.Dir(bad), 0o755)
	if err := os.WriteFile(bad, []byte(strings.Replace(unit, "ProtectHome=", "ProtectHomes=", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(sa, "verify", bad).CombinedOutput(); !bytes.Contains(out, []byte("ProtectHomes")) {
		t.Errorf("systemd-analyze verify did not report a misspelt setting: %s", out)
	}
}

func readUnit(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(unitPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// unitService returns the [Service] settings of the unit, in order; a
// setting given several times keeps every value.
func unitService(t testing.TB) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(readUnit(t)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && section == "[Service]" {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// syscallSet expands systemd's system call groups (@name) with
// systemd-analyze syscall-filter.
func syscallSet(t testing.TB, sa string, names []string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	seen := map[string]bool{}
	var add func(n string)
	add = func(n string) {
		if !strings.HasPrefix(n, "@") {
			set[n] = true
			return
		}
		if seen[n] {
			return
		}
		seen[n] = true
		out, err := exec.Command(sa, "syscall-filter", n).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", n, err)
		}
		for i, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if i == 0 || l == "" || l[0] == '#' {
				continue
			}
			add(l)
		}
	}
	for _, n := range names {
		add(n)
	}
	return set
}

// hardening is the unit's hardening, as the test applies it; tests change
// it to check that each emulation really restricts.
type hardening struct {
	caps      []string // CapabilityBoundingSet, lower case without CAP_
	rwPaths   []string // ReadWritePaths
	families  []string // RestrictAddressFamilies, as numbers
	allowed   map[string]bool
	seccomp   []string // more seccomp_exec.py flags
	mountOpts map[string]bool
}

var familyNumbers = map[string]string{"AF_UNIX": "1", "AF_NETLINK": "16", "AF_INET": "2", "AF_INET6": "10"}

// unitHardening reads the unit's hardening settings. A setting the test
// does not know how to apply fails the test: none may ship untested.
func unitHardening(t testing.TB, sa string) hardening {
	t.Helper()
	s := unitService(t)
	h := hardening{mountOpts: map[string]bool{}}
	notHardening := []string{"Type", "NotifyAccess", "EnvironmentFile", "ExecStartPre", "UnsetEnvironment", "ExecStart", "ExecReload", "Restart", "RestartSec"}
	var filter, drop []string
	errno := ""
	for k, vs := range s {
		v := vs[len(vs)-1]
		all := strings.Fields(strings.Join(vs, " "))
		switch k {
		case "CapabilityBoundingSet":
			for _, c := range all {
				h.caps = append(h.caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		case "ReadWritePaths":
			h.rwPaths = all
		case "RestrictAddressFamilies":
			for _, f := range all {
				n, ok := familyNumbers[f]
				if !ok {
					t.Fatalf("RestrictAddressFamilies: no number for %s in this test", f)
				}
				h.families = append(h.families, n)
			}
		case "SystemCallFilter":
			filter = append(filter, all...)
		case "SystemCallErrorNumber":
			if v != "EPERM" {
				t.Fatalf("SystemCallErrorNumber=%s: the test applies EPERM only", v)
			}
			errno = "1"
		case "ProtectSystem", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelLogs",
			"ProtectKernelModules", "ProtectHostname", "ProtectClock", "NoNewPrivileges", "MemoryDenyWriteExecute",
			"LockPersonality", "RestrictNamespaces", "RestrictSUIDSGID", "RestrictRealtime", "SystemCallArchitectures",
			"UMask", "LogsDirectory":
			want := map[string]string{"ProtectSystem": "strict", "ProtectHome": "read-only", "SystemCallArchitectures": "native",
				"UMask": "0022", "LogsDirectory": "cgred"}[k]
			if want == "" {
				want = "yes"
			}
			if v != want {
				t.Fatalf("%s=%s: the test applies %s=%s only", k, v, k, want)
			}
			h.mountOpts[k] = true
		default:
			if !slices.Contains(notHardening, k) {
				t.Fatalf("the unit sets %s=%s, which this test does not apply: add its equivalent here before shipping it", k, v)
			}
		}
	}
	if len(filter) == 0 || errno == "" {
		t.Fatal("the test expects SystemCallFilter= and SystemCallErrorNumber=EPERM")
	}
	for _, f := range filter {
		if strings.HasPrefix(f, "~") {
			drop = append(drop, strings.TrimPrefix(f, "~"))
		}
	}
	h.allowed = syscallSet(t, sa, slices.DeleteFunc(slices.Clone(filter), func(f string) bool { return strings.HasPrefix(f, "~") }))
	// Settings that systemd implements with seccomp denials on top.
	if h.mountOpts["ProtectClock"] {
		drop = append(drop, "@clock")
	}
	if h.mountOpts["ProtectKernelModules"] {
		drop = append(drop, "@module")
	}
	if h.mountOpts["ProtectKernelLogs"] {
		drop = append(drop, "syslog")
	}
	if h.mountOpts["ProtectHostname"] {
		drop = append(drop, "sethostname", "setdomainname")
	}
	for n := range syscallSet(t, sa, drop) {
		delete(h.allowed, n)
	}
	for flag, k := range map[string]string{"--mdwe": "MemoryDenyWriteExecute", "--lock-personality": "LockPersonality",
		"--restrict-ns": "RestrictNamespaces", "--restrict-suid": "RestrictSUIDSGID", "--restrict-rt": "RestrictRealtime"} {
		if h.mountOpts[k] {
			h.seccomp = append(h.seccomp, flag)
		}
	}
	slices.Sort(h.seccomp)
	return h
}

// hardeningScript sets up the mount side of the unit (run by unshare -m -u,
// as root, with the daemon's path and arguments), then drops capabilities
// (setpriv) and applies the seccomp side (seccomp_exec.py) before it execs
// the daemon. $CGRE_STAGE holds the daemon, the rules and its files.
const hardeningScript = `set -e
mount --make-rprivate /
mounts() { awk '{ print $5 }' /proc/self/mountinfo | grep -v '\\' | sort -u; }
ro() { mount -o remount,bind,ro "$1" 2>/dev/null || { mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"; }; }
rw() { mountpoint -q "$1" || mount --bind "$1" "$1"; mount -o remount,bind,rw "$1"; }
under() { case $2 in "$1"|"$1"/*) return 0;; esac; return 1; }
inaccessible_dir() { [ -d "$1" ] && mount -t tmpfs -o ro,mode=000 tmpfs "$1" || true; }
inaccessible_file() { [ -e "$1" ] && mount --bind "$2" "$1" || true; }
mknod "$CGRE_STAGE/inaccessible-chr" c 0 0 && chmod 000 "$CGRE_STAGE/inaccessible-chr"
: > "$CGRE_STAGE/inaccessible-reg" && chmod 000 "$CGRE_STAGE/inaccessible-reg"
if [ -n "$H_STRICT" ]; then
	for m in $(mounts); do
		case $m in /proc|/proc/*|/dev|/dev/*|/sys|/sys/*) continue;; esac
		ro "$m"
	done
fi
if [ -n "$H_TUNABLES" ]; then
	for m in $(mounts); do under /sys "$m" && ro "$m"; done
	for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /proc/fs /proc/acpi; do [ -e "$p" ] && ro "$p"; done
fi
for p in $H_RW; do
	rw "$p"
	for m in $(mounts); do [ "$m" != "$p" ] && under "$p" "$m" && rw "$m"; done
done
if [ -n "$H_HOME" ]; then
	for p in /home /root /run/user; do [ -d "$p" ] && ro "$p"; done
fi
if [ -n "$H_TMP" ]; then
	mount -t tmpfs tmpfs /tmp
	mount -t tmpfs tmpfs /var/tmp
fi
if [ -n "$H_MODULES" ]; then
	inaccessible_dir /usr/lib/modules
fi
if [ -n "$H_LOGS" ]; then
	inaccessible_file /proc/kmsg "$CGRE_STAGE/inaccessible-reg"
	inaccessible_file /dev/kmsg "$CGRE_STAGE/inaccessible-chr"
fi
[ -z "$H_UMASK" ] || umask 022
exec setpriv $H_NNP --inh-caps=-all --bounding-set="-all$H_CAPS" \
	/usr/bin/python3 "$CGRE_STAGE/seccomp_exec.py" --errno 1 --allow "$H_ALLOW" ${H_AF:+--af "$H_AF"} $H_SECCOMP -- "$CGRE_BIN" "$@"
`

func (h hardening) env(stage, bin string) []string {
	opt := func(k, name string) string {
		if h.mountOpts[k] {
			return name + "=1"
		}
		return name + "="
	}
	var caps string
	for _, c := range h.caps {
		caps += ",+" + c
	}
	allowed := make([]string, 0, len(h.allowed))
	for n := range h.allowed {
		allowed = append(allowed, n)
	}
	slices.Sort(allowed)
	nnp := ""
	if h.mountOpts["NoNewPrivileges"] {
		nnp = "--no-new-privs"
	}
	return []string{
		"CGRE_STAGE=" + stage, "CGRE_BIN=" + bin,
		opt("ProtectSystem", "H_STRICT"), opt("ProtectKernelTunables", "H_TUNABLES"), opt("ProtectHome", "H_HOME"),
		opt("PrivateTmp", "H_TMP"), opt("ProtectKernelModules", "H_MODULES"), opt("ProtectKernelLogs", "H_LOGS"),
		opt("UMask", "H_UMASK"),
		"H_RW=" + strings.Join(h.rwPaths, " "), "H_CAPS=" + caps, "H_NNP=" + nnp,
		"H_ALLOW=" + strings.Join(allowed, ","), "H_AF=" + strings.Join(h.families, ","),
		"H_SECCOMP=" + strings.Join(h.seccomp, " "),
	}
}

// hardenedEnv is a test environment whose files live in a directory under
// /run (PrivateTmp hides /tmp from the daemon), with the daemon binary and
// the seccomp helper copied there.
type hardenedEnv struct {
	*env
	stage, bin string
	script     string // a script in a directory only cgreroot may enter
	sleepRule  bool   // /bin/sleep is a symlink to /usr/bin/sleep (usrmerge)
}

func newHardenedEnv(t *testing.T) *hardenedEnv {
	t.Helper()
	requireDaemon(t)
	requireHierarchies(t, "cpu")
	requireTool(t, "setpriv", "util-linux")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import seccomp").CombinedOutput(); err != nil {
		t.Fatalf("python3's seccomp module: %v: %s: install the Debian package python3-seccomp (.ci/run does)", err, out)
	}
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "prog", "script")
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	stage := "/run/" + testDirPrefix + "hard-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stage) })
	e.dir = stage
	e.rules = filepath.Join(stage, "cgrules.conf")
	e.confDir = filepath.Join(stage, "cgrules.d")
	// The sticky socket too: PrivateTmp hides the framework's /tmp one.
	e.sock = filepath.Join(stage, "cgred.socket")
	if err := os.Mkdir(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	he := &hardenedEnv{env: e, stage: stage, bin: filepath.Join(stage, "cgrulesengd")}
	copyFile(t, daemonBin, he.bin, 0o755)
	copyFile(t, filepath.Join(moduleDir, "tests", "e2e", "testdata", "seccomp_exec.py"), filepath.Join(stage, "seccomp_exec.py"), 0o644)

	// A script run by cgreroot from a directory only cgreroot may enter:
	// its path is found through the task's cwd, which the daemon can only
	// follow with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
	private := filepath.Join(stage, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	he.script = filepath.Join(private, "cgre-job")
	if err := os.WriteFile(he.script, []byte("#!/usr/bin/tail -f\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{private, he.script} {
		if out, err := exec.Command("chown", "cgreroot", p).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	real, err := filepath.EvalSymlinks("/bin/sleep")
	he.sleepRule = err == nil && real == "/usr/bin/sleep"
	e.writeRules(fmt.Sprintf("cgrecgtest:/usr/bin/sleep  cpu  prog\ncgreroot:%s  cpu  script\ncgresjo  cpu  old\ncgrecgtest  cpu  users/%%u\n", he.script))
	return he
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

func (he *hardenedEnv) wrap() []string {
	return []string{"unshare", "-m", "-u", "/bin/sh", "-c", hardeningScript}
}

// moves starts the tasks the rules name and reports, for each, whether it
// was moved where its rule says (within a second).
func (he *hardenedEnv) moves(t *testing.T) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	check := func(name string, o hopts, want string) {
		h := he.harness(o)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if cg, _, _ := cgroupOf(h.pid, "cpu"); cg == he.cg(want) {
				got[name] = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		h.stop()
	}
	check("user", hopts{user: "cgresjo"}, "old")
	check("template", hopts{user: "cgrecgtest"}, "users/cgrecgtest")
	if he.sleepRule {
		check("program", hopts{user: "cgrecgtest", exec: []string{"/bin/sleep", "600"}}, "prog")
	}
	check("script", hopts{user: "cgreroot", exec: []string{"/bin/sh", "-c", "cd " + filepath.Dir(he.script) + " && exec ./cgre-job"}}, "script")
	return got
}

// TestUnitHardening: the daemon, run under the equivalent of every
// hardening setting of init/cgred.service, starts, moves a ruled setuid
// task, creates a templated cgroup, finds a program by its executable and
// a script through a private cwd, applies its scheduler slice, and logs no
// warning. Then, to show that the emulation really restricts (so that the
// first part can fail), the daemon is run with one piece taken away each:
// without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH the program/script rules
// miss, without /sys/fs/cgroup writable nothing moves, and with AF_UNIX
// alone it cannot subscribe to the proc connector. The daemon runs with the
// run's event source (CGRE_E2E_EVENTS); the BPF source is also run on its
// own, in both runs (unitHardeningBPF).
func TestUnitHardening(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	he := newHardenedEnv(t)
	h := unitHardening(t, sa)
	t.Logf("capabilities %v, read-write %v, %d system calls allowed, seccomp flags %v, families %v",
		h.caps, h.rwPaths, len(h.allowed), h.seccomp, h.families)

	d := he.startDaemon(dopts{wrap: he.wrap(), env: h.env(he.stage, he.bin)})
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !bytes.Contains(status, []byte(want)) {
			t.Errorf("the hardened daemon's status lacks %q:\n%s", want, status)
		}
	}
	// The mount side took effect in the daemon's namespace.
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", d.pid))
	for _, c := range []struct{ mnt, want string }{{"/", "ro"}, {"/run", "rw"}, {"/proc/sys", "ro"}} {
		found := false
		for _, l := range strings.Split(string(mi), "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && f[4] == c.mnt {
				found = strings.HasPrefix(f[5], c.want)
			}
		}
		if !found {
			t.Errorf("the hardened daemon's %s is not mounted %s:\n%s", c.mnt, c.want, mi)
		}
	}
	if !regexp.MustCompile(`(?m) /tmp \S+.* - tmpfs `).Match(mi) {
		t.Errorf("the hardened daemon has no private /tmp")
	}
	if eventsSource == "bpf" && !strings.Contains(d.log(), `msg="kernel events: BPF source"`) {
		t.Errorf("the hardened daemon does not run the BPF source")
	}
	got := he.moves(t)
	for _, k := range []string{"user", "template", "program", "script"} {
		if k == "program" && !he.sleepRule {
			t.Logf("program rule not checked: /bin/sleep is not a symlink to /usr/bin/sleep here")
			continue
		}
		if !got[k] {
			t.Errorf("under the unit's hardening the %s rule did not move its task", k)
		}
	}
	log := d.log()
	if !regexp.MustCompile(`scheduler slice .* set on`).MatchString(log) {
		t.Errorf("the scheduler slice was not applied under the hardening (sched_setattr refused?)")
	}
	noHardeningWarnings(t, log)
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}

	// Each emulation restricts: take one thing away, see a move fail.
	without := func(name string, change func(h *hardening)) (*daemon, map[string]bool) {
		h2 := unitHardening(t, sa)
		h2.allowed = h.allowed
		change(&h2)
		d := he.startDaemon(dopts{wrap: he.wrap(), env: h2.env(he.stage, he.bin)})
		got := he.moves(t)
		d.kill()
		t.Logf("without %s: moved %v", name, got)
		return d, got
	}
	if _, got := without("CAP_SYS_PTRACE", func(h *hardening) {
		h.caps = slices.DeleteFunc(h.caps, func(c string) bool { return c == "sys_ptrace" })
	}); !got["user"] || got["script"] || (he.sleepRule && got["program"]) {
		t.Errorf("without CAP_SYS_PTRACE: moved %v, want the user rule only (the program and script rules need it)", got)
	}
	if _, got := without("CAP_DAC_READ_SEARCH", func(h *hardening) {
		h.caps = slices.DeleteFunc(h.caps, func(c string) bool { return c == "dac_read_search" })
	}); !got["user"] || got["script"] {
		t.Errorf("without CAP_DAC_READ_SEARCH: moved %v, want every rule but the script's", got)
	}
	if _, got := without("/sys/fs/cgroup in ReadWritePaths", func(h *hardening) {
		h.rwPaths = slices.DeleteFunc(h.rwPaths, func(p string) bool { return p == "/sys/fs/cgroup" })
	}); len(got) != 0 {
		t.Errorf("with /sys/fs/cgroup read-only: moved %v, want nothing", got)
	}

	// AF_UNIX alone: no netlink socket, the proc connector cannot be
	// subscribed to (the BPF source needs no socket).
	h3 := unitHardening(t, sa)
	h3.allowed = h.allowed
	h3.families = []string{"1"}
	out, err := he.runHardened(h3, "--events=netlink")
	if err == nil || !strings.Contains(out, "subscribing to the kernel's process events") {
		t.Errorf("with RestrictAddressFamilies=AF_UNIX the daemon should fail to subscribe; got %v:\n%s", err, out)
	}

	t.Run("BPF source", func(t *testing.T) { unitHardeningBPF(t, sa, he, h) })
}

// unitHardeningBPF: the daemon runs the BPF event source under the unit's
// hardening (it loads and attaches its programs, and moves tasks), and
// cannot without CAP_BPF and CAP_PERFMON or without bpf(2) in the system
// call filter: the unit allows what the source needs.
func unitHardeningBPF(t *testing.T, sa string, he *hardenedEnv, h hardening) {
	if err := bpfevents.Probe(); err != nil {
		t.Skipf("the BPF source cannot run on this machine, hardened or not: %v", err)
	}
	d := he.startDaemon(dopts{wrap: he.wrap(), env: h.env(he.stage, he.bin), extra: []string{"--events=bpf"}})
	got := he.moves(t)
	if !strings.Contains(d.log(), `msg="kernel events: BPF source"`) {
		t.Errorf("the hardened daemon does not run the BPF source")
	}
	if !got["user"] || !got["template"] || !got["script"] {
		t.Errorf("under the unit's hardening with the BPF source: moved %v, want every rule", got)
	}
	noHardeningWarnings(t, d.log())
	d.stop()

	noCaps := unitHardening(t, sa)
	noCaps.allowed = h.allowed
	noCaps.caps = slices.DeleteFunc(noCaps.caps, func(c string) bool { return c == "bpf" || c == "perfmon" })
	if out, err := he.runHardened(noCaps, "--events=bpf"); err == nil || !strings.Contains(out, "("+bpfevents.ReasonNoPrivilege.String()+")") {
		t.Errorf("without CAP_BPF and CAP_PERFMON: %v: %s; want the BPF source refused for lack of privilege", err, out)
	}
	noBPF := unitHardening(t, sa)
	noBPF.allowed = maps.Clone(h.allowed)
	delete(noBPF.allowed, "bpf")
	if out, err := he.runHardened(noBPF, "--events=bpf"); err == nil || !strings.Contains(out, "BPF event source not supported") {
		t.Errorf("without bpf(2) in the system call filter: %v: %s; want the BPF source not supported", err, out)
	}
}

// TestUnitHardeningSystemd: under every hardening setting of the unit the
// daemon talks to a service manager over D-Bus (a booted systemd, through
// its proxied private socket under /run, which the unit keeps writable:
// on a systemd machine, /run/systemd/private over AF_UNIX), starts with
// --systemd=on, places a task of a service of the manager into its scope
// in a slice, logs no warning, and still moves tasks to raw destinations.
// The placed task belongs to its scope, not to the daemon: it keeps
// running there when the daemon stops (as when cgred.service stops).
func TestUnitHardeningSystemd(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	he := newHardenedEnv(t)
	h := unitHardening(t, sa)
	s := &sdEnv{env: he.env, box: sdbox.Start(t, sdbox.Options{HostDir: "/run", Binds: []string{filepath.Dir(harnessBin)}})}
	he.writeRules(readRules(t, he.rules) + "cgrenobody  *  batch.slice\n")
	d := he.startDaemon(dopts{wrap: he.wrap(), env: h.env(he.stage, he.bin), extra: s.busArgs()})
	d.waitLog(0, regexp.MustCompile(`systemd: slice destinations are placed through the service manager at `+regexp.QuoteMeta(s.box.PrivateAddress)+`.*manager_pid_ns_depth=1`), 5*time.Second)
	task := s.harnessTask(t, "cgre-src", "cgrenobody")
	scope, cg := scopeOf(t, "batch.slice", "cgrenobody")
	s.waitBoxCgroup(t, task.host, cg, 5*time.Second)
	if u := s.unitOf(t, task.host); u != scope {
		t.Errorf("GetUnitByPID: %s, want %s", u, scope)
	}
	if got := he.moves(t); !got["user"] || !got["template"] {
		t.Errorf("under the unit's hardening, with the manager's socket in use, the raw rules moved %v", got)
	}
	noHardeningWarnings(t, d.log())
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	time.Sleep(200 * time.Millisecond)
	if where, err := s.box.BoxCgroupOf(task.host); err != nil || where != cg || !alive(task.host) {
		t.Errorf("after the daemon stopped, the placed task is in %q (%v, alive %v), want it running in %s", where, err, alive(task.host), cg)
	}
}

// noHardeningWarnings fails the test for each warning or error in a
// hardened daemon's log.
func noHardeningWarnings(t *testing.T, log string) {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		// The test's cgroup root exists in the cpu hierarchy only, which
		// the daemon rightly points out; any other warning is the hardening's.
		if strings.Contains(l, "does not exist in hierarchies") {
			continue
		}
		if strings.Contains(l, "level=warning") || strings.Contains(l, "level=error") {
			t.Errorf("under the hardening the daemon logged: %s", l)
		}
	}
}

func readRules(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// runHardened runs the daemon in the foreground under h with extra options
// until it exits (it must fail to start: there is no timeout but 30 s) and
// returns its output (the log on standard output).
func (he *hardenedEnv) runHardened(h hardening, extra ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-n", "-c", he.rules, "--config-dir", he.confDir, "--cgroup-root", he.root, "-f", "-"}, extra...)
	cmd := exec.CommandContext(ctx, he.wrap()[0], append(append(he.wrap()[1:], he.bin), args...)...)
	cmd.Env = append(os.Environ(), h.env(he.stage, he.bin)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestUnitSettingsTrust (issue 19, with item 7): systemd reads the
// service's settings files as EnvironmentFile= and gives every variable in
// them to the unit's processes, as root. The unit therefore (1) runs
// cgrulesengd --check-settings on exactly the files it reads, before the
// daemon (ExecStartPre), which refuses one that someone other than root
// could have written, and (2) drops, for every process of the unit, the
// variables glibc itself drops for set-uid programs (UnsetEnvironment=),
// so that a hostile file cannot run code (LD_PRELOAD) in the check before
// the check refuses it. systemd is not PID 1 here: the ExecStartPre
// command is run as systemd would run it, with the files' variables minus
// UnsetEnvironment=; that the preload would work without the latter is
// shown too, so that the test can fail.
func TestUnitSettingsTrust(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	s := unitService(t)

	// (1) The check names exactly the files systemd reads, in order.
	var files []string
	for _, v := range s["EnvironmentFile"] {
		files = append(files, strings.TrimPrefix(v, "-"))
	}
	if len(s["ExecStartPre"]) != 1 {
		t.Fatalf("want one ExecStartPre, got %q", s["ExecStartPre"])
	}
	pre := strings.Fields(s["ExecStartPre"][0])
	want := []string{"/usr/sbin/cgrulesengd"}
	for _, f := range files {
		want = append(want, "--check-settings="+f)
	}
	if !slices.Equal(pre, want) || len(files) == 0 {
		t.Fatalf("ExecStartPre=%s, want %s", strings.Join(pre, " "), strings.Join(want, " "))
	}

	// (2) Every variable this machine's glibc distrusts is unset.
	unset := map[string]bool{}
	for _, v := range s["UnsetEnvironment"] {
		for _, n := range strings.Fields(v) {
			unset[n] = true
		}
	}
	distrusted := glibcUnsecureEnv(t)
	t.Logf("glibc's list of variables dropped for set-uid programs: %v", distrusted)
	for _, n := range distrusted {
		if !unset[n] {
			t.Errorf("UnsetEnvironment= lacks %s, which this machine's glibc drops for set-uid programs", n)
		}
	}

	// A library whose constructor leaves a mark: what a hostile
	// LD_PRELOAD= line would run as root.
	dir := t.TempDir()
	src, lib, mark := filepath.Join(dir, "mark.c"), filepath.Join(dir, "mark.so"), filepath.Join(dir, "preloaded")
	csrc := "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void) { close(open(\"" + mark + "\", O_CREAT | O_WRONLY, 0600)); }\n"
	if err := os.WriteFile(src, []byte(csrc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}

	// The settings files of the test: the unit's paths below a directory
	// of its own (as make install's SYSCONFDIR), the first one hostile.
	root := filepath.Join(dir, "etc")
	local := make([]string, len(files))
	for i, f := range files {
		local[i] = filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(local[i]), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostile := "LD_PRELOAD=" + lib + "\nOPTIONS=--cgroup-root=/nowhere -Q\n"
	if err := os.WriteFile(local[0], []byte(hostile), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(local[0], 0o666); err != nil { // whatever the umask
		t.Fatal(err)
	}
	args := make([]string, 0, len(files))
	for _, f := range local {
		args = append(args, "--check-settings="+f)
	}
	// run runs the ExecStartPre command with the environment systemd
	// would give it: the files' variables, without those in drop.
	run := func(drop map[string]bool) (int, string) {
		_ = os.Remove(mark)
		cmd := exec.Command(daemonBin, args...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		for _, f := range local {
			data, err := os.ReadFile(f)
			if err != nil {
				continue // EnvironmentFile=-: a missing file is skipped
			}
			for _, l := range strings.Split(string(data), "\n") {
				if k, _, ok := strings.Cut(l, "="); ok && !drop[k] {
					cmd.Env = append(cmd.Env, l)
				}
			}
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stderr.String()
	}

	// Without UnsetEnvironment= the hostile file runs its code, as root,
	// before anything can check it.
	if code, _ := run(nil); code != 6 {
		t.Errorf("without UnsetEnvironment: exit %d, want 6", code)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the preload did not run even without UnsetEnvironment (the test cannot tell): %v", err)
	}
	// The unit: refused (status 6, systemd does not start the daemon),
	// and nothing of the file ran.
	code, stderr := run(unset)
	if code != 6 || !strings.Contains(stderr, "settings file "+local[0]+" refused: writable by group or others (mode 0666)") ||
		!strings.Contains(stderr, "chmod go-w "+local[0]) {
		t.Errorf("a world-writable settings file: exit %d, want 6 with a message naming it; stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Errorf("the hostile settings file's LD_PRELOAD ran in the unit's check")
	}

	// Other untrusted forms, then trusted and missing files.
	if err := os.WriteFile(local[0], []byte("OPTIONS=-v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(local[0], 0o644); err != nil {
		t.Fatal(err)
	}
	nobody := 65534
	for _, c := range []struct {
		name  string
		setup func() error
		undo  func() error
		want  string
	}{
		{"not root's", func() error { return os.Chown(local[0], nobody, -1) }, func() error { return os.Chown(local[0], 0, -1) },
			"owned by uid 65534, not root"},
		{"group-writable", func() error { return os.Chmod(local[0], 0o664) }, func() error { return os.Chmod(local[0], 0o644) },
			"writable by group or others (mode 0664)"},
		{"in a directory others can write", func() error { return os.Chmod(filepath.Dir(local[0]), 0o777) },
			func() error { return os.Chmod(filepath.Dir(local[0]), 0o755) }, "directory " + filepath.Dir(local[0]) + " is writable by group or others"},
	} {
		if err := c.setup(); err != nil {
			t.Fatal(err)
		}
		if code, stderr := run(unset); code != 6 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, want 6 and %q; stderr:\n%s", c.name, code, c.want, stderr)
		}
		if err := c.undo(); err != nil {
			t.Fatal(err)
		}
	}
	if code, stderr := run(unset); code != 0 || stderr != "" {
		t.Errorf("root's own settings files: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, f := range local {
		_ = os.Remove(f)
	}
	if code, stderr := run(unset); code != 0 || stderr != "" {
		t.Errorf("no settings files: exit %d, want 0; stderr:\n%s", code, stderr)
	}
}

// glibcUnsecureEnv reads, from this machine's dynamic loader, the list of
// environment variables glibc drops for set-uid programs (UNSECURE_ENVVARS
// in glibc's unsecvars.h): the run of NUL-separated names that holds
// LD_PRELOAD and LD_LIBRARY_PATH.
func glibcUnsecureEnv(t testing.TB) []string {
	t.Helper()
	ld, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Skipf("no x86-64 dynamic loader to read glibc's list from: %v", err)
	}
	data, err := os.ReadFile(ld)
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^[A-Z][A-Z_]*$`)
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte("\x00LD_PRELOAD\x00"))
		if i < 0 {
			t.Fatalf("%s: no list of unsecure variables holding LD_PRELOAD and LD_LIBRARY_PATH", ld)
		}
		at := off + i + 1
		off = at
		start := at
		for start > 1 && data[start-1] == 0 {
			j := bytes.LastIndexByte(data[:start-1], 0) + 1
			if !name.Match(data[j : start-1]) {
				break
			}
			start = j
		}
		var names []string
		for _, n := range bytes.Split(data[start:], []byte{0}) {
			if !name.Match(n) {
				break
			}
			names = append(names, string(n))
		}
		if slices.Contains(names, "LD_PRELOAD") && slices.Contains(names, "LD_LIBRARY_PATH") && len(names) > 5 {
			return names
		}
	}
}
