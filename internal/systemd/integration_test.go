package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// startTasks starts a service in the box running n sleeping processes and
// returns their host pids (the service's shell excluded).
func startTasks(t testing.TB, b *sdbox.Box, unit string, n int) []int {
	t.Helper()
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do sleep 1000 & i=$((i+1)); done; exec sleep 1000", n)
	if _, err := b.Run("systemd-run", "--quiet", "--unit="+unit, "--property=KillMode=control-group", "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	cg := "/system.slice/" + unit + ".service"
	deadline := time.Now().Add(60 * time.Second)
	for {
		pids, err := b.HostPIDs(cg)
		if err == nil && len(pids) == n+1 {
			// The service's main process execs the last sleep: leave it
			// out, it is the service's MainPID.
			main, err := b.Show(unit+".service", "MainPID")
			if err != nil {
				t.Fatal(err)
			}
			var out []int
			for _, p := range pids {
				if nspid(t, p) != main {
					out = append(out, p)
				}
			}
			if len(out) != n {
				t.Fatalf("%d tasks besides MainPID %s, want %d", len(out), main, n)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d processes (%v), want %d", cg, len(pids), err, n+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nspid is a host pid's pid in its innermost namespace.
func nspid(t testing.TB, pid int) string {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := parseNSpid(status)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(ns[len(ns)-1])
}

func dialBox(t testing.TB, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestIntegrationPlaceTask: a task of a service in the box is placed into
// x.slice through each kind of address; the kernel, GetUnitByPID and
// systemctl status agree.
func TestIntegrationPlaceTask(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	for i, addr := range []string{b.PrivateAddress, b.SystemBusAddress} {
		c := dialBox(t, addr)
		if c.hello != (i == 1) {
			t.Errorf("%s: Hello detected %v", addr, c.hello)
		}
		if d := c.ns.Depth(); d != 1 {
			t.Errorf("%s: manager at depth %d, want 1", addr, d)
		}
		pids := startTasks(t, b, fmt.Sprintf("cgre-src%d", i), 1)
		scope := fmt.Sprintf("cgre-test-%d.scope", i)
		res, err := c.StartScope(context.Background(), scope, pids, ScopeOptions{Slice: "x.slice"})
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if res.Unit != scope {
			t.Errorf("result unit %q", res.Unit)
		}
		where, err := b.BoxCgroupOf(pids[0])
		if err != nil || where != "/x.slice/"+scope {
			t.Errorf("kernel: pid %d in %q (%v), want /x.slice/%s", pids[0], where, err, scope)
		}
		unit, err := c.UnitOf(context.Background(), pids[0])
		if err != nil || unit != scope {
			t.Errorf("GetUnitByPID: %q (%v), want %s", unit, err, scope)
		}
		st, err := b.Systemctl("status", scope)
		if err != nil || !strings.Contains(st, "sleep 1000") || !strings.Contains(st, nspid(t, pids[0])) {
			t.Errorf("systemctl status %s: %v\n%s", scope, err, st)
		}
		// Placing into an existing name is a typed error.
		_, err = c.StartScope(context.Background(), scope, pids, ScopeOptions{Slice: "x.slice"})
		if !errors.Is(err, ErrUnitExists) {
			t.Errorf("second StartScope %s: %v, want ErrUnitExists", scope, err)
		}
	}
}
