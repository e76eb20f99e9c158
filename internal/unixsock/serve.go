package unixsock

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// Server serves the connections of a Listener, each on a goroutine of its
// own, at most max at once: more wait in the listen backlog until one is
// done, so clients that connect and stall cost a bounded number of
// goroutines and descriptors. Its goroutines are its own.
type Server struct {
	ln     *Listener
	handle func(*net.UnixConn)
	// acceptErr is told of a failed accept (out of descriptors, with the
	// spare in use, say), at most once a second; the server waits a
	// little and goes on.
	acceptErr func(error)
	errLog    ratelimit.Limiter

	slots   chan struct{} // one per connection being served
	spare   *fdreserve.Reserve
	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	err     error

	mu    sync.Mutex
	conns map[*net.UnixConn]struct{}
}

// Serve starts serving ln: handle is called for every connection, which is
// closed when handle returns. acceptErr (may be nil) is told of failed
// accepts, at most once a second.
//
// The server keeps a descriptor in reserve (package fdreserve): when the
// process is out of descriptors, it still accepts and serves one
// connection at a time with it.
func Serve(ln *Listener, max int, handle func(*net.UnixConn), acceptErr func(error)) *Server {
	s := &Server{
		ln: ln, handle: handle, acceptErr: acceptErr,
		spare:   fdreserve.New(),
		slots:   make(chan struct{}, max),
		closing: make(chan struct{}),
		conns:   make(map[*net.UnixConn]struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Path is the socket's path.
func (s *Server) Path() string { return s.ln.Path() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			return
		}
		nc, _, err := s.spare.Accept(func() (net.Conn, error) { return s.ln.AcceptUnix() })
		if err != nil {
			<-s.slots
			select {
			case <-s.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if n, ok := s.errLog.Allow(time.Now()); ok && s.acceptErr != nil {
				if n > 0 {
					err = fmt.Errorf("%w (and %d more failed accepts since the last report)", err, n)
				}
				s.acceptErr(err)
			}
			time.Sleep(100 * time.Millisecond) // do not spin on EMFILE
			s.spare.Refill()
			continue
		}
		c := nc.(*net.UnixConn)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
				s.spare.Refill() // if its number served this connection
				<-s.slots
				s.wg.Done()
			}()
			s.handle(c)
		}()
	}
}

// Close stops accepting, ends the connections being served, waits for
// their goroutines and removes the socket file (if it is still the one
// Listen created). Later calls return the first result.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.closing)
		s.err = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.spare.Close()
	})
	return s.err
}
