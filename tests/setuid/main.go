// Command setuid is the test harness of the rules engine daemon's end-to-end
// tests, after libcgroup's tests/setuid.c.
//
// It changes its credentials, prints its pid on standard output (one line,
// "PID\n") and then idles until it is killed, so that the daemon sees a UID or
// GID event from a process that a test started and can watch:
//
//	setuid [-u USER|UID] [-g GROUP|GID] [-delay DUR] [-die-with-parent] [-exec PATH [ARG...]]
//
// Without -u and -g it changes its uid to root (uid 0), as the original
// harness did. -g alone changes only the gid. With both, the gid is changed
// first, then the uid. Every change sets the real, effective and saved id
// (setresuid/setresgid semantics) on all threads of the process. User and
// group names are looked up through os/user (NSS); a number is used as is.
// Supplementary groups are left as they are.
//
// SIGTERM and SIGINT make it exit with status 0. Errors go to standard error
// and make it exit with status 1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	// Keep main on the main thread: the parent-death signal set by
	// -die-with-parent belongs to the calling thread, and it must be the
	// thread that calls execve for the setting to survive -exec.
	runtime.LockOSThread()
}

const usageText = `usage: setuid [-u USER|UID] [-g GROUP|GID] [-delay DUR] [-die-with-parent] [-exec PATH [ARG...]]

Changes the uid and/or gid of this process (real, effective and saved, on all
threads), prints its pid on standard output as one line, then idles until it
gets SIGTERM or SIGINT (exit status 0). Without -u and -g the uid is changed to
root (0). With both, the gid is changed first. Errors: standard error, status 1.

Options:
  -u USER|UID         user name (looked up through NSS) or numeric uid
  -g GROUP|GID        group name (looked up through NSS) or numeric gid
  -delay DUR          wait this long (Go duration, e.g. 500ms) before the change
  -die-with-parent    after the change, ask the kernel for SIGKILL when the
                      parent exits (PR_SET_PDEATHSIG; survives -exec), so that
                      a crashed test leaves no harness behind
  -exec PATH [ARG...] after the change and the pid line, execve PATH with the
                      arguments that follow (argv[0] is PATH); everything after
                      PATH belongs to the program, even words that look like
                      options. The pid stays the same.
  -h                  this help
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Everything after "-exec PATH" belongs to the program to run.
	var execArgv []string
	for i, a := range args {
		if a == "-exec" || a == "--exec" {
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "setuid: -exec needs a program path")
				return 1
			}
			execArgv = args[i+1:]
			args = args[:i]
			break
		}
	}

	fs := flag.NewFlagSet("setuid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	userArg := fs.String("u", "", "user name or uid")
	groupArg := fs.String("g", "", "group name or gid")
	delay := fs.Duration("delay", 0, "wait before the change")
	dieWithParent := fs.Bool("die-with-parent", false, "SIGKILL when the parent exits")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "setuid: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 1
	}

	uid, gid := -1, -1
	if *userArg != "" {
		id, err := lookupUser(*userArg)
		if err != nil {
			fmt.Fprintf(stderr, "setuid: %v\n", err)
			return 1
		}
		uid = id
	}
	if *groupArg != "" {
		id, err := lookupGroup(*groupArg)
		if err != nil {
			fmt.Fprintf(stderr, "setuid: %v\n", err)
			return 1
		}
		gid = id
	}
	if uid < 0 && gid < 0 {
		uid = 0 // the original harness's default: become root
	}
	if execArgv != nil {
		// Resolve the program before the change, so that a lookup error is
		// reported before anything happened.
		p, err := exec.LookPath(execArgv[0])
		if err != nil {
			fmt.Fprintf(stderr, "setuid: -exec: %v\n", err)
			return 1
		}
		execArgv[0] = p
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if *delay > 0 {
		select {
		case <-time.After(*delay):
		case <-sigs:
			return 0
		}
	}

	ppid := os.Getppid()
	// Go's syscall.Setres[ug]id apply the change to every thread (since
	// go1.16), as glibc's do.
	if gid >= 0 {
		if err := syscall.Setresgid(gid, gid, gid); err != nil {
			fmt.Fprintf(stderr, "setuid: setresgid(%d): %v\n", gid, err)
			return 1
		}
	}
	if uid >= 0 {
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			fmt.Fprintf(stderr, "setuid: setresuid(%d): %v\n", uid, err)
			return 1
		}
	}
	if *dieWithParent {
		// A credential change clears the parent-death signal: set it now.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			fmt.Fprintf(stderr, "setuid: prctl(PR_SET_PDEATHSIG): %v\n", err)
			return 1
		}
		if os.Getppid() != ppid {
			return 1 // the parent is already gone
		}
	}

	// os.Stdout is not buffered: the line is written by this one call.
	if _, err := fmt.Fprintf(stdout, "%d\n", os.Getpid()); err != nil {
		fmt.Fprintf(stderr, "setuid: writing the pid: %v\n", err)
		return 1
	}

	if execArgv != nil {
		signal.Reset(syscall.SIGTERM, syscall.SIGINT)
		err := syscall.Exec(execArgv[0], execArgv, os.Environ())
		fmt.Fprintf(stderr, "setuid: exec %s: %v\n", execArgv[0], err)
		return 1
	}

	<-sigs
	return 0
}

func lookupUser(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return -1, err
	}
	n, err := strconv.Atoi(u.Uid)
	if err != nil {
		return -1, fmt.Errorf("user %s: uid %q: %v", s, u.Uid, err)
	}
	return n, nil
}

func lookupGroup(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return -1, err
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %s: gid %q: %v", s, g.Gid, err)
	}
	return n, nil
}
