package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScrape (issue #14; make bench-e2e): does a scraper delay moves?
// Under the fork/setuid storm, setuid-to-moved latency (1,000 samples, 3
// rules) with nobody scraping, then with a client scraping /metrics back to
// back the whole time. It reports, never fails.
func BenchmarkScrape(b *testing.B) {
	requireDaemon(b)
	requireTools(b)
	e := benchEnv(b, 3)
	uid, dest := uidOf(b, "cgresjo"), e.cg("dest")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	url := "http://" + addr + "/metrics"
	e.startDaemon(dopts{extra: append(benchDaemonArgs(), "--metrics", addr)})
	// The control: the same client fetching a page of the same size from
	// a server in this process, not the daemon, back to back. What this
	// costs the moves is the CPU two more busy threads take on the 2
	// vCPUs, not the daemon's scraping.
	body := scrape(b, url)
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	defer ctl.Close()
	// every: the pause between two scrapes (-1: no scraper).
	measure := func(url string, every time.Duration) (latencies, int64, time.Duration) {
		stop := make(chan struct{})
		done := make(chan struct{})
		var scrapes atomic.Int64
		var busy time.Duration
		go func() {
			defer close(done)
			c := &http.Client{Timeout: 10 * time.Second}
			for every >= 0 {
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
				t0 := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				busy += time.Since(t0)
				scrapes.Add(1)
			}
		}()
		var l latencies
		e.stormPhase(&benchResult{}, uidOf(b, "cgrenobody"), func() {
			l = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-d", "30"})
		})
		close(stop)
		<-done
		return l, scrapes.Load(), busy
	}
	without, _, _ := measure(url, -1)
	second, n1, busy1 := measure(url, time.Second)
	with, n, busy := measure(url, 0)
	control, n2, busy2 := measure(ctl.URL, 0)
	per := func(busy time.Duration, n int64) time.Duration {
		if n == 0 {
			return 0
		}
		return (busy / time.Duration(n)).Round(time.Microsecond)
	}
	fmt.Fprintf(os.Stdout, "\nsetuid -> moved under the storm, 3 rules, 1,000 samples each (cpu hierarchy; p50 / p90 / p99, misses):\n")
	fmt.Fprintf(os.Stdout, "| scraper | p50 | p90 | p99 | misses |\n| --- | --- | --- | --- | --- |\n")
	for _, row := range []struct {
		name string
		l    latencies
	}{
		{"none", without},
		{fmt.Sprintf("every second (%d scrapes, %v each)", n1, per(busy1, n1)), second},
		{fmt.Sprintf("back to back (%d scrapes, %v each)", n, per(busy, n)), with},
		{fmt.Sprintf("control: the same client on a static page of %d bytes served by the test, back to back (%d fetches, %v each)", len(body), n2, per(busy2, n2)), control},
	} {
		fmt.Fprintf(os.Stdout, "| %s | %s | %s | %s | %d |\n", row.name, fmtDur(row.l.pct(0.5, false)), fmtDur(row.l.pct(0.9, false)), fmtDur(row.l.pct(0.99, false)), row.l.misses)
	}
	b.ReportMetric(float64(without.pct(0.5, false).Microseconds()), "p50-noscrape-us")
	b.ReportMetric(float64(with.pct(0.5, false).Microseconds()), "p50-scraping-us")
	b.ReportMetric(float64(with.misses), "misses-scraping")
}
