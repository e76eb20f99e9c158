package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cgrulesengd/cgrulesengd/internal/unixsock"
)

func TestParseAddress(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:9567", want: "tcp 127.0.0.1:9567"},
		{in: "[::1]:9567", want: "tcp [::1]:9567"},
		{in: "0.0.0.0:9567", want: "tcp 0.0.0.0:9567"},
		{in: "unix:/run/cgrulesengd-metrics.sock", want: "unix /run/cgrulesengd-metrics.sock"},
		{in: "unix:relative.sock", err: "must be absolute"},
		{in: ":9567", err: "no host"},
		{in: "localhost:9567", err: "not an IP address"},
		{in: "127.0.0.1", err: "want IP:PORT"},
		{in: "127.0.0.1:http", err: "bad port"},
		{in: "127.0.0.1:0", err: "bad port"},
		{in: "127.0.0.1:70000", err: "bad port"},
		{in: "", err: "want IP:PORT"},
	} {
		a, err := ParseAddress(c.in)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseAddress(%q) = %v, %v; want an error containing %q", c.in, a, err, c.err)
			}
		case err != nil:
			t.Errorf("ParseAddress(%q): %v", c.in, err)
		case a.Network+" "+a.Addr != c.want:
			t.Errorf("ParseAddress(%q) = %s %s, want %s", c.in, a.Network, a.Addr, c.want)
		}
	}
}

func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

func testRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "cgrulesengd_test_total", Help: "A test counter."})
	c.Add(3)
	reg.MustRegister(c)
	return reg
}

func TestServeUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.sock")
	var mu sync.Mutex
	var refused []uint32
	allow := true
	var allowMu sync.Mutex
	ln, err := listen(Address{Network: "unix", Addr: path}, unixsock.PeerCheck{
		Refused: func(uid uint32, _ int32) {
			mu.Lock()
			defer mu.Unlock()
			refused = append(refused, uid)
		},
		Allowed: func(uint32) bool { allowMu.Lock(); defer allowMu.Unlock(); return allow },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, testRegistry(), func(err error) { t.Error(err) })
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file %v, %v: want mode 0600", fi, err)
	}
	resp, err := unixClient(path).Get("http://metrics/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "cgrulesengd_test_total 3") {
		t.Errorf("scrape: %s\n%s", resp.Status, body)
	}

	allowMu.Lock()
	allow = false
	allowMu.Unlock()
	if resp, err := unixClient(path).Get("http://metrics/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("a refused peer got %s", resp.Status)
	}
	mu.Lock()
	if len(refused) != 1 || refused[0] != uint32(os.Getuid()) {
		t.Errorf("refusals reported: %v, want one for uid %d", refused, os.Getuid())
	}
	mu.Unlock()

	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestServeTCP(t *testing.T) {
	ln, err := Listen(Address{Network: "tcp", Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, testRegistry(), func(err error) { t.Error(err) })
	defer srv.Close()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "cgrulesengd_test_total 3") {
		t.Errorf("scrape:\n%s", body)
	}
}

type countingGatherer struct{ n int }

func (g *countingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.n++
	return nil, nil
}

func TestCachedGatherer(t *testing.T) {
	g := &countingGatherer{}
	c := &cachedGatherer{g: g, ttl: 50 * time.Millisecond}
	for i := 0; i < 10; i++ {
		_, _ = c.Gather()
	}
	if g.n != 1 {
		t.Fatalf("10 scrapes within the ttl collected %d times, want 1", g.n)
	}
	time.Sleep(60 * time.Millisecond)
	_, _ = c.Gather()
	if g.n != 2 {
		t.Errorf("a scrape after the ttl did not collect again (%d collections)", g.n)
	}
}
