package rules

import (
	"errors"

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
)

// ErrNotFound is returned (wrapped) by resolvers for unknown names and ids.
// Any other resolver error is treated as a failure of the name service and
// fails the load, so that an LDAP outage does not silently drop rules.
var ErrNotFound = errors.New("not found")

// User is one account.
type User struct {
	Name string
	UID  uint32
	GID  uint32 // primary group
}

// Group is one group entry.
type Group struct {
	Name    string
	GID     uint32
	Members []string // user names listed in the group entry (gr_mem)
}

// Resolver looks up accounts. Implementations must be safe for concurrent use.
type Resolver interface {
	UserByName(name string) (User, error)
	UserByID(uid uint32) (User, error)
	GroupByName(name string) (Group, error)
	GroupByID(gid uint32) (Group, error)
}

// Options control a load.
type Options struct {
	Resolver Resolver // required
	// Controllers available on this machine; nil = don't check names. "*"
	// expands to these, except named hierarchies ("name=systemd").
	Controllers []string
	// CheckTrust refuses untrusted files (the daemon sets it when euid ==
	// 0): not owned by root, writable by group or others, or reached
	// through a directory, from "/" on, that someone else could change
	// (see package trust).
	CheckTrust bool
	// Systemd allows destinations that name a systemd slice (see
	// Target.Slice): the daemon sets it when systemd places tasks
	// (--systemd=on, or auto on a systemd machine). Without it such a
	// destination is an error naming file:line.
	Systemd bool
	// SystemdOff says why Systemd is false, for that error (the daemon
	// gives its --systemd setting and what it probed); "" = a generic
	// reason.
	SystemdOff string

	// trust is the policy CheckTrust applies: root alone on the real file
	// system, unless a test trusts its own uid or supplies a file system.
	trust trust.Policy
}

// Task is what matching needs to know about a process.
type Task struct {
	PID     int
	UID     uint32 // effective uid
	GID     uint32 // effective gid
	Process string // procname: usually the executable's full path; "" = unknown (process rules then don't match)
}

// Target is one controller list and destination of a rule.
type Target struct {
	Controllers []string // as written, e.g. ["cpu","memory"] or ["*"]; shared between targets: do not modify
	// Dest is the destination in canonical form: no leading "/", cleaned, ""
	// for the hierarchy root. Template letters appear as %u etc.; a literal
	// "%" or "\" is written "\%" or "\\", so Dest parses back to the same
	// destination.
	Dest      string
	Templated bool // Dest contains a template (%u %U %g %G %p %P)
	// Slice: the destination's last component ends in ".slice", so it
	// names a systemd slice ("batch.slice", "batch-%u.slice",
	// "a.slice/a-b.slice"): the task goes into a scope in that slice,
	// placed by systemd, in every hierarchy systemd manages. Its
	// controllers are "*"; every component is a slice, each below the
	// one before by systemd's dash rule; template values are escaped as
	// unit names (a dash in a user name does not nest).
	Slice bool
	File  string // where this target was written (a % line has its own)
	Line  int

	path  string   // the cgroup path when not Templated
	comps [][]part // path components when Templated
}

// Rule is one rule line with its % lines.
type Rule struct {
	Index    int // position in the list, 0-based, file order
	File     string
	Line     int
	Text     string   // the rule's line as written, trimmed (without comment)
	Who      string   // "alice", "@grp", "*" as written (without quotes and process)
	Process  string   // "" when the rule names no process
	Targets  []Target // the rule's own target plus those of the % lines after it
	Ignore   bool     // option "ignore"
	IgnoreRT bool     // option "ignore_rt"

	kind    whoKind  // how Who matches
	id      uint32   // uid (user rule) or gid (group rule)
	members []uint32 // uids of a group's listed members
	proc    procTest

	// written holds the targets as written, including controllers that are
	// not available here, when they differ from Targets; Format writes these
	// so that writing a list out loses nothing.
	written []Target
}

// Resolved is one (controller, cgroup path) pair to move into, or, for a
// slice target, the slice to place the task in.
type Resolved struct {
	Controller string // "" for a slice
	// Path is the cgroup path: cleaned, without leading "/"; "" = hierarchy
	// root. For a slice, the slice's cgroup path as systemd makes it, every
	// parent included ("batch.slice/batch-john\x2ddoe.slice"), relative to
	// the manager's root; its last component is the slice's unit name.
	Path      string
	Slice     bool // place into the slice named by Path's last component, through systemd
	Templated bool
	Target    *Target
}
