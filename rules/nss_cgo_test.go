//go:build cgo

package rules

import (
	"os"
	"testing"
)

// TestGroupBufferGrows starts getgr*_r with a buffer too small for any entry
// so that the ERANGE retry runs.
func TestGroupBufferGrows(t *testing.T) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Skip(err)
	}
	want, ok := findGroup(data, func(g *Group) bool { return len(g.Members) > 0 })
	if !ok {
		want, ok = findGroup(data, func(*Group) bool { return true })
	}
	if !ok {
		t.Skip("empty /etc/group")
	}
	firstGroupBuf = 8
	defer func() { firstGroupBuf = 0 }()
	g, err := lookupGroup(want.Name)
	if err != nil || g.GID != want.GID || !equalStrings(g.Members, want.Members) {
		t.Fatalf("lookupGroup(%q) = %+v, %v; /etc/group says %+v", want.Name, g, err, want)
	}
	g, err = lookupGroupID(want.GID)
	if err != nil || g.GID != want.GID {
		t.Fatalf("lookupGroupID(%d) = %+v, %v", want.GID, g, err)
	}
}
