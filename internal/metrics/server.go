package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/unixsock"
)

// Address is a parsed --metrics value.
type Address struct {
	Network string // "tcp" or "unix"
	Addr    string // host:port, or the socket's path
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return a.Addr
}

// Loopback reports whether a TCP address is on the loopback interface
// (127.0.0.0/8, ::1): only this machine's users can connect.
func (a Address) Loopback() bool {
	if a.Network != "tcp" {
		return false
	}
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseAddress parses a --metrics value: "unix:PATH" (an absolute path),
// or HOST:PORT with a literal IP address ("127.0.0.1:9567", "[::1]:9567").
// Any address is accepted, loopback or not: a Prometheus server on another
// host needs one that is not. Host names are refused (the daemon must not
// depend on name resolution at start-up), and so is a missing host:
// ":9567" would listen on every interface, which must be asked for
// explicitly ("0.0.0.0:9567").
func ParseAddress(s string) (Address, error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return Address{}, fmt.Errorf("metrics address %q: the socket path must be absolute", s)
		}
		return Address{Network: "unix", Addr: p}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("metrics address %q: want IP:PORT, [IPv6]:PORT or unix:PATH: %w", s, err)
	}
	if host == "" {
		return Address{}, fmt.Errorf("metrics address %q: no host (use 127.0.0.1:%s for this machine only, 0.0.0.0:%s for every interface)", s, port, port)
	}
	if net.ParseIP(host) == nil {
		return Address{}, fmt.Errorf("metrics address %q: %q is not an IP address", s, host)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 || fmt.Sprint(n) != port {
		return Address{}, fmt.Errorf("metrics address %q: bad port %q", s, port)
	}
	return Address{Network: "tcp", Addr: s}, nil
}

// Server serves /metrics.
type Server struct {
	ln  *limitListener
	srv *http.Server
}

// Refusal is called for every connection refused on a Unix socket (the
// peer is not root); it should log, rate-limited.
type Refusal func(uid uint32, pid int32)

// Listen opens the address: a TCP listener, or a Unix socket with mode
// 0600 (a stale socket file is replaced, a live one is an error) whose
// non-root peers are refused.
func Listen(a Address, refused Refusal) (net.Listener, error) {
	return listen(a, unixsock.PeerCheck{Refused: refused})
}

func listen(a Address, check unixsock.PeerCheck) (net.Listener, error) {
	if a.Network == "unix" {
		ln, err := unixsock.Listen(a.Addr, 0o600, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("metrics %w", err)
		}
		return &rootOnly{Listener: ln, check: check}, nil
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// The server's bounds. Whatever clients do, the daemon holds at most
// maxConns connections (fewer under a small open-file limit, see
// maxConnsFor), each costing a goroutine and about 10 KB of buffers; a
// connection has readHeaderTimeout to send its request's headers,
// readTimeout for the whole request, writeTimeout to take the answer, and
// is closed after idleTimeout without a request. At most one collection
// is made per minCollect, and scrapes in between get the answer made from
// it (responseCache).
const (
	maxConns          = 16
	readHeaderTimeout = 3 * time.Second
	readTimeout       = 5 * time.Second
	writeTimeout      = 15 * time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 8 << 10
	minCollect        = time.Second
)

// maxConnsFor is maxConns for an open-file limit: a sixteenth of it at
// most (4 under `ulimit -n 64`), at least 2, so that connections can never
// take the descriptors the moves need.
func maxConnsFor(nofile uint64) int {
	return int(min(max(nofile/16, 2), maxConns))
}

func defaultMaxConns() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return maxConns
	}
	return maxConnsFor(lim.Cur)
}

// Serve serves reg's metrics on ln until Close, within the bounds above.
// errLog (may be nil) is told of errors: a failing listener, and, at most
// once a second, connections closed or refused at the bound (a client is
// flooding the port).
func Serve(ln net.Listener, reg *prometheus.Registry, errLog func(error)) *Server {
	return serve(ln, reg, errLog, defaultMaxConns(), minCollect)
}

func serve(ln net.Listener, reg prometheus.Gatherer, errLog func(error), conns int, ttl time.Duration) *Server {
	if errLog == nil {
		errLog = func(error) {}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", newResponseCache(promhttp.HandlerFor(&cachedGatherer{g: reg, ttl: ttl}, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 1,
		Timeout:             10 * time.Second,
	}), ttl))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "cgrulesengd: metrics at /metrics")
	})
	l := newLimitListener(ln, conns, errLog)
	s := &Server{ln: l, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         l.connState,
		ErrorLog:          l.errorLog(),
	}}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errLog(fmt.Errorf("metrics: serving %s: %w", ln.Addr(), err))
		}
	}()
	return s
}

// Close stops the server; a Unix socket's file is removed.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.ln.spare.Close()
	return err
}

// rootOnly accepts only connections whose peer is allowed (root): the
// metrics name rules and count other users' tasks. The others are closed
// at once, before a byte is read.
type rootOnly struct {
	*unixsock.Listener
	check unixsock.PeerCheck
}

func (l *rootOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if l.check.Admit(c) {
			return c, nil
		}
		c.Close()
	}
}
