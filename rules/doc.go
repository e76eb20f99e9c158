// Package rules reads cgrules.conf files (libcgroup's rules language, same
// meaning) into an immutable List and answers, for a task, which rule applies
// and which (controller, cgroup) pairs it asks for.
//
// Language, in short: one rule per line,
//
//	<who>[:<process>] <controllers> <destination> [<options>]
//
// where who is a user name, @group, * or % (a % line adds one more
// controller/destination pair to the rule above it). The first field and the
// destination may be double-quoted to hold blanks; # starts a comment
// anywhere outside quotes. The destination may use the templates %u %U %g %G
// %p %P, and a backslash escapes the next character there (only there: user,
// group and process names keep backslashes literally, as libcgroup does, so
// winbind names such as DOMAIN\alice work). See Parse for every decision.
//
// A destination whose last component ends in ".slice" names a systemd
// slice (Target.Slice): "batch.slice", "batch-%u.slice" or the nested path
// "a.slice/a-b.slice". Its controllers must be "*", every component must be
// a slice below the one before it by systemd's dash rule, a % line cannot
// add a target to such a rule, and template values are escaped as unit
// names when expanded (user john-doe: batch-john\x2ddoe.slice, not a slice
// below batch-john.slice). Unless Options.Systemd is set, such a
// destination is an error naming file:line.
//
// Matching: rules are indexed at load by uid (user rules, and @group rules
// under each member's uid), by gid (@group rules), by exact program name or
// path ("*:firefox") and "anyone" (*). A match merges the candidate lists by
// rule position, so its cost does not depend on the length of the list, only
// on how many candidates fail their process test: user and group rules with
// a process the task is not running, and prefix rules for anyone ("*:ssh*"),
// are tried one by one. Names lists the ids and process names the rules
// name, for a filter that drops events no rule can act on before any
// matching (the daemon's BPF event source filters in the kernel with it).
//
// API: rules is the one package of this module outside internal/, so that
// tools other than the daemon (an editor plug-in, a configuration linter, a
// deployment check) can parse and check cgrules.conf with the daemon's own
// reader, with the same file:line errors. Everything else is the daemon's
// implementation and lives under internal/.
//
// Privileges: none to parse or match. Load needs read access to the files;
// with Options.CheckTrust it refuses files that are not root-owned, are
// writable by others, or sit below a directory (any, up to "/") that someone
// other than root could change; that only makes sense when the caller runs as
// root.
// The NSS resolver talks to the system's name services (files, LDAP, SSSD)
// through cgo.
//
// Concurrency: a List never changes after Load or Parse returns; any number of
// goroutines may call its methods. Load and Parse themselves are safe to call
// concurrently as long as the Resolver is (NSS's is). Resolvers must be safe
// for concurrent use because Expand calls them from the caller's goroutines.
package rules
