package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// benchAccounts: users u0..u(n-1) (uid 10000+i) and groups g0..g(n-1)
// (gid 20000+i) each listing two users, plus "me" (uid 1, gid 1) and group
// "mine" (gid 2) listing "me".
func benchAccounts(n int) accounts {
	users := []User{{Name: "me", UID: 1, GID: 1}}
	groups := []Group{{Name: "mine", GID: 2, Members: []string{"me"}}}
	for i := 0; i < n; i++ {
		users = append(users, User{Name: fmt.Sprintf("u%d", i), UID: uint32(10000 + i), GID: 100})
		groups = append(groups, Group{Name: fmt.Sprintf("g%d", i), GID: uint32(20000 + i),
			Members: []string{fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", (i+1)%n)}})
	}
	return newAccounts(users, groups)
}

func benchList(b *testing.B, src string, n int) *List {
	l, _, err := Parse("bench.conf", []byte(src), Options{Resolver: benchAccounts(n), Controllers: testControllers})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		// n user rules; the task's user is the last one.
		b.Run(fmt.Sprintf("user/%d", n), func(b *testing.B) {
			var s strings.Builder
			for i := 0; i < n; i++ {
				fmt.Fprintf(&s, "u%d cpu d%d\n", i, i)
			}
			l := benchList(b, s.String(), n)
			task := &Task{PID: 1, UID: uint32(10000 + n - 1), GID: 100, Process: "/bin/sh"}
			benchMatch(b, l, task, n-1)
		})
		// n-1 @group rules the task is not in, then the task's user rule.
		b.Run(fmt.Sprintf("group-before-user/%d", n), func(b *testing.B) {
			var s strings.Builder
			for i := 0; i < n-1; i++ {
				fmt.Fprintf(&s, "@g%d cpu d%d\n", i, i)
			}
			s.WriteString("me cpu mine\n")
			l := benchList(b, s.String(), n)
			benchMatch(b, l, &Task{PID: 1, UID: 1, GID: 1, Process: "/bin/sh"}, n-1)
		})
		// n-1 @group rules the task is not in, then a @group rule it
		// matches by membership (its uid is listed) or by egid.
		groupsThenMine := func(n int) string {
			var s strings.Builder
			for i := 0; i < n-1; i++ {
				fmt.Fprintf(&s, "@g%d cpu d%d\n", i, i)
			}
			s.WriteString("@mine cpu mine\n")
			return s.String()
		}
		b.Run(fmt.Sprintf("group-before-member/%d", n), func(b *testing.B) {
			l := benchList(b, groupsThenMine(n), n)
			benchMatch(b, l, &Task{PID: 1, UID: 1, GID: 1, Process: "/bin/sh"}, n-1)
		})
		b.Run(fmt.Sprintf("group-before-egid/%d", n), func(b *testing.B) {
			l := benchList(b, groupsThenMine(n), n)
			benchMatch(b, l, &Task{PID: 1, UID: 5, GID: 2, Process: "/bin/sh"}, n-1)
		})
		// n-1 per-program rules for anyone ("*:progN") that the task's
		// program does not match: indexed by name, so not tried.
		b.Run(fmt.Sprintf("program-rules-before/%d", n), func(b *testing.B) {
			var s strings.Builder
			for i := 0; i < n-1; i++ {
				fmt.Fprintf(&s, "*:prog%d cpu d%d\n", i, i)
			}
			s.WriteString("me cpu mine\n")
			l := benchList(b, s.String(), n)
			benchMatch(b, l, &Task{PID: 1, UID: 1, GID: 1, Process: "/bin/sh"}, n-1)
		})
		// The worst case, for the record: n-1 prefix rules for anyone
		// ("*:progN*") are candidates for every task and are tried in turn.
		b.Run(fmt.Sprintf("prefix-rules-before/%d", n), func(b *testing.B) {
			var s strings.Builder
			for i := 0; i < n-1; i++ {
				fmt.Fprintf(&s, "*:prog%d* cpu d%d\n", i, i)
			}
			s.WriteString("me cpu mine\n")
			l := benchList(b, s.String(), n)
			benchMatch(b, l, &Task{PID: 1, UID: 1, GID: 1, Process: "/bin/sh"}, n-1)
		})
	}
}

func benchMatch(b *testing.B, l *List, task *Task, wantIndex int) {
	if r := l.Match(task); r == nil || r.Index != wantIndex {
		b.Fatalf("matched %v, want index %d", r, wantIndex)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l.Match(task)
	}
}

// loadText is a 10,000-line rules file mixing every element: users, groups,
// anyone, processes, templates, "%" lines, options and comments.
func loadText(lines int) string {
	var s strings.Builder
	for i := 0; i < lines; i++ {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&s, "# block %d\n", i/10)
		case 1, 2:
			fmt.Fprintf(&s, "u%d\tcpu,memory\t/users/u%d\n", i%1000, i)
		case 3:
			s.WriteString("%\tpids\t/users/%u/%p\n")
		case 4:
			fmt.Fprintf(&s, "@g%d:/usr/bin/prog%d\t*\t\"/groups/g %d\"\tignore\n", i%100, i, i)
		case 5:
			fmt.Fprintf(&s, "u%d:ssh*\tcpu\t/ssh/%%U\n", i%1000)
		case 6:
			fmt.Fprintf(&s, "@g%d\tcpu\tg%d # note\n", i%100, i)
		case 7:
			s.WriteString("\n")
		case 8:
			fmt.Fprintf(&s, "*:make%d\tmemory\tbuild/%%P\n", i)
		case 9:
			fmt.Fprintf(&s, "u%d\tcpu\t/a/b/c/d\tignore_rt\n", (i*7)%1000)
		}
	}
	return s.String()
}

func BenchmarkLoad(b *testing.B) {
	text := loadText(10000)
	res := benchAccounts(1000)
	opt := Options{Resolver: res, Controllers: testControllers}
	b.Run("parse/10000-lines", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if _, _, err := Parse("bench.conf", []byte(text), opt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file/10000-lines", func(b *testing.B) {
		name := filepath.Join(b.TempDir(), "cgrules.conf")
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Load(name, "", opt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nss/10000-lines", func(b *testing.B) {
		// The real resolver on the accounts every machine has: look-ups are
		// cached per load, so this measures the cache, not NSS.
		text := strings.Repeat("root cpu a/%u\n@root cpu,memory b\n* * c\n% memory d\n", 2500)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Parse("bench.conf", []byte(text), Options{Resolver: NSS()}); err != nil {
				b.Skipf("no root account here: %v", err)
			}
		}
	})
}

// TestLoadMemory keeps a 10,000-rule list's footprint to a few megabytes.
func TestLoadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	text := loadText(10000)
	opt := Options{Resolver: benchAccounts(1000), Controllers: testControllers}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, _, err := Parse("bench.conf", []byte(text), opt)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d rules from %d bytes: %.2f MB allocated while loading, %.2f MB retained",
		l.Len(), len(text), float64(allocated)/1e6, float64(retained)/1e6)
	if retained > 8<<20 || allocated > 32<<20 {
		t.Errorf("too much memory: %d retained, %d allocated", retained, allocated)
	}
	runtime.KeepAlive(l)
}
