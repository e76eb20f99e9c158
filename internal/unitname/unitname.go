package unitname

import (
	"errors"
	"fmt"
	"strings"
)

// Max is the longest unit name systemd accepts (UNIT_NAME_MAX is 256 with
// the terminating NUL).
const Max = 255

// Root is the root slice, the parent of every top-level slice.
const Root = "-.slice"

// ErrInvalid is wrapped by every error about a malformed name.
var ErrInvalid = errors.New("invalid unit name")

const hexDigits = "0123456789abcdef"

// plain reports whether systemd-escape keeps c as it is.
func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ':' || c == '_' || c == '.'
}

// valid reports whether c may appear in a unit name (escapes included).
func valid(c byte) bool { return plain(c) || c == '-' || c == '\\' }

// Escape makes s usable as part of a unit name's prefix without changing
// its nesting: every byte outside [A-Za-z0-9:_.] (the dash, the backslash,
// "/" and any non-ASCII byte included), and a leading dot, becomes "\xNN",
// as systemd-escape does. Escape("john-doe") is `john\x2ddoe`. The empty
// string stays empty.
func Escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) || i == 0 && s[i] == '.' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 3*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\x`)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// Unescape undoes Escape (and any "\xNN" in a name), for messages.
func Unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' && isHex(s[i+2]) && isHex(s[i+3]) {
			b.WriteByte(unhex(s[i+2])<<4 | unhex(s[i+3]))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// CheckChars checks that s uses only the characters of unit names, a
// backslash only as "\xNN". It names the first offending byte.
func CheckChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !valid(c) {
			return fmt.Errorf("%w: %q holds %q (unit names use letters, digits, \":\", \"_\", \".\", \"-\" and \\xNN escapes)", ErrInvalid, s, c)
		}
		if c == '\\' {
			if i+3 >= len(s) || s[i+1] != 'x' || !isHex(s[i+2]) || !isHex(s[i+3]) {
				return fmt.Errorf("%w: %q has a backslash that is not a \\xNN escape", ErrInvalid, s)
			}
			i += 3
		}
	}
	return nil
}

// CheckSliceStem checks the part of a slice name before ".slice" for the
// dash rules: not empty, no leading or trailing dash, no two dashes in a
// row. Characters are CheckChars'.
func CheckSliceStem(stem string) error {
	switch {
	case stem == "":
		return fmt.Errorf("%w: empty slice name", ErrInvalid)
	case stem == "-":
		return fmt.Errorf("%w: %q is the root slice", ErrInvalid, Root)
	case strings.HasPrefix(stem, "-") || strings.HasSuffix(stem, "-"):
		return fmt.Errorf("%w: %q: a slice name neither starts nor ends with \"-\" (a dash means nesting)", ErrInvalid, stem+".slice")
	case strings.Contains(stem, "--"):
		return fmt.Errorf("%w: %q: a slice name has no two dashes in a row (a dash means nesting)", ErrInvalid, stem+".slice")
	}
	return CheckChars(stem)
}

// CheckSlice checks a slice unit name: ".slice" suffix, length, characters
// and dashes. The root slice "-.slice" is refused: nothing is placed there.
func CheckSlice(name string) error {
	stem, ok := strings.CutSuffix(name, ".slice")
	if !ok {
		return fmt.Errorf("%w: %q does not end in \".slice\"", ErrInvalid, name)
	}
	if len(name) > Max {
		return fmt.Errorf("%w: %q is %d bytes long (at most %d)", ErrInvalid, name, len(name), Max)
	}
	return CheckSliceStem(stem)
}

// CheckScope checks a scope unit name: ".scope" suffix, length, characters.
func CheckScope(name string) error {
	stem, ok := strings.CutSuffix(name, ".scope")
	switch {
	case !ok:
		return fmt.Errorf("%w: %q does not end in \".scope\"", ErrInvalid, name)
	case stem == "":
		return fmt.Errorf("%w: empty scope name", ErrInvalid)
	case len(name) > Max:
		return fmt.Errorf("%w: %q is %d bytes long (at most %d)", ErrInvalid, name, len(name), Max)
	}
	return CheckChars(stem)
}

// SliceParent is the slice a slice sits in: "a-b-c.slice" → "a-b.slice",
// "a.slice" → "-.slice". The name must be valid (CheckSlice).
func SliceParent(name string) string {
	stem := strings.TrimSuffix(name, ".slice")
	i := strings.LastIndexByte(stem, '-')
	if i < 0 {
		return Root
	}
	return stem[:i] + ".slice"
}

// SliceCgroupPath is where systemd puts a slice's cgroup, relative to the
// manager's cgroup root: "a-b-c.slice" → "a.slice/a-b.slice/a-b-c.slice".
// The name must be valid (CheckSlice).
func SliceCgroupPath(name string) string {
	stem := strings.TrimSuffix(name, ".slice")
	var b strings.Builder
	b.Grow(len(stem) * 2)
	for i := 0; i < len(stem); i++ {
		if stem[i] == '-' {
			b.WriteString(stem[:i])
			b.WriteString(".slice/")
		}
	}
	b.WriteString(name)
	return b.String()
}

// SliceFromPath maps a destination written as a slice, or a path of nested
// slices ("a.slice/a-b.slice"), to the slice unit it names (the last
// component), after checking every component and that each one sits in
// the one before it by systemd's dash rule: "a.slice/b.slice" is refused
// (b.slice is not below a.slice), and so is "a.slice/a-b-c.slice" when the
// path skips a level. A single component may be any valid slice: its
// parents are implied.
func SliceFromPath(path string) (string, error) {
	path = strings.Trim(path, "/")
	comps := strings.Split(path, "/")
	for i, c := range comps {
		if c == "" {
			return "", fmt.Errorf("%w: empty component in %q", ErrInvalid, path)
		}
		if err := CheckSlice(c); err != nil {
			return "", err
		}
		if i > 0 {
			if p := SliceParent(c); p != comps[i-1] {
				return "", fmt.Errorf("%w: %q in %q: systemd puts %s below %s, not below %s (a dash means nesting: write %s)",
					ErrInvalid, c, path, c, p, comps[i-1], SliceCgroupPath(c))
			}
		}
	}
	return comps[len(comps)-1], nil
}
