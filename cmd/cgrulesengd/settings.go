package main

// --check-settings: the check the systemd unit runs (ExecStartPre) on the
// service's settings files before the daemon starts. systemd reads them as
// an EnvironmentFile and passes every variable in them to the daemon, as
// root: OPTIONS is the daemon's command line, and a file someone else
// could write could turn the rules off (--cgroup-root=/nowhere, -Q) or let
// users pin their own processes (--socket-group). The rule is the one the
// SysV script applies to the same files and the daemon to its rules files:
// the file, and every directory on the way to it, root's alone.
//
// The loader's variables (LD_PRELOAD and the rest of glibc's list of
// variables it ignores in set-uid programs) are dropped by the unit's
// UnsetEnvironment=, so that a hostile file cannot run code in this check
// (or the daemon) before the check refuses it.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
)

// exitUntrustedSettings is --check-settings' exit status for a file that
// someone other than root could have written: LSB's "program is not
// configured", as the SysV script's start.
const exitUntrustedSettings = 6

// runCheckSettings checks each settings file; a file that does not exist
// is fine (the unit reads them with EnvironmentFile=-). Run as root, root
// alone is trusted; otherwise (tests) the caller's own uid too.
func runCheckSettings(stderr io.Writer, files []string) int {
	pol := trust.Policy{Owner: uint32(os.Geteuid())}
	rc := 0
	for _, name := range files {
		err := checkSettingsFile(name, pol)
		switch {
		case err == nil:
		case errors.Is(err, trust.ErrUntrusted):
			fmt.Fprintf(stderr, "cgrulesengd: settings file %s refused: %v; the service gives its variables (OPTIONS: the daemon's flags) to the daemon, which runs as root: make it root's alone (chown root %s; chmod go-w %s)\n", name, err, name, name)
			rc = exitUntrustedSettings
		default:
			fmt.Fprintf(stderr, "cgrulesengd: settings file %s: %v\n", name, err)
			if rc == 0 {
				rc = 1
			}
		}
	}
	return rc
}

// checkSettingsFile opens name (without blocking on a FIFO) and checks the
// opened file, so that what is checked is what systemd reads.
func checkSettingsFile(name string, pol trust.Policy) error {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot open: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return pol.Check(name, trust.MetaOf(fi))
}
