package rules

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// negativeTTL bounds how long NSS remembers that a name or id does not exist.
// Load resolves every rule once, so this only matters for Expand's %u and %g
// of accounts created after the load (SSSD creates them on first login):
// without a bound they would expand to the numeric id until the next reload.
const negativeTTL = 30 * time.Second

// NSS returns a Resolver backed by the system's name service switch (so
// LDAP and SSSD accounts work): getpwnam_r/getpwuid_r and
// getgrnam_r/getgrgid_r (os/user returns no group members, and hides the
// errno of a failed look-up: see nss_cgo.go). Without cgo, users come from
// os/user's reading of /etc/passwd and groups from /etc/group. A failure of
// the name service keeps its errno (errors.Is(err, unix.EMFILE)).
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
//
// A look-up that fails while the process is out of descriptors is not an
// answer, whatever it says: with "passwd: files systemd" (Debian's
// default) the files module cannot open /etc/passwd (EMFILE) and the next
// module then answers "not found", so the C library reports no error at
// all. Such a failure is returned wrapping EMFILE or ENFILE (errors.Is),
// and is not cached: a rule is not skipped, a %u not expanded to the bare
// number, because of a passing shortage.
func lookup[K comparable, T any](n *nss, m map[K]cached[T], k K, fetch func(K) (T, error), onFound func(T)) (T, error) {
	now := n.now()
	n.mu.Lock()
	c, ok := m[k]
	n.mu.Unlock()
	if ok && (c.expires.IsZero() || now.Before(c.expires)) {
		return c.v, c.err
	}
	v, err := fetch(k)
	if err != nil {
		if short := shortOfDescriptors(); short != nil {
			// Not an answer: the name service could not even be asked.
			return v, fmt.Errorf("%v: %w", err, short)
		}
	}
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

// shortOfDescriptors returns EMFILE or ENFILE when the process cannot open
// a file now, nil when it can. It is asked only after a failed look-up,
// which then needed a descriptor just as this does.
func shortOfDescriptors() error {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		_ = unix.Close(fd)
		return nil
	}
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return fmt.Errorf("out of file descriptors: %w", err)
	}
	return nil
}
