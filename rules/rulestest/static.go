// Package rulestest helps the tests of packages that load rules: Static
// resolves user and group names over fixed account lists, so that no test
// depends on the machine's accounts. It is for tests only; the daemon
// resolves names with rules.NSS.
//
// It needs no privilege; a Static is immutable and safe for concurrent use.
package rulestest

import (
	"fmt"

	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Static is a rules.Resolver over fixed account lists. Build it with
// NewStatic; it is immutable and safe for concurrent use.
type Static struct {
	usersByName  map[string]rules.User
	usersByID    map[uint32]rules.User
	groupsByName map[string]rules.Group
	groupsByID   map[uint32]rules.Group
}

// NewStatic returns a resolver that knows exactly these accounts. When two
// entries share a name or id, the first one wins, as in /etc/passwd.
func NewStatic(users []rules.User, groups []rules.Group) *Static {
	s := &Static{
		usersByName:  make(map[string]rules.User, len(users)),
		usersByID:    make(map[uint32]rules.User, len(users)),
		groupsByName: make(map[string]rules.Group, len(groups)),
		groupsByID:   make(map[uint32]rules.Group, len(groups)),
	}
	for _, u := range users {
		if _, ok := s.usersByName[u.Name]; !ok {
			s.usersByName[u.Name] = u
		}
		if _, ok := s.usersByID[u.UID]; !ok {
			s.usersByID[u.UID] = u
		}
	}
	for _, g := range groups {
		if _, ok := s.groupsByName[g.Name]; !ok {
			s.groupsByName[g.Name] = g
		}
		if _, ok := s.groupsByID[g.GID]; !ok {
			s.groupsByID[g.GID] = g
		}
	}
	return s
}

func (s *Static) UserByName(name string) (rules.User, error) {
	if u, ok := s.usersByName[name]; ok {
		return u, nil
	}
	return rules.User{}, fmt.Errorf("user %q: %w", name, rules.ErrNotFound)
}

func (s *Static) UserByID(uid uint32) (rules.User, error) {
	if u, ok := s.usersByID[uid]; ok {
		return u, nil
	}
	return rules.User{}, fmt.Errorf("uid %d: %w", uid, rules.ErrNotFound)
}

func (s *Static) GroupByName(name string) (rules.Group, error) {
	if g, ok := s.groupsByName[name]; ok {
		return g, nil
	}
	return rules.Group{}, fmt.Errorf("group %q: %w", name, rules.ErrNotFound)
}

func (s *Static) GroupByID(gid uint32) (rules.Group, error) {
	if g, ok := s.groupsByID[gid]; ok {
		return g, nil
	}
	return rules.Group{}, fmt.Errorf("gid %d: %w", gid, rules.ErrNotFound)
}
