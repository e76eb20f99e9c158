package rules

import (
	"cmp"
	"slices"
)

// List is an immutable rule list in file order (first match wins), indexed
// for matching. It is safe for concurrent readers.
type List struct {
	rules []*Rule
	procs []procTest // procs[i] is rules[i]'s process test, kept dense for the match loop

	// Candidate rule indices, each run sorted ascending: rules for anyone
	// (without a process, or with a prefix pattern); rules for anyone with
	// an exact process name or path, by that name; per uid (user rules and
	// @group rules listing that uid as a member); per gid (@group rules).
	// The runs live in one arena so that a large list costs a few
	// allocations, not one per user.
	anyIdx    []int32
	anyByProc map[string]span
	byUID     map[uint32]span
	byGID     map[uint32]span
	arena     []int32

	anyProc     bool // some rule has a process test
	needsProc   bool // ... or some destination uses %p
	controllers []string
	res         Resolver
}

// span is a run of arena.
type span struct{ off, n uint32 }

// finish turns the builder into a List, or fails the load when any error was
// reported.
func (b *builder) finish() (*List, Diagnostics, error) {
	if b.nerr > 0 {
		return nil, b.diags, &LoadError{Diags: b.diags.Errors()}
	}
	l := &List{
		rules:       make([]*Rule, len(b.rules)),
		procs:       make([]procTest, len(b.rules)),
		controllers: slices.Clone(b.opt.Controllers),
		res:         b.opt.Resolver,
	}
	type kv struct {
		key uint32
		idx int32
	}
	type pkv struct {
		key string
		idx int32
	}
	var uids, gids []kv
	var procs []pkv
	for i := range b.rules {
		r := &b.rules[i]
		l.rules[i] = r
		l.procs[i] = r.proc
		if r.proc.kind != procNone {
			l.anyProc = true
		}
		for j := range r.Targets {
			if r.Targets[j].needsProc() {
				l.needsProc = true
			}
		}
		switch r.kind {
		case whoAny:
			// Per-program rules ("*:firefox") are candidates for every
			// task; indexing the exact ones by name keeps a list of
			// hundreds of them from being walked for each match.
			if k := r.proc.kind; k == procBase || k == procAbs {
				procs = append(procs, pkv{r.proc.pat, int32(i)})
				break
			}
			l.anyIdx = append(l.anyIdx, int32(i))
		case whoUser:
			uids = append(uids, kv{r.id, int32(i)})
		case whoGroup:
			gids = append(gids, kv{r.id, int32(i)})
			for _, m := range r.members {
				uids = append(uids, kv{m, int32(i)})
			}
		}
	}
	l.needsProc = l.needsProc || l.anyProc
	byKey := func(a, b kv) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	}
	// Sorting by (key, index) groups each id's rules in file order; Compact
	// drops the same rule listed twice for one id (a user named twice in a
	// group's member list).
	slices.SortFunc(uids, byKey)
	uids = slices.Compact(uids)
	slices.SortFunc(gids, byKey)
	gids = slices.Compact(gids)
	slices.SortStableFunc(procs, func(a, b pkv) int { return cmp.Compare(a.key, b.key) })
	l.arena = make([]int32, 0, len(uids)+len(gids)+len(procs))
	index := func(kvs []kv) map[uint32]span {
		m := make(map[uint32]span)
		for i := 0; i < len(kvs); {
			j := i
			off := len(l.arena)
			for j < len(kvs) && kvs[j].key == kvs[i].key {
				l.arena = append(l.arena, kvs[j].idx)
				j++
			}
			m[kvs[i].key] = span{uint32(off), uint32(j - i)}
			i = j
		}
		return m
	}
	l.byUID = index(uids)
	l.byGID = index(gids)
	if len(procs) > 0 {
		l.anyByProc = make(map[string]span)
		for i := 0; i < len(procs); {
			j := i
			off := len(l.arena)
			for j < len(procs) && procs[j].key == procs[i].key {
				l.arena = append(l.arena, procs[j].idx)
				j++
			}
			l.anyByProc[procs[i].key] = span{uint32(off), uint32(j - i)}
			i = j
		}
	}
	return l, b.diags, nil
}

// Len returns the number of rules.
func (l *List) Len() int { return len(l.rules) }

// Rules returns the rules in file order. The rules are shared: do not modify
// them.
func (l *List) Rules() []*Rule { return slices.Clone(l.rules) }

// NeedsProcess reports whether some rule names a process or uses %p, that is
// whether EXEC events matter and the procname must be resolved.
func (l *List) NeedsProcess() bool { return l.needsProc }

// MayMatch reports whether some rule could match a task with these ids,
// whatever its process name: when it is false, Match returns nil for every
// Task with UID uid and GID gid, and the caller need not resolve the
// procname (nor read anything else about the task). It costs two map
// look-ups.
func (l *List) MayMatch(uid, gid uint32) bool {
	if len(l.anyIdx) > 0 || len(l.anyByProc) > 0 {
		return true
	}
	return len(l.run(l.byUID, uid)) > 0 || len(l.run(l.byGID, gid)) > 0
}

// NamesUser reports whether some rule names uid (a user rule, a @group rule
// listing the user as a member) or anyone. A task whose euid it is false for
// can still match a @group rule by its egid: this is a hint, not a verdict.
func (l *List) NamesUser(uid uint32) bool {
	return len(l.anyIdx) > 0 || len(l.anyByProc) > 0 || len(l.run(l.byUID, uid)) > 0
}

// NamesGroup reports whether some rule names gid (a @group rule) or anyone;
// like NamesUser, a hint (a user rule can match whatever the gid).
func (l *List) NamesGroup(gid uint32) bool {
	return len(l.anyIdx) > 0 || len(l.anyByProc) > 0 || len(l.run(l.byGID, gid)) > 0
}

// Match returns the first rule (lowest Index) whose who and process tests
// match t, or nil.
func (l *List) Match(t *Task) *Rule { return l.match(t, -1) }

// MatchAfter is Match restricted to rules with Index > after (the caller uses
// it to skip an ignore rule that does not hold).
func (l *List) MatchAfter(t *Task, after int) *Rule {
	if after >= len(l.rules) {
		return nil
	}
	return l.match(t, int32(max(after, -1)))
}

func (l *List) run(m map[uint32]span, key uint32) []int32 {
	s, ok := m[key]
	if !ok {
		return nil
	}
	return l.arena[s.off : s.off+s.n : s.off+s.n]
}

func (l *List) procRun(name string) []int32 {
	s, ok := l.anyByProc[name]
	if !ok {
		return nil
	}
	return l.arena[s.off : s.off+s.n : s.off+s.n]
}

// match merges the candidate runs by rule index and returns the first
// candidate whose process test passes. A @group rule can be in two runs (by
// gid and by member uid); advancing every run whose head is the chosen index
// tries it once. Without failing process tests the first candidate wins, so
// the cost is a few map look-ups whatever the list length.
func (l *List) match(t *Task, after int32) *Rule {
	runs := [5][]int32{
		l.anyIdx,
		l.run(l.byUID, t.UID),
		l.run(l.byGID, t.GID),
	}
	if l.anyByProc != nil && t.Process != "" {
		// An exact pattern matches the full procname or its base name
		// (absolute patterns can only equal the full one: a base name has
		// no "/").
		runs[3] = l.procRun(t.Process)
		if b := baseName(t.Process); b != t.Process {
			runs[4] = l.procRun(b)
		}
	}
	if after >= 0 {
		for i := range runs {
			runs[i] = runs[i][upper(runs[i], after):]
		}
	}
	for {
		const none = int32(1<<31 - 1)
		best := none
		for i := range runs {
			if len(runs[i]) > 0 && runs[i][0] < best {
				best = runs[i][0]
			}
		}
		if best == none {
			return nil
		}
		for i := range runs {
			if len(runs[i]) > 0 && runs[i][0] == best {
				runs[i] = runs[i][1:]
			}
		}
		if !l.anyProc || l.procs[best].match(t.Process) {
			return l.rules[best]
		}
	}
}

// upper returns the position of the first element of the sorted run s that
// is greater than x.
func upper(s []int32, x int32) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Names is what a list's rules can match, for a filter that leaves out the
// events no rule can act on (an event source that filters in the kernel;
// its fields are those of bpfevents.Filter, in the same order).
type Names struct {
	// Any: some rule matches tasks of any user and group ("*"); UIDs and
	// GIDs are then not the whole story.
	Any  bool
	UIDs []uint32 // users named by user rules and as members of @group rules, sorted, each once
	GIDs []uint32 // groups named by @group rules, sorted, each once
	// Processes are the process patterns of the rules that name one, as
	// written ("sleep", "/usr/bin/perl", "ssh*" for a prefix), sorted, each
	// once. A rule matches the full process name or its base name. An EXEC
	// of another program can still change a task's place when its previous
	// program was one of these: a prefilter, not a verdict.
	Processes []string
	// AllExecs: a destination depends on the program (%p), so any EXEC
	// can change a task's place. (%P is the pid, which an EXEC keeps.) When neither Processes nor AllExecs
	// is set, no EXEC matters (NeedsProcess is false).
	AllExecs bool
}

// Names returns what the list's rules can match.
func (l *List) Names() Names {
	n := Names{Any: len(l.anyIdx) > 0 || len(l.anyByProc) > 0}
	for uid := range l.byUID {
		n.UIDs = append(n.UIDs, uid)
	}
	for gid := range l.byGID {
		n.GIDs = append(n.GIDs, gid)
	}
	slices.Sort(n.UIDs)
	slices.Sort(n.GIDs)
	for _, r := range l.rules {
		if r.Process != "" {
			n.Processes = append(n.Processes, r.Process)
		}
		for i := range r.Targets {
			if r.Targets[i].needsProc() {
				n.AllExecs = true
			}
		}
	}
	slices.Sort(n.Processes)
	n.Processes = slices.Compact(n.Processes)
	return n
}

// Union is what n or m names: the names to filter with while the rules
// are replaced (old.Union(new), swap, new), so that no event either list
// needs is left out while both may be in force.
func (n Names) Union(m Names) Names {
	u := Names{Any: n.Any || m.Any, AllExecs: n.AllExecs || m.AllExecs}
	u.UIDs = sortedUnion(n.UIDs, m.UIDs)
	u.GIDs = sortedUnion(n.GIDs, m.GIDs)
	u.Processes = sortedUnion(n.Processes, m.Processes)
	return u
}

// sortedUnion returns the sorted, unique elements of a and b.
func sortedUnion[T uint32 | string](a, b []T) []T {
	u := slices.Concat(a, b)
	slices.Sort(u)
	return slices.Compact(u)
}
