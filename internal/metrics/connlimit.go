package metrics

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// limitListener bounds the connections open at once. The HTTP server tells
// it each connection's state (connState): a connection is busy from the
// moment its request's headers are read until its answer is written, and
// waiting otherwise (new, or idle between requests). At the bound, a new
// connection is kept and the one waiting longest is closed to make room:
// a client that holds connections without sending requests loses them to
// any client that connects and asks at once, as a scraper does. When every
// connection is busy, the new one is closed instead. So memory and
// descriptors stay bounded whatever clients do, and a scraper still gets
// its answer during a flood.
//
// The listener also keeps a descriptor in reserve (fdreserve), so that a
// scrape is still accepted when the daemon is out of descriptors.
type limitListener struct {
	net.Listener
	max    int
	spare  *fdreserve.Reserve
	report func(error)
	// Reports of connections dropped at the bound, and of failed accepts:
	// one a second each, with a count of those left out.
	dropLog, acceptLog ratelimit.Limiter
	httpLog            ratelimit.Limiter

	mu    sync.Mutex
	conns map[*limitedConn]struct{}
}

// limitedConn is a connection the listener counts.
type limitedConn struct {
	net.Conn
	l     *limitListener
	spent bool // its descriptor number was the spare's
	once  sync.Once

	// Under l.mu.
	busy  bool
	since time.Time // when it started waiting
}

func newLimitListener(ln net.Listener, max int, report func(error)) *limitListener {
	return &limitListener{
		Listener: ln, max: max, spare: fdreserve.New(), report: report,
		conns: make(map[*limitedConn]struct{}, max),
	}
}

// Accept returns the next connection, closing one waiting connection (or
// the new one) first when the bound is reached.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, spent, err := l.spare.Accept(l.Listener.Accept)
		if err != nil {
			if fdreserve.OutOfDescriptors(err) {
				if n, ok := l.acceptLog.Allow(time.Now()); ok {
					l.report(fmt.Errorf("metrics: accepting a connection on %s: %w (out of descriptors, and the spare one is in use: the connection waits; %d such failures not reported)", l.Addr(), err, n))
				}
			}
			return nil, err // the HTTP server waits a little and retries
		}
		lc := &limitedConn{Conn: c, l: l, spent: spent, since: time.Now()}
		victim, refused, open := l.admit(lc)
		if victim == nil && !refused {
			return lc, nil
		}
		if n, ok := l.dropLog.Allow(time.Now()); ok {
			what := "closed the connection that had waited longest for a request"
			if refused {
				what = "every connection is busy: refused the new one"
			}
			l.report(fmt.Errorf("metrics: %d connections open on %s, the most allowed: %s (%d more since the last report; a client may be flooding the port)", open, l.Addr(), what, n))
		}
		if victim != nil {
			victim.Close()
			return lc, nil
		}
		lc.Close()
	}
}

// admit counts c in, choosing a waiting connection to close at the bound;
// refused means there was none and c must be closed.
func (l *limitListener) admit(c *limitedConn) (victim *limitedConn, refused bool, open int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	open = len(l.conns)
	if open >= l.max {
		for o := range l.conns {
			if !o.busy && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
		}
		if victim == nil {
			return nil, true, open
		}
		delete(l.conns, victim)
	}
	l.conns[c] = struct{}{}
	return victim, false, open
}

// connState is the HTTP server's ConnState hook.
func (l *limitListener) connState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive:
		l.mu.Lock()
		lc.busy = true
		l.mu.Unlock()
	case http.StateIdle:
		l.mu.Lock()
		lc.busy, lc.since = false, time.Now()
		l.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		lc.forget()
	}
}

// open is the number of connections counted.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Close closes the connection and stops counting it.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.forget()
	return err
}

func (c *limitedConn) forget() {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.spent {
			c.l.spare.Refill()
		}
	})
}

// errorLog is the HTTP server's own log (a handler's panic, a failed
// accept), rate-limited into report.
func (l *limitListener) errorLog() *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		if strings.HasPrefix(string(p), "http: Accept error") {
			return len(p), nil // Accept reports those itself
		}
		if n, ok := l.httpLog.Allow(time.Now()); ok {
			l.report(fmt.Errorf("metrics: %s (%d such messages not reported)", strings.TrimSpace(string(p)), n))
		}
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
