//go:build !cgo

package rules

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// Without cgo there is no NSS: users come from os/user's own reading of
// /etc/passwd, groups from /etc/group, read anew on each (cached) look-up.
// A failure to read either keeps its errno (EMFILE, say) for errors.Is.

func lookupUser(name string) (User, error) {
	if badName(name) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return userOf(u)
}

func lookupUserID(uid uint32) (User, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return User{}, fmt.Errorf("uid %d: %w", uid, ErrNotFound)
		}
		return User{}, fmt.Errorf("uid %d: %w", uid, err)
	}
	return userOf(u)
}

func userOf(u *user.User) (User, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("user %q: bad uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("user %q: bad gid %q: %w", u.Username, u.Gid, err)
	}
	return User{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}, nil
}

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
