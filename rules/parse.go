package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Parse parses one file's bytes into a List. It is pure apart from
// opt.Resolver look-ups; file is only used in diagnostics.
//
// Decisions beyond the issue text, so they are written down once:
//   - A "%" line at the top of a file continues nothing and is an error, even
//     when an earlier file ended with a rule: files are read independently.
//   - A "%" line after a rule whose user or group does not exist is skipped
//     silently; its syntax errors are still reported, so that a file
//     validates the same way on every machine. The warnings of skipped lines
//     (unknown controllers, templates) are not reported: only the skip is.
//   - Options on a "%" line are ignored with a warning: libcgroup only ever
//     looks at the options of the rule line.
//   - "*" among other controller names ("cpu,*") means every controller,
//     with a warning; a repeated name is kept once, with a warning.
//   - A target whose controllers are all unavailable is dropped with a
//     warning, but the rule stays: it still wins the match for its tasks,
//     which are then left alone rather than falling through to a later rule.
//   - "user:" (empty process) and an empty user or group name are errors.
//   - A line containing a NUL byte is an error.
//   - A resolver error other than ErrNotFound (a failing LDAP server) is an
//     error: silently skipping the rule would change where tasks go.
//   - Empty items in the controller list ("cpu,,memory", "cpu,") and in the
//     options ("ignore,") are skipped with a warning, as libcgroup's strtok
//     skips them; a list with no item at all (",") is an error.
//   - A UTF-8 byte-order mark at the start of a file is skipped with a
//     warning (elsewhere it is text, as libcgroup reads it).
//   - A destination field of PATH_MAX (4096) bytes or more, or with a
//     component longer than NAME_MAX (255), is an error ("name too long"):
//     the kernel would refuse it at every move. Expand checks the expanded
//     templates the same way.
//   - Messages quote line material cut to 60 bytes ("..." marks the cut),
//     and no message exceeds maxMsg: a field can be megabytes long.
func Parse(file string, data []byte, opt Options) (*List, Diagnostics, error) {
	b, err := newBuilder(opt)
	if err != nil {
		return fail(file, err)
	}
	b.parseFile(file, data)
	return b.finish()
}

// builder accumulates the rules of one load, across files.
type builder struct {
	opt    Options
	avail  map[string]bool // nil: controller names are not checked
	rules  []Rule
	diags  Diagnostics
	nerr   int
	fields []field // scratch for lexLine

	// Per-load caches over the resolver and the controller lists: the same
	// names and lists repeat on most lines of a large file.
	users  map[string]userRes
	groups map[string]groupRes
	ctrls  map[string]ctrlRes
}

type userRes struct {
	uid uint32
	err error
}

type groupRes struct {
	gid     uint32
	members []uint32
	err     error
}

type ctrlRes struct {
	written, eff []string
	warns        []string
	err          error
}

var errNoResolver = errors.New("rules: Options.Resolver is nil")

// fail reports an error that stops a load before any line is read.
func fail(file string, err error) (*List, Diagnostics, error) {
	ds := Diagnostics{{File: file, Severity: Error, Msg: err.Error(), Err: err}}
	return nil, ds, &LoadError{Diags: ds}
}

func newBuilder(opt Options) (*builder, error) {
	if opt.Resolver == nil {
		return nil, errNoResolver
	}
	b := &builder{
		opt:    opt,
		users:  make(map[string]userRes),
		groups: make(map[string]groupRes),
		ctrls:  make(map[string]ctrlRes),
	}
	if opt.Controllers != nil {
		b.avail = make(map[string]bool, len(opt.Controllers))
		for _, c := range opt.Controllers {
			b.avail[c] = true
		}
	}
	return b, nil
}

// maxMsg bounds a diagnostic's message. Messages quote line material
// through quote, which cuts it short; this is the guarantee behind that.
const maxMsg = 1024

const utf8BOM = "\uFEFF"

func (b *builder) add(file string, line int, sev Severity, msg string, err error) {
	if len(msg) > maxMsg {
		p := prefix(msg, maxMsg)
		msg = p + fmt.Sprintf("... [%d more bytes]", len(msg)-len(p))
	}
	b.diags = append(b.diags, Diagnostic{File: file, Line: line, Severity: sev, Msg: msg, Err: err})
	if sev == Error {
		b.nerr++
	}
}

// state of the "%" continuation while reading a file.
type contState int

const (
	contNone    contState = iota // no rule above: "%" is an error
	contOK                       // "%" adds to b.rules[len-1]
	contSkipped                  // rule above skipped (unknown account): "%" skipped too
	contBroken                   // rule above had errors: "%" only checked for its own
)

// lineParts is what one rule line says, before account resolution.
type lineParts struct {
	who, proc   string
	hasProc     bool
	ctrl        ctrlRes
	dest        parsedDest
	ignore      bool
	ignoreRT    bool
	hasOptions  bool
	slice       bool // the destination names a systemd slice
	errs, warns []string
}

func (b *builder) parseFile(file string, data []byte) {
	// One copy of the file: every string of the resulting rules (text, who,
	// destination...) is a substring of it, which keeps a 10,000-rule list to
	// a few allocations per rule.
	s := string(data)
	if strings.HasPrefix(s, utf8BOM) {
		// Editors on Windows write one; libcgroup would read it as part of
		// the first user name.
		b.add(file, 1, Warning, "UTF-8 byte-order mark at the start of the file, skipped", nil)
		s = s[len(utf8BOM):]
	}
	state := contNone
	// At most one rule per line: size the list once rather than let append
	// copy a growing slice of large Rule values (that copying dominated a
	// cold load of 10,000 rules).
	if need := len(b.rules) + strings.Count(s, "\n") + 1; cap(b.rules) < need {
		b.rules = append(make([]Rule, 0, need), b.rules...)
	}
	for lineNo := 1; len(s) > 0; lineNo++ {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		if strings.IndexByte(line, 0) >= 0 {
			b.add(file, lineNo, Error, "line contains a NUL byte", nil)
			state = contBroken
			continue
		}
		fields, text, err := lexLine(line, b.fields[:0])
		b.fields = fields
		if err != nil {
			b.add(file, lineNo, Error, err.Error(), nil)
			state = contBroken
			continue
		}
		if len(fields) == 0 {
			continue
		}
		lp := b.parseLine(fields, text)
		if lp.who == "%" {
			if state == contNone {
				lp.errs = append(lp.errs, "\"%\" line with no rule above it in this file: "+quote(text))
			}
			for _, e := range lp.errs {
				b.add(file, lineNo, Error, e, nil)
			}
			if len(lp.errs) > 0 || state != contOK {
				continue
			}
			if r := &b.rules[len(b.rules)-1]; lp.slice || r.hasSlice() {
				b.add(file, lineNo, Error, "a rule whose destination is a systemd slice has no other target (a task is in one unit): "+quote(text), nil)
				continue
			}
			if lp.hasOptions {
				lp.warns = append(lp.warns, "options on a \"%\" line are ignored (only the rule line's options count): "+quote(text))
			}
			b.emitWarns(file, lineNo, lp.warns)
			b.addTarget(&b.rules[len(b.rules)-1], file, lineNo, &lp)
			continue
		}
		if len(lp.errs) > 0 {
			for _, e := range lp.errs {
				b.add(file, lineNo, Error, e, nil)
			}
			state = contBroken
			continue
		}
		r := Rule{
			Index: len(b.rules), File: file, Line: lineNo, Text: text,
			Who: lp.who, Process: lp.proc, Ignore: lp.ignore, IgnoreRT: lp.ignoreRT,
			proc: newProcTest(lp.proc),
		}
		ok, err := b.resolveWho(&r)
		if err != nil {
			if ok {
				// Not found: the rule does not apply on this machine.
				b.add(file, lineNo, Warning, err.Error(), nil)
				state = contSkipped
			} else {
				b.add(file, lineNo, Error, err.Error(), err)
				state = contBroken
			}
			continue
		}
		b.emitWarns(file, lineNo, lp.warns)
		b.rules = append(b.rules, r)
		b.addTarget(&b.rules[len(b.rules)-1], file, lineNo, &lp)
		state = contOK
	}
}

func (b *builder) emitWarns(file string, line int, warns []string) {
	for _, w := range warns {
		b.add(file, line, Warning, w, nil)
	}
}

// parseLine checks the fields of one non-empty line. Errors and warnings are
// collected rather than reported so that the caller can decide, once it
// knows whether the rule is skipped, which ones to show.
func (b *builder) parseLine(fields []field, text string) lineParts {
	var lp lineParts
	if len(fields) < 3 || len(fields) > maxFields {
		lp.errs = append(lp.errs, fmt.Sprintf("expected 3 or 4 fields (who[:process] controllers destination [options]), found %d: %s", len(fields), quote(text)))
		// Still say whether it was a "%" line, so that "%" bookkeeping
		// does not report a second, misleading error.
		if fields[0].text == "%" {
			lp.who = "%"
		}
		return lp
	}
	who := fields[whoField].text
	if i := strings.IndexByte(who, ':'); i >= 0 {
		lp.who, lp.proc, lp.hasProc = who[:i], who[i+1:], true
	} else {
		lp.who = who
	}
	switch {
	case lp.who == "%":
		if lp.hasProc {
			lp.errs = append(lp.errs, "a \"%\" line cannot name a process (it continues the rule above): "+quote(who))
		}
	case lp.who == "" && lp.hasProc:
		lp.errs = append(lp.errs, "user name missing before \":\": "+quote(who))
	case lp.who == "":
		lp.errs = append(lp.errs, "empty user name")
	case lp.who == "@":
		lp.errs = append(lp.errs, "group name missing after \"@\": "+quote(who))
	}
	if lp.hasProc && lp.proc == "" && lp.who != "%" {
		lp.errs = append(lp.errs, "process name missing after \":\": "+quote(who))
	}

	lp.ctrl = b.controllers(fields[ctrlField].text)
	if lp.ctrl.err != nil {
		lp.errs = append(lp.errs, lp.ctrl.err.Error())
	}
	lp.warns = append(lp.warns, lp.ctrl.warns...)

	d, err := parseDest(fields[destField].text)
	if err != nil {
		lp.errs = append(lp.errs, err.Error())
	} else if d.isSlice() {
		lp.slice = true
		p, errs := checkSlice(fields[destField].text, &d, lp.ctrl, b.opt.Systemd, b.opt.SystemdOff)
		lp.errs = append(lp.errs, errs...)
		if p != "" {
			d.path = p
		}
	}
	lp.dest = d
	lp.warns = append(lp.warns, d.warnings...)

	if len(fields) > optField {
		lp.hasOptions = true
		opts := fields[optField].text
		empty, some := false, false
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "ignore":
				lp.ignore = true
			case "ignore_rt":
				lp.ignoreRT = true
			case "":
				empty = true
				continue
			default:
				lp.errs = append(lp.errs, fmt.Sprintf("unknown option %s (known: ignore, ignore_rt)", quote(o)))
			}
			some = true
		}
		switch {
		case !some:
			lp.errs = append(lp.errs, "no option in "+quote(opts))
		case empty:
			// libcgroup splits with strtok, which skips empty items.
			lp.warns = append(lp.warns, "empty item in options "+quote(opts)+" ignored")
		}
	}
	return lp
}

// controllers parses a controller list, through the per-load cache.
func (b *builder) controllers(raw string) ctrlRes {
	if c, ok := b.ctrls[raw]; ok {
		return c
	}
	c := parseControllers(raw, b.avail)
	b.ctrls[raw] = c
	return c
}

var allControllers = []string{"*"}

// parseControllers splits a controller list and checks its names against
// avail (nil: no check). written keeps every valid name (for Format), eff
// only the available ones.
func parseControllers(raw string, avail map[string]bool) ctrlRes {
	var c ctrlRes
	star := false
	names := make([]string, 0, strings.Count(raw, ",")+1)
	empty := false
	for _, n := range strings.Split(raw, ",") {
		switch {
		case n == "":
			empty = true
			continue
		case n == "*":
			star = true
			continue
		case !validController(n):
			c.err = fmt.Errorf("invalid controller name %s (letters, digits, \"_\", \"-\", \".\" and \"=\" only)", quote(n))
			return c
		}
		dup := false
		for _, m := range names {
			if m == n {
				dup = true
				break
			}
		}
		if dup {
			c.warns = append(c.warns, fmt.Sprintf("controller %s listed twice in %s", quote(n), quote(raw)))
			continue
		}
		names = append(names, n)
	}
	if !star && len(names) == 0 {
		c.err = errors.New("no controller name in " + quote(raw))
		return c
	}
	if empty {
		// libcgroup splits with strtok, which skips empty items.
		c.warns = append(c.warns, "empty item in controller list "+quote(raw)+" ignored")
	}
	if star {
		if len(names) > 0 {
			c.warns = append(c.warns, fmt.Sprintf("\"*\" already means every controller; other names in %s are redundant", quote(raw)))
		}
		c.written, c.eff = allControllers, allControllers
		return c
	}
	c.written = names
	if avail == nil {
		c.eff = names
		return c
	}
	// Share the written slice when every name is available (the usual
	// case); build a separate one only when something is dropped.
	dropped := false
	for _, n := range names {
		if !avail[n] {
			dropped = true
			c.warns = append(c.warns, fmt.Sprintf("controller %s is not available on this machine, dropped from this target", quote(n)))
		}
	}
	eff := names
	if dropped {
		eff = make([]string, 0, len(names)-1)
		for _, n := range names {
			if avail[n] {
				eff = append(eff, n)
			}
		}
	}
	c.eff = eff
	if len(eff) == 0 {
		c.warns = append(c.warns, fmt.Sprintf("no available controller left in %s, target dropped", quote(raw)))
	}
	return c
}

func validController(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '=') {
			return false
		}
	}
	return true
}

// addTarget appends the target of line lp to r.
func (b *builder) addTarget(r *Rule, file string, line int, lp *lineParts) {
	t := Target{
		Controllers: lp.ctrl.eff,
		Dest:        lp.dest.dest,
		Templated:   lp.dest.templated,
		Slice:       lp.slice,
		File:        file,
		Line:        line,
		path:        lp.dest.path,
		comps:       lp.dest.comps,
	}
	differs := len(lp.ctrl.eff) != len(lp.ctrl.written)
	if differs && r.written == nil {
		r.written = append(make([]Target, 0, len(r.Targets)+1), r.Targets...)
	}
	if r.written != nil {
		w := t
		w.Controllers = lp.ctrl.written
		r.written = append(r.written, w)
	}
	if len(t.Controllers) > 0 {
		r.Targets = append(r.Targets, t)
	}
}

// whoKind says how a rule's who field matches.
type whoKind uint8

const (
	whoAny whoKind = iota
	whoUser
	whoGroup
)

// resolveWho resolves r.Who to ids. ok with an error means "not found": the
// rule is to be skipped with the error as a warning.
func (b *builder) resolveWho(r *Rule) (ok bool, err error) {
	switch {
	case r.Who == "*":
		r.kind = whoAny
		return true, nil
	case r.Who[0] == '@':
		g, err := b.group(r.Who[1:])
		if err != nil {
			return errors.Is(err, ErrNotFound), err
		}
		r.kind, r.id, r.members = whoGroup, g.gid, g.members
		return true, nil
	}
	uid, err := b.user(r.Who)
	if err != nil {
		return errors.Is(err, ErrNotFound), err
	}
	r.kind, r.id = whoUser, uid
	return true, nil
}

// skipError says that a rule names an account that does not exist here. Its
// message is the warning; it unwraps to the resolver's ErrNotFound.
type skipError struct {
	msg   string
	cause error
}

func (e *skipError) Error() string { return e.msg }
func (e *skipError) Unwrap() error { return e.cause }

func (b *builder) user(name string) (uint32, error) {
	if u, ok := b.users[name]; ok {
		return u.uid, u.err
	}
	u, err := b.opt.Resolver.UserByName(name)
	res := userRes{uid: u.UID}
	switch {
	case errors.Is(err, ErrNotFound):
		res.err = &skipError{msg: fmt.Sprintf("user %s not found, rule skipped", quote(name)), cause: err}
	case err != nil:
		res.err = fmt.Errorf("cannot look up user %s: %w", quote(name), err)
	}
	b.users[name] = res
	return res.uid, res.err
}

func (b *builder) group(name string) (groupRes, error) {
	if g, ok := b.groups[name]; ok {
		return g, g.err
	}
	g, err := b.opt.Resolver.GroupByName(name)
	res := groupRes{gid: g.GID}
	switch {
	case errors.Is(err, ErrNotFound):
		res.err = &skipError{msg: fmt.Sprintf("group %s not found, rule skipped", quote(name)), cause: err}
	case err != nil:
		res.err = fmt.Errorf("cannot look up group %s: %w", quote(name), err)
	default:
		// libcgroup compares the task's user name with the member names;
		// resolving the names once here turns that into an index by uid.
		// A member without an account can never be a task's user, so it is
		// dropped without a word (stale entries are common in /etc/group).
		for _, m := range g.Members {
			uid, err := b.user(m)
			if err == nil {
				res.members = append(res.members, uid)
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				res.err = fmt.Errorf("cannot look up member %s of group %s: %w", quote(m), quote(name), errors.Unwrap(err))
				break
			}
		}
	}
	b.groups[name] = res
	return res, res.err
}
