package rules

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// resolvedStrings renders Expand's output as "controller:path".
func resolvedStrings(rs []Resolved) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Controller+":"+r.Path)
	}
	return out
}

// TestLibcgroupTestPlan reproduces the test plan documented with libcgroup's
// cgrulesengd (tests/README of the original daemon): a task changes uid or
// gid and must land in exactly these cgroups.
func TestLibcgroupTestPlan(t *testing.T) {
	const rulesText = `
sjo             cpu             default
cgtest          cpu             cgtest
%               memory          default
@cgroup         cpu,memory      cgtest
peter           cpu             test1
%               memory          test2
@root           *               default
*               *               default
`
	opt := testOptions()
	opt.Controllers = []string{"cpu", "memory", "cpuacct", "devices"}
	l, ds, err := Parse("cgrules.conf", []byte(rulesText), opt)
	if err != nil {
		t.Fatal(err)
	}
	wantDiags := []string{`cgrules.conf:6: warning: user "peter" not found, rule skipped`}
	if !equalStrings(diagStrings(ds), wantDiags) {
		t.Errorf("diagnostics %q, want %q", diagStrings(ds), wantDiags)
	}
	all := []string{"cpu:default", "memory:default", "cpuacct:default", "devices:default"}
	const nobody2 = 5000 // in no group the rules name
	tests := []struct {
		name     string
		uid, gid uint32
		line     int
		want     []string
	}{
		{"uid to sjo", 1100, nobody2, 2, []string{"cpu:default"}},
		{"uid to root (member of cgroup)", 0, nobody2, 5, []string{"cpu:cgtest", "memory:cgtest"}},
		{"uid to cgtest", 1101, nobody2, 3, []string{"cpu:cgtest", "memory:default"}},
		{"gid to root", nobody2, 0, 8, all},
		{"gid to cgroup", nobody2, 2002, 5, []string{"cpu:cgtest", "memory:cgtest"}},
		{"gid to users", nobody2, 100, 9, all},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := &Task{PID: 42, UID: tc.uid, GID: tc.gid, Process: "/bin/sleep"}
			r := l.Match(task)
			if r == nil {
				t.Fatal("no rule matched")
			}
			if r.Line != tc.line {
				t.Errorf("matched line %d (%q), want line %d", r.Line, r.Text, tc.line)
			}
			got, err := l.Expand(r, task, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !equalStrings(resolvedStrings(got), tc.want) {
				t.Errorf("targets %q, want %q", resolvedStrings(got), tc.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	const src = `
alice:sleep     cpu  a-sleep
alice:/usr/bin/perl cpu a-perl
alice:ssh*      cpu  a-ssh
alice:/opt/*    cpu  a-opt
@students:vim   cpu  students-vim
@staff          cpu  staff
toor            cpu  root-by-toor
bob             cpu  bob
@students       cpu  students
*:make          cpu  any-make
*               cpu  any
`
	l := mustParse(t, src, testOptions())
	tests := []struct {
		name string
		task Task
		want string // destination of the matching rule, "" for none
	}{
		{"base name", Task{UID: 1000, GID: 1000, Process: "/bin/sleep"}, "a-sleep"},
		{"bare comm", Task{UID: 1000, GID: 1000, Process: "sleep"}, "a-sleep"},
		{"base name is not a prefix", Task{UID: 1000, GID: 1000, Process: "/bin/sleeper"}, "students"},
		{"absolute path", Task{UID: 1000, GID: 1000, Process: "/usr/bin/perl"}, "a-perl"},
		{"absolute path needs the full path", Task{UID: 1000, GID: 1000, Process: "/usr/local/bin/perl"}, "students"},
		{"absolute path is not a base name", Task{UID: 1000, GID: 1000, Process: "perl"}, "students"},
		{"prefix on base name", Task{UID: 1000, GID: 1000, Process: "/usr/bin/ssh-agent"}, "a-ssh"},
		{"prefix on full path", Task{UID: 1000, GID: 1000, Process: "/opt/tool/run"}, "a-opt"},
		{"unknown process skips process rules", Task{UID: 1000, GID: 1000}, "students"},
		{"group by membership with process", Task{UID: 1001, GID: 1001, Process: "/usr/bin/vim"}, "students-vim"},
		{"user rule after group rules", Task{UID: 1001, GID: 1001, Process: "/bin/ls"}, "bob"},
		{"group by egid", Task{UID: 5000, GID: 2001}, "staff"},
		{"group by membership", Task{UID: 1002, GID: 100}, "staff"},
		{"supplementary gid is not egid", Task{UID: 5000, GID: 5000}, "any"},
		{"user rule by uid, other name", Task{UID: 0, GID: 0}, "root-by-toor"},
		{"anyone with process", Task{UID: 5000, GID: 5000, Process: "/usr/bin/make"}, "any-make"},
		{"unknown uid falls to anyone", Task{UID: 777, GID: 777}, "any"},
		{"egid of a group with rules by egid and membership", Task{UID: 1000, GID: 2000, Process: "/bin/ls"}, "students"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := l.Match(&tc.task)
			got := ""
			if r != nil {
				got = r.Targets[0].Dest
			}
			if got != tc.want {
				t.Errorf("matched %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMatchNone(t *testing.T) {
	l := mustParse(t, "alice cpu a\n@students cpu b\n*:make cpu c\n", testOptions())
	if r := l.Match(&Task{UID: 5000, GID: 5000, Process: "/bin/sh"}); r != nil {
		t.Errorf("matched %q", r.Text)
	}
	empty := mustParse(t, "", testOptions())
	if r := empty.Match(&Task{}); r != nil || empty.Len() != 0 {
		t.Errorf("empty list matched %v", r)
	}
}

func TestMatchAfter(t *testing.T) {
	src := "alice cpu a ignore\n@students cpu b ignore_rt\n* cpu c\nalice cpu d\n"
	l := mustParse(t, src, testOptions())
	task := &Task{UID: 1000, GID: 1000}
	var got []string
	for r, after := l.Match(task), 0; r != nil; r = l.MatchAfter(task, after) {
		got = append(got, r.Targets[0].Dest)
		after = r.Index
	}
	if want := []string{"a", "b", "c", "d"}; !equalStrings(got, want) {
		t.Errorf("chain %q, want %q", got, want)
	}
	if r := l.MatchAfter(task, -5); r == nil || r.Index != 0 {
		t.Errorf("MatchAfter(-5) = %v", r)
	}
	if r := l.MatchAfter(task, 100); r != nil {
		t.Errorf("MatchAfter past the end = %v", r)
	}
	rs := l.Rules()
	if !rs[0].Ignore || !rs[1].IgnoreRT || rs[2].Ignore {
		t.Errorf("options not recorded: %v", summary(l))
	}
}

func TestMatchMergesByPosition(t *testing.T) {
	// Build a list where a task is a candidate through every index (anyone,
	// anyone by exact process, uid, member uid, gid) at interleaved
	// positions, with process tests that mostly fail, and check that Match
	// agrees with a plain scan.
	var b strings.Builder
	whos := []string{"*", "alice", "@students", "@alice", "bob", "@staff", "*"}
	procs := []string{"p%d", "/x/p%d", "p%d*", "/x/p%d*", "", "*"}
	for i := 0; i < 400; i++ {
		who := whos[i%len(whos)]
		if p := procs[i%len(procs)]; p != "" {
			who += ":" + strings.ReplaceAll(p, "%d", strconv.Itoa(i%9))
		}
		fmt.Fprintf(&b, "%s cpu d%d\n", who, i)
	}
	l := mustParse(t, b.String(), testOptions())
	var tasks []Task
	for _, proc := range []string{"", "p3", "/x/p3", "/y/p3", "/x/p31", "p5x", "/x/p0", "nomatch", "/x/"} {
		for _, ids := range [][2]uint32{{1000, 1000}, {1000, 2000}, {1001, 2001}, {9, 9}, {1002, 100}} {
			tasks = append(tasks, Task{UID: ids[0], GID: ids[1], Process: proc})
		}
	}
	for _, task := range tasks {
		for after := -1; after < l.Len(); after += 13 {
			got := l.MatchAfter(&task, after)
			want := scanMatch(l, &task, after)
			if got != want {
				t.Errorf("task %+v after %d: Match %v, scan %v", task, after, ruleOf(got), ruleOf(want))
			}
		}
	}
}

func ruleOf(r *Rule) string {
	if r == nil {
		return "nil"
	}
	return r.Text
}

// scanMatch is the obvious linear definition of matching, for comparison.
func scanMatch(l *List, t *Task, after int) *Rule {
	for _, r := range l.rules {
		if r.Index <= after {
			continue
		}
		ok := false
		switch r.kind {
		case whoAny:
			ok = true
		case whoUser:
			ok = r.id == t.UID
		case whoGroup:
			ok = r.id == t.GID
			for _, m := range r.members {
				ok = ok || m == t.UID
			}
		}
		if ok && r.proc.match(t.Process) {
			return r
		}
	}
	return nil
}

func TestMatchDoesNotAllocate(t *testing.T) {
	l := mustParse(t, "alice:sleep cpu a\n@students cpu b\n* cpu c\n", testOptions())
	task := &Task{UID: 1000, GID: 1000, Process: "/bin/ls"}
	if n := testing.AllocsPerRun(100, func() { l.Match(task) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
	buf := make([]Resolved, 0, 8)
	r := l.Match(task)
	if n := testing.AllocsPerRun(100, func() { buf, _ = l.Expand(r, task, buf[:0]) }); n != 0 {
		t.Errorf("Expand of a plain destination allocates %v times", n)
	}
}

func TestNeedsProcess(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{"alice cpu a\n* cpu b\n", false},
		{"alice:sleep cpu a\n", true},
		{"alice cpu a/%u/%P\n", false},
		{"alice cpu a\n% memory %p\n", true},
		{"alice cpu a\n% memory \\%p\n", false},
	} {
		if got := mustParse(t, tc.src, testOptions()).NeedsProcess(); got != tc.want {
			t.Errorf("%q: NeedsProcess %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestRulesIsACopy(t *testing.T) {
	l := mustParse(t, "alice cpu a\nbob cpu b\n", testOptions())
	rs := l.Rules()
	rs[0] = nil
	if l.Rules()[0] == nil {
		t.Error("Rules returned the list's own slice")
	}
}

// TestMayMatch: false only when no rule can match a task with those ids
// whatever its process (then Match is nil for every process name); any
// rule for anyone makes it true.
func TestMayMatch(t *testing.T) {
	l := mustParse(t, "alice:sleep cpu a\n@staff cpu b\n", testOptions())
	procs := []string{"", "sleep", "/bin/sleep", "/usr/bin/vim"}
	for _, c := range []struct {
		name     string
		uid, gid uint32
		want     bool
	}{
		{"user with a process rule", 1000, 5000, true},
		{"group by egid", 5000, 2001, true},
		{"group by membership", 1002, 100, true},
		{"nobody", 5000, 5000, false},
	} {
		if got := l.MayMatch(c.uid, c.gid); got != c.want {
			t.Errorf("%s: MayMatch = %v, want %v", c.name, got, c.want)
		}
		if !c.want {
			for _, p := range procs {
				if r := l.Match(&Task{UID: c.uid, GID: c.gid, Process: p}); r != nil {
					t.Errorf("%s: MayMatch false but %q matches %q", c.name, p, r.Text)
				}
			}
		}
	}
	for _, src := range []string{"*:make cpu c\n", "* cpu c\n", "*:ssh* cpu c\n"} {
		if !mustParse(t, src, testOptions()).MayMatch(5000, 5000) {
			t.Errorf("%q: MayMatch false for a rule for anyone", src)
		}
	}
	if mustParse(t, "", testOptions()).MayMatch(0, 0) {
		t.Error("an empty list may match")
	}
}

func TestNamesUserGroup(t *testing.T) {
	l := mustParse(t, "alice cpu a\n@staff cpu b\n", testOptions())
	for _, c := range []struct {
		uid  uint32
		want bool
	}{{1000, true}, {1002, true}, {5000, false}} { // alice, a member of staff, nobody
		if got := l.NamesUser(c.uid); got != c.want {
			t.Errorf("NamesUser(%d) = %v, want %v", c.uid, got, c.want)
		}
	}
	if !l.NamesGroup(2001) || l.NamesGroup(5000) {
		t.Errorf("NamesGroup(staff) = %v, NamesGroup(5000) = %v", l.NamesGroup(2001), l.NamesGroup(5000))
	}
	any := mustParse(t, "* cpu c\n", testOptions())
	if !any.NamesUser(5000) || !any.NamesGroup(5000) {
		t.Error("a rule for anyone names nobody")
	}
}

// TestListNames: what a filter in the kernel is told the rules can match.
func TestListNames(t *testing.T) {
	for _, c := range []struct {
		src  string
		want string
	}{
		{"alice cpu a\n@students cpu b\nbob:make cpu c\n*:ssh* cpu d\nbob:make cpu e\n",
			"{Any:true UIDs:[1000 1001] GIDs:[2000] Processes:[make ssh*] AllExecs:false}"},
		{"alice cpu users/%p\n@staff cpu s\n",
			"{Any:false UIDs:[1000 1002] GIDs:[2001] Processes:[] AllExecs:true}"},
		{"*:/usr/bin/perl cpu p\n", "{Any:true UIDs:[] GIDs:[] Processes:[/usr/bin/perl] AllExecs:false}"},
	} {
		if got := fmt.Sprintf("%+v", mustParse(t, c.src, testOptions()).Names()); got != c.want {
			t.Errorf("Names of\n%s= %s\nwant %s", c.src, got, c.want)
		}
	}
}
