//go:build cgo

package rules

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
)

// TestGroupBufferGrows starts getgr*_r with a buffer too small for any entry
// so that the ERANGE retry runs.
func TestGroupBufferGrows(t *testing.T) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Skip(err)
	}
	want, ok := findGroup(data, func(g *Group) bool { return len(g.Members) > 0 })
	if !ok {
		want, ok = findGroup(data, func(*Group) bool { return true })
	}
	if !ok {
		t.Skip("empty /etc/group")
	}
	firstGroupBuf = 8
	defer func() { firstGroupBuf = 0 }()
	g, err := lookupGroup(want.Name)
	if err != nil || g.GID != want.GID || !equalStrings(g.Members, want.Members) {
		t.Fatalf("lookupGroup(%q) = %+v, %v; /etc/group says %+v", want.Name, g, err, want)
	}
	g, err = lookupGroupID(want.GID)
	if err != nil || g.GID != want.GID {
		t.Fatalf("lookupGroupID(%d) = %+v, %v", want.GID, g, err)
	}
}

// TestUserBufferGrows starts getpw*_r with a buffer too small for any
// entry so that the ERANGE retry runs.
func TestUserBufferGrows(t *testing.T) {
	firstUserBuf = 8
	defer func() { firstUserBuf = 0 }()
	u, err := lookupUserID(0)
	if err != nil || u.Name == "" || u.UID != 0 {
		t.Fatalf("lookupUserID(0) = %+v, %v", u, err)
	}
	byName, err := lookupUser(u.Name)
	if err != nil || byName != u {
		t.Fatalf("lookupUser(%q) = %+v, %v; want %+v", u.Name, byName, err, u)
	}
	if _, err := lookupUser("cgre-no-such-user"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown user: %v, want ErrNotFound", err)
	}
}

// TestLookupOutOfDescriptors (issue 19): a look-up made while the process
// has no descriptor left fails with EMFILE, not "not found", and is not
// cached: NSS opens /etc/passwd (or a socket to sssd or nscd) each time,
// and with "files systemd" the C library then answers "not found" with no
// error at all (os/user also hid the errno of the errors it did report).
// The engine can then treat the classification that needed it as lost and
// repair it, and a reload fails instead of skipping the rule. Once
// descriptors are free again, the same resolver finds the accounts.
func TestLookupOutOfDescriptors(t *testing.T) {
	// Not root or nobody: nss_systemd makes those up without any I/O.
	data, err := os.ReadFile("/etc/passwd")
	if err != nil || !strings.Contains(string(data), "\ndaemon:x:1:1:") {
		t.Skip("this test needs the usual daemon:x:1:1: account in /etc/passwd")
	}
	r := NSS()
	if _, err := lookupUserID(0); err != nil { // the C library's NSS set up beforehand
		t.Fatal(err)
	}
	lookups := map[string]func() error{
		"uid 1":        func() error { _, err := r.UserByID(1); return err },
		"user daemon":  func() error { _, err := r.UserByName("daemon"); return err },
		"gid 1":        func() error { _, err := r.GroupByID(1); return err },
		"group daemon": func() error { _, err := r.GroupByName("daemon"); return err },
	}
	t.Run("no descriptor free", func(t *testing.T) {
		fdtest.Exhaust(t, 0)
		for what, f := range lookups {
			err := f()
			if !errors.Is(err, unix.EMFILE) || errors.Is(err, ErrNotFound) {
				t.Errorf("%s: %v, want EMFILE", what, err)
			}
		}
		if _, err := r.UserByID(2111222333); !errors.Is(err, unix.EMFILE) {
			t.Errorf("an unknown uid: %v, want EMFILE", err)
		}
	})
	for what, f := range lookups {
		if err := f(); err != nil {
			t.Errorf("%s, descriptors free again: %v", what, err)
		}
	}
	if _, err := r.UserByID(2111222333); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown uid, descriptors free again: %v, want ErrNotFound", err)
	}
}
