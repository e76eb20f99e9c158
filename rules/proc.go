package rules

import "strings"

type procKind uint8

const (
	procNone   procKind = iota // the rule names no process
	procPrefix                 // "ssh*": prefix of the base name or of the full procname
	procAbs                    // "/usr/bin/perl": the full procname
	procBase                   // "sleep": the base name, or the full procname
)

// procTest is a rule's process condition, precompiled.
type procTest struct {
	pat  string
	kind procKind
}

func newProcTest(p string) procTest {
	switch {
	case p == "":
		return procTest{}
	case strings.HasSuffix(p, "*"):
		return procTest{pat: p[:len(p)-1], kind: procPrefix}
	case p[0] == '/':
		return procTest{pat: p, kind: procAbs}
	}
	return procTest{pat: p, kind: procBase}
}

// match reports whether procname passes the test. An unknown procname ("")
// never passes a process test: the rule cannot be proven to apply.
func (pt procTest) match(procname string) bool {
	if pt.kind == procNone {
		return true
	}
	if procname == "" {
		return false
	}
	switch pt.kind {
	case procPrefix:
		return strings.HasPrefix(procname, pt.pat) || strings.HasPrefix(baseName(procname), pt.pat)
	case procAbs:
		return procname == pt.pat
	default:
		return procname == pt.pat || baseName(procname) == pt.pat
	}
}

// baseName is path.Base without its allocations and special cases: a
// procname is either a path to an executable or a comm, never ending in "/".
func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
