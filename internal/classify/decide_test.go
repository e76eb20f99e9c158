package classify

import (
	"strings"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/rules"
	"github.com/cgrulesengd/cgrulesengd/rules/rulestest"
)

// hybrid is this project's CI layout: v1 cpu, memory, cpu+cpuacct would be
// co-mounted elsewhere; here cpu and cpuacct are co-mounted to test dedup.
func hybridLayout() *cgroupfs.Layout {
	cpu := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpu", "cpuacct"}, Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/"}
	mem := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"memory"}, Mountpoint: "/sys/fs/cgroup/memory", Root: "/"}
	uni := &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: "/sys/fs/cgroup/unified", Root: "/"}
	return &cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{cpu, mem, uni}, Unified: uni}
}

func testResolver() rules.Resolver {
	return rulestest.NewStatic(
		[]rules.User{{Name: "root"}, {Name: "alice", UID: 1000, GID: 1000}, {Name: "bob", UID: 1001, GID: 1001}},
		[]rules.Group{{Name: "alice", GID: 1000}, {Name: "bob", GID: 1001}, {Name: "staff", GID: 50, Members: []string{"carol"}}},
	)
}

func mustParse(t *testing.T, l *cgroupfs.Layout, text string) *rules.List {
	t.Helper()
	list, diags, err := rules.Parse("test.conf", []byte(text), rules.Options{Resolver: testResolver(), Controllers: l.Controllers()})
	if err != nil {
		t.Fatalf("parse: %v (%v)", err, diags)
	}
	return list
}

// cg builds /proc/PID/cgroup lines: cpu path, memory path, unified path.
func cg(cpu, mem, uni string) []proc.CgroupLine {
	return []proc.CgroupLine{
		{ID: 2, Controllers: []string{"cpu", "cpuacct"}, Path: cpu},
		{ID: 4, Controllers: []string{"memory"}, Path: mem},
		{ID: 0, Path: uni},
	}
}

func TestDecide(t *testing.T) {
	lay := hybridLayout()
	const ruleText = `
alice:sleep  cpu           sleepers
alice        cpu,memory    users/alice
%            unified       users/alice
@staff       *             staff ignore
@staff       cpu           staff-moved
bob:rt*      cpu           rt ignore_rt
bob          cpu           ""
`
	list := mustParse(t, lay, ruleText)
	tests := []struct {
		name    string
		root    string
		task    rules.Task
		rt      bool
		lines   []proc.CgroupLine
		rule    int    // expected rule line, 0 = none
		ignored bool   // an ignore rule held
		moves   string // "hier=path;..." in order
	}{
		{
			name: "user rule moves in each named hierarchy", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000, Process: "/bin/bash"}, lines: cg("/", "/", "/"),
			rule: 3, moves: "memory=/users/alice;unified=/users/alice;cpu,cpuacct=/users/alice",
		},
		{
			name: "process rule wins first", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000, Process: "/usr/bin/sleep"}, lines: cg("/", "/", "/"),
			rule: 2, moves: "cpu,cpuacct=/sleepers",
		},
		{
			name: "already in destination: nothing to do", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/users/alice", "/users/alice", "/users/alice"),
			rule: 3, moves: "",
		},
		{
			name: "sub-cgroup of destination is kept", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/users/alice/network", "/users/alice", "/users/alicex"),
			rule: 3, moves: "unified=/users/alice",
		},
		{
			name: "cgroup-root prefixes destinations", root: "/demo",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/demo", "/demo/x", "/demo"),
			rule: 3, moves: "memory=/demo/users/alice;unified=/demo/users/alice;cpu,cpuacct=/demo/users/alice",
		},
		{
			name: "tasks outside cgroup-root are untouched per hierarchy", root: "/demo",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/other", "/demo", "/demolition"),
			rule: 3, moves: "memory=/demo/users/alice",
		},
		{
			name: "tasks outside our cgroup namespace are untouched", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/../../elsewhere", "/", "/.."),
			rule: 3, moves: "memory=/users/alice",
		},
		{
			name: "ignore rule holds when at or below its destination", root: "/",
			task: rules.Task{PID: 11, UID: 1001, GID: 50}, lines: cg("/staff/sub", "/staff", "/staff"),
			rule: 5, ignored: true,
		},
		{
			name: "ignore rule that does not hold is skipped", root: "/",
			task: rules.Task{PID: 11, UID: 1001, GID: 50}, lines: cg("/staff", "/", "/staff"),
			rule: 6, moves: "cpu,cpuacct=/staff-moved",
		},
		{
			name: "ignore_rt holds for a realtime task", root: "/",
			task: rules.Task{PID: 12, UID: 1001, GID: 1001, Process: "/usr/bin/rtkit"}, rt: true, lines: cg("/rt/x", "/", "/"),
			rule: 7, ignored: true,
		},
		{
			name: "ignore_rt is a plain rule for other tasks", root: "/",
			task: rules.Task{PID: 12, UID: 1001, GID: 1001, Process: "/usr/bin/rtkit"}, lines: cg("/", "/", "/"),
			rule: 7, moves: "cpu,cpuacct=/rt",
		},
		{
			name: "ignore_rt realtime task elsewhere falls through to next rule", root: "/",
			task: rules.Task{PID: 12, UID: 1001, GID: 1001, Process: "/usr/bin/rtkit"}, rt: true, lines: cg("/x", "/", "/"),
			rule: 8, moves: "cpu,cpuacct=/",
		},
		{
			name: "root destination moves tasks up to the root", root: "/",
			task: rules.Task{PID: 13, UID: 1001, GID: 1001}, lines: cg("/some/where", "/", "/"),
			rule: 8, moves: "cpu,cpuacct=/",
		},
		{
			name: "root destination with cgroup-root moves to that root", root: "/demo",
			task: rules.Task{PID: 13, UID: 1001, GID: 1001}, lines: cg("/demo/x", "/", "/"),
			rule: 8, moves: "cpu,cpuacct=/demo",
		},
		{
			name: "no rule for this user", root: "/",
			task: rules.Task{PID: 14, UID: 4242, GID: 4242}, lines: cg("/", "/", "/"),
		},
		{
			name: "task without a line for a hierarchy is skipped there", root: "/",
			task: rules.Task{PID: 10, UID: 1000, GID: 1000}, lines: cg("/", "/", "/")[:1],
			rule: 3, moves: "cpu,cpuacct=/users/alice",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &scope{layout: lay, root: tc.root}
			d, err := decide(list, s, &tc.task, situation{lines: tc.lines, realtime: tc.rt}, &decideBuf{})
			if err != nil {
				t.Fatal(err)
			}
			gotLine := 0
			if d.Rule != nil {
				gotLine = d.Rule.Line
			}
			if gotLine != tc.rule {
				t.Fatalf("rule at line %d, want line %d", gotLine, tc.rule)
			}
			if d.Ignored != tc.ignored {
				t.Errorf("ignored = %v, want %v", d.Ignored, tc.ignored)
			}
			var parts []string
			for _, m := range d.Moves {
				parts = append(parts, m.H.Name()+"="+m.Path)
			}
			if got := strings.Join(parts, ";"); got != tc.moves {
				t.Errorf("moves %q, want %q", got, tc.moves)
			}
		})
	}
}

func TestDecideTemplates(t *testing.T) {
	lay := hybridLayout()
	list := mustParse(t, lay, "@staff cpu groups/%g/%u/%P\n")
	s := &scope{layout: lay, root: "/r"}
	task := rules.Task{PID: 77, UID: 1001, GID: 50}
	d, err := decide(list, s, &task, situation{lines: cg("/r", "/r", "/r")}, &decideBuf{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Moves) != 1 || d.Moves[0].Path != "/r/groups/staff/bob/77" || !d.Moves[0].Templated {
		t.Fatalf("moves = %+v", d.Moves)
	}
}

func TestScopeAnyInScope(t *testing.T) {
	tests := []struct {
		name  string
		root  string
		lines []proc.CgroupLine
		want  bool
	}{
		{"root scope, visible", "/", cg("/a", "/b", "/c"), true},
		{"root scope, all outside namespace", "/", cg("/..", "/../x", "/.."), false},
		{"subtree, one inside", "/demo", cg("/a", "/demo/x", "/c"), true},
		{"subtree, prefix is not inside", "/demo", cg("/demolition", "/de", "/"), false},
		{"lines of hierarchies not mounted here do not count", "/", []proc.CgroupLine{
			{ID: 3, Controllers: []string{"pids"}, Path: "/"},
			{ID: 9, Controllers: []string{"name=systemd"}, Path: "/init.scope"},
			{ID: 0, Path: "/../outside"},
		}, false},
		{"cgroup2 line alone, inside", "/", []proc.CgroupLine{{ID: 0, Path: "/x"}}, true},
		{"no lines", "/", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &scope{layout: hybridLayout(), root: tc.root}
			if got := s.anyInScope(tc.lines); got != tc.want {
				t.Fatalf("anyInScope = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSchedulerLast(t *testing.T) {
	h := func(v cgroupfs.Version, ctrls ...string) *cgroupfs.Hierarchy {
		return &cgroupfs.Hierarchy{Version: v, Controllers: ctrls}
	}
	cpu, cpuset := h(cgroupfs.V1, "cpu", "cpuacct"), h(cgroupfs.V1, "cpuset")
	mem, pids, uni := h(cgroupfs.V1, "memory"), h(cgroupfs.V1, "pids"), h(cgroupfs.V2)
	uniCPU := h(cgroupfs.V2, "cpu", "io", "memory")
	tests := []struct {
		name string
		in   []*cgroupfs.Hierarchy
		want []*cgroupfs.Hierarchy
	}{
		{"cpu first moves last", []*cgroupfs.Hierarchy{cpu, uni}, []*cgroupfs.Hierarchy{uni, cpu}},
		{"cpuset and cpu keep their order", []*cgroupfs.Hierarchy{cpuset, mem, cpu, pids}, []*cgroupfs.Hierarchy{mem, pids, cpuset, cpu}},
		{"others keep their order", []*cgroupfs.Hierarchy{pids, uni, mem}, []*cgroupfs.Hierarchy{pids, uni, mem}},
		{"cgroup2 with the cpu controller counts too", []*cgroupfs.Hierarchy{uniCPU, mem}, []*cgroupfs.Hierarchy{mem, uniCPU}},
		{"one move", []*cgroupfs.Hierarchy{cpu}, []*cgroupfs.Hierarchy{cpu}},
		{"none", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var moves []Move
			for i, hh := range tc.in {
				moves = append(moves, Move{H: hh, Path: string(rune('a' + i))})
			}
			schedulerLast(moves)
			if len(moves) != len(tc.want) {
				t.Fatalf("%d moves, want %d", len(moves), len(tc.want))
			}
			for i := range moves {
				if moves[i].H != tc.want[i] {
					t.Errorf("move %d is %s (%s), want %s", i, moves[i].H.Name(), moves[i].Path, tc.want[i].Name())
				}
			}
		})
	}
}
