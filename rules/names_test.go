package rules

import (
	"fmt"
	"slices"
	"testing"
)

func TestNamesUnion(t *testing.T) {
	a := Names{UIDs: []uint32{3, 1}, GIDs: []uint32{7}, Processes: []string{"make"}}
	b := Names{Any: true, UIDs: []uint32{1, 2}, Processes: []string{"cc1", "make"}, AllExecs: true}
	want := Names{Any: true, UIDs: []uint32{1, 2, 3}, GIDs: []uint32{7}, Processes: []string{"cc1", "make"}, AllExecs: true}
	for _, got := range []Names{a.Union(b), b.Union(a)} {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Union = %+v, want %+v", got, want)
		}
	}
	if got := (Names{}).Union(Names{}); got.Any || got.AllExecs || len(got.UIDs)+len(got.GIDs)+len(got.Processes) != 0 {
		t.Errorf("empty Union = %+v", got)
	}
}

// TestNamesAreEnough checks the promises a filter built from Names relies
// on, over lists and tasks of every kind: a task that matches a rule has an
// id Names names (or Any), and its procname passes one of Processes when
// the rule names a process; and, without AllExecs, a task whose
// procname passes none of Processes gets the same rule and the same
// destinations whatever that procname is (so an exec of such a program
// need not be reported, unless the task's previous program was named).
func TestNamesAreEnough(t *testing.T) {
	lists := []string{
		"alice cpu a\n",
		"alice:make cpu m\nalice cpu a\n",
		"@staff:cc1 cpu c\n@students cpu s\n* cpu d\n",
		"*:ssh* cpu s\n\"@cgroup:/usr/bin/perl\" cpu p\nbob:sleep cpu z\nbob cpu b/%u\n",
		"carol:/usr/bin/make cpu m ignore\ncarol cpu c\n*:make cpu x\n",
		"alice cpu a/%p\n",
		"@users cpu u/%g/%P\n",
	}
	uids := []uint32{0, 1000, 1001, 1002, 1100, 5000}
	gids := []uint32{0, 100, 1000, 2000, 2001, 2002, 5000}
	procs := []string{"", "make", "/usr/bin/make", "/opt/make", "cc1", "/usr/lib/gcc/cc1", "sshd", "/usr/sbin/sshd",
		"/usr/bin/perl", "/usr/local/bin/perl", "sleep", "/bin/sleep", "vim", "/usr/bin/vim", "/usr/bin/python3"}
	for _, src := range lists {
		l := mustParse(t, src, testOptions())
		n := l.Names()
		tests := make([]procTest, len(n.Processes))
		for i, p := range n.Processes {
			tests[i] = newProcTest(p)
		}
		passes := func(proc string) bool {
			return slices.ContainsFunc(tests, func(pt procTest) bool { return pt.match(proc) })
		}
		for _, uid := range uids {
			for _, gid := range gids {
				var unnamed *Rule // the rule of the first unnamed procname
				var unnamedDest []string
				for _, proc := range procs {
					task := &Task{PID: 42, UID: uid, GID: gid, Process: proc}
					r := l.Match(task)
					what := fmt.Sprintf("%q: uid %d gid %d process %q", src, uid, gid, proc)
					if r != nil && !n.Any && !slices.Contains(n.UIDs, uid) && !slices.Contains(n.GIDs, gid) {
						t.Errorf("%s matches %s, but Names %+v names neither id", what, r.Text, n)
					}
					if r != nil && r.Process != "" && !passes(proc) {
						t.Errorf("%s matches %s, but no process of Names %+v passes", what, r.Text, n)
					}
					if n.AllExecs || passes(proc) {
						continue
					}
					var dest []string
					if r != nil {
						rs, err := l.Expand(r, task, nil)
						if err != nil {
							dest = append(dest, "error "+err.Error())
						}
						for _, x := range rs {
							dest = append(dest, x.Controller+":"+x.Path)
						}
					}
					if unnamed == nil && unnamedDest == nil {
						unnamed, unnamedDest = r, dest
						if unnamedDest == nil {
							unnamedDest = []string{}
						}
						continue
					}
					if r != unnamed || !slices.Equal(dest, unnamedDest) {
						t.Errorf("%s: rule %v %v, but another unnamed procname gets %v %v", what, r, dest, unnamed, unnamedDest)
					}
				}
			}
		}
	}
}
