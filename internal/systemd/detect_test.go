package systemd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

var (
	v2     = &cgroupfs.Layout{Unified: &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: "/sys/fs/cgroup", Root: "/"}}
	hybrid = &cgroupfs.Layout{Unified: &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: "/sys/fs/cgroup/unified", Root: "/"}}
	v1     = &cgroupfs.Layout{}
)

// fixture writes a /proc and /run tree for Detect.
func fixture(t *testing.T, comm, cgroup string, booted bool) string {
	root := t.TempDir()
	files := map[string]string{"proc/1/comm": comm + "\n", "proc/1/cgroup": cgroup}
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
		name, comm, cg string
		layout         *cgroupfs.Layout
		booted         bool
		want           bool
		reason         string
	}{
		{"pure v2", "systemd", "0::/init.scope\n", v2, true, true, "/sys/fs/cgroup"},
		{"hybrid", "systemd", "1:cpu:/\n0::/init.scope\n", hybrid, true, true, "/sys/fs/cgroup/unified"},
		{"v1 only", "systemd", "1:cpu:/\n", v1, true, false, "no cgroup2 hierarchy"},
		{"other init", "tini", "0::/\n", v2, false, false, `PID 1 is "tini"`},
		{"not booted", "systemd", "0::/init.scope\n", v2, false, false, "/run/systemd/system"},
		{"cgroup2 not its own", "systemd", "0::/\n", v2, true, false, "not systemd's"},
	} {
		d, err := Detect(fixture(t, c.comm, c.cg, c.booted), c.layout)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d.Systemd != c.want || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: %+v, want Systemd=%v and a reason with %q", c.name, d, c.want, c.reason)
		}
	}
	if _, err := Detect(t.TempDir(), v2); err == nil {
		t.Error("Detect of an empty tree: no error")
	}
}

// TestDetectHere runs the probe on this machine (whatever it finds must be
// consistent with PID 1's name).
func TestDetectHere(t *testing.T) {
	layout, err := cgroupfs.Discover("/proc")
	if err != nil {
		t.Skip(err)
	}
	d, err := Detect("/", layout)
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
	// Without CAP_SYS_ADMIN (the daemon's unit keeps none) user.delegate
	// alone answers: delegated, or not.
	userOnly := func(p, name string) ([]byte, error) {
		if name == "trusted.delegate" {
			return nil, unix.EPERM
		}
		return get(p, name)
	}
	if m, at, err := Managed("/m", "/user.slice/user-1000.slice/u.service/x", "", userOnly); m || at != "/user.slice/user-1000.slice/u.service" || err != nil {
		t.Errorf("Managed with user.* only, below a delegated cgroup: %v, %q, %v", m, at, err)
	}
	if m, _, err := Managed("/m", "/system.slice/cgred.service", "", userOnly); !m || err != nil {
		t.Errorf("Managed with user.* only, in a managed cgroup: %v, %v", m, err)
	}
	// A kernel without user.* on cgroupfs and no CAP_SYS_ADMIN: blind.
	blind := func(p, name string) ([]byte, error) {
		if name == "trusted.delegate" {
			return nil, unix.EPERM
		}
		return nil, unix.EOPNOTSUPP
	}
	if m, _, err := Managed("/m", "/a/b", "", blind); !m || !errors.Is(err, unix.EPERM) {
		t.Errorf("Managed reading neither attribute: %v, %v, want managed and the EPERM", m, err)
	}
	// A path that does not exist yet (a template) hides nothing.
	gone := func(p, name string) ([]byte, error) {
		if p == "/m/a/new" {
			return nil, unix.ENOENT
		}
		return get(p, name)
	}
	if m, _, err := Managed("/m", "/a/new", "", gone); !m || err != nil {
		t.Errorf("Managed of a missing cgroup: %v, %v", m, err)
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
