package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

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

// ParseAddress parses a --metrics value: "unix:PATH" (an absolute path),
// or HOST:PORT with a literal IP address ("127.0.0.1:9567", "[::1]:9567").
// Host names are refused (the daemon must not depend on name resolution at
// start-up), and so is a missing host: ":9567" would listen on every
// interface, which must be asked for explicitly ("0.0.0.0:9567").
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
	ln  net.Listener
	srv *http.Server
}

// Refusal is called for every connection refused on a Unix socket (the
// peer is not root); it should log, rate-limited.
type Refusal func(uid uint32, pid int32)

// Listen opens the address: a TCP listener, or a Unix socket with mode
// 0600 (a stale socket file is replaced, a live one is an error) whose
// non-root peers are refused.
func Listen(a Address, refused Refusal) (net.Listener, error) {
	return listen(a, refused, func(uid uint32) bool { return uid == 0 })
}

func listen(a Address, refused Refusal, allowed func(uid uint32) bool) (net.Listener, error) {
	if a.Network == "unix" {
		ln, err := unixsock.Listen(a.Addr, 0o600, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("metrics %w", err)
		}
		return &rootOnly{Listener: ln, refused: refused, allowed: allowed}, nil
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// minCollect is the shortest time between two collections: scrapes in
// between are answered with the values of the last one. However often a
// client scrapes, the daemon collects at most once per minCollect (a
// collection reads /proc/self and every destination's cgroup files).
const minCollect = time.Second

// cachedGatherer gathers at most once per ttl.
type cachedGatherer struct {
	g   prometheus.Gatherer
	ttl time.Duration

	mu  sync.Mutex
	at  time.Time
	mfs []*dto.MetricFamily
	err error
}

// Gather returns the last collection if it is younger than ttl. The
// families are shared by the scrapes it answers, which only read them.
func (c *cachedGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.ttl {
		c.mfs, c.err = c.g.Gather()
		c.at = time.Now()
	}
	return c.mfs, c.err
}

// Serve serves reg's metrics on ln until Close. Each scrape has 10 s at
// most; headers must arrive within 5 s, so idle or slow clients cannot pile
// up; at most one collection is made per second (minCollect).
func Serve(ln net.Listener, reg *prometheus.Registry, errLog func(error)) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(&cachedGatherer{g: reg, ttl: minCollect}, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 1,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "cgrulesengd: metrics at /metrics")
	})
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && errLog != nil {
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
	return err
}

// rootOnly accepts only connections whose peer is allowed (root): the
// metrics name rules and count other users' tasks. The others are closed
// at once, before a byte is read.
type rootOnly struct {
	*unixsock.Listener
	refused Refusal
	allowed func(uid uint32) bool
}

func (l *rootOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := unixsock.PeerCred(c)
		if err == nil && l.allowed(cred.Uid) {
			return c, nil
		}
		// Reported before the close, as the status socket does, so that a
		// refused client that sees its connection end finds it logged.
		if err == nil && l.refused != nil {
			l.refused(cred.Uid, cred.Pid)
		}
		c.Close()
	}
}
