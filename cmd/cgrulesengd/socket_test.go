package main

import (
	"bytes"
	"errors"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

func TestSocketOwner(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skipf("no user for this process: %v", err)
	}
	g, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Skipf("no group for gid %s: %v", me.Gid, err)
	}
	wantUID, _ := strconv.Atoi(me.Uid)
	wantGID, _ := strconv.Atoi(me.Gid)
	for _, c := range []struct {
		name        string
		user, group string
		uid, gid    int
		err         string
	}{
		{"neither", "", "", -1, -1, ""},
		{"names", me.Username, g.Name, wantUID, wantGID, ""},
		{"numbers", "4242", "4343", 4242, 4343, ""},
		{"unknown user", "cgre-no-such-user", "", -1, -1, `unknown socket owner: --socket-user "cgre-no-such-user"`},
		{"unknown group", "", "cgre-no-such-group", -1, -1, `unknown socket owner: --socket-group "cgre-no-such-group"`},
		{"not a number", "-5", "", -1, -1, "--socket-user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := options{socketUser: c.user, socketGroup: c.group}
			uid, gid, err := socketOwner(&o)
			if c.err != "" {
				if err == nil || !errors.Is(err, errSocketOwner) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || uid != c.uid || gid != c.gid {
				t.Fatalf("got %d:%d, %v; want %d:%d", uid, gid, err, c.uid, c.gid)
			}
		})
	}
}

// TestUnknownSocketOwnerExits3: libcgroup's daemon exits with status 3 for
// an unknown -u or -g; so does this one, before it detaches.
func TestUnknownSocketOwnerExits3(t *testing.T) {
	for _, args := range [][]string{{"-u", "cgre-no-such-user"}, {"-n", "-g", "cgre-no-such-group"}} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != 3 {
			t.Errorf("%q: exit status %d, want 3; stderr %q", args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "unknown socket owner") {
			t.Errorf("%q: stderr %q does not say why", args, stderr.String())
		}
	}
}
