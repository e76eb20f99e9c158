package rules

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// The system's root account exists everywhere these tests run; anything
// else about the machine's accounts is not assumed.
func TestNSSRoot(t *testing.T) {
	n := NSS()
	u, err := n.UserByName("root")
	if err != nil {
		t.Skipf("no root user via NSS: %v", err)
	}
	if u.UID != 0 || u.Name != "root" {
		t.Errorf("root = %+v", u)
	}
	if u, err := n.UserByID(0); err != nil || u.Name == "" {
		t.Errorf("UserByID(0) = %+v, %v", u, err)
	}
	g, err := n.GroupByID(0)
	if err != nil || g.GID != 0 || g.Name == "" {
		t.Fatalf("GroupByID(0) = %+v, %v", g, err)
	}
	if g2, err := n.GroupByName(g.Name); err != nil || g2.GID != 0 {
		t.Errorf("GroupByName(%q) = %+v, %v", g.Name, g2, err)
	}
}

func TestNSSNotFound(t *testing.T) {
	n := NSS()
	for _, name := range []string{"no-such-user-cgre-test", "", "ro\x00ot"} {
		if _, err := n.UserByName(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("UserByName(%q): %v, want ErrNotFound", name, err)
		}
		if _, err := n.GroupByName(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("GroupByName(%q): %v, want ErrNotFound", name, err)
		}
	}
	if _, err := n.UserByID(4000000123); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByID: %v, want ErrNotFound", err)
	}
	if _, err := n.GroupByID(4000000123); !errors.Is(err, ErrNotFound) {
		t.Errorf("GroupByID: %v, want ErrNotFound", err)
	}
}

// TestNSSGroupMembers cross-checks member lists with /etc/group for a group
// that has members there (the files module is first in every nsswitch.conf
// this runs on; skipped when no such group exists).
func TestNSSGroupMembers(t *testing.T) {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Skip(err)
	}
	want, ok := findGroup(data, func(g *Group) bool { return len(g.Members) > 0 })
	if !ok {
		t.Skip("no group with members in /etc/group")
	}
	got, err := NSS().GroupByName(want.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.GID != want.GID || !equalStrings(got.Members, want.Members) {
		t.Errorf("NSS %+v, /etc/group %+v", got, want)
	}
}

// TestNSSConcurrent: goroutines sharing one resolver get the answers one
// goroutine gets, found and not found, and the cache keeps each name and
// id once (run with -race).
func TestNSSConcurrent(t *testing.T) {
	// The answers of a resolver used by one goroutine are the reference.
	ref := NSS()
	rootU, err := ref.UserByName("root")
	if err != nil {
		t.Skipf("no root user via NSS: %v", err)
	}
	rootID, errID := ref.UserByID(0)
	group0, errG := ref.GroupByID(0)
	_, errNone := ref.GroupByName("no-such-group-cgre-test")
	if !errors.Is(errNone, ErrNotFound) {
		t.Fatalf("GroupByName(no-such-group-cgre-test): %v, want ErrNotFound", errNone)
	}
	// Eight goroutines share a fresh resolver: its cache fills under
	// contention, and every answer must be the reference's.
	n := NSS()
	var wg sync.WaitGroup
	errs := make(chan string, 8*50*4)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if u, err := n.UserByName("root"); err != nil || u != rootU {
					errs <- fmt.Sprintf("UserByName(root) = %+v, %v; want %+v", u, err, rootU)
				}
				if u, err := n.UserByID(0); (err == nil) != (errID == nil) || u != rootID {
					errs <- fmt.Sprintf("UserByID(0) = %+v, %v; want %+v, %v", u, err, rootID, errID)
				}
				if g, err := n.GroupByID(0); (err == nil) != (errG == nil) || g.Name != group0.Name || g.GID != group0.GID || !slices.Equal(g.Members, group0.Members) {
					errs <- fmt.Sprintf("GroupByID(0) = %+v, %v; want %+v, %v", g, err, group0, errG)
				}
				if _, err := n.GroupByName("no-such-group-cgre-test"); !errors.Is(err, ErrNotFound) {
					errs <- fmt.Sprintf("GroupByName(no-such-group-cgre-test): %v, want ErrNotFound", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Each name and id was looked up once and kept (a not-found answer too).
	c := n.(*nss)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.usersByName) != 1 || len(c.usersByID) != 1 || len(c.groupsByName) != 2 || len(c.groupsByID) != 1 {
		t.Errorf("cache: %d users by name, %d by id, %d groups by name, %d by id; want 1, 1, 2 (the root group and the missing one), 1",
			len(c.usersByName), len(c.usersByID), len(c.groupsByName), len(c.groupsByID))
	}
}

func TestNSSCache(t *testing.T) {
	now := time.Unix(1000, 0)
	n := NSS().(*nss)
	n.now = func() time.Time { return now }
	calls := 0
	errDown := errors.New("ldap down")
	answer := map[string]error{"alice": nil, "ghost": ErrNotFound, "flaky": errDown}
	fetch := func(name string) (User, error) {
		calls++
		if err := answer[name]; err != nil {
			return User{}, err
		}
		return User{Name: name, UID: 1000}, nil
	}
	get := func(name string) error {
		_, err := lookup(n, n.usersByName, name, fetch, func(u User) { n.usersByID[u.UID] = cached[User]{v: u} })
		return err
	}
	for _, step := range []struct {
		name      string
		advance   time.Duration
		wantCalls int
		wantErr   error
	}{
		{"alice", 0, 1, nil},
		{"alice", time.Hour, 1, nil}, // found: kept
		{"ghost", 0, 2, ErrNotFound},
		{"ghost", negativeTTL - time.Second, 2, ErrNotFound}, // not found: kept a while
		{"ghost", 2 * time.Second, 3, ErrNotFound},           // ... then asked again
		{"flaky", 0, 4, errDown},
		{"flaky", 0, 5, errDown}, // failures are not cached
	} {
		now = now.Add(step.advance)
		err := get(step.name)
		if !errors.Is(err, step.wantErr) || (step.wantErr == nil && err != nil) || calls != step.wantCalls {
			t.Fatalf("%s after %v: err %v calls %d, want %v %d", step.name, step.advance, err, calls, step.wantErr, step.wantCalls)
		}
	}
	if c, ok := n.usersByID[1000]; !ok || c.v.Name != "alice" {
		t.Errorf("found user not cached by id: %+v", c)
	}
}

func TestParseGroupLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Group
		ok   bool
	}{
		{"members", "students:x:2000:alice,bob", Group{Name: "students", GID: 2000, Members: []string{"alice", "bob"}}, true},
		{"no members", "users:x:100:", Group{Name: "users", GID: 100}, true},
		{"empty member entries", "g:x:5:,a,,b,", Group{Name: "g", GID: 5, Members: []string{"a", "b"}}, true},
		{"bad gid", "g:x:abc:a", Group{}, false},
		{"gid out of range", "g:x:4294967296:a", Group{}, false},
		{"too few fields", "g:x:5", Group{}, false},
		{"NIS compat entry", "+:::", Group{}, false},
		{"empty name", ":x:5:", Group{}, false},
		{"comment-ish", "# not a group", Group{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseGroupLine(tc.line)
			if ok != tc.ok || got.Name != tc.want.Name || got.GID != tc.want.GID || !equalStrings(got.Members, tc.want.Members) {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	data := []byte("a:x:1:\nbroken\nb:x:2:u\nb:x:3:v\n")
	if g, ok := findGroup(data, func(g *Group) bool { return g.Name == "b" }); !ok || g.GID != 2 {
		t.Errorf("findGroup = %+v %v, want the first b", g, ok)
	}
}
