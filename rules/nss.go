package rules

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// negativeTTL bounds how long NSS remembers that a name or id does not exist.
// Load resolves every rule once, so this only matters for Expand's %u and %g
// of accounts created after the load (SSSD creates them on first login):
// without a bound they would expand to the numeric id until the next reload.
const negativeTTL = 30 * time.Second

// NSS returns a Resolver backed by the system's name service switch (so
// LDAP and SSSD accounts work): os/user for users, getgrnam_r/getgrgid_r for
// groups with their member lists (os/user does not return members). Without
// cgo, groups come from /etc/group.
//
// The returned resolver caches answers, found and not found, for its own
// lifetime (not-found answers for 30 seconds); make a new one per load so
// that a reload sees account changes. Failures of the name service itself
// are not cached. It is safe for concurrent use.
func NSS() Resolver {
	return &nss{
		now:          time.Now,
		usersByName:  make(map[string]cached[User]),
		usersByID:    make(map[uint32]cached[User]),
		groupsByName: make(map[string]cached[Group]),
		groupsByID:   make(map[uint32]cached[Group]),
	}
}

type cached[T any] struct {
	v       T
	err     error     // nil or wrapping ErrNotFound
	expires time.Time // zero: never (found)
}

type nss struct {
	now          func() time.Time
	mu           sync.Mutex
	usersByName  map[string]cached[User]
	usersByID    map[uint32]cached[User]
	groupsByName map[string]cached[Group]
	groupsByID   map[uint32]cached[Group]
}

// lookup consults m, then calls fetch and remembers its answer unless the
// name service failed. onFound stores a found value under its other key.
func lookup[K comparable, T any](n *nss, m map[K]cached[T], k K, fetch func(K) (T, error), onFound func(T)) (T, error) {
	now := n.now()
	n.mu.Lock()
	c, ok := m[k]
	n.mu.Unlock()
	if ok && (c.expires.IsZero() || now.Before(c.expires)) {
		return c.v, c.err
	}
	v, err := fetch(k)
	switch {
	case err == nil:
		n.mu.Lock()
		m[k] = cached[T]{v: v}
		onFound(v)
		n.mu.Unlock()
	case errors.Is(err, ErrNotFound):
		n.mu.Lock()
		m[k] = cached[T]{v: v, err: err, expires: now.Add(negativeTTL)}
		n.mu.Unlock()
	}
	return v, err
}

func (n *nss) UserByName(name string) (User, error) {
	return lookup(n, n.usersByName, name, lookupUser, func(u User) { n.usersByID[u.UID] = cached[User]{v: u} })
}

func (n *nss) UserByID(uid uint32) (User, error) {
	return lookup(n, n.usersByID, uid, lookupUserID, func(u User) { n.usersByName[u.Name] = cached[User]{v: u} })
}

func (n *nss) GroupByName(name string) (Group, error) {
	return lookup(n, n.groupsByName, name, lookupGroup, func(g Group) { n.groupsByID[g.GID] = cached[Group]{v: g} })
}

func (n *nss) GroupByID(gid uint32) (Group, error) {
	return lookup(n, n.groupsByID, gid, lookupGroupID, func(g Group) { n.groupsByName[g.Name] = cached[Group]{v: g} })
}

// badName reports names that cannot be passed to the C library as they are:
// a NUL would cut the name short and look up another account.
func badName(name string) bool { return name == "" || strings.IndexByte(name, 0) >= 0 }

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
		return User{}, err
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
		return User{}, err
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
