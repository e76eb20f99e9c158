package classify

import (
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// TestDecideSlice: a slice destination (issue 20) is one move, judged by
// the task's cgroup2 path against the slice's cgroup below the manager's
// root (Config.SliceRoot), not below --cgroup-root: a task in the slice, or
// in any unit below it, is in place; with ignore it stays and elsewhere
// the rule is skipped; a raw rule's task outside --cgroup-root, read only
// because slices are placed anywhere, is out of scope.
func TestDecideSlice(t *testing.T) {
	lay := hybridLayout()
	list, diags, err := rules.Parse("test.conf", []byte(`alice  *  batch-%u.slice
bob    *  web.slice  ignore
bob    cpu  raw
@staff cpu  staffdir
`), rules.Options{Resolver: testResolver(), Controllers: lay.Controllers(), Systemd: true})
	if err != nil {
		t.Fatalf("%v %v", err, diags)
	}
	alice := rules.Task{PID: 10, UID: 1000, GID: 1000}
	bob := rules.Task{PID: 11, UID: 1001, GID: 1001}
	carol := rules.Task{PID: 12, UID: 1002, GID: 50}
	for _, c := range []struct {
		name       string
		sliceRoot  string
		task       rules.Task
		unified    string
		exact      bool
		line       int
		ignored    bool
		outOfScope bool
		move       string // the slice move's path; "" none
	}{
		{name: "placed from a service", sliceRoot: "/", task: alice, unified: "/system.slice/x.service", line: 1,
			move: "/batch.slice/batch-alice.slice"},
		{name: "below a container manager's root", sliceRoot: "/box", task: alice, unified: "/box/system.slice/x.service", line: 1,
			move: "/box/batch.slice/batch-alice.slice"},
		{name: "already in its scope", sliceRoot: "/", task: alice, unified: "/batch.slice/batch-alice.slice/cgrulesengd-batch-alice-1000.scope", line: 1},
		{name: "just placed there by us", sliceRoot: "/", task: alice, unified: "/batch.slice/batch-alice.slice/cgrulesengd-batch-alice-1000.scope", exact: true, line: 1},
		{name: "in another unit of the slice", sliceRoot: "/", task: alice, unified: "/batch.slice/batch-alice.slice/job.service", line: 1},
		{name: "a sibling slice is not in it", sliceRoot: "/", task: alice, unified: "/batch.slice/batch-alicex.slice/a.scope", line: 1,
			move: "/batch.slice/batch-alice.slice"},
		{name: "outside our cgroup namespace", sliceRoot: "/", task: alice, unified: "/../elsewhere", line: 1, outOfScope: true},
		{name: "ignore holds in the slice", sliceRoot: "/", task: bob, unified: "/web.slice/php.service", line: 2, ignored: true},
		{name: "ignore elsewhere: the next rule, out of --cgroup-root", sliceRoot: "/", task: bob, unified: "/system.slice/php.service", line: 3, outOfScope: true},
		{name: "a raw rule out of --cgroup-root", sliceRoot: "/", task: carol, unified: "/user.slice/u.scope", line: 4, outOfScope: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &scope{layout: lay, root: "/rules", sliceRoot: c.sliceRoot}
			lines := []proc.CgroupLine{{ID: 2, Controllers: []string{"cpu", "cpuacct"}, Path: "/"}, {ID: 0, Path: c.unified}}
			if !s.anyInScope(lines) && c.unified != "/../elsewhere" {
				t.Fatalf("a task in %s is not read", c.unified)
			}
			d, err := decide(list, s, &c.task, situation{lines: lines, movedByUs: c.exact}, &decideBuf{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Rule == nil || d.Rule.Line != c.line || d.Ignored != c.ignored || d.OutOfScope != c.outOfScope {
				t.Fatalf("decision %+v, want line %d ignored %v out of scope %v", d, c.line, c.ignored, c.outOfScope)
			}
			got := ""
			if len(d.Moves) > 0 {
				m := d.Moves[0]
				if len(d.Moves) != 1 || m.H != lay.Unified || m.Target == nil || !m.Target.Slice || m.From != c.unified {
					t.Fatalf("moves %+v", d.Moves)
				}
				got = m.Path
			}
			if got != c.move {
				t.Errorf("move to %q, want %q", got, c.move)
			}
		})
	}
	// Without slices, a task outside --cgroup-root is not even read.
	s := &scope{layout: lay, root: "/rules"}
	if s.anyInScope([]proc.CgroupLine{{ID: 0, Path: "/system.slice/x.service"}}) {
		t.Error("out of --cgroup-root and no slices: read")
	}
}
