package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	alice := Task{PID: 4242, UID: 1000, GID: 2000, Process: "/usr/bin/vim"}
	tests := []struct {
		name    string
		dest    string
		ctrl    string
		task    Task
		ctrls   []string // nil: testControllers
		noCtrls bool     // Options.Controllers nil
		want    []string
		wantErr string
	}{
		{name: "plain", dest: "a/b", task: alice, want: []string{"cpu:a/b"}},
		{name: "root", dest: "/", task: alice, want: []string{"cpu:"}},
		{name: "%u", dest: "u/%u", task: alice, want: []string{"cpu:u/alice"}},
		{name: "%u unknown uid", dest: "u/%u", task: Task{UID: 777, GID: 2000}, want: []string{"cpu:u/777"}},
		{name: "%U", dest: "u/%U", task: alice, want: []string{"cpu:u/1000"}},
		{name: "%g", dest: "g/%g", task: alice, want: []string{"cpu:g/students"}},
		{name: "%g unknown gid", dest: "g/%g", task: Task{UID: 1000, GID: 888}, want: []string{"cpu:g/888"}},
		{name: "%G", dest: "g/%G", task: alice, want: []string{"cpu:g/2000"}},
		{name: "%p", dest: "p/%p", task: alice, want: []string{"cpu:p/vim"}},
		{name: "%p of a comm", dest: "p/%p", task: Task{PID: 1, UID: 1000, Process: "kworker"}, want: []string{"cpu:p/kworker"}},
		{name: "%P", dest: "p/%P", task: alice, want: []string{"cpu:p/4242"}},
		{name: "templates inside a name", dest: "%u-%P.scope", task: alice, want: []string{"cpu:alice-4242.scope"}},
		{name: "every template", dest: "%u/%U/%g/%G/%p/%P", task: alice, want: []string{"cpu:alice/1000/students/2000/vim/4242"}},
		{name: "escaped template", dest: `a/\%u`, task: alice, want: []string{"cpu:a/%u"}},
		{name: "escaped backslash then template", dest: `a/\\%u`, task: alice, want: []string{`cpu:a/\alice`}},
		{name: "unknown template", dest: "a/%x", task: alice, want: []string{"cpu:a/%x"}},
		{name: "several controllers", dest: "a", ctrl: "cpu,memory", task: alice, want: []string{"cpu:a", "memory:a"}},
		{name: "star", dest: "s/%u", ctrl: "*", task: alice, want: []string{"cpu:s/alice", "cpuacct:s/alice", "memory:s/alice", "pids:s/alice"}},
		{name: "star skips named hierarchies", dest: "s", ctrl: "*", task: alice, want: []string{"cpu:s", "cpuacct:s", "memory:s", "pids:s"}},
		{name: "named hierarchy by name", dest: "s", ctrl: "name=systemd", task: alice, want: []string{"name=systemd:s"}},
		{name: "star without controller list", dest: "s", ctrl: "*", noCtrls: true, task: alice, want: []string{"*:s"}},
		{name: "%p unknown process", dest: "p/%p", task: Task{PID: 5, UID: 1000}, wantErr: `t.conf:1: destination "p/%p": %p: process name unknown`},
		{name: "%P without pid", dest: "p/%P", task: Task{UID: 1000}, wantErr: `t.conf:1: destination "p/%P": %P: no pid`},
		{name: "%p is dot-dot", dest: "p/%p", task: Task{PID: 5, UID: 1000, Process: "/x/.."}, wantErr: `t.conf:1: destination "p/%p": expands to a ".." component`},
		{name: "%p is dot", dest: "%p/x", task: Task{PID: 5, UID: 1000, Process: "."}, wantErr: `t.conf:1: destination "%p/x": expands to a "." component`},
		{name: "%p ends in a slash", dest: "%p", task: Task{PID: 5, UID: 1000, Process: "/x/"}, wantErr: `t.conf:1: destination "%p": %p expands to an empty name`},
		{name: "dot then template is a name", dest: ".%u", task: alice, want: []string{"cpu:.alice"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions()
			if tc.noCtrls {
				opt.Controllers = nil
			}
			ctrl := tc.ctrl
			if ctrl == "" {
				ctrl = "cpu"
			}
			l := mustParse(t, "* "+ctrl+" "+tc.dest+"\n", opt)
			task := tc.task
			r := l.Match(&task)
			if r == nil {
				t.Fatal("no match")
			}
			pre := []Resolved{{Controller: "keep"}}
			got, err := l.Expand(r, &task, pre)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if len(got) != 1 {
					t.Errorf("dst changed on error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Controller != "keep" {
				t.Errorf("Expand did not append to dst")
			}
			if !equalStrings(resolvedStrings(got[1:]), tc.want) {
				t.Errorf("got %q, want %q", resolvedStrings(got[1:]), tc.want)
			}
			for _, g := range got[1:] {
				if g.Target != &r.Targets[0] || g.Templated != r.Targets[0].Templated {
					t.Errorf("Resolved %+v does not point at its target", g)
				}
			}
		})
	}
}

// nameResolver returns crafted names, as a broken directory service could.
type nameResolver struct {
	accounts
	user  string
	fails bool
}

func (n nameResolver) UserByID(uint32) (User, error) {
	if n.fails {
		return User{}, errLDAP
	}
	return User{Name: n.user}, nil
}

func (n nameResolver) GroupByID(uint32) (Group, error) {
	if n.fails {
		return Group{}, errLDAP
	}
	return Group{Name: n.user}, nil
}

func TestExpandRefusesBadNames(t *testing.T) {
	for _, tc := range []struct {
		name, user, dest, wantErr string
		fails                     bool
	}{
		{"slash in user name", "a/b", "%u", `%u expands to "a/b", which is not a cgroup name`, false},
		{"dot-dot user name", "..", "x/%u", `expands to a ".." component`, false},
		{"empty user name", "", "x/%u", `%u expands to an empty name`, false},
		{"slash in group name", "g/h", "%g", `%g expands to "g/h", which is not a cgroup name`, false},
		{"user look-up failure", "", "%u", `%u: ldap: connection refused`, true},
		{"group look-up failure", "", "%g", `%g: ldap: connection refused`, true},
		// Issue #13: a name the kernel would refuse is "name too long", not a
		// missing destination at the move.
		{"user name of NAME_MAX bytes", strings.Repeat("n", 255), "x/%u", "", false},
		{"component too long", strings.Repeat("n", 252), "x/pre-%u", `expands to a component of 256 bytes, "pre-` + strings.Repeat("n", 56) + `...": name too long (NAME_MAX is 255)`, false},
		{"two templates too long", strings.Repeat("n", 250), "x/%u-%u", `expands to a component of 501 bytes, "` + strings.Repeat("n", 60) + `...": name too long (NAME_MAX is 255)`, false},
		{"path too long", strings.Repeat("n", 250), strings.Repeat("%u/", 17), `expands to 4266 bytes: name too long (PATH_MAX is 4096)`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions()
			opt.Resolver = nameResolver{accounts: testAccounts(), user: tc.user, fails: tc.fails}
			l := mustParse(t, "* cpu "+tc.dest+"\n", opt)
			task := &Task{PID: 1, UID: 1, GID: 1}
			_, err := l.Expand(l.Match(task), task, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasSuffix(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want ...%q", err, tc.wantErr)
			}
			if tc.fails && !errors.Is(err, errLDAP) {
				t.Errorf("error %v does not wrap the resolver's", err)
			}
		})
	}
}

func TestExpandPercentLineTargets(t *testing.T) {
	l := mustParse(t, "alice cpu a/%u\n% memory,pids b\n% * c/%p\n", testOptions())
	task := &Task{PID: 9, UID: 1000, GID: 1000, Process: "/bin/sh"}
	got, err := l.Expand(l.Match(task), task, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cpu:a/alice", "memory:b", "pids:b", "cpu:c/sh", "cpuacct:c/sh", "memory:c/sh", "pids:c/sh"}
	if !equalStrings(resolvedStrings(got), want) {
		t.Errorf("got %q, want %q", resolvedStrings(got), want)
	}
	if got[1].Target.Line != 2 || got[3].Target.Line != 3 || !got[3].Templated || got[1].Templated {
		t.Errorf("targets do not carry their own lines: %+v", got)
	}
}

func TestExpandPreview(t *testing.T) {
	l := mustParse(t, "alice cpu a/%p/%P/%u\n", testOptions())
	task := &Task{UID: 1000, GID: 1000}
	if _, err := l.Expand(l.Match(task), task, nil); err == nil {
		t.Fatal("Expand without process succeeded")
	}
	got, err := l.ExpandPreview(l.Match(task), task, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cpu:a/%p/%P/alice"}; !equalStrings(resolvedStrings(got), want) {
		t.Errorf("got %q, want %q", resolvedStrings(got), want)
	}
	if tg := &l.Rules()[0].Targets[0]; !tg.Uses('p') || !tg.Uses('P') || tg.Uses('g') {
		t.Errorf("Uses wrong for %q", tg.Dest)
	}
}
