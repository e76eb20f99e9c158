package main

// The --check and --explain commands: they load the rules exactly as the
// daemon does (same files, same trust check, same controller list) and then
// report instead of running, so an admin can validate a change before
// sending the reload signal.

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"

	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// checkFunc adds the daemon's own load-time diagnostics to a loaded list
// (managedDiags: raw destinations in cgroups systemd manages); nil adds
// none.
type checkFunc func(*rules.List) rules.Diagnostics

// runCheck loads the rules and prints every diagnostic as "file:line:
// message" to stdout, extra's after the parser's; it returns 0 when the
// rules load (warnings allowed) and 1 when they do not. A one-line summary
// goes to stderr so that stdout holds diagnostics only.
func runCheck(stdout, stderr io.Writer, mainFile, dropinDir string, opt rules.Options, extra checkFunc) int {
	if opt.Resolver == nil {
		opt.Resolver = rules.NSS()
	}
	l, ds, err := rules.Load(mainFile, dropinDir, opt)
	if err == nil && extra != nil {
		ds = append(ds, extra(l)...)
	}
	for _, d := range ds {
		fmt.Fprintln(stdout, d)
	}
	nerr, nwarn := len(ds.Errors()), len(ds.Warnings())
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: rules not loaded: %s, %s\n", plural(nerr, "error"), plural(nwarn, "warning"))
		return 1
	}
	fmt.Fprintf(stderr, "cgrulesengd: %s loaded, %s\n", plural(l.Len(), "rule"), plural(nwarn, "warning"))
	return 0
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// runExplain prints which rule applies to a task with the given user
// (NAME or UID), group ("" = the user's primary group; NAME or GID) and
// process ("" = none): "# rule FILE:LINE: TEXT", comment lines for options
// and unexpanded templates, then one "controller<TAB>/destination" line per
// target, the path as /proc/PID/cgroup shows it: below root (--cgroup-root),
// since destinations are relative to it. A slice target names the slice
// and the scope the task would join, and prints "*" with the scope's
// cgroup path as the manager's hierarchy shows it (slices are not below
// --cgroup-root). Exit status: 0 a rule matched, 1 none did, 2 usage or
// rules error (on stderr, with file:line).
func runExplain(stdout, stderr io.Writer, mainFile, dropinDir string, opt rules.Options, extra checkFunc, root, user, group, process string) int {
	if user == "" {
		fmt.Fprintln(stderr, "cgrulesengd: --explain needs --user NAME|UID")
		return 2
	}
	if opt.Resolver == nil {
		opt.Resolver = rules.NSS()
	}
	l, ds, err := rules.Load(mainFile, dropinDir, opt)
	if err == nil && extra != nil {
		ds = append(ds, extra(l)...)
	}
	// Warnings go to stderr too: "user peter not found, rule skipped" is
	// often the answer to "why did my rule not apply".
	for _, d := range ds {
		fmt.Fprintln(stderr, d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: rules not loaded: %s\n", plural(len(ds.Errors()), "error"))
		return 2
	}
	task, err := explainTask(opt.Resolver, user, group, process)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		return 2
	}
	r := l.Match(&task)
	if r == nil {
		fmt.Fprintf(stdout, "# no rule matches uid %d gid %d process %q\n", task.UID, task.GID, task.Process)
		return 1
	}
	fmt.Fprintf(stdout, "# rule %s:%d: %s\n", r.File, r.Line, r.Text)
	if r.Ignore || r.IgnoreRT {
		next := "no later rule matches"
		if n := l.MatchAfter(&task, r.Index); n != nil {
			next = fmt.Sprintf("next match: %s:%d: %s", n.File, n.Line, n.Text)
		}
		if r.Ignore {
			fmt.Fprintf(stdout, "# option ignore: a task already at or below these destinations stays where it is; elsewhere this rule is skipped (%s)\n", next)
		}
		if r.IgnoreRT {
			fmt.Fprintf(stdout, "# option ignore_rt: a realtime task already at or below these destinations stays where it is; a realtime task elsewhere skips this rule (%s); other tasks are moved\n", next)
		}
	}
	// ExpandPreview keeps %p and %P when there is no process or pid to
	// take them from, instead of failing: explain describes a task that
	// does not exist.
	res, err := l.ExpandPreview(r, &task, nil)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		return 2
	}
	for i := range r.Targets {
		t := &r.Targets[i]
		if t.Uses('p') && task.Process == "" {
			fmt.Fprintf(stdout, "# %s:%d: %%p left as is: no --process given\n", t.File, t.Line)
		}
		if t.Uses('P') {
			fmt.Fprintf(stdout, "# %s:%d: %%P (the pid) left as is\n", t.File, t.Line)
		}
	}
	if len(res) == 0 {
		fmt.Fprintln(stdout, "# no targets: none of this rule's controllers is available here; the task is left where it is")
	}
	for _, x := range res {
		if x.Slice {
			slice := path.Base(x.Path)
			scope := systemd.ScopeName(slice, task.UID)
			fmt.Fprintf(stdout, "# %s:%d: systemd slice %s: the service manager puts the task into scope %s (one delegated scope per slice and user, started by the first task, joined by the next)\n",
				x.Target.File, x.Target.Line, slice, scope)
			fmt.Fprintf(stdout, "*\t%s\n", path.Join("/", x.Path, scope))
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", x.Controller, path.Join("/", root, x.Path))
	}
	return 0
}

// explainTask builds the task --explain describes. A name is tried before a
// number, as chown(1) does, since an all-digit account name is legal.
func explainTask(res rules.Resolver, user, group, process string) (rules.Task, error) {
	t := rules.Task{Process: process}
	primary, havePrimary := uint32(0), false
	u, err := res.UserByName(user)
	switch {
	case err == nil:
		t.UID, primary, havePrimary = u.UID, u.GID, true
	case !errors.Is(err, rules.ErrNotFound):
		return t, fmt.Errorf("looking up user %q: %w", user, err)
	default:
		uid, perr := strconv.ParseUint(user, 10, 32)
		if perr != nil {
			return t, fmt.Errorf("unknown user %q", user)
		}
		t.UID = uint32(uid)
		u, err := res.UserByID(t.UID)
		switch {
		case err == nil:
			primary, havePrimary = u.GID, true
		case !errors.Is(err, rules.ErrNotFound):
			return t, fmt.Errorf("looking up uid %d: %w", uid, err)
		}
	}
	if group == "" {
		if !havePrimary {
			return t, fmt.Errorf("uid %d has no account, so no primary group: give --group", t.UID)
		}
		t.GID = primary
		return t, nil
	}
	g, err := res.GroupByName(group)
	switch {
	case err == nil:
		t.GID = g.GID
	case !errors.Is(err, rules.ErrNotFound):
		return t, fmt.Errorf("looking up group %q: %w", group, err)
	default:
		// A task can run with a gid that has no group entry.
		gid, perr := strconv.ParseUint(group, 10, 32)
		if perr != nil {
			return t, fmt.Errorf("unknown group %q", group)
		}
		t.GID = uint32(gid)
	}
	return t, nil
}
