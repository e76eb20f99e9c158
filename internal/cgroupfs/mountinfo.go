package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// errMalformed is wrapped by parser errors.
var errMalformed = errors.New("malformed mountinfo")

// mount is one line of /proc/PID/mountinfo (see proc(5)).
type mount struct {
	ID, Parent int
	Root       string // field 4: the mount's root within its filesystem
	Mountpoint string // field 5, unescaped
	FSType     string
	SuperOpts  string // last field, raw
}

// parseMountinfo parses mountinfo. Every mount is returned (not only the
// cgroup ones) because telling whether a cgroup mount is hidden by a later
// mount needs the others too.
func parseMountinfo(r io.Reader) ([]mount, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out []mount
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		lineNo++
		if len(line) == 0 {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", lineNo, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseMountLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Fields are separated by single spaces (blanks inside paths are escaped
// as \040); the optional fields end at a lone "-".
func parseMountLine(line []byte) (mount, error) {
	var m mount
	fields := make([][]byte, 0, 12)
	for _, f := range bytes.Split(line, []byte{' '}) {
		if len(f) > 0 {
			fields = append(fields, f)
		}
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if len(fields[i]) == 1 && fields[i][0] == '-' {
			sep = i
			break
		}
	}
	if len(fields) < 6 || sep < 0 || len(fields) < sep+3 {
		return m, fmt.Errorf("%q: %w", line, errMalformed)
	}
	var err error
	if m.ID, err = strconv.Atoi(string(fields[0])); err != nil {
		return m, fmt.Errorf("mount id %q: %w", fields[0], errMalformed)
	}
	if m.Parent, err = strconv.Atoi(string(fields[1])); err != nil {
		return m, fmt.Errorf("parent id %q: %w", fields[1], errMalformed)
	}
	m.Root = unescape(fields[3])
	m.Mountpoint = unescape(fields[4])
	m.FSType = string(fields[sep+1])
	if len(fields) > sep+3 {
		m.SuperOpts = string(fields[sep+3])
	}
	return m, nil
}

// unescape decodes the kernel's octal escapes (\040 space, \011 tab,
// \012 newline, \134 backslash) in mountinfo paths.
func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && isOctal(b[i+1]) && isOctal(b[i+2]) && isOctal(b[i+3]) {
			v := (b[i+1]-'0')<<6 | (b[i+2]-'0')<<3 | (b[i+3] - '0')
			out = append(out, v)
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return string(out)
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// v1Controllers extracts the controller names (and "name=X") from a v1
// mount's super options, dropping the mount options that are not
// controllers. The kernel prints controllers first, then the options,
// then name= (cgroup1_show_options); the order of controllers is kept.
func v1Controllers(superOpts string) []string {
	var out []string
	for _, o := range strings.Split(superOpts, ",") {
		switch o {
		case "", "rw", "ro", "noprefix", "clone_children", "xattr", "none",
			"cpuset_v2_mode", "favordynmods", "nofavordynmods", "all":
			continue
		case Unified:
			// No v1 controller has this name, which rules use for the
			// cgroup2 hierarchy: a mount claiming it would shadow it.
			continue
		}
		if strings.Contains(o, "=") && !strings.HasPrefix(o, "name=") {
			continue // release_agent=..., future key=value options
		}
		out = append(out, o)
	}
	return out
}

// visibleMounts drops the mounts hidden by a later mount on the same
// mountpoint (or on one of their ancestors' mountpoints): those are
// still listed in mountinfo but cannot be reached by path.
func visibleMounts(ms []mount) []mount {
	byID := make(map[int]int, len(ms))
	for i, m := range ms {
		byID[m.ID] = i
	}
	covered := make(map[int]bool)
	for _, m := range ms {
		if pi, ok := byID[m.Parent]; ok && ms[pi].Mountpoint == m.Mountpoint && m.ID != m.Parent {
			covered[m.Parent] = true
		}
	}
	// visible(M) = M is not covered and its parent chain is reachable;
	// a mount stacked on its parent (same mountpoint) hides that parent
	// but is reached through the parent's own parent.
	memo := make(map[int]bool, len(ms))
	var visible func(i, depth int) bool
	var reach func(i, depth int) bool
	visible = func(i, depth int) bool {
		if v, ok := memo[ms[i].ID]; ok {
			return v
		}
		v := !covered[ms[i].ID] && reach(i, depth)
		memo[ms[i].ID] = v
		return v
	}
	reach = func(i, depth int) bool {
		pi, ok := byID[ms[i].Parent]
		if !ok || pi == i || depth > len(ms) {
			return true // the root mount, or parent outside our view (chroot); depth stops cycles
		}
		if ms[pi].Mountpoint == ms[i].Mountpoint {
			return reach(pi, depth+1)
		}
		return visible(pi, depth+1)
	}
	var out []mount
	for _, m := range ms {
		if visible(byID[m.ID], 0) {
			out = append(out, m)
		}
	}
	return out
}
