package unitname

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		"alice":       "alice",
		"john-doe":    `john\x2ddoe`,
		"DOMAIN\\bob": `DOMAIN\x5cbob`,
		".hidden":     `\x2ehidden`,
		"a.b":         "a.b",
		"a b/c":       `a\x20b\x2fc`,
		"jürgen":      `j\xc3\xbcrgen`,
		"x:y_z":       "x:y_z",
		"--":          `\x2d\x2d`,
	} {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		if back := Unescape(got); back != in {
			t.Errorf("Unescape(%q) = %q, want %q", got, back, in)
		}
	}
}

// TestEscapeMatchesSystemdEscape compares with systemd-escape itself, when
// it is installed (it is the definition).
func TestEscapeMatchesSystemdEscape(t *testing.T) {
	if _, err := exec.LookPath("systemd-escape"); err != nil {
		t.Skip("systemd-escape not installed")
	}
	for _, in := range []string{"alice", "john-doe", "DOMAIN\\bob", ".hidden", "a b", "jürgen", "x:y_z", "a.b-c"} {
		out, err := exec.Command("systemd-escape", "--", in).Output()
		if err != nil {
			t.Fatalf("systemd-escape %q: %v", in, err)
		}
		if want := strings.TrimSpace(string(out)); Escape(in) != want {
			t.Errorf("Escape(%q) = %q, systemd-escape says %q", in, Escape(in), want)
		}
	}
}

func TestCheckSlice(t *testing.T) {
	for name, wantErr := range map[string]string{
		"batch.slice":                       "",
		"batch-alice.slice":                 "",
		`batch-john\x2ddoe.slice`:           "",
		"a:b_c.d.slice":                     "",
		"batch":                             `does not end in ".slice"`,
		".slice":                            "empty slice name",
		"-.slice":                           "root slice",
		"-a.slice":                          "neither starts nor ends",
		"a-.slice":                          "neither starts nor ends",
		"a--b.slice":                        "two dashes",
		"a b.slice":                         `holds ' '`,
		`a\b.slice`:                         "not a \\xNN escape",
		`a\x2.slice`:                        "not a \\xNN escape",
		`a\x2`:                              `does not end`,
		strings.Repeat("a", 250) + ".slice": "bytes long",
	} {
		err := CheckSlice(name)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("CheckSlice(%q): %v", name, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("CheckSlice(%q) = %v, want an error containing %q", name, err, wantErr)
		case err != nil && !errors.Is(err, ErrInvalid):
			t.Errorf("CheckSlice(%q) = %v, does not wrap ErrInvalid", name, err)
		}
	}
}

func TestCheckScope(t *testing.T) {
	for name, ok := range map[string]bool{
		"cgred-alice-12.scope":              true,
		`cgred-john\x2ddoe-12.scope`:        true,
		"x.slice":                           false,
		".scope":                            false,
		"a/b.scope":                         false,
		strings.Repeat("s", 250) + ".scope": false,
	} {
		if err := CheckScope(name); (err == nil) != ok {
			t.Errorf("CheckScope(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestSliceNesting(t *testing.T) {
	for _, c := range []struct{ name, parent, path string }{
		{"a.slice", "-.slice", "a.slice"},
		{"a-b.slice", "a.slice", "a.slice/a-b.slice"},
		{"a-b-c.slice", "a-b.slice", "a.slice/a-b.slice/a-b-c.slice"},
		{`batch-john\x2ddoe.slice`, "batch.slice", `batch.slice/batch-john\x2ddoe.slice`},
	} {
		if got := SliceParent(c.name); got != c.parent {
			t.Errorf("SliceParent(%q) = %q, want %q", c.name, got, c.parent)
		}
		if got := SliceCgroupPath(c.name); got != c.path {
			t.Errorf("SliceCgroupPath(%q) = %q, want %q", c.name, got, c.path)
		}
	}
}

func TestSliceFromPath(t *testing.T) {
	for path, want := range map[string]string{
		"batch.slice":                         "batch.slice",
		"/batch.slice/":                       "batch.slice",
		"a-b.slice":                           "a-b.slice",
		"a.slice/a-b.slice":                   "a-b.slice",
		"a.slice/a-b.slice/a-b-c.slice":       "a-b-c.slice",
		"a-b.slice/a-b-c.slice":               "a-b-c.slice",
		`batch.slice/batch-john\x2ddoe.slice`: `batch-john\x2ddoe.slice`,
		"a.slice/b.slice":                     "!below -.slice, not below a.slice",
		"a.slice/a-b-c.slice":                 "!write a.slice/a-b.slice/a-b-c.slice",
		"a.slice/x":                           `!does not end in ".slice"`,
		"x/a.slice":                           `!does not end in ".slice"`,
		"a.slice//a-b.slice":                  "!empty component",
		"":                                    "!empty component",
	} {
		got, err := SliceFromPath(path)
		if msg, bad := strings.CutPrefix(want, "!"); bad {
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("SliceFromPath(%q) = %q, %v; want an error containing %q", path, got, err, msg)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("SliceFromPath(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
}

// FuzzEscape: an escaped name is always a valid slice stem part and
// unescapes back, whatever the input.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"alice", "john-doe", ".x", "a\\x2d", "\x00\xff", "-", "a--b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if Unescape(e) != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, Unescape(e))
		}
		if s == "" {
			return
		}
		if strings.Contains(e, "-") {
			t.Fatalf("Escape(%q) = %q holds a dash", s, e)
		}
		if err := CheckSliceStem("batch-" + e); err != nil {
			t.Fatalf("batch-Escape(%q): %v", s, err)
		}
	})
}

// FuzzSliceFromPath: whatever is accepted maps to a valid slice whose
// cgroup path ends with the accepted path.
func FuzzSliceFromPath(f *testing.F) {
	for _, s := range []string{"a.slice", "a.slice/a-b.slice", "a.slice/b.slice", "-.slice", "a\\x2d.slice", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		name, err := SliceFromPath(path)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("SliceFromPath(%q): %v does not wrap ErrInvalid", path, err)
			}
			return
		}
		if err := CheckSlice(name); err != nil {
			t.Fatalf("SliceFromPath(%q) = %q, invalid: %v", path, name, err)
		}
		if !strings.HasSuffix(SliceCgroupPath(name), strings.Trim(path, "/")) {
			t.Fatalf("SliceCgroupPath(%q) = %q does not end with %q", name, SliceCgroupPath(name), path)
		}
	})
}
