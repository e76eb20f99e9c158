package rules

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// field is one blank-separated field of a rule line.
type field struct {
	// text is the field without its surrounding quotes. In the destination,
	// backslash escapes are still in it (dest.go interprets them).
	text   string
	quoted bool
}

// The fields of a rule line, by position.
const (
	whoField = iota
	ctrlField
	destField
	optField
	maxFields
)

// isBlank is the field separator. libcgroup splits with sscanf("%s"), that is
// on any isspace(); a stray \r in the middle of a line counts too.
func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

func trimBlank(s string) string {
	for len(s) > 0 && isBlank(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isBlank(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// lexLine splits one line (without its newline) into fields, appending them
// to fields. content is the line without its comment, trimmed: the rule
// "text" shown to people. Blank and comment-only lines give no fields.
//
// Quoting is allowed around the first field and the destination only, and a
// quote must wrap the whole field: a quote inside a word is almost certainly
// a typo, and refusing it keeps Format's quoting unambiguous. Backslash is an
// escape only inside the destination (so "\ " "\#" and "\"" can be written
// there); elsewhere it is an ordinary character.
func lexLine(line string, fields []field) (_ []field, content string, err error) {
	n := len(line)
	end := n
	i := 0
	for {
		for i < n && isBlank(line[i]) {
			i++
		}
		if i >= n {
			break
		}
		if line[i] == '#' {
			end = i
			break
		}
		idx := len(fields)
		escapes := idx == destField
		if line[i] == '"' {
			if idx != whoField && idx != destField {
				return fields, "", errors.New("quotes are allowed only around the first field and the destination: " + quote(line[i:]))
			}
			j := i + 1
			for j < n && line[j] != '"' {
				if escapes && line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= n {
				return fields, "", errors.New("unterminated quote: " + quote(line[i:]))
			}
			fields = append(fields, field{text: line[i+1 : j], quoted: true})
			j++
			if j < n && !isBlank(line[j]) && line[j] != '#' {
				return fields, "", errors.New("text right after a closing quote: " + quote(line[i:]))
			}
			i = j
			continue
		}
		start := i
		for i < n && !isBlank(line[i]) && line[i] != '#' {
			switch line[i] {
			case '"':
				return fields, "", errors.New("quote inside a field (quote the whole field): " + quote(line[start:]))
			case '\\':
				if escapes {
					if i+1 >= n {
						return fields, "", errors.New("lone backslash at the end of the destination: " + quote(line[start:]))
					}
					i++
				}
			}
			i++
		}
		fields = append(fields, field{text: line[start:i]})
	}
	return fields, trimBlank(line[:end]), nil
}

// cut shortens s for quoting in a message, so that a long line does not
// drown the diagnostic: a field may be megabytes long, a message must not.
// "..." marks the cut.
func cut(s string) string {
	const limit = 60
	if len(s) <= limit {
		return s
	}
	return prefix(s, limit) + "..."
}

// prefix is the first n bytes of s at most, cut at a character boundary.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// quote is strconv.Quote of cut(s): how messages show text from a line.
func quote(s string) string { return strconv.Quote(cut(s)) }
