package cgroupfs

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

func fixtureLayout(t testing.TB, name string) *Layout {
	t.Helper()
	l, err := discover("testdata/"+name+"/proc", "testdata/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type hier struct {
	Version     Version
	Controllers string
	Mountpoint  string
	Root        string
}

func describe(l *Layout) []hier {
	var out []hier
	for _, h := range l.Hierarchies {
		out = append(out, hier{h.Version, strings.Join(h.Controllers, ","), h.Mountpoint, h.Root})
	}
	return out
}

func TestDiscoverFixtures(t *testing.T) {
	tests := []struct {
		name        string
		mode        string
		want        []hier
		controllers string
	}{
		{
			name: "hybrid",
			mode: "hybrid",
			want: []hier{
				{V1, "blkio", "/sys/fs/cgroup/blkio", "/"},
				{V1, "cpu", "/sys/fs/cgroup/cpu", "/"},
				{V1, "cpuacct", "/sys/fs/cgroup/cpuacct", "/"},
				{V1, "cpuset", "/sys/fs/cgroup/cpuset", "/"},
				{V1, "devices", "/sys/fs/cgroup/devices", "/"},
				{V1, "freezer", "/sys/fs/cgroup/freezer", "/"},
				{V1, "memory", "/sys/fs/cgroup/memory", "/"},
				{V1, "pids", "/sys/fs/cgroup/pids", "/"},
				{V1, "name=systemd", "/sys/fs/cgroup/systemd", "/"},
				{V2, "hugetlb", "/sys/fs/cgroup/unified", "/"},
			},
			controllers: "blkio cpu cpuacct cpuset devices freezer hugetlb memory name=systemd pids unified",
		},
		{
			name:        "v2",
			mode:        "v2",
			want:        []hier{{V2, "hugetlb", "/sys/fs/cgroup", "/"}},
			controllers: "cpu cpuset hugetlb io memory misc pids rdma unified",
		},
		{
			name:        "v2systemd",
			mode:        "v2",
			want:        []hier{{V2, "cpuset,cpu,io,memory,hugetlb,pids,rdma,misc", "/sys/fs/cgroup", "/"}},
			controllers: "cpu cpuset hugetlb io memory misc pids rdma unified",
		},
		{
			name: "v1",
			mode: "v1",
			want: []hier{
				{V1, "name=short", "/a", "/"},
				{V1, "blkio", "/sys/fs/cgroup/blkio", "/"},
				{V1, "cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/"},
				{V1, "cpuset", "/sys/fs/cgroup/cpuset", "/"},
				{V1, "devices", "/sys/fs/cgroup/devices", "/"},
				{V1, "freezer", "/sys/fs/cgroup/freezer", "/"},
				{V1, "hugetlb", "/sys/fs/cgroup/hugetlb", "/"},
				{V1, "memory", "/sys/fs/cgroup/memory", "/"},
				{V1, "net_cls,net_prio", "/sys/fs/cgroup/net_cls,net_prio", "/"},
				{V1, "perf_event", "/sys/fs/cgroup/perf_event", "/"},
				{V1, "pids", "/sys/fs/cgroup/pids", "/"},
				{V1, "name=systemd", "/sys/fs/cgroup/systemd", "/"},
			},
			controllers: "blkio cpu cpuacct cpuset devices freezer hugetlb memory name=short name=systemd net_cls net_prio perf_event pids",
		},
		{
			name: "escaped",
			mode: "hybrid",
			want: []hier{
				{V1, "cpu,name=cpu\\040grp", "/mnt/my cgroups/cpu\\x", "/"},
				{V2, "cpu,memory,pids", "/mnt/tab\tdir", "/"},
			},
			controllers: "cpu memory name=cpu\\040grp pids unified",
		},
		{
			name: "container",
			mode: "hybrid",
			want: []hier{
				{V1, "cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/docker/abc"},
				{V1, "name=systemd", "/sys/fs/cgroup/systemd", "/docker/abc"},
				{V2, "", "/sys/fs/cgroup/unified", "/docker/abc"},
			},
			controllers: "cpu cpuacct name=systemd unified",
		},
		{
			name:        "overmount",
			mode:        "v2",
			want:        []hier{{V2, "hugetlb", "/sys/fs/cgroup/unified", "/"}},
			controllers: "cpu cpuset hugetlb io memory misc pids rdma unified",
		},
		{name: "none", mode: "none", want: nil, controllers: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := fixtureLayout(t, tt.name)
			if got := describe(l); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("hierarchies:\n got %+v\nwant %+v", got, tt.want)
			}
			if got := l.Mode(); got != tt.mode {
				t.Errorf("Mode() = %q, want %q", got, tt.mode)
			}
			if got := strings.Join(l.Controllers(), " "); got != tt.controllers {
				t.Errorf("Controllers() = %q, want %q", got, tt.controllers)
			}
			if (l.Unified != nil) != strings.Contains(tt.mode, "v2") && tt.mode != "hybrid" {
				t.Errorf("Unified = %v for mode %s", l.Unified, tt.mode)
			}
			if l.Unified != nil && l.Hierarchies[len(l.Hierarchies)-1] != l.Unified {
				t.Error("Unified is not the last hierarchy")
			}
		})
	}
}

func TestDiscoverErrors(t *testing.T) {
	if _, err := Discover(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing mountinfo: err = %v", err)
	}
	// A cgroup2 mount whose cgroup.controllers cannot be read.
	if _, err := discover("testdata/v2/proc", t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cgroup.controllers: err = %v", err)
	}
}

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []mount
		wantErr bool
	}{
		{
			name: "optional fields",
			in:   "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n",
			want: []mount{{ID: 36, Parent: 35, Root: "/mnt1", Mountpoint: "/mnt2", FSType: "ext3", SuperOpts: "rw,errors=continue"}},
		},
		{
			name: "no optional fields, no trailing newline",
			in:   "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
			want: []mount{{ID: 31, Parent: 30, Root: "/", Mountpoint: "/sys/fs/cgroup/cpu", FSType: "cgroup", SuperOpts: "rw,cpu"}},
		},
		{
			name: "escapes",
			in:   "1 0 0:1 /a\\040b /x\\011y\\012z\\134 rw - cgroup2 none rw\n",
			want: []mount{{ID: 1, Root: "/a b", Mountpoint: "/x\ty\nz\\", FSType: "cgroup2", SuperOpts: "rw"}},
		},
		{
			name: "incomplete escape kept literally",
			in:   "1 0 0:1 / /x\\04 rw - tmpfs t rw\n",
			want: []mount{{ID: 1, Root: "/", Mountpoint: "/x\\04", FSType: "tmpfs", SuperOpts: "rw"}},
		},
		{
			name: "a field named - in optional position is the separator only from field 7",
			in:   "1 0 0:1 / / rw - tmpfs - rw\n",
			want: []mount{{ID: 1, Root: "/", Mountpoint: "/", FSType: "tmpfs", SuperOpts: "rw"}},
		},
		{name: "no separator", in: "1 0 0:1 / / rw tmpfs t rw\n", wantErr: true},
		{name: "short", in: "1 0 0:1 /\n", wantErr: true},
		{name: "bad id", in: "x 0 0:1 / / rw - tmpfs t rw\n", wantErr: true},
		{name: "empty", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.in))
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestV1Controllers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rw,cpu", "cpu"},
		{"rw,cpu,cpuacct", "cpu,cpuacct"},
		{"rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd", "name=systemd"},
		{"ro,cpuset,noprefix,clone_children,cpuset_v2_mode", "cpuset"},
		{"rw,none,name=x", "name=x"},
		{"rw", ""},
		// No v1 controller is called "unified": rules reserve the name
		// for cgroup2 (found by FuzzParseMountinfo).
		{"rw,unified,cpu", "cpu"},
	}
	for _, tt := range tests {
		if got := strings.Join(v1Controllers(tt.in), ","); got != tt.want {
			t.Errorf("v1Controllers(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func names(hs []*Hierarchy) string {
	var s []string
	for _, h := range hs {
		s = append(s, h.Name())
	}
	return strings.Join(s, " ")
}

func TestResolve(t *testing.T) {
	tests := []struct {
		layout, controller, want string
	}{
		{"hybrid", "cpu", "cpu"},
		{"hybrid", "name=systemd", "name=systemd"},
		{"hybrid", "systemd", ""},
		{"hybrid", "unified", "unified"},
		{"hybrid", "hugetlb", "unified"}, // not on v1, offered by cgroup2
		{"hybrid", "io", ""},             // standard v2 name, but not offered in hybrid mode
		{"hybrid", "net_cls", ""},
		{"hybrid", "*", "blkio cpu cpuacct cpuset devices freezer memory pids name=systemd unified"},
		{"v1", "cpuacct", "cpu,cpuacct"},
		{"v1", "cpu", "cpu,cpuacct"},
		{"v1", "unified", ""},
		{"v1", "*", "name=short blkio cpu,cpuacct cpuset devices freezer hugetlb memory net_cls,net_prio perf_event pids name=systemd"},
		{"v2", "cpu", "unified"}, // pure v2: standard names even if not enabled
		{"v2", "misc", "unified"},
		{"v2", "hugetlb", "unified"},
		{"v2", "net_cls", ""},
		{"v2", "*", "unified"},
		{"none", "*", ""},
		{"none", "cpu", ""},
	}
	for _, tt := range tests {
		t.Run(tt.layout+"/"+tt.controller, func(t *testing.T) {
			l := fixtureLayout(t, tt.layout)
			if got := names(l.Resolve(tt.controller)); got != tt.want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.controller, got, tt.want)
			}
		})
	}
}

func TestResolveAliasesLayout(t *testing.T) {
	l := fixtureLayout(t, "hybrid")
	if n := testing.AllocsPerRun(100, func() { l.Resolve("cpu"); l.Resolve("*"); l.Resolve("unified"); l.Resolve("hugetlb") }); n != 0 {
		t.Errorf("Resolve allocates %v times", n)
	}
	// Appending to a result must not clobber the Layout.
	r := l.Resolve("cpu")
	_ = append(r, nil)
	if l.Hierarchies[2] == nil {
		t.Fatal("append through Resolve's result modified the Layout")
	}
}

func TestTaskPath(t *testing.T) {
	hybrid := fixtureLayout(t, "hybrid")
	v1 := fixtureLayout(t, "v1")
	lines := []proc.CgroupLine{
		{ID: 12, Controllers: []string{"pids"}, Path: "/user.slice"},
		{ID: 4, Controllers: []string{"cpuacct", "cpu"}, Path: "/a"}, // order differs from the mount's
		{ID: 3, Controllers: []string{"cpu"}, Path: "/b"},
		{ID: 2, Controllers: []string{"cpuset", "name=x"}, Path: "/c"},
		{ID: 1, Controllers: []string{"name=systemd"}, Path: "/user.slice/session-1.scope"},
		{ID: 0, Controllers: nil, Path: "/../outside"},
	}
	tests := []struct {
		name   string
		h      *Hierarchy
		want   string
		wantOK bool
	}{
		{"v1 single", hybrid.Resolve("pids")[0], "/user.slice", true},
		{"v1 exact set, not subset", hybrid.Resolve("cpu")[0], "/b", true},
		{"v1 co-mounted any order", v1.Resolve("cpu")[0], "/a", true},
		{"named", hybrid.Resolve("name=systemd")[0], "/user.slice/session-1.scope", true},
		{"v2 outside namespace", hybrid.Unified, "/../outside", true},
		{"no line", hybrid.Resolve("memory")[0], "", false},
		{"cpuset alone does not match cpuset,name=x", hybrid.Resolve("cpuset")[0], "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := hybrid.TaskPath(tt.h, lines)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("TaskPath = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { hybrid.TaskPath(hybrid.Unified, lines); hybrid.TaskPath(hybrid.Hierarchies[1], lines) }); n != 0 {
		t.Errorf("TaskPath allocates %v times", n)
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/a/b", "/a/b/", true},
		{"/anything", "/", true},
		{"/../x", "/", true},
		{"/", "/", true},
		{"/x", "", true},
		{"/", "/a", false},
		{"/a/b/", "/a/b", true},
	}
	for _, tt := range tests {
		if got := Within(tt.p, tt.dir); got != tt.want {
			t.Errorf("Within(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
	var sink bool
	if n := testing.AllocsPerRun(100, func() { sink = Within("/a/b/c", "/a/b/") }); n != 0 || !sink {
		t.Errorf("Within allocates %v times", n)
	}
}

func TestDir(t *testing.T) {
	tests := []struct {
		h       Hierarchy
		p, want string
		err     bool
	}{
		{Hierarchy{Mountpoint: "/sys/fs/cgroup/cpu", Root: "/"}, "/a/b", "/sys/fs/cgroup/cpu/a/b", false},
		{Hierarchy{Mountpoint: "/sys/fs/cgroup/cpu", Root: "/"}, "/", "/sys/fs/cgroup/cpu", false},
		{Hierarchy{Mountpoint: "/c", Root: "/docker/abc"}, "/docker/abc/x", "/c/x", false},
		{Hierarchy{Mountpoint: "/c", Root: "/docker/abc"}, "/docker/abc", "/c", false},
		{Hierarchy{Mountpoint: "/c", Root: "/docker/abc"}, "/docker/abcd", "", true},
		{Hierarchy{Mountpoint: "/", Root: "/"}, "/x", "/x", false},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "/../x", "", true},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "/..x", "/m/..x", false},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "a/b", "", true},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "/a//b", "", true},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "/a/", "", true},
		{Hierarchy{Mountpoint: "/m", Root: "/"}, "", "", true},
	}
	for _, tt := range tests {
		got, err := tt.h.dir(tt.p)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%+v.dir(%q) = %q, %v", tt.h, tt.p, got, err)
		}
		if err != nil && !errors.Is(err, ErrOutsideMount) {
			t.Errorf("err = %v, want ErrOutsideMount", err)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	for _, name := range []string{"hybrid", "v1", "v2", "v2systemd", "escaped", "container", "overmount"} {
		b, err := os.ReadFile("testdata/" + name + "/proc/self/mountinfo")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("1 1 0:1 / / rw - cgroup cgroup rw,cpu\n2 1 0:1 / / rw - cgroup cgroup rw,cpu\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseMountinfo(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Building a layout from any parsed input must not panic or loop
		// (parent cycles included); cgroup2 mounts need a
		// cgroup.controllers, which a fuzz input cannot provide.
		vis := visibleMounts(ms)
		if len(vis) > len(ms) {
			t.Fatalf("more visible mounts than mounts")
		}
		for _, m := range ms {
			if m.FSType == "cgroup2" {
				return
			}
		}
		l, err := layoutFromMounts(ms, "/nonexistent-cgre-fuzz") // not read: no cgroup2 mount
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range l.Controllers() {
			if len(l.Resolve(c)) == 0 {
				t.Fatalf("Controllers() lists %q but Resolve finds nothing", c)
			}
		}
	})
}
