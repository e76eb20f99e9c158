package metrics

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUsageFixtures reads fixture trees laid out as cgroupfs is: a v2
// hierarchy with and without memory.current, a v1 cpuacct hierarchy, and a
// v1 hierarchy whose controller is not reachable as <root>/<name>.
func TestUsageFixtures(t *testing.T) {
	root := t.TempDir()
	v2 := &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: filepath.Join(root, "unified"), Root: "/"}
	writeFiles(t, filepath.Join(v2.Mountpoint, "dest"), map[string]string{
		"cgroup.procs":   "10\n11\n12\n",
		"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
		"memory.current": "4096\n",
		"memory.stat":    "anon 4096\n",
	})
	writeFiles(t, filepath.Join(v2.Mountpoint, "dest", "sub"), map[string]string{"cgroup.procs": "13\n"})
	writeFiles(t, filepath.Join(v2.Mountpoint, "nomem"), map[string]string{
		"cgroup.procs": "", "cpu.stat": "usage_usec 0\n",
	})
	acct := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpuacct"}, Mountpoint: filepath.Join(root, "cpuacct"), Root: "/"}
	writeFiles(t, filepath.Join(acct.Mountpoint, "dest"), map[string]string{
		"cgroup.procs":         "20\n21\n",
		"cpuacct.usage":        "1500000000\n",
		"cpuacct.usage_percpu": "1000000000 500000000\n",
		"cpuacct.stat":         "user 100\nsystem 50\n",
	})
	odd := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpu", "cpuacct"}, Mountpoint: filepath.Join(root, "elsewhere", "cpu+acct"), Root: "/"}
	writeFiles(t, filepath.Join(odd.Mountpoint, "dest"), map[string]string{
		"cgroup.procs": "30\n", "cpuacct.usage": "7\n", "cpuacct.usage_percpu": "7\n", "cpuacct.stat": "user 0\nsystem 0\n",
	})
	r := NewUsageReader(&cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{acct, odd, v2}, Unified: v2})
	for _, c := range []struct {
		name string
		h    *cgroupfs.Hierarchy
		path string
		want Usage
	}{
		{"v2 with memory", v2, "/dest", Usage{Tasks: 3, CPUSeconds: 2.5, HasCPU: true, MemoryBytes: 4096, HasMemory: true}},
		{"v2 without the memory controller", v2, "/nomem", Usage{Tasks: 0, HasCPU: true}},
		{"v1 cpuacct", acct, "/dest", Usage{Tasks: 2, CPUSeconds: 1.5, HasCPU: true}},
		{"v1 controller not at <root>/<name>: tasks only", odd, "/dest", Usage{Tasks: 1}},
	} {
		got, err := r.Read(c.h, c.path)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	for _, h := range []*cgroupfs.Hierarchy{v2, acct} {
		if _, err := r.Read(h, "/gone"); !errors.Is(err, ErrNoCgroup) {
			t.Errorf("%s: a missing cgroup: %v, want ErrNoCgroup", h.Name(), err)
		}
	}
}

// TestIntegrationUsage: a spinning child in a test cgroup of the real
// cpuacct, memory and cgroup2 hierarchies is counted, its CPU time grows
// between two reads, and its memory is charged (root only).
func TestIntegrationUsage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root to create cgroups")
	}
	l, err := cgroupfs.Discover("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "/cgre-test-" + hex.EncodeToString(rnd[:])
	var used []*cgroupfs.Hierarchy
	var procs []string
	for _, h := range l.Hierarchies {
		if h.Version == cgroupfs.V1 && h.Name() != "cpuacct" && h.Name() != "memory" && h.Name() != "cpu,cpuacct" {
			continue
		}
		dir := filepath.Join(h.Mountpoint, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		})
		used = append(used, h)
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	// The shell joins the cgroups, then allocates (memory is charged where
	// a task is when it allocates) and spins.
	spin := exec.Command("/bin/sh", append([]string{"-c", `for f; do echo $$ > "$f"; done; x=$(head -c 4000000 /dev/zero | tr '\000' a); while :; do :; done`, "sh"}, procs...)...)
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spin.Process.Kill(); _ = spin.Wait() })
	time.Sleep(300 * time.Millisecond)
	if len(used) == 0 {
		t.Skip("no cpuacct, memory or cgroup2 hierarchy mounted")
	}
	r := NewUsageReader(l)
	first := map[*cgroupfs.Hierarchy]Usage{}
	for _, h := range used {
		u, err := r.Read(h, name)
		if err != nil {
			t.Fatalf("%s: %v", h.Name(), err)
		}
		first[h] = u
	}
	time.Sleep(300 * time.Millisecond)
	for _, h := range used {
		u, err := r.Read(h, name)
		if err != nil {
			t.Fatalf("%s: %v", h.Name(), err)
		}
		t.Logf("%s: %+v", h.Name(), u)
		if u.Tasks != 1 {
			t.Errorf("%s: %d tasks, want 1", h.Name(), u.Tasks)
		}
		switch {
		case h.Version == cgroupfs.V2 || h.Name() != "memory":
			if !u.HasCPU || u.CPUSeconds <= first[h].CPUSeconds {
				t.Errorf("%s: CPU time did not grow for a spinning task: %v then %v", h.Name(), first[h].CPUSeconds, u.CPUSeconds)
			}
		default:
			if !u.HasMemory || u.MemoryBytes == 0 {
				t.Errorf("%s: no memory charged: %+v", h.Name(), u)
			}
		}
	}
}
