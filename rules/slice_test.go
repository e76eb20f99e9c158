package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestSliceDestinations(t *testing.T) {
	on := testOptions()
	on.Systemd = true
	for _, c := range []struct {
		name, src string
		off       bool     // with systemd off
		why       string   // Options.SystemdOff
		want      []string // Path of each Resolved for alice; nil: the load fails
		diag      string   // expected error diagnostic (file:line: ...)
	}{
		{name: "plain slice", src: "alice * batch.slice\n", want: []string{"batch.slice"}},
		{name: "nested by dash", src: "alice * batch-a.slice\n", want: []string{"batch.slice/batch-a.slice"}},
		{name: "nested path", src: "alice * a.slice/a-b.slice\n", want: []string{"a.slice/a-b.slice"}},
		{name: "nested path, leading slash", src: "alice * /a.slice/a-b.slice/a-b-c.slice ignore\n", want: []string{"a.slice/a-b.slice/a-b-c.slice"}},
		{name: "per-user template", src: "alice * batch-%u.slice\n", want: []string{"batch.slice/batch-alice.slice"}},
		{name: "template in a nested path", src: "alice * batch.slice/batch-%u.slice\n", want: []string{"batch.slice/batch-alice.slice"}},
		{name: "uid template", src: "@students * u-%U.slice\n", want: []string{"u.slice/u-1000.slice"}},
		{name: "escape written literally", src: `alice * "batch-a\\x2db.slice"` + "\n", want: []string{`batch.slice/batch-a\x2db.slice`}},
		{name: "a raw destination stays raw", src: "alice cpu slices/x\n", want: []string{"slices/x"}},
		{name: "slice-like middle component is raw", src: "alice cpu a.slice/x\n", want: []string{"a.slice/x"}},
		{name: "systemd off", src: "alice * batch.slice\n", off: true,
			diag: `t.conf:1: destination "batch.slice" names a systemd slice (its last component ends in ".slice"), but systemd does not place tasks here`},
		{name: "systemd off, saying why", src: "alice * batch.slice\n", off: true, why: `--systemd=auto: PID 1 is "init", not systemd`,
			diag: `t.conf:1: destination "batch.slice" names a systemd slice (its last component ends in ".slice"), but systemd does not place tasks here (--systemd=auto: PID 1 is "init", not systemd)`},
		{name: "controllers not *", src: "alice cpu,memory batch.slice\n",
			diag: `t.conf:1: destination "batch.slice" is a systemd slice: its controllers must be "*" (systemd places the task in every hierarchy it manages), not "cpu,memory"`},
		{name: "inconsistent nesting", src: "alice * a.slice/b.slice\n",
			diag: `t.conf:1: destination "a.slice/b.slice": systemd puts b.slice below -.slice, not below a.slice (a dash means nesting: write b.slice, or b.slice alone)`},
		{name: "skipped level", src: "alice * a.slice/a-b-c.slice\n",
			diag: `systemd puts a-b-c.slice below a-b.slice, not below a.slice (a dash means nesting: write a.slice/a-b.slice/a-b-c.slice`},
		{name: "template nesting", src: "alice * batch.slice/other-%u.slice\n",
			diag: `systemd puts other-%u.slice below other.slice, not below batch.slice`},
		{name: "raw parent", src: "alice * rules/batch.slice\n",
			diag: `t.conf:1: destination "rules/batch.slice": component "rules" is not a slice`},
		{name: "double dash", src: "alice * a--b.slice\n", diag: `"a--b.slice": a slice name has no two dashes in a row`},
		{name: "trailing dash before template end", src: "alice * %u-.slice\n", diag: `"%u-.slice": a slice name neither starts nor ends with "-"`},
		{name: "root slice", src: "alice * -.slice\n", diag: `"-.slice" is the root slice`},
		{name: "bad character", src: "alice * \"a b.slice\"\n", diag: `holds ' '`},
		{name: "slice and another target", src: "alice * batch.slice\n% cpu other\n",
			diag: `t.conf:2: a rule whose destination is a systemd slice has no other target (a task is in one unit): "% cpu other"`},
		{name: "raw then slice", src: "alice cpu other\n% * batch.slice\n",
			diag: `t.conf:2: a rule whose destination is a systemd slice has no other target`},
	} {
		opt := on
		if c.off {
			opt = testOptions()
			opt.SystemdOff = c.why
		}
		l, ds, err := Parse("t.conf", []byte(c.src), opt)
		if c.diag != "" {
			if err == nil {
				t.Errorf("%s: loaded, want error %q", c.name, c.diag)
				continue
			}
			if !strings.Contains(strings.Join(diagStrings(ds), "\n"), c.diag) {
				t.Errorf("%s: diagnostics %q, want one containing %q", c.name, diagStrings(ds), c.diag)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		task := &Task{PID: 9, UID: 1000, GID: 1000, Process: "/bin/x"}
		r := l.Match(task)
		if r == nil {
			t.Errorf("%s: no match", c.name)
			continue
		}
		res, err := l.Expand(r, task, nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got []string
		for _, x := range res {
			got = append(got, x.Path)
			if x.Slice != strings.HasSuffix(x.Path, ".slice") || x.Slice != r.Targets[0].Slice || x.Slice && x.Controller != "" {
				t.Errorf("%s: %+v", c.name, x)
			}
		}
		if !equalStrings(got, c.want) {
			t.Errorf("%s: paths %q, want %q", c.name, got, c.want)
		}
	}
}

// TestSliceTemplateEscaping: a user name with a dash, a dot or a backslash
// becomes one slice directly below its parent, never a nested one.
func TestSliceTemplateEscaping(t *testing.T) {
	opt := testOptions()
	opt.Systemd = true
	l := mustParse(t, "* * batch-%u.slice\n* * %u.slice\n", opt)
	for _, c := range []struct {
		uid  uint32
		want string
	}{
		{1000, "batch.slice/batch-alice.slice"},
		{1200, `batch.slice/batch-DOMAIN\x5cdave.slice`},
	} {
		task := &Task{PID: 1, UID: c.uid, GID: 100}
		res, err := l.Expand(l.Rules()[0], task, nil)
		if err != nil || len(res) != 1 || res[0].Path != c.want {
			t.Errorf("uid %d: %+v, %v; want %q", c.uid, res, err, c.want)
		}
	}
	// A user name as a top-level slice: john-doe stays one slice.
	res, err := l.ExpandPreview(l.Rules()[1], &Task{UID: 4242}, nil)
	if err != nil || res[0].Path != "4242.slice" {
		t.Errorf("unknown uid: %+v, %v", res, err)
	}
	st := newAccounts([]User{{Name: "john-doe", UID: 3000}, {Name: strings.Repeat("n", 250), UID: 3001}}, nil)
	opt.Resolver = st
	l = mustParse(t, "* * batch-%u.slice\n", opt)
	res, err = l.Expand(l.Rules()[0], &Task{PID: 1, UID: 3000}, nil)
	if err != nil || res[0].Path != `batch.slice/batch-john\x2ddoe.slice` {
		t.Errorf("john-doe: %+v, %v", res, err)
	}
	// A name whose escaped slice is too long for a unit name fails the
	// expansion with the rule's file:line.
	_, err = l.Expand(l.Rules()[0], &Task{PID: 1, UID: 3001}, nil)
	if err == nil || !strings.Contains(err.Error(), "t.conf:1:") || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long name: %v", err)
	}
}

// TestSliceFormatRoundTrip: a slice destination is written back as
// written and parses back the same.
func TestSliceFormatRoundTrip(t *testing.T) {
	opt := testOptions()
	opt.Systemd = true
	src := "alice * a.slice/a-%u.slice ignore\nbob * batch.slice\n"
	l := mustParse(t, src, opt)
	back, _, err := Parse("f2.conf", l.Format(), opt)
	if err != nil {
		t.Fatalf("%v\n%s", err, l.Format())
	}
	if d := equivalent(l, back); d != "" {
		t.Error(d)
	}
	if !back.Rules()[0].Targets[0].Slice || !back.Rules()[1].Targets[0].Slice {
		t.Error("Slice lost in the round trip")
	}
}

// FuzzParseSlice is FuzzParse's round trip with slice destinations allowed;
// besides, every slice a match expands to is a valid slice path.
func FuzzParseSlice(f *testing.F) {
	for _, s := range []string{
		"alice * batch.slice\n",
		"alice * batch-%u.slice ignore\n",
		"* * a.slice/a-b.slice/a-b-%U.slice\n",
		"alice * a.slice/b.slice\n",
		"alice cpu x.slice\n% * y.slice\n",
		"alice * %u-%g.slice\n",
		"alice * \"a\\\\x2db.slice\"\n",
		"alice * -.slice\n* * --.slice\n",
	} {
		f.Add([]byte(s))
	}
	opt := Options{Resolver: anyResolver{}, Controllers: []string{"cpu", "memory", "pids"}, Systemd: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, ds, err := Parse("f.conf", data, opt)
		if err != nil {
			var le *LoadError
			if l != nil || !errors.As(err, &le) || len(ds.Errors()) == 0 {
				t.Fatalf("failed load: list %v, error %v, diagnostics %v", l, err, ds)
			}
			return
		}
		back, _, err := Parse("f2.conf", l.Format(), opt)
		if err != nil {
			t.Fatalf("Format output does not parse: %v\ninput %q", err, data)
		}
		if d := equivalent(l, back); d != "" {
			t.Fatalf("round trip differs: %s\ninput %q", d, data)
		}
		task := &Task{PID: 7, UID: id("alice"), GID: id("alice"), Process: "/bin/alice"}
		for _, r := range l.Rules() {
			res, err := l.Expand(r, task, nil)
			if err != nil {
				continue
			}
			for _, x := range res {
				if x.Slice && (!strings.HasSuffix(x.Path, ".slice") || strings.Contains(x.Path, "//")) {
					t.Fatalf("slice path %q from %q", x.Path, data)
				}
			}
		}
	})
}
