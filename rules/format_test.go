package rules

import (
	"fmt"
	"strings"
	"testing"
)

// equivalent reports how two lists differ in what matching and moving
// depend on, or "" when they do not.
func equivalent(a, b *List) string {
	if a.Len() != b.Len() {
		return fmt.Sprintf("%d rules vs %d", a.Len(), b.Len())
	}
	for i := range a.rules {
		x, y := a.rules[i], b.rules[i]
		if x.Who != y.Who || x.Process != y.Process || x.Ignore != y.Ignore || x.IgnoreRT != y.IgnoreRT ||
			x.kind != y.kind || x.id != y.id || x.proc != y.proc || len(x.Targets) != len(y.Targets) {
			return fmt.Sprintf("rule %d: %q vs %q", i, ruleSummary(x), ruleSummary(y))
		}
		for j := range x.Targets {
			s, t := &x.Targets[j], &y.Targets[j]
			if strings.Join(s.Controllers, ",") != strings.Join(t.Controllers, ",") || s.Dest != t.Dest ||
				s.Templated != t.Templated || s.Slice != t.Slice || s.path != t.path || fmt.Sprint(s.comps) != fmt.Sprint(t.comps) {
				return fmt.Sprintf("rule %d target %d: %+v vs %+v", i, j, *s, *t)
			}
		}
	}
	return ""
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"simple", "alice cpu a\n", "alice\tcpu\ta\n"},
		{"comments dropped, % kept", "# c\nalice cpu,memory /a/b # x\n\n% pids c\n", "alice\tcpu,memory\ta/b\n%\tpids\tc\n"},
		{"root destination", "alice cpu /\n", "alice\tcpu\t/\n"},
		{"options", "alice cpu a ignore\nbob cpu b ignore_rt\ncarol cpu c ignore_rt,ignore\n",
			"alice\tcpu\ta\tignore\nbob\tcpu\tb\tignore_rt\ncarol\tcpu\tc\tignore,ignore_rt\n"},
		{"quoted fields", `"@students:Web Browser" cpu "/usergroup/students/Internet Apps"` + "\n",
			"\"@students:Web Browser\"\tcpu\t\"usergroup/students/Internet Apps\"\n"},
		{"escapes", `alice cpu "a\"b\\c\%u#d"` + "\n", `alice` + "\tcpu\t" + `"a\"b\\c\%u#d"` + "\n"},
		{"unknown template", "alice cpu a%x\n", "alice\tcpu\ta\\%x\n"},
		{"skipped rules dropped", "peter cpu a\n% memory b\nalice cpu c\n", "alice\tcpu\tc\n"},
		{"unavailable controllers kept", "alice bogus,cpu a\n% nosuch b\n", "alice\tbogus,cpu\ta\n%\tnosuch\tb\n"},
		{"star", "* cpu,* a\n", "*\t*\ta\n"},
		{"process", "*:/usr/bin/ssh* cpu a\n", "*:/usr/bin/ssh*\tcpu\ta\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustParse(t, tc.src, testOptions())
			got := string(l.Format())
			if got != tc.want {
				t.Errorf("Format:\n got %q\nwant %q", got, tc.want)
			}
			back := mustParse(t, got, testOptions())
			if d := equivalent(l, back); d != "" {
				t.Errorf("round trip differs: %s", d)
			}
			// With no controller check, written-out lists keep every target.
			opt := testOptions()
			opt.Controllers = nil
			if strings.Contains(got, "bogus") && len(mustParse(t, got, opt).Rules()[0].Targets) != 2 {
				t.Errorf("unavailable targets lost")
			}
		})
	}
}
