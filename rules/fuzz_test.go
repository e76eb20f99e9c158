package rules

import (
	"errors"
	"hash/fnv"
	"strings"
	"testing"
)

// anyResolver knows every name except those starting with "x", with ids
// derived from the name: the fuzzer's rules then mostly resolve, which is
// what exercises Format.
type anyResolver struct{}

func id(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32() % 1000
}

func (anyResolver) UserByName(n string) (User, error) {
	if strings.HasPrefix(n, "x") {
		return User{}, ErrNotFound
	}
	return User{Name: n, UID: id(n), GID: id(n)}, nil
}
func (anyResolver) UserByID(uid uint32) (User, error) { return User{Name: "u", UID: uid}, nil }
func (anyResolver) GroupByName(n string) (Group, error) {
	if strings.HasPrefix(n, "x") {
		return Group{}, ErrNotFound
	}
	return Group{Name: n, GID: id(n), Members: []string{n, "m" + n}}, nil
}
func (anyResolver) GroupByID(gid uint32) (Group, error) { return Group{Name: "g", GID: gid}, nil }

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"alice cpu a\n% memory b\n",
		`"@students:Web Browser" cpu "/usergroup/students/Internet Apps"` + "\n",
		"* * %u/%U/%g/%G/%p/%P ignore,ignore_rt\r\n",
		`bob:ssh* cpu,bogus a\ b\#c\%x/%y # c` + "\n",
		"x cpu a\n% memory b\n@y pids c ignore\n",
		"alice cpu,*,cpu /a/./b//c/\n# only\n\n",
		"% cpu a\nalice cpu ../a\n\"unterminated\n",
		"alice:/usr/bin/perl cpu \"a \\\"q\\\" #\"\n",
		"\uFEFFalice cpu,,memory a ignore,\n% ,pids b ,ignore_rt\n",
		"alice cpu a/" + strings.Repeat("n", 256) + "\n* cpu %u" + strings.Repeat("%x", 40) + "\n",
	} {
		f.Add([]byte(s))
	}
	opt := Options{Resolver: anyResolver{}, Controllers: []string{"cpu", "memory", "pids"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, ds, err := Parse("f.conf", data, opt)
		if err != nil {
			var le *LoadError
			if l != nil || !errors.As(err, &le) || len(le.Diags) == 0 || len(ds.Errors()) == 0 {
				t.Fatalf("failed load: list %v, error %v, diagnostics %v", l, err, ds)
			}
			for _, d := range ds {
				if len(d.Msg) > maxMsg+32 {
					t.Fatalf("diagnostic of %d bytes: %.100q", len(d.Msg), d.Msg)
				}
			}
			return
		}
		if len(ds.Errors()) != 0 {
			t.Fatalf("error diagnostics without an error: %v", ds)
		}
		for _, d := range ds {
			if d.Line < 1 {
				t.Fatalf("diagnostic without a line: %v", d)
			}
			if len(d.Msg) > maxMsg+32 {
				t.Fatalf("diagnostic of %d bytes: %.100q", len(d.Msg), d.Msg)
			}
		}
		out := l.Format()
		back, ds2, err := Parse("f2.conf", out, opt)
		if err != nil {
			t.Fatalf("Format output does not parse: %v\ninput %q\noutput %q", err, data, out)
		}
		if d := equivalent(l, back); d != "" {
			t.Fatalf("round trip differs: %s\ninput %q\noutput %q", d, data, out)
		}
		// A written-out list is stable: formatting it again changes nothing.
		if again := back.Format(); string(again) != string(out) {
			t.Fatalf("Format not stable:\n%q\n%q", out, again)
		}
		_ = ds2
		// Matching and expansion must not panic on whatever was parsed.
		task := &Task{PID: 7, UID: id("alice"), GID: id("alice"), Process: "/bin/alice"}
		if r := l.Match(task); r != nil {
			if _, err := l.Expand(r, task, nil); err != nil && !strings.Contains(err.Error(), "f.conf:") {
				t.Fatalf("expansion error does not name the file: %v", err)
			}
		}
	})
}

// FuzzLexLine checks the lexer's invariants on its own: no panics, fields
// never contain an unescaped blank outside quotes, and the content is a
// substring of the line.
func FuzzLexLine(f *testing.F) {
	for _, s := range []string{`a b c`, `"a b" c "d \" e" f`, `a\ b c\#d # e`, "\t x \r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fields, content, err := lexLine(line, nil)
		if err != nil {
			return
		}
		if !strings.Contains(line, content) {
			t.Fatalf("content %q not in line %q", content, line)
		}
		for i, fl := range fields {
			if fl.text == "" && !fl.quoted {
				t.Fatalf("empty unquoted field %d in %q", i, line)
			}
			if !fl.quoted && i != destField && strings.ContainsAny(fl.text, " \t#\"") {
				t.Fatalf("field %d %q of %q contains a separator", i, fl.text, line)
			}
		}
	})
}
