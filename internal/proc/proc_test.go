package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

var fixture = NewFS("testdata/proc")

// taskWithProcess is Task with the process name as the engine completes
// it: comm for a kernel thread, ProcName for the others.
func taskWithProcess(fs FS, pid int) (Task, error) {
	t, err := fs.Task(pid)
	if err != nil {
		return t, err
	}
	if t.Kernel {
		t.Process = t.Comm
		return t, nil
	}
	p, err := fs.ProcName(pid, t.Comm)
	if err != nil {
		return t, err
	}
	t.Process = p
	return t, nil
}

func TestTask(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want Task
	}{
		{
			name: "exe base equals comm",
			pid:  100,
			want: Task{PID: 100, PPID: 1, RUID: 1000, EUID: 1000, RGID: 1000, EGID: 1000, Comm: "bash", Process: "/usr/bin/bash"},
		},
		{
			name: "setuid script: real and effective differ",
			pid:  101,
			want: Task{PID: 101, PPID: 100, RUID: 1000, EUID: 0, RGID: 1000, EGID: 1000, Comm: "run.py", Process: "/opt/x/run.py"},
		},
		{
			name: "kernel thread",
			pid:  104,
			want: Task{PID: 104, PPID: 2, Comm: "kworker/0:1-events", Process: "kworker/0:1-events", Kernel: true},
		},
		{
			name: "SCHED_FIFO, comm with parentheses",
			pid:  108,
			want: Task{PID: 108, PPID: 1, Comm: "rt (x) y", Process: "/usr/sbin/rtd"},
		},
		{
			name: "SCHED_RR, escaped backslash in comm",
			pid:  109,
			want: Task{PID: 109, PPID: 1, Comm: `a\b`, Process: `/usr/bin/a\b`},
		},
		{
			name: "zombie: no exe, not a kernel thread",
			pid:  110,
			want: Task{PID: 110, PPID: 100, RUID: 1000, EUID: 1000, RGID: 1000, EGID: 1000, Comm: "defunct", Process: "defunct"},
		},
		{
			name: "thread id maps to its thread group",
			pid:  120,
			want: Task{PID: 100, PPID: 1, RUID: 1000, EUID: 1000, RGID: 1000, EGID: 1000, Comm: "bash", Process: "/usr/bin/bash"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := taskWithProcess(fixture, tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("taskWithProcess(%d)\n got %+v\nwant %+v", tt.pid, got, tt.want)
			}
			got, err = fixture.Task(tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Process = ""
			if got != want {
				t.Errorf("Task(%d)\n got %+v\nwant %+v", tt.pid, got, want)
			}
		})
	}
}

func TestTaskGone(t *testing.T) {
	_, err := taskWithProcess(fixture, 999)
	if !errors.Is(err, unix.ESRCH) {
		t.Fatalf("err = %v, want ESRCH", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want the ENOENT cause kept", err)
	}
	for name, f := range map[string]func() error{
		"ProcName": func() error { _, err := fixture.ProcName(999, "x"); return err },
		"Children": func() error { _, err := fixture.Children(999); return err },
		"Threads":  func() error { _, err := fixture.Threads(999); return err },
		"Cgroups":  func() error { _, err := fixture.Cgroups(999); return err },
	} {
		if err := f(); !errors.Is(err, unix.ESRCH) {
			t.Errorf("%s: err = %v, want ESRCH", name, err)
		}
	}
}

func TestProcName(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		comm string
		want string
	}{
		{"exe base equals comm", 100, "bash", "/usr/bin/bash"},
		{"script: interpreter exe, comm from argument", 101, "run.py", "/opt/x/run.py"},
		{"symlinked binary: absolute argv0", 102, "python3", "/usr/bin/python3"},
		{"kernel thread", 104, "kworker/0:1-events", "kworker/0:1-events"},
		{"deleted exe", 105, "daemon", "/usr/local/bin/daemon"},
		{"comm truncated to 15", 106, "verylongprogram", "/opt/bin/verylongprogramname"},
		{"relative argv0 missing under cwd: exe", 107, "python3", "/usr/bin/python3.12"},
		{"no argument matches: exe", 111, "worker", "/usr/bin/node"},
		{"comm is compared, not a prefix", 100, "bas", "/usr/bin/bash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fixture.ProcName(tt.pid, tt.comm)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ProcName(%d, %q) = %q, want %q", tt.pid, tt.comm, got, tt.want)
			}
		})
	}
}

// TestProcNameRelative builds its tree at run time: the cwd link must point
// at a real directory, which a checked-in fixture cannot portably do.
func TestProcNameRelative(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "proc")
	home := filepath.Join(dir, "home", "u")
	must(t, os.MkdirAll(filepath.Join(root, "7"), 0o755))
	must(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(home, "bin", "run.sh"), nil, 0o755))
	// link.sh -> bin/run.sh: realpath semantics resolve the link.
	must(t, os.Symlink("bin/run.sh", filepath.Join(home, "link.sh")))
	must(t, os.Symlink("/usr/bin/bash", filepath.Join(root, "7", "exe")))
	must(t, os.Symlink(home, filepath.Join(root, "7", "cwd")))
	p := NewFS(root)
	tests := []struct {
		name    string
		cmdline string
		comm    string
		want    string
	}{
		{"relative argument joined to cwd", "bash\x00./bin/run.sh\x00", "run.sh", filepath.Join(home, "bin", "run.sh")},
		{"relative argument with dot-dot", "bash\x00bin/../bin/run.sh\x00", "run.sh", filepath.Join(home, "bin", "run.sh")},
		{"symlink resolved like realpath", "bash\x00link.sh\x00", "link.sh", filepath.Join(home, "bin", "run.sh")},
		{"first match decides even if missing", "bash\x00nope/run.sh\x00bin/run.sh\x00", "run.sh", "/usr/bin/bash"},
		{"no trailing NUL", "bash\x00bin/run.sh", "run.sh", filepath.Join(home, "bin", "run.sh")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(t, os.WriteFile(filepath.Join(root, "7", "cmdline"), []byte(tt.cmdline), 0o644))
			got, err := p.ProcName(7, tt.comm)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPIDs(t *testing.T) {
	got, err := fixture.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]bool{100: true, 101: true, 102: true, 104: true, 105: true, 106: true, 107: true, 108: true, 109: true, 110: true, 111: true, 120: true}
	if len(got) != len(want) {
		t.Fatalf("PIDs() = %v", got)
	}
	for _, p := range got {
		if !want[p] {
			t.Errorf("unexpected pid %d", p)
		}
	}
	if _, err := NewFS(t.TempDir() + "/missing").PIDs(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: err = %v", err)
	}
}

func TestChildrenThreads(t *testing.T) {
	got, err := fixture.Children(100)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{101, 102, 103}; !reflect.DeepEqual(got, want) {
		t.Errorf("Children(100) = %v, want %v", got, want)
	}
	got, err = fixture.Children(101)
	if err != nil || len(got) != 0 {
		t.Errorf("Children(101) = %v, %v; want none", got, err)
	}
	th, err := fixture.Threads(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(th) != 2 {
		t.Errorf("Threads(100) = %v", th)
	}
}

func TestChildrenUnsupported(t *testing.T) {
	// Without CONFIG_PROC_CHILDREN the files are missing while the task
	// exists: not ESRCH.
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "5", "task", "5"), 0o755))
	_, err := NewFS(root).Children(5)
	if err == nil || errors.Is(err, unix.ESRCH) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ENOENT but not ESRCH", err)
	}
}

func TestCgroups(t *testing.T) {
	got, err := fixture.Cgroups(100)
	if err != nil {
		t.Fatal(err)
	}
	want := []CgroupLine{
		{12, []string{"pids"}, "/user.slice"},
		{2, []string{"cpu", "cpuacct"}, "/user.slice"},
		{1, []string{"name=systemd"}, "/user.slice/session-1.scope"},
		{0, nil, "/user.slice/session-1.scope"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestReadFileGrows(t *testing.T) {
	// A file larger than the pooled buffer must be read whole.
	p := filepath.Join(t.TempDir(), "big")
	data := make([]byte, 3*bufSize+17)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	must(t, os.WriteFile(p, data, 0o644))
	b := make([]byte, 16)
	got, err := readFile(p, &b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatalf("read %d bytes, want %d", len(got), len(data))
	}
}

func TestParseDirents(t *testing.T) {
	// Names that are not plain decimals are skipped.
	for _, tt := range []struct {
		name string
		ok   bool
		v    int
	}{{"123\x00", true, 123}, {"0\x00", true, 0}, {".\x00", false, 0}, {"12a\x00", false, 0}, {"\x00", false, 0}, {"12345678901\x00", false, 0}} {
		v, ok := atoiName([]byte(tt.name))
		if ok != tt.ok || v != tt.v {
			t.Errorf("atoiName(%q) = %d, %v", tt.name, v, ok)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRealTime(t *testing.T) {
	for _, tt := range []struct {
		name string
		pid  int
		want bool
	}{
		{"SCHED_OTHER", 100, false},
		{"SCHED_FIFO", 108, true},
		{"SCHED_RR", 109, true},
		{"kernel thread", 104, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fixture.RealTime(tt.pid)
			if err != nil || got != tt.want {
				t.Errorf("RealTime(%d) = %v, %v; want %v", tt.pid, got, err, tt.want)
			}
		})
	}
	if _, err := fixture.RealTime(99999); !errors.Is(err, unix.ESRCH) {
		t.Errorf("RealTime of a missing pid: %v, want ESRCH", err)
	}
}

// TestCgroupsSharedByContent: tasks whose /proc/PID/cgroup files read the
// same get the same (shared) lines; a file that changes is parsed again;
// more distinct files than the cache holds still read right.
func TestCgroupsSharedByContent(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, text string) {
		t.Helper()
		dir := filepath.Join(root, itoa(pid))
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(text), 0o644))
	}
	write(1, "1:cpu:/a\n0::/a\n")
	write(2, "1:cpu:/a\n0::/a\n")
	write(3, "1:cpu:/b\n0::/b\n")
	fsys := NewFS(root)
	a, err := fsys.Cgroups(1)
	must(t, err)
	b, err := fsys.Cgroups(2)
	must(t, err)
	c, err := fsys.Cgroups(3)
	must(t, err)
	want := []CgroupLine{{ID: 1, Controllers: []string{"cpu"}, Path: "/a"}, {ID: 0, Path: "/a"}}
	if !reflect.DeepEqual(a, want) || !reflect.DeepEqual(b, want) {
		t.Fatalf("got %+v and %+v, want %+v", a, b, want)
	}
	if c[0].Path != "/b" || c[1].Path != "/b" {
		t.Errorf("pid 3: %+v", c)
	}
	write(1, "1:cpu:/a/x\n0::/a\n")
	a, err = fsys.Cgroups(1)
	must(t, err)
	if a[0].Path != "/a/x" {
		t.Errorf("after the file changed: %+v", a)
	}
	for i := 0; i < 2*maxCached; i++ {
		write(10, "1:cpu:/c"+itoa(i)+"\n")
		got, err := fsys.Cgroups(10)
		must(t, err)
		if len(got) != 1 || got[0].Path != "/c"+itoa(i) {
			t.Fatalf("file %d: %+v", i, got)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
