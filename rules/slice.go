package rules

import (
	"fmt"
	"strings"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
)

// isSlice reports whether a parsed destination names a systemd slice: its
// last component ends in ".slice" (literally, after any template).
func (d *parsedDest) isSlice() bool {
	if !d.templated {
		last := d.path[strings.LastIndexByte(d.path, '/')+1:]
		return strings.HasSuffix(last, ".slice")
	}
	if len(d.comps) == 0 {
		return false
	}
	c := d.comps[len(d.comps)-1]
	p := c[len(c)-1]
	return p.verb == 0 && strings.HasSuffix(p.lit, ".slice")
}

// sliceForms returns each component of a slice destination twice: as a
// pattern in which a template stands for itself ("batch-%u.slice"), for the
// nesting check (template values are escaped: they never hold a dash, so
// they never change the nesting), and with each template replaced by one
// plain letter, for the character and dash checks.
func (d *parsedDest) sliceForms() (pattern, plain []string) {
	if !d.templated {
		if d.path == "" {
			return nil, nil
		}
		c := strings.Split(d.path, "/")
		return c, c
	}
	for _, c := range d.comps {
		var pat, pl strings.Builder
		for _, p := range c {
			if p.verb != 0 {
				pat.WriteByte('%')
				pat.WriteByte(p.verb)
				pl.WriteByte('x')
				continue
			}
			pat.WriteString(p.lit)
			pl.WriteString(p.lit)
		}
		pattern = append(pattern, pat.String())
		plain = append(plain, pl.String())
	}
	return pattern, plain
}

// checkSlice validates a slice destination and, when it has no template,
// returns its cgroup path (every parent slice included).
func checkSlice(raw string, d *parsedDest, ctrl ctrlRes, systemd bool, off string) (string, []string) {
	var errs []string
	if !systemd {
		if off == "" {
			off = "--systemd=off, or not a systemd machine"
		}
		return "", []string{fmt.Sprintf("destination %s names a systemd slice (its last component ends in \".slice\"), but systemd does not place tasks here (%s)", quote(raw), off)}
	}
	if ctrl.err == nil && !(len(ctrl.written) == 1 && ctrl.written[0] == "*") {
		errs = append(errs, fmt.Sprintf("destination %s is a systemd slice: its controllers must be \"*\" (systemd places the task in every hierarchy it manages), not %s", quote(raw), quote(strings.Join(ctrl.written, ","))))
	}
	pattern, plain := d.sliceForms()
	for i := range plain {
		if !strings.HasSuffix(plain[i], ".slice") {
			errs = append(errs, fmt.Sprintf("destination %s: component %s is not a slice: a systemd destination is a slice or a path of nested slices (a.slice/a-b.slice)", quote(raw), quote(pattern[i])))
			return "", errs
		}
		if err := unitname.CheckSliceStem(strings.TrimSuffix(plain[i], ".slice")); err != nil {
			errs = append(errs, fmt.Sprintf("destination %s: %v", quote(raw), unwrapInvalid(err, plain[i], pattern[i])))
			return "", errs
		}
		if len(plain[i]) > unitname.Max {
			errs = append(errs, fmt.Sprintf("destination %s: slice name %s is %d bytes long besides its templates (a unit name has at most %d)", quote(raw), quote(pattern[i]), len(plain[i]), unitname.Max))
			return "", errs
		}
		if i > 0 {
			if parent := unitname.SliceParent(pattern[i]); parent != pattern[i-1] {
				errs = append(errs, fmt.Sprintf("destination %s: systemd puts %s below %s, not below %s (a dash means nesting: write %s, or %s alone)",
					quote(raw), pattern[i], parent, pattern[i-1], unitname.SliceCgroupPath(pattern[i]), pattern[i]))
				return "", errs
			}
		}
	}
	if len(errs) > 0 || d.templated {
		return "", errs
	}
	return unitname.SliceCgroupPath(pattern[len(pattern)-1]), nil
}

// unwrapInvalid rewrites unitname's message, which quotes the plain form
// (templates as "x"), to quote the destination as written.
func unwrapInvalid(err error, plain, pattern string) string {
	msg := strings.TrimPrefix(err.Error(), unitname.ErrInvalid.Error()+": ")
	if plain != pattern {
		msg = strings.ReplaceAll(msg, fmt.Sprintf("%q", plain), fmt.Sprintf("%q", pattern))
	}
	return msg
}

// expandSlice finishes the expansion of a templated slice target: the
// expanded path (template values already escaped) is checked as a slice
// path and becomes the slice's cgroup path.
func expandSlice(p string) (string, error) {
	name, err := unitname.SliceFromPath(p)
	if err != nil {
		return "", fmt.Errorf("expands to %s: %s", quote(p), strings.TrimPrefix(err.Error(), unitname.ErrInvalid.Error()+": "))
	}
	return unitname.SliceCgroupPath(name), nil
}

// hasSlice reports whether one of the rule's targets is a systemd slice.
func (r *Rule) hasSlice() bool {
	for i := range r.Targets {
		if r.Targets[i].Slice {
			return true
		}
	}
	return false
}
