package rules

import (
	"strconv"
	"strings"
)

// Severity says whether a Diagnostic fails the load.
type Severity int

const (
	// Warning: the load goes on; the affected element is dropped or kept as
	// documented by the message.
	Warning Severity = iota
	// Error: the whole load fails; the caller keeps its previous rules.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diagnostic is one problem found while loading, tied to a file and line
// (Line 0 when the problem is with the file as a whole).
type Diagnostic struct {
	File     string
	Line     int
	Severity Severity
	Msg      string
	// Err is the underlying cause when there is one (an I/O or resolver
	// error), so that LoadError can be inspected with errors.Is/As.
	Err error
}

// String formats d as "FILE:LINE: MESSAGE", the form compilers use, so that
// editors can jump to it. Warnings say so in front of the message.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.Grow(len(d.File) + len(d.Msg) + 20)
	b.WriteString(d.File)
	if d.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(d.Line))
	}
	b.WriteString(": ")
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Diagnostics is the list of problems of one load, in file and line order.
type Diagnostics []Diagnostic

// Errors returns the diagnostics that fail the load.
func (ds Diagnostics) Errors() Diagnostics { return ds.filter(Error) }

// Warnings returns the diagnostics that do not fail the load.
func (ds Diagnostics) Warnings() Diagnostics { return ds.filter(Warning) }

func (ds Diagnostics) filter(s Severity) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// LoadError is returned by Load and Parse when at least one error diagnostic
// exists. No partial list is returned with it: a load either succeeds as a
// whole or not at all.
type LoadError struct {
	Diags Diagnostics // the error diagnostics only
}

// Error lists every error diagnostic, one per line.
func (e *LoadError) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// Unwrap exposes the underlying causes (for example fs.ErrNotExist for a
// missing main file) to errors.Is and errors.As.
func (e *LoadError) Unwrap() []error {
	var errs []error
	for _, d := range e.Diags {
		if d.Err != nil {
			errs = append(errs, d.Err)
		}
	}
	return errs
}
