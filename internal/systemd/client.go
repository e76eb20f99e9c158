package systemd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
)

// DefaultAddress is the manager's private socket: no bus daemon, no Hello.
const DefaultAddress = "unix:path=/run/systemd/private"

// Config configures a Client.
type Config struct {
	// Address is a D-Bus address of the manager: its private socket (the
	// default), a socket proxied to it, or a message bus it is on (which
	// needs a Hello: detected). Only unix:path= addresses are supported:
	// the manager's pid namespace is found through the socket's peer.
	Address string
	// Proc is the /proc the daemon sees (default "/proc").
	Proc string
	// CallTimeout bounds one operation: the call and, for a new scope,
	// its start job (default 10 s).
	CallTimeout time.Duration
	// PIDFDs: "auto" (default: used when the manager accepts them,
	// probed once per connection), "off".
	PIDFDs string
}

// Client is a connection to one service manager, re-established on demand
// when it drops (daemon-reexec closes every client connection).
type Client struct {
	cfg  Config
	path string // the socket's file
	life context.Context
	end  context.CancelFunc // ends life: Close

	mu   sync.Mutex
	conn *sddbus.Conn
	ns   *PIDNamespace
	// root is the manager's root cgroup in the daemon's cgroup2 view
	// ("/" when both share a cgroup namespace; "/cgre-sdbox-x" for a
	// manager in a cgroup namespace of its own); rootErr why unknown.
	root    string
	rootErr error
	hello   bool
	gen     uint64
	// pidfds: 0 not probed on this connection, 1 accepted, 2 refused.
	pidfds int32
	closed bool

	reconnects atomic.Uint64
}

// Dial connects to the manager at cfg.Address. A bad address or an
// unreachable manager is an error here, so that a daemon started with a
// wrong --systemd-bus says so at once.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	switch cfg.PIDFDs {
	case "", "auto", "off":
	default:
		return nil, &Error{Op: "dial", Kind: ErrInvalid, Err: fmt.Errorf("PIDFDs %q: want auto or off", cfg.PIDFDs)}
	}
	if err := CheckAddress(cfg.Address); err != nil {
		return nil, &Error{Op: "dial", Kind: ErrInvalid, Err: err}
	}
	path, err := socketPath(cfg.Address)
	if err != nil {
		return nil, &Error{Op: "dial", Kind: ErrInvalid, Err: err}
	}
	c := &Client{cfg: cfg, path: path}
	c.life, c.end = context.WithCancel(context.Background())
	if _, _, err := c.get(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckAddress reports whether addr is an address Dial takes: "" (the
// default, DefaultAddress) or unix:path=FILE (with D-Bus's %XX escapes and
// other key=value pairs beside path). It does not connect.
func CheckAddress(addr string) error {
	if addr == "" {
		return nil
	}
	p, err := socketPath(addr)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("address %q: the socket's path must be absolute", addr)
	}
	return nil
}

// socketPath extracts the file of a unix:path= address.
func socketPath(addr string) (string, error) {
	rest, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return "", fmt.Errorf("address %q: only unix:path=FILE addresses are supported", addr)
	}
	for _, kv := range strings.Split(rest, ",") {
		if p, ok := strings.CutPrefix(kv, "path="); ok && p != "" {
			return dbusUnescape(p), nil
		}
	}
	return "", fmt.Errorf("address %q has no path= (only unix:path=FILE addresses are supported)", addr)
}

// dbusUnescape undoes D-Bus address value escaping (%XX).
func dbusUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Address is the address the client connects to.
func (c *Client) Address() string { return c.cfg.Address }

// Reconnects counts the connections made after the first.
func (c *Client) Reconnects() uint64 { return c.reconnects.Load() }

// CgroupRoot is the manager's root cgroup as a path of the daemon's
// cgroup2 hierarchy: "/" on a systemd machine, the cgroup a system
// container's manager was started in otherwise. A slice's cgroup
// (rules.Resolved.Path) is below it.
func (c *Client) CgroupRoot() (string, error) {
	if _, _, err := c.get(context.Background()); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.root, c.rootErr
}

// managerRoot finds the manager's root cgroup through the peer of its
// socket (any process of its pid namespace): that namespace's PID 1, the
// manager, sits in /init.scope of its tree; its cgroup2 line read here is
// in the daemon's view.
func managerRoot(proc string, peer int) (string, error) {
	p := filepath.Join(proc, strconv.Itoa(peer), "root", "proc", "1", "cgroup")
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the manager's cgroup: %w", err)
	}
	return rootOfInit(data)
}

// rootOfInit is the root of the tree whose /init.scope holds the process
// with these /proc/PID/cgroup bytes. Pure.
func rootOfInit(cgroup []byte) (string, error) {
	for _, line := range strings.Split(string(cgroup), "\n") {
		p, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		if p == "/init.scope" {
			return "/", nil
		}
		if r, ok := strings.CutSuffix(p, "/init.scope"); ok && strings.HasPrefix(r, "/") {
			return r, nil
		}
		return "", fmt.Errorf("the manager is in cgroup %q, not in an /init.scope", p)
	}
	return "", errors.New("the manager has no cgroup2 line")
}

// Namespace is the manager's pid namespace as of the current connection.
func (c *Client) Namespace() (*PIDNamespace, error) {
	_, ns, err := c.get(context.Background())
	return ns, err
}

// get returns the live connection, connecting when there is none.
func (c *Client) get(ctx context.Context) (*sddbus.Conn, *PIDNamespace, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, &Error{Op: "connect", Kind: ErrClosed}
	}
	if c.conn != nil && c.conn.Connected() {
		return c.conn, c.ns, nil
	}
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	conn, ns, hello, err := c.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	if c.gen > 0 {
		c.reconnects.Add(1)
	}
	c.conn, c.ns, c.hello = conn, ns, hello
	c.root, c.rootErr = managerRoot(c.cfg.Proc, ns.peer)
	c.gen++
	c.pidfds = 0
	if c.cfg.PIDFDs == "off" {
		c.pidfds = 2
	}
	return conn, ns, nil
}

// drop forgets the connection if it is still the one that failed, so that
// the next call reconnects.
func (c *Client) drop(conn *sddbus.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn && conn != nil {
		conn.Close()
		c.conn = nil
	}
}

// connect dials the address: the peer's pid namespace first (from the
// socket's peer credentials), then two D-Bus connections (go-systemd's:
// calls and signals), with a Hello when the peer is a message bus.
func (c *Client) connect(ctx context.Context) (*sddbus.Conn, *PIDNamespace, bool, error) {
	fail := func(err error) (*sddbus.Conn, *PIDNamespace, bool, error) {
		return nil, nil, false, &Error{Op: "connect " + c.cfg.Address, Kind: ErrUnreachable, Err: err}
	}
	peer, err := peerPID(ctx, c.path)
	if err != nil {
		return fail(err)
	}
	ns, err := NewPIDNamespace(c.cfg.Proc, peer)
	if err != nil {
		return fail(err)
	}
	hello, err := c.needsHello(ctx)
	if err != nil {
		return fail(err)
	}
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return c.dialBus(ctx, hello) })
	if err != nil {
		return fail(err)
	}
	// On a message bus the manager sends JobRemoved only to subscribers;
	// on its private socket to every client. Subscribe either way.
	sctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if err := subscribe(sctx, conn); err != nil {
		conn.Close()
		return fail(fmt.Errorf("subscribing to the manager's signals: %w", err))
	}
	return conn, ns, hello, nil
}

func subscribe(ctx context.Context, conn *sddbus.Conn) error {
	done := make(chan error, 1)
	go func() { done <- conn.Subscribe() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dialBus makes one authenticated connection (EXTERNAL, our uid).
func (c *Client) dialBus(ctx context.Context, hello bool) (*dbus.Conn, error) {
	// godbus closes a connection when the context it was dialled with
	// ends: the client's, not the call's.
	conn, err := dbus.Dial(c.cfg.Address, dbus.WithContext(c.life))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("authentication: %w", err)
	}
	if hello {
		if err := conn.Hello(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("hello to the bus: %w", err)
		}
	}
	return conn, nil
}

// needsHello tells a message bus from the manager's private protocol, on a
// throw-away connection: it asks the manager for its Version without a
// Hello. The manager answers; a bus daemon closes the connection of a
// client whose first message is not Hello. (The other way round does not
// work: the manager leaves a Hello unanswered.)
func (c *Client) needsHello(ctx context.Context) (bool, error) {
	conn, err := c.dialBus(ctx, false)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	hctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	var v dbus.Variant
	err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(hctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "Version").Store(&v)
	if err == nil {
		return false, nil
	}
	if hctx.Err() != nil {
		return false, fmt.Errorf("the manager's Version: no answer within %v", c.cfg.CallTimeout)
	}
	var de dbus.Error
	if errors.As(err, &de) {
		// An answer that is not the manager's: a peer that wants a
		// Hello first (or a manager refusing us: the Hello connection
		// will say why).
		return true, nil
	}
	// A closed connection: a bus daemon.
	return true, nil
}

// peerPID is the pid (in our namespace) of the process serving the socket
// at path: the manager, the proxy of a proxied socket, or a bus daemon,
// all in the manager's pid namespace.
func peerPID(ctx context.Context, path string) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED of %s: %w", path, cerr)
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("the peer of %s is in no pid namespace we see (pid %d)", path, cred.Pid)
	}
	return int(cred.Pid), nil
}

// Close closes the connection. Calls in progress fail.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.end()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// Name checks that the manager can name the tasks pids (the daemon's):
// each in its pid namespace or below, and alive. It makes no D-Bus call
// (it connects when there is no connection, to learn the namespace).
func (c *Client) Name(ctx context.Context, pids []int) error {
	_, ns, err := c.get(ctx)
	if err != nil {
		return err
	}
	_, err = translate(ns, "name", "", pids)
	return err
}

// translate maps the daemon's pids into the manager's namespace.
func translate(ns *PIDNamespace, op, unit string, pids []int) ([]uint32, error) {
	out := make([]uint32, len(pids))
	for i, p := range pids {
		q, err := ns.Translate(p)
		if err != nil {
			kind := ErrOutsideNamespace
			if errors.Is(err, ErrTaskGone) {
				kind = ErrTaskGone
			} else if !errors.Is(err, ErrOutsideNamespace) {
				kind = nil
			}
			return nil, &Error{Op: op, Unit: unit, PID: p, Kind: kind, Err: err}
		}
		out[i] = uint32(q)
	}
	return out, nil
}

// Result is what a completed operation did.
type Result struct {
	Unit string
	// Done is when the manager reported the move complete: the start
	// job's JobRemoved signal for a new scope, the call's reply for an
	// attach. The task is in its unit from then on; children it forked
	// before may not be (the fork race).
	Done time.Time
}

// ScopeOptions are the properties of a new scope.
type ScopeOptions struct {
	Slice       string // the slice to start it in (required, unitname.CheckSlice)
	Delegate    bool   // Delegate=yes: later tasks may be attached (Attach)
	Description string
}

// StartScope creates the transient scope name in opt.Slice holding the
// processes pids (the daemon's pids) and waits for its start job. The
// manager creates the slice if it does not exist yet.
func (c *Client) StartScope(ctx context.Context, name string, pids []int, opt ScopeOptions) (Result, error) {
	const op = "StartTransientUnit"
	if err := unitname.CheckScope(name); err != nil {
		return Result{}, &Error{Op: op, Unit: name, Kind: ErrInvalid, Err: err}
	}
	if err := unitname.CheckSlice(opt.Slice); err != nil {
		return Result{}, &Error{Op: op, Unit: name, Kind: ErrInvalid, Err: err}
	}
	if len(pids) == 0 {
		return Result{}, &Error{Op: op, Unit: name, Kind: ErrInvalid, Err: errors.New("no pid")}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	conn, ns, err := c.get(ctx)
	if err != nil {
		return Result{}, err
	}
	mpids, err := translate(ns, op, name, pids)
	if err != nil {
		return Result{}, err
	}
	props := []sddbus.Property{
		sddbus.PropSlice(opt.Slice),
		// A scope whose start fails must not keep its name.
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
	}
	if opt.Description != "" {
		props = append(props, sddbus.PropDescription(opt.Description))
	}
	if opt.Delegate {
		props = append(props, sddbus.Property{Name: "Delegate", Value: dbus.MakeVariant(true)})
	}
	pidProps, closeFDs, err := c.pidProps(ctx, conn, pids, mpids)
	if err != nil {
		return Result{}, &Error{Op: op, Unit: name, PID: pids[0], Kind: ErrTaskGone, Err: err}
	}
	defer closeFDs()
	props = append(props, pidProps...)
	ch := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, name, "fail", props, ch); err != nil {
		e := opError(op, name, pids[0], err)
		if errors.Is(e, ErrUnreachable) {
			c.drop(conn)
		}
		return Result{}, e
	}
	return c.waitJob(ctx, conn, op, name, pids[0], ch)
}

// waitJob waits for a start job's result, watching the connection: a
// dropped connection never delivers it.
func (c *Client) waitJob(ctx context.Context, conn *sddbus.Conn, op, name string, pid int, ch <-chan string) (Result, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case res := <-ch:
			if res != "done" {
				return Result{}, &Error{Op: op, Unit: name, PID: pid, Kind: ErrJobFailed, Err: fmt.Errorf("job result %q", res)}
			}
			return Result{Unit: name, Done: time.Now()}, nil
		case <-ctx.Done():
			c.drop(conn)
			return Result{}, &Error{Op: op, Unit: name, PID: pid, Kind: ErrUnreachable, Err: fmt.Errorf("start job: %w", ctx.Err())}
		case <-tick.C:
			if !conn.Connected() {
				c.drop(conn)
				return Result{}, &Error{Op: op, Unit: name, PID: pid, Kind: ErrUnreachable, Err: errors.New("connection closed before the start job ended")}
			}
		}
	}
}

// Attach moves processes (the daemon's pids) into an existing delegated
// unit's cgroup (subcgroup "" = the unit's own cgroup; a sub-cgroup must
// exist already).
func (c *Client) Attach(ctx context.Context, unit, subcgroup string, pids []int) (Result, error) {
	const op = "AttachProcessesToUnit"
	if len(pids) == 0 {
		return Result{}, &Error{Op: op, Unit: unit, Kind: ErrInvalid, Err: errors.New("no pid")}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	conn, ns, err := c.get(ctx)
	if err != nil {
		return Result{}, err
	}
	mpids, err := translate(ns, op, unit, pids)
	if err != nil {
		return Result{}, err
	}
	if err := conn.AttachProcessesToUnit(ctx, unit, subcgroup, mpids); err != nil {
		e := opError(op, unit, pids[0], err)
		if errors.Is(e, ErrUnreachable) {
			c.drop(conn)
		}
		return Result{}, e
	}
	return Result{Unit: unit, Done: time.Now()}, nil
}

// UnitOf is the unit the manager has task pid (a daemon pid) in
// (GetUnitByPID).
func (c *Client) UnitOf(ctx context.Context, pid int) (string, error) {
	const op = "GetUnitByPID"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	conn, ns, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	mpids, err := translate(ns, op, "", []int{pid})
	if err != nil {
		return "", err
	}
	name, err := conn.GetUnitNameByPID(ctx, mpids[0])
	if err != nil {
		e := opError(op, "", pid, err)
		if errors.Is(e, ErrUnreachable) {
			c.drop(conn)
		}
		return "", e
	}
	return name, nil
}

// Stop stops a unit and waits for the job (tests, and removing scopes).
func (c *Client) Stop(ctx context.Context, unit string) error {
	const op = "StopUnit"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	conn, _, err := c.get(ctx)
	if err != nil {
		return err
	}
	ch := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, unit, "replace", ch); err != nil {
		return opError(op, unit, 0, err)
	}
	_, err = c.waitJob(ctx, conn, op, unit, 0, ch)
	return err
}

// pidProps is the scope's PIDs property, or PIDFDs where the manager
// accepts them (systemd 255+): a pidfd names the process itself, so a pid
// reused between our check and the manager's move is never placed.
func (c *Client) pidProps(ctx context.Context, conn *sddbus.Conn, pids []int, mpids []uint32) ([]sddbus.Property, func(), error) {
	nop := func() {}
	if !c.usePIDFDs(ctx, conn) {
		return []sddbus.Property{sddbus.PropPids(mpids...)}, nop, nil
	}
	fds := make([]dbus.UnixFD, 0, len(pids))
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(int(fd))
		}
	}
	for _, p := range pids {
		fd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			closeAll()
			return nil, nop, fmt.Errorf("pidfd_open(%d): %w", p, err)
		}
		fds = append(fds, dbus.UnixFD(fd))
	}
	return []sddbus.Property{{Name: "PIDFDs", Value: dbus.MakeVariant(fds)}}, closeAll, nil
}

// usePIDFDs probes once per connection whether the manager takes the
// PIDFDs property of scopes: a StartTransientUnit of a throw-away scope
// with an empty PIDFDs list. systemd 252 refuses the property by name
// ("Cannot set property PIDFDs, or unknown property."); one that knows it
// fails later, for the empty scope. The connection must pass descriptors.
func (c *Client) usePIDFDs(ctx context.Context, conn *sddbus.Conn) bool {
	c.mu.Lock()
	state, gen := c.pidfds, c.gen
	c.mu.Unlock()
	if state != 0 {
		return state == 1
	}
	ok := false
	if fdConnection(c.cfg.Proc, c.path) {
		name := "cgrulesengd-probe-" + randomHex() + ".scope"
		props := []sddbus.Property{{Name: "PIDFDs", Value: dbus.MakeVariant([]dbus.UnixFD{})}}
		_, err := conn.StartTransientUnitContext(ctx, name, "fail", props, nil)
		var de dbus.Error
		switch {
		case err == nil:
			ok = true
			_, _ = conn.StopUnitContext(ctx, name, "replace", nil)
		case errors.As(err, &de):
			msg := ""
			if len(de.Body) > 0 {
				msg, _ = de.Body[0].(string)
			}
			ok = !strings.Contains(msg, "PIDFDs")
		}
	}
	c.mu.Lock()
	if c.gen == gen {
		c.pidfds = 2
		if ok {
			c.pidfds = 1
		}
	}
	c.mu.Unlock()
	return ok
}

// fdConnection reports whether descriptors can reach the manager through
// the socket at path: only when its server is the manager itself (a
// byte-copying proxy such as systemd-socket-proxyd drops them). The
// manager is its namespace's PID 1, so its peer pid is 1 there.
func fdConnection(proc, path string) bool {
	pid, err := peerPID(context.Background(), path)
	if err != nil {
		return false
	}
	status, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	nspid, err := parseNSpid(status)
	return err == nil && nspid[len(nspid)-1] == 1
}

func randomHex() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
