package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// TestUnitSettingsTrustSystemd (issue 19, with item 7): the unit's check
// of its settings files, run by a real systemd (a box: tests/sdbox). The
// unit is init/cgred.service with its paths pointed at the test's files
// and, since the daemon itself needs the host's namespaces, an ExecStart
// that only leaves a mark; everything else (EnvironmentFile=,
// ExecStartPre=, UnsetEnvironment=, the hardening) is the unit's.
//
//   - A world-writable settings file with LD_PRELOAD= (a library that
//     leaves a mark when loaded) and OPTIONS=: the start fails, the
//     journal has the check's message, neither the daemon's stand-in nor
//     the preloaded library ran.
//   - The same file made root's alone: the start works, and the library
//     still does not run (UnsetEnvironment=).
//   - The unit without UnsetEnvironment=: systemd gives LD_PRELOAD from
//     the file to the unit's processes, which load the library (what the
//     line prevents; so this test can fail).
func TestUnitSettingsTrustSystemd(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	// Under /run, not /tmp: the unit has PrivateTmp=yes, which would hide a
	// directory of the box's /tmp from its processes. The daemon is copied
	// there for the same reason.
	dir, err := os.MkdirTemp("/run", "cgre-e2e-sdset-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cgrulesengd")
	if out, err := exec.Command("cp", daemonBin, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	src, lib := filepath.Join(dir, "mark.c"), filepath.Join(dir, "mark.so")
	csrc := "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void) { close(open(\"/run/cgre-preloaded\", O_CREAT | O_WRONLY, 0600)); }\n"
	if err := os.WriteFile(src, []byte(csrc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	settings := filepath.Join(dir, "cgred.conf")
	unit := readUnit(t)
	for old, new := range map[string]string{
		"/usr/sbin/cgrulesengd":     bin,
		"/etc/sysconfig/cgred.conf": settings,
		"/etc/default/cgred":        filepath.Join(dir, "default-cgred"), // absent: EnvironmentFile=-
		"Type=notify":               "Type=simple",
	} {
		if !strings.Contains(unit, old) {
			t.Fatalf("the unit has no %q", old)
		}
		unit = strings.ReplaceAll(unit, old, new)
	}
	start := regexp.MustCompile(`(?m)^ExecStart=.*$`)
	if len(start.FindAllString(unit, -1)) != 1 {
		t.Fatalf("want one ExecStart line in the unit")
	}
	unit = start.ReplaceAllString(unit, `ExecStart=/bin/sh -c 'touch /run/cgre-started; exec sleep 600'`)
	noUnset := regexp.MustCompile(`(?m)^UnsetEnvironment=.*\n`).ReplaceAllString(unit, "")
	if noUnset == unit {
		t.Fatalf("the unit has no UnsetEnvironment= line")
	}
	box := sdbox.Start(t, sdbox.Options{
		Units: map[string]string{"cgre-settings.service": unit, "cgre-settings-loader.service": noUnset},
		Binds: []string{dir},
	})
	exists := func(p string) bool { _, err := box.ReadFile(p); return err == nil }
	// appears waits for a file a Type=simple service makes once it runs
	// (systemctl start returns when it is forked).
	appears := func(p string) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if exists(p) {
				return true
			}
		}
		return false
	}
	reset := func() {
		t.Helper()
		for _, u := range []string{"cgre-settings.service", "cgre-settings-loader.service"} {
			_, _ = box.Systemctl("stop", u)
			_, _ = box.Systemctl("reset-failed", u)
		}
		if _, err := box.Run("rm", "-f", "/run/cgre-started", "/run/cgre-preloaded"); err != nil {
			t.Fatal(err)
		}
	}

	// A world-writable settings file.
	hostile := "LD_PRELOAD=" + lib + "\nOPTIONS=--cgroup-root=/nowhere -Q\n"
	if err := os.WriteFile(settings, []byte(hostile), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(settings, 0o666); err != nil {
		t.Fatal(err)
	}
	reset()
	if out, err := box.Systemctl("start", "cgre-settings.service"); err == nil {
		t.Errorf("systemctl start with a world-writable settings file succeeded: %s", out)
	}
	journal, _ := box.Run("journalctl", "--no-pager", "-o", "cat", "-u", "cgre-settings.service")
	want := "settings file " + settings + " refused: writable by group or others (mode 0666)"
	if !strings.Contains(journal, want) {
		t.Errorf("the journal does not say %q:\n%s", want, journal)
	}
	if exists("/run/cgre-started") {
		t.Errorf("the service started with a world-writable settings file")
	}
	if exists("/run/cgre-preloaded") {
		t.Errorf("the world-writable file's LD_PRELOAD ran in the unit")
	}

	// Root's alone: it starts, and the loader's variables are still unset.
	if err := os.Chmod(settings, 0o644); err != nil {
		t.Fatal(err)
	}
	reset()
	if out, err := box.Systemctl("start", "cgre-settings.service"); err != nil {
		t.Fatalf("systemctl start with a trusted settings file: %v\n%s", err, out)
	}
	if !appears("/run/cgre-started") {
		t.Errorf("the service did not start with a trusted settings file")
	}
	if exists("/run/cgre-preloaded") {
		t.Errorf("LD_PRELOAD from the settings file reached the unit's processes despite UnsetEnvironment=")
	}

	// Without UnsetEnvironment=, systemd passes LD_PRELOAD on.
	reset()
	if out, err := box.Systemctl("start", "cgre-settings-loader.service"); err != nil {
		t.Fatalf("systemctl start of the unit without UnsetEnvironment=: %v\n%s", err, out)
	}
	if !appears("/run/cgre-started") || !exists("/run/cgre-preloaded") {
		t.Errorf("without UnsetEnvironment= the preloaded library did not run: the test cannot tell what the line does")
	}
	reset()
}
