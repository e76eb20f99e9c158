package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// errMalformed is wrapped by every parser error, so callers (and the fuzz
// tests) can tell "unexpected content" from I/O errors.
var errMalformed = errors.New("malformed")

// status is what Task needs from /proc/PID/status.
type status struct {
	Name string // comm, unescaped
	Tgid int
	PPid int
	Uid  [4]uint32 // real, effective, saved, filesystem
	Gid  [4]uint32
	// Kthread is the "Kthread:" field (Linux 6.x): 1 for a kernel thread,
	// 0 otherwise, -1 when the kernel does not report it.
	Kthread int
}

const (
	seenName = 1 << iota
	seenTgid
	seenPPid
	seenUid
	seenGid
	seenKthread
	seenAll = seenName | seenTgid | seenPPid | seenUid | seenGid
)

// parseStatus parses /proc/PID/status.
func parseStatus(r io.Reader) (status, error) {
	b, err := readerBytes(r)
	if err != nil {
		return status{}, err
	}
	return parseStatusBytes(b, nil)
}

// parseStatusBytes is the core of parseStatus. Only the Name string is
// allocated, and not even that when sc (optional) has seen it before.
func parseStatusBytes(b []byte, sc *scratch) (status, error) {
	st := status{Kthread: -1}
	seen := 0
	for len(b) > 0 && seen != seenAll|seenKthread {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		key, val := line[:colon], line[colon+1:]
		// Values are separated from the key by a tab; Name is the only
		// field where leading blanks could be content (comm may start
		// with a space), so trim exactly one tab there.
		switch string(key) {
		case "Name":
			if len(val) > 0 && val[0] == '\t' {
				val = val[1:]
			}
			st.Name = unescapeComm(val, sc)
			seen |= seenName
		case "Tgid":
			v, ok := atoiField(val)
			if !ok {
				return st, fmt.Errorf("status: Tgid %q: %w", val, errMalformed)
			}
			st.Tgid = v
			seen |= seenTgid
		case "PPid":
			v, ok := atoiField(val)
			if !ok {
				return st, fmt.Errorf("status: PPid %q: %w", val, errMalformed)
			}
			st.PPid = v
			seen |= seenPPid
		case "Uid":
			if !parseIDs(val, &st.Uid) {
				return st, fmt.Errorf("status: Uid %q: %w", val, errMalformed)
			}
			seen |= seenUid
		case "Gid":
			if !parseIDs(val, &st.Gid) {
				return st, fmt.Errorf("status: Gid %q: %w", val, errMalformed)
			}
			seen |= seenGid
		case "Kthread":
			switch v, ok := atoiField(val); {
			case ok && (v == 0 || v == 1):
				st.Kthread = v
			default:
				return st, fmt.Errorf("status: Kthread %q: %w", val, errMalformed)
			}
			seen |= seenKthread
		}
	}
	if seen&seenAll != seenAll {
		return st, fmt.Errorf("status: missing fields (have %05b): %w", seen, errMalformed)
	}
	return st, nil
}

// unescapeComm undoes the kernel's escaping of comm in status ("\n" and
// "\\", see proc_task_name), so that Comm compares equal to the base name of
// an executable whose name contains a backslash.
func unescapeComm(v []byte, sc *scratch) string {
	if bytes.IndexByte(v, '\\') < 0 {
		if sc != nil {
			return sc.intern(v)
		}
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			switch v[i+1] {
			case 'n':
				out = append(out, '\n')
				i++
				continue
			case '\\':
				out = append(out, '\\')
				i++
				continue
			}
		}
		out = append(out, c)
	}
	return string(out)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// atoiField parses a non-negative decimal surrounded by blanks.
func atoiField(b []byte) (int, bool) {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isBlank(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	v, ok := atoiBytes(b)
	return int(v), ok
}

// atoiBytes parses a non-negative decimal of at most 19 digits (so it
// cannot overflow int64).
func atoiBytes[T ~string | ~[]byte](b T) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseIDs parses the four blank-separated ids of a Uid:/Gid: line.
func parseIDs(b []byte, out *[4]uint32) bool {
	for i := 0; i < 4; i++ {
		for len(b) > 0 && isBlank(b[0]) {
			b = b[1:]
		}
		j := 0
		for j < len(b) && !isBlank(b[j]) {
			j++
		}
		v, ok := atoiBytes(b[:j])
		if !ok || v > 1<<32-1 {
			return false
		}
		out[i] = uint32(v)
		b = b[j:]
	}
	return true
}

// stat is what Task needs from /proc/PID/stat.
type stat struct {
	PID    int
	State  byte
	PPID   int
	Flags  uint64 // field 9, PF_* flags
	Policy int    // field 41, SCHED_*; -1 when the kernel does not report it
	// StartTime is field 22: when the task started, in clock ticks
	// (USER_HZ) after boot (CLOCK_BOOTTIME). With the pid it names one
	// process for the lifetime of the machine.
	StartTime uint64
}

// pfKthread is PF_KTHREAD from include/linux/sched.h.
const pfKthread = 0x00200000

// Scheduling policies from include/uapi/linux/sched.h.
const (
	schedFIFO = 1
	schedRR   = 2
)

// parseStat parses /proc/PID/stat.
func parseStat(r io.Reader) (stat, error) {
	b, err := readerBytes(r)
	if err != nil {
		return stat{}, err
	}
	return parseStatBytes(b)
}

// parseStatBytes parses /proc/PID/stat without allocating. comm (field 2)
// is in parentheses and may itself contain ')' and blanks, so the fields
// after it are found from the last ')'.
func parseStatBytes(b []byte) (stat, error) {
	st := stat{Policy: -1}
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return st, fmt.Errorf("stat: no comm: %w", errMalformed)
	}
	pid, ok := atoiField(b[:open])
	if !ok {
		return st, fmt.Errorf("stat: pid: %w", errMalformed)
	}
	st.PID = pid
	rest := b[closing+1:]
	field := 3 // the next field's number, as in proc(5)
	for field <= 41 {
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\n') {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		j := 0
		for j < len(rest) && rest[j] != ' ' && rest[j] != '\n' {
			j++
		}
		f := rest[:j]
		rest = rest[j:]
		switch field {
		case 3:
			if len(f) != 1 {
				return st, fmt.Errorf("stat: state %q: %w", f, errMalformed)
			}
			st.State = f[0]
		case 4:
			v, ok := atoiBytes(f)
			if !ok {
				return st, fmt.Errorf("stat: ppid %q: %w", f, errMalformed)
			}
			st.PPID = int(v)
		case 9:
			v, ok := atoiBytes(f)
			if !ok {
				return st, fmt.Errorf("stat: flags %q: %w", f, errMalformed)
			}
			st.Flags = uint64(v)
		case 22:
			v, ok := atoiBytes(f)
			if !ok {
				return st, fmt.Errorf("stat: starttime %q: %w", f, errMalformed)
			}
			st.StartTime = uint64(v)
		case 41:
			v, ok := atoiBytes(f)
			if !ok {
				return st, fmt.Errorf("stat: policy %q: %w", f, errMalformed)
			}
			st.Policy = int(v)
		}
		field++
	}
	if field <= 9 {
		return st, fmt.Errorf("stat: only %d fields: %w", field-1, errMalformed)
	}
	return st, nil
}

// CgroupLine is one line of /proc/PID/cgroup: "ID:controllers:path".
// The cgroup v2 line is "0::path": ID 0 and no controllers. Named v1
// hierarchies appear as a "name=X" controller. Path is relative to the
// reader's cgroup namespace; it starts with "/.." when the task is outside
// that namespace.
type CgroupLine struct {
	ID          int
	Controllers []string
	Path        string
}

// parseCgroup parses /proc/PID/cgroup.
func parseCgroup(r io.Reader) ([]CgroupLine, error) {
	b, err := readerBytes(r)
	if err != nil {
		return nil, err
	}
	return parseCgroupBytes(b)
}

// parseCgroupBytes allocates three times whatever the content: one string
// holding the whole file (every Path and controller name is a substring of
// it), one []CgroupLine and one []string backing all Controllers slices.
// The path is everything after the second colon, since cgroup names may
// contain colons.
func parseCgroupBytes(b []byte) ([]CgroupLine, error) {
	if len(b) == 0 {
		return nil, nil
	}
	s := string(b)
	nLines := strings.Count(s, "\n") + 1
	nNames := strings.Count(s, ",") + nLines
	lines := make([]CgroupLine, 0, nLines)
	names := make([]string, 0, nNames)
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		if line == "" {
			continue
		}
		c1 := strings.IndexByte(line, ':')
		if c1 < 0 {
			return nil, fmt.Errorf("cgroup: line %q: %w", line, errMalformed)
		}
		c2 := strings.IndexByte(line[c1+1:], ':')
		if c2 < 0 {
			return nil, fmt.Errorf("cgroup: line %q: %w", line, errMalformed)
		}
		c2 += c1 + 1
		id, ok := atoiBytes(line[:c1])
		if !ok || id > 1<<31-1 {
			return nil, fmt.Errorf("cgroup: id in %q: %w", line, errMalformed)
		}
		cl := CgroupLine{ID: int(id), Path: line[c2+1:]}
		if ctrls := line[c1+1 : c2]; ctrls != "" {
			start := len(names)
			for {
				i := strings.IndexByte(ctrls, ',')
				if i < 0 {
					names = append(names, ctrls)
					break
				}
				names = append(names, ctrls[:i])
				ctrls = ctrls[i+1:]
			}
			cl.Controllers = names[start:len(names):len(names)]
		}
		lines = append(lines, cl)
	}
	return lines, nil
}
