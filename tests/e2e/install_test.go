package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func makeTarget(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append(args, "GO="+goTool())...)
	cmd.Dir = moduleDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestManPages: the man pages are made from man/*.md by `make man`, render
// without a single warning (man --warnings), and agree with --help, the
// README and the service script: every option --help lists is in
// cgrulesengd(8) and the README, every variable the script reads is in
// cgred.conf(5) and samples/cgred.conf.
func TestManPages(t *testing.T) {
	requireDaemon(t)
	requireTool(t, "man", "man-db")
	makeTarget(t, "man")
	for _, p := range []string{"cgrulesengd.8", "cgrules.conf.5", "cgred.conf.5"} {
		checkManPage(t, filepath.Join(moduleDir, "build", "man", p))
	}

	// The check sees warnings: a page with an unknown request has one.
	bad := filepath.Join(t.TempDir(), "bad.1")
	if err := os.WriteFile(bad, []byte(".TH BAD 1\n.SH NAME\nbad \\- bad\n.NOSUCHREQUEST x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, w, _ := renderMan(bad); !strings.Contains(w, "warning") {
		t.Errorf("man --warnings shows no warning for a broken page: %q", w)
	}

	help, err := exec.Command(daemonBin, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		data, err := os.ReadFile(filepath.Join(moduleDir, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	man8, readme := read("man/cgrulesengd.8.md"), read("README.md")
	opts := regexp.MustCompile(`(?m)^\s+(?:(-[a-zA-Z])(?:\[\w+\])?,?\s+)?(--[a-z-]+)`).FindAllStringSubmatch(string(help), -1)
	if len(opts) < 20 {
		t.Fatalf("found only %d options in --help:\n%s", len(opts), help)
	}
	for _, o := range opts {
		for _, name := range o[1:] {
			if name == "" {
				continue
			}
			if !strings.Contains(man8, "**"+name+"**") {
				t.Errorf("cgrulesengd(8) does not document %s (listed by --help)", name)
			}
			if !regexp.MustCompile(regexp.QuoteMeta(name) + `\b`).MatchString(readme) {
				t.Errorf("the README does not mention %s (listed by --help)", name)
			}
		}
	}

	script := read("init/cgred")
	m := regexp.MustCompile(`(?m)^\s*CONFIG_FILE='' (.*)$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("cannot find the settings the script resets before sourcing them")
	}
	cgredConf, sample := read("man/cgred.conf.5.md"), read("samples/cgred.conf")
	vars := append([]string{"CONFIG_FILE"}, strings.Fields(strings.ReplaceAll(m[1], "=''", ""))...)
	for _, v := range vars {
		if !strings.Contains(cgredConf, "**"+v+"**") {
			t.Errorf("cgred.conf(5) does not document %s, which the script reads", v)
		}
		if !regexp.MustCompile(`(?m)^` + v + `=`).MatchString(sample) {
			t.Errorf("samples/cgred.conf does not set %s, which the script reads", v)
		}
	}
}

// TestMakeInstall: make install honours DESTDIR, PREFIX, SBINDIR, MANDIR,
// SYSCONFDIR and UNITDIR (the script, the unit and the settings point at
// the installed paths), never overwrites an existing rules or settings
// file, and make uninstall removes what it installed.
func TestMakeInstall(t *testing.T) {
	requireDaemon(t)
	settingsRel := "default/cgred"
	if st, err := os.Stat("/etc/sysconfig"); err == nil && st.IsDir() {
		settingsRel = "sysconfig/cgred.conf"
	}

	// Defaults with a prefix.
	dest := t.TempDir()
	makeTarget(t, "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	files := map[string]string{
		"/usr/local/sbin/cgrulesengd":                 "",
		"/etc/init.d/cgred":                           `DAEMON=\$\{CGRED_DAEMON:-/usr/local/sbin/cgrulesengd\}`,
		"/usr/local/lib/systemd/system/cgred.service": `ExecStart=/usr/local/sbin/cgrulesengd -n `,
		"/usr/local/share/man/man8/cgrulesengd.8":     `cgrulesengd`,
		"/usr/local/share/man/man5/cgrules.conf.5":    `cgrules`,
		"/usr/local/share/man/man5/cgred.conf.5":      `cgred`,
		"/etc/cgrules.conf":                           ``,
		"/etc/" + settingsRel:                         `CONFIG_FILE="/etc/cgrules.conf"`,
	}
	checkTree(t, dest, files)
	if st, err := os.Stat(filepath.Join(dest, "/etc/cgrules.d")); err != nil || !st.IsDir() {
		t.Errorf("no /etc/cgrules.d: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dest, "/etc/init.d/cgred")); st == nil || st.Mode().Perm() != 0o755 {
		t.Errorf("/etc/init.d/cgred is not mode 0755")
	}

	// Existing configuration is kept.
	mine := "# the admin's own rules\n"
	for _, f := range []string{"/etc/cgrules.conf", "/etc/" + settingsRel} {
		if err := os.WriteFile(filepath.Join(dest, f), []byte(mine), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	makeTarget(t, "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	for _, f := range []string{"/etc/cgrules.conf", "/etc/" + settingsRel} {
		if data, _ := os.ReadFile(filepath.Join(dest, f)); string(data) != mine {
			t.Errorf("make install overwrote %s", f)
		}
	}
	makeTarget(t, "uninstall", "DESTDIR="+dest, "PREFIX=/usr/local")
	left := treeFiles(t, dest)
	if want := []string{"/etc/cgrules.conf", "/etc/" + settingsRel}; strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("after make uninstall: %v, want only the changed configuration %v", left, want)
	}

	// Every directory variable.
	dest2 := t.TempDir()
	vars := []string{"DESTDIR=" + dest2, "PREFIX=/opt/cgre", "SBINDIR=/opt/cgre/bin", "MANDIR=/opt/cgre/man",
		"SYSCONFDIR=/opt/cgre/etc", "UNITDIR=/opt/cgre/units"}
	makeTarget(t, append([]string{"install"}, vars...)...)
	checkTree(t, dest2, map[string]string{
		"/opt/cgre/bin/cgrulesengd":        "",
		"/opt/cgre/etc/init.d/cgred":       `DAEMON=\$\{CGRED_DAEMON:-/opt/cgre/bin/cgrulesengd\}(?s:.*)/opt/cgre/etc/` + regexp.QuoteMeta(settingsRel[:strings.IndexByte(settingsRel, '/')]),
		"/opt/cgre/units/cgred.service":    `EnvironmentFile=-/opt/cgre/etc/(?s:.*)ExecStartPre=/opt/cgre/bin/cgrulesengd --check-settings=/opt/cgre/etc/sysconfig/cgred.conf --check-settings=/opt/cgre/etc/default/cgred\n(?s:.*)ExecStart=/opt/cgre/bin/cgrulesengd `,
		"/opt/cgre/man/man8/cgrulesengd.8": "",
		"/opt/cgre/etc/cgrules.conf":       "",
		"/opt/cgre/etc/" + settingsRel:     `CONFIG_FILE="/opt/cgre/etc/cgrules.conf"`,
	})
	makeTarget(t, append([]string{"uninstall"}, vars...)...)
	if left := treeFiles(t, dest2); len(left) != 0 {
		t.Errorf("make uninstall left %v", left)
	}
}

// checkTree checks that each file exists below root and matches its
// pattern.
func checkTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for f, re := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Errorf("not installed: %s (%v); installed: %v", f, err, treeFiles(t, root))
			continue
		}
		if re != "" && !regexp.MustCompile(re).Match(data) {
			t.Errorf("%s does not match %q", f, re)
		}
	}
}

// treeFiles lists the files (not directories) below root, as absolute
// paths inside it.
func treeFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	return out
}
