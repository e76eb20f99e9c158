package sdbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

// TestIntegrationBoot boots a box, reaches its manager from the host by
// both addresses, finds a service's process by its pid in the box, sees a
// bound host directory inside, and checks that Close leaves nothing
// behind.
func TestIntegrationBoot(t *testing.T) {
	bind := t.TempDir()
	if err := os.WriteFile(filepath.Join(bind, "probe"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Boot(Options{Logf: t.Logf, Units: map[string]string{
		"cgre-probe.slice.d/50-weight.conf": "[Slice]\nCPUWeight=42\n",
	}, Binds: []string{bind}, HostDir: "/run"})
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			b.Close()
		}
	}()
	t.Logf("boot time %v", b.BootTime)
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", b.PID)); strings.TrimSpace(string(comm)) != "systemd" {
		t.Errorf("PID 1 of the box (host pid %d) is %q, not systemd", b.PID, comm)
	}
	if where, err := b.BoxCgroupOf(b.PID); err != nil || where != "/init.scope" {
		t.Errorf("PID 1 is in %q (%v), want /init.scope", where, err)
	}
	if out, err := b.Run("cat", "/proc/1/comm"); err != nil || strings.TrimSpace(out) != "systemd" {
		t.Errorf("inside the box, PID 1 is %q (%v)", out, err)
	}
	if w, err := b.Show("cgre-probe.slice", "CPUWeight"); err != nil || w != "42" {
		t.Errorf("the caller's drop-in: CPUWeight %q (%v), want 42", w, err)
	}
	// The host's timers must not run inside.
	if s, _ := b.Show("timers.target", "LoadState"); s != "masked" {
		t.Errorf("timers.target is %q, want masked", s)
	}
	for _, c := range []struct {
		addr  string
		hello bool
	}{{b.PrivateAddress, false}, {b.SystemBusAddress, true}} {
		v, err := managerVersion(c.addr, c.hello)
		if err != nil {
			t.Errorf("%s: %v", c.addr, err)
			continue
		}
		t.Logf("%s: systemd %s", c.addr, v)
	}

	// The host directory under /run (HostDir), the bound one inside
	// (read-only), and a service's MainPID found on the host.
	if !strings.HasPrefix(b.dir, "/run/"+Prefix) || !strings.HasPrefix(b.PrivateAddress, "unix:path=/run/"+Prefix) {
		t.Errorf("the box's directory %s, address %s: want them in /run", b.dir, b.PrivateAddress)
	}
	if out, err := b.Run("cat", filepath.Join(bind, "probe")); err != nil || out != "from the host\n" {
		t.Errorf("the bound directory inside: %q, %v", out, err)
	}
	if out, err := b.Run("touch", filepath.Join(bind, "x")); err == nil || !strings.Contains(out, "Read-only") {
		t.Errorf("the bound directory is writable inside: %q, %v", out, err)
	}
	if _, err := b.Run("sh", "-c", "echo inside > /run/cgre-probe"); err != nil {
		t.Fatal(err)
	}
	if data, err := b.ReadFile("/run/cgre-probe"); err != nil || string(data) != "inside\n" {
		t.Errorf("ReadFile: %q, %v", data, err)
	}
	if _, err := b.Run("systemd-run", "--quiet", "--unit=cgre-probe", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	mainPID, err := b.Show("cgre-probe.service", "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(mainPID)
	host, err := b.HostPID(n)
	if err != nil {
		t.Fatal(err)
	}
	if where, err := b.BoxCgroupOf(host); err != nil || where != "/system.slice/cgre-probe.service" || host == n {
		t.Errorf("HostPID(%d) = %d, in %q (%v): want the service's process", n, host, where, err)
	}
	if _, err := b.HostPID(1 << 22); err == nil {
		t.Errorf("HostPID of a pid nobody has: no error")
	}

	dir, cg, pid := b.dir, b.Cgroup, b.PID
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, p := range []string{dir, cg, "/proc/" + strconv.Itoa(pid)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Close (%v)", p, err)
		}
	}
}

func managerVersion(addr string, hello bool) (string, error) {
	conn, err := dbus.Dial(addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if hello {
		if err := conn.Hello(); err != nil {
			return "", fmt.Errorf("hello: %w", err)
		}
	}
	v, err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		GetProperty("org.freedesktop.systemd1.Manager.Version")
	if err != nil {
		return "", err
	}
	return v.Value().(string), nil
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/sys/fs/cgroup":         "/sys/fs/cgroup",
		`/mnt/a\040b`:            "/mnt/a b",
		`/mnt/tab\011x\134y`:     "/mnt/tab\tx\\y",
		`/mnt/not\escape\04`:     `/mnt/not\escape\04`,
		`/mnt/bad\999/ok\040end`: `/mnt/bad\999/ok end`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
