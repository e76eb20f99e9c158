package systemd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

const (
	miV2     = "25 1 0:22 / / rw - ext4 /dev/vda rw\n30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	miHybrid = "25 1 0:22 / / rw - ext4 /dev/vda rw\n31 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	miV1     = "25 1 0:22 / / rw - ext4 /dev/vda rw\n31 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
)

// fixture writes a /proc and /run tree for Detect.
func fixture(t *testing.T, comm, mountinfo, cgroup string, booted bool) string {
	root := t.TempDir()
	files := map[string]string{"proc/1/comm": comm + "\n", "proc/self/mountinfo": mountinfo, "proc/1/cgroup": cgroup}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if booted {
		if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name, comm, mi, cg string
		booted             bool
		want               bool
		reason             string
	}{
		{"pure v2", "systemd", miV2, "0::/init.scope\n", true, true, "/sys/fs/cgroup"},
		{"hybrid", "systemd", miHybrid, "1:cpu:/\n0::/init.scope\n", true, true, "/sys/fs/cgroup/unified"},
		{"v1 only", "systemd", miV1, "1:cpu:/\n", true, false, "no cgroup2 hierarchy"},
		{"other init", "tini", miV2, "0::/\n", false, false, `PID 1 is "tini"`},
		{"not booted", "systemd", miV2, "0::/init.scope\n", false, false, "/run/systemd/system"},
		{"cgroup2 not its own", "systemd", miV2, "0::/\n", true, false, "not systemd's"},
	} {
		d, err := Detect(fixture(t, c.comm, c.mi, c.cg, c.booted))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d.Systemd != c.want || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: %+v, want Systemd=%v and a reason with %q", c.name, d, c.want, c.reason)
		}
	}
	if _, err := Detect(t.TempDir()); err == nil {
		t.Error("Detect of an empty tree: no error")
	}
}

// TestDetectHere runs the probe on this machine (whatever it finds must be
// consistent with PID 1's name).
func TestDetectHere(t *testing.T) {
	d, err := Detect("/")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", d)
	if d.Systemd && d.PID1 != "systemd" {
		t.Errorf("detected systemd with PID 1 %q", d.PID1)
	}
}

func TestManaged(t *testing.T) {
	attrs := map[string]string{
		"/m/system.slice/cgred.service":           "",
		"/m/user.slice/job.scope":                 "trusted.delegate",
		"/m/user.slice/user-1000.slice/u.service": "user.delegate",
	}
	get := func(p, name string) ([]byte, error) {
		if attrs[p] == name {
			return []byte("1"), nil
		}
		return nil, unix.ENODATA
	}
	for _, c := range []struct {
		rel, root string
		managed   bool
		at        string
	}{
		{"/system.slice/cgred.service", "", true, ""},
		{"/system.slice/new/%u", "", true, ""},
		{"/user.slice/job.scope", "", false, "/user.slice/job.scope"},
		{"/user.slice/job.scope/a/b", "", false, "/user.slice/job.scope"},
		{"/user.slice/user-1000.slice/u.service/x", "", false, "/user.slice/user-1000.slice/u.service"},
		{"/rules/a", "/rules", false, ""},
		{"/rules", "/rules/", false, ""},
		{"/rulesx", "/rules", true, ""},
		{"/", "", true, ""},
	} {
		m, at, err := Managed("/m", c.rel, c.root, get)
		if err != nil || m != c.managed || at != c.at {
			t.Errorf("Managed(%q, root %q) = %v, %q, %v; want %v, %q", c.rel, c.root, m, at, err, c.managed, c.at)
		}
	}
	denied := func(string, string) ([]byte, error) { return nil, unix.EPERM }
	if m, _, err := Managed("/m", "/a", "", denied); !m || !errors.Is(err, unix.EPERM) {
		t.Errorf("Managed without the right to read trusted.*: %v, %v", m, err)
	}
}

// TestIntegrationManagedDelegatedScope: the cgroup of a delegated scope the
// placer started carries trusted.delegate on the real kernel, so raw
// destinations below it are not managed; its slice is.
func TestIntegrationManagedDelegatedScope(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	c := dialBox(t, b.PrivateAddress)
	pids := startTasks(t, b, "cgre-src", 1)
	scope := ScopeName("batch.slice", 5)
	if _, err := c.StartScope(context.Background(), scope, pids, ScopeOptions{Slice: "batch.slice", Delegate: true}); err != nil {
		t.Fatal(err)
	}
	rel := "/batch.slice/" + scope
	m, at, err := Managed(b.Cgroup, rel+"/sub", "", Getxattr)
	if err != nil || m || at != rel {
		t.Errorf("below the delegated scope: managed %v at %q (%v), want not managed, delegated at %s", m, at, err, rel)
	}
	if m, _, err := Managed(b.Cgroup, "/batch.slice", "", Getxattr); err != nil || !m {
		t.Errorf("batch.slice: managed %v (%v), want managed", m, err)
	}
	if m, _, err := Managed(b.Cgroup, "/system.slice/cgre-src.service", "", Getxattr); err != nil || !m {
		t.Errorf("a service: managed %v (%v), want managed", m, err)
	}
}
