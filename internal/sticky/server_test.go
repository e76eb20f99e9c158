package sticky

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// fakeMarks records what the server asked for.
type fakeMarks struct {
	mu      sync.Mutex
	marks   map[int32]string // pid -> "start/children"
	calls   []string
	full    bool
	refused int
	by      []uint32 // the client uid of each Mark call
}

func newFakeMarks() *fakeMarks { return &fakeMarks{marks: map[int32]string{}} }

func (m *fakeMarks) Mark(pid int32, start uint64, children bool, by uint32) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("mark %d %d %v", pid, start, children))
	m.by = append(m.by, by)
	if m.full {
		return false, errors.New("the table of sticky marks is full")
	}
	if _, ok := m.marks[pid]; ok {
		return false, nil
	}
	m.marks[pid] = fmt.Sprintf("%d/%v", start, children)
	return true, nil
}

func (m *fakeMarks) Unmark(pid int32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("unmark %d", pid))
	_, ok := m.marks[pid]
	delete(m.marks, pid)
	return ok
}

func (m *fakeMarks) Forget(pid int32, start uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("forget %d %d", pid, start))
	if strings.HasPrefix(m.marks[pid], fmt.Sprintf("%d/", start)) {
		delete(m.marks, pid)
	}
}

func (m *fakeMarks) Refused() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refused++
}

func (m *fakeMarks) state() (calls []string, refused int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...), m.refused
}

func (m *fakeMarks) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls, m.refused, m.by = nil, 0, nil
}

// fakeProcs is a process table; after, if set, runs after each read of a
// pid (to make a process exit between two reads).
type fakeProcs struct {
	mu    sync.Mutex
	ids   map[int]proc.Ident
	after func(pid int)
}

func (p *fakeProcs) Ident(pid int) (proc.Ident, error) {
	p.mu.Lock()
	id, ok := p.ids[pid]
	after := p.after
	p.mu.Unlock()
	if after != nil {
		after(pid)
	}
	if !ok {
		return proc.Ident{}, fmt.Errorf("proc: pid %d: %w", pid, unix.ESRCH)
	}
	return id, nil
}

func (p *fakeProcs) set(pid, tgid int, uid uint32, start uint64, zombie bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids[pid] = proc.Ident{PID: pid, TGID: tgid, UID: [3]uint32{uid, uid, uid}, StartTime: start, Zombie: zombie}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

type fixture struct {
	srv   *Server
	path  string
	marks *fakeMarks
	procs *fakeProcs
	log   *syncLog
}

func newServer(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{marks: newFakeMarks(), procs: &fakeProcs{ids: map[int]proc.Ident{}}, log: &syncLog{}}
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "cgred.socket")
	}
	f.path = cfg.Path
	l := logrus.New()
	l.SetOutput(f.log)
	l.SetLevel(logrus.DebugLevel)
	cfg.Marks, cfg.Procs, cfg.Log = f.marks, f.procs, l
	if cfg.UID == 0 && cfg.GID == 0 {
		cfg.UID, cfg.GID = -1, -1
	}
	srv, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	f.srv = srv
	t.Cleanup(func() { srv.Close() })
	return f
}

// ask sends b as one write, shuts its sending side and returns the reply
// ("" when the server closed without one).
func ask(t *testing.T, path string, b []byte) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
	// Done sending: a short request ends here rather than at the timeout.
	_ = c.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		// (A server that closes with bytes left unread resets the
		// connection.)
		t.Fatalf("reading the reply: %v", err)
	}
	return string(reply)
}

// askLikeLibcgroup writes the pid and the flags with two writes, as
// cgroup_register_unchanged_process does, and reads once.
func askLikeLibcgroup(t *testing.T, path string, pid int32, flags uint32) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := encode(pid, flags)
	for _, part := range [][]byte{b[:4], b[4:]} {
		if _, err := c.Write(part); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	buf := make([]byte, len(Reply))
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n])
}

func TestListenSocketFile(t *testing.T) {
	f := newServer(t, Config{})
	fi, err := os.Lstat(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != Mode {
		t.Errorf("socket file mode %v, want a socket with %04o", fi.Mode(), Mode)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("owner %d:%d, want the process's %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	entries, _ := os.ReadDir(filepath.Dir(f.path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket (no temporary name left): %v", len(entries), entries)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(f.path); !os.IsNotExist(err) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

func TestListenLiveSocketIsAnError(t *testing.T) {
	f := newServer(t, Config{})
	_, err := Listen(Config{Path: f.path, UID: -1, GID: -1, Marks: f.marks, Procs: f.procs, Log: f.srv.log})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Listen: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	// The first server is untouched and its probe was not a refusal.
	f.procs.set(10, 10, uint32(os.Geteuid()), 1, false)
	if got := ask(t, f.path, encode(10, 0)); got != Reply {
		t.Errorf("the first server's reply %q after the second's attempt", got)
	}
	if _, refused := f.marks.state(); refused != 0 {
		t.Errorf("the probe counted as %d refusals", refused)
	}
}

func TestServerRequests(t *testing.T) {
	f := newServer(t, Config{})
	me := uint32(os.Geteuid())
	other := me + 1
	if me == 0 {
		other = 4242
	}
	f.procs.set(100, 100, me, 11, false)
	f.procs.set(101, 101, me, 12, false)
	f.procs.set(102, 100, me, 13, false) // a thread of 100
	f.procs.set(103, 103, me, 14, true)  // a zombie
	f.procs.set(104, 104, other, 15, false)

	tests := []struct {
		name      string
		pid       int32
		flags     uint32
		wantReply bool
		wantCalls []string
	}{
		{"flags 0", 100, 0, true, []string{"mark 100 11 false"}},
		{"again with flags 1: the server asks, the marks keep the first", 100, 1, true, []string{"mark 100 11 true"}},
		{"flags 1", 101, 1, true, []string{"mark 101 12 true"}},
		{"a thread id marks its process", 102, 0, true, []string{"mark 100 11 false"}},
		{"cancel", 101, 2, true, []string{"unmark 101"}},
		{"cancel an unmarked pid", 101, 2, true, []string{"unmark 101"}},
		{"no such process", 4000, 0, false, nil},
		{"a zombie", 103, 1, false, nil},
		{"malformed flags", 100, 3, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.marks.reset()
			got := askLikeLibcgroup(t, f.path, tt.pid, tt.flags)
			if (got == Reply) != tt.wantReply || (!tt.wantReply && got != "") {
				t.Errorf("reply %q, want reply %v", got, tt.wantReply)
			}
			calls, refused := f.marks.state()
			if fmt.Sprint(calls) != fmt.Sprint(tt.wantCalls) {
				t.Errorf("calls %q, want %q", calls, tt.wantCalls)
			}
			if (refused == 0) != tt.wantReply {
				t.Errorf("%d refusals counted, reply %v", refused, tt.wantReply)
			}
		})
	}

	t.Run("the mark names the client", func(t *testing.T) {
		f.marks.reset()
		if got := askLikeLibcgroup(t, f.path, 100, 0); got != Reply {
			t.Fatalf("reply %q", got)
		}
		f.marks.mu.Lock()
		by := fmt.Sprint(f.marks.by)
		f.marks.mu.Unlock()
		if by != fmt.Sprintf("[%d]", me) {
			t.Errorf("Mark was told the client is uid %s, want [%d] (issue 19 item 6: a user's mark must not outlive its process's uids)", by, me)
		}
	})

	t.Run("another user's process", func(t *testing.T) {
		f.marks.reset()
		got := ask(t, f.path, encode(104, 0))
		calls, refused := f.marks.state()
		if me == 0 {
			if got != Reply || fmt.Sprint(calls) != "[mark 104 15 false]" {
				t.Errorf("root marking uid %d's process: reply %q, calls %q", other, got, calls)
			}
			return
		}
		if got != "" || len(calls) != 0 || refused != 1 {
			t.Errorf("uid %d marking uid %d's process: reply %q, calls %q, %d refusals; want no reply, no call, 1 refusal", me, other, got, calls, refused)
		}
		want := fmt.Sprintf(`msg="sticky socket: refused: uid %d may mark only processes running as uid %d (real, effective and saved); pid 104 runs as %d/%d/%d" peer_pid=%d peer_uid=%d pid=104`,
			me, me, other, other, other, os.Getpid(), me)
		if !strings.Contains(f.log.String(), want) {
			t.Errorf("no refusal line %s in the log:\n%s", want, f.log.String())
		}
	})

	t.Run("table full", func(t *testing.T) {
		f.marks.reset()
		f.marks.mu.Lock()
		f.marks.full = true
		f.marks.mu.Unlock()
		defer func() { f.marks.mu.Lock(); f.marks.full = false; f.marks.mu.Unlock() }()
		if got := ask(t, f.path, encode(101, 0)); got != "" {
			t.Errorf("reply %q with a full table", got)
		}
		if !strings.Contains(f.log.String(), "refused: the table of sticky marks is full") {
			t.Errorf("full table not logged:\n%s", f.log.String())
		}
	})

	t.Run("exits while being marked", func(t *testing.T) {
		f.marks.reset()
		f.procs.set(105, 105, me, 16, false)
		reads := 0
		f.procs.mu.Lock()
		f.procs.after = func(pid int) {
			if pid != 105 {
				return
			}
			if reads++; reads == 1 {
				f.procs.set(105, 105, me, 17, false) // gone; the pid reused at once
			}
		}
		f.procs.mu.Unlock()
		defer func() { f.procs.mu.Lock(); f.procs.after = nil; f.procs.mu.Unlock() }()
		if got := ask(t, f.path, encode(105, 0)); got != "" {
			t.Errorf("reply %q for a process that exited while being marked", got)
		}
		calls, _ := f.marks.state()
		if fmt.Sprint(calls) != "[mark 105 16 false forget 105 16]" {
			t.Errorf("calls %q, want the mark made and forgotten", calls)
		}
		f.marks.mu.Lock()
		_, left := f.marks.marks[105]
		f.marks.mu.Unlock()
		if left {
			t.Error("a mark was left for the reused pid 105")
		}
	})
}

// TestServerBadClients: wrong sizes, a silent client, one that leaves
// before the reply: each costs at most the timeout, is counted (except an
// empty connection), and the next client is served.
func TestServerBadClients(t *testing.T) {
	f := newServer(t, Config{Timeout: 200 * time.Millisecond})
	f.procs.set(100, 100, uint32(os.Geteuid()), 1, false)
	good := func() {
		t.Helper()
		if got := ask(t, f.path, encode(100, 0)); got != Reply {
			t.Fatalf("a good client after a bad one got %q", got)
		}
	}
	for _, c := range []struct {
		name    string
		send    []byte
		refused int
		log     string
	}{
		{"nothing", nil, 0, "a client closed without a request"},
		{"the pid only", encode(100, 0)[:4], 1, "incomplete request (4 of 8 bytes)"},
		{"seven bytes", encode(100, 0)[:7], 1, "incomplete request (7 of 8 bytes)"},
		{"twelve bytes", append(encode(100, 0), 1, 2, 3, 4), 1, "9 bytes, want 8"},
		{"pid 0", encode(0, 0), 1, "malformed sticky request: pid 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.marks.reset()
			if got := ask(t, f.path, c.send); got != "" {
				t.Errorf("reply %q", got)
			}
			waitUntil(t, "log line", func() bool { return strings.Contains(f.log.String(), c.log) })
			if _, refused := f.marks.state(); refused != c.refused {
				t.Errorf("%d refusals, want %d", refused, c.refused)
			}
			good()
		})
	}
	t.Run("never sends", func(t *testing.T) {
		f.marks.reset()
		c, err := net.Dial("unix", f.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 32))
		if took := time.Since(start); n != 0 || err != io.EOF || took < 150*time.Millisecond || took > 2*time.Second {
			t.Errorf("silent client: read %d, %v after %v; want EOF after the 200ms timeout", n, err, took)
		}
		if !strings.Contains(f.log.String(), "no complete request within 200ms (0 of 8 bytes)") {
			t.Errorf("timeout not logged:\n%s", f.log.String())
		}
		good()
	})
	t.Run("leaves before the reply", func(t *testing.T) {
		f.marks.reset()
		c, err := net.Dial("unix", f.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(encode(100, 1)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		waitUntil(t, "request carried out", func() bool {
			calls, _ := f.marks.state()
			return len(calls) == 1
		})
		good()
	})
}

// TestServerBoundsClients: with MaxClients busy with silent clients, a new
// client waits (it is not dropped) and is answered once a slot frees; with
// a slot free it is answered at once.
func TestServerBoundsClients(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newServer(t, Config{MaxClients: 2, Timeout: timeout})
	f.procs.set(100, 100, uint32(os.Geteuid()), 1, false)
	hold := func(n int) {
		for i := 0; i < n; i++ {
			c, err := net.Dial("unix", f.path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
		time.Sleep(50 * time.Millisecond) // let the server accept them
	}
	timed := func() time.Duration {
		start := time.Now()
		if got := ask(t, f.path, encode(100, 0)); got != Reply {
			t.Fatalf("reply %q", got)
		}
		return time.Since(start)
	}
	hold(1)
	if d := timed(); d > timeout/2 {
		t.Errorf("with a slot free, the reply took %v", d)
	}
	time.Sleep(timeout) // the held client times out
	hold(2)
	if d := timed(); d < timeout/2 {
		t.Errorf("with both slots held, the reply came after %v, before a slot could free (timeout %v): more than MaxClients served at once", d, timeout)
	}
}

// TestServerRateLimitsRefusals: a flood of bad requests logs a few lines
// and counts all of them; the next line that gets through says how many
// were left out.
func TestServerRateLimitsRefusals(t *testing.T) {
	f := newServer(t, Config{})
	for i := 0; i < 30; i++ {
		ask(t, f.path, encode(-1, 0))
	}
	_, refused := f.marks.state()
	if refused != 30 {
		t.Errorf("%d refusals counted, want 30", refused)
	}
	if n := strings.Count(f.log.String(), "refused:"); n > 10 {
		t.Errorf("%d refusal lines logged for 30 bad requests within a second or two", n)
	}
	time.Sleep(time.Second)
	ask(t, f.path, encode(-1, 0))
	if !strings.Contains(f.log.String(), "not_logged=") {
		t.Errorf("no not_logged count after the flood:\n%s", f.log.String())
	}
}

// TestServerCloseWithClients: Close ends connections being served at once.
func TestServerCloseWithClients(t *testing.T) {
	f := newServer(t, Config{Timeout: time.Minute})
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", f.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with idle clients", d)
	}
}

func TestAllowed(t *testing.T) {
	id := func(r, e, s uint32) proc.Ident { return proc.Ident{UID: [3]uint32{r, e, s}} }
	for _, c := range []struct {
		peer uint32
		id   proc.Ident
		want bool
	}{
		{0, id(1000, 1000, 1000), true},
		{0, id(0, 0, 0), true},
		{1000, id(1000, 1000, 1000), true},
		{1000, id(1001, 1001, 1001), false},
		{1000, id(0, 0, 0), false},
		{1000, id(1000, 0, 0), false},    // a setuid-root program it started
		{1000, id(1000, 1000, 0), false}, // can still regain root
		{1000, id(0, 1000, 1000), false},
	} {
		if got := allowed(&unix.Ucred{Uid: c.peer}, c.id); got != c.want {
			t.Errorf("allowed(uid %d, %v) = %v, want %v", c.peer, c.id.UID, got, c.want)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
