package rules

import (
	"errors"
	"fmt"
	"strings"
)

// part is a piece of a destination path component: literal text, or one
// template.
type part struct {
	lit  string // unescaped literal text, when verb == 0
	verb byte   // template letter (u U g G p P), or 0
}

func isVerb(c byte) bool {
	switch c {
	case 'u', 'U', 'g', 'G', 'p', 'P':
		return true
	}
	return false
}

// Linux's limits on a path (PATH_MAX, its terminating NUL included) and on
// one name in it (NAME_MAX): the kernel refuses longer ones with
// ENAMETOOLONG, so a destination beyond them could never be used.
const (
	pathMax = 4096
	nameMax = 255
)

// parsedDest is a destination as the parser understands it.
type parsedDest struct {
	dest      string   // canonical text (see Target.Dest)
	path      string   // the cgroup path, when not templated
	comps     [][]part // components, when templated
	templated bool
	needsProc bool // uses %p
	warnings  []string
}

// parseDest interprets a destination field (escapes still in it): a leading
// "/" is optional, empty and "." components are dropped, "\x" is a literal x,
// %u %U %g %G %p %P are templates and any other "%x" is kept literally with
// a warning. A ".." component is refused: a rule must not be able to point
// outside the hierarchy the daemon manages. Templates never contain "/" once
// expanded (Expand checks), so splitting on "/" here is final. A field of
// PATH_MAX bytes or more, or a component longer than NAME_MAX (its literal
// text, for a template), is refused: the kernel would refuse it too.
func parseDest(raw string) (parsedDest, error) {
	var (
		d       parsedDest
		comps   [][]part
		cur     []part
		lit     strings.Builder
		hasT    bool     // current component has a template
		unknown []string // unknown "%x" sequences, for one warning
	)
	if len(raw) >= pathMax {
		return d, fmt.Errorf("destination %s is %d bytes long: name too long (PATH_MAX is %d)", quote(raw), len(raw), pathMax)
	}
	flushLit := func() {
		if lit.Len() > 0 {
			cur = append(cur, part{lit: lit.String()})
			lit.Reset()
		}
	}
	endComp := func() error {
		flushLit()
		n := 0
		for _, p := range cur {
			n += len(p.lit)
		}
		if n > nameMax {
			c := canonical([][]part{cur})
			if hasT {
				return fmt.Errorf("destination component %s has %d bytes besides its templates: name too long (NAME_MAX is %d)", quote(c), n, nameMax)
			}
			return fmt.Errorf("destination component %s is %d bytes long: name too long (NAME_MAX is %d)", quote(c), n, nameMax)
		}
		if !hasT {
			var s string
			if len(cur) == 1 {
				s = cur[0].lit
			}
			switch s {
			case "", ".":
				cur, hasT = nil, false
				return nil
			case "..":
				return errors.New("destination " + quote(raw) + " has a \"..\" component")
			}
		}
		comps = append(comps, cur)
		cur, hasT = nil, false
		return nil
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '/':
			if err := endComp(); err != nil {
				return d, err
			}
		case '\\':
			// The lexer guarantees a character follows.
			if i+1 < len(raw) {
				i++
				if raw[i] == '/' {
					if err := endComp(); err != nil {
						return d, err
					}
					continue
				}
				lit.WriteByte(raw[i])
			}
		case '%':
			if i+1 < len(raw) && isVerb(raw[i+1]) {
				flushLit()
				i++
				cur = append(cur, part{verb: raw[i]})
				hasT = true
				d.templated = true
				if raw[i] == 'p' {
					d.needsProc = true
				}
				continue
			}
			if i+1 < len(raw) {
				unknown = append(unknown, raw[i:i+2])
			} else {
				d.warnings = append(d.warnings, fmt.Sprintf("\"%%\" at the end of destination %s, kept literally", quote(raw)))
			}
			lit.WriteByte('%')
		default:
			lit.WriteByte(c)
		}
	}
	if err := endComp(); err != nil {
		return d, err
	}
	if len(unknown) > 0 {
		// One warning per destination, not per "%": a line of "%x" would
		// otherwise give thousands.
		w := fmt.Sprintf("unknown template %q in destination %s, kept literally", unknown[0], quote(raw))
		if len(unknown) > 1 {
			w += fmt.Sprintf(" (and %d more unknown templates)", len(unknown)-1)
		}
		d.warnings = append([]string{w}, d.warnings...)
	}
	if d.templated {
		d.comps = comps
		d.dest = canonical(comps)
		return d, nil
	}
	d.path = plainPath(comps)
	if d.path == raw {
		// The common case: keep the substring of the file instead of a copy.
		d.path = raw
	}
	d.dest = d.path
	if strings.ContainsAny(d.path, `%\`) {
		d.dest = canonical(comps)
	}
	return d, nil
}

// canonical writes comps back as destination text that parseDest reads as
// the same components.
func canonical(comps [][]part) string {
	var b strings.Builder
	for i, c := range comps {
		if i > 0 {
			b.WriteByte('/')
		}
		for _, p := range c {
			if p.verb != 0 {
				b.WriteByte('%')
				b.WriteByte(p.verb)
				continue
			}
			for j := 0; j < len(p.lit); j++ {
				if p.lit[j] == '%' || p.lit[j] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(p.lit[j])
			}
		}
	}
	return b.String()
}

func plainPath(comps [][]part) string {
	if len(comps) == 1 {
		return comps[0][0].lit
	}
	var b strings.Builder
	for i, c := range comps {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c[0].lit)
	}
	return b.String()
}
