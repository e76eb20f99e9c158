package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScrape (issue #14; make bench-e2e): does a scraper delay moves?
// Under the fork/setuid storm, setuid-to-moved latency (1,000 samples, 3
// rules) with nobody scraping, then with a client scraping /metrics back to
// back the whole time, with the daemon's CPU time in each phase (its
// excess over the phase with no scraper, per scrape, is what a scrape
// costs the daemon). It reports, never fails.
func BenchmarkScrape(b *testing.B) {
	requireDaemon(b)
	requireTools(b)
	e := benchEnv(b, 3)
	uid, dest := uidOf(b, "cgresjo"), e.cg("dest")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	url := "http://" + addr + "/metrics"
	d := e.startDaemon(dopts{extra: append(benchDaemonArgs(), "--metrics", addr)})
	// The control: the same client fetching a page of the same size from
	// a server in this process, not the daemon, back to back. What this
	// costs the moves is the CPU two more busy threads take on the 2
	// vCPUs, not the daemon's scraping.
	body := scrape(b, url)
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	defer ctl.Close()
	// every: the pause between two scrapes (-1: no scraper). It also
	// returns the daemon's CPU time during the phase.
	measure := func(url string, every time.Duration) (latencies, int64, time.Duration, time.Duration) {
		cpu0, err := procCPU(d.pid)
		if err != nil {
			b.Fatal(err)
		}
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
		cpu1, err := procCPU(d.pid)
		if err != nil {
			b.Fatal(err)
		}
		return l, scrapes.Load(), busy, cpu1 - cpu0
	}
	without, _, _, cpuNone := measure(url, -1)
	second, n1, busy1, _ := measure(url, time.Second)
	with, n, busy, cpuScraped := measure(url, 0)
	control, n2, busy2, _ := measure(ctl.URL, 0)
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
		{fmt.Sprintf("back to back (%d scrapes, %v each; daemon CPU %v, %v with no scraper: %v per scrape)", n, per(busy, n),
			cpuScraped, cpuNone, per(cpuScraped-cpuNone, n)), with},
		{fmt.Sprintf("control: the same client on a static page of %d bytes served by the test, back to back (%d fetches, %v each)", len(body), n2, per(busy2, n2)), control},
	} {
		fmt.Fprintf(os.Stdout, "| %s | %s | %s | %s | %d |\n", row.name, fmtDur(row.l.pct(0.5, false)), fmtDur(row.l.pct(0.9, false)), fmtDur(row.l.pct(0.99, false)), row.l.misses)
	}
	b.ReportMetric(float64(without.pct(0.5, false).Microseconds()), "p50-noscrape-us")
	b.ReportMetric(float64(with.pct(0.5, false).Microseconds()), "p50-scraping-us")
	b.ReportMetric(float64(with.misses), "misses-scraping")
	if n > 0 {
		b.ReportMetric(float64((cpuScraped-cpuNone).Microseconds())/float64(n), "daemon-cpu-us/scrape")
	}
}

// BenchmarkMetricsFlood (issue 19, item 2; make bench-e2e): what a flood of
// connections to the metrics port costs the daemon. One unprivileged user
// (nobody, with the open-file limit raised for it) opens 27,000 TCP
// connections to a daemon serving --metrics on loopback and holds them;
// the daemon's RssAnon (/proc/PID/status) is read before (after one
// scrape), every 50 ms
// during the flood (its peak), while the connections are held, and 10,
// 60 and 150 s after they are closed (the Go runtime forces a collection
// every 2 minutes); so is its count of descriptors. It reports, never
// fails.
func BenchmarkMetricsFlood(b *testing.B) {
	requireDaemon(b)
	e := benchEnv(b, 3)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	d := e.startDaemon(dopts{extra: append(benchDaemonArgs(), "--metrics", addr)})
	// The first scrape sets up what every later one uses (about 1 MB):
	// the baseline is after it, so that the flood's own cost is measured.
	scrape(b, "http://"+addr+"/metrics")
	time.Sleep(time.Second)
	base := procMemory(d.pid)
	stop := make(chan struct{})
	done := make(chan struct{})
	var peak int64
	peakFDs := 0
	go func() {
		defer close(done)
		for {
			if m := procMemory(d.pid); m.anon > peak {
				peak = m.anon
			}
			peakFDs = max(peakFDs, openFDs(d.pid))
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	mb := func(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
	t0 := time.Now()
	opened, release := flood(b, addr, 27000)
	took := time.Since(t0)
	held := procMemory(d.pid)
	heldFDs := openFDs(d.pid)
	release()
	close(stop)
	<-done
	released := time.Now()
	var after []string
	var last memory
	for _, at := range []time.Duration{10 * time.Second, 60 * time.Second, 150 * time.Second} {
		time.Sleep(time.Until(released.Add(at)))
		last = procMemory(d.pid)
		after = append(after, mb(last.anon))
	}
	fmt.Fprintf(os.Stdout, "\nmetrics flood: nobody opened %d of 27,000 connections in %v\n", opened, took.Round(time.Millisecond))
	fmt.Fprintf(os.Stdout, "| RssAnon before | peak | held | 10 s after | 60 s after | 150 s after | descriptors peak / held |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(os.Stdout, "| %s | %s | %s | %s | %d / %d |\n", mb(base.anon), mb(peak), mb(held.anon), strings.Join(after, " | "), peakFDs, heldFDs)
	b.ReportMetric(float64(base.anon)/1024, "rssanon-before-MB")
	b.ReportMetric(float64(peak)/1024, "rssanon-peak-MB")
	b.ReportMetric(float64(last.anon)/1024, "rssanon-after150s-MB")
	b.ReportMetric(float64(peakFDs), "fds-peak")
}
