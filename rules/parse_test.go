package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	noCheck := testOptions()
	noCheck.Controllers = nil
	tests := []struct {
		name      string
		src       string
		opt       *Options // nil: testOptions()
		want      []string // summary(list); nil when the load must fail
		wantDiags []string
	}{
		// Lines, comments, blanks.
		{name: "empty file", src: "", want: []string{}},
		{name: "only comments and blanks", src: "# a\n\n   \n\t# b\n", want: []string{}},
		{name: "trailing comment", src: "# head\n\nalice cpu a   # note\n", want: []string{"L3 alice cpu=a"}},
		{name: "comment glued to a field", src: "alice cpu a#b\n", want: []string{"L1 alice cpu=a"}},
		{name: "comment right after controllers", src: "alice cpu# a\n", wantDiags: []string{`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`}},
		{name: "leading and trailing blanks", src: "  \t alice cpu a \t \n", want: []string{"L1 alice cpu=a"}},
		{name: "tabs and runs of blanks", src: "alice\tcpu\t\t  a\n", want: []string{"L1 alice cpu=a"}},
		{name: "CRLF", src: "alice cpu a\r\nbob memory b\r\n", want: []string{"L1 alice cpu=a", "L2 bob memory=b"}},
		{name: "no final newline", src: "alice cpu a", want: []string{"L1 alice cpu=a"}},
		{name: "NUL byte", src: "alice cpu a\x00\n", wantDiags: []string{"t.conf:1: line contains a NUL byte"}},

		// Fields and quotes.
		{name: "two fields", src: "alice cpu\n", wantDiags: []string{`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`}},
		{name: "one field", src: "alice\n", wantDiags: []string{`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 1: "alice"`}},
		{name: "five fields", src: "alice cpu a ignore more\n", wantDiags: []string{`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 5: "alice cpu a ignore more"`}},
		{name: "quoted who and destination", src: `"@students:Web Browser" cpu "/usergroup/students/Internet Apps"` + "\n",
			want: []string{"L1 @students:Web Browser cpu=usergroup/students/Internet Apps"}},
		{name: "quoted destination keeps #", src: `alice cpu "a#b" # comment` + "\n", want: []string{"L1 alice cpu=a#b"}},
		{name: "quoted who keeps #", src: `"al#ice" cpu a` + "\n", want: []string{}, wantDiags: []string{`t.conf:1: warning: user "al#ice" not found, rule skipped`}},
		{name: "escaped blank in destination", src: `alice cpu a\ b` + "\n", want: []string{"L1 alice cpu=a b"}},
		{name: "escaped quote in quoted destination", src: `alice cpu "a \"q\""` + "\n", want: []string{`L1 alice cpu=a "q"`}},
		{name: "escaped # in destination", src: `alice cpu a\#b` + "\n", want: []string{"L1 alice cpu=a#b"}},
		{name: "unterminated quote", src: `"alice cpu a` + "\n", wantDiags: []string{`t.conf:1: unterminated quote: "\"alice cpu a"`}},
		{name: "unterminated quote in destination", src: `alice cpu "a b` + "\n", wantDiags: []string{`t.conf:1: unterminated quote: "\"a b"`}},
		{name: "escaped closing quote", src: `alice cpu "a\"` + "\n", wantDiags: []string{`t.conf:1: unterminated quote: "\"a\\\""`}},
		{name: "quoted controllers", src: `alice "cpu" a` + "\n", wantDiags: []string{`t.conf:1: quotes are allowed only around the first field and the destination: "\"cpu\" a"`}},
		{name: "quoted options", src: `alice cpu a "ignore"` + "\n", wantDiags: []string{`t.conf:1: quotes are allowed only around the first field and the destination: "\"ignore\""`}},
		{name: "text after closing quote", src: `"alice"x cpu a` + "\n", wantDiags: []string{`t.conf:1: text right after a closing quote: "\"alice\"x cpu a"`}},
		{name: "quote inside a field", src: `ali"ce cpu a` + "\n", wantDiags: []string{`t.conf:1: quote inside a field (quote the whole field): "ali\"ce cpu a"`}},
		{name: "lone backslash ends destination", src: `alice cpu a\`, wantDiags: []string{`t.conf:1: lone backslash at the end of the destination: "a\\"`}},
		{name: "backslash literal in user name", src: `DOMAIN\dave cpu a` + "\n", want: []string{`L1 DOMAIN\dave cpu=a`}},

		// Who.
		{name: "user", src: "alice cpu a\n", want: []string{"L1 alice cpu=a"}},
		{name: "group", src: "@students cpu a\n", want: []string{"L1 @students cpu=a"}},
		{name: "anyone", src: "* cpu a\n", want: []string{"L1 * cpu=a"}},
		{name: "unknown user skips rule and its % lines", src: "peter cpu a\n% memory b\n\n% pids c\nalice cpu d\n% memory e\n",
			want:      []string{"L5 alice cpu=d memory=e"},
			wantDiags: []string{`t.conf:1: warning: user "peter" not found, rule skipped`}},
		{name: "unknown group skips rule", src: "@nogroup cpu a\n% memory b\n* cpu c\n",
			want:      []string{"L3 * cpu=c"},
			wantDiags: []string{`t.conf:1: warning: group "nogroup" not found, rule skipped`}},
		{name: "skipped rule's % lines still checked for errors", src: "peter cpu a\n% memory b bogus\n",
			wantDiags: []string{`t.conf:1: warning: user "peter" not found, rule skipped`, `t.conf:2: unknown option "bogus" (known: ignore, ignore_rt)`}},
		{name: "skipped rule's warnings are not reported", src: "peter nosuch a/%x\n% nosuch2 b\n", want: []string{},
			wantDiags: []string{`t.conf:1: warning: user "peter" not found, rule skipped`}},
		{name: "empty user", src: ":sleep cpu a\n", wantDiags: []string{`t.conf:1: user name missing before ":": ":sleep"`}},
		{name: "empty quoted user", src: `"" cpu a` + "\n", wantDiags: []string{`t.conf:1: empty user name`}},
		{name: "empty group", src: "@ cpu a\n", wantDiags: []string{`t.conf:1: group name missing after "@": "@"`}},

		// Process.
		{name: "process base name", src: "alice:sleep cpu a\n", want: []string{"L1 alice:sleep cpu=a"}},
		{name: "process path", src: "alice:/usr/bin/perl cpu a\n", want: []string{"L1 alice:/usr/bin/perl cpu=a"}},
		{name: "process prefix", src: "*:ssh* cpu a\n", want: []string{"L1 *:ssh* cpu=a"}},
		{name: "process with colon", src: "@students:a:b cpu a\n", want: []string{"L1 @students:a:b cpu=a"}},
		{name: "empty process", src: "alice: cpu a\n", wantDiags: []string{`t.conf:1: process name missing after ":": "alice:"`}},

		// Continuation.
		{name: "% adds targets", src: "alice cpu a\n% memory b\n% pids c\n", want: []string{"L1 alice cpu=a memory=b pids=c"}},
		{name: "% across comments and blanks", src: "alice cpu a\n# c\n\n% memory b\n", want: []string{"L1 alice cpu=a memory=b"}},
		{name: "% with no rule above", src: "% cpu a\nalice cpu b\n", wantDiags: []string{`t.conf:1: "%" line with no rule above it in this file: "% cpu a"`}},
		{name: "% naming a process", src: "alice cpu a\n%:sleep memory b\n", wantDiags: []string{`t.conf:2: a "%" line cannot name a process (it continues the rule above): "%:sleep"`}},
		{name: "% options are ignored", src: "alice cpu a\n% memory b ignore\n", want: []string{"L1 alice cpu=a memory=b"},
			wantDiags: []string{`t.conf:2: warning: options on a "%" line are ignored (only the rule line's options count): "% memory b ignore"`}},
		{name: "% after a broken rule is not reported again", src: "alice cpu\n% memory b\n",
			wantDiags: []string{`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`}},
		{name: "% with too few fields", src: "alice cpu a\n% memory\n",
			wantDiags: []string{`t.conf:2: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "% memory"`}},

		// Controllers.
		{name: "several controllers", src: "alice cpu,memory a\n", want: []string{"L1 alice cpu,memory=a"}},
		{name: "star", src: "alice * a\n", want: []string{"L1 alice *=a"}},
		{name: "star among names", src: "alice cpu,* a\n", want: []string{"L1 alice *=a"},
			wantDiags: []string{`t.conf:1: warning: "*" already means every controller; other names in "cpu,*" are redundant`}},
		{name: "unavailable controller dropped", src: "alice cpu,bogus,memory a\n", want: []string{"L1 alice cpu,memory=a"},
			wantDiags: []string{`t.conf:1: warning: controller "bogus" is not available on this machine, dropped from this target`}},
		{name: "target with no controller left", src: "alice bogus a\n% memory b\n", want: []string{"L1 alice memory=b"},
			wantDiags: []string{
				`t.conf:1: warning: controller "bogus" is not available on this machine, dropped from this target`,
				`t.conf:1: warning: no available controller left in "bogus", target dropped`,
			}},
		{name: "rule with no target left stays", src: "alice bogus a\n* cpu b\n", want: []string{"L1 alice", "L2 * cpu=b"},
			wantDiags: []string{
				`t.conf:1: warning: controller "bogus" is not available on this machine, dropped from this target`,
				`t.conf:1: warning: no available controller left in "bogus", target dropped`,
			}},
		{name: "names not checked without a controller list", src: "alice bogus a\n", opt: &noCheck, want: []string{"L1 alice bogus=a"}},
		{name: "controller listed twice", src: "alice cpu,cpu a\n", want: []string{"L1 alice cpu=a"},
			wantDiags: []string{`t.conf:1: warning: controller "cpu" listed twice in "cpu,cpu"`}},
		// libcgroup skips empty items (strtok): accepted, with a warning.
		{name: "empty controller name", src: "alice cpu,,memory a\n", want: []string{"L1 alice cpu,memory=a"},
			wantDiags: []string{`t.conf:1: warning: empty item in controller list "cpu,,memory" ignored`}},
		{name: "trailing comma in controllers", src: "alice cpu, a\n% ,memory b\n", want: []string{"L1 alice cpu=a memory=b"},
			wantDiags: []string{`t.conf:1: warning: empty item in controller list "cpu," ignored`, `t.conf:2: warning: empty item in controller list ",memory" ignored`}},
		{name: "empty items and a star", src: "alice ,*, a\n", want: []string{"L1 alice *=a"},
			wantDiags: []string{`t.conf:1: warning: empty item in controller list ",*," ignored`}},
		{name: "no controller at all", src: "alice ,, a\n", wantDiags: []string{`t.conf:1: no controller name in ",,"`}},
		{name: "invalid controller name", src: `alice cpu\x a` + "\n", wantDiags: []string{`t.conf:1: invalid controller name "cpu\\x" (letters, digits, "_", "-", "." and "=" only)`}},
		{name: "named v1 hierarchy", src: "alice name=test a\n", opt: &noCheck, want: []string{"L1 alice name=test=a"}},

		// Destinations and templates.
		{name: "leading slash optional and path cleaned", src: "alice cpu /a//b/./c/\n", want: []string{"L1 alice cpu=a/b/c"}},
		{name: "root destination", src: "alice cpu /\n", want: []string{"L1 alice cpu="}},
		{name: "dot destination is root", src: "alice cpu .\n", want: []string{"L1 alice cpu="}},
		{name: "dot-dot refused", src: "alice cpu a/../b\n", wantDiags: []string{`t.conf:1: destination "a/../b" has a ".." component`}},
		{name: "escaped dot-dot refused", src: `alice cpu a/\.\./b` + "\n", wantDiags: []string{`t.conf:1: destination "a/\\.\\./b" has a ".." component`}},
		{name: "dot-dot prefix is a name", src: "alice cpu a/..b/c..\n", want: []string{"L1 alice cpu=a/..b/c.."}},
		{name: "every template", src: "alice cpu /t/%u/%U/%g/%G/%p/%P\n", want: []string{"L1 alice cpu=t/%u/%U/%g/%G/%p/%P"}},
		{name: "templates inside names", src: "alice cpu u-%u.x\n", want: []string{"L1 alice cpu=u-%u.x"}},
		{name: "escaped template", src: `alice cpu a\%u` + "\n", want: []string{`L1 alice cpu=a\%u`}},
		{name: "escaped backslash", src: `alice cpu a\\b` + "\n", want: []string{`L1 alice cpu=a\\b`}},
		{name: "escaped ordinary character", src: `alice cpu \a\b` + "\n", want: []string{"L1 alice cpu=ab"}},
		{name: "unknown template kept", src: "alice cpu a/%x\n", want: []string{`L1 alice cpu=a/\%x`},
			wantDiags: []string{`t.conf:1: warning: unknown template "%x" in destination "a/%x", kept literally`}},
		{name: "percent at the end kept", src: "alice cpu a%\n", want: []string{`L1 alice cpu=a\%`},
			wantDiags: []string{`t.conf:1: warning: "%" at the end of destination "a%", kept literally`}},
		{name: "double percent", src: "alice cpu %%u\n", want: []string{`L1 alice cpu=\%%u`},
			wantDiags: []string{`t.conf:1: warning: unknown template "%%" in destination "%%u", kept literally`}},

		// Options.
		{name: "ignore", src: "alice cpu a ignore\n", want: []string{"L1 alice cpu=a +ignore"}},
		{name: "ignore_rt", src: "alice cpu a ignore_rt\n", want: []string{"L1 alice cpu=a +ignore_rt"}},
		{name: "both options", src: "alice cpu a ignore,ignore_rt\n", want: []string{"L1 alice cpu=a +ignore +ignore_rt"}},
		{name: "unknown option", src: "alice cpu a sticky\n", wantDiags: []string{`t.conf:1: unknown option "sticky" (known: ignore, ignore_rt)`}},
		{name: "trailing comma in options", src: "alice cpu a ignore,\n", want: []string{"L1 alice cpu=a +ignore"},
			wantDiags: []string{`t.conf:1: warning: empty item in options "ignore," ignored`}},
		{name: "empty items in options", src: "alice cpu a ,ignore,,ignore_rt\n", want: []string{"L1 alice cpu=a +ignore +ignore_rt"},
			wantDiags: []string{`t.conf:1: warning: empty item in options ",ignore,,ignore_rt" ignored`}},
		{name: "no option at all", src: "alice cpu a ,\n", wantDiags: []string{`t.conf:1: no option in ","`}},
		{name: "empty option and an unknown one", src: "alice cpu a ignore,,sticky\n", wantDiags: []string{`t.conf:1: unknown option "sticky" (known: ignore, ignore_rt)`}},

		// Byte-order mark.
		{name: "UTF-8 BOM skipped", src: "\uFEFFalice cpu a\n", want: []string{"L1 alice cpu=a"},
			wantDiags: []string{`t.conf:1: warning: UTF-8 byte-order mark at the start of the file, skipped`}},
		{name: "BOM before a comment", src: "\uFEFF# c\nalice cpu a\n", want: []string{"L2 alice cpu=a"},
			wantDiags: []string{`t.conf:1: warning: UTF-8 byte-order mark at the start of the file, skipped`}},
		{name: "BOM elsewhere is text", src: "alice cpu a\n\uFEFFbob cpu b\n", want: []string{"L1 alice cpu=a"},
			wantDiags: []string{"t.conf:2: warning: user \"\\ufeffbob\" not found, rule skipped"}},

		// Sizes: the kernel's PATH_MAX and NAME_MAX.
		{name: "component of NAME_MAX bytes", src: "alice cpu a/" + strings.Repeat("x", 255) + "\n", want: []string{"L1 alice cpu=a/" + strings.Repeat("x", 255)}},
		{name: "component longer than NAME_MAX", src: "alice cpu a/" + strings.Repeat("x", 300) + "/b\n",
			wantDiags: []string{`t.conf:1: destination component "` + strings.Repeat("x", 60) + `..." is 300 bytes long: name too long (NAME_MAX is 255)`}},
		{name: "escaped long component", src: "alice cpu " + strings.Repeat(`\x`, 256) + "\n",
			wantDiags: []string{`t.conf:1: destination component "` + strings.Repeat("x", 60) + `..." is 256 bytes long: name too long (NAME_MAX is 255)`}},
		{name: "templated component too long", src: "alice cpu u/%u" + strings.Repeat("y", 256) + "\n",
			wantDiags: []string{`t.conf:1: destination component "%u` + strings.Repeat("y", 58) + `..." has 256 bytes besides its templates: name too long (NAME_MAX is 255)`}},
		{name: "destination of PATH_MAX bytes", src: "alice cpu " + strings.Repeat("d/", 2048) + "\n",
			wantDiags: []string{`t.conf:1: destination "` + strings.Repeat("d/", 30) + `..." is 4096 bytes long: name too long (PATH_MAX is 4096)`}},
		{name: "destination just below PATH_MAX", src: "alice cpu " + strings.Repeat("d/", 2047) + "d\n", want: []string{"L1 alice cpu=" + strings.Repeat("d/", 2047) + "d"}},
		{name: "many unknown templates, one warning", src: "alice cpu " + strings.Repeat("%x%y", 3) + "\n", want: []string{"L1 alice cpu=" + strings.Repeat(`\%x\%y`, 3)},
			wantDiags: []string{`t.conf:1: warning: unknown template "%x" in destination "%x%y%x%y%x%y", kept literally (and 5 more unknown templates)`}},

		// Whole files.
		{name: "all problems reported",
			src: "alice cpu\n" + // 1: fields
				"bob cpu a bogus\n" + // 2: option
				"peter cpu a\n" + // 3: warning
				"carol cpu ../x\n" + // 4: dot-dot
				"alice nosuch a\n" + // 5: warnings only
				`"bob cpu a` + "\n", // 6: quote
			wantDiags: []string{
				`t.conf:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`,
				`t.conf:2: unknown option "bogus" (known: ignore, ignore_rt)`,
				`t.conf:3: warning: user "peter" not found, rule skipped`,
				`t.conf:4: destination "../x" has a ".." component`,
				`t.conf:5: warning: controller "nosuch" is not available on this machine, dropped from this target`,
				`t.conf:5: warning: no available controller left in "nosuch", target dropped`,
				`t.conf:6: unterminated quote: "\"bob cpu a"`,
			}},
		{name: "several errors on one line", src: "alice cpu,b@d a/../b bogus\n", wantDiags: []string{
			`t.conf:1: invalid controller name "b@d" (letters, digits, "_", "-", "." and "=" only)`,
			`t.conf:1: destination "a/../b" has a ".." component`,
			`t.conf:1: unknown option "bogus" (known: ignore, ignore_rt)`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions()
			if tc.opt != nil {
				opt = *tc.opt
			}
			l, ds, err := Parse("t.conf", []byte(tc.src), opt)
			if got := diagStrings(ds); !equalStrings(got, append([]string{}, tc.wantDiags...)) {
				t.Errorf("diagnostics:\n got %q\nwant %q", got, tc.wantDiags)
			}
			if tc.want == nil {
				if err == nil || l != nil {
					t.Fatalf("Parse succeeded (%q), want a load error", summary(l))
				}
				var le *LoadError
				if !errors.As(err, &le) || len(le.Diags) == 0 {
					t.Fatalf("error %T %v, want *LoadError with diagnostics", err, err)
				}
				if !equalStrings(diagStrings(le.Diags), diagStrings(ds.Errors())) {
					t.Errorf("LoadError.Diags %q, want the error diagnostics %q", diagStrings(le.Diags), diagStrings(ds.Errors()))
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summary(l); !equalStrings(got, tc.want) {
				t.Errorf("rules:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseRuleFields(t *testing.T) {
	src := "# head\r\n  alice:sleep  cpu,memory  /a/%u   ignore   # why\r\n% pids b\r\n"
	l := mustParse(t, src, testOptions())
	r := l.Rules()[0]
	if r.Index != 0 || r.File != "t.conf" || r.Line != 2 {
		t.Errorf("Index/File/Line = %d %q %d", r.Index, r.File, r.Line)
	}
	if want := "alice:sleep  cpu,memory  /a/%u   ignore"; r.Text != want {
		t.Errorf("Text = %q, want %q", r.Text, want)
	}
	if r.Who != "alice" || r.Process != "sleep" || !r.Ignore || r.IgnoreRT {
		t.Errorf("Who %q Process %q Ignore %v IgnoreRT %v", r.Who, r.Process, r.Ignore, r.IgnoreRT)
	}
	if len(r.Targets) != 2 {
		t.Fatalf("targets %d", len(r.Targets))
	}
	t0, t1 := r.Targets[0], r.Targets[1]
	if !t0.Templated || t0.Dest != "a/%u" || t0.Line != 2 || t0.File != "t.conf" {
		t.Errorf("target 0 = %+v", t0)
	}
	if t1.Templated || t1.Dest != "b" || t1.Line != 3 {
		t.Errorf("target 1 = %+v", t1)
	}
}

func TestParseNeedsResolver(t *testing.T) {
	_, ds, err := Parse("t.conf", []byte("alice cpu a\n"), Options{})
	if err == nil || len(ds) != 1 || !errors.Is(err, errNoResolver) {
		t.Fatalf("err %v diags %v", err, ds)
	}
}

// failingResolver fails like an unreachable LDAP server.
type failingResolver struct{ Resolver }

var errLDAP = errors.New("ldap: connection refused")

func (failingResolver) UserByName(string) (User, error)   { return User{}, errLDAP }
func (failingResolver) GroupByName(string) (Group, error) { return Group{}, errLDAP }

func TestParseResolverFailureIsAnError(t *testing.T) {
	opt := testOptions()
	opt.Resolver = failingResolver{opt.Resolver}
	_, ds, err := Parse("t.conf", []byte("alice cpu a\n% memory b\n@students cpu c\n* cpu d\n"), opt)
	want := []string{
		`t.conf:1: cannot look up user "alice": ldap: connection refused`,
		`t.conf:3: cannot look up group "students": ldap: connection refused`,
	}
	if !equalStrings(diagStrings(ds), want) {
		t.Errorf("diagnostics %q, want %q", diagStrings(ds), want)
	}
	if !errors.Is(err, errLDAP) {
		t.Errorf("error %v does not wrap the resolver's error", err)
	}
}

// memberFailure resolves groups but fails on their members.
type memberFailure struct{ accounts }

func (m memberFailure) UserByName(name string) (User, error) {
	if name == "bob" {
		return User{}, errLDAP
	}
	return m.accounts.UserByName(name)
}

func TestParseMemberLookupFailure(t *testing.T) {
	opt := testOptions()
	opt.Resolver = memberFailure{testAccounts()}
	_, ds, err := Parse("t.conf", []byte("@students cpu c\n"), opt)
	want := []string{`t.conf:1: cannot look up member "bob" of group "students": ldap: connection refused`}
	if err == nil || !equalStrings(diagStrings(ds), want) {
		t.Errorf("err %v diagnostics %q, want %q", err, diagStrings(ds), want)
	}
}

// countingResolver counts look-ups, to check the per-load cache.
type countingResolver struct {
	accounts
	users, groups int
}

func (c *countingResolver) UserByName(n string) (User, error) {
	c.users++
	return c.accounts.UserByName(n)
}

func (c *countingResolver) GroupByName(n string) (Group, error) {
	c.groups++
	return c.accounts.GroupByName(n)
}

func TestParseResolvesEachNameOnce(t *testing.T) {
	c := &countingResolver{accounts: testAccounts()}
	opt := testOptions()
	opt.Resolver = c
	src := strings.Repeat("alice cpu a\npeter cpu b\n@students cpu c\n@nogroup cpu d\nbob cpu e\n", 50)
	if _, _, err := Parse("t.conf", []byte(src), opt); err != nil {
		t.Fatal(err)
	}
	// alice, peter, bob (bob and alice also as members of students).
	if c.users != 3 || c.groups != 2 {
		t.Errorf("user look-ups %d (want 3), group look-ups %d (want 2)", c.users, c.groups)
	}
}

func TestDiagnosticString(t *testing.T) {
	for _, tc := range []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{File: "f", Line: 3, Severity: Error, Msg: "bad"}, "f:3: bad"},
		{Diagnostic{File: "f", Line: 3, Severity: Warning, Msg: "odd"}, "f:3: warning: odd"},
		{Diagnostic{File: "f", Severity: Error, Msg: "gone"}, "f: gone"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.d, got, tc.want)
		}
	}
	ds := Diagnostics{{File: "a", Line: 1, Severity: Warning, Msg: "w"}, {File: "a", Line: 2, Severity: Error, Msg: "e1"}, {File: "b", Line: 1, Severity: Error, Msg: "e2"}}
	if len(ds.Errors()) != 2 || len(ds.Warnings()) != 1 {
		t.Errorf("Errors %v Warnings %v", ds.Errors(), ds.Warnings())
	}
	le := &LoadError{Diags: ds.Errors()}
	if got, want := le.Error(), "a:2: e1\nb:1: e2"; got != want {
		t.Errorf("LoadError %q, want %q", got, want)
	}
}

// TestParseDiagnosticsBounded: a megabyte-long field gives a diagnostic of a
// bounded size (issue #13: a 10 MB destination was logged in full, several
// times per line), and no more diagnostics than it has problems.
func TestParseDiagnosticsBounded(t *testing.T) {
	big := strings.Repeat("z", 1<<20)
	for _, line := range []string{
		big + " cpu a",                             // unknown user
		"alice cpu,b@d" + big + " a",               // invalid controller
		"alice " + big + " a",                      // unavailable controller
		"alice cpu a ignore," + big,                // unknown option
		"alice cpu " + big,                         // destination too long
		"alice cpu a/" + strings.Repeat("n", 3000), // component too long
		"alice cpu " + strings.Repeat("%x", 2000),  // unknown templates
		`alice cpu "` + big,                        // unterminated quote
		"alice cpu a " + big + " extra",            // too many fields
		"@" + big + " cpu a",                       // unknown group
	} {
		_, ds, _ := Parse("t.conf", []byte(line+"\n"), testOptions())
		if len(ds) == 0 || len(ds) > 2 {
			t.Errorf("%.30q...: %d diagnostics", line, len(ds))
		}
		for _, d := range ds {
			if n := len(d.String()); n > 400 {
				t.Errorf("%.30q...: diagnostic of %d bytes: %.200s", line, n, d.String())
			}
		}
	}
}
