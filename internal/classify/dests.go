package classify

import (
	"sync"
	"sync/atomic"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

// Destination is a cgroup the engine has moved a task into.
type Destination struct {
	H    *cgroupfs.Hierarchy
	Path string
}

// maxDestinations bounds the set of destinations in use: templates such as
// %u name one cgroup per user, and a node may see many users.
const maxDestinations = 65536

// destSet is the set of destinations in use, for the per-destination
// metrics. It is read on every successful move and written only the first
// time a destination is seen. Known destinations are in an immutable map
// behind an atomic pointer, so a move into one takes no lock and allocates
// nothing. New ones go to a pending map under a mutex and are merged into a
// fresh immutable map at once while the set is small, and in batches (when
// the pending ones reach half the set) or at the next list once it is large,
// so that filling the set costs linear time in all. (Until its batch is
// merged, a move into a pending destination takes the uncontended mutex.)
type destSet struct {
	cur     atomic.Pointer[map[Destination]struct{}]
	mu      sync.Mutex
	pending map[Destination]struct{} // not in cur yet (under mu)
}

// mergeNow is the size up to which a new destination is merged at once.
const mergeNow = 4096

// add records a destination in use; it reports false when the set is full
// and the destination is not recorded.
func (s *destSet) add(h *cgroupfs.Hierarchy, path string) bool {
	d := Destination{h, path}
	cur := s.cur.Load()
	if cur != nil {
		if _, ok := (*cur)[d]; ok {
			return true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur = s.cur.Load()
	n := 0
	if cur != nil {
		if _, ok := (*cur)[d]; ok {
			return true
		}
		n = len(*cur)
	}
	if _, ok := s.pending[d]; ok {
		return true
	}
	if n+len(s.pending) >= maxDestinations {
		return false
	}
	if s.pending == nil {
		s.pending = map[Destination]struct{}{}
	}
	s.pending[d] = struct{}{}
	if n < mergeNow || len(s.pending) >= n/2 {
		s.merge()
	}
	return true
}

// merge publishes the pending destinations (under mu).
func (s *destSet) merge() {
	if len(s.pending) == 0 {
		return
	}
	old := s.cur.Load()
	n := len(s.pending)
	if old != nil {
		n += len(*old)
	}
	m := make(map[Destination]struct{}, n)
	if old != nil {
		for k := range *old {
			m[k] = struct{}{}
		}
	}
	for k := range s.pending {
		m[k] = struct{}{}
	}
	clear(s.pending)
	s.cur.Store(&m)
}

// remove forgets a destination (its cgroup was removed).
func (s *destSet) remove(d Destination) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, d)
	old := s.cur.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[d]; !ok {
		return
	}
	m := make(map[Destination]struct{}, len(*old))
	for k := range *old {
		if k != d {
			m[k] = struct{}{}
		}
	}
	s.cur.Store(&m)
}

// list returns up to max destinations (any of them) and how many there are.
func (s *destSet) list(max int) ([]Destination, int) {
	s.mu.Lock()
	s.merge()
	s.mu.Unlock()
	m := s.cur.Load()
	if m == nil {
		return nil, 0
	}
	out := make([]Destination, 0, min(max, len(*m)))
	for d := range *m {
		if len(out) == max {
			break
		}
		out = append(out, d)
	}
	return out, len(*m)
}

// Destinations returns up to max of the cgroups the engine has moved tasks
// into (and still knows to exist), and how many there are in all.
func (e *Engine) Destinations(max int) ([]Destination, int) { return e.dests.list(max) }

// ForgetDestination drops a destination whose cgroup is gone (a reader of
// its statistics found it removed); a later move into it adds it again.
func (e *Engine) ForgetDestination(d Destination) { e.dests.remove(d) }
