package rules

import (
	"strconv"
	"strings"
)

// findGroup returns the first entry of an /etc/group file (name:passwd:gid:
// members) for which want is true. Malformed lines are skipped, as glibc's
// files module does. Used when NSS is not available (no cgo).
func findGroup(data []byte, want func(*Group) bool) (Group, bool) {
	s := string(data)
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		g, ok := parseGroupLine(line)
		if ok && want(&g) {
			return g, true
		}
	}
	return Group{}, false
}

func parseGroupLine(line string) (Group, bool) {
	f := strings.Split(line, ":")
	if len(f) != 4 || f[0] == "" || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
		return Group{}, false
	}
	gid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return Group{}, false
	}
	g := Group{Name: f[0], GID: uint32(gid)}
	for _, m := range strings.Split(f[3], ",") {
		if m != "" {
			g.Members = append(g.Members, m)
		}
	}
	return g, true
}
