package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDescriptorShortageCounted (issue 19): descriptor shortages have a
// counter of their own, in --status and /metrics: descriptor_shortages
// (every classification lost for lack of descriptors, each repaired by a
// rescan) and, among the failed moves, move_failures{cause="descriptors"}.
// The daemon runs under `ulimit -n 64` while clients of its sticky socket,
// which it serves 64 at a time for up to a second each, take every
// descriptor it has; 20 tasks of distinct uids then each need a cgroup of
// their own. The shortage is counted; once the clients are gone, the
// rescans move every task.
func TestDescriptorShortageCounted(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	e := newEnv(t, []string{"cpu", "unified"})
	e.writeRules("*  cpu,unified  users/%u\n")
	port := freePort(t)
	d := e.startDaemon(dopts{wrap: ulimitWrap(64), extra: []string{"--metrics", fmt.Sprintf("127.0.0.1:%d", port)}})

	// The clients: connect, send nothing, connect again when closed.
	stopClients := idleStickyClients(e.socketPath(), 100)
	time.Sleep(time.Second)
	t.Logf("with the clients: the daemon has %d descriptors open (limit 64)", openFDs(d.pid))

	const base, tasks = 2100001000, 20
	burst := e.startTool(nil, "", "burst", strconv.Itoa(base), strconv.Itoa(tasks), "120", "1")
	pids := burstPids(t, burst, 30*time.Second)
	d.waitLog(0, regexp.MustCompile(`level=error msg="out of file descriptors: a task was not classified, rescanning /proc`), 10*time.Second)
	stopClients()

	moved, left := waitMoved(pids, func(i int) string { return e.cg(fmt.Sprintf("users/%d", base+i)) }, 30*time.Second)
	if moved != tasks {
		t.Errorf("%d of %d tasks moved after the shortage; left behind:\n%s", moved, tasks, strings.Join(left, "\n"))
	}
	st := statusAnswers(t, d, 10*time.Second)
	m := regexp.MustCompile(`descriptor_shortages (\d+)`).FindStringSubmatch(st)
	if m == nil || m[1] == "0" {
		t.Errorf("--status does not count the shortage (descriptor_shortages):\n%s", st)
	}
	if !regexp.MustCompile(`move_failures: .*descriptors \d+`).MatchString(st) {
		t.Errorf("--status has no move_failures cause \"descriptors\":\n%s", st)
	}
	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	v, ok := sampleValue(body, "cgrulesengd_descriptor_shortages_total")
	if !ok || v < 1 {
		t.Errorf("/metrics: cgrulesengd_descriptor_shortages_total %v (present %v)", v, ok)
	}
	f, ok := sampleValue(body, `cgrulesengd_move_failures_total{cause="descriptors"}`)
	if !ok {
		t.Errorf("/metrics has no cgrulesengd_move_failures_total{cause=\"descriptors\"}")
	}
	t.Logf("descriptor_shortages %v, of which failed moves %v", v, f)
	burst.stop()
	killPids(pids, 5*time.Second)
}
