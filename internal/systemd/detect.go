package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

// Detection is what --systemd=auto found on this machine. Everything in it
// is probed from the running system, never inferred from a version.
type Detection struct {
	// Systemd is true when PID 1 is a booted systemd and the cgroup2
	// hierarchy is its: slice destinations are then placed through it.
	Systemd bool
	// Reason says why not (or, when Systemd, what was found), for the log.
	Reason string
	// PID1 is PID 1's name (/proc/1/comm).
	PID1 string
	// Cgroup2 is where the cgroup2 hierarchy is mounted ("" if nowhere).
	Cgroup2 string
	// InitCgroup is PID 1's cgroup2 path ("/init.scope" under systemd).
	InitCgroup string
}

// Detect probes, below root ("/" on a live system; a fixture tree in
// tests) and in the daemon's cgroup layout, whether PID 1 is systemd and
// owns the cgroup2 hierarchy:
//   - /run/systemd/system is a directory (sd_booted(3): systemd creates it
//     when it boots as PID 1), and /proc/1/comm is "systemd";
//   - a cgroup2 hierarchy is mounted (pure v2 at /sys/fs/cgroup, or hybrid
//     beside v1), and PID 1 sits in it at /init.scope, where systemd puts
//     itself: its tree.
func Detect(root string, layout *cgroupfs.Layout) (Detection, error) {
	var d Detection
	comm, err := os.ReadFile(filepath.Join(root, "proc/1/comm"))
	if err != nil {
		return d, fmt.Errorf("reading PID 1's name: %w", err)
	}
	d.PID1 = strings.TrimSpace(string(comm))
	if layout != nil && layout.Unified != nil {
		d.Cgroup2 = layout.Unified.Mountpoint
	}
	if cg, err := os.ReadFile(filepath.Join(root, "proc/1/cgroup")); err == nil {
		d.InitCgroup = unifiedPath(cg)
	} else if !errors.Is(err, os.ErrPermission) {
		return d, fmt.Errorf("reading PID 1's cgroups: %w", err)
	}
	fi, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	booted := err == nil && fi.IsDir()
	switch {
	case d.PID1 != "systemd":
		d.Reason = fmt.Sprintf("PID 1 is %q, not systemd", d.PID1)
	case !booted:
		d.Reason = "PID 1 is named systemd but /run/systemd/system does not exist (not booted with systemd)"
	case d.Cgroup2 == "":
		d.Reason = "no cgroup2 hierarchy is mounted (systemd runs in legacy cgroup v1 mode)"
	case d.InitCgroup != "/init.scope":
		d.Reason = fmt.Sprintf("PID 1 is in cgroup2 %q, not /init.scope: the cgroup2 hierarchy is not systemd's", d.InitCgroup)
	default:
		d.Systemd = true
		d.Reason = fmt.Sprintf("PID 1 is systemd, booted, in /init.scope of the cgroup2 hierarchy at %s", d.Cgroup2)
	}
	return d, nil
}

// unifiedPath is the "0::" line's path of /proc/PID/cgroup bytes. Pure.
func unifiedPath(cgroup []byte) string {
	for _, line := range bytes.Split(cgroup, []byte("\n")) {
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			return string(p)
		}
	}
	return ""
}

// XattrFunc reads an extended attribute (unix.Getxattr's shape, returning
// the value); tests substitute a table.
type XattrFunc func(path, name string) ([]byte, error)

// Getxattr reads an extended attribute of a file with getxattr(2).
func Getxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// Managed reports whether systemd manages the cgroup rel (a path in the
// cgroup2 hierarchy mounted at mount, "/a/b"), so that a raw write there
// would happen behind systemd's back. It does not when rel is at or below
// cgroupRoot (the daemon's --cgroup-root: a subtree the admin gave the
// daemon), or at or below a cgroup systemd delegated: one marked with the
// trusted.delegate or user.delegate extended attribute (systemd 251+ sets
// both; user.* can be read without CAP_SYS_ADMIN, which trusted.* needs).
// delegatedAt names the delegated cgroup found. rel need not exist (a
// templated destination): its existing ancestors decide.
//
// When neither attribute can be read on some ancestor (trusted.* refused
// and user.* not supported), and none is found delegated, the answer is
// managed with an error saying why it may be wrong.
func Managed(mount, rel, cgroupRoot string, getxattr XattrFunc) (managed bool, delegatedAt string, err error) {
	rel = path.Clean("/" + rel)
	if cgroupRoot != "" && cgroupRoot != "/" {
		r := path.Clean("/" + cgroupRoot)
		if rel == r || strings.HasPrefix(rel, r+"/") {
			return false, "", nil
		}
	}
	var blind error // why some ancestor could not be read
	for p := rel; p != "/"; p = path.Dir(p) {
		full := filepath.Join(mount, p)
		var refused error
		read := 0
		for _, name := range []string{"trusted.delegate", "user.delegate"} {
			v, err := getxattr(full, name)
			switch {
			case err == nil && strings.TrimSpace(string(v)) == "1":
				return false, p, nil
			case err == nil, errors.Is(err, unix.ENODATA):
				read++
			case errors.Is(err, unix.ENOENT), errors.Is(err, os.ErrNotExist):
				read = 2 // no such cgroup: nothing to read, nothing hidden
			case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EOPNOTSUPP):
				// trusted.* needs CAP_SYS_ADMIN; user.* on cgroupfs
				// needs Linux 5.7 (and systemd 251 to be set).
				if refused == nil {
					refused = fmt.Errorf("reading %s of %s: %w", name, full, err)
				}
			default:
				return true, "", fmt.Errorf("reading %s of %s: %w", name, full, err)
			}
		}
		if read == 0 && blind == nil {
			blind = refused
		}
	}
	return true, "", blind
}
