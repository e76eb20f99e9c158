package main

import (
	"strings"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

func TestCheckCgroupRoot(t *testing.T) {
	cpu := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpu"}, Mountpoint: "/sys/fs/cgroup/cpu", Root: "/"}
	mem := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"memory"}, Mountpoint: "/sys/fs/cgroup/memory", Root: "/"}
	v2 := &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: "/sys/fs/cgroup", Root: "/"}
	hybrid := &cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{cpu, mem}}
	pure := &cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{v2}, Unified: v2}
	in := func(hs ...*cgroupfs.Hierarchy) func(*cgroupfs.Hierarchy, string) bool {
		return func(h *cgroupfs.Hierarchy, p string) bool {
			if p == "/" {
				t.Errorf("looked up /")
			}
			for _, x := range hs {
				if x == h {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name        string
		layout      *cgroupfs.Layout
		root        string
		exists      func(*cgroupfs.Hierarchy, string) bool
		wantMissing string
		wantErr     string
	}{
		{name: "root of everything", layout: pure, root: "/", exists: in()},
		{name: "pure v2, exists", layout: pure, root: "/svc", exists: in(v2)},
		{name: "pure v2, missing", layout: pure, root: "/nonexistent", exists: in(),
			wantErr: "--cgroup-root /nonexistent exists in no cgroup hierarchy (looked for /sys/fs/cgroup/nonexistent)"},
		{name: "v1, everywhere", layout: hybrid, root: "/svc", exists: in(cpu, mem)},
		{name: "v1, in some", layout: hybrid, root: "/svc", exists: in(cpu), wantMissing: "memory"},
		{name: "v1, nowhere", layout: hybrid, root: "/svc", exists: in(),
			wantErr: "(looked for /sys/fs/cgroup/cpu/svc, /sys/fs/cgroup/memory/svc)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			missing, err := checkCgroupRoot(tc.layout, tc.root, tc.exists)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(missing, ","); got != tc.wantMissing {
				t.Errorf("missing %q, want %q", got, tc.wantMissing)
			}
		})
	}
}
