package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
)

func (t *Target) needsProc() bool {
	for _, c := range t.comps {
		for _, p := range c {
			if p.verb == 'p' {
				return true
			}
		}
	}
	return false
}

// Uses reports whether the target's destination contains template verb
// (one of u U g G p P).
func (t *Target) Uses(verb byte) bool {
	for _, c := range t.comps {
		for _, p := range c {
			if p.verb == verb {
				return true
			}
		}
	}
	return false
}

// Expand appends the rule's targets for t with templates expanded and "*"
// expanded to the list's available controllers (Options.Controllers; if nil,
// "*" stays "*"). A slice target gives one Resolved with Slice set, whose
// template values are escaped as unit names (user john-doe in
// batch-%u.slice: batch-john\x2ddoe.slice) and whose Path holds every parent
// slice. Path is cleaned, without leading "/" ("" = root). An
// expansion that yields an empty value (%p with an unknown process, %P with
// PID <= 0), a value containing "/", a "." or ".." component, or a path or
// component longer than the kernel takes (PATH_MAX, NAME_MAX: "name too
// long") is an error naming the target's file:line; dst is then returned
// unchanged.
//
// Non-templated targets cost no allocation. %u and %g look up names through
// the resolver the list was loaded with (an unknown id expands to its number).
func (l *List) Expand(r *Rule, t *Task, dst []Resolved) ([]Resolved, error) {
	return l.expand(r, t, dst, false)
}

// ExpandPreview is Expand for tools that show what a rule would do without a
// real process: a %p or %P whose value is unknown (Task.Process "" or PID <=
// 0) is kept as written instead of failing.
func (l *List) ExpandPreview(r *Rule, t *Task, dst []Resolved) ([]Resolved, error) {
	return l.expand(r, t, dst, true)
}

func (l *List) expand(r *Rule, t *Task, dst []Resolved, preview bool) ([]Resolved, error) {
	n := len(dst)
	x := expander{l: l, t: t, preview: preview}
	for i := range r.Targets {
		tg := &r.Targets[i]
		p := tg.path
		if tg.Templated {
			var err error
			if p, err = x.path(tg); err != nil {
				return dst[:n], fmt.Errorf("%s:%d: destination %s: %w", tg.File, tg.Line, quote(tg.Dest), err)
			}
		}
		if tg.Slice {
			if tg.Templated {
				var err error
				if p, err = expandSlice(p); err != nil {
					return dst[:n], fmt.Errorf("%s:%d: destination %s: %w", tg.File, tg.Line, quote(tg.Dest), err)
				}
			}
			dst = append(dst, Resolved{Path: p, Slice: true, Templated: tg.Templated, Target: tg})
			continue
		}
		if len(tg.Controllers) == 1 && tg.Controllers[0] == "*" && l.controllers != nil {
			for _, c := range l.controllers {
				if strings.HasPrefix(c, "name=") {
					// Named hierarchies (name=systemd) track processes for
					// their owner and hold no resources: "*" means every
					// resource controller; a rule may still name one.
					continue
				}
				dst = append(dst, Resolved{Controller: c, Path: p, Templated: tg.Templated, Target: tg})
			}
			continue
		}
		for _, c := range tg.Controllers {
			dst = append(dst, Resolved{Controller: c, Path: p, Templated: tg.Templated, Target: tg})
		}
	}
	return dst, nil
}

// expander computes each template value at most once per Expand call.
type expander struct {
	l       *List
	t       *Task
	preview bool
	vals    [6]string
	done    [6]bool
	b       strings.Builder
}

func verbSlot(v byte) int { return strings.IndexByte("uUgGpP", v) }

func (x *expander) value(v byte) (string, error) {
	i := verbSlot(v)
	if x.done[i] {
		return x.vals[i], nil
	}
	var s string
	switch v {
	case 'u':
		u, err := x.l.res.UserByID(x.t.UID)
		switch {
		case err == nil:
			s = u.Name
		case errors.Is(err, ErrNotFound):
			s = strconv.FormatUint(uint64(x.t.UID), 10)
		default:
			return "", fmt.Errorf("%%u: %w", err)
		}
	case 'U':
		s = strconv.FormatUint(uint64(x.t.UID), 10)
	case 'g':
		g, err := x.l.res.GroupByID(x.t.GID)
		switch {
		case err == nil:
			s = g.Name
		case errors.Is(err, ErrNotFound):
			s = strconv.FormatUint(uint64(x.t.GID), 10)
		default:
			return "", fmt.Errorf("%%g: %w", err)
		}
	case 'G':
		s = strconv.FormatUint(uint64(x.t.GID), 10)
	case 'p':
		switch {
		case x.t.Process != "":
			s = baseName(x.t.Process)
		case x.preview:
			s = "%p"
		default:
			return "", errors.New("%p: process name unknown")
		}
	case 'P':
		switch {
		case x.t.PID > 0:
			s = strconv.Itoa(x.t.PID)
		case x.preview:
			s = "%P"
		default:
			return "", errors.New("%P: no pid")
		}
	}
	if s == "" {
		return "", fmt.Errorf("%%%c expands to an empty name", v)
	}
	if strings.ContainsAny(s, "/\x00") {
		return "", fmt.Errorf("%%%c expands to %s, which is not a cgroup name", v, quote(s))
	}
	x.vals[i], x.done[i] = s, true
	return s, nil
}

func (x *expander) path(tg *Target) (string, error) {
	x.b.Reset()
	for i, c := range tg.comps {
		if i > 0 {
			x.b.WriteByte('/')
		}
		start := x.b.Len()
		for _, p := range c {
			if p.verb == 0 {
				x.b.WriteString(p.lit)
				continue
			}
			v, err := x.value(p.verb)
			if err != nil {
				return "", err
			}
			if tg.Slice {
				// A unit name: a dash in a value would nest slices.
				v = unitname.Escape(v)
			}
			x.b.WriteString(v)
		}
		// Literal "." and ".." components were refused at parse time; a
		// template can still produce one (a process named ".."), or a name
		// longer than the kernel takes (a long LDAP user name).
		comp := x.b.String()[start:]
		switch {
		case comp == "." || comp == "..":
			return "", fmt.Errorf("expands to a %q component", comp)
		case len(comp) > nameMax:
			return "", fmt.Errorf("expands to a component of %d bytes, %s: name too long (NAME_MAX is %d)", len(comp), quote(comp), nameMax)
		}
	}
	if x.b.Len() >= pathMax {
		return "", fmt.Errorf("expands to %d bytes: name too long (PATH_MAX is %d)", x.b.Len(), pathMax)
	}
	return x.b.String(), nil
}
