package bpfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// errE2BIG is what the kernel answers an insert into a full hash map.
var errE2BIG error = unix.E2BIG

// Filter is what the rules name (package rules' Names, so that the engine
// hands List.Names over as it is), for the kernel's filter: a credential
// change is reported when the task's new euid is in UIDs or its new egid
// in GIDs (or Any), an exec when the program's name passes Processes (or
// AllExecs), or when the program the task leaves did. It is a prefilter:
// the engine still decides.
type Filter = rules.Names

// filterState is the filter in force: the maps' contents, mirrored.
type filterState struct {
	any        bool
	execs      uint32
	uids, gids map[uint32]struct{}
	names      map[nameKey]struct{}
}

func newFilterState() filterState {
	return filterState{uids: map[uint32]struct{}{}, gids: map[uint32]struct{}{}, names: map[nameKey]struct{}{}}
}

// nameKey is struct name_key of events.bpf.c: an LPM trie key, the prefix
// length in bits then 16 bytes of name.
type nameKey [20]byte

// newNameKey returns the key of a name: a whole name with its NUL (exact
// match of a NUL-padded comm), or a prefix without; names are cut to the 15
// bytes of a comm, and a cut name is a prefix.
func newNameKey(name string, prefix bool) nameKey {
	var k nameKey
	if len(name) > 15 {
		name, prefix = name[:15], true
	}
	n := copy(k[4:], name)
	if !prefix {
		n++ // the NUL that ends it
	}
	binary.NativeEndian.PutUint32(k[:4], uint32(8*n))
	return k
}

// nameKeys returns the prefilter keys of the rules' process parts, and
// whether one of them matches every exec (procname semantics of package
// rules: a pattern matches the whole procname or its base name).
func nameKeys(procs []string) (map[nameKey]struct{}, bool) {
	keys := map[nameKey]struct{}{}
	for _, p := range procs {
		prefix := strings.HasSuffix(p, "*")
		if prefix {
			p = p[:len(p)-1]
			if p == "" || strings.ContainsRune(p, '/') {
				// A path prefix: the base name may be anything.
				return keys, true
			}
		} else if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p = p[i+1:] // a path: its base name
		}
		if p == "" {
			return keys, true
		}
		keys[newNameKey(p, prefix)] = struct{}{}
	}
	return keys, false
}

// SetFilter replaces the filter. The kernel filters with the union of the
// old and the new one while the maps change: nothing either names is missed
// meanwhile. With more ids than Config.MaxIDs the kernel reports every
// credential change, with more names than Config.MaxNames every exec: the
// filter in force is then wider than asked, never narrower, nothing is
// lost, and Widened says why. Safe from any goroutine; calls are
// serialised. It costs a few bpf(2) calls (batches of ids, one call per
// name changed).
func (s *Source) SetFilter(f Filter) error {
	s.filterMu.Lock()
	defer s.filterMu.Unlock()
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	var full []string
	next := newFilterState()
	next.any = f.Any
	if len(f.UIDs) > s.cfg.MaxIDs || len(f.GIDs) > s.cfg.MaxIDs {
		full = append(full, fmt.Sprintf("%d uids and %d gids, more than %d: every credential change is reported", len(f.UIDs), len(f.GIDs), s.cfg.MaxIDs))
		next.any = true
	} else if !next.any {
		for _, id := range f.UIDs {
			next.uids[id] = struct{}{}
		}
		for _, id := range f.GIDs {
			next.gids[id] = struct{}{}
		}
	}
	keys, all := nameKeys(f.Processes)
	switch {
	case f.AllExecs || all:
		next.execs = execsAll
	case len(keys) > s.cfg.MaxNames:
		full = append(full, fmt.Sprintf("%d process names, more than %d: every exec is reported", len(keys), s.cfg.MaxNames))
		next.execs = execsAll
	case len(keys) > 0:
		next.execs = execsNames
		next.names = keys
	}

	cur := &s.filter
	// Widen first: the union of old and new while the sets change.
	if next.any {
		atomic.StoreUint32(&s.config.AnyID, 1)
	}
	if next.execs == execsAll || cur.execs == execsNone {
		atomic.StoreUint32(&s.config.Execs, next.execs)
	}
	if err := s.updateIDs(s.uids, cur.uids, next.uids); err != nil {
		return err
	}
	if err := s.updateIDs(s.gids, cur.gids, next.gids); err != nil {
		return err
	}
	for k := range next.names {
		if _, ok := cur.names[k]; !ok {
			if err := s.names.Update(k[:], uint8(1), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("bpfevents: adding process name %q to the prefilter: %w", strings.TrimRight(string(k[4:]), "\x00"), mapErr(err))
			}
			cur.names[k] = struct{}{}
		}
	}
	// Then narrow to the new filter.
	atomic.StoreUint32(&s.config.Execs, next.execs)
	for k := range cur.names {
		if _, ok := next.names[k]; !ok {
			if err := s.names.Delete(k[:]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpfevents: removing a process name from the prefilter: %w", err)
			}
			delete(cur.names, k)
		}
	}
	if err := s.removeIDs(s.uids, cur.uids, next.uids); err != nil {
		return err
	}
	if err := s.removeIDs(s.gids, cur.gids, next.gids); err != nil {
		return err
	}
	if !next.any {
		atomic.StoreUint32(&s.config.AnyID, 0)
	}
	cur.any, cur.execs = next.any, next.execs
	s.widened.Store(strings.Join(full, "; "))
	return nil
}

// Widened says why the filter in force is wider than the last SetFilter
// asked (more ids or names than the maps hold: every credential change or
// every exec is reported), or "" when it is not.
func (s *Source) Widened() string { w, _ := s.widened.Load().(string); return w }

// updateIDs adds to m (mirrored by cur) the ids of next it lacks, in one
// batch where the kernel offers it.
func (s *Source) updateIDs(m *ebpf.Map, cur, next map[uint32]struct{}) error {
	var add []uint32
	for id := range next {
		if _, ok := cur[id]; !ok {
			add = append(add, id)
		}
	}
	if len(add) == 0 {
		return nil
	}
	vals := make([]uint8, len(add))
	for i := range vals {
		vals[i] = 1
	}
	if _, err := m.BatchUpdate(add, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("bpfevents: adding %d ids to %s: %w", len(add), m.String(), mapErr(err))
		}
		for _, id := range add {
			if err := m.Update(id, uint8(1), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("bpfevents: adding id %d to %s: %w", id, m.String(), mapErr(err))
			}
		}
	}
	for _, id := range add {
		cur[id] = struct{}{}
	}
	return nil
}

// removeIDs removes from m (mirrored by cur) the ids next lacks.
func (s *Source) removeIDs(m *ebpf.Map, cur, next map[uint32]struct{}) error {
	var del []uint32
	for id := range cur {
		if _, ok := next[id]; !ok {
			del = append(del, id)
		}
	}
	if len(del) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(del, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpfevents: removing %d ids from %s: %w", len(del), m.String(), err)
		}
		for _, id := range del {
			if err := m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpfevents: removing id %d from %s: %w", id, m.String(), err)
			}
		}
	}
	for _, id := range del {
		delete(cur, id)
	}
	return nil
}

// mapErr wraps ErrFull around a full map's E2BIG.
func mapErr(err error) error {
	if errors.Is(err, errE2BIG) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// The marks. Each is one bpf(2) call (Cool two), safe from any goroutine.
// A pid is a process (TGID); the kernel drops every mark of a process when
// it exits, and a stale mark of a pid that is reused when the new process
// is forked.

// MarkHot makes the kernel report pid's forks (and its children's: they
// inherit the mark) until Settled or Cool says otherwise, for
// Config.HotTTL at most. The kernel marks
// a process hot itself when it reports its credential change or exec, so
// that its forks between the event and the move are reported; MarkHot is
// for what user space finds on its own (a scan).
func (s *Source) MarkHot(pid int32) error {
	return s.mark(s.hot, pid, kernel.Now(), "hot")
}

// Settled tells the kernel the engine has classified hot process pid with
// everything the kernel reported up to asOf (the CLOCK_MONOTONIC timestamp
// of the latest event it handled for pid, or when it read /proc), and
// finished at at: forks later than at plus Config.ForkSlack are no longer
// reported, unless the process's credentials change again after asOf. The
// hot mark stays (its EXIT is still reported) until Cool or the exit.
func (s *Source) Settled(pid int32, asOf, at uint64) error {
	return s.mark(s.settled, pid, settleValue{AsOf: asOf, At: at}, "settle")
}

// settleValue is struct settle of events.bpf.c.
type settleValue struct {
	AsOf, At uint64
}

// Cool drops pid's hot mark (and its settle): its forks are no longer
// reported.
func (s *Source) Cool(pid int32) error {
	if err := s.unmark(s.hot, pid, "hot"); err != nil {
		return err
	}
	return s.unmark(s.settled, pid, "settle")
}

// MarkSticky makes the kernel drop pid's credential and exec events
// (libcgroup's sticky processes); with children, its future children
// inherit the mark and their FORK events are reported, so that user space
// can follow. by is the uid of the client that made the mark: a mark made
// by a user other than root ends when the process's uids change (a
// set-user-ID program it ran), which user space decides, so the kernel
// still reports that process's credential changes (not its execs).
func (s *Source) MarkSticky(pid int32, children bool, by uint32) error {
	var flags uint32
	if children {
		flags |= 1 // STICKY_CHILDREN
	}
	if by != 0 {
		flags |= 2 // STICKY_USER
	}
	return s.mark(s.sticky, pid, flags, "sticky")
}

// Unsticky drops pid's sticky mark.
func (s *Source) Unsticky(pid int32) error { return s.unmark(s.sticky, pid, "sticky") }

// WatchExit makes the kernel report pid's EXIT (hot and sticky processes'
// are reported anyway).
func (s *Source) WatchExit(pid int32) error { return s.mark(s.exits, pid, uint8(1), "exit watch") }

// UnwatchExit undoes WatchExit.
func (s *Source) UnwatchExit(pid int32) error { return s.unmark(s.exits, pid, "exit watch") }

func (s *Source) mark(m *ebpf.Map, pid int32, v any, what string) error {
	if pid <= 0 {
		return fmt.Errorf("bpfevents: %s mark of pid %d: not a pid", what, pid)
	}
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if err := m.Update(uint32(pid), v, ebpf.UpdateAny); err != nil {
		if errors.Is(err, errE2BIG) {
			s.refused.Add(1)
		}
		return fmt.Errorf("bpfevents: %s mark of pid %d: %w", what, pid, mapErr(err))
	}
	return nil
}

func (s *Source) unmark(m *ebpf.Map, pid int32, what string) error {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if err := m.Delete(uint32(pid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpfevents: dropping the %s mark of pid %d: %w", what, pid, err)
	}
	return nil
}
