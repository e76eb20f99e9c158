package rules

import "fmt"

// Static is a Resolver over fixed account lists, for tests and tools that
// must not depend on the machine's accounts. Build it with NewStatic; it is
// immutable and safe for concurrent use.
type Static struct {
	usersByName  map[string]User
	usersByID    map[uint32]User
	groupsByName map[string]Group
	groupsByID   map[uint32]Group
}

// NewStatic returns a resolver that knows exactly these accounts. When two
// entries share a name or id, the first one wins, as in /etc/passwd.
func NewStatic(users []User, groups []Group) *Static {
	s := &Static{
		usersByName:  make(map[string]User, len(users)),
		usersByID:    make(map[uint32]User, len(users)),
		groupsByName: make(map[string]Group, len(groups)),
		groupsByID:   make(map[uint32]Group, len(groups)),
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

func (s *Static) UserByName(name string) (User, error) {
	if u, ok := s.usersByName[name]; ok {
		return u, nil
	}
	return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
}

func (s *Static) UserByID(uid uint32) (User, error) {
	if u, ok := s.usersByID[uid]; ok {
		return u, nil
	}
	return User{}, fmt.Errorf("uid %d: %w", uid, ErrNotFound)
}

func (s *Static) GroupByName(name string) (Group, error) {
	if g, ok := s.groupsByName[name]; ok {
		return g, nil
	}
	return Group{}, fmt.Errorf("group %q: %w", name, ErrNotFound)
}

func (s *Static) GroupByID(gid uint32) (Group, error) {
	if g, ok := s.groupsByID[gid]; ok {
		return g, nil
	}
	return Group{}, fmt.Errorf("gid %d: %w", gid, ErrNotFound)
}
