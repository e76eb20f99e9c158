package rules

import (
	"fmt"
	"strings"
	"testing"
)

// testAccounts is the account database every test resolves against, so that
// no test depends on the machine's users.
func testAccounts() accounts {
	return newAccounts(
		[]User{
			{Name: "root", UID: 0, GID: 0},
			{Name: "alice", UID: 1000, GID: 1000},
			{Name: "bob", UID: 1001, GID: 1001},
			{Name: "carol", UID: 1002, GID: 100},
			{Name: "sjo", UID: 1100, GID: 1100},
			{Name: "cgtest", UID: 1101, GID: 1101},
			{Name: "nobody2", UID: 5000, GID: 5000},
			{Name: "DOMAIN\\dave", UID: 1200, GID: 100},
			{Name: "toor", UID: 0, GID: 0}, // a second name for uid 0
		},
		[]Group{
			{Name: "root", GID: 0, Members: []string{"root"}},
			{Name: "users", GID: 100},
			{Name: "students", GID: 2000, Members: []string{"alice", "bob", "alice"}},
			{Name: "staff", GID: 2001, Members: []string{"carol", "ghost"}}, // ghost has no account
			{Name: "cgroup", GID: 2002, Members: []string{"sjo", "root", "cgtest"}},
			{Name: "alice", GID: 1000},
		},
	)
}

// accounts is this package's test Resolver: a first-entry-wins directory of
// fixed accounts, keyed "user NAME", "uid N", "group NAME" and "gid N".
// (Other packages' tests use rulestest.Static, which imports this package
// and so cannot serve its own tests.)
type accounts map[string]any

func newAccounts(users []User, groups []Group) accounts {
	a := accounts{}
	for _, u := range users {
		a.add(fmt.Sprintf("user %q", u.Name), u)
		a.add(fmt.Sprintf("uid %d", u.UID), u)
	}
	for _, g := range groups {
		a.add(fmt.Sprintf("group %q", g.Name), g)
		a.add(fmt.Sprintf("gid %d", g.GID), g)
	}
	return a
}

func (a accounts) add(key string, v any) {
	if _, ok := a[key]; !ok {
		a[key] = v
	}
}

func find[T User | Group](a accounts, key string) (T, error) {
	if v, ok := a[key].(T); ok {
		return v, nil
	}
	var none T
	return none, fmt.Errorf("%s: %w", key, ErrNotFound)
}

func (a accounts) UserByName(n string) (User, error) { return find[User](a, fmt.Sprintf("user %q", n)) }
func (a accounts) UserByID(id uint32) (User, error)  { return find[User](a, fmt.Sprintf("uid %d", id)) }
func (a accounts) GroupByName(n string) (Group, error) {
	return find[Group](a, fmt.Sprintf("group %q", n))
}
func (a accounts) GroupByID(id uint32) (Group, error) {
	return find[Group](a, fmt.Sprintf("gid %d", id))
}

var testControllers = []string{"cpu", "cpuacct", "memory", "name=systemd", "pids"}

func testOptions() Options {
	return Options{Resolver: testAccounts(), Controllers: testControllers}
}

// summary renders a list compactly for comparisons:
// "L<line> who[:process] ctrl,ctrl=dest ... [+ignore] [+ignore_rt]".
func summary(l *List) []string {
	if l == nil {
		return nil
	}
	out := []string{}
	for _, r := range l.Rules() {
		out = append(out, ruleSummary(r))
	}
	return out
}

func ruleSummary(r *Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "L%d %s", r.Line, r.Who)
	if r.Process != "" {
		b.WriteString(":" + r.Process)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(&b, " %s=%s", strings.Join(t.Controllers, ","), t.Dest)
	}
	if r.Ignore {
		b.WriteString(" +ignore")
	}
	if r.IgnoreRT {
		b.WriteString(" +ignore_rt")
	}
	return b.String()
}

func diagStrings(ds Diagnostics) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustParse(t testing.TB, src string, opt Options) *List {
	t.Helper()
	l, ds, err := Parse("t.conf", []byte(src), opt)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	_ = ds
	return l
}
