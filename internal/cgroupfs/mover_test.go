package cgroupfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// These unit tests run the Mover on plain directories standing in for a
// cgroup filesystem: they check which files are read and written, not the
// kernel's behaviour (see the TestIntegration* tests for that).

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMoveFixture(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(map[Version]string{V1: "v1", V2: "v2"}[v], func(t *testing.T) {
			mnt := t.TempDir()
			writeFiles(t, mnt, map[string]string{"a/b/cgroup.procs": ""})
			h := &Hierarchy{Version: v, Controllers: []string{"cpu"}, Mountpoint: mnt, Root: "/"}
			m := NewMover()
			if err := m.Move(h, "/a/b", 4242); err != nil {
				t.Fatal(err)
			}
			if got := readString(t, filepath.Join(mnt, "a/b/cgroup.procs")); got != "4242" {
				t.Errorf("cgroup.procs = %q", got)
			}
			if n := m.OpenFiles(); n != 1 {
				t.Errorf("%d descriptors open, want 1", n)
			}
			if !m.Exists(h, "/a/b") || m.Exists(h, "/a/c") || m.Exists(h, "a/b") {
				t.Error("Exists is wrong")
			}
			// The cgroup disappears: ENOENT, and the descriptor is dropped
			// (a plain file's open descriptor stays writable, so the
			// engine's Forget after ENOENT stands in for the kernel's
			// ENODEV here; see TestMoveReopensOnce).
			m.Forget(h, "/a/b")
			if err := os.RemoveAll(filepath.Join(mnt, "a/b")); err != nil {
				t.Fatal(err)
			}
			err := m.Move(h, "/a/b", 4242)
			if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ENOENT) {
				t.Fatalf("err = %v, want ENOENT", err)
			}
			if !strings.Contains(err.Error(), "4242") || !strings.Contains(err.Error(), "/a/b") {
				t.Errorf("error does not name pid and path: %v", err)
			}
			if n := m.OpenFiles(); n != 0 {
				t.Errorf("%d descriptors open after ENOENT", n)
			}
			// A cgroup missing from the start.
			if err := m.Move(h, "/nope", 1); !errors.Is(err, unix.ENOENT) {
				t.Errorf("missing cgroup: err = %v", err)
			}
			if err := m.Move(h, "/a", 0); !errors.Is(err, ErrInvalidPID) {
				t.Errorf("pid 0: err = %v", err)
			}
			if err := m.Move(h, "/../a", 1); !errors.Is(err, ErrOutsideMount) {
				t.Errorf("outside: err = %v", err)
			}
		})
	}
}

func TestMoveRootMount(t *testing.T) {
	// A sub-tree mount: path /docker/abc/x lives at <mnt>/x.
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{"x/cgroup.procs": ""})
	h := &Hierarchy{Version: V1, Controllers: []string{"cpu", "cpuacct"}, Mountpoint: mnt, Root: "/docker/abc"}
	m := NewMover() // the hierarchy is built on first use
	if err := m.Move(h, "/docker/abc/x", 7); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(mnt, "x/cgroup.procs")); got != "7" {
		t.Errorf("cgroup.procs = %q", got)
	}
	if err := m.Move(h, "/docker/other", 7); !errors.Is(err, ErrOutsideMount) {
		t.Errorf("err = %v, want ErrOutsideMount", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestCreateV2Fixture(t *testing.T) {
	// Plain directories do not grow cgroup files by themselves, so each
	// case spells out the chain's files as the kernel would show them
	// after the writes that should happen.
	open := map[string]string{
		"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": "",
		"a/cgroup.controllers": "cpu memory pids\n", "a/cgroup.subtree_control": "",
		"a/b/cgroup.controllers": "cpu memory pids\n", "a/b/cgroup.subtree_control": "",
	}
	tests := []struct {
		name        string
		files       map[string]string
		below       string
		path        string
		controllers []string
		wantIssues  string // "controller@cgroup" list
		wantFiles   map[string]string
	}{
		{
			name:        "enable from the root down to the parent; pseudo-names ignored",
			files:       open,
			below:       "/",
			path:        "/a/b/c",
			controllers: []string{"cpu", "unified", "*", "name=x", "cpu"},
			wantFiles:   map[string]string{"cgroup.subtree_control": "+cpu", "a/cgroup.subtree_control": "+cpu", "a/b/cgroup.subtree_control": "+cpu"},
		},
		{
			name: "already enabled is not rewritten; unavailable is reported once",
			files: map[string]string{
				"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": "memory\n",
				"a/cgroup.controllers": "memory\n", "a/cgroup.subtree_control": "memory\n",
				"a/b/cgroup.controllers": "memory\n", "a/b/cgroup.subtree_control": "",
			},
			below:       "/",
			path:        "/a/b/c",
			controllers: []string{"memory", "io"},
			wantIssues:  "io@/",
			wantFiles:   map[string]string{"cgroup.subtree_control": "memory", "a/cgroup.subtree_control": "memory", "a/b/cgroup.subtree_control": "+memory"},
		},
		{
			name: "nothing above the cgroup root is written",
			files: map[string]string{
				"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": "memory\n",
				"a/cgroup.controllers": "memory\n", "a/cgroup.subtree_control": "",
				"a/b/cgroup.controllers": "memory\n", "a/b/cgroup.subtree_control": "",
			},
			below:       "/a",
			path:        "/a/b/c",
			controllers: []string{"cpu", "memory"},
			wantIssues:  "cpu@/a",
			wantFiles:   map[string]string{"cgroup.subtree_control": "memory", "a/cgroup.subtree_control": "+memory", "a/b/cgroup.subtree_control": "+memory"},
		},
		{
			name:        "parent above the cgroup root: only checked",
			files:       open,
			below:       "/a/b/c",
			path:        "/a/b/c",
			controllers: []string{"memory"},
			wantIssues:  "memory@/a/b",
			wantFiles:   map[string]string{"cgroup.subtree_control": "", "a/cgroup.subtree_control": "", "a/b/cgroup.subtree_control": ""},
		},
		{
			name: "write refused (EBUSY in the kernel): reported, directory still created",
			files: map[string]string{
				"cgroup.controllers": "cpu\n", "cgroup.subtree_control": "",
				"a/cgroup.controllers": "cpu\n", // a/cgroup.subtree_control missing: the write fails
			},
			below:       "/",
			path:        "/a/b",
			controllers: []string{"cpu"},
			wantIssues:  "cpu@/a",
			wantFiles:   map[string]string{"cgroup.subtree_control": "+cpu"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mnt := t.TempDir()
			writeFiles(t, mnt, tt.files)
			h := &Hierarchy{Version: V2, Controllers: []string{"cpu", "memory", "pids"}, Mountpoint: mnt, Root: "/"}
			m := NewMover(WithCgroupRoot(tt.below))
			err := m.Create(h, tt.path, tt.controllers)
			var got []string
			var ce *ControllerError
			if errors.As(err, &ce) {
				if !errors.Is(err, ErrControllers) {
					t.Error("ControllerError does not match ErrControllers")
				}
				for _, f := range ce.Failures {
					got = append(got, f.Controller+"@"+f.Cgroup)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != tt.wantIssues {
				t.Errorf("issues = %q, want %q (err %v)", got, tt.wantIssues, err)
			}
			if fi, err := os.Stat(filepath.Join(mnt, tt.path)); err != nil || !fi.IsDir() {
				t.Errorf("%s not created: %v", tt.path, err)
			}
			for f, want := range tt.wantFiles {
				if got := strings.TrimSpace(readString(t, filepath.Join(mnt, f))); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
		})
	}
}

func TestCreateV1Fixture(t *testing.T) {
	mnt := t.TempDir()
	h := &Hierarchy{Version: V1, Controllers: []string{"cpu"}, Mountpoint: mnt, Root: "/"}
	m := NewMover()
	if err := m.Create(h, "/x/y/z", []string{"cpu"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(h, "/x/y/z", nil); err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "x/y/z")); err != nil || !fi.IsDir() {
		t.Fatal(err)
	}
	if err := m.Create(h, "/", nil); err != nil {
		t.Errorf("Create(/) = %v", err)
	}
	if err := m.Create(h, "x", nil); !errors.Is(err, ErrOutsideMount) {
		t.Errorf("relative path: %v", err)
	}
	// A file in the way is a real error.
	writeFiles(t, mnt, map[string]string{"f": ""})
	if err := m.Create(h, "/f/g", nil); err == nil {
		t.Error("Create through a file succeeded")
	}
}

func TestCreateCpusetFixture(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"cpuset.cpus":         "0-3\n",
		"cpuset.mems":         "0\n",
		"set/cpuset.cpus":     "1\n", // existing and initialised: left alone
		"set/cpuset.mems":     "0\n",
		"set/new/cpuset.cpus": "\n", // what the kernel gives a new cgroup
		"set/new/cpuset.mems": "\n",
	})
	h := &Hierarchy{Version: V1, Controllers: []string{"cpuset"}, Mountpoint: mnt, Root: "/"}
	if err := NewMover().Create(h, "/set/new", nil); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"set/cpuset.cpus": "1", "set/new/cpuset.cpus": "1", "set/new/cpuset.mems": "0"} {
		if got := strings.TrimSpace(readString(t, filepath.Join(mnt, f))); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
}

func TestMoverConcurrent(t *testing.T) {
	mnt := t.TempDir()
	var files = map[string]string{}
	for i := 0; i < 8; i++ {
		files["g"+itoa(i)+"/cgroup.procs"] = ""
	}
	writeFiles(t, mnt, files)
	v1 := &Hierarchy{Version: V1, Controllers: []string{"cpu"}, Mountpoint: mnt, Root: "/"}
	v2 := &Hierarchy{Version: V2, Mountpoint: mnt, Root: "/"}
	m := NewMover()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				h := v1
				if i%2 == 0 {
					h = v2
				}
				p := "/g" + itoa((w+i)%8)
				if err := m.Move(h, p, 100+i); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					m.Forget(h, p)
				}
				_ = m.Create(h, p, nil)
			}
		}()
	}
	wg.Wait()
}
