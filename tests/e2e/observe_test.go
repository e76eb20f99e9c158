package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promtool finds Prometheus' promtool: in PATH, or where .ci/run puts the
// one of Debian's prometheus package (extracted, not installed: installing
// the package would start a Prometheus server).
func promtool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if p := "/opt/cgre-promtool/promtool"; fileExecutable(p) {
		return p
	}
	t.Skip("this test needs promtool (Debian's prometheus package; .ci/run extracts it to /opt/cgre-promtool)")
	return ""
}

func fileExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	return string(body)
}

// sampleValue returns the value of the series with exactly these labels
// (in the exposition's order) in a scrape; ok is false when there is none.
func sampleValue(scrape, series string) (float64, bool) {
	for _, l := range strings.Split(scrape, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestStatusAndMetrics (issue #14): a ruled task is moved; then --status
// shows the move, the rule's hit and the rule that never hit; /metrics is
// accepted by promtool, has the rule's series and, for the destination,
// its tasks, its CPU time (growing between two scrapes of a spinning task)
// and its memory; non-root peers are refused by both sockets.
func TestStatusAndMetrics(t *testing.T) {
	requireDaemon(t)
	requireHierarchies(t, "cpu", "cpuacct", "memory", "unified")
	pt := promtool(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "cpuacct", "memory", "unified"}, "dest", "other")
	e.writeRules("cgresjo  cpu,cpuacct,memory,unified  dest\ncgreother  cpu  other\n")
	port := freePort(t)
	metricsSock := filepath.Join(filepath.Dir(e.socketPath()), "metrics.sock")
	d := e.startDaemon(dopts{extra: []string{"--metrics", fmt.Sprintf("127.0.0.1:%d", port)}})
	// A second daemon for the Unix-socket form would need its own
	// environment; the same daemon cannot serve both. The Unix form is
	// checked below with a daemon of its own.
	h := e.harness(hopts{user: "cgresjo", exec: []string{"/bin/sh", "-c",
		// Allocate only once moved (memory is charged where a task is when
		// it allocates), then spin.
		`sleep 0.5; x=$(head -c 4000000 /dev/zero | tr '\000' a); while :; do :; done`}})
	dest := e.cg("dest")
	for _, hier := range []string{"cpu", "cpuacct", "memory", "unified"} {
		waitCgroup(t, h.pid, hier, dest, 5*time.Second)
	}
	time.Sleep(time.Second) // the allocation, and some CPU time

	out, err := exec.Command(daemonBin, "--status", "--status-socket", e.statusPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("--status: %v\n%s", err, out)
	}
	st := string(out)
	t.Logf("--status:\n%s", st)
	for _, want := range []string{
		fmt.Sprintf("pid %d,", d.pid),
		"rules: 2 in force",
		"moved_tasks: credentials 1,",
		"events:    fork ",
		e.rules + ":1  cgresjo  cpu,cpuacct,memory,unified  dest",
		"rules with no hit since they were loaded (1):\n  " + e.rules + ":2  cgreother  cpu  other",
	} {
		if !strings.Contains(st, want) {
			t.Errorf("--status lacks %q:\n%s", want, st)
		}
	}
	// The rule decided the move, and the later classifications of the task
	// (one per credential event) that found it in place.
	if !regexp.MustCompile(`(?m)^\s+[1-9][0-9]*  ` + regexp.QuoteMeta(e.rules) + `:1 `).MatchString(st) {
		t.Errorf("--status does not show rule 1 among the rules with hits:\n%s", st)
	}

	if strings.Contains(d.output.String()+d.log(), "not a loopback address") {
		t.Errorf("a loopback --metrics address was warned about:\n%s\n%s", d.output.String(), d.log())
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	first := scrape(t, url)
	check := exec.Command(pt, "check", "metrics")
	check.Stdin = strings.NewReader(first)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if hits, ok := sampleValue(first, `cgrulesengd_rule_hits_total{rule="`+e.rules+`:1"}`); !ok || hits < 1 {
		t.Errorf("hits of rule 1: %v (present %v), want 1 or more", hits, ok)
	}
	for series, want := range map[string]float64{
		`cgrulesengd_rule_hits_total{rule="` + e.rules + `:2"}`: 0,
		`cgrulesengd_moved_tasks_total{reason="credentials"}`:   1,
		`cgrulesengd_rules`: 2,
		`cgrulesengd_destination_tasks{cgroup="` + dest + `",hierarchy="cpu"}`:     1,
		`cgrulesengd_destination_tasks{cgroup="` + dest + `",hierarchy="unified"}`: 1,
		`cgrulesengd_move_latency_seconds_count`:                                   1,
	} {
		if got, ok := sampleValue(first, series); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	for _, series := range []string{"process_resident_memory_bytes", "go_goroutines", `cgrulesengd_events_total{type="uid"}`} {
		if _, ok := sampleValue(first, series); !ok {
			t.Errorf("no %s in the scrape", series)
		}
	}
	mem, ok := sampleValue(first, `cgrulesengd_destination_memory_bytes{cgroup="`+dest+`",hierarchy="memory"}`)
	if !ok || mem < 1e6 {
		t.Errorf("memory of the destination: %v (present %v), want the task's 4 MB or more", mem, ok)
	}
	cpuSeries := []string{
		`cgrulesengd_destination_cpu_seconds_total{cgroup="` + dest + `",hierarchy="cpuacct"}`,
		`cgrulesengd_destination_cpu_seconds_total{cgroup="` + dest + `",hierarchy="unified"}`,
	}
	time.Sleep(1200 * time.Millisecond) // a collection is reused for a second
	second := scrape(t, url)
	for _, s := range cpuSeries {
		a, ok1 := sampleValue(first, s)
		b, ok2 := sampleValue(second, s)
		if !ok1 || !ok2 || b <= a {
			t.Errorf("%s: %v then %v (present %v %v): the spinning task's CPU time must grow", s, a, b, ok1, ok2)
		}
	}
	t.Logf("scrape:\n%s", second)
	t.Logf("destination: memory %.0f bytes; cpu %v", mem, regexp.MustCompile(`(?m)^cgrulesengd_destination_cpu.*$`).FindAllString(second, -1))

	// Non-root peers. The socket's mode (0600) keeps out a plain user; one
	// with CAP_DAC_OVERRIDE gets through the mode and must be turned away
	// by the peer check (SO_PEERCRED), with a warning in the log.
	asNobody := func(caps bool, args ...string) (string, error) {
		sp := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
		if caps {
			sp = append(sp, "--inh-caps=+dac_override", "--ambient-caps=+dac_override")
		}
		c := exec.Command("setpriv", append(append(sp, "--", daemonBin), args...)...)
		o, err := c.CombinedOutput()
		return string(o), err
	}
	if o, err := asNobody(false, "--status", "--status-socket", e.statusPath()); err == nil || !strings.Contains(o, "permission denied") {
		t.Errorf("--status as nobody: %v\n%s", err, o)
	}
	from := d.logSize()
	if o, err := asNobody(true, "--status", "--status-socket", e.statusPath()); err == nil || !strings.Contains(o, "answers root only") {
		t.Errorf("--status as nobody with CAP_DAC_OVERRIDE: %v\n%s", err, o)
	}
	d.waitLog(from, regexp.MustCompile(`level=warning msg="status socket: refused a peer that is not root".*peer_uid=65534`), 5*time.Second)
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if _, err := os.Stat(e.statusPath()); !os.IsNotExist(err) {
		t.Errorf("the status socket is left after the daemon stopped: %v", err)
	}
	if o, err := exec.Command(daemonBin, "--status", "--status-socket", e.statusPath()).CombinedOutput(); exitCode(err) != 3 || !strings.Contains(string(o), "no cgrulesengd daemon is running") {
		t.Errorf("--status with no daemon: %v (want exit 3)\n%s", err, o)
	}

	// The Unix-socket form of --metrics: root is served, a non-root peer
	// that gets through the mode is refused.
	d2 := e.startDaemon(dopts{extra: []string{"--metrics", "unix:" + metricsSock}})
	fi, err := os.Stat(metricsSock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("metrics socket %v, %v: want mode 0600", fi, err)
	}
	curl := func(caps bool) (string, error) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(self)
		if caps {
			c = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
				"--inh-caps=+dac_override", "--ambient-caps=+dac_override", "--", self)
		}
		c.Env = append(os.Environ(), scrapeHelperEnv+"="+metricsSock)
		o, err := c.CombinedOutput()
		return string(o), err
	}
	if o, err := curl(false); err != nil || !strings.Contains(o, "cgrulesengd_rules 2") {
		t.Errorf("scraping the Unix socket as root: %v\n%s", err, o)
	}
	from = d2.logSize()
	if o, err := curl(true); err == nil || strings.Contains(o, "cgrulesengd_rules") {
		t.Errorf("a non-root peer scraped the Unix socket: %v\n%s", err, o)
	}
	d2.waitLog(from, regexp.MustCompile(`level=warning msg="metrics socket: refused a peer that is not root".*peer_uid=65534`), 5*time.Second)
}

// scrapeHelperEnv makes the test binary a scraper instead (see TestMain):
// TestStatusAndMetrics runs it as another user to scrape the Unix socket
// the variable names; it prints the body and exits 0, or exits 1.
const scrapeHelperEnv = "CGRE_SCRAPE_SOCKET"

func scrapeHelper(path string) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := c.Get("http://metrics/metrics")
	if err != nil {
		fmt.Println("scrape failed:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	return 0
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// TestMetricsExposureWarning: a --metrics address that is not loopback is
// allowed (a Prometheus server elsewhere needs one) but warned about at
// start, on standard error (seen whatever the log level: the terminal,
// the service script's start, the journal) and in the log.
func TestMetricsExposureWarning(t *testing.T) {
	requireDaemon(t)
	e := newEnv(t, []string{"cpu"})
	e.writeRules("")
	port := freePort(t)
	d := e.startDaemon(dopts{extra: []string{"--metrics", fmt.Sprintf("0.0.0.0:%d", port)}})
	want := fmt.Sprintf("--metrics 0.0.0.0:%d is not a loopback address: anyone who can reach it over the network can read the metrics", port)
	if out := d.output.String(); !strings.Contains(out, "cgrulesengd: warning: "+want) {
		t.Errorf("standard error lacks the warning %q:\n%s", want, out)
	}
	d.waitLog(0, regexp.MustCompile(`level=warning msg="`+regexp.QuoteMeta(want)), 5*time.Second)
	scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)) // served all the same
}
