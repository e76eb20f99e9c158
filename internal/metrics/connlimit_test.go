package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
)

// reports collects what a server reports.
type reports struct {
	mu  sync.Mutex
	all []string
}

func (r *reports) add(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, err.Error())
}

func (r *reports) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.all {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func serveTCP(t *testing.T, reg prometheus.Gatherer, conns int) (*Server, string, *reports) {
	t.Helper()
	ln, err := Listen(Address{Network: "tcp", Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := &reports{}
	s := serve(ln, reg, rep.add, conns, time.Second)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String(), rep
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func TestMaxConnsFor(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{0, 2}, {16, 2}, {64, 4}, {128, 8}, {256, maxConns}, {1 << 20, maxConns}} {
		if got := maxConnsFor(c.nofile); got != c.want {
			t.Errorf("maxConnsFor(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
}

// TestFloodOfIdleConnections: 300 connections that never send a request
// leave the server holding at most its bound; a scrape made among them is
// answered; the flood is reported; afterwards nothing is held.
func TestFloodOfIdleConnections(t *testing.T) {
	const bound = 4
	s, addr, rep := serveTCP(t, testRegistry(), bound)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	waitUntil(t, "the flood is reported", func() bool { return rep.has("the most allowed: closed the connection that had waited longest") })
	if n := s.ln.open(); n > bound {
		t.Errorf("%d connections held, bound %d", n, bound)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape during the flood: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "cgrulesengd_test_total 3") {
		t.Errorf("scrape during the flood:\n%s", body)
	}
	// The oldest idle connections were closed by the server.
	idle[0].SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the first idle connection: read %v, want EOF (closed to make room)", err)
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	tr.CloseIdleConnections()
	waitUntil(t, "every connection is let go", func() bool { return s.ln.open() == 0 })
}

// blockingGatherer blocks every Gather until release is closed.
type blockingGatherer struct {
	entered chan struct{}
	release chan struct{}
}

func (g *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.entered <- struct{}{}
	<-g.release
	return testRegistry().Gather()
}

// TestBusyConnectionsKept: at the bound with every connection in the
// middle of a request, a new connection is refused, not a busy one closed.
func TestBusyConnectionsKept(t *testing.T) {
	g := &blockingGatherer{entered: make(chan struct{}, 4), release: make(chan struct{})}
	s, addr, rep := serveTCP(t, g, 2)
	get := func(accept string) chan error {
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
			req.Header.Set("Accept", accept) // two kinds: both go to the gatherer
			resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = errors.New(resp.Status)
				}
			}
			done <- err
		}()
		return done
	}
	first := get("text/plain")
	<-g.entered // the first is in the collection; the second waits for it
	second := get("text/plain;version=0.0.4")
	waitUntil(t, "two busy connections", func() bool {
		s.ln.mu.Lock()
		defer s.ln.mu.Unlock()
		busy := 0
		for c := range s.ln.conns {
			if c.busy {
				busy++
			}
		}
		return busy == 2
	})
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a third connection with both slots busy: read %v, want EOF (refused)", err)
	}
	waitUntil(t, "the refusal is reported", func() bool { return rep.has("every connection is busy: refused the new one") })
	close(g.release)
	go func() {
		for range g.entered {
		}
	}()
	for _, done := range []chan error{first, second} {
		if err := <-done; err != nil {
			t.Errorf("a busy scrape: %v", err)
		}
	}
}

// TestScrapeOutOfDescriptors: with every descriptor of the process taken
// but the one the client's connect uses, a scrape is still accepted (with
// the listener's spare) and answered.
func TestScrapeOutOfDescriptors(t *testing.T) {
	_, addr, _ := serveTCP(t, testRegistry(), 4)
	fdtest.Exhaust(t, 1)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("scrape with no descriptor free: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "cgrulesengd_test_total 3") {
		t.Errorf("scrape with no descriptor free: %s\n%s", resp.Status, body)
	}
}
