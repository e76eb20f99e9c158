//go:build !cgo

package rules

import (
	"fmt"
	"os"
)

// Without cgo there is no NSS: groups come from /etc/group only, read anew
// on each (cached) look-up.

func lookupGroup(name string) (Group, error) {
	if badName(name) {
		return Group{}, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	return scanGroups(func(g *Group) bool { return g.Name == name }, fmt.Sprintf("group %q", name))
}

func lookupGroupID(gid uint32) (Group, error) {
	return scanGroups(func(g *Group) bool { return g.GID == gid }, fmt.Sprintf("gid %d", gid))
}

func scanGroups(want func(*Group) bool, what string) (Group, error) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		return Group{}, fmt.Errorf("%s: %w", what, err)
	}
	if g, ok := findGroup(data, want); ok {
		return g, nil
	}
	return Group{}, fmt.Errorf("%s: %w", what, ErrNotFound)
}
