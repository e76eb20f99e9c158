package rules

import (
	"bytes"
	"strings"
)

// Format writes the list back out as cgrules.conf text: one rule line per
// rule followed by its "%" lines, fields separated by tabs, quoted where
// needed, such that Parse(Format(l)) with the same Options yields an
// equivalent list (same who, process, targets and options, in order).
// Comments, blank lines and rules skipped at load are not kept. Controllers
// that were not available at load are written as they were, so a list
// loaded on one machine does not lose targets when written out.
func (l *List) Format() []byte {
	var b bytes.Buffer
	for _, r := range l.rules {
		targets := r.Targets
		if r.written != nil {
			targets = r.written
		}
		first := r.Who
		if r.Process != "" {
			first += ":" + r.Process
		}
		if len(targets) == 0 {
			// Cannot happen for a parsed rule (its own line has a target),
			// but a rule must not vanish from the output.
			continue
		}
		for i := range targets {
			if i == 0 {
				writeWho(&b, first)
			} else {
				b.WriteByte('%')
			}
			b.WriteByte('\t')
			b.WriteString(strings.Join(targets[i].Controllers, ","))
			b.WriteByte('\t')
			writeDest(&b, targets[i].Dest)
			if i == 0 && (r.Ignore || r.IgnoreRT) {
				b.WriteByte('\t')
				switch {
				case r.Ignore && r.IgnoreRT:
					b.WriteString("ignore,ignore_rt")
				case r.Ignore:
					b.WriteString("ignore")
				default:
					b.WriteString("ignore_rt")
				}
			}
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// needsQuotes: the lexer would split or cut the field here.
func needsQuotes(s string) bool {
	for i := 0; i < len(s); i++ {
		if isBlank(s[i]) || s[i] == '#' {
			return true
		}
	}
	return false
}

// writeWho writes the first field. It never contains a quote (the lexer
// refuses one) and backslashes are literal there, so quoting is enough.
func writeWho(b *bytes.Buffer, s string) {
	if needsQuotes(s) {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	b.WriteString(s)
}

// writeDest writes a canonical destination. Backslash and "%" are already
// escaped in it; a quote needs a backslash in front, and blanks or "#" need
// the field quoted.
func writeDest(b *bytes.Buffer, d string) {
	if d == "" {
		b.WriteByte('/')
		return
	}
	q := needsQuotes(d)
	if q {
		b.WriteByte('"')
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(d[i])
	}
	if q {
		b.WriteByte('"')
	}
}
