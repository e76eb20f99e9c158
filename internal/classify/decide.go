package classify

import (
	"cmp"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Move is one hierarchy's part of a decision: the task goes to Path in H
// (for the engine's own writes, one cgroup.procs write).
type Move struct {
	H          *cgroupfs.Hierarchy
	Controller string // the rule's controller name that selected H
	From       string // the task's current path in H
	Path       string // destination, absolute in H's namespace view (root joined)
	Templated  bool
	Target     *rules.Target
}

// Decision is the outcome of matching one task.
type Decision struct {
	Rule    *rules.Rule // nil: no rule matched
	Ignored bool        // an ignore/ignore_rt rule held: the task stays put
	Moves   []Move      // empty when the task is already where it belongs
	// OutOfScope: the rule's destinations are all where the task may not
	// be moved (outside --cgroup-root): read in scope only because slice
	// destinations are placed wherever the task is.
	OutOfScope bool
}

// scope is the part of the machine the engine may act on: below root in
// every hierarchy for its own writes; for slice destinations, placed by the
// service manager, wherever the task is visible in the cgroup2 hierarchy.
type scope struct {
	layout    *cgroupfs.Layout
	root      string // --cgroup-root, cleaned, absolute
	sliceRoot string // the manager's tree in the cgroup2 hierarchy (Config.SliceRoot); "" = no slices
}

// visible reports whether a task's path in some hierarchy is inside our
// cgroup namespace.
func visible(cur string) bool { return cur != "" && !strings.HasPrefix(cur, "/..") }

// inScope reports whether a task at cur (its path in some hierarchy) may be
// moved: the path must be visible in our cgroup namespace (paths outside it
// show as "/..") and at or below the daemon's root.
func (s *scope) inScope(cur string) bool {
	return visible(cur) && cgroupfs.Within(cur, s.root)
}

// anyInScope is a cheap pre-check before reading more of /proc: a task that
// is out of scope in every hierarchy the daemon sees can never be moved.
// Lines of hierarchies the daemon has not mounted do not count: in a
// container that sees cgroup2 alone, a task outside the container's cgroup
// namespace still shows its v1 paths, which need not start with "/..".
//
// With slice destinations, a task visible in the cgroup2 hierarchy is in
// scope wherever it is: the manager places it, not our writes (decide
// tells raw destinations out of scope then).
func (s *scope) anyInScope(lines []proc.CgroupLine) bool {
	for _, h := range s.layout.Hierarchies {
		cur, ok := s.layout.TaskPath(h, lines)
		if ok && (s.inScope(cur) || (s.sliceRoot != "" && h == s.layout.Unified && visible(cur))) {
			return true
		}
	}
	return false
}

// dest joins the daemon's root and a rule's expanded destination,
// remembering the result in buf so that the same destination costs no
// allocation the next time.
func (s *scope) dest(p string, buf *decideBuf) string {
	if p == "" {
		return s.root
	}
	return joined(&buf.dests, s.root, p)
}

// sliceDest is a slice's cgroup in our cgroup2 view: below the manager's
// root, not below --cgroup-root; remembered as dest's are.
func (s *scope) sliceDest(p string, buf *decideBuf) string {
	return joined(&buf.sliceDests, s.sliceRoot, p)
}

// joined is root joined with p, from the map m when it was joined before.
func joined(m *map[string]string, root, p string) string {
	if d, ok := (*m)[p]; ok {
		return d
	}
	d := path.Join(root, p)
	if *m == nil || len(*m) >= maxDests {
		*m = make(map[string]string)
	}
	(*m)[p] = d
	return d
}

// maxDests bounds decideBuf.dests and sliceDests (templates can name a destination per
// user); a full map is emptied.
const maxDests = 1024

// decideBuf is decide's scratch, kept by each goroutine that classifies and
// reused from call to call, so that a decision does not allocate.
type decideBuf struct {
	res   []rules.Resolved
	pairs []pair
	moves []Move
	dests map[string]string // expanded destination -> joined with the root (scope.dest)
	// sliceDests: a slice's path -> joined with the manager's root (scope.sliceDest)
	sliceDests map[string]string
}

// pair is one (hierarchy, destination) the rule asks for.
type pair struct {
	h     *cgroupfs.Hierarchy
	ctrl  string
	cur   string
	ok    bool // task has a path in h and it is in scope
	dest  string
	res   *rules.Resolved
	slice bool // a slice destination: dest is the slice's cgroup (h is the cgroup2 hierarchy)
}

// situation is what decide knows of a task besides its ids and process.
type situation struct {
	lines []proc.CgroupLine // its cgroups
	// realtime: it runs under a realtime policy (for ignore_rt).
	realtime bool
	// movedByUs: the daemon itself moved the task moments ago (a half-done
	// credential change, say setgid before setuid): its current cgroup is
	// then not the user's choice, so only the exact destination counts as
	// in place.
	movedByUs bool
}

// decide matches t against l and works out the moves; it reads nothing but
// its arguments. buf is reused to avoid allocations: d.Moves lives in it
// until the next call.
func decide(l *rules.List, s *scope, t *rules.Task, at situation, buf *decideBuf) (Decision, error) {
	lines, rt, exact := at.lines, at.realtime, at.movedByUs
	d := Decision{Moves: buf.moves[:0]}
	after := -1
	for {
		var r *rules.Rule
		if after < 0 {
			r = l.Match(t)
		} else {
			r = l.MatchAfter(t, after)
		}
		if r == nil {
			return Decision{}, nil
		}
		var err error
		buf.res, err = l.Expand(r, t, buf.res[:0])
		if err != nil {
			return Decision{Rule: r}, err
		}
		buf.pairs = s.pairs(buf.res, lines, buf.pairs[:0], buf)
		pairs := buf.pairs
		if r.Ignore || (r.IgnoreRT && rt) {
			if ignoreHolds(pairs) {
				return Decision{Rule: r, Ignored: true}, nil
			}
			after = r.Index
			continue
		}
		d.Rule = r
		inScope := false
		for _, p := range pairs {
			if !p.ok {
				continue
			}
			inScope = true
			if p.slice {
				// At or below the slice: in it, in our scope, or in a
				// unit someone started there; the manager's business.
				if cgroupfs.Within(p.cur, p.dest) {
					continue
				}
			} else if p.dest == s.root || exact {
				// The root itself: "at or below" would hold for every task in
				// scope, so only an exact match leaves the task alone.
				// Likewise for a task that is where the daemon just put it.
				if p.cur == p.dest {
					continue
				}
			} else if cgroupfs.Within(p.cur, p.dest) {
				continue
			}
			d.Moves = append(d.Moves, Move{
				H: p.h, Controller: p.ctrl, From: p.cur, Path: p.dest,
				Templated: p.res.Templated, Target: p.res.Target,
			})
		}
		schedulerLast(d.Moves)
		buf.moves = d.Moves
		d.OutOfScope = !inScope && len(pairs) > 0
		return d, nil
	}
}

// schedulerLast puts the moves into hierarchies with the cpu or cpuset
// controller after the others, keeping the order otherwise. Joining a cpu
// cgroup gives the task a new scheduling entity, and a task that was
// spinning on the daemon's CPU then often preempts the daemon until the
// next tick (4 ms): measured on the test VM, a cpu-first order left the
// second write of 10% of moves waiting 1-4 ms. Moving the scheduler
// controllers last makes that preemption harmless. (cgroup.procs writes to
// different hierarchies are independent: the order changes nothing else.)
func schedulerLast(moves []Move) {
	if len(moves) < 2 {
		return
	}
	slices.SortStableFunc(moves, func(a, b Move) int {
		return cmp.Compare(schedWeight(a.H), schedWeight(b.H))
	})
}

func schedWeight(h *cgroupfs.Hierarchy) int {
	if slices.Contains(h.Controllers, "cpu") || slices.Contains(h.Controllers, "cpuset") {
		return 1
	}
	return 0
}

// ignoreHolds: the task is at or below the destination in every hierarchy
// the rule names and where the task is in scope (and there is at least one).
func ignoreHolds(pairs []pair) bool {
	n := 0
	for _, p := range pairs {
		if !p.ok {
			continue
		}
		if !cgroupfs.Within(p.cur, p.dest) {
			return false
		}
		n++
	}
	return n > 0
}

// pairs resolves every expanded target to hierarchies, each hierarchy once
// (the first target naming it wins, as the first rule wins), appending to
// out.
func (s *scope) pairs(res []rules.Resolved, lines []proc.CgroupLine, out []pair, buf *decideBuf) []pair {
	for i := range res {
		if res[i].Slice {
			// One place for the task, in every hierarchy the manager
			// runs: judged by its cgroup2 path.
			h := s.layout.Unified
			p := pair{h: h, res: &res[i], slice: true, dest: s.sliceDest(res[i].Path, buf)}
			if h != nil && s.sliceRoot != "" {
				p.cur, p.ok = s.layout.TaskPath(h, lines)
				p.ok = p.ok && visible(p.cur)
			}
			out = append(out, p)
			continue
		}
		for _, h := range s.layout.Resolve(res[i].Controller) {
			dup := false
			for _, p := range out {
				if p.h == h {
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			cur, ok := s.layout.TaskPath(h, lines)
			ok = ok && s.inScope(cur)
			out = append(out, pair{h: h, ctrl: res[i].Controller, cur: cur, ok: ok, dest: s.dest(res[i].Path, buf), res: &res[i]})
		}
	}
	return out
}

// realtime is whether a task runs under a realtime policy, as far as it
// was read: /proc/PID/stat is read only for an ignore_rt rule and after a
// move failed with EINVAL.
type realtime uint8

const (
	rtUnknown realtime = iota
	rtNo
	rtYes
)

// decideTask is the decide step: the decision for the task read, or why it
// stays where it is. Whether the task is realtime matters only to an
// ignore_rt rule, and is read (the one read this step makes) only then.
func (e *Engine) decideTask(rs *ruleset, t *rules.Task, at situation, buf *decideBuf) (Decision, realtime, verdict) {
	rt := rtUnknown
	d, err := decide(rs.list, &e.scope, t, at, buf)
	if err == nil && d.Rule != nil && d.Rule.IgnoreRT {
		if rt = e.realTime(t.PID); rt == rtYes {
			at.realtime = true
			d, err = decide(rs.list, &e.scope, t, at, buf)
		}
	}
	switch {
	case err != nil:
		e.reportExpand(t, d.Rule, err)
		return d, rt, expandError
	case d.Rule == nil:
		return d, rt, leftNoRule
	case d.Ignored:
		return d, rt, leftIgnore
	case d.OutOfScope:
		return d, rt, leftOutOfScope
	case len(d.Moves) == 0:
		return d, rt, leftInPlace
	}
	return d, rt, proceed
}

// realTime reads whether pid runs under SCHED_FIFO or SCHED_RR; a task
// whose policy cannot be read counts as not realtime.
func (e *Engine) realTime(pid int) realtime {
	if rt, err := e.cfg.Tasks.RealTime(pid); err == nil && rt {
		return rtYes
	}
	return rtNo
}

// reportExpand reports a destination that could not be expanded for t: a
// look-up of the name service that failed for lack of descriptors lost the
// classification, which a rescan repairs (descriptors.go); anything else
// (a name too long, a %p that is not a cgroup name) is logged once per
// rule per reportInterval, since the task's user chooses its process name
// (issue 19: 2,000 execs with an over-long argv[0] were 2,000 lines).
func (e *Engine) reportExpand(t *rules.Task, r *rules.Rule, err error) {
	if outOfDescriptors(err) {
		e.lostForDescriptors(t.PID, err)
		return
	}
	n, ok := e.expandErrs.Allow(r, time.Now())
	if !ok {
		return
	}
	f := logrus.Fields{"pid": t.PID, "rule": ruleRef(r)}
	if n > 0 {
		f[ratelimit.NotLogged] = n
	}
	e.log.WithFields(f).Errorf("cannot expand destination (repeated at most once a minute per rule): %v", err)
}
