package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The packages of `make package`, built once per run from the tree.
var (
	packagesOnce sync.Once
	packageDir   string
	packagesErr  error
)

func buildPackages(t testing.TB) (deb, rpm string) {
	t.Helper()
	packagesOnce.Do(func() {
		packageDir, packagesErr = os.MkdirTemp("", "cgre-e2e-dist-")
		if packagesErr != nil {
			return
		}
		cmd := exec.Command("make", "package", "DIST="+packageDir, "PKG_VERSION=0.0~e2e", "GO="+goTool())
		cmd.Dir = moduleDir
		if out, err := cmd.CombinedOutput(); err != nil {
			packagesErr = fmt.Errorf("make package: %v\n%s", err, out)
		}
	})
	if packagesErr != nil {
		t.Fatal(packagesErr)
	}
	debs, _ := filepath.Glob(filepath.Join(packageDir, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(packageDir, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package wrote %v %v, want one .deb and one .rpm", debs, rpms)
	}
	return debs[0], rpms[0]
}

func fileSum(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func dpkgInstalled(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).Output()
	return err == nil && strings.HasPrefix(string(out), "ii")
}

func dpkgKnown(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).Output()
	return err == nil && len(bytes.TrimSpace(out)) > 0 && !strings.HasPrefix(string(out), "un")
}

// snapshot lists the files below the given roots, with their content's
// hash, so that "purge leaves nothing behind" can be compared.
func snapshot(roots ...string) map[string]string {
	m := map[string]string{}
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			// shadow's backups (group-, gshadow-) change with any group edit.
			if strings.HasPrefix(p, "/etc/ld.so.cache") || strings.HasSuffix(p, ".cgre-e2e-backup") || strings.HasSuffix(p, "-") {
				return nil
			}
			if d.Type().IsRegular() {
				m[p] = fileSum(p)
			} else {
				m[p] = d.Type().String()
			}
			return nil
		})
	}
	return m
}

// The machine's files the package owns or the service uses, moved aside
// for the test and put back afterwards, pass or fail.
var serviceFiles = []string{"/etc/cgrules.conf", "/etc/cgrules.d", "/etc/init.d/cgred", "/etc/default/cgred",
	"/etc/sysconfig/cgred.conf", "/var/run/cgred.pid", "/var/lock/subsys/cgred"}

func setAsideServiceFiles(t testing.TB) {
	t.Helper()
	setAside(t, serviceFiles)
}

// setAside renames each of files that exists to FILE.cgre-e2e-backup and,
// in cleanup, removes whatever the test left at FILE and renames the backup
// back; a file that did not exist is removed in cleanup if the test made
// one, so that the machine is left as it was.
func setAside(t testing.TB, files []string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Lstat(f); err != nil {
			t.Cleanup(func() {
				if err := os.RemoveAll(f); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
			continue
		}
		backup := f + ".cgre-e2e-backup"
		if _, err := os.Lstat(backup); err == nil {
			t.Fatalf("%s exists: a leftover of a crashed run? Put it back by hand", backup)
		}
		if err := os.Rename(f, backup); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.RemoveAll(f); err != nil {
				t.Errorf("cleanup: %v", err)
			}
			if err := os.Rename(backup, f); err != nil {
				t.Errorf("cleanup: putting back %s: %v", f, err)
			}
		})
	}
}

var libcgroupFiles = map[string]string{
	"/usr/sbin/cgrulesengd":                 "/usr/sbin/cgrulesengd.libcgroup",
	"/usr/share/man/man8/cgrulesengd.8.gz":  "/usr/share/man/man8/cgrulesengd.libcgroup.8.gz",
	"/usr/share/man/man5/cgrules.conf.5.gz": "/usr/share/man/man5/cgrules.conf.libcgroup.5.gz",
	"/usr/share/man/man5/cgred.conf.5.gz":   "/usr/share/man/man5/cgred.conf.libcgroup.5.gz",
}

// TestDebianPackage installs the .deb of `make package` beside Debian's
// cgroup-tools (libcgroup's daemon, man pages, cgexec and cgclassify), and
// checks: dpkg -i succeeds, the layout is the documented one, the
// configuration files are conffiles, libcgroup's daemon and man pages are
// diverted (not overwritten) and cgexec still works, nothing is started or
// enabled; the installed script runs the installed daemon, which moves a
// ruled task; dpkg -r stops it and gives libcgroup its files back; dpkg
// --purge leaves the machine as it was.
func TestDebianPackage(t *testing.T) {
	requireDaemon(t)
	for tool, pkg := range map[string]string{"dpkg": "dpkg", "dpkg-divert": "dpkg", "man": "man-db", "cgexec": "cgroup-tools"} {
		requireTool(t, tool, pkg)
	}
	if !dpkgInstalled("cgroup-tools") {
		t.Fatal("this test installs the package beside Debian's cgroup-tools: install it (.ci/run does)")
	}
	if dpkgKnown("cgrulesengd") {
		t.Skip("the package cgrulesengd is installed (or left configured) on this machine: this test installs and purges it, so it leaves it alone")
	}
	deb, _ := buildPackages(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "old", "exec")
	e.writeRules("cgresjo  cpu  old\n")

	setAsideServiceFiles(t)
	roots := []string{"/etc", "/usr/sbin", "/usr/share/man", "/usr/lib/systemd/system", "/var/lib/cgrulesengd", "/var/log/cgred"}
	before := snapshot(roots...)
	divertsBefore := run(t, "dpkg-divert", "--list")
	_, groupErr := exec.Command("getent", "group", "cgred").Output()
	groupBefore := groupErr == nil
	libSums := map[string]string{}
	for f := range libcgroupFiles {
		libSums[f] = fileSum(f)
		if libSums[f] == "" {
			t.Fatalf("cgroup-tools' %s is missing", f)
		}
	}
	t.Cleanup(func() {
		if dpkgKnown("cgrulesengd") {
			if out, err := exec.Command("dpkg", "--purge", "cgrulesengd").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge: %v\n%s", err, out)
			}
		}
		for _, l := range strings.Split(run(t, "dpkg-divert", "--list"), "\n") {
			if strings.HasSuffix(l, " by cgrulesengd") {
				f := strings.Fields(l)
				if len(f) >= 5 {
					_ = exec.Command("dpkg-divert", "--package", "cgrulesengd", "--remove", "--rename", "--divert", f[4], f[2]).Run()
				}
			}
		}
	})

	run(t, "dpkg", "-i", deb)

	// Layout.
	listed := run(t, "dpkg", "-L", "cgrulesengd")
	for _, f := range []string{"/usr/sbin/cgrulesengd", "/etc/init.d/cgred", "/lib/systemd/system/cgred.service",
		"/usr/share/man/man8/cgrulesengd.8.gz", "/usr/share/man/man5/cgrules.conf.5.gz", "/usr/share/man/man5/cgred.conf.5.gz",
		"/etc/cgrules.conf", "/etc/default/cgred", "/etc/cgrules.d"} {
		if !slices.Contains(strings.Split(listed, "\n"), f) {
			t.Errorf("dpkg -L does not list %s:\n%s", f, listed)
		}
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	conffiles := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "cgrulesengd")
	for _, f := range []string{"/etc/cgrules.conf", "/etc/default/cgred", "/etc/init.d/cgred"} {
		if !strings.Contains(conffiles, " "+f+" ") {
			t.Errorf("%s is not a conffile: %s", f, conffiles)
		}
	}
	if got, want := fileSum("/usr/sbin/cgrulesengd"), fileSum(filepath.Join(moduleDir, "bin", "cgrulesengd")); got != want {
		t.Errorf("/usr/sbin/cgrulesengd is not the daemon built from the tree")
	}
	if out := run(t, "/usr/sbin/cgrulesengd", "--version"); !strings.HasPrefix(out, "cgrulesengd ") {
		t.Errorf("/usr/sbin/cgrulesengd --version: %q", out)
	}
	for f, diverted := range libcgroupFiles {
		if fileSum(diverted) != libSums[f] {
			t.Errorf("libcgroup's %s was not diverted to %s", f, diverted)
		}
		if fileSum(f) == libSums[f] {
			t.Errorf("%s is still libcgroup's", f)
		}
	}
	if out := run(t, "man", "-w", "cgrulesengd"); strings.TrimSpace(out) != "/usr/share/man/man8/cgrulesengd.8.gz" {
		t.Errorf("man -w cgrulesengd: %q", out)
	}
	for _, page := range []string{"/usr/share/man/man8/cgrulesengd.8.gz", "/usr/share/man/man5/cgrules.conf.5.gz", "/usr/share/man/man5/cgred.conf.5.gz"} {
		checkManPage(t, page)
	}
	if !groupBefore {
		if _, err := exec.Command("getent", "group", "cgred").Output(); err != nil {
			t.Errorf("the package did not create the socket group cgred")
		}
	}

	// Not started, not enabled.
	if pids := processesOf("/usr/sbin/cgrulesengd"); len(pids) > 0 {
		t.Errorf("installing started the daemon: pids %v", pids)
	}
	links, _ := filepath.Glob("/etc/rc?.d/*cgred")
	wants, _ := filepath.Glob("/etc/systemd/system/*/cgred.service")
	if len(links)+len(wants) > 0 {
		t.Errorf("installing enabled the service: %v %v", links, wants)
	}

	// cgroup-tools' cgexec still works beside the package.
	out := run(t, "cgexec", "-g", "cpu:"+e.cg("exec"), "/bin/cat", "/proc/self/cgroup")
	if !regexp.MustCompile(`(?m)^\d+:(\S*,)?cpu(,\S*)?:` + regexp.QuoteMeta(e.cg("exec")) + `$`).MatchString(out) {
		t.Errorf("cgexec -g cpu:%s did not place its command there:\n%s", e.cg("exec"), out)
	}

	// The installed script runs the installed daemon (default binary and
	// pidfile, the test's settings), which works; removing the package stops it.
	settings := filepath.Join(e.dir, "cgred.conf")
	logfile := filepath.Join(e.dir, "run", "log")
	_ = os.MkdirAll(filepath.Dir(logfile), 0o755)
	if err := os.WriteFile(settings, []byte(fmt.Sprintf("CONFIG_FILE=%q\nLOG_FILE=%q\nLOG=\"-vvv\"\nSOCKET_GROUP=\"\"\nOPTIONS=\"--config-dir=%s --cgroup-root=%s%s\"\n",
		e.rules, logfile, e.confDir, e.root, eventsOption())), 0o644); err != nil {
		t.Fatal(err)
	}
	start := exec.Command("/etc/init.d/cgred", "start")
	start.Env = append(os.Environ(), "CGRED_SETTINGS="+settings, "SYSTEMCTL_SKIP_REDIRECT=1")
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("/etc/init.d/cgred start: %v\n%s", err, out)
	}
	pids := processesOf("/usr/sbin/cgrulesengd")
	t.Cleanup(func() {
		for _, p := range pids {
			killAndWaitGone(p, syscall.SIGTERM, 5*time.Second)
		}
	})
	if len(pids) != 1 || fileSum("/var/run/cgred.pid") == "" {
		t.Fatalf("after start: daemons %v, pidfile %v", pids, fileSum("/var/run/cgred.pid") != "")
	}
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("old"), 2*time.Second)

	run(t, "dpkg", "-r", "cgrulesengd")
	if !processGone(pids[0]) {
		t.Errorf("dpkg -r did not stop the daemon (pid %d)", pids[0])
	}
	if _, err := os.Stat("/var/run/cgred.pid"); !os.IsNotExist(err) {
		t.Errorf("/var/run/cgred.pid left after dpkg -r")
	}
	for f := range libcgroupFiles {
		if fileSum(f) != libSums[f] {
			t.Errorf("after dpkg -r, %s is not libcgroup's again", f)
		}
	}
	if _, err := os.Stat("/etc/cgrules.conf"); err != nil {
		t.Errorf("dpkg -r removed the conffile /etc/cgrules.conf (only purge may): %v", err)
	}
	if strings.Contains(run(t, "dpkg-divert", "--list"), "by cgrulesengd") {
		t.Errorf("diversions left after dpkg -r")
	}

	run(t, "dpkg", "--purge", "cgrulesengd")
	after := snapshot(roots...)
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("left behind by the package: %s", p)
		}
	}
	for p, sum := range before {
		if after[p] != sum {
			t.Errorf("changed or removed by the package: %s", p)
		}
	}
	if d := run(t, "dpkg-divert", "--list"); d != divertsBefore {
		t.Errorf("diversions changed:\nbefore:\n%s\nafter:\n%s", divertsBefore, d)
	}
	if _, err := exec.Command("getent", "group", "cgred").Output(); (err == nil) != groupBefore {
		t.Errorf("group cgred: existed before %v, after purge %v", groupBefore, err == nil)
	}
}

// TestRPMPackage checks the .rpm's layout, configuration files and
// scriptlets (it is not installed: this is a Debian machine).
func TestRPMPackage(t *testing.T) {
	requireRoot(t)
	rpmTool := requireTool(t, "rpm", "rpm")
	_, rpm := buildPackages(t)
	files := run(t, rpmTool, "-qlp", rpm)
	for _, f := range []string{"/usr/sbin/cgrulesengd", "/etc/rc.d/init.d/cgred", "/usr/lib/systemd/system/cgred.service",
		"/usr/share/man/man8/cgrulesengd.8.gz", "/usr/share/man/man5/cgrules.conf.5.gz", "/usr/share/man/man5/cgred.conf.5.gz",
		"/etc/cgrules.conf", "/etc/sysconfig/cgred.conf", "/etc/cgrules.d"} {
		if !slices.Contains(strings.Split(files, "\n"), f) {
			t.Errorf("the rpm lacks %s:\n%s", f, files)
		}
	}
	conf := run(t, rpmTool, "-qp", "--configfiles", rpm)
	for _, f := range []string{"/etc/cgrules.conf", "/etc/sysconfig/cgred.conf", "/etc/rc.d/init.d/cgred"} {
		if !strings.Contains(conf, f+"\n") {
			t.Errorf("%s is not a configuration file of the rpm:\n%s", f, conf)
		}
	}
	scripts := run(t, rpmTool, "-qp", "--scripts", rpm)
	for _, want := range []string{"groupadd -r cgred", "cgred stop", "try-restart"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("the rpm's scriptlets lack %q:\n%s", want, scripts)
		}
	}
	if strings.Contains(scripts, "enable") && !strings.Contains(scripts, "disable") {
		t.Errorf("the rpm's scriptlets enable the service:\n%s", scripts)
	}
}

// processesOf lists the live processes running the executable exe.
func processesOf(exe string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscan(p.Name(), &pid); err != nil || processGone(pid) {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && strings.TrimSuffix(l, " (deleted)") == exe {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkManPage renders a man page with man --warnings and fails on any
// warning.
func checkManPage(t testing.TB, page string) {
	t.Helper()
	out, warnings, err := renderMan(page)
	if err != nil || warnings != "" {
		t.Errorf("man --warnings -l %s: %v\n%s", page, err, warnings)
	}
	if !strings.Contains(out, "NAME") || len(out) < 500 {
		t.Errorf("man -l %s rendered %d bytes:\n%s", page, len(out), out)
	}
}

func renderMan(page string) (out, warnings string, err error) {
	cmd := exec.Command("man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80", "LC_ALL=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stderr.String(), err
}
